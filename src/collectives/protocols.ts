import { NODE_PRESETS } from '../hardware/presets.js';
import type { CollectiveKind } from './collectives.js';

/**
 * NCCL's algorithms and protocols, and how it picks them per call (NCCL's tuning model, `src/graph/tuning.cc`).
 * Protocols:
 * - LL (low latency): 8-byte stores with a flag in each, so a step costs little more than the wire, but only a
 *   quarter of the bus bandwidth is usable (a third for a one-node all-gather or reduce-scatter);
 * - LL128: 128-byte lines with 8 bytes of flags, 92% of the bandwidth (70% with one GPU per node), NVLink only;
 * - Simple: full bandwidth, with a handshake per chunk that makes each step several microseconds.
 * Algorithms, for an all-reduce across nodes: the ring, whose 2(n-1) steps include 2(nodes-1) network hops, or
 * the tree (a double binary tree over the nodes, a chain inside each), 2 log2(nodes) network hops deep, at 90% of
 * the bandwidth and no more than 80 to 110 GB/s per GPU. Other collectives, and one node, use the ring.
 * NCCL estimates each pair's time as its latency plus the bytes at its bandwidth and takes the fastest, so small
 * messages run latency-bound on LL (on the tree at scale) and large ones at the link rate on a Simple ring: the
 * bus bandwidth of a collective rises with its size, as nccl-tests measure it.
 *
 * dtsim keeps the wire in the topology (each hop pays its path latency) and takes from NCCL's table what a
 * protocol adds: its base latency, and its per-hop latency less LL's, which is the wire's. The flows stay the
 * ring's whichever algorithm is picked: per rank a tree moves the same 2S of an all-reduce, to first order.
 */
