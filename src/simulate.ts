import { execute, type ExecutionResult } from './engine/executor.js';
import { ClockRangeError, EventKernel } from './engine/kernel.js';
import { MemoryTracker } from './engine/memory.js';
import { PageWarmer, pageWarmedAllocation } from './engine/page-warmer.js';
import { ResourceLimitError, SimulationError } from './errors.js';
import { topologyOf, type Topology } from './hardware/topology.js';
import { BYTES_PER_OPERATION, DEFAULT_MAX_OPERATIONS, estimateOperations } from './lower/limits.js';
import { lowerStep, type StepPlan } from './lower/lower.js';
import { leastReplicaShare, MirroredRouter, mirrorResults, replicaSymmetry } from './lower/symmetry.js';
import { formatBytes, formatCount } from './report/format.js';
import { CATEGORIES, OP_KINDS, StepResources } from './lower/resources.js';
import { buildReport, type Report } from './report/report.js';
import { scenarioFromObject, type ScenarioInput } from './scenario/load.js';
import type { Scenario } from './scenario/resolve.js';
import { buildProgram, meshOf } from './strategies/registry.js';
import { buildWorkload } from './workload/registry.js';

/**
 * The composition root: scenario -> workload -> step program (the parallelism passes) -> operation graph (the
 * lowering) -> execution -> report. Everything a run needs is built here and nowhere else.
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
   * Fault in the step's memory on a helper thread, ahead of the writes (see engine/page-warmer.ts): off unless asked,
   * so that a library call starts no thread. Worth it for steps of a few hundred thousand operations or more on
   * machines where page faults are dear. Results are the same either way.
   */
  pageWarmer?: boolean;
  /**
   * Refuse a step estimated to need more operations than this (lower/limits.ts), before building anything:
   * DEFAULT_MAX_OPERATIONS (30 million, about 8 GiB) unless given.
   */
  maxOperations?: number;
  /**
   * Simulate only the data-parallel replicas that the step's symmetry needs, and mirror the rest (lower/symmetry.ts),
   * where the step has an exact symmetry: the report is the full simulation's, but for `simulation`, which counts
   * the operations and events actually run. The returned plan and execution then hold the simulated replicas'
   * operations only, so this is for reports, not traces: it is ignored when a memory timeline is recorded.
   */
  symmetry?: boolean;
}

export const SIMULATION_PHASES = ['topology', 'step', 'execute', 'report'] as const;
export type SimulationPhase = (typeof SIMULATION_PHASES)[number];

/**
 * Simulates one training step of a scenario: a resolved one (from loadScenarioFile, parseScenario or
 * scenarioFromObject), or a plain object with a scenario file's fields, checked as a file is (a ScenarioError
 * says what is wrong).
 */
export function simulate(given: Scenario | ScenarioInput, options: SimulateOptions = {}): Simulation {
  const scenario = isResolved(given) ? given : scenarioFromObject(given);
  const recordMemory = options.recordMemory ?? false;
  // The symmetry leaves out the devices a trace of memory needs.
  const symmetric = options.symmetry === true && recordMemory === false;
  const maxOperations = options.maxOperations ?? DEFAULT_MAX_OPERATIONS;
  // Before anything is built: at the least share of replicas a symmetry could leave, when one is asked for.
  const least = leastReplicaShare(scenario, meshOf(scenario.parallel));
  if (symmetric) checkLimits(scenario, maxOperations, least, least < 1 ? ` even simulating ${formatShare(least)} of its data-parallel replicas, the fewest a replica symmetry could leave` : ', as no replica symmetry applies to it');
  // The hint only where the symmetry was not asked for (a memory timeline turns it off, and says nothing of it).
  else checkLimits(scenario, maxOperations, 1, '', options.symmetry !== true && least < 1 && estimateOperations(scenario, least) <= maxOperations ? SYMMETRY_HINT : '');
  const phase = options.onPhase ?? (() => {});
  const warmer = options.pageWarmer === true ? PageWarmer.start() : undefined;
  const allocation = warmer && pageWarmedAllocation(warmer);
  try {
    const topology = topologyOf(scenario.cluster);
    phase('topology');
    const { training } = scenario;
    const workload = buildWorkload(scenario.model, { microBatch: training.microBatch, attention: training.flashAttention ? 'flash' : 'standard', recycles: training.recycles });
    const program = buildProgram(workload, scenario.parallel);
    const symmetry = symmetric ? replicaSymmetry(scenario, program, topology, new StepResources(scenario.cluster.nodes, scenario.cluster.gpusPerNode)) : undefined;
    // And again with the share the cluster allows.
    if (symmetric) {
      const share = symmetry ? symmetry.replicas / symmetry.of : 1;
      checkLimits(scenario, maxOperations, share, symmetry ? ` even simulating ${formatShare(share)} of its data-parallel replicas, as its replica symmetry allows` : ', as its cluster gives it no exact replica symmetry');
    }
    const plan = lowerStep(scenario, program, topology, { allocation, symmetry });
    phase('step');
    const { resources } = plan;
    const memory = new MemoryTracker(resources.locationCount, CATEGORIES.length, plan.capacities, { record: recordedLocations(plan, recordMemory) });
    for (const b of plan.baseline) memory.change(b.location, b.category, b.bytes, 0);
    const exposure = resources.communicationExposure();
    const router = symmetry ? new MirroredRouter(topology, symmetry.linkStandIn) : topology;
    const execution = executeOrExplain({ graph: plan.graph, links: topology, router, memory, allocation, exposure });
    if (execution.blocked.length > 0) throw new SimulationError(describeBlocked(plan, execution));
    if (memory.negative.size > 0) throw new Error(`memory went below zero at locations ${[...memory.negative].slice(0, 5).join(', ')}: a bug in the lowering`);
    if (symmetry) mirrorResults(symmetry, resources, execution, memory);
    phase('execute');
    const report = buildReport({ scenario, topology, plan, execution, memory });
    phase('report');
    return { scenario, topology, plan, execution, memory, report };
  } finally {
    warmer?.stop();
  }
}

