import type { CollectiveKind } from '../collectives/collectives.js';
import type { MeshAxis } from '../strategies/mesh.js';
import type { BlockKind } from '../workload/types.js';

/** What one device does for each block and virtual stage of a step, per micro-batch: what stageCosts (stage-costs.ts) works out. */
export interface CollectiveStep {
  kind: CollectiveKind;
  axis: MeshAxis;
  /** Per rank, as planCollective counts them: the whole tensor, or for an all-to-all each rank's send buffer. */
  bytes: number;
}

export interface BlockCosts {
  kind: BlockKind;
  layers: number;
  /** Parameters one device holds, before any data-parallel sharding. */
  parameters: number;
  forwardFlops: number;
  /** Input gradients, with what their kernels recompute (kernelRecomputeFlops) but without a forward run again. */
  inputGradFlops: number;
  weightGradFlops: number;
  /** Forward FLOPs run again before the input-gradient pass. */
  recomputeFlops: number;
  /** FLOPs the input-gradient pass's kernels spend recomputing what they did not store (FlashAttention's scores). */
  kernelRecomputeFlops: number;
  /** HBM bytes the element-wise kernels move in each pass, and in the forward run again. */
  movedBytes: number;
  recomputeMovedBytes: number;
  /** Activation bytes kept from the forward to the backward; of those, kept from B until W; rebuilt during B. */
  activationBytes: number;
  weightGradBytes: number;
  rebuiltBytes: number;
  /** Forward-equivalents of kernel launches the recomputation adds. */
  extraIssues: number;
  /** Blocking collectives after the block's compute: in the forward, and in the input-gradient pass. */
  forwardCollectives: CollectiveStep[];
  backwardCollectives: CollectiveStep[];
  /** Of the time FLOPs, those of attention, which a context-parallel ring splits into steps: forward, and input-gradient with any recomputation. */
  attentionForwardFlops: number;
  attentionInputGradFlops: number;
  /** Keys and values of one device that a context-parallel ring passes on in each step of a forward. */
  ringBytes: number;
  /**
   * The FLOPs above as the pass's time counts them, at the precision's peak: with fp8, matrix multiplications count
   * for their share at the faster fp8 peak. Equal to the FLOPs otherwise.
   */
  timeFlops: { forward: number; inputGrad: number; weightGrad: number; recompute: number };
}

/** One virtual stage: a run of blocks on one chunk of one pipeline device, as one device of it computes. */
export interface VirtualStageModel {
  virtualStage: number;
  /** Pipeline position of the device holding it. */
  stage: number;
  chunk: number;
  layers: number;
  blocks: BlockCosts[];
  /** Parameters held by each device. */
  parametersPerDevice: number;
  /** Per micro-batch and device, FLOPs. */
  forwardFlops: number;
  /** Input-gradient FLOPs (B), including any recomputed forward. */
  inputGradFlops: number;
  weightGradFlops: number;
  /** Backward FLOPs the model needs (no recompute). */
  modelBackwardFlops: number;
  /** Forward FLOPs run again before the input-gradient pass (in inputGradFlops), and as their time counts them. */
  recomputeFlops: number;
  recomputeTimeFlops: number;
  /** The pass FLOPs as their time counts them (BlockCosts.timeFlops): the shares of a pass's time go by these. */
  forwardTimeFlops: number;
  inputGradTimeFlops: number;
  weightGradTimeFlops: number;
  forwardNs: number;
  inputGradNs: number;
  weightGradNs: number;
  /** B and W as one backward. */
  backwardNs: number;
  /** Activation bytes a micro-batch keeps from forward to backward. */
  activationBytes: number;
  /** Bytes kept from B until W: of the activations, or under full recomputation the rebuilt linear inputs. */
  weightGradBytes: number;
  /** Extra bytes while a backward rebuilds a layer (full recompute): its activations but for the kept input. */
  recomputeBytes: number;
  /** Without a backward (a zeroth-order optimizer), bytes a forward holds while it runs: one block's activations. */
  forwardWorkingBytes: number;
  /** Bytes each device sends to the next virtual stage after a forward, and to the previous one after B. */
  sendForwardBytes: number;
  sendBackwardBytes: number;
  /**
   * Ranks of the tensor-parallel group that hold the same tensor sent forward (and backward): the tp degree when it
   * is replicated over them, else 1. Megatron's scatter/gather then sends 1/t of it from each and all-gathers it
   * on arrival.
   */
  sendForwardReplicas: number;
  sendBackwardReplicas: number;
  /** Attention time FLOPs in the forward and in B (with recomputation), and ring bytes per step: sums of the blocks'. */
  attentionForwardFlops: number;
  attentionInputGradFlops: number;
  ringBytes: number;
}

