import type { CollectiveKind } from '../collectives/collectives.js';
import type { Shape, TensorAxis, WorkloadOp } from '../workload/types.js';
import type { DeviceMesh, MeshAxis } from './mesh.js';

/**
 * Sharding: how each operation's tensors lie over the mesh, and the one rule that turns a change of sharding
 * between two operations into a collective.
 *
 * A layout says, for each mesh axis, which tensor axes an operation splits over it: Megatron's tensor parallelism
 * splits heads, FFN columns and the vocabulary over `tp`; its sequence parallelism splits the sequence of the
 * layer norms and dropouts over `tp` too. Along one mesh axis an activation is then replicated (R), split on one
 * tensor axis (S:x), or a partial sum (P) when an operation contracts an axis it holds split (a row-parallel
 * linear). Between a producer and its consumer:
 *
 *   P -> R all-reduce    P -> S:x reduce-scatter    S:x -> R all-gather    S:x -> S:y all-to-all    R -> S:x nothing
 *
 * In the backward pass the gradients flow the other way, from the consumer's input gradient to the producer's
 * output gradient, by the same rule: an operation whose output holds a split axis its input lacks (a
 * column-parallel linear) produces a partial input gradient, and a partial output's gradient is replicated. That
 * gives Megatron's two all-reduces per layer in each direction, and with sequence parallelism two all-gathers and
 * two reduce-scatters, with no case written for either.
 */
export type OpLayout = Readonly<Partial<Record<MeshAxis, readonly TensorAxis[]>>>;

/** How an activation lies along one mesh axis: 'R', 'P', or 'S:' and the split tensor axis. */
export type AxisState = 'R' | 'P' | `S:${TensorAxis}`;

/** The tensor axis of `shape` that `split` (a layout's axes for one mesh axis) splits, if any. */
export function splitAxis(shape: Shape, split: readonly TensorAxis[] | undefined): TensorAxis | undefined {
  if (split === undefined) return undefined;
  for (const axis of split) if (shape[axis] !== undefined) return axis;
  return undefined;
}

/** The layout with nothing split over mesh axis `mesh`. */
export function withoutAxis(layout: OpLayout, mesh: MeshAxis): OpLayout {
  const { [mesh]: _dropped, ...rest } = layout;
  return rest;
}

/** Whether `shape` is split along mesh axis `mesh` under `layout`. */
export const isSplit = (shape: Shape, layout: OpLayout, mesh: MeshAxis): boolean => splitAxis(shape, layout[mesh]) !== undefined;

/**
 * Into how many distinct parts `layout` splits a tensor of `shape` over `mesh`: 1 for a tensor no axis splits
 * (replicated). A tensor axis shorter than the mesh axis is split into its own length and replicated beyond it, as
 * Megatron replicates key/value heads when tp exceeds them.
 */
export function shards(shape: Shape, layout: OpLayout, mesh: DeviceMesh): number {
  let n = 1;
  for (const axis of mesh.axes) {
    const split = splitAxis(shape, layout[axis]);
    if (split !== undefined) n *= Math.min(mesh.sizeOf(axis), shape[split]!);
  }
  return n;
}

/** The states of an operation's input and output along `mesh` in its forward, and of their gradients in its backward. */
export interface OpStates {
  input: AxisState;
  output: AxisState;
  /** The input gradient it produces. */
  inputGrad: AxisState;
  /** The output gradient it needs. */
  outputGrad: AxisState;
}

export function opStates(op: WorkloadOp, layout: OpLayout, mesh: MeshAxis): OpStates {
  const split = layout[mesh];
  const inSplit = splitAxis(op.input.shape, split);
  const outSplit = splitAxis(op.output.shape, split);
  const input: AxisState = inSplit ? `S:${inSplit}` : 'R';
  // An axis held split in the input or a parameter and absent from the output is summed over: a partial output.
  const contracted = (inSplit !== undefined && op.output.shape[inSplit] === undefined) || op.parameters.some((p) => {
    const axis = splitAxis(p.shape, split);
    return axis !== undefined && op.output.shape[axis] === undefined;
  });
  const output: AxisState = outSplit ? `S:${outSplit}` : contracted ? 'P' : input;
  const inputGrad: AxisState = outSplit !== undefined && op.input.shape[outSplit] === undefined ? 'P' : input;
  const outputGrad: AxisState = output === 'P' ? 'R' : output;
  return { input, output, inputGrad, outputGrad };
}

/** The collective that turns `from` into `to` along one mesh axis, or undefined when none is needed. */
export function transition(from: AxisState, to: AxisState): CollectiveKind | undefined {
  if (from === to) return undefined;
  if (from === 'P') return to === 'R' ? 'allReduce' : 'reduceScatter';
  if (from === 'R') return undefined; // each rank keeps its slice
  return to === 'R' ? 'allGather' : to === 'P' ? undefined : 'allToAll';
}
