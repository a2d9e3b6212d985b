import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { COUNTED, COVERING, execute } from '../../src/engine/executor.js';
import { AT_END, AT_START, OperationGraphBuilder } from '../../src/engine/graph.js';
import { MemoryTracker } from '../../src/engine/memory.js';
import type { LinkSet } from '../../src/engine/network.js';

const noLinks: LinkSet = { count: 0, capacityBytesPerSecond: new Float64Array(0), binding: new Uint8Array(0) };
const noRouter = { route: (): number => 0 };
const memory = (locations = 1) => new MemoryTracker(locations, 2, new Float64Array(locations).fill(1000));

describe('execute', () => {
  it('runs a lane in program order and waits for dependencies', () => {
    const g = new OperationGraphBuilder(2);
    const a = g.add(0, 10, [0]);
    const b = g.add(0, 5, [0]);
    const c = g.add(1, 7, [1]);
    g.dependOn(c, a);
    const r = execute({ graph: g.build(), links: noLinks, router: noRouter, memory: memory() });
    expect(Array.from(r.startNs)).toEqual([0, 10, 10]);
    expect(Array.from(r.endNs)).toEqual([10, 15, 17]);
    expect(r.makespanNs).toBe(17);
    expect(Array.from(r.laneBusyNs)).toEqual([15, 7]);
    void b;
  });

  it('a multi-lane operation waits until it heads every lane', () => {
    const g = new OperationGraphBuilder(2);
    g.add(0, 10, [0]);
    const both = g.add(0, 4, [0, 1]);
    const r = execute({ graph: g.build(), links: noLinks, router: noRouter, memory: memory() });
    expect(r.startNs[both]).toBe(10);
  });

  it('adds latency before flows and ends with the last flow', () => {
    const links: LinkSet = { count: 1, capacityBytesPerSecond: Float64Array.of(1e9), binding: Uint8Array.of(1) };
    const g = new OperationGraphBuilder(1);
    const op = g.add(0, 0, [0], 1000);
    g.flow(op, 0, 1, 1e6);
    g.flow(op, 0, 1, 1e6, false); // counted only
    const r = execute({ graph: g.build(), links, router: { route: (_s: number, _t: number, out: Int32Array) => ((out[0] = 0), 1) }, memory: memory() });
    expect(r.endNs[op]).toBe(1000 + 1_000_000);
    expect(r.linkBytes[0]).toBe(1e6);
  });

  it('groups lanes and flows with the operation they were added with, and refuses a flow for an earlier one', () => {
    const g = new OperationGraphBuilder(3);
    const a = g.add(0, 0, [2, 0]);
    g.flow(a, 0, 1, 10);
    const b = g.add(1, 5, [1]);
    const c = g.add(0, 0, [0, 1]);
    g.flow(c, 1, 0, 20);
    g.flow(c, 1, 2, 30);
    expect(() => g.flow(b, 0, 1, 1)).toThrow(/flows belong to the operation added last/);
    const graph = g.build();
    expect(Array.from(graph.lanesOf.start)).toEqual([0, 2, 3, 5]);
    expect(Array.from(graph.lanesOf.items)).toEqual([2, 0, 1, 0, 1]);
    // Each lane's program in the order operations were added.
    expect(Array.from(graph.program.start)).toEqual([0, 2, 4, 5]);
    expect(Array.from(graph.program.items)).toEqual([a, c, b, c, a]);
    expect(Array.from(graph.flowStart)).toEqual([0, 1, 1, 3]);
    expect(Array.from(graph.flowSize, (row) => graph.flowSizes.bytes[row])).toEqual([10, 20, 30]);
  });

  it('shares rows of timings, flow sizes and memory amounts between equal values, and keeps every value', () => {
    const g = new OperationGraphBuilder(1);
    const label = 0;
    const n = 5000;
    // Two durations and latencies repeated, then values all different (as with jitter): those get rows of their own.
    for (let op = 0; op < n; op++) {
      const repeated = op < n / 2;
      g.operation(label, 0, repeated ? 100 + (op % 2) : 1000 + op, repeated ? 7 : op % 3);
      g.flow(op, 0, 1, repeated ? 64 : 64 + op, op % 2 === 0);
      g.memory(op, 0, op % 2, repeated ? 32 : -op, op % 2 === 0 ? AT_START : AT_END);
    }
    const graph = g.build();
    for (let op = 0; op < n; op++) {
      const repeated = op < n / 2;
      expect(graph.timings.durationNs[graph.timing[op]]).toBe(repeated ? 100 + (op % 2) : 1000 + op);
      expect(graph.timings.latencyNs[graph.timing[op]]).toBe(repeated ? 7 : op % 3);
      expect(graph.flowSizes.bytes[graph.flowSize[op]]).toBe(repeated ? 64 : 64 + op);
      expect(graph.flowSizes.timed[graph.flowSize[op]]).toBe(op % 2 === 0 ? 1 : 0);
      const amount = graph.memoryAmount[graph.memoryFirst[op]];
      expect([graph.memoryAmounts.category[amount], graph.memoryAmounts.bytes[amount], graph.memoryAmounts.atEnd[amount]]).toEqual([op % 2, repeated ? 32 : -op, op % 2 === 0 ? AT_START : AT_END]);
    }
    expect(graph.timings.count).toBe(2 + n / 2);
    expect(graph.flowSizes.count).toBe(2 + n / 2);
    expect(graph.memoryAmounts.count).toBe(2 + n / 2);
  });

  it('keeps each operation\'s label, chains dependents and memory effects in the order added, and refuses unknown operations', () => {
    const g = new OperationGraphBuilder(2, 2);
    expect(() => g.lane(0)).toThrow(/none has been added/);
    const forward = 41;
    const ops = [0, 1, 0, 1].map((device) => {
      const op = g.operation(forward, device, 10);
      g.lane(device);
      return op;
    });
    const later = g.operation(forward + 1, 0, 0, 100);
    g.lane(0);
    g.dependOn(later, ops[0]);
    g.dependOn(later, ops[1]);
    g.dependOn(ops[3], ops[0]);
    g.memory(ops[0], 0, 3, 100, AT_START);
    g.memory(later, 1, 4, 50, AT_START);
    g.memory(ops[0], 0, 3, -100, AT_END);
    g.memory(ops[0], 1, 4, -50, AT_END);
    expect(() => g.dependOn(later, 99)).toThrow(/not added/);
    const graph = g.build();
    // Five operations past a reservation of two: the columns grew.
    expect(graph.count).toBe(5);
    expect(Array.from(graph.label)).toEqual([forward, forward, forward, forward, forward + 1]);
    const chain = (first: Int32Array, next: Int32Array, op: number) => {
      const out: number[] = [];
      for (let e = first[op]; e >= 0; e = next[e]) out.push(e);
      return out;
    };
    expect(chain(graph.dependentFirst, graph.dependentNext, ops[0]).map((e) => graph.dependentOp[e]).sort()).toEqual([ops[3], later].sort());
    expect(chain(graph.memoryFirst, graph.memoryNext, ops[0]).map((e) => graph.memoryAmounts.bytes[graph.memoryAmount[e]])).toEqual([100, -100, -50]);
    expect(Array.from(graph.deps.items.subarray(graph.deps.start[later], graph.deps.start[later + 1])).sort()).toEqual([ops[0], ops[1]]);
    expect(execute({ graph, links: noLinks, router: noRouter, memory: new MemoryTracker(2, 5, new Float64Array([1e3, 1e3])) }).makespanNs).toBe(120);
  });

  it('applies memory at start and end, tracks the peak and its breakdown, and reports overflow without stopping', () => {
    const g = new OperationGraphBuilder(1);
    const a = g.add(0, 10, [0]);
    const b = g.add(0, 10, [0]);
    g.memory(a, 0, 1, 600, AT_START);
    g.memory(b, 0, 0, 700, AT_START);
    g.memory(b, 0, 1, -600, AT_END);
    g.memory(b, 0, 0, -700, AT_END);
    const m = memory();
    const r = execute({ graph: g.build(), links: noLinks, router: noRouter, memory: m });
    expect(r.completed).toBe(2);
    expect(m.peak[0]).toBe(1300);
    expect(m.peakAtNs[0]).toBe(10);
    expect(Array.from(m.peakByCategory)).toEqual([700, 600]);
    expect(m.used[0]).toBe(0);
    expect(m.overflows).toEqual([{ location: 0, firstAtNs: 10, maxExcessBytes: 300, maxAtNs: 10 }]);
  });

  it('reports a dependency cycle with the operations that block it, instead of hanging', () => {
    const g = new OperationGraphBuilder(2);
    const a = g.add(0, 1, [0]);
    const b = g.add(1, 1, [1]);
    g.dependOn(a, b);
    g.dependOn(b, a);
    const r = execute({ graph: g.build(), links: noLinks, router: noRouter, memory: memory() });
    expect(r.completed).toBe(0);
    expect(r.blocked.map((x) => [x.op, x.waitingFor])).toEqual([
      [a, [b]],
      [b, [a]],
    ]);
  });

  it('reports a lane held by an operation that can never start', () => {
    const g = new OperationGraphBuilder(2);
    const recv = g.add(0, 1, [0, 1]);
    const first = g.add(1, 1, [1]);
    g.dependOn(first, recv); // lane 1 runs `recv` first, which needs nothing; then first. Fine.
    const stuck = g.add(0, 1, [0]);
    const later = g.add(0, 1, [0]);
    g.dependOn(stuck, later); // stuck heads lane 0 but waits for an op queued behind it
    const r = execute({ graph: g.build(), links: noLinks, router: noRouter, memory: memory() });
    expect(r.completed).toBe(2);
    const blockedOps = r.blocked.map((x) => x.op);
    expect(blockedOps).toEqual([stuck, later]);
    expect(r.blocked[1].laneHeads).toEqual([{ lane: 0, head: stuck }]);
    // Times: what ran has them (the first op at zero), what never started reads -1 for both.
    expect([r.startNs[recv], r.endNs[recv], r.startNs[first], r.endNs[first]]).toEqual([0, 1, 1, 2]);
    expect([r.startNs[stuck], r.endNs[stuck], r.startNs[later], r.endNs[later]]).toEqual([-1, -1, -1, -1]);
  });

  it('an operation whose flow is starved forever has started and not ended, in arrays from an allocation hook or its own', () => {
    // One link of no capacity: the flow never moves a byte.
    const links: LinkSet = { count: 1, capacityBytesPerSecond: new Float64Array([0]), binding: new Uint8Array([1]) };
    const router = { route: (_s: number, _t: number, out: Int32Array): number => ((out[0] = 0), 1) };
    for (const room of [0, 2, 8]) {
      const g = new OperationGraphBuilder(1);
      const ran = g.add(0, 0, [0]);
      const send = g.add(0, 0, [0], 7);
      g.flow(send, 0, 1, 100);
      // A hook handing out arrays of `room` when asked for no more, fresh ones otherwise (as the page warmer's does).
      const handedOut: ArrayBufferLike[] = [];
      const allocation = {
        follow: () => {
          throw new Error('not for the executor');
        },
        filled: () => {},
        finished: () => {},
        publish: () => {},
        perOperation<T extends Float64Array | Int32Array>(make: new (n: number) => T, length: number): T {
          const array = length <= room ? new make(room).subarray(0, length) as T : new make(length);
          handedOut.push(array.buffer);
          return array;
        },
      };
      const r = room === 0 ? execute({ graph: g.build(), links, router, memory: memory() }) : execute({ graph: g.build(), links, router, memory: memory(), allocation });
      expect(r.completed).toBe(1);
      expect([r.startNs[ran], r.endNs[ran], r.startNs[send], r.endNs[send]]).toEqual([0, 0, 0, -1]);
      // The hook's arrays hold the result.
      expect(handedOut.includes(r.startNs.buffer) && handedOut.includes(r.endNs.buffer)).toBe(room > 0);
    }
  });

  const randomDag = fc
    .record({
      n: fc.integer({ min: 1, max: 40 }),
      lanes: fc.integer({ min: 1, max: 5 }),
      seed: fc.array(fc.record({ duration: fc.integer({ min: 0, max: 100 }), lane: fc.nat(), deps: fc.array(fc.nat(), { maxLength: 3 }) }), { minLength: 40, maxLength: 40 }),
    })
    .map(({ n, lanes, seed }) => ({
      lanes,
      ops: seed.slice(0, n).map((s, i) => ({ duration: s.duration, lane: s.lane % lanes, deps: i === 0 ? [] : [...new Set(s.deps.map((d) => d % i))] })),
    }));

  it('measures per group of lanes the time a counted lane is busy while no covering lane is', () => {
    // Group 0: lane 0 covers, lanes 1 and 2 count; lane 3 belongs to no group; group 1: lane 4 counts alone.
    const g = new OperationGraphBuilder(5);
    g.add(0, 10, [0]); // covering [0, 10)
    g.add(0, 15, [1]); // counted [0, 15)
    const wait = g.add(0, 12, [3]); // no group [0, 12)
    const late = g.add(0, 8, [2]); // counted [12, 20)
    g.dependOn(late, wait);
    g.add(1, 7, [4]); // group 1, counted [0, 7)
    const exposure = { groups: 2, group: new Int32Array([0, 0, 0, -1, 1]), role: new Uint8Array([COVERING, COUNTED, COUNTED, COUNTED, COUNTED]) };
    const graph = g.build();
    const r = execute({ graph, links: noLinks, router: noRouter, memory: memory(), exposure });
    // Group 0: counted busy over [0, 20), covered over [0, 10): 10 ns exposed.
    expect(Array.from(r.exposedNs)).toEqual([10, 7]);
    expect(execute({ graph, links: noLinks, router: noRouter, memory: memory() }).exposedNs.length).toBe(0);
  });

  it('lane chains list each lane\'s operations in the order they were assigned, as the program does', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 30 }), (lanes, ops) => {
        const g = new OperationGraphBuilder(lanes);
        const expected: number[][] = Array.from({ length: lanes }, () => []);
        ops.forEach((held, op) => {
          const distinct = [...new Set(held.map((l) => l % lanes))];
          g.add(0, 1, distinct);
          for (const l of distinct) expected[l].push(op);
        });
        const graph = g.build();
        for (let lane = 0; lane < lanes; lane++) {
          const walked: number[] = [];
          for (let op = graph.laneFirst[lane]; op >= 0; ) {
            walked.push(op);
            let next = -1;
            for (let i = graph.lanesOf.start[op]; i < graph.lanesOf.start[op + 1]; i++) if (graph.lanesOf.items[i] === lane) next = graph.laneNext[i];
            op = next;
          }
          expect(walked).toEqual(expected[lane]);
          expect(Array.from(graph.program.items.subarray(graph.program.start[lane], graph.program.start[lane + 1]))).toEqual(expected[lane]);
        }
      }),
    );
  });

  it('laws on random DAGs: dependencies and lane order respected, no overlap, critical path <= makespan <= sum', () => {
    fc.assert(
      fc.property(randomDag, ({ lanes, ops }) => {
        const g = new OperationGraphBuilder(lanes);
        ops.forEach((o, i) => {
          g.add(0, o.duration, [o.lane]);
          for (const d of o.deps) g.dependOn(i, d);
        });
        const graph = g.build();
        const r = execute({ graph, links: noLinks, router: noRouter, memory: memory() });
        expect(r.blocked).toEqual([]);
        const finish: number[] = [];
        ops.forEach((o, i) => {
          expect(r.endNs[i] - r.startNs[i]).toBe(o.duration);
          for (const d of o.deps) expect(r.startNs[i]).toBeGreaterThanOrEqual(r.endNs[d]);
          finish[i] = o.duration + Math.max(0, ...o.deps.map((d) => finish[d]));
        });
        for (let lane = 0; lane < lanes; lane++) {
          const onLane = ops.map((o, i) => i).filter((i) => ops[i].lane === lane);
          for (let j = 1; j < onLane.length; j++) expect(r.startNs[onLane[j]]).toBeGreaterThanOrEqual(r.endNs[onLane[j - 1]]);
        }
        const critical = Math.max(...finish);
        const sum = ops.reduce((a, o) => a + o.duration, 0);
        expect(r.makespanNs).toBeGreaterThanOrEqual(critical);
        expect(r.makespanNs).toBeLessThanOrEqual(sum);
      }),
    );
  });
});
