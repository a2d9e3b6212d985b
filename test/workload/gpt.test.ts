import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { elementBytes } from '../../src/training/precision.js';
import { buildGpt, type GptSpec } from '../../src/workload/gpt.js';
import { MODEL_PRESETS } from '../../src/workload/presets.js';
import { modelParameters, workloadParameters } from '../../src/workload/registry.js';
import { elements, type Tensor, type Workload, type WorkloadBlock, type WorkloadOp } from '../../src/workload/types.js';
import { embeddingParameters, layerActivationBytes, layerFlops, layerParameters, logitsFlops, outputParameters, totalParameters } from '../support/closed-forms.js';

// The workload states costs per operation; summed over a layer they must give the papers' closed forms
// (Narayanan et al., SC21; Korthikanti et al., MLSys 2023; Qi et al., ICLR 2024), kept as oracles in test/support.

const arbSpec: fc.Arbitrary<GptSpec> = fc
  .record({
    heads: fc.constantFrom(4, 8, 16, 32),
    headDim: fc.constantFrom(32, 64, 128),
    kvDivisor: fc.constantFrom(1, 2, 4),
    ffnFactor: fc.constantFrom(2, 3, 4, 8 / 3),
    mlp: fc.constantFrom('gelu' as const, 'swiglu' as const),
    layers: fc.integer({ min: 1, max: 8 }),
    seqLength: fc.constantFrom(128, 512, 2048),
    vocab: fc.constantFrom(1000, 51200),
    tied: fc.boolean(),
    positions: fc.constantFrom('learned' as const, 'rope' as const),
  })
  .map((r) => {
    const hidden = r.heads * r.headDim;
    return {
      name: 'gpt',
      layers: r.layers,
      hidden,
      heads: r.heads,
      kvHeads: r.heads / r.kvDivisor,
      ffnHidden: Math.round(hidden * r.ffnFactor),
      vocab: r.vocab,
      seqLength: r.seqLength,
      mlp: r.mlp,
      tiedEmbeddings: r.tied,
      positionEmbedding: r.positions,
      causal: false,
      dropout: true,
    };
  });

const sumOps = (block: WorkloadBlock, f: (op: WorkloadOp) => number) => block.ops.reduce((a, op) => a + f(op), 0);
const parametersOf = (block: WorkloadBlock) => sumOps(block, (op) => op.parameters.reduce((a, p) => a + elements(p.shape), 0));
const layerOf = (w: Workload) => w.blocks.find((b) => b.kind === 'layer')!;
const headOf = (w: Workload) => w.blocks[w.blocks.length - 1];
const bytes = (t: Tensor) => elements(t.shape) * elementBytes(t.element, 'bf16');
const close = (actual: number, expected: number) => (expected === 0 ? expect(actual).toBe(0) : expect(actual / expected).toBeCloseTo(1, 12));

