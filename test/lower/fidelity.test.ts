import { describe, expect, it } from 'vitest';
import type { CollectiveKind } from '../../src/collectives/collectives.js';
import { execute } from '../../src/engine/executor.js';
import { MemoryTracker } from '../../src/engine/memory.js';
import { buildTopology } from '../../src/hardware/topology.js';
import { StepEmitter } from '../../src/lower/emitter.js';
import { KIND, LANE, StepResources } from '../../src/lower/resources.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';

/**
 * The physical effects of issue 16, each on its own: collectives striped over a node's NICs, latency paid per
 * step by the hop it takes, and Megatron's scatter/gather of pipeline transfers.
 */
const cluster = (patch: Record<string, unknown>) => scenario({ cluster: patch, training: { globalBatch: 64 }, parallel: { tp: 1, pp: 1, dp: undefined } }).cluster;

/** Runs one collective over `group` on a fresh step and returns its time, seconds. */
function collectiveSeconds(clusterPatch: Record<string, unknown>, kind: CollectiveKind, group: number[], bytes: number): number {
  const spec = cluster(clusterPatch);
  const topology = buildTopology(spec);
  const resources = new StepResources(spec.nodes, spec.gpusPerNode);
  const emit = new StepEmitter(resources, topology, 4, spec.collectiveStepLatencySeconds);
  emit.collective(kind, group, bytes, 1, LANE.dp, emit.label({ kind: KIND[kind] }));
  const memory = new MemoryTracker(resources.locationCount, 8, new Float64Array(resources.locationCount).fill(1e21));
  return execute({ graph: emit.graph.build(), links: topology, router: topology, memory }).makespanNs / 1e9;
}

const TWO_NODES = { nodes: 2, gpusPerNode: 8, node: 'dgx-a100' };
const everyGpu = Array.from({ length: 16 }, (_, i) => i);

describe('collectives across nodes, as NCCL runs them', () => {
  it('striping over the NICs speeds a two-node ring of 8 GPUs per node by the NIC count', () => {
    // 8 GiB: the time is bandwidth, the latency a rounding error. With one NIC per node every rail is that NIC.
    const bytes = 8 * 2 ** 30;
    const eight = collectiveSeconds(TWO_NODES, 'allReduce', everyGpu, bytes);
    const one = collectiveSeconds({ ...TWO_NODES, node: { preset: 'dgx-a100', nics: 1 } }, 'allReduce', everyGpu, bytes);
    expect(one / eight).toBeGreaterThan(7.8);
    expect(one / eight).toBeLessThan(8.05);
    // The oracle: 2(n-1)/n of the bytes cross each node boundary at 8 NICs x 25 GB/s x 0.85.
    expect(eight).toBeCloseTo(((2 * 15) / 16) * bytes / (8 * 25e9 * 0.85), 1);
  });

  it('a ring with one member per node keeps its own rail (nothing to stripe)', () => {
    const rails = collectiveSeconds(TWO_NODES, 'allReduce', [3, 11], 2 ** 30);
    expect(rails).toBeCloseTo(2 ** 30 / (25e9 * 0.85), 2);
  });

  it('a small all-reduce is latency-bound: each step pays its hop, and only the steps that cross nodes pay the network', () => {
    const spec = cluster(TWO_NODES);
    const topology = buildTopology(spec);
    const small = collectiveSeconds(TWO_NODES, 'allReduce', everyGpu, 1024);
    const twice = collectiveSeconds(TWO_NODES, 'allReduce', everyGpu, 2048);
    // NCCL's ring model: 2(n-1) steps, of which 2(nodes-1) cross nodes.
    const step = spec.collectiveStepLatencySeconds;
    const intra = step + topology.pathLatencySeconds(0, 1);
    const inter = step + topology.pathLatencySeconds(7, 8);
    const oracle = (30 - 2) * intra + 2 * inter;
    expect(small).toBeGreaterThan(oracle);
    expect(small).toBeLessThan(oracle * 1.01);
    expect(twice / small).toBeLessThan(1.01);
    // Charging every step the network's latency, as before, would cost 30 x inter.
    expect(30 * inter - small).toBeGreaterThan(28 * (inter - intra) * 0.99);
  });
});

describe("Megatron's scatter/gather of pipeline transfers", () => {
  const twoStages = (scatterGather: boolean) =>
    simulate(
      scenario({
        cluster: { nodes: 2, gpusPerNode: 8, node: 'dgx-a100' },
        model: { preset: 'gpt3-1.3b' },
        training: { globalBatch: 16, microBatch: 2 },
        parallel: { tp: 8, pp: 2, dp: 1, schedule: '1f1b', scatterGather },
      }),
    ).report;

  it('divides the inter-node pipeline bytes by t, and gathers the rest over NVLink', () => {
    const on = twoStages(true);
    const off = twoStages(false);
    expect(on.communication.byKind.p2p).toBeCloseTo(off.communication.byKind.p2p / 8, 0);
    expect(on.communication.byKindAndLinkType.p2p.infiniband).toBeCloseTo(off.communication.byKindAndLinkType.p2p.infiniband / 8, 0);
    // Each gather moves (t-1)/t of the tensor per rank, all inside a node.
    expect(on.communication.byKindAndLinkType.allGather.nvlink).toBeCloseTo((off.communication.byKind.p2p * 7) / 8, 0);
    expect(on.communication.byKindAndLinkType.allGather.infiniband ?? 0).toBe(0);
    expect(on.stepTime).toBeLessThan(off.stepTime);
  });
});
