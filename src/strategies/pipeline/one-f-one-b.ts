import { roundRobin, singleChunkOnly, type PipelineSchedule, type ScheduledPass } from './schedule.js';

/**
 * 1F1B (PipeDream-Flush, Narayanan et al. 2021): stage i runs p-i-1 warm-up
 * forwards, then alternates one forward and one backward, then drains the
 * remaining backwards, so it never holds more than p-i micro-batches.
 */
export const oneFOneB: PipelineSchedule = {
  name: '1f1b',
  description: 'warm-up forwards, then one forward one backward; stage i holds at most p-i micro-batches',
  splitBackward: false,
  preferredChunks: 1,
  check: singleChunkOnly('1f1b'),
  virtualStage: roundRobin,
  order({ stages, microBatches }) {
    return Array.from({ length: stages }, (_, stage) => {
      const warmup = Math.min(stages - stage - 1, microBatches);
      const order: ScheduledPass[] = [];
      for (let mb = 0; mb < warmup; mb++) order.push({ pass: 'F', microBatch: mb, chunk: 0 });
      for (let k = 0; k < microBatches - warmup; k++) {
        order.push({ pass: 'F', microBatch: warmup + k, chunk: 0 });
        order.push({ pass: 'BW', microBatch: k, chunk: 0 });
      }
      for (let mb = microBatches - warmup; mb < microBatches; mb++) order.push({ pass: 'BW', microBatch: mb, chunk: 0 });
      return order;
    });
  },
};
