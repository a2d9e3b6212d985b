import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import type { ScenarioSource } from './compare.js';
import { ScenarioError, UsageError } from './errors.js';
import { batchPinned, parseScenario } from './scenario/load.js';
import type { Scenario } from './scenario/resolve.js';
import { simulateEntries } from './sweep-run.js';
import { stateBytes } from './training/states.js';
import { buildWorkload, modelParameters, parameterTensors } from './workload/registry.js';
import { overrideString, type EntrySummary, type SweepEntry, type SweepLine } from './sweep.js';

/**
 * `dtsim plan`: keeps a scenario's cluster, model and batch, and searches the parallel strategy and the techniques
 * that apply (TP, PP, DP, micro-batch, schedule and chunks, recomputation, sequence parallelism, ZeRO-1). Every
 * candidate the scenario's checks accept is simulated in full (on worker threads); the checks' refusals are counted
 * by field. The answer: the best candidates, the Pareto front of step time against peak HBM, and for each value of
 * each dimension how far its best falls behind, or why nothing with it fits.
 */
export type Objective = 'time' | 'memory';

export interface PlanOptions {
  /** Plan for this many GPUs (a multiple of the scenario's GPUs per node) instead of the scenario's. */
  gpus?: number;
  objective?: Objective;
  workers?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface PlanCandidate {
  overrides: Record<string, unknown>;
  result?: EntrySummary;
  /** For a pruned candidate: the least HBM its model states need, bytes (statesLowerBound). */
  statesBound?: number;
}

export interface DimensionVerdict {
  field: string;
  value: unknown;
  /** The best fitting candidate with this value, and how much worse it is than the best by the objective. */
  best?: PlanCandidate;
  behind?: number;
  /** When none with this value fits: the least HBM any needs, bytes, and the capacity. */
  closestPeakHbm?: number;
}

export interface Plan {
  scenario: string;
  gpus: number;
  objective: Objective;
  /** Candidates generated, refused by a check (by field), pruned (their model states alone exceed HBM), simulated, and fitting. */
  candidates: number;
  refused: Record<string, number>;
  pruned: number;
  simulated: number;
  fitting: number;
  /** Every simulated candidate, in the order generated. */
  evaluated: PlanCandidate[];
  /** Fitting candidates by the objective, best first. */
  ranked: PlanCandidate[];
  /** Fitting candidates no other beats in both step time and peak HBM, by peak HBM. */
  pareto: PlanCandidate[];
  dimensions: DimensionVerdict[];
  /** Simulated candidates that do not fit, least HBM first (what to look at when none fits). */
  closest: PlanCandidate[];
  capacity: number;
}

/**
 * A lower bound on a candidate's peak HBM, bytes, without building its step: every parameter lives on one
 * (tensor, pipeline) position, so some GPU holds at least Ψ / (tp x pp) of them, with their gradients and optimizer
 * states for the whole step, each divided by the data-parallel size where ZeRO shards it. Undefined where states
 * leave HBM (offloading), which the bound does not follow. A candidate whose bound exceeds the HBM cannot fit.
 */
export function statesLowerBound(s: Scenario): number | undefined {
  const offload = (s.parallel as { offload?: { optimizer?: string; params?: string } }).offload;
  if ((offload?.optimizer ?? 'none') !== 'none' || (offload?.params ?? 'none') !== 'none') return undefined;
  const { tp, pp, zero } = s.parallel as { tp: number; pp: number; zero: number };
  const bytes = stateBytes(s.training, () => parameterTensors(buildWorkload(s.model, { microBatch: 1, attention: 'standard' })));
  // ZeRO shards over every replica of the weights: the GPUs of a (tensor, pipeline) position, which hold them whole
  // (data-parallel, DAP, context- and sequence-parallel ranks alike).
  const replicas = (s.cluster.nodes * s.cluster.gpusPerNode) / (tp * pp);
  const shards = (stage: number) => (zero >= stage ? replicas : 1);
  const perParameter = bytes.parameter / shards(3) + bytes.gradient / shards(2) + bytes.optimizer / shards(1);
  return (modelParameters(s.model) / (tp * pp)) * perParameter;
}

const divisors = (n: number) => Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);

/**
 * The candidates for a scenario: field path to value, each a complete parallel layout. The `main` phase is the
 * search; the `infinity` phase, ZeRO-Infinity's layouts, which dtsim plan tries only when none of the main ones fits.
 */
