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
  /** `cluster.collectiveProtocol`: the fitted per-step latency by default. */
  collectiveProtocol?: string;
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
  if (calibration.collectiveProtocol !== undefined) cluster.collectiveProtocol = calibration.collectiveProtocol;
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
