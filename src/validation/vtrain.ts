import { readFileSync } from 'node:fs';
import { parseScenario } from '../scenario/load.js';
import { simulate } from '../simulate.js';

/**
 * Validation against measured step times: vTrain's single-node Megatron-DeepSpeed
 * runs on A100 SXM (GPT-2 vocabulary, activation checkpointing, 1F1B, fp16).
 */
export interface MeasuredRow {
  gpus: number;
  globalBatch: number;
  microBatch: number;
  hidden: number;
  heads: number;
  layers: number;
  seqLength: number;
  tp: number;
  dp: number;
  pp: number;
  /** Measured iteration time, seconds. */
  seconds: number;
}

export function readMeasuredRows(file: string): MeasuredRow[] {
  const lines = readFileSync(file, 'utf8').replace(/^\uFEFF/, '').trim().split(/\r?\n/).slice(1);
  return lines.map((line) => {
    const [gpus, globalBatch, microBatch, hidden, heads, layers, seqLength, tp, dp, pp, ms] = line.split(',').map(Number);
    return { gpus, globalBatch, microBatch, hidden, heads, layers, seqLength, tp, dp, pp, seconds: ms / 1000 };
  });
}

/**
 * The software time of one pipeline transfer in the stack vTrain measured (Megatron-DeepSpeed, whose pipeline engine
 * runs each send and receive as a Python instruction with its own synchronisation): fitted on the even rows alone,
 * the other parameters at their defaults, from 0 to 3.2 ms (docs/validation.md). A property of that stack, not of
 * pipelines: the Megatron-LM and Llama 3 rows keep the default of none.
 */
export const MEGATRON_DEEPSPEED_TRANSFER_OVERHEAD = 2e-3;

/** Scenario fields (as in a scenario file) that a calibration may set. */
export interface Calibration {
  computeEfficiency?: number;
  efficiencyHalfSize?: number;
  hostOverheadPerLayer?: number;
  collectiveStepLatency?: number;
  transferOverhead?: number;
}

/** The scenario of one measured row, as vTrain's configuration describes the runs. */
export function rowScenario(row: MeasuredRow, calibration: Calibration = {}) {
  const gpu: Record<string, unknown> = { preset: 'a100-80gb' };
  if (calibration.computeEfficiency !== undefined) gpu.computeEfficiency = calibration.computeEfficiency;
  if (calibration.efficiencyHalfSize !== undefined) gpu.efficiencyHalfSize = calibration.efficiencyHalfSize;
  const training: Record<string, unknown> = { globalBatch: row.globalBatch, microBatch: row.microBatch, precision: 'fp16', recompute: 'full' };
  if (calibration.hostOverheadPerLayer !== undefined) training.hostOverheadPerLayer = calibration.hostOverheadPerLayer;
  training.transferOverhead = calibration.transferOverhead ?? MEGATRON_DEEPSPEED_TRANSFER_OVERHEAD;
  const cluster: Record<string, unknown> = { nodes: 1, gpusPerNode: row.gpus, node: 'dgx-a100', gpu };
  if (calibration.collectiveStepLatency !== undefined) cluster.collectiveStepLatency = calibration.collectiveStepLatency;
  return {
    name: `vtrain-${row.gpus}gpu-h${row.hidden}-L${row.layers}-tp${row.tp}-pp${row.pp}-dp${row.dp}-mb${row.microBatch}-gb${row.globalBatch}`,
    cluster,
    model: { layers: row.layers, hidden: row.hidden, heads: row.heads, vocab: 50257, seqLength: row.seqLength },
    training,
    parallel: { tp: row.tp, pp: row.pp, dp: row.dp, schedule: '1f1b' },
  };
}

export interface RowError {
  row: MeasuredRow;
  predictedSeconds: number;
  /** (predicted - measured) / measured. */
  error: number;
}

export function predictRows(rows: readonly MeasuredRow[], calibration: Calibration = {}): RowError[] {
  return rows.map((row) => {
    const scenario = parseScenario(JSON.stringify(rowScenario(row, calibration)), 'vtrain');
    const predictedSeconds = simulate(scenario).report.stepTime;
    return { row, predictedSeconds, error: (predictedSeconds - row.seconds) / row.seconds };
  });
}

export interface ErrorSummary {
  rows: number;
  /** Mean absolute percentage error, as a fraction. */
  mape: number;
  /** Mean signed error: negative when the simulator is too fast. */
  bias: number;
  median: number;
  p90: number;
  worst: RowError[];
}

export function summarize(errors: readonly RowError[], worst = 5): ErrorSummary {
  const abs = errors.map((e) => Math.abs(e.error)).sort((a, b) => a - b);
  const at = (q: number) => abs[Math.min(abs.length - 1, Math.floor(q * abs.length))];
  return {
    rows: errors.length,
    mape: abs.reduce((a, b) => a + b, 0) / abs.length,
    bias: errors.reduce((a, e) => a + e.error, 0) / errors.length,
    median: at(0.5),
    p90: at(0.9),
    worst: [...errors].sort((a, b) => Math.abs(b.error) - Math.abs(a.error)).slice(0, worst),
  };
}

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

/** How well dtsim picks a configuration: per group of rows that differ only in parallelism and micro-batch. */
export interface PickSummary {
  groups: number;
  /** Groups where the configuration dtsim predicts fastest is the one measured fastest. */
  exact: number;
  /** How much slower, measured, dtsim's pick is than the measured best: mean and worst over the groups. */
  meanRegret: number;
  worstRegret: number;
}

/** Groups rows by model and job (GPUs, global batch, model shape) and scores dtsim's pick in each. */
export function summarizePicks(errors: readonly RowError[]): PickSummary {
  const groups = new Map<string, RowError[]>();
  for (const e of errors) {
    const r = e.row;
    const key = [r.gpus, r.globalBatch, r.hidden, r.heads, r.layers, r.seqLength].join(',');
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  let exact = 0;
  let total = 0;
  let worst = 0;
  let counted = 0;
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    counted++;
    const measuredBest = group.reduce((a, b) => (b.row.seconds < a.row.seconds ? b : a));
    const pick = group.reduce((a, b) => (b.predictedSeconds < a.predictedSeconds ? b : a));
    if (pick === measuredBest) exact++;
    const regret = pick.row.seconds / measuredBest.row.seconds - 1;
    total += regret;
    worst = Math.max(worst, regret);
  }
  return { groups: counted, exact, meanRegret: counted > 0 ? total / counted : 0, worstRegret: worst };
}
