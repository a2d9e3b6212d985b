import type { ScenarioSource } from './compare.js';
import { DtsimError, ScenarioError } from './errors.js';
import { buildTopology, topologyOf, type Topology } from './hardware/topology.js';
import { layoutBounds, stepBounds, type LayoutBounds } from './lower/bound.js';
import { sharedStageCosts, stageCostsKey } from './lower/shared-stage-costs.js';
import type { Scenario } from './scenario/resolve.js';
import { parseVariant } from './scenario/variants.js';
import { Recent } from './recent.js';
import type { StepProgram } from './strategies/program.js';
import { buildProgram } from './strategies/registry.js';
import { overrideString } from './sweep.js';
import { stateBytes } from './training/states.js';
import { buildWorkload, modelParameters, parameterTensors } from './workload/registry.js';

/**
 * What `dtsim plan` learns of a candidate without simulating it: whether the scenario's checks refuse it, and lower
 * bounds on its peak HBM and step time, which prune what cannot fit and order (and cut) what is simulated. Runs on
 * the worker threads (sweep-worker.ts), in batches.
 */
export type Objective = 'time' | 'memory';

/** A candidate as --set overrides, written as a sweep entry's are, so that the check and the simulation read the same. */
export const setOf = (overrides: Record<string, unknown>) => Object.entries(overrides).map(([path, value]) => overrideString(path, value));

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

/**
 * Lower bounds on a candidate's step time (seconds) and peak HBM (bytes) without simulating it: from its pass costs
 * and its schedule's order (lower/bound.ts), and for memory also from its model states over every replica
 * (statesLowerBound, or `states` when the caller has it already). A time of 0 where none is claimed (jitter), and
 * only the states' bound where the program cannot be built (the simulation then says why). `topology` is the
 * cluster's, built once for a whole search.
 */
export function planBounds(s: Scenario, topology: Topology = buildTopology(s.cluster), layouts?: LayoutCache, states = statesLowerBound(s) ?? 0): { stepTime: number; peakHbm: number } {
  try {
    const workload = buildWorkload(s.model, { microBatch: s.training.microBatch, attention: s.training.flashAttention ? 'flash' : 'standard', recycles: s.training.recycles });
    const program = buildProgram(workload, s.parallel);
    const bounds = stepBounds(s, program, topology, layouts?.bounds(s, program, topology));
    return { stepTime: bounds.stepTime ?? 0, peakHbm: Math.max(states, bounds.peakHbm) };
  } catch (error) {
    if (error instanceof DtsimError) return { stepTime: 0, peakHbm: states };
    throw error;
  }
}

/** Candidates to check and bound: each names its source (a scenario text) by its place in `sources`. */
export interface AssessRequest {
  objective: Objective;
  sources: ScenarioSource[];
  items: { index: number; source: number; overrides: Record<string, unknown> }[];
}

/** A candidate checked and bounded: refused (the field the check names), pruned (the least HBM it needs, bytes), or its bound on the objective. */
export interface Assessment {
  index: number;
  refused?: string;
  pruned?: number;
  bound?: number;
}

/**
 * The layout's part of the bounds (lower/bound.ts: its stage costs, pass order and activations) of the last few
 * layouts: candidates that differ only in ZeRO stage and offloading come one after another, and share them
 * (stageCostsKey). One cache serves one topology, as a search has.
 */
export class LayoutCache {
  private readonly entries: Recent<LayoutBounds>;
  constructor(size = 16) {
    this.entries = new Recent(size);
  }
  bounds(config: Scenario, program: StepProgram, topology: Topology): LayoutBounds {
    // Jitter decides whether a time bound is claimed at all.
    const key = config.variability.jitter > 0 ? `${stageCostsKey(config)} jitter` : stageCostsKey(config);
    return this.entries.get(key, () => layoutBounds(config, program, topology, sharedStageCosts(config, program)));
  }
}
const layoutCache = new LayoutCache();

/** Checks and bounds candidates without simulating them (on a worker thread, or in this one). */
export function assessCandidates(request: AssessRequest): Assessment[] {
  return request.items.map(({ index, source, overrides }) => {
    const from = request.sources[source];
    let candidate: Scenario;
    try {
      candidate = parseVariant(from.text, from.file, { set: setOf(overrides) });
    } catch (error) {
      // Only an invalid configuration is a refusal; anything else is a fault to report.
      if (!(error instanceof ScenarioError)) throw error;
      return { index, refused: error.issues[0]?.path || 'scenario' };
    }
    // The model states alone first: cheap, and enough for most of what cannot fit.
    const states = statesLowerBound(candidate) ?? 0;
    if (states > candidate.cluster.gpu.memoryBytes) return { index, pruned: states };
    const bounds = planBounds(candidate, topologyOf(candidate.cluster), layoutCache, states);
    // Proved not to fit without simulating: its model states and the activations its schedule holds exceed the HBM.
    if (bounds.peakHbm > candidate.cluster.gpu.memoryBytes) return { index, pruned: bounds.peakHbm };
    return { index, bound: request.objective === 'time' ? bounds.stepTime : bounds.peakHbm };
  });
}

