import { expect } from 'vitest';
import type { Simulation } from '../../src/simulate.js';
import { KIND, OP_KINDS } from '../../src/strategies/layout.js';
import type { PipelineSchedule, ScheduleParams } from '../../src/strategies/pipeline/schedule.js';

/**
 * Laws every pipeline schedule must obey, on its pure order and on the simulated
 * step. Schedule-specific expectations (bubble with equal costs, micro-batches in
 * flight per stage) live in SCHEDULE_EXPECTATIONS: a newly registered schedule
 * fails the suite until it declares them.
 */
export interface ScheduleExpectation {
  /** Bubble fraction with equal per-stage costs and free communication. */
  bubble(p: number, m: number, v: number): number;
  /** Most micro-batches whose activations stage i holds at once. */
  maxInFlight(p: number, m: number, stage: number): number;
}

export const SCHEDULE_EXPECTATIONS: Record<string, ScheduleExpectation> = {
  gpipe: { bubble: (p, m) => (p - 1) / (m + p - 1), maxInFlight: (_p, m) => m },
  '1f1b': { bubble: (p, m) => (p - 1) / (m + p - 1), maxInFlight: (p, m, i) => Math.min(p - i, m) },
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

/** Laws on a simulated step. */
export function checkStepLaws(sim: Simulation): void {
  const { plan, execution, memory } = sim;
  const g = plan.graph;
  // Every operation ran, after its dependencies.
  expect(execution.completed).toBe(g.count);
  for (let op = 0; op < g.count; op++) {
    for (let i = g.deps.start[op]; i < g.deps.start[op + 1]; i++) expect(execution.startNs[op]).toBeGreaterThanOrEqual(execution.endNs[g.deps.items[i]]);
  }
  // No overlap on a lane, in program order.
  for (let lane = 0; lane < g.laneCount; lane++) {
    for (let i = g.program.start[lane] + 1; i < g.program.start[lane + 1]; i++) {
      expect(execution.startNs[g.program.items[i]]).toBeGreaterThanOrEqual(execution.endNs[g.program.items[i - 1]]);
    }
  }
  // Each forward and backward of every (device, micro-batch, chunk) exactly once (backward may be split into bucket segments).
  const forwards = new Map<string, number>();
  for (let op = 0; op < g.count; op++) {
    if (g.kind[op] !== KIND.forward) continue;
    const key = `${g.device[op]}:${g.chunk[op]}:${g.microBatch[op]}`;
    forwards.set(key, (forwards.get(key) ?? 0) + 1);
  }
  const devices = plan.layout.devices;
  expect(forwards.size).toBe(devices * plan.microBatches * plan.scenario.parallel.chunks);
  for (const [key, n] of forwards) expect(n, `forward ${key}`).toBe(1);
  const backwardFlops = new Map<string, number>();
  for (let op = 0; op < g.count; op++) {
    if (g.kind[op] !== KIND.backward) continue;
    const key = `${g.device[op]}:${g.chunk[op]}:${g.microBatch[op]}`;
    backwardFlops.set(key, (backwardFlops.get(key) ?? 0) + g.flops[op]);
  }
  expect(backwardFlops.size).toBe(forwards.size);
  for (const [key, flops] of backwardFlops) {
    const stage = plan.layout.coordinates(Number(key.split(':')[0])).pp;
    expect(flops / plan.stages[stage].backwardFlops, `backward ${key}`).toBeCloseTo(1, 9);
  }
  // Memory never negative, and back to the baseline after the step.
  expect(memory.negative.size).toBe(0);
  const baseline = new Float64Array(plan.layout.locationCount);
  for (const b of plan.baseline) baseline[b.location] += b.bytes;
  for (let loc = 0; loc < plan.layout.locationCount; loc++) expect(memory.used[loc]).toBeCloseTo(baseline[loc], 0);
  void OP_KINDS;
}

/** Most micro-batches of activations each stage held, measured from the memory timeline. */
export function inFlightPerStage(sim: Simulation): number[] {
  const { plan, memory } = sim;
  const activations = 3;
  return plan.stages.map((s) => {
    let peak = 0;
    for (let d = 0; d < plan.layout.devices; d++) {
      if (plan.layout.coordinates(d).pp !== s.stage) continue;
      peak = Math.max(peak, memory.categoryPeak[plan.layout.hbm(d) * 5 + activations]);
    }
    return Math.round(peak / s.activationBytes);
  });
}
