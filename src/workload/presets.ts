import type { EvoformerSpec } from './evoformer.js';
import type { GptSpec } from './gpt.js';
import type { VitSpec, VitStage } from './vit.js';

export type ModelShape = Omit<GptSpec, 'name'>;
type Preset = ModelShape | Omit<EvoformerSpec, 'name'> | Omit<VitSpec, 'name'>;

const stages = (...list: [depth: number, channels: number, heads: number][]): VitStage[] => list.map(([depth, channels, heads]) => ({ depth, channels, heads }));
const vit = (spec: Omit<VitSpec, 'kind' | 'name' | 'layers'>): Omit<VitSpec, 'name'> => ({ kind: 'vit', layers: spec.stages.reduce((n, s) => n + s.depth, 0), ...spec });

/**
 * AlphaFold 2 as trained initially (Jumper et al. 2021, supplementary Table 4 and section 1.11): 48 Evoformer
 * blocks, 4 extra-MSA blocks, c_m 256, c_z 128, c_e 64, c_s 384; crops of 256 residues, 128 MSA clusters and 1,024
 * extra sequences. Fine-tuning crops 384 residues, 512 clusters and 5,120 extra sequences.
 */
export const ALPHAFOLD2: Omit<EvoformerSpec, 'name'> = {
  kind: 'evoformer',
  layers: 48,
  extraLayers: 4,
  residues: 256,
  msaRows: 128,
  extraMsaRows: 1024,
  msaChannels: 256,
  pairChannels: 128,
  extraMsaChannels: 64,
  singleChannels: 384,
};

/** A GPT-style shape: FFN 4h, multi-head attention, GeLU, tied embeddings, learned positions, causal attention, dropout. */
export const gpt = (layers: number, hidden: number, heads: number, seqLength = 2048, vocab = 51200): ModelShape => ({
  layers,
  hidden,
  heads,
  kvHeads: heads,
  ffnHidden: 4 * hidden,
  vocab,
  seqLength,
  mlp: 'gelu',
  tiedEmbeddings: true,
  positionEmbedding: 'learned',
  causal: true,
  dropout: true,
});

/** A Llama-style shape: SwiGLU, rotary positions, untied embeddings, no dropout, grouped-query attention. */
const llama = (layers: number, hidden: number, heads: number, kvHeads: number, ffnHidden: number, vocab: number, seqLength: number): ModelShape => ({
  layers,
  hidden,
  heads,
  kvHeads,
  ffnHidden,
  vocab,
  seqLength,
  mlp: 'swiglu',
  tiedEmbeddings: false,
  positionEmbedding: 'rope',
  causal: true,
  dropout: false,
});

/**
 * Model presets. GPT sizes follow Brown et al. (GPT-3) and the Megatron-LM weak
 * scaling table (Narayanan et al., SC21, Table 1); Llama 3 405B from the Llama 3
 * paper (Table 3 and 4).
 */
