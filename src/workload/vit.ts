import { gemmFlops, noFlops, op, parameter, site, tensor, transformerLayer } from './layer.js';
import type { SavedTensor, Tensor, Workload, WorkloadBlock, WorkloadOp } from './types.js';

/**
 * A vision transformer on a latitude-longitude grid, as the weather models build one (Pangu-Weather, FuXi, Aurora):
 * a patch embedding turns the fields into a grid of tokens, stages of Swin-style transformer blocks attend within
 * local windows, and a recovery projects the tokens back to the fields.
 *
 * - Tokens: `grid` after the embedding ([levels, latitude, longitude], or [latitude, longitude]); each patch of
 *   `patch` x `patch` points of all `inputChannels` becomes `levels` tokens.
 * - Windows: a token attends to the `window` tokens around it (Liu et al., Swin, ICCV 2021), so a block's scores are
 *   tokens x window rather than tokens²; the grid is padded to whole windows. Shifted windows cost the same.
 * - Stages: `depth` blocks of `channels` with `heads` each. As a U-Net, going up in channels merges 2 x 2 tokens
 *   (Swin's patch merging, 4C -> 2C), going down splits them back to the grid of the matching encoder stage; with
 *   `resample: conv` (FuXi's U-Transformer) a strided 3 x 3 convolution block halves the grid before the stages and a
 *   transposed one with two 3 x 3 convolutions restores it after them, reading the skip connection too (2C in).
 * - Position bias per block: `earth`, Pangu-Weather's Earth-specific bias, one table of wz²·wh²·(2ww - 1) entries
 *   per head for each window position along levels and latitude (longitude is periodic); `relative`, Swin's table of
 *   (2wz - 1)(2wh - 1)(2ww - 1) entries per head; `none` (Aurora).
 * - Norms: `layer` (LayerNorm), or `adaptive` (Aurora's adaptive LayerNorm: no affine parameters, a linear map
 *   from the first stage's channels to a scale and shift).
 * Not modelled: the U-Net's skip concatenation before the recovery (Pangu), the Perceiver encoder and decoder of
 * Aurora (16M parameters), Swin V2's continuous position bias (FuXi; a small MLP). Parameter counts of
 * the presets stay within 2% of the published ones (test/workload/presets.test.ts).
 */
export interface VitStage {
  depth: number;
  channels: number;
  heads: number;
}

export interface VitSpec {
  kind: 'vit';
  name: string;
  /** Transformer blocks in all: the stages' depths summed. */
  layers: number;
  /** Input fields over all levels (variables x levels, with constant masks), and output fields. */
  inputChannels: number;
  outputChannels: number;
  /** Grid points a patch spans along latitude and along longitude. */
  patch: number;
  /** Tokens after the embedding: [levels, latitude, longitude] or [latitude, longitude]. */
  grid: readonly number[];
  /** Tokens a window spans along each axis of the grid. */
  window: readonly number[];
  stages: readonly VitStage[];
  /** MLP width over channels. */
  mlpRatio: number;
  positionBias: 'earth' | 'relative' | 'none';
  norm: 'layer' | 'adaptive';
  resample: 'merge' | 'conv';
}

export interface VitBuildOptions {
  /** Samples (whole-globe states) per micro-batch. */
  microBatch: number;
  attention: 'standard' | 'flash';
}

const product = (xs: readonly number[]) => xs.reduce((a, x) => a * x, 1);
/** The grid halved (merge) along latitude and longitude, rounding up as Swin pads odd sizes. */
const halved = (grid: readonly number[]) => grid.map((n, i) => (i >= grid.length - 2 ? Math.ceil(n / 2) : n));

