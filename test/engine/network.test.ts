import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventKernel } from '../../src/engine/kernel.js';
import { FlowNetwork, type LinkSet } from '../../src/engine/network.js';

function links(capacities: number[], binding?: number[]): LinkSet {
  return { count: capacities.length, capacityBytesPerSecond: Float64Array.from(capacities), binding: Uint8Array.from(binding ?? capacities.map(() => 1)) };
}

/**
 * Starts flows (path, bytes, start time ns) and returns each flow's end time in ns. Rates are recomputed after each
 * start (`now`), or once after every start of the instant (`instant`, as the executor does).
 */
function run(set: LinkSet, flows: { path: number[]; bytes: number; at?: number }[], rebalance: 'now' | 'instant' = 'now'): { ends: number[]; linkBytes: Float64Array; events: number } {
  const k = new EventKernel();
  const ends: number[] = [];
  const net = new FlowNetwork(k, set, (owner) => (ends[owner] = k.now));
  const begin = k.on((i) => {
    net.start(Int32Array.from(flows[i].path), flows[i].bytes, i);
    if (rebalance === 'now') net.rebalance();
    else net.rebalanceThisInstant();
  });
  flows.forEach((f, i) => k.schedule(f.at ?? 0, begin, i));
  k.run();
  return { ends, linkBytes: net.linkBytes, events: k.eventsProcessed };
}

