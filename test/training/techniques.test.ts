import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { OPTIMIZERS, stateBytesPerParameter } from '../../src/training/optimizer.js';
import type { Tensor } from '../../src/workload/types.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';

// Oracles: each method's paper (src/training/optimizer.ts cites them); the ZeRO paper's K = 12 for mixed-precision Adam.
const matrix = (r: number, c: number): Tensor => ({ name: 'w', shape: { hidden: r, ffn: c }, element: 'parameter' });
const vector = (n: number): Tensor => ({ name: 'b', shape: { hidden: n }, element: 'parameter' });

describe('optimizer states', () => {
  it('per parameter in mixed precision: Adam 12 (the ZeRO paper), SGD and Lion and Adam-mini 8, 8-bit Adam 6 and a block scale', () => {
    const any = [matrix(64, 64)];
    expect(stateBytesPerParameter('adam', 'bf16', () => any)).toBe(12);
    expect(stateBytesPerParameter('adam', 'fp32', () => any)).toBe(8);
    for (const o of ['sgd', 'lion', 'adam-mini'] as const) expect(stateBytesPerParameter(o, 'bf16', () => any)).toBe(8);
    expect(stateBytesPerParameter('adam8bit', 'bf16', () => any)).toBeCloseTo(6 + 8 / 2048, 12);
  });

  it('law: a factored optimizer keeps r + c fp32 values per accumulator for an r x c matrix and n for a vector of n', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 4096 }), (r, c, n) => {
        const tensors = [matrix(r, c), vector(n)];
        const count = r * c + n;
        const factored = ((r + c + n) * 4) / count;
        expect(stateBytesPerParameter('adafactor', 'fp32', () => tensors)).toBeCloseTo(factored, 9);
        expect(stateBytesPerParameter('sm3', 'bf16', () => tensors)).toBeCloseTo(4 + 4 + factored, 9);
        expect(stateBytesPerParameter('came', 'bf16', () => tensors)).toBeCloseTo(4 + 4 + 2 * factored, 9);
      }),
    );
  });

  it('reads a weight as its hidden size by the rest, as frameworks store it, and a tensor without a hidden axis as a vector', () => {
    // An output projection {heads 4, headDim 8, hidden 16}: 16 + 32 values; its bias {heads 4, headDim 8}: 32.
    const out: Tensor = { name: 'o', shape: { heads: 4, headDim: 8, hidden: 16 }, element: 'parameter' };
    const bias: Tensor = { name: 'b', shape: { heads: 4, headDim: 8 }, element: 'parameter' };
    expect(stateBytesPerParameter('adafactor', 'fp32', () => [out, bias])).toBeCloseTo((4 * (16 + 32 + 32)) / (512 + 32), 12);
  });

  it("the simulated step's optimizer memory is the GPU's parameters times the optimizer's bytes per parameter, and the step moves fewer bytes with less state", () => {
    const run = (optimizer: string) => simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, training: { globalBatch: 8, optimizer }, parallel: { tp: 1, pp: 1, dp: 4 } }));
    const adam = run('adam');
    const psi = adam.plan.stages[0].parametersPerDevice;
    for (const o of OPTIMIZERS) {
      const sim = run(o);
      const bytes = stateBytesPerParameter(o, 'bf16', () => (function* () {
        for (const b of sim.plan.program.workload.blocks) for (const op of b.ops) yield* op.parameters;
      })());
      if (bytes === 0) expect(sim.report.devices[0].memoryBreakdown.optimizer, o).toBe(0);
      else expect(sim.report.devices[0].memoryBreakdown.optimizer / (psi * bytes)).toBeCloseTo(1, 9);
    }
    expect(run('adafactor').report.stepTime).toBeLessThan(adam.report.stepTime);
  });
});

