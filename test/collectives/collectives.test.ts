import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { COLLECTIVE_KINDS, planCollective } from '../../src/collectives/collectives.js';

const sent = (plan: ReturnType<typeof planCollective>, rank: number) => plan.flows.filter((f) => f.source === rank).reduce((a, f) => a + f.bytes, 0);

describe('planCollective (ring volumes from REFERENCE.md)', () => {
  it('law: per-rank bytes sent for every kind and group size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 64 }), fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 1, max: 4 }), (n, bytes, repeat) => {
        const group = Array.from({ length: n }, (_, i) => 10 + i);
        const expected: Record<string, (rank: number) => number> = {
          allReduce: () => (2 * (n - 1) * bytes) / n,
          reduceScatter: () => ((n - 1) * bytes) / n,
          allGather: () => ((n - 1) * bytes) / n,
          allToAll: () => ((n - 1) * bytes) / n,
          broadcast: (i) => (i < n - 1 ? bytes : 0),
          p2p: (i) => (i === 0 ? bytes : 0),
        };
        for (const kind of COLLECTIVE_KINDS) {
          const plan = planCollective(kind, group, bytes, repeat);
          group.forEach((rank, i) => expect(sent(plan, rank)).toBeCloseTo(repeat * expected[kind](i), 3));
          for (const f of plan.flows) expect(f.source).not.toBe(f.target);
        }
      }),
    );
  });

  it('algorithm steps: 2(n-1) for all-reduce, n-1 for reduce-scatter, all-gather and broadcast', () => {
    const g = [0, 1, 2, 3];
    expect(planCollective('allReduce', g, 8).steps).toBe(6);
    expect(planCollective('reduceScatter', g, 8).steps).toBe(3);
    expect(planCollective('allGather', g, 8).steps).toBe(3);
    expect(planCollective('broadcast', g, 8).steps).toBe(3);
    expect(planCollective('allReduce', g, 8, 5).steps).toBe(30);
  });

  it('a group of one, or nothing to move, plans nothing', () => {
    expect(planCollective('allReduce', [3], 100)).toEqual({ flows: [], steps: 0, ring: false });
    expect(planCollective('allReduce', [0, 1], 0)).toEqual({ flows: [], steps: 0, ring: false });
  });
});
