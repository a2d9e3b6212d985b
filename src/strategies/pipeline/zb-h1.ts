import { deferredWeightOrder } from './deferred-weight.js';
import { needMicroBatches, roundRobin, singleChunkOnly, type PipelineSchedule } from './schedule.js';

/**
 * ZB-H1 (Qi et al., ICLR 2024): 1F1B with the backward split into B (input
 * gradients, on the critical path) and W (weight gradients, deferrable). Stage i
 * runs 1F1B's order of F and B, and runs each W only after i more B's; the
 * deferred W's fill the cool-down bubbles. With equal F, B and W times and free
 * communication the step is (3m + p - 1) passes long: the bubble is
 * (p-1)·(T_F + T_B - T_W), a third of 1F1B's. Stage i holds at most p - i
 * micro-batches before B plus i awaiting W: never more than 1F1B's first stage.
 */
export const zbH1: PipelineSchedule = {
  name: 'zb-h1',
  description: 'zero bubble H1: B/W split, W deferred into the cool-down; 1F1B memory, a third of its bubble',
  splitBackward: true,
  preferredChunks: 1,
  check: (shape) => [...singleChunkOnly('zb-h1')(shape), ...needMicroBatches('zb-h1', shape, shape.pp, 'one per stage, to keep every stage busy between warm-up and cool-down')],
  virtualStage: roundRobin,
  order: ({ stages, microBatches }) => deferredWeightOrder(stages, microBatches, { warmup: (i) => stages - i - 1, backwardFirst: false, defer: (i) => i }),
};
