import type { SavedTensor, Shape, SiteTensor, Tensor, WorkloadBlock, WorkloadOp } from './types.js';

/**
 * One transformer layer as workload operations, shared by the model kinds built of them (a GPT-style decoder or
 * encoder, a vision transformer's windowed blocks): a pre-norm, the QKV projection, attention, the output
 * projection, dropout and residual, a norm, the MLP. Its costs are Narayanan et al.'s and Korthikanti et al.'s
 * (gpt.ts says how it generalises them); a query attends to `keys` tokens: the whole sequence, or a window.
 */
export interface LayerShape {
  /** Sequences (or samples) per micro-batch, and tokens in each. */
  batch: number;
  seq: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffnHidden: number;
  mlp: 'gelu' | 'swiglu';
  causal: boolean;
  dropout: boolean;
  attention?: 'standard' | 'linformer' | 'performer';
  attentionRank?: number;
  /** Keys each query attends to: the sequence (the default), or the tokens of its window. */
  keys?: number;
  flash: boolean;
  /** Parameters of the attention besides its projections: a position bias. */
  attentionParameters?: Tensor[];
  /** A norm's parameters, when not LayerNorm's scale and bias over the hidden size (an adaptive norm's modulation). */
  normParameters?: (name: string) => Tensor[];
}

export const tensor = (name: string, shape: Shape, element: Tensor['element'] = 'activation'): Tensor => ({ name, shape, element });
export const parameter = (name: string, shape: Shape): Tensor => tensor(name, shape, 'parameter');
export const site = (t: Tensor, where: SiteTensor['site']): SiteTensor => ({ ...t, site: where });

/**
 * The calibrated element-wise traffic model (docs/validation.md): an operation's element-wise kernels write each
 * tensor it keeps for its backward once and read it once, in every pass. Listed per operation, so a parallelism
 * that shards a tensor shards its traffic.
 */
const writtenAndRead = (saved: readonly SavedTensor[]) => saved.map((t) => ({ name: t.name, shape: t.shape, element: t.element, site: t.site, times: 2 }));

export function op(name: string, cls: WorkloadOp['class'], input: Tensor, output: Tensor, flops: WorkloadOp['flops'], saved: SavedTensor[], parameters: Tensor[], moved = writtenAndRead(saved)): WorkloadOp {
  return { name, class: cls, input, output, flops, moved, saved, parameters };
}

export const noFlops = { forward: 0, inputGrad: 0, weightGrad: 0 };
/** A GEMM's FLOPs: the same again for the input gradients and for the weight gradients. */
export const gemmFlops = (forward: number) => ({ forward, inputGrad: forward, weightGrad: forward });

