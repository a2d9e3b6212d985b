import { describe, expect, it, vi } from 'vitest';
import { AT_END, AT_START, OperationGraphBuilder, type OperationGraph } from '../../src/engine/graph.js';
import { PageWarmer, pageWarmedAllocation } from '../../src/engine/page-warmer.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';

/** A deterministic pseudo-random graph: lanes, flows, dependencies and memory effects of every shape. */
function buildGraph(operations: number, warmer?: PageWarmer): OperationGraph {
  const g = new OperationGraphBuilder(64, operations, { allocation: warmer && pageWarmedAllocation(warmer) });
  let state = 12345;
  const next = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % n;
  };
  const label = 3;
  for (let op = 0; op < operations; op++) {
    g.operation(label, next(16), next(1000), next(3) === 0 ? next(50) : 0);
    for (let l = next(3); l >= 0; l--) g.lane(next(64));
    for (let f = next(3); f > 0; f--) g.flow(op, next(8), 8 + next(8), 1 + next(1 << 20), next(4) > 0);
    if (op > 0) for (let d = next(4); d > 0; d--) g.dependOn(op, next(op));
    if (next(2) === 0) g.memory(next(op + 1), next(16), next(4), next(1 << 20) - (1 << 19), next(2) === 0 ? AT_START : AT_END);
  }
  return g.build();
}

/** Every column of a graph as bytes: shared and unshared typed arrays then compare alike. */
function columns(graph: OperationGraph): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  for (const [name, value] of Object.entries(graph)) {
    if (ArrayBuffer.isView(value)) out.set(name, bytes(value));
    else if (name === 'lanesOf' || name === 'program') out.set(name, Buffer.concat([bytes(value.start), bytes(value.items)]));
  }
  return out;
}

describe('page warmer', () => {
  it('leaves every value the writer writes, while it touches the same pages', async () => {
    const warmer = PageWarmer.start();
    expect(warmer).toBeDefined();
    await warmer!.online;
    const length = 4 << 20;
    const { array, slot } = warmer!.follow(Int32Array, length, 1 << 16);
    const { array: floats, slot: floatSlot } = warmer!.follow(Float64Array, length / 2, 1 << 15);
    // A prepared array is touched whole while the writer writes it from the end.
    const prepared = warmer!.prepare(Int32Array, length);
    for (let i = 0; i < length; i++) {
      array[i] = i + 1;
      prepared[length - 1 - i] = i + 1;
      if (i < length / 2) floats[i] = -(i + 0.5);
      if ((i & 4095) === 0) {
        warmer!.filled(slot, i);
        warmer!.filled(floatSlot, i);
        warmer!.publish();
      }
    }
    warmer!.stop();
    let wrong = 0;
    for (let i = 0; i < length; i++) {
      if (array[i] !== i + 1 || prepared[length - 1 - i] !== i + 1) wrong++;
      if (i < length / 2 && floats[i] !== -(i + 0.5)) wrong++;
    }
    expect(wrong).toBe(0);
  });

  it('a large graph built with the warmer equals the one built without it', () => {
    const operations = 300_000;
    const plain = buildGraph(operations);
    const warmer = PageWarmer.start()!;
    const warmed = buildGraph(operations, warmer);
    warmer.stop();
    expect(warmed.count).toBe(operations);
    const a = columns(plain);
    const b = columns(warmed);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    expect(a.size).toBeGreaterThan(15);
    for (const [name, column] of a) expect(column.equals(b.get(name)!), name).toBe(true);
  });
});

describe('page warmer in simulate()', () => {
  it('starts no helper thread unless asked, and gives the same report when asked', () => {
    const start = vi.spyOn(PageWarmer, 'start');
    try {
      const sc = scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, parallel: { tp: 2, pp: 2, dp: 1 } });
      const plain = simulate(sc);
      expect(start).not.toHaveBeenCalled();
      const warmed = simulate(sc, { pageWarmer: true });
      expect(start).toHaveBeenCalledTimes(1);
      expect(JSON.stringify(warmed.report)).toBe(JSON.stringify(plain.report));
    } finally {
      start.mockRestore();
    }
  });
});
