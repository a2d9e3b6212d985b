import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate, type Simulation } from '../../src/simulate.js';
import { LANE, LANES } from '../../src/lower/resources.js';
import { scenario } from '../support/scenarios.js';

/** The oracle: every lane's intervals gathered, sorted and merged, then the communication union minus compute. */
function exposedByIntervals(sim: Simulation): number[] {
  const { graph } = sim.plan;
  const { startNs, endNs } = sim.execution;
  const devices = sim.plan.resources.devices;
  const compute: [number, number][][] = Array.from({ length: devices }, () => []);
  const comm: [number, number][][] = Array.from({ length: devices }, () => []);
  for (let op = 0; op < graph.count; op++) {
    if (endNs[op] <= startNs[op]) continue;
    for (let i = graph.lanesOf.start[op]; i < graph.lanesOf.start[op + 1]; i++) {
      const lane = graph.lanesOf.items[i];
      const device = Math.floor(lane / LANES.length);
      (lane % LANES.length === LANE.compute ? compute : comm)[device].push([startNs[op], endNs[op]]);
    }
  }
  const union = (list: [number, number][]) => {
    const out: [number, number][] = [];
    for (const [s, e] of [...list].sort((a, b) => a[0] - b[0])) {
      if (out.length > 0 && s <= out[out.length - 1][1]) out[out.length - 1][1] = Math.max(out[out.length - 1][1], e);
      else out.push([s, e]);
    }
    return out;
  };
  return Array.from({ length: devices }, (_, d) => {
    const busy = union(compute[d]);
    let total = 0;
    for (const [s, e] of union(comm[d])) {
      total += e - s;
      for (const [bs, be] of busy) total -= Math.max(0, Math.min(e, be) - Math.max(s, bs));
    }
    return total / 1e9;
  });
}

describe('exposed communication', () => {
  it('law: equals the union of communication intervals minus compute, per device, for any strategy', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('gpipe', '1f1b', 'zb-h1'),
        fc.constantFrom(0, 1, 2, 3),
        fc.constantFrom('none', 'cpu'),
        fc.integer({ min: 1, max: 3 }),
        (schedule, zero, offload, seed) => {
          const pp = zero >= 2 ? 1 : 2;
          if (zero === 3 && schedule === 'zb-h1') schedule = '1f1b';
          const sim = simulate(
            scenario({
              seed,
              cluster: { nodes: 1, gpusPerNode: 8 },
              training: { globalBatch: 16 },
              parallel: { tp: 2, pp, dp: 4 / pp, schedule, zero, offload: { optimizer: zero === 0 ? 'none' : offload } },
              variability: { jitter: 0.1 },
            }),
          );
          const expected = exposedByIntervals(sim);
          sim.report.devices.forEach((d, i) => expect(d.exposedCommunicationTime).toBeCloseTo(expected[i], 12));
          expect(expected.some((x) => x > 0)).toBe(true);
        },
      ),
      { numRuns: 30 },
    );
  });
});
