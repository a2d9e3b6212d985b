import { gemmFlops, noFlops, op, parameter, tensor, transformerLayer } from './layer.js';
import type { Workload, WorkloadBlock } from './types.js';

/**
 * The GPT-style transformer as a workload: an embedding, `layers` identical layers and an output head.
 *
 * Operations and their costs follow Narayanan et al. (SC21) and Korthikanti et al. (MLSys 2023), generalised to
 * any FFN width, grouped-query attention (kvHeads < heads), gated MLPs (SwiGLU) and FlashAttention. With
 * ffnHidden = 4h, kvHeads = heads and GeLU, the sums over a layer are the papers' closed forms: 12h² + 13h
 * parameters, 24bsh² + 4bs²h forward FLOPs, sbh(34 + 5as/h) activation bytes (test/workload/gpt.test.ts).
 */
export interface GptSpec {
  /** The model kind (workload/registry.ts); GPT when left out. */
  kind?: 'gpt';
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  /** Key/value heads (grouped-query attention); equal to heads for multi-head attention. */
  kvHeads: number;
  /** Channels of one attention head, when heads x headDim is not the hidden size (PaLM); hidden / heads otherwise. */
  headDim?: number;
  ffnHidden: number;
  vocab: number;
  seqLength: number;
  /** gelu: two FFN matrices; swiglu: three (gate, up, down). */
  mlp: 'gelu' | 'swiglu';
  /** Output logits reuse the input embedding matrix. */
  tiedEmbeddings: boolean;
  /** learned: a position-embedding table of seqLength x hidden; rope: no parameters. */
  positionEmbedding: 'learned' | 'rope';
  /**
   * Each token attends only to earlier ones. A kernel that skips the masked blocks (FlashAttention) then computes
   * half the attention scores; one that masks a full score matrix (Megatron's fused softmax) computes them all.
   */
  causal: boolean;
  /** Dropout after attention, after the MLP and on the attention probabilities, keeping its masks (GPT); Llama has none. */
  dropout: boolean;
  /**
   * Exact attention (standard), or an approximation linear in the sequence: Linformer (Wang et al., 2020) projects
   * keys and values along the sequence to `attentionRank` rows; Performer (Choromanski et al., 2021) maps queries and
   * keys to `attentionRank` random features and never forms the score matrix.
   */
  attention?: 'standard' | 'linformer' | 'performer';
  attentionRank?: number;
}

export interface GptBuildOptions {
  /** Sequences per micro-batch. */
  microBatch: number;
  /** flash: FlashAttention-style kernels that never store the s x s scores and skip masked blocks when causal. */
  attention: 'standard' | 'flash';
}

export function buildGpt(m: GptSpec, options: GptBuildOptions): Workload {
  const b = options.microBatch;
  const s = m.seqLength;
  const h = m.hidden;
  const layer = transformerLayer({ batch: b, seq: s, hidden: h, heads: m.heads, kvHeads: m.kvHeads, headDim: m.headDim ?? h / m.heads, ffnHidden: m.ffnHidden, mlp: m.mlp, causal: m.causal, dropout: m.dropout, ...(m.attention !== undefined ? { attention: m.attention } : {}), ...(m.attentionRank !== undefined ? { attentionRank: m.attentionRank } : {}), flash: options.attention === 'flash' });
  const hiddenState = tensor('hidden', { batch: b, seq: s, hidden: h });

  const wordEmbedding = parameter('embedding.word', { vocab: m.vocab, hidden: h });
  const embedding: WorkloadBlock = {
    kind: 'embedding',
    ops: [
      op('embedding', 'embedding', tensor('tokens', { batch: b, seq: s }), hiddenState, noFlops, [], [
        wordEmbedding,
        ...(m.positionEmbedding === 'learned' ? [parameter('embedding.position', { positions: s, hidden: h })] : []),
      ]),
    ],
  };
  // The output head: the logits GEMM (reusing the word embedding when tied) and the loss, which keeps the logits in
  // fp32. The calibrated model counts no element-wise traffic for them.
  const logitsShape = { batch: b, seq: s, vocab: m.vocab };
  const head: WorkloadBlock = {
    kind: 'head',
    ops: [
      op('logits', 'gemm', hiddenState, tensor('logits', logitsShape), gemmFlops(2 * b * s * h * m.vocab), [], m.tiedEmbeddings ? [] : [parameter('output.weight', { vocab: m.vocab, hidden: h })], []),
      op('loss', 'loss', tensor('logits', logitsShape), tensor('loss', { batch: b, seq: s }, 'fp32'), noFlops, [{ ...tensor('logits.fp32', logitsShape, 'fp32'), site: 'input' }], [], []),
    ],
  };
  const blocks = [embedding, ...Array.from({ length: m.layers }, () => layer), head];
  return { name: m.name, blocks, ...(m.tiedEmbeddings ? { tied: { tensor: wordEmbedding, from: 0, to: blocks.length - 1 } } : {}) };
}
