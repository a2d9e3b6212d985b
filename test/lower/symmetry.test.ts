import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ResourceLimitError } from '../../src/errors.js';
import { estimateOperations } from '../../src/lower/limits.js';
import { buildTopology } from '../../src/hardware/topology.js';
import type { Report } from '../../src/report/report.js';
import { simulate } from '../../src/simulate.js';
import { MirroredGraphBuilder } from '../../src/lower/symmetry.js';
import { StepResources } from '../../src/lower/resources.js';
import { scenario, tryScenario } from '../support/scenarios.js';

/** A report as JSON, but for `simulation`, which counts what the engine ran and so differs with the symmetry. */
const figures = (report: Report) => JSON.stringify({ ...report, simulation: undefined });

const SCHEDULES = [
  { schedule: 'gpipe', chunks: 1 },
  { schedule: '1f1b', chunks: 1 },
  { schedule: 'interleaved', chunks: 2 },
  { schedule: 'zb-h1', chunks: 1 },
  { schedule: 'zb-h2', chunks: 1 },
  { schedule: 'zb-v', chunks: 2 },
];

/** ZeRO stages and offloading as the checks allow them: ZeRO-Offload from stage 1, ZeRO-Infinity at stage 3. */
const STATES = [
  { zero: 0, optimizer: 'none', params: 'none' },
  { zero: 1, optimizer: 'none', params: 'none' },
  { zero: 2, optimizer: 'none', params: 'none' },
  { zero: 3, optimizer: 'none', params: 'none' },
  { zero: 2, optimizer: 'cpu', params: 'none' },
  { zero: 3, optimizer: 'cpu', params: 'cpu' },
  { zero: 3, optimizer: 'nvme', params: 'nvme' },
];

/** A drawn layout's step: gpt-tiny with two layers a virtual stage, the drawn schedule, states and techniques. */
interface Layout {
  tp: number;
  pp: number;
  dp: number;
  cp: number;
  pipeline: (typeof SCHEDULES)[number];
  microBatch: number;
  microBatches: number;
  states: (typeof STATES)[number];
  recompute: string;
  sequenceParallel: boolean;
  smallBuckets: boolean;
}
const layoutScenario = (cluster: Record<string, unknown>, c: Layout) =>
  tryScenario({
    cluster,
    model: { preset: 'gpt-tiny', layers: c.pp * c.pipeline.chunks * 2 },
    training: { globalBatch: c.dp * c.microBatch * c.microBatches * c.pp, microBatch: c.microBatch, recompute: c.recompute, flashAttention: c.cp > 1 },
    parallel: {
      tp: c.tp,
      pp: c.pp,
      dp: c.dp,
      cp: c.cp,
      schedule: c.pipeline.schedule,
      chunks: c.pipeline.chunks,
      zero: c.states.zero,
      sequenceParallel: c.sequenceParallel && c.tp > 1,
      offload: { optimizer: c.states.optimizer, params: c.states.params },
      ...(c.smallBuckets ? { gradientBucket: '64KiB' } : {}),
    },
  });

/** Requires the symmetric run's report to be the full run's; whether the symmetry was used. */
const mirrorsFull = (s: NonNullable<ReturnType<typeof tryScenario>>): boolean => {
  const full = simulate(s).report;
  const mirrored = simulate(s, { symmetry: true }).report;
  expect(figures(mirrored)).toBe(figures(full));
  return mirrored.simulation.replicas !== undefined;
};

