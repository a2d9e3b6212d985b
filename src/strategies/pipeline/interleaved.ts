import { checkChunks, roundRobin, type PipelineSchedule, type ScheduledPass } from './schedule.js';

/**
 * Interleaved 1F1B (Megatron's virtual pipeline, Narayanan et al. SC21): each
 * device holds v chunks, round-robin (device i holds virtual stages i, i+p, ...).
 * Micro-batches go through the chunks in groups of N consecutive ones, N = p as
 * Megatron runs it by default; Llama 3 (Dubey et al., 2024, §3.3.2) tunes N to
 * trade memory for bubble. Device i warms up with (p-i-1)·2 + (v-1)·N forwards,
 * then alternates, then drains, as Megatron does. The bubble shrinks by v, for v
 * times the pipeline communication.
 */
export const interleaved: PipelineSchedule = {
  name: 'interleaved',
  description: 'Megatron virtual pipeline: v chunks per device, bubble divided by v, v times the p2p traffic',
  splitBackward: false,
  preferredChunks: 2,
  check(shape) {
    const chunks = checkChunks('interleaved', shape, (c) => c >= 2, 'at least 2 model chunks per device (chunks: 2 or more)');
    if (chunks.length > 0) return chunks;
    const group = shape.microBatchGroup;
    if (group < shape.pp) {
      // With fewer, a chunk's forward waits on a micro-batch that has not come round the pipeline before its warm-up ends.
      return [{ path: ['parallel', 'microBatchGroup'], message: `the interleaved schedule needs groups of at least pp = ${shape.pp} consecutive micro-batches, got ${group}; smaller groups deadlock Megatron's warm-up` }];
    }
    if (shape.microBatches % group !== 0) {
      const what = group === shape.pp ? `pp = ${shape.pp} (as Megatron implements it; parallel.microBatchGroup sets another group)` : `parallel.microBatchGroup = ${group}`;
      return [
        {
          path: ['training', 'globalBatch'],
          message: `the interleaved schedule runs micro-batches in groups of ${what}, but each replica has ${shape.microBatches}; make globalBatch / (microBatch x dp) a multiple of ${group}`,
        },
      ];
    }
    return [];
  },
  virtualStage: roundRobin,
  order({ stages: p, microBatches: m, chunks: v, microBatchGroup }) {
    const n = microBatchGroup ?? p;
    const total = m * v;
    // The k-th forward (backward) of a device: which chunk and which micro-batch.
    const chunkOf = (k: number, forward: boolean) => {
      const c = Math.floor((k % (n * v)) / n);
      return forward ? c : v - 1 - c;
    };
    const microBatchOf = (k: number) => Math.floor(k / (n * v)) * n + (k % n);
    return Array.from({ length: p }, (_, device) => {
      const warmup = m === n ? total : Math.min(total, (p - device - 1) * 2 + (v - 1) * n);
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

