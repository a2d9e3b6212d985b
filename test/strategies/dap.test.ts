import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScenarioError } from '../../src/errors.js';
import { emitTrace } from '../../src/report/trace.js';
import { simulate } from '../../src/simulate.js';
import { KIND } from '../../src/lower/resources.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';
import { cli } from '../support/cli.js';

// Oracles from FastFold (Cheng et al., 2022) as ../shared/REFERENCE.md collects them: per Evoformer block, forward,
// two all-to-alls of the MSA representation and four of the pair; all-gathers where an operation needs a whole axis;
// the backward mirrors them.
const dims = { residues: 32, msaRows: 16, extraMsaRows: 32 };
const evoformer = (dap: number, o: { layers?: number; extraLayers?: number; recompute?: string; recycles?: number; overlap?: boolean; dp?: number; zero?: number; flash?: boolean } = {}) =>
  scenario({
    cluster: { nodes: 1, gpusPerNode: dap * (o.dp ?? 1) },
    model: { preset: 'alphafold2', layers: o.layers ?? 2, extraLayers: o.extraLayers ?? 1, ...dims },
    training: { globalBatch: 2 * (o.dp ?? 1), microBatch: 1, recycles: o.recycles ?? 0, recompute: o.recompute ?? 'none', flashAttention: o.flash ?? false },
    parallel: { tp: 1, pp: 1, dp: o.dp ?? 1, dap, dapOverlap: o.overlap ?? false, zero: o.zero ?? 0 },
  });

describe('Dynamic Axial Parallelism', () => {
  it("law: the activation peak per device divides by the DAP degree, but for what stays whole (the structure module, gathered biases and projections): within 2.5% a degree at AlphaFold 2's initial-training crop", () => {
    const peak = (P: number) =>
      simulate(
        scenario({
          cluster: { nodes: 1, gpusPerNode: P },
          model: { preset: 'alphafold2', layers: 4 },
          training: { globalBatch: 1, microBatch: 1, recycles: 0 },
          parallel: { tp: 1, pp: 1, dp: 1, dap: P },
        }),
      ).report.stages[0].peakActivations;
    const one = peak(1);
    for (const P of [2, 4, 8]) {
      const ratio = (peak(P) * P) / one;
      expect(ratio).toBeGreaterThanOrEqual(1);
      expect(ratio).toBeLessThan(1 + 0.025 * P);
    }
  });

  it("law: each device sends (P-1)/P² of the switched tensor per all-to-all: 2 of the MSA and 4 of the pair per block and pass, of either stack (one MSA and one pair fewer in a stack's first block, but for the pair where the main stack follows the extra-MSA one)", () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 4, 8), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 2 }), (P, L, E) => {
        const sim = simulate(evoformer(P, { layers: L, extraLayers: E }));
        const { residues: r, msaRows: s, extraMsaRows: se } = dims;
        const msa = 2 * s * r * 256;
        const extra = 2 * se * r * 64;
        const pair = 2 * r * r * 128;
        const perDevice = sim.report.communication.byKind.allToAll / P;
        const switches = msa * (2 * L - 1) + (E > 0 ? extra * (2 * E - 1) : 0) + pair * (4 * (L + E) - 1);
        // Forward and backward, two micro-batches.
        expect(perDevice / (2 * 2 * switches * ((P - 1) / P ** 2))).toBeCloseTo(1, 9);
        expect(sim.report.communication.byKindAndLinkType.allToAll.nvlink).toBe(sim.report.communication.byKind.allToAll);
      }),
      { numRuns: 8 },
    );
  });

  it('reduce-scatters in the backward what the forward all-gathers, but for the pair the unsplit structure module gathers whole', () => {
    const { byKind } = simulate(evoformer(4)).report.communication;
    expect(byKind.allGather).toBeGreaterThan(0);
    // A ring all-gather and a ring reduce-scatter of the same tensor send the same bytes. The structure module's
    // gather of the pair (bf16, two micro-batches, (P-1)/P of it sent by each of the 4 ranks) has no mirror.
    const pairGather = 2 * (2 * 32 * 32 * 128) * 3;
    expect((byKind.allGather - byKind.reduceScatter) / pairGather).toBeCloseTo(1, 9);
  });

  it('law: every step with DAP obeys the step laws (every byte received, memory back to baseline) with or without overlap, checkpointing, recycling, ZeRO and data parallelism', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 4),
        fc.boolean(),
        fc.constantFrom('none', 'full'),
        fc.constantFrom(0, 1),
        fc.constantFrom(0, 2, 3),
        fc.constantFrom(1, 2),
        (dap, overlap, recompute, recycles, zero, dp) => {
          checkStepLaws(simulate(evoformer(dap, { overlap: overlap && dap > 1, recompute, recycles, zero: dap * dp > 1 ? zero : 0, dp })));
        },
      ),
      { numRuns: 10 },
    );
  });

  it('sums gradients over the DAP group as over data-parallel replicas', () => {
    const sim = simulate(evoformer(4));
    const psi = sim.plan.stages[0].parametersPerDevice;
    // A ring all-reduce of bf16 gradients over 4 ranks: each rank sends 2·(3/4) of them.
    expect(sim.report.communication.byKind.allReduce / 4 / (2 * (3 / 4) * psi * 2)).toBeCloseTo(1, 9);
  });

  it("dapOverlap runs each pass's DAP collectives alongside its compute, never before it starts, and the next compute waits for both: a shorter step, the same bytes", () => {
    const plain = simulate(evoformer(8, { layers: 4, dp: 1 }));
    const overlapped = simulate(evoformer(8, { layers: 4, overlap: true }));
    expect(overlapped.report.stepTime).toBeLessThan(plain.report.stepTime);
    expect(overlapped.report.exposedCommunicationTime).toBeLessThan(plain.report.exposedCommunicationTime);
    expect(overlapped.report.communication.bytes).toBe(plain.report.communication.bytes);
    const { graph: g, labels } = overlapped.plan;
    const { startNs, endNs } = overlapped.execution;
    const computes: number[] = [];
    const collectives: number[] = [];
    for (let op = 0; op < g.count; op++) {
      if (g.device[op] !== 0) continue;
      const kind = labels.kind[g.label[op]];
      if ((kind === KIND.forward || kind === KIND.backward) && endNs[op] > startNs[op]) computes.push(op);
      if (kind === KIND.allToAll || kind === KIND.allGather || kind === KIND.reduceScatter) collectives.push(op);
    }
    computes.sort((a, b) => startNs[a] - startNs[b]);
    let overlapping = 0;
    for (const c of collectives) {
      const i = computes.findLastIndex((p) => startNs[p] <= startNs[c]);
      expect(i).toBeGreaterThanOrEqual(0);
      if (i + 1 < computes.length) expect(startNs[computes[i + 1]]).toBeGreaterThanOrEqual(endNs[c]);
      if (startNs[c] < endNs[computes[i]]) overlapping++;
      // Reduce-scatters mirror the forward's all-gathers: only a backward has them.
      if (labels.kind[g.label[c]] === KIND.reduceScatter) expect(labels.kind[g.label[computes[i]]]).toBe(KIND.backward);
    }
    expect(overlapping).toBe(collectives.length);
  });

  it("the trace shows DAP's all-to-alls and all-gathers on the GPU's dap lane", () => {
    let text = '';
    emitTrace(simulate(evoformer(2)), (chunk) => (text += chunk));
    const events = (JSON.parse(text) as { traceEvents: { name: string; ph: string; tid?: number; args?: { name?: string } }[] }).traceEvents;
    const lane = events.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'dap');
    expect(lane).toBeDefined();
    const onLane = new Set(events.filter((e) => e.ph === 'X' && e.tid === lane!.tid).map((e) => e.name.replace(/ mb\d+$/, '')));
    expect([...onLane].sort()).toEqual(['DAP allGather', 'DAP allToAll', 'DAP reduceScatter']);
  });
});

