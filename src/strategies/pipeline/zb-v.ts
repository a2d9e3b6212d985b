import { greedyOrder, unitCosts, unitMemory } from './greedy.js';
import { checkChunks, needMicroBatches, type PipelineSchedule } from './schedule.js';

/**
 * ZB-V (Qi et al., 2024): two chunks per device in a V shape. Device i holds
 * virtual stage i and virtual stage 2p-1-i, so the first device runs both the
 * model's first and last layers: the forward goes down the devices and back up,
 * and the backward starts where the forward ends. The pipeline fills in half
 * the time, and every device holds about the same activation memory.
 *
 * The order comes from the cost-aware greedy scheduler: 1F1B-like budgets over
 * the 2p virtual stages, and a memory budget per device of p micro-batches
 * through both of its chunks, which is 1F1B's first-stage peak.
 */
export const zbV: PipelineSchedule = {
  name: 'zb-v',
  description: 'zero bubble V: two chunks per device in a V shape, 1F1B memory, half the fill time, nearly no bubble',
  splitBackward: true,
  preferredChunks: 2,
  check: (shape) => [...checkChunks('zb-v', shape, (c) => c === 2, 'exactly 2 model chunks per device (chunks: 2)'), ...needMicroBatches('zb-v', shape, shape.pp, 'one per device, to fill the V')],
  virtualStage: (device, chunk, stages) => (chunk === 0 ? device : 2 * stages - 1 - device),
  order({ stages, microBatches, costs, memory }) {
    const virtualStages = 2 * stages;
    const deviceOf: number[] = [];
    const chunkOf: number[] = [];
    for (let vs = 0; vs < virtualStages; vs++) {
      deviceOf.push(vs < stages ? vs : virtualStages - 1 - vs);
      chunkOf.push(vs < stages ? 0 : 1);
    }
    const passMemory = memory ?? unitMemory(virtualStages, 2);
    const memoryBudget = Array.from({ length: stages }, (_, d) => stages * (passMemory.activation[d] + passMemory.activation[virtualStages - 1 - d]));
    return greedyOrder({
      stages,
      microBatches,
      deviceOf,
      chunkOf,
      budget: Array.from({ length: virtualStages }, (_, vs) => virtualStages - vs),
      memoryBudget,
      costs: costs ?? unitCosts(virtualStages),
      memory: passMemory,
    });
  },
};