export function planCandidates(base: Scenario, gpus: number, phase: 'main' | 'infinity' = 'main'): Record<string, unknown>[] {
  const { model, training, cluster } = base;
  const out: Record<string, unknown>[] = [];
  if (model.kind === 'evoformer' || model.kind === 'vit') {
    if (phase === 'infinity') return out;
    // An Evoformer: DAP within a node (dividing what it splits) times data parallelism, checkpointing, ZeRO. A
    // weather vision transformer: data parallelism alone.
    const splits = model.kind === 'evoformer' ? [model.residues, model.msaRows, ...(model.extraLayers > 0 ? [model.extraMsaRows] : [])] : [];
    const daps = model.kind === 'evoformer' ? divisors(cluster.gpusPerNode) : [1];
    for (const dap of daps.filter((d) => gpus % d === 0 && splits.every((n) => n % d === 0))) {
      const dp = gpus / dap;
      for (const microBatch of [1, 2].filter((m) => training.globalBatch % (m * dp) === 0)) {
        for (const recompute of ['none', 'full']) {
          for (const zero of dp * dap > 1 ? [0, 1, 2] : [0]) {
            // Every searched field explicit, so that none is inherited from the scenario; DAP's overlap kept where there is DAP.
            const evoformer = model.kind === 'evoformer' ? { 'parallel.dap': dap, 'parallel.dapOverlap': dap > 1 && (base.parallel as { dapOverlap?: boolean }).dapOverlap === true } : {};
            out.push({ ...evoformer, 'parallel.offload.optimizer': 'none', 'parallel.offload.params': 'none', 'parallel.dp': dp, 'training.microBatch': microBatch, 'training.recompute': recompute, 'parallel.zero': zero });
          }
        }
      }
    }
    return out;
  }
  // Splitting the sequence (context parallelism, Ulysses) pays only for long sequences; ring attention needs
  // FlashAttention, so without it context parallelism gathers keys and values whole (Llama 3's way).
  const long = model.seqLength >= 16384;
  const cpAttention = training.flashAttention ? 'ring' : 'allgather';
  for (const tp of divisors(cluster.gpusPerNode).filter((t) => gpus % t === 0 && model.heads % t === 0)) {
    // Sequence splits within a node, beside tensor parallelism: one of the two at a time.
    const splits: [cp: number, ulysses: number][] = [[1, 1]];
    if (long) for (const d of divisors(cluster.gpusPerNode / tp).filter((d) => d > 1 && gpus % (tp * d) === 0)) splits.push([d, 1], [1, d]);
    for (const [cp, ulysses] of splits) {
      // Stages need not hold equal layers (the split is derived, or uneven): any pp up to the layers.
      for (const pp of divisors(gpus / (tp * cp * ulysses)).filter((p) => p <= model.layers)) {
        const dp = gpus / (tp * cp * ulysses * pp);
        const replicas = dp * cp * ulysses;
        for (const microBatch of [1, 2, 4, 8].filter((m) => training.globalBatch % (m * dp) === 0)) {
          const schedules: [string, number][] = pp === 1 ? [['1f1b', 1]] : [['gpipe', 1], ['1f1b', 1], ['interleaved', 2], ['zb-h1', 1], ['zb-h2', 1], ['zb-v', 2]];
          for (const [schedule, chunks] of schedules) {
            for (const recompute of ['none', 'selective', 'full']) {
              for (const sequenceParallel of tp > 1 ? [false, true] : [false]) {
                // ZeRO-3 gathers every layer's parameters for each micro-batch: not with a pipeline. ZeRO-Offload
                // (the optimizer on the CPU) beside ZeRO-2, the stage DeepSpeed pairs it with, on one replica too;
                // ZeRO-Infinity (parameters and optimizer on NVMe) beside ZeRO-3.
                const zeros: [number, string, string][] =
                  phase === 'infinity'
                    ? pp === 1
                      ? [[3, 'nvme', 'nvme']]
                      : []
                    : replicas === 1
                      ? [[0, 'none', 'none'], [2, 'cpu', 'none']]
                      : [[0, 'none', 'none'], [1, 'none', 'none'], [2, 'none', 'none'], [2, 'cpu', 'none'], ...(pp === 1 ? [[3, 'none', 'none'] as [number, string, string]] : [])];
                for (const [zero, offload, params] of zeros) {
                  out.push({
                    'parallel.tp': tp,
                    'parallel.pp': pp,
                    'parallel.dp': dp,
                    // Every searched field explicit, so that none is inherited from the scenario.
                    'parallel.cp': cp,
                    ...(cp > 1 ? { 'parallel.cpAttention': cpAttention } : {}),
                    'parallel.ulysses': ulysses,
                    'training.microBatch': microBatch,
                    'parallel.schedule': schedule,
                    'parallel.chunks': chunks,
                    'training.recompute': recompute,
                    'parallel.sequenceParallel': sequenceParallel,
                    'parallel.zero': zero,
                    'parallel.offload.optimizer': offload,
                    'parallel.offload.params': params,
                  });
                }
              }
            }
          }
        }
      }
    }
  }
  return out;
}