describe('Dynamic Axial Parallelism: bad input', () => {
  const refused = (patch: Record<string, unknown>) => {
    try {
      scenario(patch);
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioError);
      return (e as ScenarioError).message;
    }
    throw new Error('accepted');
  };
  const af2 = { cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'alphafold2' }, training: { globalBatch: 4, microBatch: 1 } };

  it('refuses dap on a GPT-shaped model, naming what would split it', () => {
    expect(refused({ cluster: { nodes: 1, gpusPerNode: 4 }, parallel: { tp: 1, pp: 1, dap: 4 } })).toMatch(/parallel\.dap.*GPT-shaped.*model\.kind: evoformer/s);
  });

  it('refuses a degree that does not divide the residues or the MSA rows, listing the sizes', () => {
    expect(refused({ ...af2, cluster: { nodes: 1, gpusPerNode: 3 }, parallel: { tp: 1, pp: 1, dap: 3 } })).toMatch(/model\.residues \(256\) and model\.msaRows \(128\) and model\.extraMsaRows \(1024\) are not divisible by 3; .*: 1, 2$/);
    expect(refused({ ...af2, model: { preset: 'alphafold2', msaRows: 126 }, parallel: { tp: 1, pp: 1, dap: 4 } })).toMatch(/model\.msaRows \(126\) is not divisible by 4/);
  });

  it('refuses tensor, sequence, context and pipeline parallelism and GPT fields on an Evoformer, naming DAP', () => {
    expect(refused({ ...af2, parallel: { tp: 4, pp: 1 } })).toMatch(/parallel\.tp.*does not apply to model\.kind evoformer.*parallel\.dap/s);
    expect(refused({ ...af2, parallel: { tp: 2, pp: 1, dp: 2, sequenceParallel: true } })).toMatch(/sequenceParallel/);
    expect(refused({ ...af2, parallel: { tp: 1, pp: 1, ulysses: 4 } })).toMatch(/parallel\.ulysses.*does not apply/s);
    expect(refused({ ...af2, parallel: { tp: 1, pp: 1, cp: 4 } })).toMatch(/parallel\.cp.*does not apply/s);
    expect(refused({ ...af2, training: { globalBatch: 4, recompute: 'selective' }, parallel: { tp: 1, pp: 1 } })).toMatch(/training\.recompute.*checkpointed per block/s);
    expect(refused({ ...af2, parallel: { tp: 1, pp: 4 } })).toMatch(/parallel\.pp.*not pipelined/s);
    expect(refused({ ...af2, model: { preset: 'alphafold2', hidden: 1024 }, parallel: { tp: 1, pp: 1 } })).toMatch(/model\.hidden does not apply to a model of kind evoformer/);
    expect(refused({ training: { globalBatch: 8, recycles: 2 } })).toMatch(/training\.recycles.*evoformer/s);
  });

  it('the CLI exits 3 with the message', async () => {
    const { code, stderr } = await cli('run', 'scenarios/alphafold2-initial-training.yaml', '--set', 'parallel.dap=3');
    expect(code).toBe(3);
    expect(stderr).toMatch(/parallel\.dap/);
    expect(stderr).not.toMatch(/at .*\.ts:\d+/);
  });
});
