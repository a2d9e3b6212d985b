import { describe, expect, it } from 'vitest';
import type { CollectiveKind } from '../../src/collectives/collectives.js';
import { A100_ALLREDUCE_BUS_BANDWIDTH, chooseProtocol, type CollectiveProtocol } from '../../src/collectives/protocols.js';
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
const cluster = (patch: Record<string, unknown>) => scenario({ cluster: patch, training: { globalBatch: 1024 }, parallel: { tp: 1, pp: 1, dp: undefined } }).cluster;

/** Runs one collective over `group` on a fresh step and returns its time, seconds. */
function collectiveSeconds(clusterPatch: Record<string, unknown>, kind: CollectiveKind, group: number[], bytes: number, protocol: CollectiveProtocol = 'fitted'): number {
  const spec = cluster(clusterPatch);
  const topology = buildTopology(spec);
  const resources = new StepResources(spec.nodes, spec.gpusPerNode);
  const emit = new StepEmitter(resources, topology, 4, spec.collectiveStepLatencySeconds, undefined, protocol);
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

const ONE_NODE = { nodes: 1, gpusPerNode: 8, node: 'dgx-a100' };
const eightGpus = everyGpu.slice(0, 8);
/** Bus bandwidth of an all-reduce as nccl-tests counts it: 2(n-1)/n of the buffer over the time, bytes per second. */
const busBandwidth = (bytes: number, seconds: number, n = 8) => ((2 * (n - 1)) / n) * bytes / seconds;

describe("collectives on NCCL's protocols (cluster.collectiveProtocol)", () => {
  // nccl-tests on 8 A100 SXM reach 231.6 GB/s at 8 GiB; dtsim's NVLink, 300 GB/s at the 0.85 link efficiency, 255:
  // latency-bound sizes match the measured times, bandwidth-bound ones run up to 10% faster.
  const linkScale = (300e9 * 0.85) / 231.58e9;

  it('an 8-GPU all-reduce on nccl follows the measured nccl-tests bus bandwidth within 10% at every size from 1 KiB to 8 GiB, never slower', () => {
    for (const [bytes, measured] of A100_ALLREDUCE_BUS_BANDWIDTH) {
      const ratio = busBandwidth(bytes, collectiveSeconds(ONE_NODE, 'allReduce', eightGpus, bytes, 'nccl')) / (measured * 1e9);
      expect(ratio).toBeGreaterThan(0.99);
      expect(ratio).toBeLessThan(1.005 * linkScale);
    }
  });

  it('the fitted default does not: over 2x slow for the smallest messages and over 20% fast at 16 and 32 MiB (why nccl exists)', () => {
    const ratio = (bytes: number, measured: number) => busBandwidth(bytes, collectiveSeconds(ONE_NODE, 'allReduce', eightGpus, bytes)) / (measured * 1e9 * linkScale);
    expect(ratio(2 ** 10, 0.04)).toBeLessThan(0.5);
    expect(ratio(2 ** 24, 109.22)).toBeGreaterThan(1.2);
    expect(ratio(2 ** 25, 132.77)).toBeGreaterThan(1.2);
  });

  it('bus bandwidth on nccl never falls as messages grow (the law of the curve), from 1 KiB to 8 GiB', () => {
    let previous = 0;
    for (let bytes = 2 ** 10; bytes <= 2 ** 33; bytes *= 2) {
      const bandwidth = busBandwidth(bytes, collectiveSeconds(ONE_NODE, 'allReduce', eightGpus, bytes, 'nccl'));
      expect(bandwidth).toBeGreaterThanOrEqual(previous * 0.999);
      previous = bandwidth;
    }
  });

  it("NCCL's choice: LL for small all-reduces, Simple for large ones; LL128 needs NVLink", () => {
    const call = (bytes: number, nvlink = true) => ({ kind: 'allReduce' as const, ranks: 8, bufferBytes: bytes, steps: 14, interSteps: 0, intraSeconds: 0.5e-6, interSeconds: 0, bytesPerRank: (14 / 8) * bytes, secondsPerByte: 1 / 255e9, nvlink, nodes: 1, membersPerNode: 8 });
    expect(chooseProtocol(call(2 ** 12)).protocol).toBe('LL');
    expect(chooseProtocol(call(2 ** 30)).protocol).toBe('Simple');
    expect(chooseProtocol(call(2 ** 22)).protocol).toBe('LL128');
    expect(chooseProtocol(call(2 ** 22, false)).protocol).not.toBe('LL128');
  });

  it('across 64 nodes, a small all-reduce of one GPU per node takes the tree: faster than the ring\'s 126 network hops alone', () => {
    const nodes = { nodes: 64, gpusPerNode: 8, node: 'dgx-a100' };
    const group = Array.from({ length: 64 }, (_, i) => 8 * i);
    const topology = buildTopology(cluster(nodes));
    const ringWire = 126 * topology.pathLatencySeconds(0, 8);
    expect(collectiveSeconds(nodes, 'allReduce', group, 2 ** 16, 'nccl')).toBeLessThan(ringWire);
    expect(collectiveSeconds(nodes, 'allReduce', group, 2 ** 16)).toBeGreaterThan(ringWire);
    const call = { kind: 'allReduce' as const, ranks: 64, bufferBytes: 2 ** 16, steps: 126, interSteps: 126, intraSeconds: 0, interSeconds: topology.pathLatencySeconds(0, 8), bytesPerRank: (126 / 64) * 2 ** 16, secondsPerByte: 1 / 21e9, nvlink: true, nodes: 64, membersPerNode: 1 };
    expect(chooseProtocol(call).algorithm).toBe('tree');
    expect(chooseProtocol({ ...call, bufferBytes: 2 ** 30, bytesPerRank: (126 / 64) * 2 ** 30 }).algorithm).toBe('ring');
  });

  it('forcing LL on a large all-reduce leaves three quarters of the bandwidth unused: 4x the time of Simple', () => {
    const bytes = 2 ** 30;
    const ll = collectiveSeconds(ONE_NODE, 'allReduce', eightGpus, bytes, 'LL');
    const simple = collectiveSeconds(ONE_NODE, 'allReduce', eightGpus, bytes, 'Simple');
    expect(ll / simple).toBeGreaterThan(3.9);
    expect(ll / simple).toBeLessThan(4.01);
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
