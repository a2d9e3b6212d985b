/**
 * What a model computes before any parallelism: blocks of operations on tensors with named axes.
 *
 * A workload knows nothing of devices. Each operation states its own costs (FLOPs per pass, the tensors its
 * element-wise kernels move through HBM, the tensors it saves for its backward, its parameters), so that a
 * parallelism can shard them by axis, and the step's figures are sums over operations rather than closed forms of
 * a whole layer. A model kind (gpt.ts, and later others) builds one for a micro-batch.
 */

/**
 * Named tensor axes. `keys` is the second sequence axis of an attention score matrix (or the summed-over residue
 * of a triangle operation); `positions` the rows of a position-embedding table, named apart from `seq` so that
 * splitting the sequence does not split the table. The Evoformer's (evoformer.ts): `msaRows` the sequences of a
 * multiple sequence alignment, `residues` and `residues2` the two residue axes of a pair representation (rows i
 * and columns j; an MSA's residues are `residues`), `channels` a representation's channels.
 */
export const TENSOR_AXES = ['batch', 'seq', 'keys', 'positions', 'hidden', 'heads', 'kvHeads', 'headDim', 'ffn', 'vocab', 'msaRows', 'residues', 'residues2', 'channels'] as const;
export type TensorAxis = (typeof TENSOR_AXES)[number];

/** A shape: the size of each axis the tensor has. */
export type Shape = Readonly<Partial<Record<TensorAxis, number>>>;

/**
 * What sets an element's size: `activation` the training precision's activation type; `fp32` always 4 bytes
 * (logits kept for the loss); `mask` 1 byte (dropout masks); `parameter` the precision's parameter type.
 */
export type ElementType = 'activation' | 'fp32' | 'mask' | 'parameter';

export interface Tensor {
  name: string;
  shape: Shape;
  element: ElementType;
}

/**
 * A tensor an operation keeps or moves, and where it lies: `input` is the operation's input as it arrived (before
 * any gather the operation's layout needs, as Megatron saves sequence-parallel inputs); `own` lies as the
 * operation itself does.
 */
export interface SiteTensor extends Tensor {
  site: 'input' | 'own';
}

export interface SavedTensor extends SiteTensor {
  /** Still needed by the weight-gradient pass (W) after the input-gradient pass (B): a linear projection's input. */
  weightGrad?: boolean;
  /** Dropped and recomputed under selective recomputation (Korthikanti et al.): the attention scores. */
  selective?: boolean;
}

/** Operation classes: what kind of kernel runs, for the cost model and for parallelisms to choose by. */
export const OP_CLASSES = ['gemm', 'attention', 'elementwise', 'norm', 'embedding', 'loss'] as const;
export type OpClass = (typeof OP_CLASSES)[number];

/** FLOPs of one operation in each pass, per micro-batch, before any parallelism. */
export interface PassFlops {
  forward: number;
  /** Input gradients (B). */
  inputGrad: number;
  /** Weight gradients (W). */
  weightGrad: number;
}

export interface WorkloadOp {
  name: string;
  class: OpClass;
  /** The activation it reads (the output of the operation before it) and the one it writes. */
  input: Tensor;
  output: Tensor;
  flops: PassFlops;
  /**
   * Tensors its element-wise kernels move through HBM in each pass, each once per `times`: stated per operation.
   * Matrix multiplications' operand traffic is not listed; it is inside their time at the compute roof.
   */
  moved: readonly (SiteTensor & { times: number })[];
  /** Tensors kept from its forward until its backward. */
  saved: readonly SavedTensor[];
  parameters: readonly Tensor[];
  /**
   * An attention's keys and values, which every query position reads across the whole sequence: what context
   * parallelism gathers or passes around its ring. They are among its saved tensors.
   */
  keyValue?: readonly SavedTensor[];
  /** An attention that skips the blocks a causal mask hides, so that later query positions do more work. */
  causal?: boolean;
  /**
   * Its FLOPs run in a fused FlashAttention kernel: at the GPU's FlashAttention efficiency rather than a GEMM's,
   * with `backwardRecompute` FLOPs its backward kernel spends recomputing the scores it never stored.
   */
  flash?: { backwardRecompute: number };
  /**
   * The operation whose output `input` is, by name (the latest earlier operation so named), when it is not the
   * operation before: a model of two streams (the Evoformer's MSA and pair representations) reads each from where
   * it was last written. `DATA` for the step's input batch, which every rank loads itself.
   */
  from?: string;
  /**
   * Tensors the operation computes from its own slice and then needs whole (an attention's bias from the pair
   * representation, the projection an outer product or triangle multiplication reads along the other axis): where
   * a layout splits the operation but not them, they are gathered in the forward and their gradients
   * reduce-scattered in the backward. Listed among `saved` too when the backward keeps them.
   */
  gathered?: readonly Tensor[];
}

/** `WorkloadOp.from` for an operation that reads the step's input data. */
export const DATA = 'data';

/**
 * Block kinds: a transformer layer can be recomputed whole; the embedding and the output head cannot. A `recycle`
 * block is a forward-only pass of the network before the last (AlphaFold's recycling): it keeps nothing, computes
 * no gradients and holds no parameters of its own (its operations' are those of the blocks that follow).
 */
export type BlockKind = 'embedding' | 'layer' | 'head' | 'recycle';

export interface WorkloadBlock {
  kind: BlockKind;
  /** Operations in forward order; each reads the output of the one before (the first, the block before's last). */
  ops: readonly WorkloadOp[];
}

export interface Workload {
  name: string;
  /** Blocks in forward order: the pipeline cuts between blocks. */
  blocks: readonly WorkloadBlock[];
  /**
   * A parameter tensor two blocks use (tied input and output embeddings): block `from` owns it (it is among its
   * operations' parameters), block `to` uses it too. A pipeline that puts them on different devices keeps a copy
   * with the second and sums their gradients.
   */
  tied?: { tensor: Tensor; from: number; to: number };
}

/** Elements of a shape. */
export function elements(shape: Shape): number {
  let n = 1;
  for (const size of Object.values(shape)) n *= size;
  return n;
}
