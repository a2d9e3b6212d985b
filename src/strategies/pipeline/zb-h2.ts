import { deferredWeightOrder } from './deferred-weight.js';
import { needMicroBatches, roundRobin, singleChunkOnly, type PipelineSchedule } from './schedule.js';

/**
 * ZB-H2 (Qi et al., ICLR 2024): stage i warms up with 2(p-i)-1 forwards, so
 * that its first gradient arrives just as it runs out of forwards; it then
 * alternates B and F, and runs each W only after 2i more B's, so the W's fill
 * the cool-down. With equal F, B and W times no stage idles between its first
 * and its last pass (the paper's zero bubble); with T_W < T_B the step
 * approaches m·(T_F+T_B+T_W) + (p-1)·(T_F+T_B-2·T_W). The first stage holds up
 * to 2p-1 micro-batches of activations: about twice 1F1B.
 */
export const zbH2: PipelineSchedule = {
  name: 'zb-h2',
  description: 'zero bubble H2: 2(p-i)-1 warm-up forwards, ~2x 1F1B activation memory, no bubble within each stage',
  splitBackward: true,
  preferredChunks: 1,
  check: (shape) => [...singleChunkOnly('zb-h2')(shape), ...needMicroBatches('zb-h2', shape, 2 * shape.pp - 1, 'its first stage warms up with 2·pp - 1 forwards')],
  virtualStage: roundRobin,
  order: ({ stages, microBatches }) => deferredWeightOrder(stages, microBatches, { warmup: (i) => 2 * (stages - i) - 1, backwardFirst: true, defer: (i) => 2 * i }),
};
