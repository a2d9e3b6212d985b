import { compareVariants, type ScenarioSource, type Variant } from './compare.js';
import type { Report } from './report/report.js';
import { batchPinned, parseScenario, readScenarioSource } from './scenario/load.js';
import type { Scenario } from './scenario/resolve.js';
import type { Optimizer } from './training/optimizer.js';

/**
 * The what-if memory report (`dtsim memory`): a scenario's per-device peak by category and tier, then each memory
 * technique that applies switched on (or off) one at a time, simulated in full, ranked by the memory it saves per
 * second of step time it costs; and, when the scenario does not fit, the techniques combined in that order until it
 * does. Every figure comes from a simulated step; the techniques are the scenario knobs that exist, so a technique
 * added as a knob is one line in `techniques` below.
 */
export interface Technique {
  /** What it is, in a few words. */
  name: string;
  /** Scenario fields it sets, as `path=value`. */
  set: string[];
  /** Scenario fields it leaves out. */
  unset?: string[];
  /** The scenario field it is a value of: two techniques of one field do not combine. */
  field: string;
}

export interface TechniqueResult extends Technique {
  /** Worst GPU's HBM peak, bytes; and how much less than the baseline's (negative: more). */
  peakHbm: number;
  savedBytes: number;
  /** Step time, seconds; and how much longer than the baseline's (negative: shorter). */
  stepTime: number;
  lostSeconds: number;
  /** Host memory peak of the fullest node, bytes. */
  peakHost: number;
  fits: boolean;
  /** The baseline does not fit and this alone makes it fit. */
  makesItFit: boolean;
}

export interface MemoryWhatIf {
  scenario: string;
  /** The scenario as it is: its step time, and its report's memory section but the overflows. */
  baseline: { stepTime: number } & Pick<Report['memory'], 'peak' | 'capacity' | 'fits' | 'worstDevice' | 'breakdown'>;
  /** Memory savers first, by bytes saved per second of step time lost (those that lose none first, most saved first); then those that spend memory, most time gained first. */
  techniques: TechniqueResult[];
  /** Techniques that do not apply to this configuration, with the checks' reason. */
  refused: { name: string; set: string[]; reason: string }[];
  /** When the baseline does not fit: memory savers combined until it does (see combine). */
  combination?: { names: string[]; set: string[]; peakHbm: number; stepTime: number; fits: boolean };
}

/** Fields whose techniques change what is computed (convergence, numerics): shown alone, never combined. */
const CHANGES_THE_MATH = new Set(['training.optimizer', 'training.precision', 'training.weightBits']);

const ZERO_NAMES = ['no ZeRO', 'ZeRO-1 (optimizer states sharded)', 'ZeRO-2 (and gradients)', 'ZeRO-3 (and parameters)'];

