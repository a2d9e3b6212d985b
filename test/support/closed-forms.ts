/**
 * Test oracles: the closed forms of a GPT-style transformer's parameters, FLOPs and activation bytes per layer,
 * from Narayanan et al. (SC21) and Korthikanti et al. (MLSys 2023) as ../shared/REFERENCE.md collects them,
 * generalised to any FFN width, grouped-query attention (kvHeads < heads) and gated (SwiGLU) MLPs. With
 * ffnHidden = 4h, kvHeads = heads and a GeLU MLP they reduce exactly to the reference forms (12h² + 13h
 * parameters, 24bsh² + 4bs²h forward FLOPs, sbh(34 + 5as/h) bytes). The simulator sums its workload's operations
 * instead (src/workload/gpt.ts); the tests hold those sums to these forms.
 */
import type { ModelSpec } from '../../src/workload/registry.js';

export type { ModelSpec };
export type Recompute = 'none' | 'selective' | 'full';

/** What activation memory depends on besides the model. */
export interface ActivationOptions {
  microBatch: number;
  tp: number;
  recompute: Recompute;
  /** FlashAttention-style kernels never store the s x s attention scores. */
  flashAttention: boolean;
  /** Bytes per activation element (2 for fp16/bf16, 4 for fp32). */
  bytesPerElement: number;
}

const mlpMatrices = (m: ModelSpec) => (m.mlp === 'swiglu' ? 3 : 2);
const kvRatio = (m: ModelSpec) => m.kvHeads / m.heads;

/** Parameters of one transformer layer (weights and biases, two layer norms). */
export function layerParameters(m: ModelSpec): number {
  const h = m.hidden;
  const r = kvRatio(m);
  const attention = h * h * (2 + 2 * r) + h * (1 + 2 * r) + h;
  const mlp = mlpMatrices(m) * h * m.ffnHidden + m.ffnHidden + h;
  const norms = 4 * h;
  return attention + mlp + norms;
}

/** Word (and position) embedding parameters. */
export function embeddingParameters(m: ModelSpec): number {
  return m.vocab * m.hidden + (m.positionEmbedding === 'learned' ? m.seqLength * m.hidden : 0);
}

/** Separate output-layer parameters (zero when tied to the embedding). */
export function outputParameters(m: ModelSpec): number {
  return m.tiedEmbeddings ? 0 : m.vocab * m.hidden;
}

/** Ψ: all parameters, as the reference counts them (final layer norm left out). */
export function totalParameters(m: ModelSpec): number {
  return m.layers * layerParameters(m) + embeddingParameters(m) + outputParameters(m);
}

/** FLOPs of one pass over one layer for `microBatch` sequences (whole layer, before tensor parallelism). */
export interface PassFlops {
  /** Forward. */
  forward: number;
  /** Backward, input gradients (B). */
  inputGrad: number;
  /** Backward, weight gradients (W). */
  weightGrad: number;
}

/**
 * Per layer: GEMMs G = 2·b·s·(h²(2 + 2·kv/a) + matrices·h·F), attention A = 4·b·s²·h.
 * Forward G + A; input gradients G + 2A; weight gradients G (Qi et al., ICLR 2024).
 */
export function layerFlops(m: ModelSpec, microBatch: number): PassFlops {
  const b = microBatch;
  const s = m.seqLength;
  const h = m.hidden;
  const gemm = 2 * b * s * (h * h * (2 + 2 * kvRatio(m)) + mlpMatrices(m) * h * m.ffnHidden);
  const attention = 4 * b * s * s * h;
  return { forward: gemm + attention, inputGrad: gemm + 2 * attention, weightGrad: gemm };
}

/** The logits GEMM: 2·b·s·h·V forward, the same again for each of B and W. */
export function logitsFlops(m: ModelSpec, microBatch: number): PassFlops {
  const f = 2 * microBatch * m.seqLength * m.hidden * m.vocab;
  return { forward: f, inputGrad: f, weightGrad: f };
}

/**
 * Activation bytes one layer keeps from its forward until its backward, per
 * micro-batch and tensor-parallel rank (Korthikanti Table 2, generalised):
 * sbh·(10 + (4 + 4·kv/a + matrices'·F/h)/t) + 5·a·s²·b/t, where the 10 are the
 * layer-norm inputs, the attention and MLP inputs and the dropout masks that
 * every rank keeps whole, and matrices' is 4 for GeLU (two tensors of F), 6 for
 * SwiGLU. Selective recompute drops the s² term; full recompute keeps only the
 * layer input (2sbh). Bytes assume 2-byte activations and scale for fp32.
 */
export function layerActivationBytes(m: ModelSpec, o: ActivationOptions): number {
  const s = m.seqLength;
  const b = o.microBatch;
  const h = m.hidden;
  const t = o.tp;
  const scale = o.bytesPerElement / 2;
  if (o.recompute === 'full') return 2 * s * b * h * scale;
  const mlpTensors = m.mlp === 'swiglu' ? 6 : 4;
  const split = (4 + 4 * kvRatio(m) + (mlpTensors * m.ffnHidden) / h) / t;
  const linear = s * b * h * (10 + split);
  const scores = o.recompute === 'selective' || o.flashAttention ? 0 : (5 * m.heads * s * s * b) / t;
  return (linear + scores) * scale;
}

/** Activation bytes of a layer while its backward recomputes it (full recompute): the whole layer, briefly. */
export function recomputedLayerBytes(m: ModelSpec, o: ActivationOptions): number {
  return layerActivationBytes(m, { ...o, recompute: 'none' });
}

/** Logits kept for the loss on the last stage: fp32 logits of b·s·V/t. */
export function logitsActivationBytes(m: ModelSpec, o: ActivationOptions): number {
  return (4 * o.microBatch * m.seqLength * m.vocab) / o.tp;
}

/**
 * Bytes of one layer's activations that its weight-gradient pass (W) still
 * needs after the input-gradient pass (B): the inputs of the four linear
 * projections, from which dW = Xᵀ·dY is computed. The QKV and first MLP inputs
 * (layer-norm outputs) are whole on every tensor-parallel rank; the output
 * projection's and the last MLP projection's inputs are split. The output
 * gradients W also needs are taken to reuse memory B has freed.
 */
export function weightGradInputBytes(m: ModelSpec, o: ActivationOptions): number {
  const sbh = m.seqLength * o.microBatch * m.hidden;
  const scale = o.bytesPerElement / 2;
  const kept = sbh * (4 + (2 + (2 * m.ffnHidden) / m.hidden) / o.tp);
  return Math.min(kept * scale, layerActivationBytes(m, o));
}
