import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import type { ScenarioSource } from './compare.js';
import { UsageError } from './errors.js';
import type { Objective } from './plan-assess.js';
import { batchPinned, parseScenario } from './scenario/load.js';
import type { Scenario } from './scenario/resolve.js';
import { entryRunner } from './sweep-run.js';
import type { EntrySummary, SweepEntry, SweepLine } from './sweep.js';

export type { Objective } from './plan-assess.js';

/**
 * `dtsim plan`: keeps a scenario's cluster, model and batch, and searches the parallel strategy and the techniques
 * that apply (TP, PP, DP, sequence splits, micro-batch, schedule and chunks, recomputation, sequence parallelism,
 * ZeRO, offloading). The checks' refusals are counted by field; a candidate whose memory bound exceeds HBM is pruned
 * (plan-assess.ts). The rest are simulated in full (on worker threads), in rounds, least lower bound on the objective first;
 * once the next candidate's bound is past the cut-off (the best so far plus `within`, and no better than the
 * `top`-th best), the rest are skipped: none of them can rank among the best, come within `within` of it, or stand
 * on the Pareto front below the cut-off. The answer: the best candidates, that Pareto front of step time against
 * peak HBM, and for each value of each dimension how far its best falls behind (at least how far, when its
 * candidates were skipped), or why nothing with it fits.
 */

