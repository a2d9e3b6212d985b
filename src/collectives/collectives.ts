/**
 * Collective algorithms as plans of flows over the topology.
 *
 * A collective is one operation whose flows run concurrently; the flow network
 * then makes the slowest link and any contention show in its time. Ring
 * algorithms are pipelined, so a ring is modelled as every rank streaming its
 * whole share to its successor at once, plus one latency per algorithm step
 * (link latency and a per-step software overhead). Volumes per rank follow the
 * standard ring analysis (REFERENCE.md, "Communication"): all-reduce 2(n-1)/n·S,
 * reduce-scatter and all-gather (n-1)/n·S, all-to-all (n-1)/n·S in direct pairs.
 */
export const COLLECTIVE_KINDS = ['p2p', 'allReduce', 'reduceScatter', 'allGather', 'allToAll', 'broadcast'] as const;
export type CollectiveKind = (typeof COLLECTIVE_KINDS)[number];

export interface PlannedFlow {
  source: number;
  target: number;
  bytes: number;
}

export interface CollectivePlan {
  flows: PlannedFlow[];
  /** Sequential algorithm steps, each paying one latency. */
  steps: number;
  /** A ring: each rank streams to its successor (all-reduce, reduce-scatter, all-gather, broadcast). */
  ring: boolean;
}

/**
 * Plans `kind` over `group` (device ranks, ring order) for a buffer of `bytes`
 * per rank (the full tensor for all-reduce, reduce-scatter, all-gather and
 * broadcast; each rank's whole send buffer for all-to-all), repeated `repeat` times
 * back to back.
 */
export function planCollective(kind: CollectiveKind, group: readonly number[], bytes: number, repeat = 1): CollectivePlan {
  const n = group.length;
  const flows: PlannedFlow[] = [];
  if (n < 2 || bytes <= 0 || repeat <= 0) return { flows, steps: 0, ring: false };
  const ring = (perRank: number, steps: number, open = false): CollectivePlan => {
    for (let i = 0; i < (open ? n - 1 : n); i++) flows.push({ source: group[i], target: group[(i + 1) % n], bytes: perRank * repeat });
    return { flows, steps: steps * repeat, ring: true };
  };
  switch (kind) {
    case 'p2p':
      flows.push({ source: group[0], target: group[1], bytes: bytes * repeat });
      return { flows, steps: repeat, ring: false };
    case 'allReduce':
      return ring((2 * (n - 1) * bytes) / n, 2 * (n - 1));
    case 'reduceScatter':
    case 'allGather':
      return ring(((n - 1) * bytes) / n, n - 1);
    case 'broadcast':
      return ring(bytes, n - 1, true);
    case 'allToAll':
      for (const source of group) for (const target of group) if (source !== target) flows.push({ source, target, bytes: (bytes / n) * repeat });
      return { flows, steps: repeat, ring: false };
  }
}
