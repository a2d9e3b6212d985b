import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { AF2 } from '../../src/workload/evoformer.js';
import { ALPHAFOLD2 } from '../../src/workload/presets.js';
import { buildWorkload, modelParameters } from '../../src/workload/registry.js';
import { elements } from '../../src/workload/types.js';
import { scenario } from '../support/scenarios.js';

/** A small Evoformer on one GPU, everything else AlphaFold 2's. */
const small = (model: Record<string, unknown> = {}, training: Record<string, unknown> = {}, parallel: Record<string, unknown> = {}) =>
  scenario({
    cluster: { nodes: 1, gpusPerNode: 1 },
    model: { preset: 'alphafold2', layers: 2, extraLayers: 1, residues: 32, msaRows: 16, extraMsaRows: 32, ...model },
    training: { globalBatch: 1, microBatch: 1, recycles: 0, recompute: 'none', ...training },
    parallel: { tp: 1, pp: 1, dp: 1, ...parallel },
  });

describe('the Evoformer workload', () => {
  it("the alphafold2 preset's parameters are within 2% of AlphaFold 2's published 93M", () => {
    const psi = modelParameters({ name: 'alphafold2', ...ALPHAFOLD2 });
    expect(Math.abs(psi / 93e6 - 1)).toBeLessThan(0.02);
  });

  it('one Evoformer block holds the parameters its nine modules add up to by hand (c_m 256, c_z 128)', () => {
    const blocks = (layers: number) => modelParameters({ name: 'af2', ...ALPHAFOLD2, layers });
    // Row attention with pair bias 329,984; column attention 328,704; MSA transition 526,080; outer-product mean
    // 148,160; two triangle multiplications 99,584 each; two triangle attentions 82,944 each; pair transition 131,968.
    expect(blocks(2) - blocks(1)).toBe(329_984 + 328_704 + 526_080 + 148_160 + 2 * 99_584 + 2 * 82_944 + 131_968);
  });

  it('law: without fused attention, the activation peak is a cubic in N_r (fourth differences vanish) whose N_r³ term is the two triangle attentions’ probabilities', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), (step, layers) => {
        const peak = (r: number) => simulate(small({ residues: 8 * step * r, layers, extraLayers: 1 })).report.stages[0].peakActivations;
        const f = [1, 2, 3, 4, 5].map(peak);
        const d4 = f[4] - 4 * f[3] + 6 * f[2] - 4 * f[1] + f[0];
        expect(Math.abs(d4) / f[4]).toBeLessThan(1e-9);
        // Third difference of a r³ over steps of h: 6·a·h³. Per block, 2 triangle attentions x 4 heads x 2 bytes.
        const h = 8 * step;
        const d3 = f[3] - 3 * f[2] + 3 * f[1] - f[0];
        const a = (layers + 1) * 2 * AF2.triangleAttention.heads * 2;
        expect(d3 / (6 * a * h ** 3)).toBeCloseTo(1, 9);
      }),
      { numRuns: 4 },
    );
  });

  it('fused attention keeps no probabilities: the N_r³ term is gone', () => {
    const peak = (r: number) => simulate(small({ residues: r }, { flashAttention: true })).report.stages[0].peakActivations;
    const f = [16, 32, 48, 64].map(peak);
    expect(Math.abs(f[3] - 3 * f[2] + 3 * f[1] - f[0]) / f[3]).toBeLessThan(1e-9);
  });

  it('recycling adds forward-only passes: forward FLOPs grow by one network per recycle, the backward and the activations do not change', () => {
    const run = (recycles: number) => simulate(small({}, { recycles }));
    const [r0, r1, r3] = [run(0), run(1), run(3)];
    const v = (s: typeof r0) => s.plan.virtualStages[0];
    const w = buildWorkload(r0.scenario.model, { microBatch: 1, attention: 'standard' });
    // A recycle runs the whole network but the output heads.
    const lossForward = w.blocks.at(-1)!.ops.filter((o) => o.class === 'loss').reduce((a, o) => a + o.flops.forward, 0);
    expect(v(r1).forwardFlops - v(r0).forwardFlops).toBeCloseTo(v(r0).forwardFlops - lossForward, -3);
    expect(v(r3).forwardFlops - v(r0).forwardFlops).toBeCloseTo(3 * (v(r1).forwardFlops - v(r0).forwardFlops), -3);
    expect(v(r3).inputGradFlops).toBe(v(r0).inputGradFlops);
    expect(v(r3).weightGradFlops).toBe(v(r0).weightGradFlops);
    expect(r3.report.stages[0].peakActivations).toBe(r0.report.stages[0].peakActivations);
    expect(r3.report.stepTime).toBeGreaterThan(r1.report.stepTime);
  });

  it('per-block checkpointing (recompute full): each more block keeps exactly its MSA and pair inputs, and the backward runs the forward again', () => {
    const full = (layers: number) => simulate(small({ layers }, { recompute: 'full' }));
    const [four, five] = [full(4), full(5)];
    const { residues: r, msaRows: s, msaChannels: cm, pairChannels: cz } = four.scenario.model as typeof ALPHAFOLD2;
    const kept = 2 * elements({ msaRows: s, residues: r, channels: cm }) + 2 * elements({ residues: r, residues2: r, channels: cz });
    expect(five.plan.virtualStages[0].activationBytes - four.plan.virtualStages[0].activationBytes).toBe(kept);
    const none = simulate(small({ layers: 4 }));
    expect(four.report.stages[0].peakActivations).toBeLessThan(none.report.stages[0].peakActivations / 3);
    // The rerun: every Evoformer and extra-MSA block's forward, and nothing of the embedder or the heads.
    const blocksForward = none.plan.virtualStages[0].blocks.filter((u) => u.kind === 'layer').reduce((a, u) => a + u.forwardFlops, 0);
    expect(four.plan.virtualStages[0].inputGradFlops - none.plan.virtualStages[0].inputGradFlops).toBeCloseTo(blocksForward, -3);
  });

  it("calibration: one Evoformer block at N_r 256, N_s 128 in bf16 on an A100 40GB takes FastFold's measured 9.4 ms forward and 20.2 ms backward within 10% (Uni-Fold's benchmark)", () => {
    const stage = (layers: number) =>
      simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 1, gpu: 'a100-40gb' }, model: { preset: 'alphafold2', layers }, training: { globalBatch: 1, microBatch: 1, recycles: 0 }, parallel: { tp: 1, pp: 1, dp: 1 } })).plan.virtualStages[0];
    const [a, b] = [stage(8), stage(9)];
    expect(Math.abs((b.forwardNs - a.forwardNs) / 1e6 / 9.4 - 1)).toBeLessThan(0.1);
    expect(Math.abs((b.backwardNs - a.backwardNs) / 1e6 / 20.2 - 1)).toBeLessThan(0.1);
  });

  it('reports proteins per second, not tokens, and the model by its residues and MSA rows', () => {
    const { report } = simulate(small());
    expect(report.throughput.samplesPerSecond).toBeCloseTo(1 / report.stepTime, 9);
    expect(report.throughput.tokensPerSecond).toBeUndefined();
    expect(report.model).toMatchObject({ kind: 'evoformer', residues: 32, msaRows: 16, recycles: 0 });
  });
});
