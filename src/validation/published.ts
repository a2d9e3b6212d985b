import { parseScenario } from '../scenario/load.js';
import { simulate } from '../simulate.js';
import { rowScenario, type Calibration } from './vtrain.js';

/** Published figures of large training runs that `npm run validate` holds dtsim to (docs/validation.md). */

/**
 * Megatron-LM, Narayanan et al., SC21, Table 1 (A100 80GB, Selene: DGX A100 nodes; sequence 2048, vocabulary
 * 51,200, activation recomputation, TP 8 from 18.4B on, the interleaved schedule with pipelines). The paper gives
 * neither micro-batch sizes nor chunks per device: the rows state what dtsim assumes.
 */
export interface PublishedRow {
  parameters: string;
  layers: number;
  hidden: number;
  heads: number;
  tp: number;
  pp: number;
  gpus: number;
  globalBatch: number;
  /** Assumed: 4 without a pipeline, 1 with one (the paper does not say). */
  microBatch: number;
  /** Assumed model chunks per device of the interleaved schedule (1: no pipeline). */
  chunks: number;
  /** Achieved TFLOP/s per GPU as the paper counts it. */
  tflops: number;
}

export const MEGATRON_TABLE_1: PublishedRow[] = [
  { parameters: '1.7B', layers: 24, hidden: 2304, heads: 24, tp: 1, pp: 1, gpus: 32, globalBatch: 512, microBatch: 4, chunks: 1, tflops: 137 },
  { parameters: '3.6B', layers: 30, hidden: 3072, heads: 32, tp: 2, pp: 1, gpus: 64, globalBatch: 512, microBatch: 4, chunks: 1, tflops: 138 },
  { parameters: '7.5B', layers: 36, hidden: 4096, heads: 32, tp: 4, pp: 1, gpus: 128, globalBatch: 512, microBatch: 4, chunks: 1, tflops: 142 },
  { parameters: '18.4B', layers: 40, hidden: 6144, heads: 48, tp: 8, pp: 1, gpus: 256, globalBatch: 1024, microBatch: 4, chunks: 1, tflops: 135 },
  { parameters: '39.1B', layers: 48, hidden: 8192, heads: 64, tp: 8, pp: 2, gpus: 512, globalBatch: 1536, microBatch: 1, chunks: 2, tflops: 138 },
  { parameters: '76.1B', layers: 60, hidden: 10240, heads: 80, tp: 8, pp: 4, gpus: 1024, globalBatch: 1792, microBatch: 1, chunks: 3, tflops: 140 },
  { parameters: '145.6B', layers: 80, hidden: 12288, heads: 96, tp: 8, pp: 8, gpus: 1536, globalBatch: 2304, microBatch: 1, chunks: 2, tflops: 148 },
  { parameters: '310.1B', layers: 96, hidden: 16384, heads: 128, tp: 8, pp: 16, gpus: 1920, globalBatch: 2160, microBatch: 1, chunks: 2, tflops: 155 },
  { parameters: '529.6B', layers: 105, hidden: 20480, heads: 128, tp: 8, pp: 35, gpus: 2520, globalBatch: 2520, microBatch: 1, chunks: 3, tflops: 163 },
  { parameters: '1008.0B', layers: 128, hidden: 25600, heads: 160, tp: 8, pp: 64, gpus: 3072, globalBatch: 3072, microBatch: 1, chunks: 2, tflops: 163 },
];

/** TFLOP/s per GPU for a Megatron row, counted as the paper does: 96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h)) per step. */
export function predictMegatron(row: PublishedRow, calibration: Calibration = {}): number {
  const s = 2048;
  const V = 51200;
  const { pp, chunks, microBatch } = row;
  const base = rowScenario({ gpus: 8, globalBatch: row.globalBatch, microBatch, hidden: row.hidden, heads: row.heads, layers: row.layers, seqLength: s, tp: row.tp, dp: row.gpus / (row.tp * pp), pp, seconds: 0 }, calibration);
  const parallel = pp > 1 ? { ...base.parallel, schedule: 'interleaved', chunks } : base.parallel;
  const scenario = parseScenario(
    JSON.stringify({ ...base, name: `megatron-${row.parameters}`, cluster: { ...base.cluster, nodes: row.gpus / 8, gpusPerNode: 8 }, model: { ...base.model, vocab: V }, training: { ...base.training, precision: 'bf16', transferOverhead: calibration.transferOverhead }, parallel }),
    'megatron',
  );
  const stepTime = simulate(scenario).report.stepTime;
  const flops = 96 * row.globalBatch * s * row.layers * row.hidden ** 2 * (1 + s / (6 * row.hidden) + V / (16 * row.layers * row.hidden));
  return flops / stepTime / row.gpus / 1e12;
}

