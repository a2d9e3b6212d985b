import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClockRangeError, EventKernel, MAX_TIME, toNanoseconds } from '../../src/engine/kernel.js';

describe('EventKernel', () => {
  it('runs events in time order, equal times in scheduling order', () => {
    const k = new EventKernel(4);
    const seen: string[] = [];
    const t = k.on((a) => seen.push(`${k.now}:${a}`));
    k.schedule(30, t, 1);
    k.schedule(10, t, 2);
    k.schedule(10, t, 3);
    k.schedule(20, t, 4);
    k.schedule(10, t, 5);
    k.run();
    expect(seen).toEqual(['10:2', '10:3', '10:5', '20:4', '30:1']);
    expect(k.eventsProcessed).toBe(5);
  });

  it('lets handlers schedule more events, and stops at `until`', () => {
    const k = new EventKernel();
    const seen: number[] = [];
    const tick = k.on((n) => {
      seen.push(k.now);
      if (n > 0) k.schedule(k.now + 5, tick, n - 1);
    });
    k.schedule(0, tick, 10);
    k.run(20);
    expect(seen).toEqual([0, 5, 10, 15, 20]);
    expect(k.pending).toBe(1);
    expect(k.now).toBe(20);
  });

  it('refuses events in the past', () => {
    const k = new EventKernel();
    const t = k.on(() => k.schedule(k.now - 1, t));
    k.schedule(5, t);
    expect(() => k.run()).toThrow(/past/);
  });

  it('refuses events past 2^53 ns, where whole nanoseconds stop adding exactly, and runs one at the limit', () => {
    const k = new EventKernel();
    const seen: number[] = [];
    const t = k.on(() => seen.push(k.now));
    k.schedule(MAX_TIME, t);
    k.run();
    expect(seen).toEqual([2 ** 53 - 1]);
    expect(() => k.schedule(MAX_TIME + 2, t)).toThrow(ClockRangeError);
  });

  it('keeps separate state per instance', () => {
    const a = new EventKernel();
    const b = new EventKernel();
    const ta = a.on(() => {});
    b.on(() => {});
    a.schedule(100, ta);
    a.run();
    expect(a.now).toBe(100);
    expect(b.now).toBe(0);
  });

  it('law: pops are ordered by (time, insertion) for any schedule, across heap growth', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 400 }), (times) => {
        const k = new EventKernel(2);
        const popped: [number, number][] = [];
        const t = k.on((i) => popped.push([k.now, i]));
        times.forEach((time, i) => k.schedule(time, t, i));
        k.run();
        const expected = times.map((time, i) => [time, i] as [number, number]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
        expect(popped).toEqual(expected);
      }),
    );
  });
});

/** The reference: a list searched for the earliest (time, scheduling order) at every pop. */
class ReferenceQueue {
  private readonly entries: { at: number; seq: number; id: number }[] = [];
  private seq = 0;
  schedule(at: number, id: number): void {
    this.entries.push({ at, seq: this.seq++, id });
  }
  pop(): { at: number; id: number } | undefined {
    if (this.entries.length === 0) return undefined;
    let best = 0;
    for (let i = 1; i < this.entries.length; i++) {
      const e = this.entries[i];
      const b = this.entries[best];
      if (e.at < b.at || (e.at === b.at && e.seq < b.seq)) best = i;
    }
    return this.entries.splice(best, 1)[0];
  }
}

interface Queue {
  schedule(at: number, id: number): void;
  pop(): { at: number; id: number } | undefined;
}

/**
 * Runs a program on a reference queue and on the kernel: events start at `startTimes`; each, when run, schedules
 * children at now + `delaysOf(id)`, up to `limit` events in all. Returns both runs as "time:id" lists, the kernel
 * paused at each of `pauses` on the way.
 */
function runBoth(reference: Queue, startTimes: number[], delaysOf: (id: number) => number[], limit: number, pauses: number[] = []) {
  const expected: string[] = [];
  let nextId = 0;
  for (const at of startTimes) reference.schedule(at, nextId++);
  for (let e = reference.pop(); e; e = reference.pop()) {
    expected.push(`${e.at}:${e.id}`);
    for (const d of delaysOf(e.id)) if (nextId < limit) reference.schedule(e.at + d, nextId++);
  }
  const k = new EventKernel(2);
  const actual: string[] = [];
  nextId = 0;
  const type = k.on((id) => {
    actual.push(`${k.now}:${id}`);
    for (const d of delaysOf(id)) if (nextId < limit) k.schedule(k.now + d, type, nextId++);
  });
  for (const at of startTimes) k.schedule(at, type, nextId++);
  for (const until of [...pauses].sort((x, y) => x - y)) {
    k.run(until);
    expect(k.now).toBeGreaterThanOrEqual(until);
  }
  k.run();
  expect(k.pending).toBe(0);
  return { expected, actual };
}