/** The techniques that apply to a scenario's model and layout, each switched from the scenario's setting. */
export function techniques(s: Scenario): Technique[] {
  const out: Technique[] = [];
  const add = (field: string, name: string, ...set: string[]) => out.push({ name, field, set });
  // A variant of the recomputation policy drops a base's recomputeLayers, which only full recomputation takes.
  const addRecompute = (name: string, ...set: string[]) => out.push({ name, field: 'training.recompute', set, ...(t.recomputeLayers !== undefined ? { unset: ['training.recomputeLayers'] } : {}) });
  const { training: t, parallel: p, model } = s;
  const evoformer = model.kind === 'evoformer';
  const recompute = evoformer ? (['none', 'full'] as const) : (['none', 'selective', 'full'] as const);
  const recomputeNames = { none: 'no recomputation', selective: 'selective recomputation (attention core)', full: evoformer ? 'per-block checkpointing' : 'full recomputation' };
  for (const r of recompute) if (r !== t.recompute || (r === 'full' && t.recomputeLayers !== undefined)) addRecompute(recomputeNames[r], `training.recompute=${r}`);
  // Full recomputation of half of each stage's layers (Megatron's block method), between none and full.
  const half = Math.floor(Math.min(...p.layersPerStage) / p.chunks / 2);
  if (!evoformer && half >= 1 && (t.recompute !== 'full' || t.recomputeLayers !== half)) add('training.recompute', `full recomputation of ${half} layers a virtual stage`, 'training.recompute=full', `training.recomputeLayers=${half}`);
  add('training.flashAttention', t.flashAttention ? 'no fused attention' : evoformer ? 'fused attention' : 'FlashAttention', `training.flashAttention=${!t.flashAttention}`);
  // Mixed precision in bf16, or in fp16 on a GPU without bf16 (V100).
  const sixteen = s.cluster.gpu.bf16 === false ? 'fp16' : 'bf16';
  if (t.precision === 'fp32') add('training.precision', `${sixteen} mixed precision`, `training.precision=${sixteen}`);
  // fp32 has no master copy to quantise from: it drops quantisation-aware training.
  else out.push({ name: 'fp32 (no mixed precision)', field: 'training.precision', set: ['training.precision=fp32'], ...(t.weightBits !== undefined ? { unset: ['training.weightBits'] } : {}) });
  if (t.precision === 'fp8') add('training.precision', 'bf16 matrix multiplications (no fp8)', 'training.precision=bf16');
  else if (s.cluster.gpu.fp8FlopsPerSecond !== undefined && t.precision !== 'fp32') add('training.precision', 'fp8 matrix multiplications (Transformer Engine)', 'training.precision=fp8');
  if (t.gradAccumulation === 'fp32' && t.precision !== 'fp32') add('training.gradAccumulation', 'gradients in the training precision', 'training.gradAccumulation=precision');
  // Optimizers that keep less state than Adam (each from the scenario's own).
  const optimizers: [Optimizer, string][] = [['adam8bit', '8-bit Adam'], ['adam-mini', 'Adam-mini (one second moment per block)'], ['lion', 'Lion (momentum only)'], ['adafactor', 'Adafactor (factored second moment)'], ['came', 'CAME (factored, confidence-guided)'], ['sm3', 'SM3 (factored accumulators)']];
  for (const [o, name] of optimizers) if (o !== t.optimizer) add('training.optimizer', name, `training.optimizer=${o}`);
  // MeZO runs no backward: it drops recomputation, and the ZeRO stages and offload that have nothing left to act on.
  if (t.optimizer !== 'mezo' && t.weightBits === undefined && p.offload.params === 'none') {
    const undo = [...(t.recompute !== 'none' ? ['training.recompute=none'] : []), ...(p.zero === 1 || p.zero === 2 ? ['parallel.zero=0'] : []), ...(p.offload.optimizer !== 'none' ? ['parallel.offload.optimizer=none'] : [])];
    out.push({ name: 'MeZO (zeroth order, no backward; converges in many more steps)', field: 'training.optimizer', set: ['training.optimizer=mezo', ...undo], ...(t.recomputeLayers !== undefined ? { unset: ['training.recomputeLayers'] } : {}) });
  }
  if (t.precision !== 'fp32' && t.weightBits === undefined && t.optimizer !== 'mezo') {
    add('training.weightBits', '4-bit weights (quantisation-aware training)', 'training.weightBits=4');
    add('training.weightBits', 'ternary weights (BitNet b1.58)', 'training.weightBits=1.58');
  } else if (t.weightBits !== undefined) out.push({ name: '16-bit weights (no quantisation-aware training)', field: 'training.weightBits', set: [], unset: ['training.weightBits'] });
  if (t.microBatch > 1) add('training.microBatch', `micro-batch ${Math.floor(t.microBatch / 2)} (more accumulation)`, `training.microBatch=${Math.floor(t.microBatch / 2)}`);
  if (!evoformer && p.tp > 1) add('parallel.sequenceParallel', p.sequenceParallel ? 'no sequence parallelism' : 'sequence parallelism', `parallel.sequenceParallel=${!p.sequenceParallel}`);
  const replicas = p.dp * (p.dap ?? 1) * (p.ulysses ?? 1) * (p.cp ?? 1);
  if (replicas > 1) for (let z = 0; z <= 3; z++) if (z !== p.zero) add('parallel.zero', ZERO_NAMES[z], `parallel.zero=${z}`);
  if (p.offload.optimizer === 'none') add('parallel.offload', 'ZeRO-Offload (optimizer on the CPU)', `parallel.zero=${Math.max(2, p.zero)}`, 'parallel.offload.optimizer=cpu');
  else add('parallel.offload', 'no offloading', 'parallel.offload.optimizer=none', 'parallel.offload.params=none');
  if (p.offload.params === 'none') add('parallel.offload', 'ZeRO-Infinity (parameters and optimizer on NVMe)', 'parallel.zero=3', 'parallel.offload.optimizer=nvme', 'parallel.offload.params=nvme');
  if (evoformer && p.dp % 2 === 0 && 2 * p.dap <= s.cluster.gpusPerNode) add('parallel.dap', `DAP ${2 * p.dap}`, `parallel.dap=${2 * p.dap}`, `parallel.dp=${p.dp / 2}`);
  return out;
}

export interface WhatIfOptions {
  set?: string[];
  seed?: number;
  maxOperations?: number;
  onVariant?: (index: number, total: number, label: string) => void;
}