export function buildVit(m: VitSpec, options: VitBuildOptions): Workload {
  const b = options.microBatch;
  const levels = m.grid.length === 3 ? m.grid[0] : 1;
  const inputsPerToken = (m.inputChannels * m.patch * m.patch) / levels;
  const outputsPerToken = (m.outputChannels * m.patch * m.patch) / levels;
  const hiddenOf = (seq: number, channels: number) => tensor('hidden', { batch: b, seq, hidden: channels });
  const linearInput = (name: string, input: Tensor): SavedTensor => ({ ...site(input, 'input'), name: `${name}.input`, weightGrad: true });
  /** A linear map of every token from `input` to `output` channels: a GEMM keeping its input for the weight gradient. */
  const linear = (name: string, input: Tensor, output: Tensor, inChannels: number, outChannels: number, flops = 2 * b * (input.shape.seq ?? 1) * inChannels * outChannels): WorkloadOp =>
    op(name, 'gemm', input, output, gemmFlops(flops), [linearInput(name, input)], [parameter(`${name}.weight`, { channels: inChannels, hidden: outChannels }), parameter(`${name}.bias`, { hidden: outChannels })]);

  const first = m.stages[0].channels;
  let grid = [...m.grid];
  const embedded = hiddenOf(product(grid), first);
  const input = tensor('fields', { batch: b, seq: product(grid), channels: inputsPerToken });
  // The data needs no gradient: the embedding's backward computes only its weight gradient.
  const embeddingOps: WorkloadOp[] = [{ ...linear('patch-embedding', input, embedded, inputsPerToken, first), flops: { forward: 2 * b * product(grid) * inputsPerToken * first, inputGrad: 0, weightGrad: 2 * b * product(grid) * inputsPerToken * first } }];
  const headOps: WorkloadOp[] = [];
  const fullGrid = grid;
  if (m.resample === 'conv') {
    // FuXi's down block: a 3 x 3 convolution of stride 2, then a residual pair of 3 x 3 convolutions at the halved grid.
    grid = halved(grid);
    embeddingOps.push(linear('down-block', embedded, hiddenOf(product(grid), first), 27 * first, first, 2 * b * product(grid) * 27 * first * first));
    // The up block: a 2 x 2 transposed convolution of the stages' output and the skip connection (2C in), then a
    // residual pair of 3 x 3 convolutions at the full grid.
    const last = m.stages[m.stages.length - 1].channels;
    headOps.push(linear('up-block', hiddenOf(product(grid), last), hiddenOf(product(fullGrid), last), 26 * last, last, 2 * b * product(fullGrid) * (2 * last + 18 * last) * last));
  }

  const blocks: WorkloadBlock[] = [{ kind: 'embedding', ops: embeddingOps }];
  const encoderGrids: number[][] = [];
  let channels = first;
  for (const stage of m.stages) {
    // Between stages: merge 2 x 2 tokens going up in channels, split them back going down.
    let resample: WorkloadOp | undefined;
    if (stage.channels > channels) {
      encoderGrids.push(grid);
      const from = hiddenOf(product(grid), channels);
      grid = halved(grid);
      resample = linear('patch-merging', from, hiddenOf(product(grid), stage.channels), 4 * channels, stage.channels, 2 * b * product(grid) * 4 * channels * stage.channels);
    } else if (stage.channels < channels) {
      const from = hiddenOf(product(grid), channels);
      grid = encoderGrids.pop() ?? grid.map((n, i) => (i >= grid.length - 2 ? 2 * n : n));
      resample = linear('patch-splitting', from, hiddenOf(product(grid), stage.channels), channels, 4 * stage.channels);
    }
    channels = stage.channels;
    // Whole windows: the grid padded along each axis, a window no longer than its axis.
    const window = m.window.map((w, i) => Math.min(w, grid[i]));
    const windowsAlong = grid.map((n, i) => Math.ceil(n / window[i]));
    const tokens = product(windowsAlong) * product(window);
    const headDim = channels / stage.heads;
    const layer = transformerLayer({
      batch: b,
      seq: tokens,
      hidden: channels,
      heads: stage.heads,
      kvHeads: stage.heads,
      headDim,
      ffnHidden: m.mlpRatio * channels,
      mlp: 'gelu',
      causal: false,
      dropout: false,
      keys: product(window),
      flash: options.attention === 'flash',
      attentionParameters: positionBias(m.positionBias, window, windowsAlong, stage.heads),
      ...(m.norm === 'adaptive' ? { normParameters: (name: string) => [parameter(`${name}.modulation`, { channels: first, hidden: 2 * channels }), parameter(`${name}.modulationBias`, { hidden: 2 * channels })] } : {}),
    });
    for (let i = 0; i < stage.depth; i++) blocks.push(i === 0 && resample ? { kind: 'layer', ops: [resample, ...layer.ops] } : layer);
  }
  // Recovery: each token back to its patch of every output field; the loss keeps the output in fp32.
  const tokens = product(grid);
  const output = tensor('fields.out', { batch: b, seq: tokens, channels: outputsPerToken });
  headOps.push(linear('patch-recovery', hiddenOf(tokens, channels), output, channels, outputsPerToken));
  headOps.push(op('loss', 'loss', output, tensor('loss', { batch: b }, 'fp32'), noFlops, [{ ...tensor('fields.fp32', output.shape, 'fp32'), site: 'input' }], [], []));
  blocks.push({ kind: 'head', ops: headOps });
  return { name: m.name, blocks };
}

/** A block's position-bias parameters for windows of `window` tokens, `windowsAlong` windows along each axis. */
function positionBias(kind: VitSpec['positionBias'], window: readonly number[], windowsAlong: readonly number[], heads: number): Tensor[] {
  if (kind === 'none') return [];
  if (kind === 'relative') return [parameter('attention.bias', { positions: product(window.map((w) => 2 * w - 1)), heads })];
  // Earth-specific: pairs of positions within a window along levels and latitude, offsets along longitude, for each
  // window position along levels and latitude.
  const longitude = window.length - 1;
  const pairs = window.slice(0, longitude).reduce((n, w) => n * w * w, 1) * (2 * window[longitude] - 1);
  return [parameter('attention.earthBias', { positions: pairs, keys: product(windowsAlong.slice(0, longitude)), heads })];
}
