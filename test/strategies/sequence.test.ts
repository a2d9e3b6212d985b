import { describe, expect, it } from 'vitest';
import { ScenarioError } from '../../src/errors.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';

// Oracles from Korthikanti et al. (MLSys 2023), Table 2 and §4.2.2, as ../shared/REFERENCE.md collects them.
const gpt = { preset: 'gpt3-1.3b', seqLength: 1024 };

describe('Megatron sequence parallelism: activation memory (Korthikanti et al., Table 2)', () => {
  const run = (t: number, recompute: string, p = 4, m = 8) => {
    const sc = scenario({ cluster: { nodes: 1, gpusPerNode: t * p }, model: gpt, training: { globalBatch: m, microBatch: 2, recompute }, parallel: { tp: t, pp: p, dp: 1, sequenceParallel: true } });
    const { seqLength: s, hidden: h, heads: a } = sc.model;
    return { sim: simulate(sc), sbh: s * 2 * h, a, s, h, layers: sc.parallel.layersPerStage[0], inFlight: Math.min(p, m) };
  };

  it.each([2, 4, 8])('TP+SP, t=%i: stage 0 peaks at p micro-batches of sbh(34/t + 5as/(ht)) per layer', (t) => {
    const { sim, sbh, a, s, h, layers, inFlight } = run(t, 'none');
    expect(sim.report.stages[0].peakActivations).toBeCloseTo(inFlight * layers * sbh * (34 / t + (5 * a * s) / (h * t)), 0);
  });

  it.each([2, 4])('TP+SP+selective recompute, t=%i: sbh·34/t per layer', (t) => {
    const { sim, sbh, layers, inFlight } = run(t, 'selective');
    expect(sim.report.stages[0].peakActivations).toBeCloseTo(inFlight * layers * sbh * (34 / t), 0);
  });

  it('TP+SP+full recompute: each layer keeps its sequence-split input, 2sbh/t, and one layer is rebuilt at a time', () => {
    const t = 2;
    const { sim, sbh, a, s, h, layers, inFlight } = run(t, 'full');
    expect(sim.report.stages[0].peakActivations).toBeCloseTo(inFlight * layers * ((2 * sbh) / t) + sbh * (32 / t + (5 * a * s) / (h * t)), 0);
  });
});

describe('Megatron sequence parallelism: communication', () => {
  const pair = (t: number, p: number, extra: Record<string, unknown> = {}) => {
    const make = (sequenceParallel: boolean) =>
      simulate(scenario({ cluster: { nodes: 1, gpusPerNode: t * p }, model: { ...gpt, tiedEmbeddings: false }, training: { globalBatch: 6, microBatch: 2, ...extra }, parallel: { tp: t, pp: p, dp: 1, sequenceParallel } })).report;
    return { tp: make(false), sp: make(true) };
  };

  it.each([2, 4, 8])('t=%i: every all-reduce becomes a reduce-scatter and an all-gather; each device sends the same bytes as without SP', (t) => {
    const { tp, sp } = pair(t, 1);
    expect(sp.communication.byKind.allReduce).toBe(0);
    expect(sp.communication.byKind.reduceScatter).toBeCloseTo(tp.communication.byKind.allReduce / 2, 0);
    expect(sp.communication.byKind.allGather).toBeCloseTo(tp.communication.byKind.allReduce / 2, 0);
    sp.devices.forEach((d, i) => expect(d.sentBytes / tp.devices[i].sentBytes).toBeCloseTo(1, 12));
  });

  it('with full recompute too: the recomputed forward repeats its reduce-scatters and all-gathers', () => {
    const { tp, sp } = pair(4, 1, { recompute: 'full' });
    expect(sp.communication.byKind.reduceScatter + sp.communication.byKind.allGather).toBeCloseTo(tp.communication.byKind.allReduce, 0);
  });

  it('pipeline transfers are b·s·h/t per rank per micro-batch, boundary and direction: with SP sent as they lie; without, scattered and gathered', () => {
    const [t, p, m] = [4, 2, 3];
    const { tp, sp } = pair(t, p);
    const bshBytes = 2 * gpt.seqLength * 2048 * 2;
    expect(sp.communication.byKind.p2p).toBe(2 * (p - 1) * m * t * (bshBytes / t));
    // Without SP every rank holds the whole tensor: Megatron's scatter/gather sends 1/t of it and gathers the rest.
    expect(tp.communication.byKind.p2p).toBe(2 * (p - 1) * m * t * (bshBytes / t));
    expect(tp.communication.byKind.allGather).toBe(2 * (p - 1) * m * (t - 1) * bshBytes);
  });
});

describe('Korthikanti et al., Table 3: the 22B and 175B configurations on 80 GB A100', () => {
  // Sequence 2,048 and vocabulary 51,200 (§6); the 175B model runs the interleaved schedule with three chunks.
  const configurations = {
    '22B': { cluster: { nodes: 1, gpusPerNode: 8 }, model: { layers: 48, hidden: 6144, heads: 64, vocab: 51200, seqLength: 2048 }, training: { globalBatch: 4, microBatch: 4 }, parallel: { tp: 8, pp: 1, dp: 1 } },
    '175B': {
      cluster: { nodes: 8, gpusPerNode: 8 },
      model: { layers: 96, hidden: 12288, heads: 96, vocab: 51200, seqLength: 2048 },
      training: { globalBatch: 64, microBatch: 1 },
      parallel: { tp: 8, pp: 8, dp: 1, schedule: 'interleaved', chunks: 3 },
    },
  };
  const fits = (base: (typeof configurations)['22B'], sequenceParallel: boolean, recompute: string) =>
    simulate(scenario({ ...base, training: { ...base.training, recompute }, parallel: { ...base.parallel, sequenceParallel } }, { name: 'table-3', seed: 1 })).report.memory.fits;

  it.each(Object.keys(configurations))('%s: tensor parallelism alone, and with sequence parallelism alone, does not fit; with sequence parallelism and selective recompute it fits', (name) => {
    const base = configurations[name as keyof typeof configurations];
    expect(fits(base, false, 'none')).toBe(false);
    expect(fits(base, true, 'none')).toBe(false);
    expect(fits(base, true, 'selective')).toBe(true);
  });
});

describe('bad input', () => {
  const errorOf = (patch: Record<string, unknown>) => {
    try {
      scenario(patch);
    } catch (error) {
      return error as ScenarioError;
    }
    throw new Error('expected a ScenarioError');
  };

  it('sequence parallelism with tp = 1 names the field and what would be valid (exit 3)', () => {
    const error = errorOf({ parallel: { tp: 1, pp: 4, dp: 1, sequenceParallel: true } });
    expect(error).toBeInstanceOf(ScenarioError);
    expect(error.exitCode).toBe(3);
    expect(error.message).toMatch(/parallel\.sequenceParallel: sequence parallelism splits .* but tp is 1; set parallel\.tp to 2 or more, or sequenceParallel: false/);
  });

  it('a sequence length not divisible by tp names the field and what would be valid (exit 3)', () => {
    const error = errorOf({ model: { preset: 'gpt-tiny', seqLength: 510 }, parallel: { tp: 4, pp: 1, dp: 1, sequenceParallel: true } });
    expect(error.exitCode).toBe(3);
    expect(error.message).toMatch(/parallel\.sequenceParallel: .*model\.seqLength 510 is not divisible by 4; use a sequence length that is a multiple of 4/);
  });
});