describe('EventKernel against a reference queue', () => {
  it('thousands of events at one instant still run in scheduling order', () => {
    const k = new EventKernel(2);
    const seen: number[] = [];
    const t = k.on((i) => {
      seen.push(i);
      // Each early event schedules another at the same instant: they must run after all that were already due.
      if (i < 3000) k.schedule(k.now, t, 10_000 + i);
    });
    for (let i = 0; i < 5000; i++) k.schedule(i % 2 === 0 ? 7 : 3, t, i);
    k.run();
    const odd = Array.from({ length: 2500 }, (_, j) => 2 * j + 1);
    const even = Array.from({ length: 2500 }, (_, j) => 2 * j);
    const followUps = (from: number[]) => from.filter((i) => i < 3000).map((i) => 10_000 + i);
    expect(seen).toEqual([...odd, ...followUps(odd), ...even, ...followUps(even)]);
  });

  it('law: handlers scheduling at the same instant, later, or both run exactly in (time, scheduling order)', () => {
    // Each event, when run, schedules its children at now + delay; delays of 0 and repeated times make many ties.
    const children = fc.array(fc.array(fc.constantFrom(0, 0, 1, 2, 5, 1000, 2 ** 40), { maxLength: 3 }), { minLength: 1, maxLength: 300 });
    const starts = fc.array(fc.constantFrom(0, 1, 5, 7), { minLength: 1, maxLength: 20 });
    fc.assert(
      fc.property(children, starts, (childDelays, startTimes) => {
        const { expected, actual } = runBoth(new ReferenceQueue(), startTimes, (id) => childDelays[id % childDelays.length], 2000);
        expect(actual).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });
});

describe('EventKernel ladder tiers', () => {
  /** The reference for long runs: pending events kept sorted by (time, scheduling order) with binary search. */
  class SortedReference {
    private readonly at: number[] = [];
    private readonly ids: number[] = [];
    schedule(time: number, id: number): void {
      let lo = 0;
      let hi = this.at.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.at[mid] <= time) lo = mid + 1;
        else hi = mid;
      }
      this.at.splice(lo, 0, time);
      this.ids.splice(lo, 0, id);
    }
    pop(): { at: number; id: number } | undefined {
      if (this.at.length === 0) return undefined;
      return { at: this.at.shift()!, id: this.ids.shift()! };
    }
  }

  // Delays from every scale at once: ties, near events, far ones, and a few extremely far, so that buckets
  // overflow into finer rungs, rungs run out, the bottom grows long and the top is spread again and again.
  const delay = fc.oneof(
    fc.constantFrom(0, 0, 1, 3),
    fc.integer({ min: 0, max: 100 }),
    fc.integer({ min: 0, max: 1_000_000 }),
    // 4,000 events of 2^40 ns each still end before the clock's 2^53 ns.
    fc.constantFrom(2 ** 20, 2 ** 33, 2 ** 40),
  );

  it('law: thousands of events over every time scale run exactly in (time, scheduling order), with run(until) pauses', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(delay, { maxLength: 3 }), { minLength: 1, maxLength: 64 }),
        fc.array(fc.oneof(fc.constantFrom(0, 7, 7, 7), fc.integer({ min: 0, max: 10_000 })), { minLength: 1, maxLength: 600 }),
        fc.array(fc.integer({ min: 0, max: 2_000_000 }), { maxLength: 4 }),
        (childDelays, startTimes, pauses) => {
          const { expected, actual } = runBoth(new SortedReference(), startTimes, (id) => childDelays[(id * 7) % childDelays.length], 4000, pauses);
          expect(actual).toEqual(expected);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a ladder as deep as it may grow still runs in order', () => {
    // 51 events at 0 and 1 ns, and one at each 61^k ns for k = 1..8: every rung is fitted to the times of its
    // bucket, which then still holds the cluster and all but the largest of the far events, so each bucket opens a
    // finer rung until the ladder is as deep as it may grow, and the last bucket is sorted as it is.
    const k = new EventKernel(2);
    const seen: number[] = [];
    const t = k.on(() => seen.push(k.now));
    for (let j = 8; j >= 1; j--) k.schedule(61 ** j, t);
    for (let i = 0; i < 51; i++) k.schedule(i % 2, t);
    k.run();
    expect(seen).toEqual([...Array(26).fill(0), ...Array(25).fill(1), ...Array.from({ length: 8 }, (_, j) => 61 ** (j + 1))]);
  });

  it('a queue held at 20,000 pending events with spread-out delays stays in order (the benchmark\'s hold model)', () => {
    const k = new EventKernel(16);
    let state = 1;
    const next = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % 1_000_000;
    };
    let left = 200_000;
    let last = -1;
    let disorder = 0;
    const type = k.on(() => {
      if (k.now < last) disorder++;
      last = k.now;
      if (left-- > 0) k.schedule(k.now + next(), type);
    });
    for (let i = 0; i < 20_000; i++) k.schedule(next(), type);
    k.run();
    expect(disorder).toBe(0);
    expect(k.eventsProcessed).toBe(220_000);
  });
});

describe('toNanoseconds', () => {
  it('keeps decimal durations exact and rounds others up', () => {
    expect(toNanoseconds(0.0185)).toBe(18_500_000);
    expect(toNanoseconds(0.0006)).toBe(600_000);
    expect(toNanoseconds(5e-6)).toBe(5000);
    expect(toNanoseconds(1e-12)).toBe(1);
    expect(toNanoseconds(1.0000000004e-9)).toBe(1);
    expect(toNanoseconds(0)).toBe(0);
    expect(toNanoseconds(3600)).toBe(3.6e12);
  });
});