describe('the data-parallel replica symmetry (simulate with symmetry: true)', () => {
  it('gives the full simulation report, byte for byte but for `simulation`, wherever it applies; and it applies to over a quarter of random layouts', () => {
    let applied = 0;
    let runs = 0;
    fc.assert(
      fc.property(
        fc.record({
          gpusPerNode: fc.constantFrom(2, 3, 4, 6, 8),
          nodes: fc.constantFrom(2, 3, 4),
          // Small enough, sometimes, not to fit: overflows must mirror too.
          hbm: fc.constantFrom('80GiB', '80GiB', '1GiB'),
          nodesPerLeaf: fc.constantFrom(1, 2, 32),
          oversubscription: fc.constantFrom(1, 2),
          protocol: fc.constantFrom('fitted', 'nccl'),
          tp: fc.constantFrom(1, 2),
          pp: fc.constantFrom(1, 2),
          cp: fc.constantFrom(1, 1, 2),
          pipeline: fc.constantFrom(...SCHEDULES),
          microBatches: fc.integer({ min: 1, max: 4 }),
          microBatch: fc.constantFrom(1, 2),
          states: fc.constantFrom(...STATES),
          recompute: fc.constantFrom('none', 'selective', 'full'),
          sequenceParallel: fc.boolean(),
          smallBuckets: fc.boolean(),
        }),
        (c) => {
          const devices = c.nodes * c.gpusPerNode;
          const dp = devices / (c.tp * c.pp * c.cp);
          if (!Number.isInteger(dp) || dp < 1) return;
          const s = layoutScenario(
            { nodes: c.nodes, gpusPerNode: c.gpusPerNode, gpu: { memory: c.hbm }, fabric: { nodesPerLeaf: c.nodesPerLeaf, oversubscription: c.oversubscription }, collectiveProtocol: c.protocol },
            { ...c, dp },
          );
          if (!s) return;
          runs++;
          if (mirrorsFull(s)) applied++;
        },
      ),
      { numRuns: 150, seed: 20261202 },
    );
    expect(runs).toBeGreaterThan(75);
    expect(applied).toBeGreaterThan(runs / 4);
  });

  /** The 13B plan's best layout in small: tp 1, dp 64 with ZeRO-2 on 8 DGX A100, a tiny model. */
  const thirteenBStyle = (globalBatch: number) =>
    scenario({ cluster: { nodes: 8, gpusPerNode: 8, node: 'dgx-a100' }, model: { preset: 'gpt-tiny', layers: 4 }, training: { globalBatch, microBatch: 1 }, parallel: { tp: 1, pp: 1, dp: 64, zero: 2 } });

  it('simulates 8 of 64 replicas of a 13B-style layout on 8 DGX A100 (tp 1, dp 64), with an eighth of the operations', () => {
    const s = thirteenBStyle(128);
    const full = simulate(s).report;
    const mirrored = simulate(s, { symmetry: true }).report;
    expect(mirrored.simulation.replicas).toEqual({ simulated: 8, of: 64 });
    expect(full.simulation.replicas).toBeUndefined();
    expect(mirrored.simulation.operations).toBeLessThanOrEqual(full.simulation.operations / 6);
    expect(figures(mirrored)).toBe(figures(full));
  });

  it('admits under the operation limit a step whose symmetric run fits it, and names --symmetry when refusing the full run; the share it is checked at is the one used', () => {
    const s = thirteenBStyle(1024);
    const full = estimateOperations(s);
    const eighth = estimateOperations(s, 8 / 64);
    expect(eighth).toBeLessThan(full / 4);
    const limit = Math.ceil((full + eighth) / 2);
    expect(() => simulate(s, { maxOperations: limit })).toThrow(ResourceLimitError);
    expect(() => simulate(s, { maxOperations: limit })).toThrow(/with --symmetry .* it may need far fewer/);
    const mirrored = simulate(s, { symmetry: true, maxOperations: limit }).report;
    expect(mirrored.simulation.replicas).toEqual({ simulated: 8, of: 64 });
    // The estimate at that share errs high for this step, as the limit needs.
    expect(mirrored.simulation.operations).toBeLessThanOrEqual(eighth);
    // Below the symmetric estimate it is refused, saying at what share.
    expect(() => simulate(s, { symmetry: true, maxOperations: eighth - 1 })).toThrow(/even simulating 1\/8 of its data-parallel replicas/);
  });

  it('is checked against the limit at the share the cluster allows: three nodes under leaves of two give no symmetry, and every replica is counted', () => {
    const s = scenario({ model: { preset: 'gpt-tiny', layers: 4 }, cluster: { nodes: 3, gpusPerNode: 4, fabric: { nodesPerLeaf: 2 } }, training: { globalBatch: 12, microBatch: 1 }, parallel: { tp: 4, pp: 1, dp: 3 } });
    const full = estimateOperations(s);
    // A shift by one replica moves whole nodes, so the check before the cluster is looked at lets it through...
    expect(estimateOperations(s, 1 / 3)).toBeLessThan(full - 1);
    // ...and the one with the cluster's symmetry, none here, refuses it.
    expect(() => simulate(s, { symmetry: true, maxOperations: full - 1 })).toThrow(/as its cluster gives it no exact replica symmetry/);
    // Without data parallelism no symmetry applies at all; and a recorded memory timeline turns it off without a hint to ask for it.
    const one = scenario({ model: { preset: 'gpt-tiny', layers: 4 }, cluster: { nodes: 1, gpusPerNode: 4 }, training: { globalBatch: 16, microBatch: 1 }, parallel: { tp: 2, pp: 2, dp: 1 } });
    expect(() => simulate(one, { symmetry: true, maxOperations: 10 })).toThrow(/operations, as no replica symmetry applies to it \(/);
    const timeline = () => simulate(thirteenBStyle(1024), { symmetry: true, recordMemory: true, maxOperations: estimateOperations(thirteenBStyle(1024)) - 1 });
    expect(timeline).toThrow(ResourceLimitError);
    expect(timeline).not.toThrow(/--symmetry/);
  });

  it('keeps whole pipelines: with pp 2 over 4 nodes it simulates one node of each stage (tp 2, dp 8: 4 of 8 replicas)', () => {
    const s = scenario({
      cluster: { nodes: 4, gpusPerNode: 4 },
      model: { preset: 'gpt-tiny', layers: 4 },
      training: { globalBatch: 32, microBatch: 1 },
      parallel: { tp: 2, pp: 2, dp: 4 },
    });
    const mirrored = simulate(s, { symmetry: true });
    expect(mirrored.report.simulation.replicas).toEqual({ simulated: 2, of: 4 });
    const devices = new Set(mirrored.plan.graph.device);
    expect([...devices].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 8, 9, 10, 11]);
  });

  it('is not used where it would not be exact: with variability, without data parallelism, on nodes whose routes are searched, when a binding leaf uplink, NIC, PCIe switch or NVMe would carry several replicas\' flows, or when no shift moves whole leaves or carries PCIe switches onto switches', () => {
    const base = { model: { preset: 'gpt-tiny', layers: 4 }, training: { globalBatch: 16, microBatch: 1 } };
    const cases = [
      { ...base, cluster: { nodes: 2, gpusPerNode: 4 }, parallel: { tp: 1, pp: 1, dp: 8 }, variability: { jitter: 0.05 } },
      // Two replicas behind one PCIe switch, offloading their optimizer states: its uplink to host memory carries both's.
      { ...base, cluster: { nodes: 1, gpusPerNode: 2 }, parallel: { tp: 1, pp: 1, dp: 2, zero: 2, offload: { optimizer: 'cpu' } } },
      // Replicas moving within a node, states on its one NVMe: its link carries every replica's.
      { ...base, cluster: { nodes: 1, gpusPerNode: 4 }, parallel: { tp: 1, pp: 1, dp: 4, zero: 3, offload: { optimizer: 'nvme', params: 'nvme' } } },
      // Two replicas per node, each pair of GPUs behind one NIC: the pipeline's transfers of both cross it.
      { ...base, cluster: { nodes: 2, gpusPerNode: 4, node: { nics: 2 } }, parallel: { tp: 1, pp: 4, dp: 2 } },
      // Three GPUs behind each PCIe switch, two per replica: a shift by one replica splits a switch's GPUs.
      { ...base, cluster: { nodes: 1, gpusPerNode: 6, node: { gpusPerPcieSwitch: 3 } }, training: { globalBatch: 12, microBatch: 1 }, parallel: { tp: 2, pp: 1, dp: 3 } },
      { ...base, cluster: { nodes: 2, gpusPerNode: 4 }, parallel: { tp: 4, pp: 2, dp: 1 } },
      // Stage 0 on nodes 0 and 1 under one leaf, stage 1 on nodes 2 and 3 under another: swapping the nodes of each
      // leaf leaves the leaf uplinks in place, and oversubscribed they bind.
      { ...base, cluster: { nodes: 4, gpusPerNode: 4, fabric: { nodesPerLeaf: 2, oversubscription: 2 } }, parallel: { tp: 4, pp: 2, dp: 2 } },
      // Nodes without NVSwitch: routes inside a node are found by a search (see symmetry.ts).
      { ...base, cluster: { nodes: 2, gpusPerNode: 4, node: { nvswitch: false } }, parallel: { tp: 1, pp: 1, dp: 8 } },
      // Three nodes under leaves of two: the only shift of the three replicas splits a leaf's nodes between leaves.
      { ...base, cluster: { nodes: 3, gpusPerNode: 4, fabric: { nodesPerLeaf: 2 } }, training: { globalBatch: 12, microBatch: 1 }, parallel: { tp: 4, pp: 1, dp: 3 } },
    ];
    for (const patch of cases) expect(simulate(scenario(patch), { symmetry: true }).report.simulation.replicas).toBeUndefined();
    // The same layout as the oversubscribed one, with uplinks that cannot bind: used.
    const open = scenario({ ...base, cluster: { nodes: 4, gpusPerNode: 4, fabric: { nodesPerLeaf: 2 } }, parallel: { tp: 4, pp: 2, dp: 2 } });
    expect(simulate(open, { symmetry: true }).report.simulation.replicas).toEqual({ simulated: 1, of: 2 });
    expect(figures(simulate(open, { symmetry: true }).report)).toBe(figures(simulate(open).report));
  });

  it('moves leaves with their nodes: a replica per leaf, oversubscribed uplinks and all, simulates one leaf (its uplinks stand for the others)', () => {
    const s = scenario({
      model: { preset: 'gpt-tiny', layers: 4 },
      training: { globalBatch: 16, microBatch: 1 },
      cluster: { nodes: 4, gpusPerNode: 4, fabric: { nodesPerLeaf: 2, oversubscription: 2 } },
      parallel: { tp: 4, pp: 1, dp: 4, zero: 1 },
    });
    const mirrored = simulate(s, { symmetry: true });
    // Shifting by one replica moves a node to another leaf while its neighbour stays: the shift by two moves whole leaves.
    expect(mirrored.report.simulation.replicas).toEqual({ simulated: 2, of: 4 });
    expect(figures(mirrored.report)).toBe(figures(simulate(s).report));
  });

  it('gives the full report where GPUs move within their nodes (a node holds whole tensor x data-parallel blocks, the pipeline across nodes), and applies to over a third of such layouts', () => {
    let applied = 0;
    let runs = 0;
    fc.assert(
      fc.property(
        fc.record({
          // GPUs a node, and a block's (its tensor x context x data-parallel ranks) within it.
          node: fc.constantFrom([2, 2], [4, 2], [4, 4], [8, 2], [8, 4], [8, 8]),
          nodes: fc.constantFrom(1, 2, 3),
          gpusPerPcieSwitch: fc.constantFrom(1, 2, 4),
          halfNics: fc.boolean(),
          tp: fc.constantFrom(1, 2),
          cp: fc.constantFrom(1, 1, 2),
          pipeline: fc.constantFrom(...SCHEDULES),
          microBatches: fc.integer({ min: 1, max: 3 }),
          states: fc.constantFrom(...STATES),
          recompute: fc.constantFrom('none', 'selective'),
          sequenceParallel: fc.boolean(),
          smallBuckets: fc.boolean(),
          oversubscription: fc.constantFrom(1, 2),
        }),
        (c) => {
          const [gpusPerNode, block] = c.node;
          const dp = block / (c.tp * c.cp);
          const pp = (c.nodes * gpusPerNode) / block;
          if (!Number.isInteger(dp) || dp < 2 || pp > 8) return;
          const cluster = {
            nodes: c.nodes,
            gpusPerNode,
            node: { gpusPerPcieSwitch: Math.min(c.gpusPerPcieSwitch, gpusPerNode), nics: c.halfNics ? gpusPerNode / 2 : gpusPerNode },
            fabric: { nodesPerLeaf: 2, oversubscription: c.oversubscription },
          };
          const s = layoutScenario(cluster, { ...c, pp, dp, microBatch: 1 });
          if (!s) return;
          runs++;
          if (mirrorsFull(s)) applied++;
        },
      ),
      { numRuns: 300, seed: 20261203 },
    );
    expect(runs).toBeGreaterThan(100);
    expect(applied).toBeGreaterThan(runs / 3);
  });

  it('moves GPUs within DGX A100 nodes: tp 2 x dp 4 on each node, the pipeline across two, simulates 1 of 4 replicas (2 GPUs a node), optimizer states offloaded to host memory or not', () => {
    for (const states of [{ zero: 1 }, { zero: 2, offload: { optimizer: 'cpu' } }]) {
      const s = scenario({
        cluster: { nodes: 2, gpusPerNode: 8, node: 'dgx-a100' },
        model: { preset: 'gpt-tiny', layers: 4 },
        training: { globalBatch: 32, microBatch: 1 },
        parallel: { tp: 2, pp: 2, dp: 4, ...states },
      });
      const mirrored = simulate(s, { symmetry: true });
      expect(mirrored.report.simulation.replicas).toEqual({ simulated: 1, of: 4 });
      expect([...new Set(mirrored.plan.graph.device)].sort((a, b) => a - b)).toEqual([0, 1, 8, 9]);
      const full = simulate(s).report;
      expect(figures(mirrored.report)).toBe(figures(full));
      if (states.offload) expect(full.memory.peak.cpu).toBeGreaterThan(0);
    }
  });

  it('faults, rather than mirror wrongly, when an operation would touch host memory the symmetry within nodes took to be idle and unchanging', () => {
    const s = scenario({ cluster: { nodes: 2, gpusPerNode: 8, node: 'dgx-a100' }, model: { preset: 'gpt-tiny', layers: 4 }, training: { globalBatch: 32, microBatch: 1 }, parallel: { tp: 2, pp: 2, dp: 4, zero: 1 } });
    const { plan, topology } = simulate(s, { symmetry: true });
    const resources = new StepResources(2, 8);
    const builder = new MirroredGraphBuilder(plan.symmetry!, resources.laneCount, 4);
    const op = builder.operation(0, 0, 1000);
    expect(() => builder.flow(op, 0, 1, 100)).not.toThrow();
    expect(() => builder.memory(op, resources.hbm(0), 0, 100, 0)).not.toThrow();
    expect(() => builder.flow(op, 0, topology.cpuVertex(0), 100)).toThrow(/host memory or NVMe/);
    expect(() => builder.flow(op, topology.nvmeVertex(1), 8, 100)).toThrow(/host memory or NVMe/);
    expect(() => builder.memory(op, resources.cpu(0), 0, 100, 0)).toThrow(/host memory or NVMe/);
  });

  it('is not used when a memory timeline is recorded (a trace needs every device)', () => {
    const s = scenario({ cluster: { nodes: 2, gpusPerNode: 4 }, model: { preset: 'gpt-tiny', layers: 4 }, training: { globalBatch: 16 }, parallel: { tp: 1, pp: 1, dp: 8 } });
    expect(simulate(s, { symmetry: true }).report.simulation.replicas).toEqual({ simulated: 4, of: 8 });
    expect(simulate(s, { symmetry: true, recordMemory: true }).report.simulation.replicas).toBeUndefined();
  });
});

