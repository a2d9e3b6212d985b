import type { CollectiveKind } from './collectives.js';

/**
 * NCCL's three ring protocols and how it picks one per call (NCCL's tuning model, `src/graph/tuning.cc`):
 * - LL (low latency): 8-byte stores with a flag in each, so a step costs little more than the wire, but only a
 *   quarter of the bus bandwidth is usable (a third for a one-node all-gather or reduce-scatter);
 * - LL128: 128-byte lines with 8 bytes of flags, 92% of the bandwidth (70% with one GPU per node), NVLink only;
 * - Simple: full bandwidth, with a handshake per chunk that makes each step several microseconds.
 * NCCL estimates each protocol's time as its latency plus the bytes at its bandwidth and takes the fastest, so
 * small messages run latency-bound on LL and large ones at the link rate on Simple: the bus bandwidth of a
 * collective rises with its size, as nccl-tests measure it.
 *
 * dtsim keeps the wire in the topology (each step still pays the path latency of its hop) and takes from NCCL's
 * table what a protocol adds: its base latency, and its per-step latency less LL's, which is the wire's.
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
/** NCCL's ring latencies, microseconds: base per call, and per step over NVLink, PCIe and the network. */
const RING_LATENCY: Record<Protocol, { base: number; nvlink: number; pcie: number; network: number }> = {
  LL: { base: 3.6, nvlink: 0.47, pcie: 1.0, network: 2.7 },
  LL128: { base: 10.0, nvlink: 1.9, pcie: 2.5, network: 4.0 },
  Simple: { base: 8.4, nvlink: 3.4, pcie: 5.7, network: 9.6 },
};

/** What a protocol choice needs to know of a ring collective and its group. */
export interface RingCall {
  kind: CollectiveKind;
  /** Ranks in the group, and the buffer each holds (the whole tensor of an all-reduce), bytes. */
  ranks: number;
  bufferBytes: number;
  /** Algorithm steps, and of those the ones that cross nodes. */
  steps: number;
  interSteps: number;
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
  protocol: Protocol;
  /**
   * Time the protocol adds to the wire, seconds: its base and per-step latency beyond the links' own, plus the
   * bandwidth it leaves unused, which stays out of the flows so that the bytes reported are the bytes sent.
   */
  overheadSeconds: number;
  /** NCCL's estimate of the whole call (for tests and docs), seconds, without the links' own latency. */
  estimateSeconds: number;
}

/** The share of the link rate a protocol reaches (tuning.cc's bus-bandwidth refinements). */
export function bandwidthShare(protocol: Protocol, call: Pick<RingCall, 'kind' | 'nodes' | 'membersPerNode'>): number {
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
 * model is already as slow; read off the curve once, interpolated in log size, and applied to every ring.
 */
const SLOWDOWN: readonly (readonly [log2Bytes: number, factor: number])[] = (() => {
  const plateau = A100_ALLREDUCE_BUS_BANDWIDTH[A100_ALLREDUCE_BUS_BANDWIDTH.length - 1][1] * 1e9;
  return A100_ALLREDUCE_BUS_BANDWIDTH.map(([bytes, busBandwidth]) => {
    const bytesPerRank = (2 * 7 * bytes) / 8;
    const reference: RingCall = { kind: 'allReduce', ranks: 8, bufferBytes: bytes, steps: 14, interSteps: 0, bytesPerRank, secondsPerByte: 1 / plateau, nvlink: true, nodes: 1, membersPerNode: 8 };
    const modelled = modelProtocol(reference).estimateSeconds + 14 * RING_LATENCY.LL.nvlink * us;
    const measured = bytesPerRank / (busBandwidth * 1e9);
    return [Math.log2(bytes), Math.max(1, measured / modelled)] as const;
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
 * NCCL's choice for a ring collective: the protocol with the least estimated time, slowed where nccl-tests
 * measure a collective of that size slower than the model. `only` forces one protocol, on the model alone.
 */
export function chooseProtocol(call: RingCall, only?: Protocol): ProtocolChoice {
  const choice = modelProtocol(call, only);
  if (only) return choice;
  const slowdown = measuredSlowdown(call.bufferBytes);
  if (slowdown === 1) return choice;
  const extra = choice.estimateSeconds * (slowdown - 1);
  return { protocol: choice.protocol, overheadSeconds: choice.overheadSeconds + extra, estimateSeconds: choice.estimateSeconds + extra };
}

/** NCCL's tuning model alone: the protocol with the least estimated time; `only` forces one. */
function modelProtocol(call: RingCall, only?: Protocol): ProtocolChoice {
  let best: ProtocolChoice | undefined;
  for (const protocol of only ? [only] : PROTOCOLS) {
    if (protocol === 'LL128' && !call.nvlink && !only) continue;
    const table = RING_LATENCY[protocol];
    const wire = RING_LATENCY.LL;
    const intraHop = call.nvlink ? 'nvlink' : 'pcie';
    const intraSteps = call.steps - call.interSteps;
    let latency = table.base + intraSteps * (table[intraHop] - wire[intraHop]) + call.interSteps * (table.network - wire.network);
    // tuning.cc: a large multi-node Simple all-reduce plateaus below the model, by about this factor on its latency.
    if (protocol === 'Simple' && call.nodes > 1 && call.kind === 'allReduce' && call.bufferBytes >= (call.ranks / 16) * 65536) latency *= 1.9;
    const fullRate = call.bytesPerRank * call.secondsPerByte;
    const unused = fullRate / bandwidthShare(protocol, call) - fullRate;
    const overheadSeconds = latency * us + unused;
    const estimateSeconds = overheadSeconds + fullRate + (intraSteps * wire[intraHop] + call.interSteps * wire.network) * us;
    if (!best || estimateSeconds < best.estimateSeconds) best = { protocol, overheadSeconds, estimateSeconds };
  }
  return best!;
}
