import type { PathIssue, ScheduleShape } from '../../scenario/resolve.js';

/**
 * A pipeline schedule is a pure function from (stages, micro-batches, chunks) to
 * each stage's order of passes. Communication, memory and costs are added later
 * by the step builder, so a schedule is only the order.
 */
export type Pass = 'F' | 'B' | 'W' | 'BW';

export interface ScheduledPass {
  /** F forward; BW whole backward; B input gradients only; W weight gradients only. */
  pass: Pass;
  microBatch: number;
  chunk: number;
}

export interface ScheduleParams {
  stages: number;
  microBatches: number;
  chunks: number;
}

export interface PipelineSchedule {
  name: string;
  description: string;
  /** Problems with a configuration, as scenario paths and messages; empty when it can run. */
  check(shape: ScheduleShape): PathIssue[];
  /** The order of passes on each stage (device of the pipeline), index = stage. */
  order(params: ScheduleParams): ScheduledPass[][];
}

/** Shared check of schedules that run one model chunk per device. */
export function singleChunkOnly(name: string) {
  return (shape: ScheduleShape): PathIssue[] =>
    shape.chunks === 1 ? [] : [{ path: ['parallel', 'chunks'], message: `the ${name} schedule runs one model chunk per device, got chunks: ${shape.chunks}; use chunks: 1` }];
}
