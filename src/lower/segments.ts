import { planCollective, type CollectiveKind, type CollectivePlan } from '../collectives/collectives.js';
import type { MeshAxis } from '../strategies/mesh.js';
import type { Pass } from '../strategies/pipeline/schedule.js';
import type { CollectiveStep, BlockCosts, VirtualStageModel } from './stage-model.js';

/**
 * How a pass of a virtual stage is cut into graph operations. One compute operation per pass is the default: the
 * per-layer alternation of compute and blocking collectives gives the same time on a device, and a 1,024-GPU step
 * stays under a million operations. A pass is cut finer where the program asks: at gradient buckets, so that
 * data-parallel reductions overlap the rest of the backward, and at every block when parameters are gathered
 * block by block (ZeRO-3).
 */
export interface CollectiveGroup {
  kind: CollectiveKind;
  axis: MeshAxis;
  bytes: number;
  /** Runs back to back, as one operation. */
  repeat: number;
}

/** The collective planned over ranks 0 to size - 1, remembered on the group: a step emits the same groups many times. */
export function plannedOver(group: CollectiveGroup & { planned?: CollectivePlan }, size: number): CollectivePlan {
  return (group.planned ??= planCollective(group.kind, Array.from({ length: size }, (_, i) => i), group.bytes, group.repeat));
}

export interface Segment {
  /** Share of the pass's time in this segment. */
  fraction: number;
  layers: number;
  /** Gradient bytes of one device the segment produces. */
  gradBytes: number;
  /** Parameters of the segment's blocks on one device. */
  params: number;
  /** Blocking collectives after the segment's compute. */
  collectives: CollectiveGroup[];
  /** Of `fraction`, the share of the pass's time in attention that a context-parallel ring splits into steps. */
  attention: number;
  /** Keys and values of one device the ring passes on per step (in a forward). */
  ringBytes: number;
  /** Of `fraction`, the share of the pass's time in its blocks' recomputed forward, which runs as an operation before it. */
  recompute: number;
}

// Segments are made by one function, so that every one has the same shape for the JIT.
export const segmentOf = (fraction: number, layers: number, gradBytes: number, params: number, collectives: CollectiveGroup[], attention = 0, ringBytes = 0, recompute = 0): Segment => ({
  fraction,
  layers,
  gradBytes,
  params,
  collectives,
  attention,
  ringBytes,
  recompute,
});

/** Of a pass's time, the share in attention (split into steps under context parallelism), by time FLOPs. */
export function attentionShare(v: VirtualStageModel, pass: Pass): number {
  const [attention, total] = pass === 'F' ? [v.attentionForwardFlops, v.forwardTimeFlops] : pass === 'B' ? [v.attentionInputGradFlops, v.inputGradTimeFlops] : pass === 'BW' ? [v.attentionInputGradFlops, v.inputGradTimeFlops + v.weightGradTimeFlops] : [0, 1];
  return total > 0 ? attention / total : 0;
}

/** Of a pass's time, the share of the forward run again before it (activation recomputation), by time FLOPs. */
export function recomputeShare(v: VirtualStageModel, pass: Pass): number {
  const total = pass === 'B' ? v.inputGradTimeFlops : pass === 'BW' ? v.inputGradTimeFlops + v.weightGradTimeFlops : 0;
  return total > 0 ? v.recomputeTimeFlops / total : 0;
}

/** Collective steps as operations: one per kind, axis and size, repeated, in the order each first appears. */
export function groupCollectives(steps: readonly CollectiveStep[]): CollectiveGroup[] {
  const groups: CollectiveGroup[] = [];
  for (const s of steps) {
    const same = groups.find((g) => g.kind === s.kind && g.axis === s.axis && g.bytes === s.bytes);
    if (same) same.repeat++;
    else groups.push({ kind: s.kind, axis: s.axis, bytes: s.bytes, repeat: 1 });
  }
  return groups;
}

/** Each virtual stage's blocking collectives after a whole forward and a whole input-gradient pass, grouped. */
export interface PassCollectives {
  forward: CollectiveGroup[][];
  backward: CollectiveGroup[][];
}

export function passCollectives(virtualStages: readonly VirtualStageModel[]): PassCollectives {
  return {
    forward: virtualStages.map((v) => groupCollectives(v.blocks.flatMap((u) => u.forwardCollectives))),
    backward: virtualStages.map((v) => groupCollectives(v.blocks.flatMap((u) => u.backwardCollectives))),
  };
}

/**
 * The blocks of a virtual stage as segments in pass order (the embedding first and the output head last in a
 * forward; the reverse in a backward), each with its share of the pass's FLOPs, its parameters, gradient bytes and
 * collectives.
 */
export function blockSegments(v: VirtualStageModel, forward: boolean, gradientBytes: number): Segment[] {
  const list = v.blocks.map((u: BlockCosts) =>
    segmentOf(
      // The backward's share includes what it recomputes, as its time does; shares go by time (fp8 GEMMs count less).
      forward ? u.timeFlops.forward : u.timeFlops.inputGrad + u.timeFlops.recompute + u.timeFlops.weightGrad,
      u.layers,
      u.parameters * gradientBytes,
      // A recycled pass of the network uses every parameter of the stage in its forward, and none in a backward.
      u.kind === 'recycle' ? (forward ? v.parametersPerDevice : 0) : u.parameters,
      groupCollectives(forward ? u.forwardCollectives : u.backwardCollectives),
      forward ? u.attentionForwardFlops : u.attentionInputGradFlops,
      u.ringBytes,
      forward ? 0 : u.timeFlops.recompute,
    ),
  );
  const total = list.reduce((a, u) => a + u.fraction, 0) || 1;
  for (const u of list) {
    u.fraction /= total;
    u.attention = Math.min(u.fraction, u.attention / total);
    u.recompute = Math.min(u.fraction, u.recompute / total);
  }
  return forward ? list : list.reverse();
}

/**
 * Gradient buckets of a virtual stage's last gradient pass, in backward order (last block first): whole blocks,
 * grouped until a bucket holds at least `bucketBytes`.
 */
export function gradientBuckets(v: VirtualStageModel, gradientBytes: number, bucketBytes: number): Segment[] {
  const out: Segment[] = [];
  let steps: CollectiveStep[] = [];
  let cur = segmentOf(0, 0, 0, 0, []);
  const close = () => {
    cur.collectives = groupCollectives(steps);
    out.push(cur);
    steps = [];
    cur = segmentOf(0, 0, 0, 0, []);
  };
  const blocks = [...v.blocks].reverse();
  for (const [i, u] of blockSegments(v, false, gradientBytes).entries()) {
    cur.fraction += u.fraction;
    cur.layers += u.layers;
    cur.gradBytes += u.gradBytes;
    cur.params += u.params;
    cur.attention += u.attention;
    cur.ringBytes += u.ringBytes;
    cur.recompute += u.recompute;
    steps.push(...blocks[i].backwardCollectives);
    if (cur.gradBytes >= bucketBytes) close();
  }
  if (cur.gradBytes > 0 || cur.fraction > 0 || out.length === 0) close();
  return out;
}
