import { DATA, elements, type SavedTensor, type Shape, type Tensor, type Workload, type WorkloadBlock, type WorkloadOp } from './types.js';

/**
 * AlphaFold 2 (Jumper et al., Nature 2021, supplementary information) as a workload: an input embedder, the
 * extra-MSA stack, the Evoformer stack and the structure module, repeated forward-only for each recycling
 * iteration before the last.
 *
 * The Evoformer works on two representations of one protein: the MSA `[N_s, N_r, c_m]` and the pair `[N_r, N_r,
 * c_z]`. Each block updates the MSA by row attention (biased by the pair), column attention and a transition, feeds
 * it into the pair by the outer-product mean, and updates the pair by two triangle multiplications, two triangle
 * attentions and a transition. The operations read the two streams alternately, so each names where its input was
 * last written (`from`); the tensors it computes and needs whole across a split (attention biases, the projection
 * an outer product or triangle multiplication reads along the other axis) are listed as `gathered`, which is what
 * Dynamic Axial Parallelism (strategies/dap) exchanges. Head counts and widths are AlphaFold 2's (Algorithms 6-8,
 * 11-14, 18-20 and 22 of the supplement); FLOPs, saved tensors and parameters per operation are derived in
 * docs/evoformer.md.
 */
export interface EvoformerSpec {
  kind: 'evoformer';
  name: string;
  /** Evoformer blocks (48). */
  layers: number;
  /** Extra-MSA stack blocks (4). */
  extraLayers: number;
  /** N_r: residues of the (cropped) protein. */
  residues: number;
  /** N_s: MSA sequences (clusters) the Evoformer reads. */
  msaRows: number;
  /** N_extra: unclustered MSA sequences the extra-MSA stack reads. */
  extraMsaRows: number;
  /** c_m, c_z, c_e, c_s: channels of the MSA, pair, extra-MSA and single representations. */
  msaChannels: number;
  pairChannels: number;
  extraMsaChannels: number;
  singleChannels: number;
}

export interface EvoformerBuildOptions {
  /** Proteins per micro-batch. */
  microBatch: number;
  /** flash: fused attention kernels that never store the attention probabilities. */
  attention: 'standard' | 'flash';
  /** Forward-only iterations before the one that takes gradients. */
  recycles: number;
}

/** AlphaFold 2's head counts and widths, from the supplement's algorithms. */
export const AF2 = {
  msaAttention: { heads: 8, headDim: 32 },
  extraMsaAttention: { heads: 8, headDim: 8 },
  triangleAttention: { heads: 4, headDim: 32 },
  triangleMultiplication: 128,
  outerProductMean: 32,
  transition: 4,
  structure: { layers: 8, heads: 12, headDim: 16, queryPoints: 4, valuePoints: 8, angleChannels: 128 },
  /** Input feature widths: target_feat, msa_feat, extra_msa_feat, relative position bins, recycled distogram bins. */
  features: { target: 22, msa: 49, extraMsa: 25, relativePosition: 65, distogram: 15 },
  /** Output heads: distogram bins, MSA classes, pLDDT bins, atom types. */
  heads: { distogram: 64, msa: 23, plddt: 50, plddtHidden: 128, atoms: 37 },
} as const;

/**
 * How many times as often as a GPT layer's (decision 7: each saved tensor written once and read once a pass) the
 * Evoformer's element-wise kernels move each tensor it keeps: layer norms, masks, biased softmaxes over the pair,
 * gates, dropout and residual adds, each its own kernel over an MSA or pair-sized tensor, with the layout copies
 * between row-wise and column-wise operations. Fitted to FastFold's measured Evoformer block (Uni-Fold's benchmark,
 * dptech-corp/Uni-Fold pull request 10: 9.4 ms forward and 20.2 ms backward per block at N_r 256, N_s 128, bf16, one
 * A100 40GB; dtsim: 9.9 and 19.9 ms); docs/evoformer.md compares it with end-to-end runs.
 */
export const EVOFORMER_TRAFFIC = 3.2;

