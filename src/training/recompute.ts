import type { BlockKind, SavedTensor, WorkloadOp } from '../workload/types.js';

/**
 * Activation recomputation policies: which saved tensors a block keeps from its forward to its backward, and which
 * of its operations run their forward again before its input-gradient pass.
 *
 * - none: everything is kept.
 * - selective (Korthikanti et al., MLSys 2023): the attention scores are dropped and the attention core is run
 *   again; with FlashAttention there are no scores to drop, but the core still runs again.
 * - full: a transformer layer keeps only its input and runs its whole forward again, its collectives included, while
 *   the rebuilt layer's activations live for the duration of its backward. With `training.recomputeLayers`, only the
 *   first layers of each virtual stage do; the lowering gives the rest the `none` plan (stage-costs.ts).
 */
export const RECOMPUTE_POLICIES = ['none', 'selective', 'full'] as const;
export type Recompute = (typeof RECOMPUTE_POLICIES)[number];

export interface RecomputePlan {
  /** Whether `tensor`, saved by operation `index` of a block of `kind`, is kept. */
  keeps(kind: BlockKind, index: number, tensor: SavedTensor): boolean;
  /** Whether operation `op` of a block of `kind` runs its forward again before the block's input-gradient pass. */
  reruns(kind: BlockKind, op: WorkloadOp): boolean;
  /** A block of `kind` is rebuilt whole during its backward: its forward collectives repeat and its activations live again. */
  rebuildsWhole(kind: BlockKind): boolean;
  /** Forward-equivalents of kernel launches its input-gradient pass adds, per recomputed layer. */
  extraIssues: number;
}

export function recomputePlan(policy: Recompute): RecomputePlan {
  switch (policy) {
    case 'none':
      return { keeps: () => true, reruns: () => false, rebuildsWhole: () => false, extraIssues: 0 };
    case 'selective':
      return { keeps: (_kind, _index, tensor) => !tensor.selective, reruns: (_kind, op) => op.class === 'attention', rebuildsWhole: () => false, extraIssues: 0 };
    case 'full':
      return {
        // A layer's input is the first operation's input.
        keeps: (kind, index, tensor) => kind !== 'layer' || (index === 0 && tensor.site === 'input'),
        reruns: (kind) => kind === 'layer',
        rebuildsWhole: (kind) => kind === 'layer',
        extraIssues: 1,
      };
  }
}
