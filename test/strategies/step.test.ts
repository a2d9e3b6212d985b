import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { KIND, LANE } from '../../src/lower/resources.js';
import { embeddingParameters, layerParameters, totalParameters } from '../support/closed-forms.js';
import { scenario } from '../support/scenarios.js';

// Oracles from ../shared/REFERENCE.md: closed forms belong in tests, never in the simulator.
const gpt = (extra: Record<string, unknown> = {}) => ({ preset: 'gpt3-1.3b', seqLength: 1024, ...extra });

describe('model states', () => {
  it('each device holds 16 bytes per parameter of its stage (mixed-precision Adam); a replica holds 16 bytes per parameter, plus the ones Megatron replicates over tensor parallelism', () => {
    const t = 2;
    const sc = scenario({ cluster: { nodes: 1, gpusPerNode: 8 }, model: gpt({ tiedEmbeddings: false }), training: { globalBatch: 8 }, parallel: { tp: t, pp: 2, dp: 2 } });
    const sim = simulate(sc);
    const { layers: L, hidden: h, seqLength: s } = sc.model;
    // Two layer norms (2h each) and the two row-parallel biases (h each) per layer, and the position embedding.
    const replicated = 6 * h * L + s * h;
    let replica = 0;
    for (const d of sim.report.devices.filter((x) => x.coordinates.dp === 0)) {
      const b = d.memoryBreakdown;
      expect(b.params).toBeCloseTo(2 * sim.plan.stages[d.coordinates.pp!].parametersPerDevice, 0);
      expect(b.grads).toBe(b.params);
      expect(b.optimizer).toBeCloseTo(6 * b.params, 0);
      replica += b.params + b.grads + b.optimizer;
    }
    expect(replica / (16 * (totalParameters(sc.model) + (t - 1) * replicated))).toBeCloseTo(1, 9);
  });

  it('fp32 Adam is 16 bytes per parameter too, SGD with momentum 12', () => {
    const base = { cluster: { nodes: 1, gpusPerNode: 1 }, model: gpt(), training: { globalBatch: 1 }, parallel: { tp: 1, pp: 1, dp: 1 } };
    const total = (training: Record<string, unknown>) => {
      const sim = simulate(scenario({ ...base, training: { globalBatch: 1, ...training } }));
      const b = sim.report.devices[0].memoryBreakdown;
      return (b.params + b.grads + b.optimizer) / sim.report.model.parameters;
    };
    expect(total({ precision: 'fp32' })).toBeCloseTo(16, 9);
    expect(total({ precision: 'bf16', optimizer: 'sgd' })).toBeCloseTo(12, 9);
    expect(total({ precision: 'fp32', optimizer: 'sgd' })).toBeCloseTo(12, 9);
  });

  it('parameters match the reference formula Ψ = 12Lh²(1 + 13/(12h) + (V+s)/(12Lh))', () => {
    const sc = scenario({ model: { preset: 'gpt3-175b' } });
    const { layers: L, hidden: h, vocab: V, seqLength: s } = sc.model;
    expect(totalParameters(sc.model) / (12 * L * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * L * h)))).toBeCloseTo(1, 12);
  });
});

describe('activation memory with 1F1B (Korthikanti et al., Table 2)', () => {
  const run = (t: number, recompute: string, p = 4, m = 8) => {
    const sc = scenario({ cluster: { nodes: 1, gpusPerNode: t * p }, model: gpt(), training: { globalBatch: m, microBatch: 2, recompute }, parallel: { tp: t, pp: p, dp: 1 } });
    const sim = simulate(sc);
    const { seqLength: s, hidden: h, heads: a } = sc.model;
    const layers = sc.parallel.layersPerStage[0];
    return { sim, sbh: s * 2 * h, a, s, h, t, layers, inFlight: Math.min(p, m) };
  };

  it.each([1, 2, 4])('no recompute, tp=%i: stage 0 peaks at p micro-batches of sbh(10 + 24/t + 5as/(ht)) per layer', (t) => {
    const { sim, sbh, a, s, h, layers, inFlight } = run(t, 'none');
    expect(sim.report.stages[0].peakActivations).toBeCloseTo(inFlight * layers * sbh * (10 + 24 / t + (5 * a * s) / (h * t)), 0);
  });

  it.each([1, 2])('selective recompute, tp=%i: sbh(10 + 24/t) per layer', (t) => {
    const { sim, sbh, layers, inFlight } = run(t, 'selective');
    expect(sim.report.stages[0].peakActivations).toBeCloseTo(inFlight * layers * sbh * (10 + 24 / t), 0);
  });

  it('full recompute: 2sbh per layer kept, plus one layer rebuilt during a backward (all of it but its kept input)', () => {
    const { sim, sbh, a, s, h, layers, inFlight } = run(1, 'full');
    expect(sim.report.stages[0].peakActivations).toBeCloseTo(inFlight * layers * 2 * sbh + sbh * (32 + (5 * a * s) / h), 0);
  });

  it('full recompute repeats the forward: hardware FLOPs exceed model FLOPs by one forward (96 vs 72 per layer)', () => {
    const { sim } = run(1, 'full');
    const ratio = sim.plan.hardwareFlops / sim.plan.modelFlops;
    expect(ratio).toBeGreaterThan(1.3);
    expect(ratio).toBeLessThan(96 / 72 + 1e-9);
  });
});

