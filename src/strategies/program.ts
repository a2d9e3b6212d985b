import type { BlockKind, Tensor, Workload, WorkloadOp } from '../workload/types.js';
import type { DeviceMesh, MeshAxis } from './mesh.js';
import type { OpLayout } from './sharding.js';

/**
 * The step program: what one training step does, per virtual stage, before it is expanded over ranks and
 * micro-batches. It starts as the whole workload on one stage, with no sharding and model states whole on each
 * GPU; each parallelism pass (registry.ts) rewrites it, and the lowering (src/lower) turns it, the schedule's order
 * and the mesh into the operation graph.
 *
 * What the program holds:
 * - per virtual stage, its blocks, each operation with its layout over the mesh (from which the lowering derives
 *   the per-device costs and, by the rule in sharding.ts, the collectives between operations and the bytes of the
 *   pipeline transfers);
 * - how gradients leave the compute (reduced over which axes, with which collective, how often, in what buckets,
 *   and to which memory tier);
 * - where each kind of model state lives and over which axes it is sharded, from which the lowering derives the
 *   parameter gathers, the optimizer's place and the state bytes before the step.
 */
export const MEMORY_TIERS = ['hbm', 'cpu', 'nvme'] as const;
export type Tier = (typeof MEMORY_TIERS)[number];

export interface ProgramOp {
  op: WorkloadOp;
  layout: OpLayout;
}

export interface ProgramBlock {
  kind: BlockKind;
  ops: readonly ProgramOp[];
  /** Copies of tied parameters this block holds because the block owning them lives on another device. */
  tiedCopies: readonly Tensor[];
}

export interface VirtualStage {
  virtualStage: number;
  /** The pipeline position (device along `pp`) holding it, and which of that device's chunks it is. */
  stage: number;
  chunk: number;
  /** Transformer layers in it. */
  layers: number;
  blocks: readonly ProgramBlock[];
}

export interface GradientPolicy {
  /** Mesh axes gradients are reduced over; empty for none. */
  axes: readonly MeshAxis[];
  collective: 'allReduce' | 'reduceScatter';
  /**
   * step: accumulated over micro-batches and reduced after the last, in buckets that overlap its backward;
   * micro-batch: reduced after every micro-batch's gradient pass, living only until then (ZeRO-2 and 3).
   */
  every: 'step' | 'micro-batch';
  /** Gradient bytes of one device per bucket. */
  bucketBytes: number;
}

/** Where one kind of model state lives and the mesh axes it is sharded over (ZeRO). */
export interface StatePlacement {
  shardAxes: readonly MeshAxis[];
  tier: Tier;
}

export interface ModelStates {
  params: StatePlacement;
  grads: StatePlacement;
  optimizer: StatePlacement;
  /** Sharded parameters are gathered for each block at most this many blocks ahead of the compute (ZeRO-3 prefetch). */
  prefetchBlocks: number;
  /** Pinned host memory each GPU keeps for transfers to and from host memory and NVMe, bytes (0 without offloading). */
  pinnedHostBytes: number;
}

/**
 * How attention reads keys and values split over a mesh axis (context parallelism): gathered whole before it
 * (`allgather`, Llama 3), or passed around the ring in `steps` steps, each transfer overlapping the attention of the
 * block held (`ring`). `work[c][j]` is the attention work of the rank at coordinate c of the axis in step j, as a
 * multiple of an even share (1 when every rank and step does the same): a causal mask on a contiguous split loads
 * the ranks unevenly.
 */
export interface ContextAttention {
  axis: MeshAxis;
  exchange: 'ring' | 'allgather';
  steps: number;
  work: readonly (readonly number[])[];
}

export interface StepProgram {
  workload: Workload;
  mesh: DeviceMesh;
  /** By virtual stage. */
  stages: readonly VirtualStage[];
  /** The pipeline schedule that orders each device's passes (strategies/pipeline/registry.ts). */
  schedule: string;
  /** Interleaved schedule: consecutive micro-batches each chunk runs before the next chunk's. */
  microBatchGroup?: number;
  /**
   * Tied parameters on two virtual stages of different devices: `owner` holds them, `copy` keeps a copy (in that
   * block's `tiedCopies`), and their gradients are summed between the two.
   */
  tied?: { tensor: Tensor; owner: number; copy: number };
  gradients: GradientPolicy;
  states: ModelStates;
  /** Attention split along the sequence over a context-parallel axis, when there is one. */
  contextAttention?: ContextAttention;
  /**
   * Mesh axes whose blocking collectives run alongside the computation of their pass instead of after it
   * (FastFold's duality asynchronous operations for DAP).
   */
  overlappedAxes?: readonly MeshAxis[];
}

/** The program before any pass: the whole workload on one stage, nothing sharded, every model state on the GPU. */
export function initialProgram(workload: Workload, mesh: DeviceMesh): StepProgram {
  // A workload repeats one layer block; the program keeps it one object (see withLayouts).
  const blocks = workload.blocks.map(memoized((block: Workload['blocks'][number]): ProgramBlock => ({ kind: block.kind, ops: block.ops.map((op) => ({ op, layout: UNSPLIT })), tiedCopies: [] })));
  const onGpu: StatePlacement = { shardAxes: [], tier: 'hbm' };
  return {
    workload,
    mesh,
    stages: [{ virtualStage: 0, stage: 0, chunk: 0, layers: blocks.filter((b) => b.kind === 'layer').length, blocks }],
    schedule: '1f1b',
    gradients: { axes: [], collective: 'allReduce', every: 'step', bucketBytes: Infinity },
    states: { params: onGpu, grads: onGpu, optimizer: onGpu, prefetchBlocks: 1, pinnedHostBytes: 0 },
  };
}

/** The layout of the operation that owns a parameter tensor, on a virtual stage. */
export function ownerLayout(program: StepProgram, virtualStage: number, tensor: Tensor): OpLayout {
  for (const block of program.stages[virtualStage].blocks) for (const p of block.ops) if (p.op.parameters.includes(tensor)) return p.layout;
  throw new Error(`no operation of virtual stage ${virtualStage} owns ${tensor.name}`);
}

/** The program with `layout` merged into the layout of every operation `select` picks. */
export function withLayout(program: StepProgram, select: (op: WorkloadOp) => boolean, layout: OpLayout): StepProgram {
  return withLayouts(program, (op) => (select(op) ? layout : undefined));
}

/** The program with `layoutOf(op)` merged into each operation's layout, where it gives one. */
export function withLayouts(program: StepProgram, layoutOf: (op: WorkloadOp) => OpLayout | undefined): StepProgram {
  const merge = memoized((p: ProgramOp): ProgramOp => {
    const layout = layoutOf(p.op);
    return layout === undefined ? p : { op: p.op, layout: { ...p.layout, ...layout } };
  });
  // The same block in, the same block out: the layers of a step stay one object each, so that what reads the
  // program (stageCosts) can tell they are alike without comparing them.
  const split = memoized((block: ProgramBlock): ProgramBlock => ({ ...block, ops: block.ops.map(merge) }));
  return { ...program, stages: program.stages.map((stage) => ({ ...stage, blocks: stage.blocks.map(split) })) };
}

/** The layout of an operation nothing splits. */
const UNSPLIT: OpLayout = Object.freeze({});

/** `f`, called once per distinct argument (by identity). */
function memoized<A extends object, R>(f: (a: A) => R): (a: A) => R {
  const seen = new Map<A, R>();
  return (a) => {
    let r = seen.get(a);
    if (r === undefined) seen.set(a, (r = f(a)));
    return r;
  };
}
