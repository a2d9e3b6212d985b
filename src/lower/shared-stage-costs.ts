import type { StepProgram } from '../strategies/program.js';
import type { StepConfig } from './config.js';
import { stageCosts } from './stage-costs.js';
import type { VirtualStageModel } from './stage-model.js';
import { Recent } from '../recent.js';

/**
 * What `stageCosts` depends on, as a key: everything but where ZeRO and offloading place the model states, which
 * only moves states (the passes of strategies/data/zero.ts and offload.ts change the program's states and gradients
 * alone, and stageCosts reads neither), and the gradient buckets' size, which the ZeRO stage sets and only the
 * program's gradients carry. A search over ZeRO stages and offloading computes each layout's costs once.
 */
export function stageCostsKey(config: StepConfig): string {
  const { zero, offload, prefetchLayers, gradientBucketBytes, ...parallel } = config.parallel as StepConfig['parallel'] & {
    zero?: unknown;
    offload?: unknown;
    prefetchLayers?: unknown;
    gradientBucketBytes?: unknown;
  };
  void zero, void offload, void prefetchLayers, void gradientBucketBytes;
  return JSON.stringify([config.cluster, config.model, config.training, config.costs ?? null, parallel]);
}

/** The last few layouts' stage costs, by stageCostsKey. */
const recentCosts = new Recent<VirtualStageModel[]>(16);

/**
 * `stageCosts`, computed once for the candidates of a search that share a layout (they differ in ZeRO stage or
 * offloading: stageCostsKey) and come near one another. The stages are shared, so they are read, never changed.
 */
export function sharedStageCosts(config: StepConfig, program: StepProgram): VirtualStageModel[] {
  return recentCosts.get(stageCostsKey(config), () => stageCosts(config, program));
}