const tensor = (name: string, shape: Shape, element: Tensor['element'] = 'activation'): Tensor => ({ name, shape, element });
const own = (name: string, shape: Shape, extra: Partial<SavedTensor> = {}): SavedTensor => ({ ...tensor(name, shape), site: 'own', ...extra });
/** A linear layer's weights (a matrix of its inputs by its outputs) and bias, as one parameter tensor each. */
const linear = (name: string, inputs: number, outputs: number, bias = true): Tensor[] => [
  tensor(`${name}.weight`, { hidden: inputs, channels: outputs }, 'parameter'),
  ...(bias ? [tensor(`${name}.bias`, { channels: outputs }, 'parameter')] : []),
];
const layerNorm = (name: string, channels: number): Tensor[] => [tensor(`${name}.scale`, { channels: 2 * channels }, 'parameter')];

/** What an operation's element-wise kernels move: each saved tensor written and read EVOFORMER_TRAFFIC times as gpt.ts counts. */
const writtenAndRead = (saved: readonly SavedTensor[]) => saved.map((t) => ({ name: t.name, shape: t.shape, element: t.element, site: t.site, times: 2 * EVOFORMER_TRAFFIC }));

interface OpParts {
  /** FLOPs of its linear layers in the forward (the same again for input and for weight gradients). */
  gemm: number;
  /** FLOPs of its parameter-free contractions (attention, outer product, triangle product): twice in the backward. */
  core?: number;
  saved: SavedTensor[];
  parameters: Tensor[];
  from?: string;
  gathered?: Tensor[];
}

function op(name: string, cls: WorkloadOp['class'], input: Tensor, output: Tensor, parts: OpParts): WorkloadOp {
  const core = parts.core ?? 0;
  return {
    name,
    class: cls,
    input,
    output,
    flops: { forward: parts.gemm + core, inputGrad: parts.gemm + 2 * core, weightGrad: parts.gemm },
    moved: writtenAndRead(parts.saved),
    saved: parts.saved,
    parameters: parts.parameters,
    ...(parts.from !== undefined ? { from: parts.from } : {}),
    ...(parts.gathered !== undefined ? { gathered: parts.gathered } : {}),
  };
}

