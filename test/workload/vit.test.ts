import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { buildGpt } from '../../src/workload/gpt.js';
import { buildVit, type VitSpec } from '../../src/workload/vit.js';
import { elements, type WorkloadBlock } from '../../src/workload/types.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';

const small: VitSpec = { kind: 'vit', name: 'small', layers: 4, inputChannels: 16, outputChannels: 16, patch: 2, grid: [2, 12, 24], window: [2, 6, 12], stages: [{ depth: 2, channels: 64, heads: 4 }, { depth: 2, channels: 128, heads: 8 }], mlpRatio: 4, positionBias: 'none', norm: 'layer', resample: 'merge' };
const flops = (block: WorkloadBlock) => block.ops.reduce((a, op) => a + op.flops.forward, 0);
const params = (block: WorkloadBlock) => block.ops.reduce((a, op) => a + op.parameters.reduce((n, t) => n + elements(t.shape), 0), 0);

describe('vision transformer (model.kind vit)', () => {
  it('law: a block whose window is the whole grid is a bidirectional GPT layer over the grid’s tokens', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 12 }), fc.integer({ min: 2, max: 12 }), fc.constantFrom(32, 64, 96), (lat, lon, channels) => {
        const vit = buildVit({ ...small, grid: [lat, lon], window: [lat, lon], stages: [{ depth: 1, channels, heads: 4 }] }, { microBatch: 1, attention: 'standard' });
        const gpt = buildGpt({ name: 'g', layers: 1, hidden: channels, heads: 4, kvHeads: 4, ffnHidden: 4 * channels, vocab: 8, seqLength: lat * lon, mlp: 'gelu', tiedEmbeddings: true, positionEmbedding: 'rope', causal: false, dropout: false }, { microBatch: 1, attention: 'standard' });
        expect(flops(vit.blocks[1])).toBe(flops(gpt.blocks[1]));
        expect(params(vit.blocks[1])).toBe(params(gpt.blocks[1]));
      }),
    );
  });

  it('law: with a fixed window, attention FLOPs grow linearly with the grid (second differences vanish), where a global window grows with its square', () => {
    const attention = (lon: number, global: boolean) => {
      const w = buildVit({ ...small, grid: [12, lon], window: global ? [12, lon] : [6, 12], stages: [{ depth: 1, channels: 64, heads: 4 }] }, { microBatch: 1, attention: 'standard' });
      return w.blocks[1].ops.find((op) => op.class === 'attention')!.flops.forward;
    };
    const windowed = [24, 48, 72].map((n) => attention(n, false));
    expect(windowed[2] - 2 * windowed[1] + windowed[0]).toBe(0);
    const global = [24, 48, 72].map((n) => attention(n, true));
    expect(global[2] - 2 * global[1] + global[0]).toBeGreaterThan(0);
  });

  it("merges 2 x 2 tokens into twice the channels going up and splits them back to the encoder's grid going down (odd sizes padded)", () => {
    const w = buildVit({ ...small, grid: [2, 13, 24], stages: [{ depth: 1, channels: 64, heads: 4 }, { depth: 1, channels: 128, heads: 8 }, { depth: 1, channels: 64, heads: 4 }] }, { microBatch: 1, attention: 'standard' });
    const [merge, split] = [w.blocks[2].ops[0], w.blocks[3].ops[0]];
    expect(merge.name).toBe('patch-merging');
    expect(merge.output.shape).toEqual({ batch: 1, seq: 2 * 7 * 12, hidden: 128 });
    expect(split.name).toBe('patch-splitting');
    expect(split.output.shape).toEqual({ batch: 1, seq: 2 * 13 * 24, hidden: 64 });
  });

  it("Pangu-Weather's Earth-specific bias: wz²·wh²·(2ww - 1) entries per head for each window position along levels and latitude", () => {
    const w = buildVit({ ...small, grid: [8, 181, 360], window: [2, 6, 12], positionBias: 'earth', stages: [{ depth: 1, channels: 192, heads: 6 }] }, { microBatch: 1, attention: 'standard' });
    const bias = w.blocks[1].ops.find((op) => op.class === 'attention')!.parameters[0];
    // 4 x 36 x 23 = 3,312 entries, 4 x 31 window positions, 6 heads (Bi et al.'s pseudocode).
    expect(elements(bias.shape)).toBe(3312 * 124 * 6);
  });

  const run = (parallel: Record<string, unknown>, model: Record<string, unknown> = {}, training: Record<string, unknown> = {}) =>
    simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'pangu-weather', inputChannels: 16, outputChannels: 16, patch: 2, grid: [2, 24, 48], window: [2, 6, 12], stages: [{ depth: 2, channels: 64, heads: 4 }, { depth: 2, channels: 128, heads: 8 }, { depth: 2, channels: 64, heads: 4 }], ...model }, training: { globalBatch: 8, ...training }, parallel }));

  it('simulates with data parallelism, ZeRO and recomputation, obeying the step laws, and reports samples per second', () => {
    for (const [parallel, training] of [
      [{ tp: 1, pp: 1, dp: 4 }, {}],
      [{ tp: 1, pp: 1, dp: 4, zero: 3 }, { recompute: 'full' }],
      [{ tp: 1, pp: 1, dp: 4, zero: 2 }, { recompute: 'selective', flashAttention: true }],
    ] as const) {
      const sim = run(parallel, {}, training);
      checkStepLaws(sim);
      expect(sim.report.throughput.tokensPerSecond).toBeUndefined();
      expect(sim.report.throughput.samplesPerSecond).toBeGreaterThan(0);
      expect(sim.report.model).toMatchObject({ kind: 'vit', grid: [2, 24, 48], channels: [64, 128, 64] });
    }
  });

  it('refuses tensor and pipeline parallelism, a window not matching the grid, heads not dividing channels, and a width jump', () => {
    expect(() => run({ tp: 2, pp: 1, dp: 2 })).toThrow(/parallel\.tp: tp = 2 \(Megatron tensor parallelism\) is not modelled for model\.kind vit/);
    expect(() => run({ tp: 1, pp: 2, dp: 2 })).toThrow(/parallel\.pp: pipeline parallelism is not modelled for model\.kind vit/);
    expect(() => run({ tp: 1, pp: 1, dp: 4 }, { window: [6, 12] })).toThrow(/model\.window: gives 2 sizes for a grid of 3 axes/);
    expect(() => run({ tp: 1, pp: 1, dp: 4 }, { stages: [{ depth: 1, channels: 64, heads: 5 }] })).toThrow(/model\.stages\.0\.heads: 5 heads do not divide the stage's 64 channels/);
    expect(() => run({ tp: 1, pp: 1, dp: 4 }, { stages: [{ depth: 1, channels: 64, heads: 4 }, { depth: 1, channels: 256, heads: 4 }] })).toThrow(/model\.stages\.1\.channels: 256 channels after 64/);
    expect(() => run({ tp: 1, pp: 1, dp: 4 }, { layers: 4 })).toThrow(/model\.layers does not apply to a model of kind vit/);
  });
});