describe('fp8 precision', () => {
  const run = (precision: string, gpu: Record<string, unknown> = { preset: 'h100-sxm' }) =>
    simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4, node: 'dgx-h100', gpu }, model: { preset: 'gpt3-1.3b', seqLength: 1024 }, training: { globalBatch: 8, precision }, parallel: { tp: 1, pp: 1, dp: 4 } }));

  it('runs the matrix multiplications at the fp8 peak: a shorter step with the same FLOPs and the same memory as bf16', () => {
    const [bf16, fp8] = [run('bf16'), run('fp8')];
    expect(fp8.report.stepTime).toBeLessThan(bf16.report.stepTime);
    expect(fp8.plan.virtualStages[0].forwardFlops).toBe(bf16.plan.virtualStages[0].forwardFlops);
    expect(fp8.report.memory.peak.hbm).toBe(bf16.report.memory.peak.hbm);
  });

  it('law: with an fp8 peak equal to the 16-bit one, fp8 is bf16 exactly', () => {
    expect(run('fp8', { preset: 'h100-sxm', fp8Flops: '989TFLOP/s' }).report.stepTime).toBe(run('bf16').report.stepTime);
  });

  it("with context parallelism, attention (at the 16-bit peak) takes a larger share of an fp8 pass's time than of its FLOPs, and the step laws hold", () => {
    const sim = (precision: string) =>
      simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 2, node: 'dgx-h100' }, model: { preset: 'gpt3-1.3b', layers: 4, seqLength: 8192 }, training: { globalBatch: 2, precision, flashAttention: true }, parallel: { tp: 1, pp: 1, dp: 1, cp: 2 } }));
    const fp8 = sim('fp8');
    checkStepLaws(fp8);
    const v = fp8.plan.virtualStages[0];
    expect(v.attentionForwardFlops / v.forwardTimeFlops).toBeGreaterThan(v.attentionForwardFlops / v.forwardFlops);
    expect(fp8.report.stepTime).toBeLessThan(sim('bf16').report.stepTime);
  });

  it('is refused on a GPU without fp8 tensor cores, naming the ones with them', () => {
    expect(() => run('fp8', { preset: 'a100-80gb' })).toThrow(/training\.precision: fp8 .* a100-80gb does not have .*H100/);
  });
});

describe('gradient accumulation', () => {
  const base = { cluster: { nodes: 1, gpusPerNode: 8 }, parallel: { tp: 2, pp: 1, dp: undefined } };
  it('given instead of the global batch, it makes the global batch microBatch x dp x accumulation, and each replica runs that many micro-batches', () => {
    const s = scenario({ ...base, training: { globalBatch: undefined, microBatch: 2, accumulation: 3 } });
    expect(s.parallel.dp).toBe(4);
    expect(s.training.globalBatch).toBe(2 * 4 * 3);
    expect(simulate(s).plan.microBatches).toBe(3);
  });

  it('given with a global batch that disagrees, or with neither, the scenario is refused with what agrees', () => {
    expect(() => scenario({ ...base, training: { globalBatch: 30, microBatch: 2, accumulation: 3 } })).toThrow(/training\.accumulation: 3 accumulation steps of micro-batch 2 on dp 4 make a global batch of 24, but training\.globalBatch is 30/);
    expect(() => scenario({ ...base, training: { globalBatch: undefined } })).toThrow(/training\.globalBatch: missing required field \(or give training\.accumulation/);
  });
});

describe('full recomputation of the first k layers of each stage', () => {
  const run = (extra: Record<string, unknown>) => simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 2 }, model: { preset: 'gpt3-1.3b', layers: 8, seqLength: 1024 }, training: { globalBatch: 8, recompute: 'full', ...extra }, parallel: { tp: 1, pp: 2, dp: 1 } }));

  it('law: k = the layers of a stage is full recomputation exactly; fewer layers keep more memory and take less time, one layer at a time', () => {
    expect(run({ recomputeLayers: 4 }).report).toEqual(run({}).report);
    const steps = [1, 2, 3, 4].map((k) => run({ recomputeLayers: k }).report);
    for (let k = 1; k < steps.length; k++) {
      expect(steps[k].stages[0].peakActivations).toBeLessThan(steps[k - 1].stages[0].peakActivations);
      expect(steps[k].stepTime).toBeGreaterThanOrEqual(steps[k - 1].stepTime);
    }
    // Each more recomputed layer frees the same bytes and adds the same time to the backward (the layers are alike).
    const freed = steps.slice(1).map((s, k) => steps[k].stages[0].peakActivations - s.stages[0].peakActivations);
    for (const f of freed) expect(f / freed[0]).toBeCloseTo(1, 6);
    const backward = [0, 1, 2, 3, 4].map((k) => (k === 0 ? run({ recompute: 'none' }) : run({ recomputeLayers: k })).plan.virtualStages[0].inputGradNs);
    const added = backward.slice(1).map((t, k) => t - backward[k]);
    for (const a of added) expect(Math.abs(a / added[0] - 1)).toBeLessThan(0.02);
  });

  it('is refused without full recomputation, and beyond the layers of the smallest stage', () => {
    expect(() => run({ recompute: 'selective', recomputeLayers: 2 })).toThrow(/training\.recomputeLayers: .*training\.recompute is selective/);
    expect(() => run({ recomputeLayers: 5 })).toThrow(/training\.recomputeLayers: 5 layers, but a virtual stage holds as few as 4/);
  });
});