/** The overrides that plan for `gpus` GPUs on the scenario's nodes. */
function clusterOverrides(base: Scenario, gpus: number | undefined): Record<string, unknown> {
  if (gpus === undefined) return {};
  const perNode = base.cluster.gpusPerNode;
  if (!Number.isInteger(gpus) || gpus < 1 || gpus % perNode !== 0) throw new UsageError(`--gpus must be a multiple of the scenario's ${perNode} GPUs per node; got ${gpus}`);
  return { 'cluster.nodes': gpus / perNode };
}

/** A candidate as --set overrides, written as a sweep entry's are, so that the check and the simulation read the same. */
const setOf = (overrides: Record<string, unknown>) => Object.entries(overrides).map(([path, value]) => overrideString(path, value));

export async function plan(given: ScenarioSource, options: PlanOptions = {}): Promise<Plan> {
  const base = parseScenario(given.text, given.file);
  // Every candidate trains on the scenario's global batch, whatever its micro-batch and data-parallel degree.
  const source = untuned(batchPinned(given, base.training.globalBatch));
  const cluster = clusterOverrides(base, options.gpus);
  const gpus = options.gpus ?? base.cluster.nodes * base.cluster.gpusPerNode;
  const objective = options.objective ?? 'time';
  const all: Record<string, unknown>[] = [];

  // The checks first: a candidate they refuse is counted by the field they name, not simulated.
  const refused: Record<string, number> = {};
  const candidates: PlanCandidate[] = [];
  const prunedCandidates: PlanCandidate[] = [];
  // A layout the scenario tunes (layersPerStage, microBatchGroup) holds for its own pp and chunks only: other
  // candidates run on the scenario without them, so that they are derived for each.
  const retuned = detuned(source);
  const own = (o: Record<string, unknown>) => o['parallel.pp'] === base.parallel.pp && o['parallel.chunks'] === base.parallel.chunks;
  const sourceOf = (o: Record<string, unknown>) => (own(o) ? source : retuned);
  // ZeRO-Infinity (weights and optimizer on NVMe) is the last resort: searched only when nothing else fits, since
  // its candidates are the dearest to simulate and the slowest to run.
  for (const phase of ['main', 'infinity'] as const) {
    if (phase === 'infinity' && (candidates.some((c) => c.result?.fits) || options.signal?.aborted)) break;
    const list = planCandidates(base, gpus, phase).map((c) => ({ ...cluster, ...c }));
    all.push(...list);
    const batches = new Map<ScenarioSource, SweepEntry[]>([[source, []], [retuned, []]]);
    let index = 0;
    for (const overrides of list) {
      const from = sourceOf(overrides);
      try {
        const candidate = parseScenario(from.text, from.file, { set: setOf(overrides) });
        // Proved not to fit without simulating: its model states alone exceed the HBM.
        const bound = statesLowerBound(candidate) ?? 0;
        if (bound > candidate.cluster.gpu.memoryBytes) prunedCandidates.push({ overrides, statesBound: bound });
        else batches.get(from)!.push({ index: index++, overrides });
      } catch (error) {
        // Only an invalid configuration is a refusal; anything else is a fault to report.
        if (!(error instanceof ScenarioError)) throw error;
        const path = error.issues[0]?.path || 'scenario';
        refused[path] = (refused[path] ?? 0) + 1;
      }
    }
    const lines: SweepLine[] = [];
    options.onProgress?.(0, index);
    for (const [from, entries] of batches) {
      if (entries.length === 0) continue;
      const id = createHash('sha256').update(from.text).digest('hex').slice(0, 16);
      await simulateEntries({ id, source: from, set: [] }, entries, {
        workers: options.workers,
        signal: options.signal,
        onLine: (line) => {
          lines.push(line);
          options.onProgress?.(lines.length, index);
        },
      });
    }
    lines.sort((a, b) => a.index - b.index);
    for (const line of lines) {
      // Refused by a check only the full lowering makes (a schedule that needs more micro-batches, say): counted too.
      if (line.error !== undefined) {
        const path = line.error.split(':')[0] || 'scenario';
        refused[path] = (refused[path] ?? 0) + 1;
      } else candidates.push({ overrides: line.overrides, result: line.result });
    }
  }

  const score = (c: PlanCandidate) => (objective === 'time' ? c.result!.stepTime : c.result!.peakHbm);
  const tie = (c: PlanCandidate) => (objective === 'time' ? c.result!.peakHbm : c.result!.stepTime);
  const fitting = candidates.filter((c) => c.result?.fits);
  const ranked = [...fitting].sort((a, b) => score(a) - score(b) || tie(a) - tie(b));
  const byPeak = [...fitting].sort((a, b) => a.result!.peakHbm - b.result!.peakHbm || a.result!.stepTime - b.result!.stepTime);
  const pareto: PlanCandidate[] = [];
  for (const c of byPeak) if (pareto.length === 0 || c.result!.stepTime < pareto[pareto.length - 1].result!.stepTime) pareto.push(c);
  const best = ranked[0];

  // Each dimension's values: how far the best with that value falls behind, or how close one comes to fitting.
  const dimensions: DimensionVerdict[] = [];
  for (const field of Object.keys(all[0] ?? {})) {
    const values = [...new Set(all.map((c) => JSON.stringify(c[field])))];
    if (values.length < 2) continue;
    for (const v of values) {
      const value = JSON.parse(v) as unknown;
      const mine = ranked.find((c) => JSON.stringify(c.overrides[field]) === v);
      if (mine) dimensions.push({ field, value, best: mine, behind: best ? score(mine) / score(best) - 1 : 0 });
      else {
        const peaks = candidates.filter((c) => c.result && JSON.stringify(c.overrides[field]) === v).map((c) => c.result!.peakHbm);
        dimensions.push({ field, value, closestPeakHbm: peaks.length > 0 ? Math.min(...peaks) : undefined });
      }
    }
  }
  // Nearest to fitting: simulated ones by their peak, pruned ones by their states' bound.
  const need = (c: PlanCandidate) => c.result?.peakHbm ?? c.statesBound!;
  const closest = [...candidates.filter((c) => c.result && !c.result.fits), ...prunedCandidates].sort((a, b) => need(a) - need(b)).slice(0, 5);
  return {
    scenario: base.name,
    gpus,
    objective,
    candidates: all.length,
    refused,
    pruned: prunedCandidates.length,
    simulated: candidates.length,
    fitting: fitting.length,
    evaluated: candidates,
    ranked,
    pareto,
    dimensions,
    closest,
    capacity: base.cluster.gpu.memoryBytes,
  };
}

