import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DeviceMesh, MESH_AXES, type MeshAxis } from '../../src/strategies/mesh.js';

const arbSizes = fc.record({ tp: fc.integer({ min: 1, max: 4 }), cp: fc.integer({ min: 1, max: 3 }), dp: fc.integer({ min: 1, max: 4 }), pp: fc.integer({ min: 1, max: 4 }) });

describe('device mesh', () => {
  it("law: Megatron's order, rank = tp + TP·(dp + DP·pp), and coordinates invert it", () => {
    fc.assert(
      fc.property(fc.record({ tp: fc.integer({ min: 1, max: 8 }), dp: fc.integer({ min: 1, max: 8 }), pp: fc.integer({ min: 1, max: 8 }) }), (sizes) => {
        const mesh = new DeviceMesh(sizes);
        expect(mesh.size).toBe(sizes.tp * sizes.dp * sizes.pp);
        expect(mesh.ranksPerStage).toBe(sizes.tp * sizes.dp);
        for (let rank = 0; rank < mesh.size; rank++) {
          const c = mesh.coordinates(rank);
          expect(Object.keys(c)).toEqual(['tp', 'dp', 'pp']);
          expect(c.tp! + sizes.tp * (c.dp! + sizes.dp * c.pp!)).toBe(rank);
          expect(mesh.rank(c)).toBe(rank);
        }
      }),
    );
  });

  it('law: group(rank, axes) holds the rank and every rank that differs from it only on those axes, in rank order', () => {
    fc.assert(
      fc.property(arbSizes, fc.subarray(['tp', 'cp', 'dp', 'pp'] as MeshAxis[]), fc.nat(), (sizes, axes, pick) => {
        const mesh = new DeviceMesh(sizes);
        const rank = pick % mesh.size;
        const group = mesh.group(rank, axes);
        expect(group).toContain(rank);
        expect(group.length).toBe(axes.reduce((n, a) => n * mesh.sizeOf(a), 1));
        expect([...group].sort((a, b) => a - b)).toEqual(group);
        const others = MESH_AXES.filter((a) => !axes.includes(a));
        for (const member of group) for (const axis of others) expect(mesh.coordinate(member, axis)).toBe(mesh.coordinate(rank, axis));
      }),
    );
  });

  it("groups a stage's ranks over axes in order of their first member, and knows each rank's group", () => {
    const mesh = new DeviceMesh({ tp: 2, cp: 2, dp: 2, pp: 2 });
    const { groups, groupOf } = mesh.groupsInStage(1, ['cp']);
    expect(groups).toEqual([[8, 10], [9, 11], [12, 14], [13, 15]]);
    expect(Array.from(groupOf)).toEqual([0, 1, 0, 1, 2, 3, 2, 3]);
    expect(mesh.groupsInStage(0, []).groups).toEqual([[0], [1], [2], [3], [4], [5], [6], [7]]);
  });

  it('lists only the axes it uses beyond tp, dp and pp', () => {
    expect(new DeviceMesh({ tp: 2, cp: 4, dp: 2, pp: 1 }).axes).toEqual(['tp', 'cp', 'dp', 'pp']);
    expect(new DeviceMesh({ tp: 1 }).axes).toEqual(['tp', 'dp', 'pp']);
    expect(() => new DeviceMesh({ tp: 0 })).toThrow(RangeError);
  });
});