describe('communication volumes', () => {
  it('data parallel: each device sends 2(N-1)/N of its gradient bytes per step (ring all-reduce)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), (n) => {
        const sc = scenario({ cluster: { nodes: 1, gpusPerNode: n }, model: gpt({ tiedEmbeddings: false }), training: { globalBatch: 2 * n }, parallel: { tp: 1, pp: 1, dp: n } });
        const sim = simulate(sc);
        const gradBytes = 2 * totalParameters(sc.model);
        for (const d of sim.report.devices) expect(d.sentBytes / gradBytes).toBeCloseTo((2 * (n - 1)) / n, 9);
        expect(sim.report.communication.byKind.allReduce).toBeCloseTo(n * ((2 * (n - 1)) / n) * gradBytes, -3);
      }),
      { numRuns: 7 },
    );
  });

  it('tensor parallel: 2 all-reduces of b·s·h per layer in forward and 2 in backward (plus embedding and logits)', () => {
    const t = 4;
    const m = 3;
    const sc = scenario({ cluster: { nodes: 1, gpusPerNode: t }, model: gpt(), training: { globalBatch: 2 * m, microBatch: 2 }, parallel: { tp: t, pp: 1, dp: 1 } });
    const sim = simulate(sc);
    const bshBytes = 2 * sc.model.seqLength * sc.model.hidden * 2;
    const allReduces = m * (4 * sc.model.layers + 2);
    for (const d of sim.report.devices) expect(d.sentBytes).toBeCloseTo(allReduces * ((2 * (t - 1)) / t) * bshBytes, -3);
  });

  it('pipeline: b·s·h per micro-batch per stage boundary per direction, from every tensor-parallel rank (scatter/gather off)', () => {
    const [t, p, dp, m] = [2, 4, 1, 6];
    const sc = scenario({ cluster: { nodes: 1, gpusPerNode: t * p * dp }, model: gpt(), training: { globalBatch: 2 * m * dp, microBatch: 2 }, parallel: { tp: t, pp: p, dp, scatterGather: false } });
    const sim = simulate(sc);
    const bshBytes = 2 * sc.model.seqLength * sc.model.hidden * 2;
    expect(sim.report.communication.byKind.p2p).toBe(2 * (p - 1) * m * dp * t * bshBytes);
  });

  it('tied embeddings: first and last stage all-reduce the word-embedding gradients', () => {
    const tied = simulate(scenario({ model: gpt({ tiedEmbeddings: true }), parallel: { tp: 1, pp: 4, dp: 1 } }));
    const untied = simulate(scenario({ model: gpt({ tiedEmbeddings: false }), parallel: { tp: 1, pp: 4, dp: 1 } }));
    const wordEmbedding = 2 * tied.scenario.model.vocab * tied.scenario.model.hidden;
    expect(tied.report.communication.byKind.allReduce).toBeCloseTo(2 * wordEmbedding, -2);
    expect(untied.report.communication.byKind.allReduce).toBe(0);
  });

  it('bytes by link type add up to all bytes; intra-node traffic is NVLink, cross-node InfiniBand', () => {
    const sim = simulate(scenario({ cluster: { nodes: 2, gpusPerNode: 4 }, model: gpt(), training: { globalBatch: 8 }, parallel: { tp: 4, pp: 2, dp: 1 } }));
    const c = sim.report.communication;
    expect(Object.values(c.byLinkType).reduce((a, b) => a + b, 0)).toBeCloseTo(c.bytes, -2);
    expect(c.byLinkType.infiniband).toBeCloseTo(c.byKind.p2p + c.byKind.allReduce + c.byKind.allGather - c.byLinkType.nvlink, -2);
    expect(c.byLinkType.nvlink).toBeGreaterThan(0);
    expect(c.byLinkType.infiniband).toBeGreaterThanOrEqual(c.byKind.p2p);
  });
});

describe('data-parallel buckets overlap the last backward', () => {
  it('splits the last backward into bucket segments and starts all-reduces before it ends', () => {
    const sim = simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, model: gpt(), training: { globalBatch: 8 }, parallel: { tp: 1, pp: 1, dp: 4, gradientBucket: '25MiB' } }));
    const g = sim.plan.graph;
    const dpOps: number[] = [];
    let lastBackwardEnd = 0;
    for (let op = 0; op < g.count; op++) {
      if (g.device[op] !== 0) continue;
      if (sim.plan.labels.kind[g.label[op]] === KIND.backward) lastBackwardEnd = Math.max(lastBackwardEnd, sim.execution.endNs[op]);
    }
    for (let lane = sim.plan.resources.lane(0, LANE.dp), i = g.program.start[lane]; i < g.program.start[lane + 1]; i++) dpOps.push(g.program.items[i]);
    expect(dpOps.length).toBeGreaterThan(3);
    expect(sim.execution.startNs[dpOps[0]]).toBeLessThan(lastBackwardEnd);
  });
});

