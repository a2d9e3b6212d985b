import type { PathIssue } from '../../errors.js';
import { count, quantity } from '../../fields.js';
import type { ParallelismPass } from '../pass.js';

/**
 * Data parallelism: replicas of the model along the `dp` axis, each running its share of the global batch, whose
 * gradients are summed after the last micro-batch: a ring all-reduce per bucket of whole layers, started as soon as
 * every replica has computed the bucket, so that it overlaps the rest of the backward (PyTorch DDP, Li et al.,
 * VLDB 2020). ZeRO (zero.ts) changes the collective and how often it runs.
 */
const fields = { dp: count().optional(), gradientBucket: quantity('size').optional() };

export interface DataConfig {
  dp: number;
  /** Gradient bytes of one device per bucket. */
  gradientBucketBytes: number;
}

export const dataParallel: ParallelismPass<typeof fields, DataConfig> = {
  name: 'data',
  fields,
  resolve(input, { devices, axesSoFar, training }) {
    const others = Object.values(axesSoFar).reduce((a, b) => a * b, 1);
    // PyTorch DDP's 25 MiB buckets without ZeRO; DeepSpeed's reduce_bucket_size of 5e8 elements with it.
    const zero = typeof (input as { zero?: unknown }).zero === 'number' ? (input as { zero: number }).zero : 0;
    const bucket = input.gradientBucket ?? (zero === 0 ? 25 * 2 ** 20 : 5e8 * (training.precision === 'fp32' ? 4 : 2));
    return { dp: input.dp ?? Math.max(1, Math.floor(devices / others)), gradientBucketBytes: bucket };
  },
  axes: ({ dp }) => ({ dp }),
  check({ dp }, { training }) {
    const issues: PathIssue[] = [];
    const { globalBatch, microBatch } = training;
    if (globalBatch % (microBatch * dp) !== 0) {
      issues.push({
        path: ['training', 'globalBatch'],
        message: `globalBatch ${globalBatch} must be divisible by microBatch x dp = ${microBatch} x ${dp} = ${microBatch * dp} (each data-parallel replica runs a whole number of micro-batches)`,
      });
    }
    return issues;
  },
  // Replicas along `dp` join the axes earlier passes already reduce gradients over.
  apply: (program, { gradientBucketBytes }) => ({ ...program, gradients: { axes: [...program.gradients.axes, 'dp'], collective: 'allReduce', every: 'step', bucketBytes: gradientBucketBytes } }),
};
