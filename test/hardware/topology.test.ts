import fc from 'fast-check';
import { bidirectional } from 'graphology-shortest-path';
import { describe, expect, it } from 'vitest';
import { buildTopology } from '../../src/hardware/topology.js';
import { scenario } from '../support/scenarios.js';

const cluster = (patch: Record<string, unknown>) => scenario({ cluster: patch, training: { globalBatch: 64 }, parallel: { tp: 1, pp: 1, dp: undefined } }).cluster;

describe('buildTopology', () => {
  it('DGX A100 x 2: NVLink inside a node, rail-aligned InfiniBand across, PCIe to the host, NVMe behind the CPU', () => {
    const t = buildTopology(cluster({ nodes: 2, gpusPerNode: 8, node: 'dgx-a100' }));
    expect(t.devices).toBe(16);
    expect(t.pathType(0, 1)).toBe('nvlink');
    expect(t.pathType(3, 11)).toBe('infiniband');
    expect(t.pathType(0, t.cpuVertex(0))).toBe('pcie');
    expect(t.pathType(t.cpuVertex(1), t.nvmeVertex(1))).toBe('nvme');
    // GPU 3 leaves through NIC 3 and enters GPU 11 through node 1's NIC 3.
    const hops = Array.from(t.path(3, 11)).map((l) => t.graph.target(t.graph.findEdge((_e, a) => a.link === l)!));
    expect(hops).toEqual(['n0.pcie1', 'n0.nic3', 'leaf0', 'n1.nic3', 'n1.pcie1', 'n1.gpu3']);
  });

  it('a flow routed through a rail leaves through that rail\'s NIC and enters through the peer rail\'s (NVLink legs left out)', () => {
    const t = buildTopology(cluster({ nodes: 2, gpusPerNode: 8, node: 'dgx-a100' }));
    const via = t.viaRail(11, 5);
    const hops = Array.from(t.path(3, via)).map((l) => t.graph.target(t.graph.findEdge((_e, a) => a.link === l)!));
    expect(hops).toEqual(['n0.pcie2', 'n0.nic5', 'leaf0', 'n1.nic5', 'n1.pcie2', 'n1.gpu5']);
    expect(t.pathType(3, via)).toBe('infiniband');
    // Its own rail needs no NVLink legs.
    expect(Array.from(t.path(3, t.viaRail(11, 3)))).toEqual(Array.from(t.path(3, 11)));
  });

  it('link capacities are vendor figures times the link efficiency, per direction', () => {
    const t = buildTopology(cluster({ nodes: 2, gpusPerNode: 8, node: 'dgx-a100', linkEfficiency: 0.5 }));
    const nvlink = t.path(0, 1);
    for (const l of nvlink) expect(t.capacityBytesPerSecond[l]).toBe(150e9);
    const ib = Array.from(t.path(0, 8)).filter((l) => t.linkType[l] === 'infiniband');
    for (const l of ib) expect(t.capacityBytesPerSecond[l]).toBe(12.5e9);
  });

  it('a non-blocking fabric never binds; an oversubscribed one does', () => {
    const open = buildTopology(cluster({ nodes: 4, gpusPerNode: 8, fabric: { nodesPerLeaf: 2 } }));
    const spineLinks = (t: typeof open) => Array.from(t.path(0, 16)).filter((l) => t.graph.target(t.graph.findEdge((_e, a) => a.link === l)!) === 'spine');
    expect(spineLinks(open).map((l) => open.binding[l])).toEqual([0]);
    const tight = buildTopology(cluster({ nodes: 4, gpusPerNode: 8, fabric: { nodesPerLeaf: 2, oversubscription: 4 } }));
    expect(spineLinks(tight).map((l) => tight.binding[l])).toEqual([1]);
  });

  it('latency of a path is the sum of its hops', () => {
    const t = buildTopology(cluster({ nodes: 1, gpusPerNode: 8 }));
    expect(t.pathLatencySeconds(0, 1)).toBeCloseTo(2 * 0.5e-6, 12);
  });

  it('without NVSwitch, GPUs talk over PCIe through the host', () => {
    const t = buildTopology(cluster({ nodes: 1, gpusPerNode: 4, node: { preset: 'dgx-a100', nvswitch: false } }));
    expect(t.pathType(0, 3)).toBe('pcie');
    expect(t.path(0, 3).length).toBe(4);
  });

  it('law: the direct routes are the graph\'s shortest paths (rail-aligned across nodes), on any cluster shape', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.constantFrom(1, 2, 4, 8, 16),
        fc.constantFrom('dgx-a100', 'dgx-h100', 'dgx-2'),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        // Irregular nodes too: NICs and GPUs spread over PCIe switches differently, so some rails cross switches.
        fc.constantFrom(1, 2, 4),
        fc.constantFrom(1, 2, 3, 8),
        (nodes, gpusPerNode, node, nodesPerLeaf, nvswitch, gpusPerPcieSwitch, nics) => {
          const cluster = { nodes, gpusPerNode, node: { preset: node, nvswitch, gpusPerPcieSwitch, nics }, fabric: { nodesPerLeaf } };
          const t = buildTopology(scenario({ cluster, training: { globalBatch: nodes * gpusPerNode }, parallel: { tp: 1, pp: 1, dp: undefined } }).cluster);
          const g = t.graph;
          const key = (v: number) => g.findNode((_k, a) => a.id === v)!;
          const searched = (a: number, b: number) => {
            const vertices = bidirectional(g, key(a), key(b))!;
            return vertices.slice(1).map((v, i) => g.getEdgeAttribute(g.edge(vertices[i], v)!, 'link') as number);
          };
          const railNic = (d: number) => {
            const local = d % gpusPerNode;
            const nics = g.filterNodes((_k, a) => a.kind === 'nic' && a.node === t.nodeOf(d)).map((k) => g.getNodeAttribute(k, 'id') as number);
            return nics[Math.floor((local * nics.length) / gpusPerNode)];
          };
          for (let a = 0; a < t.devices; a++) {
            const b = (a * 7 + 3) % t.devices;
            if (a !== b) {
              const expected = t.nodeOf(a) === t.nodeOf(b) ? searched(a, b) : [...searched(a, railNic(a)), ...searched(railNic(a), railNic(b)), ...searched(railNic(b), b)];
              if (t.nodeOf(a) === t.nodeOf(b)) expect(Array.from(t.path(a, b)).length).toBe(expected.length);
              else expect(Array.from(t.path(a, b))).toEqual(expected);
            }
            const host = t.cpuVertex(t.nodeOf(a));
            const disk = t.nvmeVertex(t.nodeOf(a));
            expect(Array.from(t.path(a, host))).toEqual(searched(a, host));
            expect(Array.from(t.path(host, a))).toEqual(searched(host, a));
            expect(Array.from(t.path(a, disk))).toEqual(searched(a, disk));
            expect(Array.from(t.path(disk, a))).toEqual(searched(disk, a));
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
