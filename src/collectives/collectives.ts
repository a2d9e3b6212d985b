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

/** What each flow of a collective carries, bytes, and its sequential algorithm steps: a plan without its flows. */
export interface CollectiveVolume {
  flowBytes: number;
  steps: number;
  ring: boolean;
}

/**
 * The volume of `kind` over `n` ranks for a buffer of `bytes` per rank (the full tensor for all-reduce,
 * reduce-scatter, all-gather and broadcast; each rank's whole send buffer for all-to-all), repeated `repeat` times
 * back to back; undefined when nothing moves.
 */
export function collectiveVolume(kind: CollectiveKind, n: number, bytes: number, repeat = 1): CollectiveVolume | undefined {
  if (n < 2 || bytes <= 0 || repeat <= 0) return undefined;
  switch (kind) {
    case 'p2p':
      return { flowBytes: bytes * repeat, steps: repeat, ring: false };
    case 'allReduce':
      return { flowBytes: ((2 * (n - 1) * bytes) / n) * repeat, steps: 2 * (n - 1) * repeat, ring: true };
    case 'reduceScatter':
    case 'allGather':
      return { flowBytes: (((n - 1) * bytes) / n) * repeat, steps: (n - 1) * repeat, ring: true };
    case 'broadcast':
      return { flowBytes: bytes * repeat, steps: (n - 1) * repeat, ring: true };
    case 'allToAll':
      return { flowBytes: (bytes / n) * repeat, steps: repeat, ring: false };
  }
}

/**
 * The pairs of ranks (places 0 to n - 1 in the group's ring order) that `kind`'s flows join, as [source, target]:
 * each rank to its successor around a ring (an open one for a broadcast), every ordered pair for an all-to-all.
 */
export function collectivePairs(kind: CollectiveKind, n: number): [number, number][] {
  const pairs: [number, number][] = [];
  if (kind === 'p2p') pairs.push([0, 1]);
  else if (kind === 'allToAll') {
    for (let source = 0; source < n; source++) for (let target = 0; target < n; target++) if (source !== target) pairs.push([source, target]);
  } else for (let i = 0; i < (kind === 'broadcast' ? n - 1 : n); i++) pairs.push([i, (i + 1) % n]);
  return pairs;
}

/** Plans `kind` over `group` (device ranks, ring order): its volume (collectiveVolume) on each of its pairs' flows. */
export function planCollective(kind: CollectiveKind, group: readonly number[], bytes: number, repeat = 1): CollectivePlan {
  const volume = collectiveVolume(kind, group.length, bytes, repeat);
  if (volume === undefined) return { flows: [], steps: 0, ring: false };
  const flows = collectivePairs(kind, group.length).map(([source, target]) => ({ source: group[source], target: group[target], bytes: volume.flowBytes }));
  return { flows, steps: volume.steps, ring: volume.ring };
}