describe('GPT workload: sums over operations equal the closed forms', () => {
  it('law: without dropout a layer keeps 2sbh fewer bytes (two 1-byte masks), and without FlashAttention also the 3as²b bytes of the attention dropout', () => {
    fc.assert(
      fc.property(arbSpec, fc.boolean(), (m, flash) => {
        const saved = (dropout: boolean) => sumOps(layerOf(buildGpt({ ...m, dropout }, { microBatch: 1, attention: flash ? 'flash' : 'standard' })), (op) => op.saved.reduce((a, t) => a + bytes(t), 0));
        const { seqLength: s, hidden: h, heads: a } = m;
        close(saved(true) - saved(false), 2 * s * h + (flash ? 0 : 3 * a * s * s));
      }),
    );
  });

  it('law: a layer has the reference parameter count (12h² + 13h for GPT shapes), and Ψ adds the embeddings and the output matrix', () => {
    fc.assert(
      fc.property(arbSpec, (m) => {
        const w = buildGpt(m, { microBatch: 1, attention: 'standard' });
        close(parametersOf(layerOf(w)), layerParameters(m));
        close(parametersOf(w.blocks[0]), embeddingParameters(m));
        close(parametersOf(headOf(w)), outputParameters(m));
        close(workloadParameters(w), totalParameters(m));
      }),
    );
  });

  it('law: a layer computes F = G + 4bs²h, B = G + 8bs²h, W = G (Qi et al.), and the output head 2bshV in each pass', () => {
    fc.assert(
      fc.property(arbSpec, fc.integer({ min: 1, max: 4 }), (m, b) => {
        const w = buildGpt(m, { microBatch: b, attention: 'standard' });
        const expected = layerFlops(m, b);
        close(sumOps(layerOf(w), (op) => op.flops.forward), expected.forward);
        close(sumOps(layerOf(w), (op) => op.flops.inputGrad), expected.inputGrad);
        close(sumOps(layerOf(w), (op) => op.flops.weightGrad), expected.weightGrad);
        const logits = logitsFlops(m, b);
        close(sumOps(headOf(w), (op) => op.flops.forward), logits.forward);
        close(sumOps(headOf(w), (op) => op.flops.weightGrad), logits.weightGrad);
      }),
    );
  });

  it('law: a layer keeps sbh(34 + 5as/h) bytes for GPT shapes (Korthikanti Table 2, t = 1), generalised to GQA and SwiGLU; FlashAttention drops the s² terms, which are the selective ones', () => {
    fc.assert(
      fc.property(arbSpec, fc.integer({ min: 1, max: 4 }), fc.boolean(), (m, b, flash) => {
        const w = buildGpt(m, { microBatch: b, attention: flash ? 'flash' : 'standard' });
        const kept = sumOps(layerOf(w), (op) => op.saved.reduce((a, t) => a + bytes(t), 0));
        close(kept, layerActivationBytes(m, { microBatch: b, tp: 1, recompute: 'none', flashAttention: flash, bytesPerElement: 2 }));
        const { seqLength: s, hidden: h, heads: a } = m;
        if (m.mlp === 'gelu' && m.kvHeads === m.heads && m.ffnHidden === 4 * h) close(kept, s * b * h * (34 + (flash ? 0 : (5 * a * s) / h)));
        const scores = sumOps(layerOf(w), (op) => op.saved.filter((t) => t.selective).reduce((x, t) => x + bytes(t), 0));
        expect(scores).toBe(flash ? 0 : 5 * a * s * s * b);
      }),
    );
  });

  it('law: element-wise kernels write and read each kept tensor of a layer once per pass (the calibrated traffic model); the embedding and head move none', () => {
    fc.assert(
      fc.property(arbSpec, (m) => {
        const w = buildGpt(m, { microBatch: 2, attention: 'standard' });
        for (const block of w.blocks) {
          const moved = sumOps(block, (op) => op.moved.reduce((a, t) => a + t.times * bytes(t), 0));
          const kept = sumOps(block, (op) => op.saved.reduce((a, t) => a + bytes(t), 0));
          expect(moved).toBe(block.kind === 'layer' ? 2 * kept : 0);
        }
      }),
    );
  });

  it('causal attention halves the score FLOPs only where the kernel skips masked blocks (FlashAttention)', () => {
    const m: GptSpec = { ...MODEL_PRESETS['gpt3-1.3b'], name: 'gpt', causal: true };
    const scores = (attention: 'standard' | 'flash') => layerOf(buildGpt(m, { microBatch: 1, attention })).ops.find((op) => op.class === 'attention')!.flops;
    const full = 4 * m.seqLength * m.seqLength * m.hidden;
    expect(scores('standard')).toEqual({ forward: full, inputGrad: 2 * full, weightGrad: 0 });
    expect(scores('flash')).toEqual({ forward: full / 2, inputGrad: full, weightGrad: 0 });
  });

  it('tied embeddings: the output head holds no matrix of its own and the workload names the shared one', () => {
    const w = buildGpt({ ...MODEL_PRESETS['gpt-tiny'], name: 'tiny' }, { microBatch: 1, attention: 'standard' });
    expect(w.tied?.tensor.name).toBe('embedding.word');
    expect([w.tied?.from, w.tied?.to]).toEqual([0, w.blocks.length - 1]);
    expect(parametersOf(headOf(w))).toBe(0);
  });

  it('presets have their published sizes', () => {
    const billions = (name: string) => modelParameters({ name, ...MODEL_PRESETS[name] }) / 1e9;
    expect(billions('gpt3-175b')).toBeCloseTo(174.6, 1);
    expect(billions('gpt3-1.3b')).toBeCloseTo(1.32, 2);
    expect(billions('megatron-1t')).toBeCloseTo(1008, 0);
    expect(billions('megatron-145.6b')).toBeCloseTo(145.6, 0);
    expect(billions('llama3-405b')).toBeGreaterThan(400);
    expect(billions('llama3-405b')).toBeLessThan(410);
    expect(billions('llama3-8b')).toBeCloseTo(8.0, 0);
  });
});

describe('closed-form oracles', () => {
  it('reduce to the reference forms for GPT-3 shapes: 12h² + 13h parameters, 24bsh² + 4bs²h forward FLOPs', () => {
    const m = { ...MODEL_PRESETS['gpt3-175b'], name: 'gpt3' };
    const { hidden: h, seqLength: s } = m;
    expect(layerParameters(m)).toBe(12 * h * h + 13 * h);
    expect(layerFlops(m, 2).forward).toBe(24 * 2 * s * h * h + 4 * 2 * s * s * h);
  });
});