/** The scenario's text without these fields (dotted paths); the source itself when it has none of them. */
function without(source: ScenarioSource, paths: readonly string[]): ScenarioSource {
  const doc = parseDocument(source.text);
  const present = paths.map((path) => path.split('.')).filter((path) => doc.hasIn(path));
  if (present.length === 0) return source;
  for (const path of present) doc.deleteIn(path);
  return { file: source.file, text: doc.toString() };
}

/** The scenario without the fields tuned to its own pipeline layout. */
const detuned = (source: ScenarioSource) => without(source, ['parallel.layersPerStage', 'parallel.microBatchGroup']);

/**
 * The scenario without the partial recomputation it tunes (`training.recomputeLayers`): the search varies the
 * recomputation policy over whole stages, which that field would restrict or refuse.
 */
const untuned = (source: ScenarioSource) => without(source, ['training.recomputeLayers']);

/**
 * The scenario file's text with a candidate's overrides written in: `dtsim run` on it reproduces the candidate.
 * A pipeline layout other than the scenario's own leaves out the fields the scenario tuned to its own.
 */
export function scenarioWith(given: ScenarioSource, overrides: Record<string, unknown>): string {
  const source = untuned(given);
  const base = parseScenario(source.text, source.file);
  const own = overrides['parallel.pp'] === undefined || (overrides['parallel.pp'] === base.parallel.pp && overrides['parallel.chunks'] === base.parallel.chunks);
  const doc = parseDocument(own ? source.text : detuned(source).text);
  for (const [path, value] of Object.entries(overrides)) doc.setIn(path.split('.'), value);
  return doc.toString();
}