/** Executes the step; a step longer than the kernel's exact clock (104 days) is refused with what to change. */
function executeOrExplain(input: Parameters<typeof execute>[0]): ExecutionResult {
  try {
    return execute(input, new EventKernel(1 << 14));
  } catch (error) {
    if (!(error instanceof ClockRangeError)) throw error;
    throw new SimulationError(
      `the step runs past 104 days of simulated time (2^53 ns), beyond the engine's exact nanosecond clock: ` +
        'the hardware is too slow for the work (check the FLOP/s, bandwidths and efficiencies the scenario sets)',
    );
  }
}

/** A resolved scenario carries what only resolution adds, such as the collective step latency in seconds. */
function isResolved(scenario: Scenario | ScenarioInput): scenario is Scenario {
  return typeof (scenario as Scenario).cluster?.collectiveStepLatencySeconds === 'number';
}

/**
 * Refuses a step estimated to need more than `maxOperations` operations with `simulatedShare` of its data-parallel
 * replicas simulated; `note` says what the share was, `hint` what else might help.
 */
function checkLimits(scenario: Scenario, maxOperations: number, simulatedShare: number, note: string, hint = ''): void {
  const estimate = estimateOperations(scenario, simulatedShare);
  if (estimate <= maxOperations) return;
  throw new ResourceLimitError(
    `${scenario.name}: this step would need about ${formatCount(estimate)} operations${note} (about ${formatBytes(estimate * BYTES_PER_OPERATION)} of memory to simulate), over the limit of ${formatCount(maxOperations)}${hint}; ` +
      'use fewer micro-batches, GPUs or layers, or raise the limit (--max-operations, or simulate(..., { maxOperations }))',
  );
}

/** Said of a step over the limit that a replica symmetry might bring under it. */
const SYMMETRY_HINT = '; with --symmetry (simulate(..., { symmetry: true })) it may need far fewer, simulating as few data-parallel replicas as its replica symmetry leaves';

/** A share of replicas as a fraction: 1/8. */
const formatShare = (share: number) => `1/${Math.round(1 / share)}`;

/** The GPU ranks of one pipeline: every stage and tensor-parallel rank of data-parallel replica `replica`. */
export function pipelineRanks(scenario: Scenario, replica: number): number[] {
  const mesh = meshOf(scenario.parallel);
  return Array.from({ length: mesh.size }, (_, rank) => rank).filter((rank) => mesh.coordinate(rank, 'dp') === replica);
}

/** Which memory locations to keep a timeline of: all, none, or those of some ranks. */
function recordedLocations(plan: StepPlan, record: boolean | ReadonlySet<number>): boolean | Uint8Array {
  if (typeof record === 'boolean') return record;
  const { resources } = plan;
  const mask = new Uint8Array(resources.locationCount);
  for (const rank of record) {
    if (rank < 0 || rank >= resources.devices) continue;
    const node = resources.nodeOf(rank);
    mask[resources.hbm(rank)] = 1;
    mask[resources.cpu(node)] = 1;
    mask[resources.nvme(node)] = 1;
  }
  return mask;
}

function describeBlocked(plan: StepPlan, execution: ExecutionResult): string {
  const g = plan.graph;
  const name = (op: number) => {
    const label = g.label[op];
    return `#${op} ${OP_KINDS[plan.labels.kind[label]]} (device ${g.device[op]}, stage ${plan.labels.stage[label]}, micro-batch ${plan.labels.microBatch[label]})`;
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