describe('approximate attention (Linformer, Performer)', () => {
  const run = (s: number, model: Record<string, unknown>) =>
    simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 1 }, model: { preset: 'gpt3-1.3b', layers: 2, seqLength: s, causal: false, ...model }, training: { globalBatch: 1 }, parallel: { tp: 1, pp: 1, dp: 1 } }));
  const peak = (s: number, model: Record<string, unknown>) => run(s, model).report.stages[0].peakActivations;

  it('law: with a fixed rank, activations grow linearly in the sequence (second differences vanish), where exact attention grows with its square', () => {
    for (const attention of ['linformer', 'performer']) {
      const f = [1024, 2048, 3072].map((s) => peak(s, { attention, attentionRank: 256 }));
      expect(Math.abs(f[2] - 2 * f[1] + f[0]) / f[2]).toBeLessThan(1e-9);
    }
    const exact = [1024, 2048, 3072].map((s) => peak(s, {}));
    expect(exact[2] - 2 * exact[1] + exact[0]).toBeGreaterThan(0);
  });

  it("Linformer's scores are s x k: at rank k = s its score FLOPs are exact attention's plus the projections of keys and values", () => {
    const s = 1024;
    const h = 2048;
    const exact = run(s, {}).plan.virtualStages[0].forwardFlops;
    const linformer = run(s, { attention: 'linformer', attentionRank: s - 1 }).plan.virtualStages[0].forwardFlops;
    // Per layer: 4·s·(s-1)·h scores instead of 4·s²·h, plus 2 x 2·(s-1)·s·h for the two projections.
    const perLayer = 4 * s * (s - 1) * h + 4 * (s - 1) * s * h - 4 * s * s * h;
    expect((linformer - exact) / (2 * perLayer)).toBeCloseTo(1, 9);
  });

  it('refuses an approximate attention without its size, Linformer on a causal model, FlashAttention beside one, and context parallelism', () => {
    expect(() => run(1024, { attention: 'performer' })).toThrow(/model\.attentionRank: performer attention needs its size/);
    expect(() => run(1024, { attention: 'linformer', attentionRank: 256, causal: true })).toThrow(/model\.attention: Linformer.*no causal form/);
    expect(() => simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 1 }, model: { preset: 'gpt3-1.3b', attention: 'performer', attentionRank: 256 }, training: { globalBatch: 1, flashAttention: true }, parallel: { tp: 1, pp: 1, dp: 1 } }))).toThrow(/training\.flashAttention/);
    expect(() => simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 2 }, model: { preset: 'gpt3-1.3b', attention: 'performer', attentionRank: 256 }, training: { globalBatch: 1, flashAttention: false }, parallel: { tp: 1, pp: 1, dp: 1, cp: 2, cpAttention: 'allgather' } }))).toThrow(/parallel\.cp/);
  });
});

describe('FlashAttention kernels', () => {
  const run = (gpu: Record<string, unknown> = {}, flashAttention = true) =>
    simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 1, gpu: { preset: 'a100-80gb', ...gpu } }, model: { preset: 'gpt3-1.3b', layers: 4, seqLength: 4096 }, training: { globalBatch: 1, flashAttention }, parallel: { tp: 1, pp: 1, dp: 1 } }));

  it('recompute the causal scores QKᵀ in their backward: b·s²·h FLOPs a layer more hardware FLOPs, none more model FLOPs', () => {
    const v = run().plan.virtualStages[0];
    const { seqLength: s, hidden: h } = run().scenario.model as { seqLength: number; hidden: number };
    expect(v.inputGradFlops + v.weightGradFlops - v.modelBackwardFlops).toBeCloseTo(4 * s * s * h, 0);
    expect(run({}, false).plan.virtualStages[0].inputGradFlops + run({}, false).plan.virtualStages[0].weightGradFlops).toBe(run({}, false).plan.virtualStages[0].modelBackwardFlops);
  });

  it('run at the GPU’s FlashAttention efficiency: a lower one makes a longer step, and one equal to the GEMMs’ counts attention as GEMM time', () => {
    const steps = [0.3, 0.5, 0.75].map((e) => run({ flashAttentionEfficiency: e }));
    expect(steps[0].report.stepTime).toBeGreaterThan(steps[1].report.stepTime);
    expect(steps[1].report.stepTime).toBeGreaterThan(steps[2].report.stepTime);
    const v = steps[2].plan.virtualStages[0];
    expect(v.forwardTimeFlops).toBe(v.forwardFlops);
    expect(steps[0].plan.virtualStages[0].forwardTimeFlops).toBeGreaterThan(v.forwardFlops);
  });
});
