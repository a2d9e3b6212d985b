import { checkChunks, roundRobin, type PipelineSchedule, type ScheduledPass } from './schedule.js';

/**
 * Interleaved 1F1B (Megatron's virtual pipeline, Narayanan et al. SC21): each
 * device holds v chunks, round-robin (device i holds virtual stages i, i+p, ...).
 * Micro-batches go through the chunks in groups of p. Device i warms up with
 * (p-i-1)·2 + (v-1)·p forwards, then alternates, then drains, as Megatron does.
 * The bubble shrinks by v, for v times the pipeline communication.
 */
export const interleaved: PipelineSchedule = {
  name: 'interleaved',
  description: 'Megatron virtual pipeline: v chunks per device, bubble divided by v, v times the p2p traffic',
  splitBackward: false,
  preferredChunks: 2,
  check(shape) {
    const chunks = checkChunks('interleaved', shape, (c) => c >= 2, 'at least 2 model chunks per device (chunks: 2 or more)');
    if (chunks.length > 0) return chunks;
    if (shape.microBatches % shape.pp !== 0) {
      return [
        {
          path: ['training', 'globalBatch'],
          message: `the interleaved schedule (as Megatron implements it) runs micro-batches in groups of pp = ${shape.pp}, but each replica has ${shape.microBatches}; make globalBatch / (microBatch x dp) a multiple of ${shape.pp}`,
        },
      ];
    }
    return [];
  },
  virtualStage: roundRobin,
  order({ stages: p, microBatches: m, chunks: v }) {
    const total = m * v;
    // The k-th forward (backward) of a device: which chunk and which micro-batch.
    const chunkOf = (k: number, forward: boolean) => {
      const c = Math.floor((k % (p * v)) / p);
      return forward ? c : v - 1 - c;
    };
    const microBatchOf = (k: number) => Math.floor(k / (p * v)) * p + (k % p);
    return Array.from({ length: p }, (_, device) => {
      const warmup = m === p ? total : Math.min(total, (p - device - 1) * 2 + (v - 1) * p);
      const order: ScheduledPass[] = [];
      const forward = (k: number) => order.push({ pass: 'F', microBatch: microBatchOf(k), chunk: chunkOf(k, true) });
      const backward = (k: number) => order.push({ pass: 'BW', microBatch: microBatchOf(k), chunk: chunkOf(k, false) });
      for (let k = 0; k < warmup; k++) forward(k);
      for (let k = 0; k < total - warmup; k++) {
        forward(warmup + k);
        backward(k);
      }
      for (let k = total - warmup; k < total; k++) backward(k);
      return order;
    });
  },
};