export const PROTOCOLS = ['LL', 'LL128', 'Simple'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/**
 * How a scenario times its collectives (`cluster.collectiveProtocol`): `fitted`, a software latency per algorithm
 * step calibrated end to end (docs/validation.md); `nccl`, NCCL's protocol choice with the measured size curve
 * below; or one protocol forced, as NCCL_PROTO does, on NCCL's model alone.
 */
export const COLLECTIVE_PROTOCOLS = ['fitted', 'nccl', ...PROTOCOLS] as const;
export type CollectiveProtocol = (typeof COLLECTIVE_PROTOCOLS)[number];

const us = 1e-6;
type Latencies = Record<Protocol, { base: number; nvlink: number; pcie: number; network: number }>;
/** NCCL's latencies, microseconds: base per call, and per hop over NVLink, PCIe and the network. */
const LATENCY: Record<Algorithm, Latencies> = {
  ring: {
    LL: { base: 3.6, nvlink: 0.47, pcie: 1.0, network: 2.7 },
    LL128: { base: 10.0, nvlink: 1.9, pcie: 2.5, network: 4.0 },
    Simple: { base: 8.4, nvlink: 3.4, pcie: 5.7, network: 9.6 },
  },
  // A tree's Simple hop is the latency of a 256 kB chunk (tuning.cc's own note).
  tree: {
    LL: { base: 4.4, nvlink: 0.52, pcie: 1.0, network: 5.0 },
    LL128: { base: 4.4, nvlink: 1.2, pcie: 1.9, network: 8.5 },
    Simple: { base: 0, nvlink: 28, pcie: 28, network: 50 },
  },
};

export type Algorithm = 'ring' | 'tree';

/** What a protocol choice needs to know of a ring collective and its group. */
export interface RingCall {
  kind: CollectiveKind;
  /** Ranks in the group, and the buffer each holds (the whole tensor of an all-reduce), bytes. */
  ranks: number;
  bufferBytes: number;
  /** Ring steps, and of those the ones that cross nodes. */
  steps: number;
  interSteps: number;
  /** Path latency of the slowest hop inside a node and across nodes, seconds. */
  intraSeconds: number;
  interSeconds: number;
  /** Bytes each rank streams to its successor, and the seconds per byte of the slowest hop at full rate. */
  bytesPerRank: number;
  secondsPerByte: number;
  /** The hops inside a node run over NVLink (LL128 needs it), else PCIe. */
  nvlink: boolean;
  nodes: number;
  /** Fewest members of the group on one node. */
  membersPerNode: number;
}

export interface ProtocolChoice {
  algorithm: Algorithm;
  protocol: Protocol;
  /**
   * The call's time beyond its flows at full rate, seconds: the wire's latency of every hop, the protocol's
   * latency, and the bandwidth it leaves unused, which stays out of the flows so that the bytes reported are the
   * bytes sent.
   */
  overheadSeconds: number;
  /** NCCL's estimate of the whole call on an idle network, and of it the links' own latency, seconds. */
  estimateSeconds: number;
  wireSeconds: number;
}

/** The share of the link rate a protocol reaches on an algorithm (tuning.cc's bus-bandwidth refinements). */
export function bandwidthShare(protocol: Protocol, call: Pick<RingCall, 'kind' | 'nodes' | 'membersPerNode'>, algorithm: Algorithm = 'ring'): number {
  if (algorithm === 'tree') return 0.9 * (protocol === 'LL' ? 1 / 3.8 : protocol === 'LL128' ? 0.915 : 1);
  if (protocol === 'LL') return call.nodes > 1 || call.kind === 'allReduce' ? 1 / 4 : 1 / 3;
  if (protocol === 'LL128') return call.membersPerNode < 2 ? 0.7 : 0.92;
  return 1;
}

/**
 * Measured bus bandwidth of an all-reduce over 8 A100 SXM4 80GB in one node, by buffer size (nccl-tests
 * all_reduce_perf, in place, NCCL 2.18.5; Azure AI-benchmarking-guide, ND A100 v4 results): bytes, GB/s.
 */
export const A100_ALLREDUCE_BUS_BANDWIDTH: readonly (readonly [bytes: number, gbPerSecond: number])[] = [
  [2 ** 10, 0.04], [2 ** 11, 0.08], [2 ** 12, 0.17], [2 ** 13, 0.33], [2 ** 14, 0.67], [2 ** 15, 1.37], [2 ** 16, 2.7], [2 ** 17, 5.15],
  [2 ** 18, 10.11], [2 ** 19, 19.24], [2 ** 20, 36.22], [2 ** 21, 53.54], [2 ** 22, 71.43], [2 ** 23, 89.99], [2 ** 24, 109.22], [2 ** 25, 132.77],
  [2 ** 26, 166.63], [2 ** 27, 174.18], [2 ** 28, 213.87], [2 ** 29, 221.58], [2 ** 30, 228.1], [2 ** 31, 230.22], [2 ** 32, 230.48], [2 ** 33, 231.58],
];

/**
 * How far the measured curve falls below NCCL's model of the same all-reduce (8 ranks, one node, NVLink, at the
 * curve's plateau), by buffer size: between the latency-bound small sizes and the plateau, NCCL fills its pipeline
 * of chunks more slowly than a latency-plus-bandwidth model says. A factor on the modelled time, 1 where the
 * model is already as slow; read off the curve once, interpolated in log size, and applied to every call. It
 * scales the protocol's latency and transfer, not the links' own latency, which the topology sets.
 */
/** Largest bus bandwidth of a tree per GPU, bytes per second (tuning.cc: over 2 nodes, and up to 2). */
const treeCap = (nodes: number) => (nodes > 2 ? 80e9 : 110e9);

/** The measured node as dtsim's dgx-a100 preset routes it: GPU to NVSwitch to GPU. */
const MEASURED_HOP_SECONDS = 2 * NODE_PRESETS['dgx-a100'].nvlinkLatencySeconds;
const SLOWDOWN: readonly (readonly [log2Bytes: number, factor: number])[] = (() => {
  const plateau = A100_ALLREDUCE_BUS_BANDWIDTH[A100_ALLREDUCE_BUS_BANDWIDTH.length - 1][1] * 1e9;
  return A100_ALLREDUCE_BUS_BANDWIDTH.map(([bytes, busBandwidth]) => {
    const bytesPerRank = (2 * 7 * bytes) / 8;
    const reference: RingCall = { kind: 'allReduce', ranks: 8, bufferBytes: bytes, steps: 14, interSteps: 0, intraSeconds: MEASURED_HOP_SECONDS, interSeconds: 0, bytesPerRank, secondsPerByte: 1 / plateau, nvlink: true, nodes: 1, membersPerNode: 8 };
    const measured = bytesPerRank / (busBandwidth * 1e9);
    const modelled = modelChoice(reference);
    // The wire's latency is the topology's: the factor scales the rest.
    return [Math.log2(bytes), Math.max(1, (measured - modelled.wireSeconds) / (modelled.estimateSeconds - modelled.wireSeconds))] as const;
  });
})();

/** The measured slowdown over NCCL's model at a buffer of `bytes` (1 past the largest size measured). */
export function measuredSlowdown(bytes: number): number {
  if (bytes <= 0) return 1;
  const x = Math.log2(bytes);
  if (x <= SLOWDOWN[0][0]) return SLOWDOWN[0][1];
  for (let i = 1; i < SLOWDOWN.length; i++) {
    const [x1, f1] = SLOWDOWN[i];
    if (x <= x1) {
      const [x0, f0] = SLOWDOWN[i - 1];
      return f0 + ((f1 - f0) * (x - x0)) / (x1 - x0);
    }
  }
  return 1;
}

/**
 * NCCL's choice for a collective: the algorithm and protocol with the least estimated time, slowed where
 * nccl-tests measure a call of that size slower than the model. `only` forces one protocol, on the model alone.
 */
export function chooseProtocol(call: RingCall, only?: Protocol): ProtocolChoice {
  const choice = modelChoice(call, only);
  if (only) return choice;
  const slowdown = measuredSlowdown(call.bufferBytes);
  if (slowdown === 1) return choice;
  const extra = (choice.estimateSeconds - choice.wireSeconds) * (slowdown - 1);
  return { ...choice, overheadSeconds: choice.overheadSeconds + extra, estimateSeconds: choice.estimateSeconds + extra };
}

/** NCCL's tuning model alone: the algorithm and protocol with the least estimated time; `only` forces a protocol. */
function modelChoice(call: RingCall, only?: Protocol): ProtocolChoice {
  let best: ProtocolChoice | undefined;
  const intraHop = call.nvlink ? 'nvlink' : 'pcie';
  const fullRate = call.bytesPerRank * call.secondsPerByte;
  const algorithms: Algorithm[] = call.kind === 'allReduce' && call.nodes > 1 ? ['ring', 'tree'] : ['ring'];
  for (const algorithm of algorithms) {
    // Hops inside a node and across nodes: the ring's steps, or down and up a chain in each node and the tree.
    const intraHops = algorithm === 'ring' ? call.steps - call.interSteps : 2 * Math.max(0, call.membersPerNode - 1);
    const interHops = algorithm === 'ring' ? call.interSteps : 2 * Math.ceil(Math.log2(call.nodes));
    const wire = intraHops * call.intraSeconds + interHops * call.interSeconds;
    for (const protocol of only ? [only] : PROTOCOLS) {
      if (protocol === 'LL128' && !call.nvlink && !only) continue;
      const table = LATENCY[algorithm][protocol];
      const ll = LATENCY[algorithm].LL;
      let latency = table.base + intraHops * (table[intraHop] - ll[intraHop]) + interHops * (table.network - ll.network);
      // tuning.cc: a large multi-node Simple ring all-reduce plateaus below the model, by about this factor on its latency.
      if (algorithm === 'ring' && protocol === 'Simple' && call.nodes > 1 && call.kind === 'allReduce' && call.bufferBytes >= (call.ranks / 16) * 65536) latency *= 1.9;
      let transfer = fullRate / bandwidthShare(protocol, call, algorithm);
      if (algorithm === 'tree') transfer = Math.max(transfer, call.bytesPerRank / treeCap(call.nodes));
      const estimateSeconds = wire + latency * us + transfer;
      if (!best || estimateSeconds < best.estimateSeconds) best = { algorithm, protocol, overheadSeconds: Math.max(0, estimateSeconds - fullRate), estimateSeconds, wireSeconds: wire };
    }
  }
  return best!;
}
