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

/** Scenario fields (as in a scenario file) that a calibration may set. */
export interface Calibration {
  computeEfficiency?: number;
  efficiencyHalfSize?: number;
  hostOverheadPerLayer?: number;
  collectiveStepLatency?: number;
}

/** The scenario of one measured row, as vTrain's configuration describes the runs. */
export function rowScenario(row: MeasuredRow, calibration: Calibration = {}) {
  const gpu: Record<string, unknown> = { preset: 'a100-80gb' };
  if (calibration.computeEfficiency !== undefined) gpu.computeEfficiency = calibration.computeEfficiency;
  if (calibration.efficiencyHalfSize !== undefined) gpu.efficiencyHalfSize = calibration.efficiencyHalfSize;
  const training: Record<string, unknown> = { globalBatch: row.globalBatch, microBatch: row.microBatch, precision: 'fp16', recompute: 'full' };
  if (calibration.hostOverheadPerLayer !== undefined) training.hostOverheadPerLayer = calibration.hostOverheadPerLayer;
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
 * Megatron-LM, Narayanan et al., SC21, Table 1: the rows without pipeline
 * parallelism (A100 80GB, Selene: DGX A100 nodes; sequence 2048, vocabulary
 * 51,200, activation recomputation). Micro-batch sizes are not published.
 */
export interface PublishedRow {
  parameters: string;
  layers: number;
  hidden: number;
  heads: number;
  tp: number;
  gpus: number;
  globalBatch: number;
  /** Achieved TFLOP/s per GPU as the paper counts it. */
  tflops: number;
}

export const MEGATRON_TABLE_1: PublishedRow[] = [
  { parameters: '1.7B', layers: 24, hidden: 2304, heads: 24, tp: 1, gpus: 32, globalBatch: 512, tflops: 137 },
  { parameters: '3.6B', layers: 30, hidden: 3072, heads: 32, tp: 2, gpus: 64, globalBatch: 512, tflops: 138 },
  { parameters: '7.5B', layers: 36, hidden: 4096, heads: 32, tp: 4, gpus: 128, globalBatch: 512, tflops: 142 },
  { parameters: '18.4B', layers: 40, hidden: 6144, heads: 48, tp: 8, gpus: 256, globalBatch: 1024, tflops: 135 },
];

/** TFLOP/s per GPU for a Megatron row, counted as the paper does: 96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h)) per step. */
export function predictMegatron(row: PublishedRow, calibration: Calibration = {}, microBatch = 4): number {
  const s = 2048;
  const V = 51200;
  const base = rowScenario({ gpus: 8, globalBatch: row.globalBatch, microBatch, hidden: row.hidden, heads: row.heads, layers: row.layers, seqLength: s, tp: row.tp, dp: row.gpus / row.tp, pp: 1, seconds: 0 }, calibration);
  const scenario = parseScenario(
    JSON.stringify({ ...base, name: `megatron-${row.parameters}`, cluster: { ...base.cluster, nodes: row.gpus / 8, gpusPerNode: 8 }, model: { ...base.model, vocab: V }, training: { ...base.training, precision: 'bf16' } }),
    'megatron',
  );
  const stepTime = simulate(scenario).report.stepTime;
  const flops = 96 * row.globalBatch * s * row.layers * row.hidden ** 2 * (1 + s / (6 * row.hidden) + V / (16 * row.layers * row.hidden));
  return flops / stepTime / row.gpus / 1e12;
}
