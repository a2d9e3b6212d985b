import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScenarioError } from '../../src/errors.js';
import { KIND } from '../../src/lower/resources.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';

// Context parallelism over P nodes of one GPU each, so that the ring runs over InfiniBand (GPU, PCIe switch, NIC).
const model = { preset: 'gpt3-1.3b', tiedEmbeddings: false };
interface Options {
  cp: number;
  seqLength?: number;
  cpAttention?: 'ring' | 'allgather';
  cpSplit?: 'zigzag' | 'contiguous';
  kvHeads?: number;
  /** Links so fast that communication costs only its latency. */
  ample?: boolean;
  causal?: boolean;
}
const run = (o: Options) =>
  simulate(
    scenario({
      cluster: { nodes: o.cp, gpusPerNode: 1, node: o.ample ? { preset: 'dgx-a100', nic: { bandwidth: '1PB/s' }, pcie: { bandwidth: '1PB/s' } } : 'dgx-a100' },
      model: { ...model, seqLength: o.seqLength ?? 8192, ...(o.kvHeads ? { kvHeads: o.kvHeads } : {}), ...(o.causal === false ? { causal: false } : {}) },
      training: { globalBatch: 2, microBatch: 1, flashAttention: true },
      parallel: { tp: 1, pp: 1, dp: 1, cp: o.cp, cpAttention: o.cpAttention ?? 'ring', cpSplit: o.cpSplit ?? 'zigzag' },
    }),
  );
/** Step time beyond the busiest compute lane: time every device waited, for communication or for another rank. */
const waited = (r: ReturnType<typeof run>['report']) => r.stepTime - Math.max(...r.devices.map((d) => d.busyTime));