describe('variability', () => {
  const base = { cluster: { nodes: 1, gpusPerNode: 4 }, model: gpt(), training: { globalBatch: 8 }, parallel: { tp: 1, pp: 4, dp: 1 } };

  it('is off by default: durations are exact', () => {
    const sim = simulate(scenario(base));
    const g = sim.plan.graph;
    const forwards = new Set<number>();
    for (let op = 0; op < g.count; op++) if (sim.plan.labels.kind[g.label[op]] === KIND.forward && sim.plan.labels.stage[g.label[op]] === 1) forwards.add(g.timings.durationNs[g.timing[op]]);
    expect(forwards.size).toBe(1);
  });

  it('jitter is seeded: same seed same report, another seed another', () => {
    const run = (seed: number) => JSON.stringify(simulate(scenario({ ...base, seed, variability: { jitter: 0.05 } })).report);
    expect(run(3)).toBe(run(3));
    expect(run(3)).not.toBe(run(4));
  });

  it('stragglers slow the step', () => {
    const plain = simulate(scenario(base)).report.stepTime;
    const slowed = simulate(scenario({ ...base, variability: { stragglers: 1, stragglerSlowdown: 2 } })).report.stepTime;
    expect(slowed).toBeGreaterThan(plain * 1.2);
  });
});

describe('laws of the whole step', () => {
  it('more bandwidth never makes a step slower', () => {
    fc.assert(
      fc.property(
        fc.constantFrom([1, 2, 2, 2], [2, 4, 2, 1], [2, 2, 2, 2], [1, 8, 1, 8], [2, 4, 1, 4]),
        fc.double({ min: 0.2, max: 0.9, noNaN: true }),
        fc.double({ min: 1.01, max: 3, noNaN: true }),
        ([nodes, gpus, tp, pp], efficiency, factor) => {
          fc.pre(nodes * gpus >= tp * pp);
          const dp = (nodes * gpus) / (tp * pp);
          const make = (eff: number) =>
            simulate(scenario({ cluster: { nodes, gpusPerNode: gpus, linkEfficiency: Math.min(1, eff) }, model: gpt({ layers: 8 }), training: { globalBatch: 4 * dp }, parallel: { tp, pp, dp } })).report.stepTime;
          expect(make(efficiency * factor)).toBeLessThanOrEqual(make(efficiency));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('a slower pipeline link widens the bubble', () => {
    const run = (p2p: string) =>
      simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, training: { globalBatch: 8 }, parallel: { tp: 1, pp: 4, dp: 1 }, model: { preset: 'gpt-tiny', tiedEmbeddings: false }, costs: { forward: '1ms', backward: '2ms', p2p, optimizer: 0 } })).report;
    const fast = run('0us');
    const slow = run('500us');
    expect(slow.bubbleFraction).toBeGreaterThan(fast.bubbleFraction);
    expect(slow.stepTime).toBeGreaterThan(fast.stepTime);
  });

  it('uneven stages: layersPerStage sets each stage’s layers, parameters and time', () => {
    const sim = simulate(scenario({ model: gpt(), parallel: { tp: 1, pp: 4, dp: 1, layersPerStage: [3, 7, 7, 7] } }));
    expect(sim.report.stages.map((s) => s.layers)).toEqual([3, 7, 7, 7]);
    const [s0] = sim.plan.stages;
    expect(s0.parametersPerDevice).toBe(3 * layerParameters(sim.scenario.model) + embeddingParameters(sim.scenario.model));
    const [v0, v1] = sim.plan.virtualStages;
    expect(v1.forwardNs).toBeGreaterThan(2 * v0.forwardNs);
  });

  it('does-not-fit is an answer: the report names the device, tier and shortfall', () => {
    const sim = simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 1, gpu: { preset: 'a100-40gb', memory: '8GiB' } }, model: gpt(), training: { globalBatch: 2, microBatch: 2 }, parallel: { tp: 1, pp: 1, dp: 1 } }));
    expect(sim.report.memory.fits).toBe(false);
    const o = sim.report.memory.overflows[0];
    expect(o).toMatchObject({ tier: 'hbm', device: 0, capacity: 8 * 2 ** 30 });
    expect(o.excess).toBeGreaterThan(0);
    expect(sim.report.devices[0].peakMemory.hbm - o.capacity).toBeCloseTo(o.excess, 0);
  });
});