export interface PlanOptions {
  /** Plan for this many GPUs (a multiple of the scenario's GPUs per node) instead of the scenario's. */
  gpus?: number;
  objective?: Objective;
  workers?: number;
  /**
   * Simulate every candidate whose bound is within this fraction of the best so far (default 0.1: 10%); Infinity
   * simulates every candidate the checks and the states bound let through.
   */
  within?: number;
  /** The best this many are ranked exactly, whatever `within` (default 10). */
  top?: number;
  /**
   * Simulate candidates with their replica symmetry where it is exact (default true): the same results, a fraction
   * of the work (simulate's `symmetry`).
   */
  symmetry?: boolean;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface PlanCandidate {
  overrides: Record<string, unknown>;
  result?: EntrySummary;
  /** For a pruned candidate: the least HBM it needs, bytes: its model states and the activations its schedule holds (planBounds). */
  statesBound?: number;
  /** A lower bound on the objective (step time, seconds; or peak HBM, bytes) from the pass costs, without simulating. */
  bound?: number;
}

export interface DimensionVerdict {
  field: string;
  value: unknown;
  /** The best fitting candidate with this value, and how much worse it is than the best by the objective. */
  best?: PlanCandidate;
  behind?: number;
  /**
   * When candidates with this value were skipped (their bound past the cut-off) and could beat `best`, or there is
   * no `best`: the least they can fall behind the best, from their bounds. The value's true best lies between.
   */
  behindAtLeast?: number;
  /** When none with this value fits: the least HBM any needs, bytes (a simulated peak, or a pruned one's bound). */
  closestPeakHbm?: number;
}

export interface Plan {
  scenario: string;
  gpus: number;
  objective: Objective;
  /**
   * Candidates generated, refused by a check (by field), pruned (their model states and activations provably exceed HBM), skipped (their
   * bound on the objective past the cut-off), simulated, and fitting.
   */
  candidates: number;
  refused: Record<string, number>;
  pruned: number;
  skipped: number;
  simulated: number;
  fitting: number;
  /** The search's `within` (null: every candidate simulated), and the cut-off it ended with (seconds or bytes; absent when none cut). */
  within: number | null;
  cutoff?: number;
  /** Every simulated candidate, in the order generated. */
  evaluated: PlanCandidate[];
  /** Fitting candidates by the objective, best first. */
  ranked: PlanCandidate[];
  /**
   * Fitting candidates no other beats in both step time and peak HBM, by peak HBM; with a cut-off, those whose
   * objective is within it (beyond it, a skipped candidate might beat them).
   */
  pareto: PlanCandidate[];
  dimensions: DimensionVerdict[];
  /** Simulated candidates that do not fit, least HBM first (what to look at when none fits). */
  closest: PlanCandidate[];
  /** Candidates skipped by their bound, in the order generated, each with its bound. */
  skippedCandidates: PlanCandidate[];
  capacity: number;
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


/** Candidates simulated between two decisions to go on: fixed, so that what is skipped does not depend on the cores. */
const ROUND = 32;

export async function plan(given: ScenarioSource, options: PlanOptions = {}): Promise<Plan> {
  const base = parseScenario(given.text, given.file);
  // Every candidate trains on the scenario's global batch, whatever its micro-batch and data-parallel degree.
  const source = untuned(batchPinned(given, base.training.globalBatch));
  const cluster = clusterOverrides(base, options.gpus);
  const gpus = options.gpus ?? base.cluster.nodes * base.cluster.gpusPerNode;
  const objective = options.objective ?? 'time';
  const within = options.within ?? 0.1;
  const top = options.top ?? 10;
  if (!(within >= 0)) throw new UsageError(`--within must be a fraction of 0 or more (0.1: within 10% of the best); got ${within}`);
  if (!Number.isInteger(top) || top < 1) throw new UsageError(`--top must be a whole number, 1 or more; got ${top}`);
  const all: Record<string, unknown>[] = [];
  const score = (c: PlanCandidate) => (objective === 'time' ? c.result!.stepTime : c.result!.peakHbm);
  const tie = (c: PlanCandidate) => (objective === 'time' ? c.result!.peakHbm : c.result!.stepTime);

  // The checks first: a candidate they refuse is counted by the field they name, not simulated.
  const refused: Record<string, number> = {};
  const candidates: PlanCandidate[] = [];
  const prunedCandidates: PlanCandidate[] = [];
  const skippedCandidates: PlanCandidate[] = [];
  // A layout the scenario tunes (layersPerStage, microBatchGroup) holds for its own pp, chunks and schedule only: other
  // candidates run on the scenario without them, so that they are derived for each.
  const retuned = detuned(source);
  const own = (o: Record<string, unknown>) => ownLayout(base, o);
  const sourceOf = (o: Record<string, unknown>) => (own(o) ? source : retuned);
  const ids = new Map([source, retuned].map((s) => [s, createHash('sha256').update(s.text).digest('hex').slice(0, 16)]));
  const runner = entryRunner(options.workers);
  // The cut-off: no candidate whose bound reaches it can rank among the best `top`, or come within `within` of the best.
  const cutoffNow = () => {
    const scores = candidates.filter((c) => c.result?.fits).map(score).sort((x, y) => x - y);
    if (scores.length === 0) return Infinity;
    return Math.max(scores[0] * (1 + within), scores[top - 1] ?? Infinity);
  };
  let cutoff = Infinity;
  try {
    // ZeRO-Infinity (weights and optimizer on NVMe) is the last resort: searched only when nothing else fits, since
    // its candidates are the dearest to simulate and the slowest to run.
    for (const phase of ['main', 'infinity'] as const) {
      if (phase === 'infinity' && (candidates.some((c) => c.result?.fits) || options.signal?.aborted)) break;
      const list = planCandidates(base, gpus, phase).map((c) => ({ ...cluster, ...c }));
      const sources = [...new Set([source, retuned])];
      const items = list.map((overrides, i) => ({ index: all.length + i, source: sources.indexOf(sourceOf(overrides)), overrides }));
      all.push(...list);
      const survivors: (SweepEntry & { bound: number })[] = [];
      for (const a of await runner.assess({ objective, sources, items }, options.signal)) {
        const { overrides } = items[a.index - items[0].index];
        if (a.refused !== undefined) refused[a.refused] = (refused[a.refused] ?? 0) + 1;
        else if (a.pruned !== undefined) prunedCandidates.push({ overrides, statesBound: a.pruned });
        else survivors.push({ index: a.index, overrides, bound: a.bound! });
      }
      // Least bound first, so that the best is found early and the cut-off falls fast.
      survivors.sort((x, y) => x.bound - y.bound || x.index - y.index);
      let next = 0;
      // Whether the cut-off ended the search: what is left is then proved skippable, even if a stop comes after.
      let cut = false;
      options.onProgress?.(0, survivors.length);
      while (next < survivors.length && !options.signal?.aborted) {
        cutoff = cutoffNow();
        if (survivors[next].bound >= cutoff) {
          cut = true;
          break;
        }
        const round = survivors.slice(next, next + ROUND);
        next += round.length;
        const lines: SweepLine[] = [];
        for (const from of new Set([source, retuned])) {
          const entries = round.filter((e) => sourceOf(e.overrides) === from);
          if (entries.length === 0) continue;
          await runner.run({ id: ids.get(from)!, source: from, set: [], symmetry: options.symmetry }, entries, {
            signal: options.signal,
            onLine: (line) => {
              lines.push(line);
              options.onProgress?.(candidates.length + lines.length, survivors.length);
            },
          });
        }
        const entryOf = new Map(round.map((e) => [e.index, e]));
        for (const line of lines.sort((x, y) => x.index - y.index)) {
          // Refused by a check only the full lowering makes (a schedule that needs more micro-batches, say): counted too.
          if (line.error !== undefined) {
            const path = line.error.split(':')[0] || 'scenario';
            refused[path] = (refused[path] ?? 0) + 1;
          } else candidates.push({ overrides: entryOf.get(line.index)!.overrides, result: line.result, bound: entryOf.get(line.index)!.bound });
        }
      }
      if (cut) for (const e of survivors.slice(next)) skippedCandidates.push({ overrides: e.overrides, bound: e.bound });
    }
  } finally {
    runner.close();
  }
  const indexOf = new Map(all.map((o, i) => [o, i]));
  const generated = (x: PlanCandidate, y: PlanCandidate) => indexOf.get(x.overrides)! - indexOf.get(y.overrides)!;
  candidates.sort(generated);
  skippedCandidates.sort(generated);

  const fitting = candidates.filter((c) => c.result?.fits);
  const ranked = [...fitting].sort((a, b) => score(a) - score(b) || tie(a) - tie(b));
  const byPeak = [...fitting].sort((a, b) => a.result!.peakHbm - b.result!.peakHbm || a.result!.stepTime - b.result!.stepTime);
  const pareto: PlanCandidate[] = [];
  // Beyond the cut-off a skipped candidate might stand on the front: the front stops there.
  const cut = skippedCandidates.length > 0 ? cutoff : Infinity;
  for (const c of byPeak) if (score(c) < cut && (pareto.length === 0 || c.result!.stepTime < pareto[pareto.length - 1].result!.stepTime)) pareto.push(c);
  const best = ranked[0];

  // Each dimension's values: how far the best with that value falls behind, or how close one comes to fitting.
  const dimensions: DimensionVerdict[] = [];
  for (const field of Object.keys(all[0] ?? {})) {
    const values = [...new Set(all.map((c) => JSON.stringify(c[field])))];
    if (values.length < 2) continue;
    for (const v of values) {
      const value = JSON.parse(v) as unknown;
      const mine = ranked.find((c) => JSON.stringify(c.overrides[field]) === v);
      const skippedBounds = skippedCandidates.filter((c) => JSON.stringify(c.overrides[field]) === v).map((c) => c.bound!);
      const leastSkipped = skippedBounds.length > 0 ? Math.min(...skippedBounds) : Infinity;
      const atLeast = best && leastSkipped < (mine ? score(mine) : Infinity) ? { behindAtLeast: leastSkipped / score(best) - 1 } : {};
      if (mine) dimensions.push({ field, value, best: mine, behind: best ? score(mine) / score(best) - 1 : 0, ...atLeast });
      else {
        // The least HBM any with this value needs: simulated peaks, and the bounds of pruned ones.
        const peaks = [...candidates.filter((c) => c.result && JSON.stringify(c.overrides[field]) === v).map((c) => c.result!.peakHbm), ...prunedCandidates.filter((c) => JSON.stringify(c.overrides[field]) === v).map((c) => c.statesBound!)];
        dimensions.push({ field, value, ...atLeast, closestPeakHbm: peaks.length > 0 ? Math.min(...peaks) : undefined });
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
    skipped: skippedCandidates.length,
    simulated: candidates.length,
    fitting: fitting.length,
    within: Number.isFinite(within) ? within : null,
    ...(skippedCandidates.length > 0 ? { cutoff } : {}),
    evaluated: candidates,
    ranked,
    pareto,
    dimensions,
    closest,
    skippedCandidates,
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

/**
 * Whether a candidate keeps the scenario's own pipeline layout (stages, chunks and schedule), to which the fields the
 * scenario tunes (layersPerStage, microBatchGroup: interleaving's alone) belong.
 */
const ownLayout = (base: Scenario, o: Record<string, unknown>) =>
  o['parallel.pp'] === base.parallel.pp && o['parallel.chunks'] === base.parallel.chunks && (o['parallel.schedule'] === undefined || o['parallel.schedule'] === (base.parallel as { schedule?: string }).schedule);

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
  const own = overrides['parallel.pp'] === undefined || ownLayout(base, overrides);
  const doc = parseDocument(own ? source.text : detuned(source).text);
  for (const [path, value] of Object.entries(overrides)) doc.setIn(path.split('.'), value);
  return doc.toString();
}