describe('FlowNetwork', () => {
  it('a lone flow runs at its bottleneck rate', () => {
    const { ends } = run(links([100e9, 10e9, 50e9]), [{ path: [0, 1, 2], bytes: 1e9 }]);
    expect(ends[0]).toBe(100_000_000); // 1 GB at 10 GB/s = 0.1 s
  });

  it('two flows on one link share it equally', () => {
    const { ends } = run(links([10e9]), [
      { path: [0], bytes: 1e9 },
      { path: [0], bytes: 1e9 },
    ]);
    expect(ends).toEqual([200_000_000, 200_000_000]);
  });

  it('max-min: a flow limited elsewhere leaves the rest to others', () => {
    // Flow 0 crosses links 0 (10 GB/s) and 1 (2 GB/s); flow 1 only link 0. Max-min: 2 and 8 GB/s.
    const { ends } = run(links([10e9, 2e9]), [
      { path: [0, 1], bytes: 2e9 },
      { path: [0], bytes: 8e9 },
    ]);
    expect(ends[0]).toBe(1_000_000_000);
    expect(ends[1]).toBe(1_000_000_000);
  });

  it('rates are recomputed when a flow ends', () => {
    // Both share 10 GB/s; the small one ends at 0.2 s having moved 1 GB, then the big one runs alone.
    const { ends } = run(links([10e9]), [
      { path: [0], bytes: 1e9 },
      { path: [0], bytes: 3e9 },
    ]);
    expect(ends[0]).toBe(200_000_000);
    expect(ends[1]).toBe(400_000_000);
  });

  it('non-binding links never limit a flow', () => {
    const { ends } = run(links([10e9, 1], [1, 0]), [{ path: [0, 1], bytes: 1e9 }]);
    expect(ends[0]).toBe(100_000_000);
  });

  it('law: bytes are conserved and no flow beats its bottleneck, for any flows', () => {
    const arb = fc.record({
      capacities: fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 6 }),
      flows: fc.array(fc.record({ links: fc.uniqueArray(fc.nat(5), { minLength: 1, maxLength: 4 }), bytes: fc.integer({ min: 1, max: 1000 }), at: fc.integer({ min: 0, max: 100 }) }), { minLength: 1, maxLength: 12 }),
    });
    fc.assert(
      fc.property(arb, ({ capacities, flows }) => {
        const set = links(capacities.map((c) => c * 1e9));
        const fs = flows.map((f) => ({ path: f.links.map((l) => l % capacities.length).filter((l, i, a) => a.indexOf(l) === i), bytes: f.bytes * 1e6, at: f.at * 1000 }));
        const { ends, linkBytes } = run(set, fs);
        const expected = new Float64Array(capacities.length);
        fs.forEach((f, i) => {
          const bottleneck = Math.min(...f.path.map((l) => set.capacityBytesPerSecond[l]));
          expect(ends[i] - f.at).toBeGreaterThanOrEqual(Math.floor((f.bytes / bottleneck) * 1e9));
          for (const l of f.path) expected[l] += f.bytes;
        });
        expect(Array.from(linkBytes)).toEqual(Array.from(expected));
        // Work conservation on each link: it cannot carry its bytes faster than its capacity.
        const last = Math.max(...ends);
        for (let l = 0; l < capacities.length; l++) expect(linkBytes[l] / set.capacityBytesPerSecond[l]).toBeLessThanOrEqual(last / 1e9 + 1e-6);
      }),
    );
  });

  it('flows that end together are recomputed once: the flows they leave behind are rescheduled once', () => {
    // Eight short flows and eight long ones share link 8 (16 GB/s, 1 GB/s each); the short ones end together at 1 s,
    // the long ones then take 2 GB/s each for their last 2 GB.
    const short = Array.from({ length: 8 }, (_, i) => ({ path: [i, 8], bytes: 1e9 }));
    const long = Array.from({ length: 8 }, () => ({ path: [8], bytes: 3e9 }));
    const { ends, events } = run(links([...Array(8).fill(100e9), 16e9]), [...short, ...long], 'instant');
    expect(ends.slice(0, 8)).toEqual(Array(8).fill(1_000_000_000));
    expect(ends.slice(8)).toEqual(Array(8).fill(2_000_000_000));
    // 16 starts; the first flow's end, set while it was alone and stale once the others join; one recomputation at
    // each of 0, 1 and 2 s; 16 first ends (the long flows' stale by then); the long flows' 8 second ends: 44.
    // Recomputing after each short flow's end would give the long flows a new rate, and a new end, 8 times over.
    expect(events).toBe(44);
  });

  it.each(['now', 'instant'] as const)('law: finish times match a reference that recomputes max-min over all flows at every event (rates recomputed %s)', (mode) => {
    // The reference: fluid flows in continuous time, global progressive filling at every start and finish.
    function reference(capacities: number[], flows: { path: number[]; bytes: number; at: number }[]): number[] {
      const left = flows.map((f) => f.bytes);
      const end = flows.map(() => NaN);
      let now = 0;
      for (;;) {
        const active = flows.map((f, i) => i).filter((i) => flows[i].at <= now && Number.isNaN(end[i]));
        const pending = flows.map((f, i) => i).filter((i) => flows[i].at > now);
        if (active.length === 0 && pending.length === 0) return end;
        const rate = new Map<number, number>();
        const residual = [...capacities];
        const open = new Set(active);
        while (open.size > 0) {
          let best = Infinity;
          let bottleneck = -1;
          residual.forEach((r, l) => {
            const n = [...open].filter((i) => flows[i].path.includes(l)).length;
            if (n > 0 && r / n < best) [best, bottleneck] = [r / n, l];
          });
          for (const i of [...open].filter((i) => flows[i].path.includes(bottleneck))) {
            rate.set(i, best);
            open.delete(i);
            for (const l of flows[i].path) residual[l] -= best;
          }
        }
        const nextStart = Math.min(...pending.map((i) => flows[i].at));
        const nextEnd = Math.min(...active.map((i) => now + (left[i] / rate.get(i)!) * 1e9));
        const t = Math.min(nextStart, nextEnd);
        for (const i of active) {
          left[i] -= (rate.get(i)! * (t - now)) / 1e9;
          if (left[i] <= 1e-6 * flows[i].bytes) end[i] = t;
        }
        now = t;
      }
    }
    const arb = fc.record({
      capacities: fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 6 }),
      flows: fc.array(fc.record({ links: fc.uniqueArray(fc.nat(5), { minLength: 1, maxLength: 4 }), bytes: fc.integer({ min: 1, max: 1000 }), at: fc.integer({ min: 0, max: 100 }) }), { minLength: 1, maxLength: 12 }),
    });
    fc.assert(
      fc.property(arb, ({ capacities, flows }) => {
        // Starts up to 100 ms apart, so links empty and fill again; transfers last 10 us to 1 s.
        const fs = flows.map((f) => ({ path: f.links.map((l) => l % capacities.length).filter((l, i, a) => a.indexOf(l) === i), bytes: f.bytes * 1e6, at: f.at * 1_000_000 }));
        const caps = capacities.map((c) => c * 1e9);
        const { ends } = run(links(caps), fs, mode);
        const expected = reference(caps, fs);
        // The engine rounds each completion up to whole nanoseconds at every rate change: a few ns per flow at most.
        fs.forEach((_f, i) => expect(Math.abs(ends[i] - expected[i])).toBeLessThanOrEqual(2 * fs.length + 2));
      }),
      { numRuns: 200 },
    );
  });
});
