import { execute, type ExecutionResult } from './engine/executor.js';
import { EventKernel } from './engine/kernel.js';
import { MemoryTracker } from './engine/memory.js';
import { PageWarmer } from './engine/page-warmer.js';
import { SimulationError } from './errors.js';
import { buildTopology, type Topology } from './hardware/topology.js';
import { buildReport, type Report } from './report/report.js';
import type { Scenario } from './scenario/resolve.js';
import { CATEGORIES, OP_KINDS } from './strategies/layout.js';
import { getSchedule } from './strategies/pipeline/registry.js';
import { buildStep, type StepPlan } from './strategies/step.js';

/**
 * The composition root: scenario -> topology -> operation graph -> execution ->
 * report. Everything a run needs is built here and nowhere else.
 */
export interface Simulation {
  scenario: Scenario;
  topology: Topology;
  plan: StepPlan;
  execution: ExecutionResult;
  memory: MemoryTracker;
  report: Report;
}

export interface SimulateOptions {
  /**
   * Keep the memory timeline for trace counters: of every location (true), or only of these GPU ranks' HBM and
   * their nodes' host memory and NVMe (a set), which is what a trace of some ranks needs and costs far less at scale.
   */
  recordMemory?: boolean | ReadonlySet<number>;
  /**
   * Called after each phase with the phase's name. The benchmark and the CLI's debug log pass a wall clock here;
   * the library itself never reads one, so results stay deterministic.
   */
  onPhase?: (phase: SimulationPhase) => void;
  /**
   * Fault in a large step's memory on a helper thread, ahead of the writes (see engine/page-warmer.ts): on by default
   * for steps of 200,000 operations or more; false never starts the thread. Results are the same either way.
   */
  pageWarmer?: boolean;
}

export const SIMULATION_PHASES = ['topology', 'step', 'execute', 'report'] as const;
export type SimulationPhase = (typeof SIMULATION_PHASES)[number];

export function simulate(scenario: Scenario, options: SimulateOptions = {}): Simulation {
  const phase = options.onPhase ?? (() => {});
  // A large step writes ~100 bytes of fresh memory per operation: a helper thread faults the pages in first (see
  // engine/page-warmer.ts), starting with the executor's per-operation arrays while the step is planned.
  const expected = roughOperations(scenario);
  const warmer = options.pageWarmer !== false && expected >= WARM_FROM_OPERATIONS ? PageWarmer.start() : undefined;
  // A little more than expected (space too small is not used at all), and no more than the graph builder would
  // reserve: an estimate gone wild must not ask for gigabytes the step does not need.
  const room = Math.min(Math.ceil(expected * 1.1), MAX_PREPARED_OPERATIONS);
  const space = warmer && { startNs: warmer.prepare(Float64Array, room), endNs: warmer.prepare(Float64Array, room), waiting: warmer.prepare(Int32Array, room) };
  try {
    const topology = buildTopology(scenario.cluster);
    phase('topology');
    const plan = buildStep(scenario, topology, { warmer });
    phase('step');
    const memory = new MemoryTracker(plan.layout.locationCount, CATEGORIES.length, plan.capacities, { record: recordedLocations(plan, options.recordMemory ?? false) });
    for (const b of plan.baseline) memory.change(b.location, b.category, b.bytes, 0);
    const exposure = plan.layout.communicationExposure();
    const execution = execute({ graph: plan.graph, links: topology, router: topology, memory, space, exposure }, new EventKernel(1 << 14));
    if (execution.blocked.length > 0) throw new SimulationError(describeBlocked(plan, execution));
    if (memory.negative.size > 0) throw new Error(`memory went below zero at locations ${[...memory.negative].slice(0, 5).join(', ')}: a bug in the step builder`);
    phase('execute');
    const report = buildReport({ scenario, topology, plan, execution, memory });
    phase('report');
    return { scenario, topology, plan, execution, memory, report };
  } finally {
    warmer?.stop();
  }
}

/** Steps expected to have this many operations get a page warmer: for smaller ones its thread costs more than it saves. */
const WARM_FROM_OPERATIONS = 200_000;
/** The most operations the executor's space is prepared for (the graph builder reserves no more either). */
const MAX_PREPARED_OPERATIONS = 2 ** 25;

/**
 * Operations of a step, roughly, before its schedule is planned: per pass of each pipeline stage and replica, each
 * tensor-parallel rank's compute and transfer and one collective (a weight-gradient pass only computes), per
 * segment where ZeRO-3 cuts passes into layers. Within 5% for the bundled large scenarios.
 */
function roughOperations(scenario: Scenario): number {
  const { tp, pp, dp, chunks, zero, layersPerStage } = scenario.parallel;
  const microBatches = scenario.training.globalBatch / (scenario.training.microBatch * dp);
  const perPassAndReplica = 2 * (2 * tp + 1) + (getSchedule(scenario.parallel.schedule).splitBackward ? tp : 0);
  const segments = zero === 3 ? Math.max(...layersPerStage) / chunks + 2 : 1;
  return pp * chunks * microBatches * dp * perPassAndReplica * segments;
}

/** Which memory locations to keep a timeline of: all, none, or those of some ranks. */
function recordedLocations(plan: StepPlan, record: boolean | ReadonlySet<number>): boolean | Uint8Array {
  if (typeof record === 'boolean') return record;
  const { layout } = plan;
  const mask = new Uint8Array(layout.locationCount);
  for (const rank of record) {
    if (rank < 0 || rank >= layout.devices) continue;
    const { node } = layout.coordinates(rank);
    mask[layout.hbm(rank)] = 1;
    mask[layout.cpu(node)] = 1;
    mask[layout.nvme(node)] = 1;
  }
  return mask;
}

function describeBlocked(plan: StepPlan, execution: ExecutionResult): string {
  const g = plan.graph;
  const name = (op: number) => {
    const label = g.label[op];
    return `#${op} ${OP_KINDS[g.labels.kind[label]]} (device ${g.device[op]}, stage ${g.labels.stage[label]}, micro-batch ${g.labels.microBatch[label]})`;
  };
  const lines = execution.blocked.slice(0, 10).map((b) => {
    const waits = [
      ...b.waitingFor.slice(0, 3).map((d) => `waits for ${name(d)}`),
      ...b.laneHeads.slice(0, 3).map((l) => `lane ${l.lane} is held by ${name(l.head)}`),
    ];
    return `  ${name(b.op)}: ${waits.join('; ') || 'never became ready'}`;
  });
  return `the step could not finish: ${execution.blocked.length} of ${g.count} operations never started (a dependency cycle or a lane waiting forever). First blocked:\n${lines.join('\n')}`;
}