describe('context parallelism', () => {
  it('ring: each device passes on (P-1) key/value blocks of its layers in a forward, and (P-1) blocks with their gradients plus one gradient hop in a backward', () => {
    for (const P of [2, 4]) {
      const sim = run({ cp: P, kvHeads: 4 });
      const { layers, seqLength: s, hidden: h, heads } = sim.scenario.model;
      // K and V of one layer on one device: 2 x s/P tokens x kvHeads x headDim, 2 bytes each; 2 micro-batches.
      const kv = 2 * (s / P) * 4 * (h / heads) * 2;
      const perDevice = sim.report.communication.byKind.ring / P;
      expect(perDevice).toBeCloseTo(2 * layers * kv * ((P - 1) + 2 * (P - 1) + 1), -3);
      // One GPU a node: every block crosses InfiniBand, as the report's split by link type says.
      expect(sim.report.communication.byKindAndLinkType.ring.infiniband).toBe(sim.report.communication.byKind.ring);
    }
  });

  it('law: with ample bandwidth a ring step is no slower than its compute (every transfer hides behind attention)', () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 4), fc.constantFrom(4096, 16384), fc.constantFrom('zigzag' as const, 'contiguous' as const), (P, seqLength, cpSplit) => {
        // The busiest rank never waits: balanced ranks not at all, unbalanced ones for each other, not for the network.
        const { report } = run({ cp: P, seqLength, cpSplit, ample: true });
        expect(waited(report) / report.stepTime).toBeLessThan(0.002);
      }),
      { numRuns: 4 },
    );
  });

  it('law: a ring shows exposed communication below the overlap threshold (short blocks), less and less of it above (long ones)', () => {
    // Attention work per block grows with the square of the block, its transfer linearly: c >= F/B at long sequences.
    // What stays exposed above the threshold is the last hop of each layer's key/value gradients in the backward.
    const exposed = [2048, 8192, 32768, 131072].map((seqLength) => 1 - run({ cp: 4, seqLength, kvHeads: 4, ample: true }).report.stepTime / run({ cp: 4, seqLength, kvHeads: 4 }).report.stepTime);
    expect(exposed[0]).toBeGreaterThan(0.3);
    for (let i = 1; i < exposed.length; i++) expect(exposed[i]).toBeLessThan(exposed[i - 1]);
    expect(exposed.at(-1)).toBeLessThan(0.03);
  });

  it('law: the causal contiguous split is never faster than zig-zag, and its imbalance shows as idle time on the early ranks', () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 4, 8), fc.constantFrom('ring' as const, 'allgather' as const), (P, cpAttention) => {
        const zigzag = run({ cp: P, cpAttention }).report;
        const contiguous = run({ cp: P, cpAttention, cpSplit: 'contiguous' }).report;
        expect(contiguous.stepTime).toBeGreaterThanOrEqual(zigzag.stepTime * (1 - 1e-9));
        // Rank 0 holds the first positions: the least work, the most idle time.
        expect(contiguous.devices[0].bubbleFraction).toBeGreaterThan(contiguous.devices[P - 1].bubbleFraction);
      }),
      { numRuns: 4 },
    );
  });

  it('without a causal mask both splits do the same work', () => {
    const zigzag = run({ cp: 4, causal: false }).report.stepTime;
    expect(run({ cp: 4, causal: false, cpSplit: 'contiguous' }).report.stepTime).toBeCloseTo(zigzag, 9);
  });

  it('law: the activation peak per device divides by the degree (all-gather keeps the gathered keys and values too)', () => {
    const one = run({ cp: 1 }).report.stages[0].peakActivations;
    for (const P of [2, 4, 8]) {
      expect((run({ cp: P }).report.stages[0].peakActivations * P) / one).toBeCloseTo(1, 9);
      // Under grouped-query attention (4 key/value heads of 16) the gathered keys and values are small.
      const gathered = (run({ cp: P, cpAttention: 'allgather', kvHeads: 4 }).report.stages[0].peakActivations * P) / run({ cp: 1, kvHeads: 4 }).report.stages[0].peakActivations;
      expect(gathered).toBeGreaterThan(1);
      expect(gathered).toBeLessThan(1.25);
    }
  });

  it('all-gather: keys and values gathered before attention and their gradients reduce-scattered after, per layer and micro-batch', () => {
    const P = 4;
    const sim = run({ cp: P, cpAttention: 'allgather', kvHeads: 4 });
    const { layers, seqLength: s, hidden: h, heads } = sim.scenario.model;
    const kvWhole = 2 * s * 4 * (h / heads) * 2; // K and V of the whole sequence, one layer
    const { allGather, reduceScatter, ring } = sim.report.communication.byKind;
    // planCollective counts a ring all-gather of the whole tensor as (P-1)/P of it sent per rank.
    expect(allGather / P).toBeCloseTo(2 * layers * kvWhole * ((P - 1) / P), -3);
    expect(reduceScatter).toBeCloseTo(allGather, -3);
    expect(ring).toBe(0);
  });

  it('sums the gradients over data x context and ZeRO shards over that group', () => {
    const sim = simulate(
      scenario({
        cluster: { nodes: 1, gpusPerNode: 4 },
        model: { ...model, seqLength: 4096 },
        training: { globalBatch: 2, microBatch: 1, flashAttention: true },
        parallel: { tp: 1, pp: 1, dp: 2, cp: 2, zero: 1 },
      }),
    );
    expect(sim.plan.program.gradients.axes).toEqual(['cp', 'dp']);
    expect(sim.plan.program.states.optimizer.shardAxes).toEqual(['cp', 'dp']);
  });

  it.each([
    ['a sequence not divisible by 2 x cp (zig-zag)', { cp: 4, seqLength: 4100 }, /parallel\.cp: model\.seqLength 4100 is not divisible by 8: the zig-zag split cuts it into 2 x cp = 8 chunks/],
    ['a sequence not divisible by cp (contiguous)', { cp: 4, seqLength: 4098, cpSplit: 'contiguous' }, /parallel\.cp: model\.seqLength 4098 is not divisible by 4: the contiguous split/],
    ['ring attention without FlashAttention', { cp: 2, flash: false }, /parallel\.cpAttention: ring attention computes attention block by block.*flashAttention: true, or cpAttention: allgather/],
    ['an unknown exchange', { cp: 2, cpAttention: 'broadcast' }, /parallel\.cpAttention: expected one of ring, allgather/],
  ])('bad input: %s exits 3 with what would be valid', (_label, o, pattern) => {
    const { seqLength, flash, ...parallel } = o as Record<string, unknown>;
    let error: unknown;
    try {
      scenario({
        cluster: { nodes: 1, gpusPerNode: parallel.cp as number },
        model: { ...model, seqLength: seqLength ?? 4096 },
        training: { globalBatch: 2, flashAttention: flash ?? true },
        parallel: { tp: 1, pp: 1, dp: 1, ...parallel },
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ScenarioError);
    expect((error as ScenarioError).exitCode).toBe(3);
    expect((error as ScenarioError).message).toMatch(pattern);
  });
});

describe('Ring Attention in the operation graph', () => {
  it('law: every key/value transfer is waited for (the next step, the next transfer, or after the last gradient hop the owner\'s next compute, collective or pipeline send), with tensor and sequence parallelism too', () => {
    for (const parallel of [{ tp: 1 }, { tp: 2, sequenceParallel: true }, { tp: 2, sequenceParallel: true, pp: 2, schedule: 'interleaved', chunks: 2 }]) {
      const gpus = 2 * (parallel.tp ?? 1) * ((parallel as { pp?: number }).pp ?? 1);
      const sim = simulate(
        scenario({
          cluster: { nodes: 1, gpusPerNode: gpus },
          model: { ...model, layers: 4, seqLength: 4096 },
          training: { globalBatch: 4, microBatch: 1, flashAttention: true },
          parallel: { pp: 1, dp: 1, cp: 2, ...parallel },
        }),
      );
      const { graph: g, labels } = sim.plan;
      let transfers = 0;
      for (let op = 0; op < g.count; op++) {
        if (labels.kind[g.label[op]] !== KIND.ring) continue;
        transfers++;
        expect(g.dependentFirst[op], `ring transfer ${op} with ${JSON.stringify(parallel)} has no dependent`).toBeGreaterThanOrEqual(0);
      }
      expect(transfers).toBeGreaterThan(0);
    }
  });
});