export function transformerLayer(m: LayerShape): WorkloadBlock {
  const b = m.batch;
  const s = m.seq;
  const h = m.hidden;
  const a = m.heads;
  const headDim = m.headDim;
  // The attention's width: the hidden size but where heads x headDim differs from it.
  const width = a * headDim;
  const F = m.ffnHidden;
  const flash = m.flash;
  const span = m.keys ?? s;
  const hiddenState = tensor('hidden', { batch: b, seq: s, hidden: h });
  const heads = tensor('heads', { batch: b, seq: s, heads: a, headDim });
  // Q, K and V together, as the fused projection writes them.
  const qkvOut = tensor('qkv', { batch: b, seq: s, heads: a + 2 * m.kvHeads, headDim });
  const kv = { batch: b, seq: s, kvHeads: m.kvHeads, headDim };
  const ffn = tensor('ffn', { batch: b, seq: s, ffn: F });
  const scores = { batch: b, heads: a, seq: s, keys: span };

  const norm = (name: string) =>
    op(name, 'norm', hiddenState, hiddenState, noFlops, [{ ...site(hiddenState, 'input'), name: `${name}.input` }], m.normParameters?.(name) ?? [parameter(`${name}.weight`, { hidden: h }), parameter(`${name}.bias`, { hidden: h })]);
  // Dropout after attention and after the MLP, with the residual add: it keeps its 1-byte mask (none without dropout).
  const dropout = (name: string) => op(name, 'elementwise', hiddenState, hiddenState, noFlops, m.dropout ? [{ ...tensor(`${name}.mask`, hiddenState.shape, 'mask'), site: 'own' }] : [], []);
  const linearInput = (name: string, input: Tensor): SavedTensor => ({ ...site(input, 'input'), name: `${name}.input`, weightGrad: true });

  const kvWidth = m.kvHeads * headDim;
  const rank = m.attentionRank ?? s;
  const probabilities = (shape: Shape): SavedTensor[] => [
    { ...tensor('softmax', shape), site: 'own', selective: true },
    ...(m.dropout
      ? [
          { ...tensor('softmax.dropoutMask', shape, 'mask'), site: 'own' as const, selective: true },
          { ...tensor('softmax.dropout', shape), site: 'own' as const, selective: true },
        ]
      : []),
  ];
  // Attention scores: QKᵀ and the product with V, 2bs²h FLOPs each (2bs·span·h against a window of span keys); a
  // causal kernel that skips masked blocks does half.
  // Linformer: keys and values projected to k rows (2bks FLOPs a channel each), then scores against k keys.
  // Performer: queries and keys mapped to m features, then Kᵀ V and Q (Kᵀ V), each 2bsm FLOPs a channel.
  let scoreFlops = 4 * b * s * span * width * (m.causal && flash ? 0.5 : 1);
  let scoreTensors: SavedTensor[] = flash ? [] : probabilities(scores);
  let approximation: Tensor[] = [];
  if (m.attention === 'linformer') {
    scoreFlops = 4 * b * s * rank * width + 2 * 2 * b * rank * s * kvWidth;
    scoreTensors = [...probabilities({ batch: b, heads: a, seq: s, keys: rank }), { ...tensor('k.projected', { batch: b, keys: rank, kvHeads: m.kvHeads, headDim }), site: 'own' }, { ...tensor('v.projected', { batch: b, keys: rank, kvHeads: m.kvHeads, headDim }), site: 'own' }];
    approximation = [parameter('linformer.e', { positions: s, keys: rank }), parameter('linformer.f', { positions: s, keys: rank })];
  } else if (m.attention === 'performer') {
    scoreFlops = 2 * b * s * rank * (width + kvWidth) + 4 * b * s * rank * width;
    scoreTensors = [
      { ...tensor('q.features', { batch: b, seq: s, heads: a, keys: rank }), site: 'own', selective: true },
      { ...tensor('k.features', { batch: b, seq: s, kvHeads: m.kvHeads, keys: rank }), site: 'own', selective: true },
      { ...tensor('kv.summary', { batch: b, heads: a, keys: rank, headDim }), site: 'own', selective: true },
    ];
  }
  const keyValue: SavedTensor[] = [{ ...tensor('k', kv), site: 'own' }, { ...tensor('v', kv), site: 'own' }];
  const attention: WorkloadOp = {
    ...op('attention', 'attention', qkvOut, heads, { forward: scoreFlops, inputGrad: 2 * scoreFlops, weightGrad: m.attention === 'linformer' ? 2 * 2 * b * rank * s * kvWidth : 0 }, [{ ...tensor('q', heads.shape), site: 'own' }, ...keyValue, ...scoreTensors], [...approximation, ...(m.attentionParameters ?? [])]),
    keyValue,
    causal: m.causal && flash,
    // FlashAttention's backward recomputes QKᵀ from Q and K: half the forward's score FLOPs again, 2.5 times the
    // forward in all (Dao, arXiv:2307.08691, which counts its backward so).
    ...(flash && (m.attention ?? 'standard') === 'standard' ? { flash: { backwardRecompute: scoreFlops / 2 } } : {}),
  };

  const kvShare = m.kvHeads / a;
  const qkv = op('qkv', 'gemm', hiddenState, qkvOut, gemmFlops(2 * b * s * h * width * (1 + 2 * kvShare)), [linearInput('qkv', hiddenState)], [
    parameter('qkv.q', { hidden: h, heads: a, headDim }),
    parameter('qkv.k', { hidden: h, kvHeads: m.kvHeads, headDim }),
    parameter('qkv.v', { hidden: h, kvHeads: m.kvHeads, headDim }),
    parameter('qkv.qBias', { heads: a, headDim }),
    parameter('qkv.kBias', { kvHeads: m.kvHeads, headDim }),
    parameter('qkv.vBias', { kvHeads: m.kvHeads, headDim }),
  ]);
  const outProjection = op('out-proj', 'gemm', heads, hiddenState, gemmFlops(2 * b * s * width * h), [linearInput('out-proj', heads)], [parameter('out-proj.weight', { heads: a, headDim, hidden: h }), parameter('out-proj.bias', { hidden: h })]);

  // The MLP: GeLU keeps its input (F wide); SwiGLU keeps the gate's and the up projection's outputs.
  const gated = m.mlp === 'swiglu';
  const fc1 = op('fc1', 'gemm', hiddenState, ffn, gemmFlops(2 * b * s * h * F * (gated ? 2 : 1)), [linearInput('fc1', hiddenState)], [
    parameter('fc1.weight', { hidden: h, ffn: F * (gated ? 2 : 1) }),
    parameter('fc1.bias', { ffn: F }),
  ]);
  const activationSaved: SavedTensor[] = gated ? [{ ...site(ffn, 'input'), name: 'swiglu.gate' }, { ...site(ffn, 'input'), name: 'swiglu.up' }] : [{ ...site(ffn, 'input'), name: 'gelu.input' }];
  const activation = op(m.mlp, 'elementwise', ffn, ffn, noFlops, activationSaved, []);
  const fc2 = op('fc2', 'gemm', ffn, hiddenState, gemmFlops(2 * b * s * h * F), [linearInput('fc2', ffn)], [parameter('fc2.weight', { ffn: F, hidden: h }), parameter('fc2.bias', { hidden: h })]);

  return { kind: 'layer', ops: [norm('ln1'), qkv, attention, outProjection, dropout('dropout1'), norm('ln2'), fc1, activation, fc2, dropout('dropout2')] };
}