export const MODEL_PRESETS: Record<string, Preset> = {
  'gpt-tiny': gpt(4, 512, 8, 512, 32000),
  'gpt2-medium': gpt(24, 1024, 16, 1024, 50257),
  'gpt3-1.3b': gpt(24, 2048, 16),
  'gpt3-6.7b': gpt(32, 4096, 32),
  'gpt3-13b': gpt(40, 5120, 40),
  'gpt3-175b': gpt(96, 12288, 96),
  'megatron-1.7b': gpt(24, 2304, 24),
  'megatron-18.4b': gpt(40, 6144, 48),
  'megatron-39.1b': gpt(48, 8192, 64),
  'megatron-145.6b': gpt(80, 12288, 96),
  'megatron-1t': gpt(128, 25600, 160),
  'llama3-8b': {
    layers: 32,
    hidden: 4096,
    heads: 32,
    kvHeads: 8,
    ffnHidden: 14336,
    vocab: 128000,
    seqLength: 8192,
    mlp: 'swiglu',
    tiedEmbeddings: false,
    positionEmbedding: 'rope',
    causal: true,
    dropout: false,
  },
  'llama3-405b': {
    layers: 126,
    hidden: 16384,
    heads: 128,
    kvHeads: 8,
    ffnHidden: 53248,
    vocab: 128000,
    seqLength: 8192,
    mlp: 'swiglu',
    tiedEmbeddings: false,
    positionEmbedding: 'rope',
    causal: true,
    dropout: false,
  },
  // Models of science and medicine from the survey's table, and the usual baselines (each with its published size
  // in test/workload/presets.test.ts).
  'esm2-15b': { ...gpt(48, 5120, 40, 1024, 33), positionEmbedding: 'rope', causal: false, dropout: false },
  // GLM's blank infilling attends bidirectionally within its prefix: counted as causal, its larger share.
  'xtrimopglm-100b': { ...gpt(72, 10240, 80, 2048, 128), ffnHidden: 31744, mlp: 'swiglu', positionEmbedding: 'rope', tiedEmbeddings: false },
  'biogpt-347m': gpt(24, 1024, 16, 1024, 42384),
  'chemgpt-1.2b': gpt(24, 2048, 16, 2048, 1024),
  'geogalactica-30b': gpt(48, 7168, 56, 2048, 50000),
  'k2-7b': llama(32, 4096, 32, 32, 11008, 32000, 2048),
  'bert-base': { ...gpt(12, 768, 12, 512, 30522), causal: false },
  'llama2-7b': llama(32, 4096, 32, 32, 11008, 32000, 4096),
  'llama2-13b': llama(40, 5120, 40, 40, 13824, 32000, 4096),
  'llama2-70b': llama(80, 8192, 64, 8, 28672, 32000, 4096),
  'meditron-7b': llama(32, 4096, 32, 32, 11008, 32000, 4096),
  'meditron-70b': llama(80, 8192, 64, 8, 28672, 32000, 4096),
  'llama3-70b': llama(80, 8192, 64, 8, 28672, 128256, 8192),
  'mt-nlg-530b': gpt(105, 20480, 128),
  'med-palm-540b': { ...gpt(118, 18432, 48, 2048, 256000), headDim: 256, kvHeads: 1, ffnHidden: 73728, mlp: 'swiglu', positionEmbedding: 'rope', dropout: false },
  alphafold2: ALPHAFOLD2,
  // Weather vision transformers (workload/vit.ts), on the 0.25-degree ERA5 grid of 721 x 1,440 points.
  // Pangu-Weather (Bi et al., Nature 2023; arXiv:2211.02556 and its pseudocode): 5 upper-air variables on 13 levels
  // and 4 surface ones with 3 constant masks, patches of 4 x 4 (2 levels), 8 x 181 x 360 tokens, windows 2 x 6 x 12,
  // stages of 2, 6, 6, 2 blocks at 192 and 384 channels, the Earth-specific bias. One of its four models (1, 3, 6, 24 h).
  'pangu-weather': vit({ inputChannels: 72, outputChannels: 69, patch: 4, grid: [8, 181, 360], window: [2, 6, 12], stages: stages([2, 192, 6], [6, 384, 12], [6, 384, 12], [2, 192, 6]), mlpRatio: 4, positionBias: 'earth', norm: 'layer', resample: 'merge' }),
  // FuXi (Chen et al., npj Clim. Atmos. Sci. 2023; arXiv:2306.12873): 70 variables at two time steps, cube embedding
  // of 2 x 4 x 4 to 180 x 360 tokens of 1,536 channels, a strided convolution to 90 x 180, 48 Swin V2 blocks, back up.
  // Heads and window are not published: 8 and 7 x 7, as OneScience's reimplementation. One of its three cascaded
  // models (short, medium, long range).
  fuxi: vit({ inputChannels: 140, outputChannels: 70, patch: 4, grid: [180, 360], window: [7, 7], stages: stages([48, 1536, 8]), mlpRatio: 4, positionBias: 'relative', norm: 'layer', resample: 'conv' }),
  // Aurora (Bodnar et al., 2024; arXiv:2405.13063; microsoft/aurora's defaults): a 3-D Swin U-Net of 512 channels
  // over 4 latent levels x 180 x 360 tokens, windows 2 x 6 x 12, encoder depths 6, 10, 8 and decoder 8, 10, 6 with 8,
  // 16, 32 heads, adaptive LayerNorms, no position bias; its Perceiver encoder and decoder are not modelled.
  aurora: vit({ inputChannels: 72, outputChannels: 69, patch: 4, grid: [4, 180, 360], window: [2, 6, 12], stages: stages([6, 512, 8], [10, 1024, 16], [8, 2048, 32], [8, 2048, 32], [10, 1024, 16], [6, 512, 8]), mlpRatio: 4, positionBias: 'none', norm: 'adaptive', resample: 'merge' }),
};
