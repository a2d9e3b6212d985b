import { roundRobin, singleChunkOnly, type PipelineSchedule, type ScheduledPass } from './schedule.js';

/** GPipe (Huang et al., 2019): every forward, then every backward; each stage holds all m micro-batches. */
export const gpipe: PipelineSchedule = {
  name: 'gpipe',
  description: 'all forwards, then all backwards; activations of all micro-batches live at once',
  splitBackward: false,
  preferredChunks: 1,
  check: singleChunkOnly('gpipe'),
  virtualStage: roundRobin,
  order({ stages, microBatches }) {
    return Array.from({ length: stages }, () => {
      const order: ScheduledPass[] = [];
      for (let mb = 0; mb < microBatches; mb++) order.push({ pass: 'F', microBatch: mb, chunk: 0 });
      for (let mb = 0; mb < microBatches; mb++) order.push({ pass: 'BW', microBatch: mb, chunk: 0 });
      return order;
    });
  },
};