describe('Topology.linkImages', () => {
  const cluster = (nodes: number, nodesPerLeaf: number) => scenario({ cluster: { nodes, gpusPerNode: 4, fabric: { nodesPerLeaf } }, training: { globalBatch: nodes * 4 }, parallel: { tp: 1, pp: 1, dp: nodes * 4 } }).cluster;
  /** Each node's GPUs to node `to[n]`, keeping their places. */
  const nodesTo = (to: number[]) => to.flatMap((m) => [0, 1, 2, 3].map((g) => m * 4 + g));

  it('maps links one to one onto links alike when nodes under one leaf swap, and every link to itself when none moves', () => {
    const topology = buildTopology(cluster(2, 32));
    const identity = topology.linkImages(nodesTo([0, 1]))!;
    expect([...identity]).toEqual(Array.from({ length: topology.count }, (_, l) => l));
    const swapped = topology.linkImages(nodesTo([1, 0]))!;
    expect(new Set(swapped).size).toBe(topology.count);
    for (let l = 0; l < topology.count; l++) {
      expect(swapped[l]).not.toBe(l);
      expect(topology.capacityBytesPerSecond[swapped[l]]).toBe(topology.capacityBytesPerSecond[l]);
      expect(topology.linkType[swapped[l]]).toBe(topology.linkType[l]);
    }
  });

  it('has no image when the nodes of one leaf go under different leaves, and moves a leaf whose nodes all go under another', () => {
    const topology = buildTopology(cluster(4, 2));
    expect(topology.linkImages(nodesTo([2, 1, 0, 3]))).toBeUndefined();
    expect(topology.linkImages(nodesTo([1, 0, 3, 2]))).toBeDefined();
    // Whole leaves swapping: each leaf goes where its nodes go.
    const swapped = topology.linkImages(nodesTo([2, 3, 0, 1]))!;
    expect(new Set(swapped).size).toBe(topology.count);
  });
  it('carries GPUs moving within a node with their PCIe switches and NICs: a move by a whole switch has an image, one that splits a switch none', () => {
    const topology = buildTopology(cluster(2, 32));
    // Default nodes: two GPUs behind each PCIe switch.
    const rotate = (by: number) => Array.from({ length: 8 }, (_, d) => Math.floor(d / 4) * 4 + ((d + by) % 4));
    const images = topology.linkImages(rotate(2))!;
    expect(new Set(images).size).toBe(topology.count);
    for (let l = 0; l < topology.count; l++) expect(topology.linkType[images[l]]).toBe(topology.linkType[l]);
    // Host memory stays: its links are their own images.
    const host = Array.from({ length: topology.count }, (_, l) => l).filter((l) => topology.hostSide[l] === 1);
    expect(host.length).toBeGreaterThan(0);
    expect(host.filter((l) => images[l] !== l && topology.linkType[l] === 'nvme')).toEqual([]);
    expect(topology.linkImages(rotate(1))).toBeUndefined();
  });
});