/** Llama 3 405B, Table 4 (Dubey et al., 2024): each run's bundled scenario and its published MFU. */
export const LLAMA3_TABLE_4: [file: string, mfu: number][] = [
  ['scenarios/llama3-405b-8k-h100.yaml', 0.43],
  ['scenarios/llama3-405b-16k-h100.yaml', 0.41],
  ['scenarios/llama3-405b-128k-cp16-h100.yaml', 0.38],
];

/**
 * Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (MLSys 2023,
 * arXiv:2205.05198), Table 5: iteration times of the four models of its Table 3 (A100 80GB on Selene, TP 8 within
 * a node, no data parallelism, sequence 2048, vocabulary 51,200), with full recomputation and with the paper's
 * sequence parallelism and selective recomputation. The paper gives micro-batch sizes in Table 3, not the
 * schedule: dtsim assumes 1F1B without interleaving.
 */
export interface RecomputeRow {
  parameters: string;
  layers: number;
  hidden: number;
  heads: number;
  pp: number;
  gpus: number;
  globalBatch: number;
  microBatch: number;
  /** Full recomputation, or sequence parallelism with selective recomputation ("present work"). */
  technique: 'full' | 'selective+sp';
  /** Published iteration time, seconds. */
  seconds: number;
}

const KORTHIKANTI_MODELS = [
  { parameters: '22B', layers: 48, hidden: 6144, heads: 64, pp: 1, gpus: 8, globalBatch: 4, microBatch: 4, full: 1.42, present: 1.1 },
  { parameters: '175B', layers: 96, hidden: 12288, heads: 96, pp: 8, gpus: 64, globalBatch: 64, microBatch: 1, full: 18.13, present: 13.75 },
  { parameters: '530B', layers: 105, hidden: 20480, heads: 128, pp: 35, gpus: 280, globalBatch: 280, microBatch: 1, full: 49.05, present: 37.83 },
  { parameters: '1T', layers: 128, hidden: 25600, heads: 160, pp: 64, gpus: 512, globalBatch: 512, microBatch: 1, full: 94.42, present: 71.49 },
];

export const KORTHIKANTI_TABLE_5: RecomputeRow[] = KORTHIKANTI_MODELS.flatMap(({ full, present, ...model }) => [
  { ...model, technique: 'full' as const, seconds: full },
  { ...model, technique: 'selective+sp' as const, seconds: present },
]);

/** dtsim's iteration time for a row of Korthikanti et al.'s Table 5, seconds. */
export function predictKorthikanti(row: RecomputeRow, calibration: Pick<Calibration, 'collectiveProtocol'> = {}): number {
  const full = row.technique === 'full';
  const scenario = {
    name: `korthikanti-${row.parameters}-${row.technique}`,
    cluster: { nodes: row.gpus / 8, gpusPerNode: 8, node: 'dgx-a100', gpu: 'a100-80gb', collectiveProtocol: calibration.collectiveProtocol },
    model: { layers: row.layers, hidden: row.hidden, heads: row.heads, vocab: 51200, seqLength: 2048 },
    training: { globalBatch: row.globalBatch, microBatch: row.microBatch, precision: 'bf16', recompute: full ? 'full' : 'selective' },
    parallel: { tp: 8, pp: row.pp, dp: 1, schedule: '1f1b', sequenceParallel: !full },
  };
  return simulate(parseScenario(JSON.stringify(scenario), 'korthikanti')).report.stepTime;
}