export function memoryWhatIf(scenario: string | ScenarioSource, options: WhatIfOptions = {}): MemoryWhatIf {
  const given = typeof scenario === 'string' ? readScenarioSource(scenario) : scenario;
  // The baseline must be valid: its own errors are the answer (ScenarioError, exit 3).
  const base = parseScenario(given.text, given.file, { set: options.set, seed: options.seed });
  // Every variant trains on the same global batch.
  const source = batchPinned(given, base.training.globalBatch);
  const list = techniques(base);
  const variants: Variant[] = [{ label: 'baseline', set: [] }, ...list.map((t) => ({ label: t.name, set: t.set, ...(t.unset ? { unset: t.unset } : {}) }))];
  const { results } = compareVariants(source, variants, options);
  const baseline = results[0].report;
  if (!baseline) throw new Error(`the baseline did not run: ${results[0].error}`);
  const refused: MemoryWhatIf['refused'] = [];
  const measured: TechniqueResult[] = [];
  list.forEach((t, i) => {
    const r = results[i + 1];
    if (r.report) measured.push(measure(t, r.report, baseline));
    else refused.push({ name: t.name, set: t.set, reason: r.error ?? 'did not run' });
  });
  const ranked = rank(measured);
  const out: MemoryWhatIf = {
    scenario: baseline.name,
    baseline: {
      stepTime: baseline.stepTime,
      peak: baseline.memory.peak,
      capacity: baseline.memory.capacity,
      fits: baseline.memory.fits,
      worstDevice: baseline.memory.worstDevice,
      breakdown: baseline.memory.breakdown,
    },
    techniques: ranked,
    refused,
  };
  if (!baseline.memory.fits) out.combination = combine(source, ranked, options);
  return out;
}

function measure(t: Technique, r: Report, baseline: Report): TechniqueResult {
  return {
    ...t,
    peakHbm: r.memory.peak.hbm,
    savedBytes: baseline.memory.peak.hbm - r.memory.peak.hbm,
    stepTime: r.stepTime,
    lostSeconds: r.stepTime - baseline.stepTime,
    peakHost: r.memory.peak.cpu,
    fits: r.memory.fits,
    makesItFit: !baseline.memory.fits && r.memory.fits,
  };
}

/** Savers by bytes saved per second lost (free ones first, most saved first); then spenders, most time gained first. */
export function rank(results: TechniqueResult[]): TechniqueResult[] {
  const savers = results.filter((r) => r.savedBytes > 0);
  const free = savers.filter((r) => r.lostSeconds <= 0).sort((a, b) => b.savedBytes - a.savedBytes || a.lostSeconds - b.lostSeconds);
  const costly = savers.filter((r) => r.lostSeconds > 0).sort((a, b) => b.savedBytes / b.lostSeconds - a.savedBytes / a.lostSeconds);
  const spenders = results.filter((r) => r.savedBytes <= 0).sort((a, b) => a.lostSeconds - b.lostSeconds || b.savedBytes - a.savedBytes);
  return [...free, ...costly, ...spenders];
}

/**
 * Savers combined, one per scenario field, added one at a time until the step fits: first each field's best saver
 * per second lost, in ranked order; if that never fits, each field's largest saver. Undefined when none saves
 * memory. It may beat the single technique that makes the step fit: two cheap savers can cost less time than one dear one.
 */
function combine(source: ScenarioSource, ranked: TechniqueResult[], options: WhatIfOptions): MemoryWhatIf['combination'] {
  // Only techniques that train the same model the same way: not another optimizer or precision.
  const savers = ranked.filter((t) => t.savedBytes > 0 && !CHANGES_THE_MATH.has(t.field));
  const paths = (t: Technique) => t.set.map((s) => s.slice(0, s.indexOf('=')));
  const attempt = (order: TechniqueResult[]) => {
    const chosen: TechniqueResult[] = [];
    let last: Report | undefined;
    for (const t of order) {
      if (chosen.some((c) => c.field === t.field || paths(c).some((x) => paths(t).includes(x)))) continue;
      const trial = [...chosen, t];
      const [tried] = compareVariants(source, [{ label: trial.map((c) => c.name).join(' + '), set: trial.flatMap((c) => c.set), unset: trial.flatMap((c) => c.unset ?? []) }], { ...options, onVariant: undefined }).results;
      // Two techniques the checks refuse together: leave this one out.
      if (!tried.report) continue;
      chosen.push(t);
      last = tried.report;
      if (last.memory.fits) break;
    }
    return last && { names: chosen.map((c) => c.name), set: chosen.flatMap((c) => c.set), peakHbm: last.memory.peak.hbm, stepTime: last.stepTime, fits: last.memory.fits };
  };
  const cheapest = attempt(savers);
  if (cheapest === undefined || cheapest.fits) return cheapest;
  const largest = attempt([...savers].sort((a, b) => b.savedBytes - a.savedBytes));
  return largest && (largest.fits || largest.peakHbm < cheapest.peakHbm) ? largest : cheapest;
}
