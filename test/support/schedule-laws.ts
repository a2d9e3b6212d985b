import { expect } from 'vitest';
import type { Simulation } from '../../src/simulate.js';
import { KIND } from '../../src/lower/resources.js';
import type { PipelineSchedule, ScheduleParams } from '../../src/strategies/pipeline/schedule.js';

/**
 * Laws every pipeline schedule must obey, on its pure order and on the simulated
 * step. Schedule-specific expectations live in SCHEDULE_EXPECTATIONS: a newly
 * registered schedule fails the suite until it declares them.
 */
export interface ScheduleExpectation {
  /** A valid (chunks, micro-batches) for p stages, from random draws in [0, 1). */
  shape(p: number, r1: number, r2: number): { chunks: number; m: number };
  /** Bubble fraction with equal F, B and W times (B and W as one backward where not split) and free communication, when closed-form. */
  bubble?(p: number, m: number, v: number): number;
  /** Most micro-batches (in whole-stage units) whose activations stage i holds at once, when closed-form. */
  maxInFlight?(p: number, m: number, v: number, stage: number): number;
}

const pick = (r: number, lo: number, hi: number) => lo + Math.floor(r * (hi - lo + 1));

export const SCHEDULE_EXPECTATIONS: Record<string, ScheduleExpectation> = {
  gpipe: { shape: (_p, r) => ({ chunks: 1, m: pick(r, 1, 24) }), bubble: (p, m) => (p - 1) / (m + p - 1), maxInFlight: (_p, m) => m },
  '1f1b': { shape: (_p, r) => ({ chunks: 1, m: pick(r, 1, 24) }), bubble: (p, m) => (p - 1) / (m + p - 1), maxInFlight: (p, m, _v, i) => Math.min(p - i, m) },
  interleaved: {
    shape: (p, r1, r2) => ({ chunks: pick(r1, 2, 4), m: p * pick(r2, 1, 4) }),
    bubble: (p, m, v) => (p - 1) / (v * m + p - 1),
    // Megatron's warm-up: (p-i-1)·2 + (v-1)·p chunk forwards, plus the first steady one; all of them when m = p.
    maxInFlight: (p, m, v, i) => (m === p ? m * v : Math.min(m * v, (p - i - 1) * 2 + (v - 1) * p + 1)) / v,
  },
  'zb-h1': { shape: (p, r) => ({ chunks: 1, m: pick(r, p, 4 * p) }), bubble: (p, m) => (p - 1) / (3 * m + p - 1) },
  'zb-h2': { shape: (p, r) => ({ chunks: 1, m: pick(r, 2 * p - 1, 5 * p) }) },
  'zb-v': { shape: (p, r) => ({ chunks: 2, m: pick(r, p, 4 * p) }) },
};

/** Laws on the order alone: every (stage, chunk, micro-batch) forward and backward exactly once, forward first. */
export function checkOrderLaws(schedule: PipelineSchedule, params: ScheduleParams): void {
  const order = schedule.order(params);
  const problems: string[] = [];
  if (order.length !== params.stages) problems.push(`${order.length} stage orders for ${params.stages} stages`);
  order.forEach((stageOrder, stage) => {
    const seen = new Map<string, number>();
    stageOrder.forEach((e, index) => {
      const key = `${e.pass}:${e.chunk}:${e.microBatch}`;
      if (seen.has(key)) problems.push(`stage ${stage}: ${key} twice`);
      seen.set(key, index);
      if (e.microBatch < 0 || e.microBatch >= params.microBatches || e.chunk < 0 || e.chunk >= params.chunks) problems.push(`stage ${stage}: ${key} out of range`);
    });
    for (let c = 0; c < params.chunks; c++) {
      for (let mb = 0; mb < params.microBatches; mb++) {
        const f = seen.get(`F:${c}:${mb}`);
        const bw = seen.get(`BW:${c}:${mb}`);
        const b = seen.get(`B:${c}:${mb}`);
        const w = seen.get(`W:${c}:${mb}`);
        const where = `stage ${stage}, chunk ${c}, micro-batch ${mb}`;
        if (f === undefined) problems.push(`${where}: no forward`);
        else if (bw !== undefined) {
          if (b !== undefined || w !== undefined) problems.push(`${where}: BW together with B or W`);
          if (bw < f) problems.push(`${where}: backward before forward`);
        } else if (b === undefined || w === undefined) problems.push(`${where}: no backward`);
        else if (b < f || w < b) problems.push(`${where}: F, B, W out of order`);
      }
    }
    if (stageOrder.length !== seen.size) problems.push(`stage ${stage}: repeated passes`);
  });
  expect(problems.slice(0, 5)).toEqual([]);
}

export { checkStepLaws } from './step-laws.js';

/**
 * Most micro-batches each stage held between a forward's start and the end of its backward (W for split
 * schedules), in whole-stage units (a chunk counts 1/v), swept over the executed timeline.
 */
export function inFlightPerStage(sim: Simulation): number[] {
  const { plan, execution } = sim;
  const g = plan.graph;
  const v = plan.config.parallel.chunks;
  const split = Array.from(plan.graph.label).some((l) => plan.labels.kind[l] === KIND.weightGrad);
  const releaseKind = split ? KIND.weightGrad : KIND.backward;
  return plan.stages.map((s) => {
    const device = plan.mesh.rank({ pp: s.stage });
    const events: [number, number][] = [];
    const release = new Map<string, number>();
    for (let op = 0; op < g.count; op++) {
      if (g.device[op] !== device) continue;
      if (plan.labels.kind[g.label[op]] === KIND.forward) events.push([execution.startNs[op], 1 / v]);
      if (plan.labels.kind[g.label[op]] === releaseKind) {
        const key = `${plan.labels.chunk[g.label[op]]}:${plan.labels.microBatch[g.label[op]]}`;
        release.set(key, Math.max(release.get(key) ?? 0, execution.endNs[op]));
      }
    }
    for (const end of release.values()) events.push([end, -1 / v]);
    // Releases at the same instant come first: the executor ends an operation before starting the next.
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let held = 0;
    let most = 0;
    for (const [, delta] of events) most = Math.max(most, (held += delta));
    return most;
  });
}