export function buildEvoformer(m: EvoformerSpec, options: EvoformerBuildOptions): Workload {
  const b = options.microBatch;
  const r = m.residues;
  const cz = m.pairChannels;
  const flash = options.attention === 'flash';
  const pair = (channels = cz): Shape => ({ batch: b, residues: r, residues2: r, channels });
  const Z = tensor('pair', pair());
  const probabilities = (shape: Shape) => (flash ? [] : [own('probabilities', shape, { selective: true })]);

  /** One stream's representation, its rows and channels. */
  interface Msa { tensor: Tensor; rows: number; channels: number }
  const msaOf = (name: string, rows: number, channels: number): Msa => ({ tensor: tensor(name, { batch: b, msaRows: rows, residues: r, channels }), rows, channels });
  const main = msaOf('msa', m.msaRows, m.msaChannels);
  const extra = msaOf('extra-msa', m.extraMsaRows, m.extraMsaChannels);
  const msaShape = (x: Msa, channels: number): Shape => ({ batch: b, msaRows: x.rows, residues: r, channels });
  const input = (t: Tensor): SavedTensor => ({ ...t, name: `${t.name}.input`, site: 'input' });

  // MSA row-wise gated self-attention with pair bias (Algorithm 7): each row attends along its residues, biased by
  // a projection of the pair that every row needs whole.
  const rowAttention = (prefix: string, x: Msa, heads: number, headDim: number, from: string): WorkloadOp => {
    const hc = heads * headDim;
    const tokens = b * x.rows * r;
    const bias = tensor('pair-bias', { batch: b, residues: r, keys: r, heads });
    return op(`${prefix}msa-row-attention`, 'attention', x.tensor, x.tensor, {
      gemm: 4 * 2 * tokens * x.channels * hc + 2 * tokens * hc * x.channels + 2 * b * r * r * cz * heads,
      core: 4 * b * x.rows * r * r * hc,
      saved: [
        input(x.tensor),
        own('norm', x.tensor.shape, { weightGrad: true }),
        own('qkv', msaShape(x, 3 * hc)),
        own('gate', msaShape(x, hc)),
        ...probabilities({ batch: b, msaRows: x.rows, heads, residues: r, keys: r }),
        own('attention', msaShape(x, hc), { weightGrad: true }),
        // The pair it reads (the block's pair input, which full recomputation keeps) and its normalised copy.
        { ...Z, name: 'pair.input', site: 'input' },
        own('pair.norm', pair(), { weightGrad: true }),
        { ...bias, site: 'own' },
      ],
      parameters: [...layerNorm('norm', x.channels), ...linear('qkv', x.channels, 3 * hc, false), ...linear('gate', x.channels, hc), ...linear('out', hc, x.channels), ...layerNorm('pair.norm', cz), ...linear('pair-bias', cz, heads, false)],
      from,
      gathered: [bias],
    });
  };

  // MSA column-wise gated self-attention (Algorithm 8): each residue's column attends along the sequences.
  const columnAttention = (x: Msa): WorkloadOp => {
    const { heads, headDim } = AF2.msaAttention;
    const hc = heads * headDim;
    const tokens = b * x.rows * r;
    return op('msa-column-attention', 'attention', x.tensor, x.tensor, {
      gemm: 4 * 2 * tokens * x.channels * hc + 2 * tokens * hc * x.channels,
      core: 4 * b * r * x.rows * x.rows * hc,
      saved: [input(x.tensor), own('norm', x.tensor.shape, { weightGrad: true }), own('qkv', msaShape(x, 3 * hc)), own('gate', msaShape(x, hc)), ...probabilities({ batch: b, residues: r, heads, msaRows: x.rows, keys: x.rows }), own('attention', msaShape(x, hc), { weightGrad: true })],
      parameters: [...layerNorm('norm', x.channels), ...linear('qkv', x.channels, 3 * hc, false), ...linear('gate', x.channels, hc), ...linear('out', hc, x.channels)],
    });
  };

  // The extra-MSA stack's global column attention (Algorithm 19): one query per column (the mean over sequences),
  // one key and value head shared by all heads.
  const globalColumnAttention = (x: Msa): WorkloadOp => {
    const { heads, headDim } = AF2.extraMsaAttention;
    const hc = heads * headDim;
    const tokens = b * x.rows * r;
    return op('extra-msa-column-attention', 'attention', x.tensor, x.tensor, {
      gemm: 2 * b * r * x.channels * hc + 2 * 2 * tokens * x.channels * headDim + 2 * tokens * x.channels * hc + 2 * tokens * hc * x.channels,
      core: 4 * b * r * x.rows * hc,
      saved: [input(x.tensor), own('norm', x.tensor.shape, { weightGrad: true }), own('kv', msaShape(x, 2 * headDim)), own('gate', msaShape(x, hc)), ...probabilities({ batch: b, residues: r, heads, msaRows: x.rows }), own('attention', msaShape(x, hc), { weightGrad: true })],
      parameters: [...layerNorm('norm', x.channels), ...linear('q', x.channels, hc, false), ...linear('k', x.channels, headDim, false), ...linear('v', x.channels, headDim, false), ...linear('gate', x.channels, hc), ...linear('out', hc, x.channels)],
    });
  };

  // Transition (Algorithms 9 and 15): a two-layer MLP widening the channels n = 4 times, ReLU between.
  const transition = (name: string, x: Tensor, channels: number): WorkloadOp => {
    const n = AF2.transition;
    const tokens = elements(x.shape) / channels;
    const wide = { ...x.shape, channels: n * channels };
    return op(name, 'gemm', x, x, {
      gemm: 2 * 2 * tokens * channels * n * channels,
      saved: [input(x), own('norm', x.shape, { weightGrad: true }), own('hidden', wide, { weightGrad: true })],
      parameters: [...layerNorm('norm', channels), ...linear('in', channels, n * channels), ...linear('out', n * channels, channels)],
    });
  };

  // Outer-product mean (Algorithm 10): two c = 32 projections of the MSA, their outer product averaged over the
  // sequences into every residue pair, projected to c_z. A residue i's pairs need the other projection for every j.
  const outerProductMean = (prefix: string, x: Msa): WorkloadOp => {
    const c = AF2.outerProductMean;
    const right = tensor('right', { batch: b, msaRows: x.rows, residues2: r, channels: c });
    return op(`${prefix}outer-product-mean`, 'gemm', x.tensor, Z, {
      gemm: 2 * 2 * b * x.rows * r * x.channels * c + 2 * b * r * r * c * c * cz,
      core: 2 * b * x.rows * r * r * c * c,
      saved: [input(x.tensor), own('norm', x.tensor.shape, { weightGrad: true }), own('left', msaShape(x, c)), { ...right, site: 'own' }, own('outer', pair(c * c), { weightGrad: true })],
      parameters: [...layerNorm('norm', x.channels), ...linear('left', x.channels, c), ...linear('right', x.channels, c), ...linear('out', c * c, cz)],
      gathered: [right],
    });
  };

  // Triangle multiplicative update (Algorithms 11 and 12): gated projections a and b of the pair, then z_ij =
  // sum_k a_ik b_jk (outgoing edges) or sum_k a_ki b_kj (incoming); the side read across rows is needed whole.
  const triangleMultiplication = (prefix: string, outgoing: boolean, pairFrom?: string): WorkloadOp => {
    const c = AF2.triangleMultiplication;
    const across = outgoing ? tensor('b', { batch: b, residues2: r, keys: r, channels: c }) : tensor('a', { batch: b, keys: r, residues: r, channels: c });
    return op(`${prefix}triangle-multiplication-${outgoing ? 'outgoing' : 'incoming'}`, 'gemm', Z, Z, {
      gemm: 4 * 2 * b * r * r * cz * c + 2 * b * r * r * cz * cz + 2 * b * r * r * c * cz,
      core: 2 * b * r * r * r * c,
      saved: [input(Z), own('norm', pair(), { weightGrad: true }), own('projections', pair(4 * c)), { ...across, site: 'own' }, own('product', pair(c)), own('product.norm', pair(c), { weightGrad: true }), own('gate', pair())],
      parameters: [...layerNorm('norm', cz), ...linear('a', cz, c), ...linear('a.gate', cz, c), ...linear('b', cz, c), ...linear('b.gate', cz, c), ...linear('gate', cz, cz), ...layerNorm('product.norm', c), ...linear('out', c, cz)],
      ...(pairFrom !== undefined ? { from: pairFrom } : {}),
      gathered: [across],
    });
  };

  // Triangle self-attention around the starting node (Algorithm 13: each row i attends along j, biased by the
  // pair's edges j-k) or the ending node (Algorithm 14: each column along i). Its probabilities grow with N_r³.
  const triangleAttention = (prefix: string, starting: boolean): WorkloadOp => {
    const { heads, headDim } = AF2.triangleAttention;
    const hc = heads * headDim;
    const bias = starting ? tensor('triangle-bias', { batch: b, residues2: r, keys: r, heads }) : tensor('triangle-bias', { batch: b, residues: r, keys: r, heads });
    const scores: Shape = starting ? { batch: b, residues: r, heads, residues2: r, keys: r } : { batch: b, residues2: r, heads, residues: r, keys: r };
    return op(`${prefix}triangle-attention-${starting ? 'starting' : 'ending'}`, 'attention', Z, Z, {
      gemm: 4 * 2 * b * r * r * cz * hc + 2 * b * r * r * cz * heads + 2 * b * r * r * hc * cz,
      core: 4 * b * r * r * r * hc,
      saved: [input(Z), own('norm', pair(), { weightGrad: true }), own('qkv', pair(3 * hc)), own('gate', pair(hc)), ...probabilities(scores), own('attention', pair(hc), { weightGrad: true }), { ...bias, site: 'own' }],
      parameters: [...layerNorm('norm', cz), ...linear('qkv', cz, 3 * hc, false), ...linear('gate', cz, hc), ...linear('out', hc, cz), ...linear('bias', cz, heads, false)],
      gathered: [bias],
    });
  };

  // A block's operations, in AlphaFold's order (Algorithm 6, and 18 for the extra-MSA stack). Every block of a
  // stack but the first is the same list, so the lowering sees the same operations again.
  const blockOps = (prefix: string, x: Msa, first: boolean, pairFrom: string): WorkloadOp[] => {
    const attention = prefix === 'extra-' ? AF2.extraMsaAttention : AF2.msaAttention;
    return [
      rowAttention(prefix, x, attention.heads, attention.headDim, first ? `${prefix}msa-embedding` : `${prefix}msa-transition`),
      prefix === 'extra-' ? globalColumnAttention(x) : columnAttention(x),
      transition(`${prefix}msa-transition`, x.tensor, x.channels),
      outerProductMean(prefix, x),
      triangleMultiplication(prefix, true, pairFrom),
      triangleMultiplication(prefix, false),
      triangleAttention(prefix, true),
      triangleAttention(prefix, false),
      transition(`${prefix}pair-transition`, Z, cz),
    ];
  };
  const stack = (prefix: string, x: Msa, count: number, pairFrom: string): WorkloadBlock[] => {
    if (count === 0) return [];
    const first = blockOps(prefix, x, true, pairFrom);
    const rest = blockOps(prefix, x, false, `${prefix}pair-transition`);
    return Array.from({ length: count }, (_, i) => ({ kind: 'layer' as const, ops: i === 0 ? first : rest }));
  };

  // Input embedder (Algorithms 3 and 32): features to the MSA, extra-MSA and pair representations, plus the
  // recycled MSA row, pair and distogram of the iteration before.
  const f = AF2.features;
  const embedding: WorkloadBlock = {
    kind: 'embedding',
    ops: [
      op('msa-embedding', 'embedding', tensor('msa-features', msaShape(main, f.msa)), main.tensor, {
        gemm: 2 * b * main.rows * r * f.msa * main.channels + 2 * b * r * f.target * main.channels,
        saved: [{ ...tensor('msa-features', msaShape(main, f.msa)), site: 'input', weightGrad: true }],
        parameters: [...linear('msa', f.msa, main.channels), ...linear('target', f.target, main.channels), ...layerNorm('recycled-msa', main.channels)],
        from: DATA,
      }),
      ...(m.extraLayers > 0
        ? [
            op('extra-msa-embedding', 'embedding', tensor('extra-msa-features', msaShape(extra, f.extraMsa)), extra.tensor, {
              gemm: 2 * b * extra.rows * r * f.extraMsa * extra.channels,
              saved: [{ ...tensor('extra-msa-features', msaShape(extra, f.extraMsa)), site: 'input', weightGrad: true }],
              parameters: linear('extra-msa', f.extraMsa, extra.channels),
              from: DATA,
            }),
          ]
        : []),
      op('pair-embedding', 'embedding', tensor('target-features', { batch: b, residues: r, channels: f.target }), Z, {
        gemm: 2 * 2 * b * r * f.target * cz + 2 * b * r * r * (f.relativePosition + f.distogram) * cz,
        saved: [own('relative-position', pair(f.relativePosition), { weightGrad: true })],
        parameters: [...linear('left', f.target, cz), ...linear('right', f.target, cz), ...linear('relative-position', f.relativePosition, cz), ...linear('recycled-distogram', f.distogram, cz), ...layerNorm('recycled-pair', cz)],
        from: DATA,
      }),
    ],
  };

  // Structure module (Algorithm 20): 8 layers of invariant point attention sharing their weights, with the
  // backbone update and the side-chain angle network; cheap next to the Evoformer, and not split by DAP. It reads
  // the pair whole (for its attention bias) and the MSA's first row.
  const s = m.singleChannels;
  const st = AF2.structure;
  const ipaProjections = st.heads * (3 * st.headDim + 3 * (st.queryPoints * 2 + st.valuePoints));
  const ipaOutput = st.heads * (st.headDim + 4 * st.valuePoints + cz);
  const angle = st.angleChannels;
  const single = tensor('single', { batch: b, residues: r, channels: s });
  const structure = op('structure-module', 'attention', Z, single, {
    gemm:
      2 * b * r * m.msaChannels * s +
      2 * b * r * s * s +
      st.layers * (2 * b * r * s * ipaProjections + 2 * b * r * r * cz * st.heads + 2 * b * r * ipaOutput * s + 3 * 2 * b * r * s * s + 2 * b * r * s * 6 + 2 * b * r * (2 * s * angle + 4 * angle * angle + angle * 14)),
    core: st.layers * 2 * b * st.heads * r * r * (2 * st.headDim + 3 * st.queryPoints + 3 * st.valuePoints + cz),
    saved: [
      own('pair.norm', pair(), { weightGrad: true }),
      own('layers', { batch: b, residues: r, channels: st.layers * (8 * s + ipaProjections + ipaOutput + 6 * angle) }, { weightGrad: true }),
      ...probabilities({ batch: b, heads: st.layers * st.heads, residues: r, keys: r }),
    ],
    parameters: [
      ...linear('single', m.msaChannels, s),
      ...layerNorm('single.norm', s),
      ...layerNorm('pair.norm', cz),
      ...linear('single.in', s, s),
      // Invariant point attention's projections have no biases (LinearNoBias in Algorithm 22).
      ...linear('ipa.scalar', s, 3 * st.heads * st.headDim, false),
      ...linear('ipa.points', s, st.heads * 3 * (2 * st.queryPoints + st.valuePoints), false),
      ...linear('ipa.pair-bias', cz, st.heads, false),
      tensor('ipa.head-weights', { channels: st.heads }, 'parameter'),
      ...linear('ipa.out', ipaOutput, s),
      ...layerNorm('ipa.norm', s),
      ...linear('transition.1', s, s),
      ...linear('transition.2', s, s),
      ...linear('transition.3', s, s),
      ...layerNorm('transition.norm', s),
      ...linear('backbone', s, 6),
      ...linear('angles.in', s, angle),
      ...linear('angles.initial', s, angle),
      ...Array.from({ length: 4 }, (_, i) => linear(`angles.resnet.${i}`, angle, angle)).flat(),
      ...linear('angles.out', angle, 14),
    ],
  });
  // Output heads and loss (section 1.9): distogram from the pair, pLDDT and experimentally resolved atoms from the
  // single representation; the masked-MSA head reads the MSA where the last block left it. Logits kept in fp32.
  const h = AF2.heads;
  const loss = tensor('loss', { batch: b }, 'fp32');
  const heads = op('heads', 'loss', single, loss, {
    gemm: 2 * b * r * r * cz * h.distogram + 2 * b * r * (s * h.plddtHidden + h.plddtHidden * h.plddtHidden + h.plddtHidden * h.plddt + s * h.atoms),
    saved: [{ ...tensor('distogram', pair(h.distogram), 'fp32'), site: 'own' }],
    parameters: [...linear('distogram', cz, h.distogram), ...layerNorm('plddt.norm', s), ...linear('plddt.1', s, h.plddtHidden), ...linear('plddt.2', h.plddtHidden, h.plddtHidden), ...linear('plddt.out', h.plddtHidden, h.plddt), ...linear('resolved', s, h.atoms)],
  });
  const maskedMsa = op('masked-msa-head', 'loss', main.tensor, loss, {
    gemm: 2 * b * main.rows * r * m.msaChannels * h.msa,
    saved: [{ ...tensor('masked-msa', msaShape(main, h.msa), 'fp32'), site: 'own' }],
    parameters: linear('masked-msa', m.msaChannels, h.msa),
    from: 'msa-transition',
  });
  const head: WorkloadBlock = { kind: 'head', ops: [structure, heads, maskedMsa] };

  const network = [embedding, ...stack('extra-', extra, m.extraLayers, 'pair-embedding'), ...stack('', main, m.layers, m.extraLayers > 0 ? 'extra-pair-transition' : 'pair-embedding'), head];
  // Each recycling iteration before the last runs the whole network forward, without gradients, as one block.
  const recycled: WorkloadBlock = { kind: 'recycle', ops: network.flatMap((block) => block.ops).filter((o) => o !== heads && o !== maskedMsa) };
  return { name: m.name, blocks: [...Array.from({ length: options.recycles }, () => recycled), ...network] };
}
