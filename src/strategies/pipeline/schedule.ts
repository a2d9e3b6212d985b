import type { PathIssue } from '../../errors.js';

/** What a schedule needs to judge a configuration. */
export interface ScheduleShape {
  pp: number;
  chunks: number;
  microBatches: number;
  layersPerStage: number[];
  /** Consecutive micro-batches each chunk runs before the next chunk's (the interleaved schedule). */
  microBatchGroup: number;
}

/**
 * A pipeline schedule is a pure function from (stages, micro-batches, chunks,
 * and for cost-aware schedules the per-pass costs) to each device's order of
 * passes. Communication, memory and real costs are added later by the lowering
 * (src/lower), so a schedule is only the order and where each model chunk lives.
 */
export type Pass = 'F' | 'B' | 'W' | 'BW';

export interface ScheduledPass {
  /** F forward; BW whole backward; B input gradients only; W weight gradients only. */
  pass: Pass;
  microBatch: number;
  chunk: number;
}

/** Time of each pass of one micro-batch on each virtual stage, in any consistent unit. */
export interface PassCosts {
  forward: number[];
  inputGrad: number[];
  weightGrad: number[];
  /** One stage-to-stage transfer. */
  p2p: number;
}

/** Activation bytes of one micro-batch on each virtual stage, for schedules that plan within a memory budget. */
export interface PassMemory {
  /** Allocated by F. */
  activation: number[];
  /** Of that, kept from B until W. */
  weightGrad: number[];
}

export interface ScheduleParams {
  /** Devices in the pipeline (p). */
  stages: number;
  microBatches: number;
  /** Model chunks per device (v); the model has stages x chunks virtual stages. */
  chunks: number;
  /** Consecutive micro-batches each chunk runs before the next chunk's (interleaved; p when absent). */
  microBatchGroup?: number;
  /** Per virtual stage; schedules that search for a good order use them. */
  costs?: PassCosts;
  memory?: PassMemory;
}

export interface PipelineSchedule {
  name: string;
  description: string;
  /** Backward runs as separate B and W passes. */
  splitBackward: boolean;
  /** The chunks the schedule runs when a scenario leaves the choice open (dtsim compare). */
  preferredChunks: number;
  /** Problems with a configuration, as scenario paths and messages; empty when it can run. */
  check(shape: ScheduleShape): PathIssue[];
  /** The virtual stage (0 = the model's first layers) that chunk `chunk` of device `device` holds. */
  virtualStage(device: number, chunk: number, stages: number, chunks: number): number;
  /** The order of passes on each device of the pipeline, index = device. */
  order(params: ScheduleParams): ScheduledPass[][];
}

/** Chunk c of device i holds virtual stage c·p + i: Megatron's round-robin placement. */
export function roundRobin(device: number, chunk: number, stages: number): number {
  return chunk * stages + device;
}

/**
 * Checks shared by schedules: chunk count, and at least a layer per chunk on every stage. A stage whose layers the
 * chunks do not divide is split as evenly as it goes (pipeline-parallel.ts says which chunks hold fewer).
 */
export function checkChunks(name: string, shape: ScheduleShape, allowed: (chunks: number) => boolean, what: string): PathIssue[] {
  if (!allowed(shape.chunks)) return [{ path: ['parallel', 'chunks'], message: `the ${name} schedule needs ${what}, got chunks: ${shape.chunks}` }];
  const short = shape.layersPerStage.findIndex((layers) => layers < shape.chunks);
  if (short >= 0) {
    return [
      {
        path: ['parallel', 'chunks'],
        message: `chunks: ${shape.chunks} needs at least one layer per chunk, but stage ${short} has ${shape.layersPerStage[short]}; use at most ${Math.min(...shape.layersPerStage)} chunks, or set parallel.layersPerStage`,
      },
    ];
  }
  return [];
}

export function needMicroBatches(name: string, shape: ScheduleShape, least: number, why: string): PathIssue[] {
  if (shape.microBatches >= least) return [];
  return [
    {
      path: ['training', 'globalBatch'],
      message: `the ${name} schedule needs at least ${least} micro-batches per replica (${why}), but globalBatch / (microBatch x dp) gives ${shape.microBatches}; raise training.globalBatch or lower training.microBatch or parallel.dp`,
    },
  ];
}

/** Shared check of schedules that run one model chunk per device. */
export function singleChunkOnly(name: string) {
  return (shape: ScheduleShape): PathIssue[] => checkChunks(name, shape, (c) => c === 1, 'one model chunk per device (chunks: 1)');
}

/**
 * The order of a step without a backward (a zeroth-order optimizer): every device runs its forwards, chunk by chunk
 * and micro-batch by micro-batch, as a pipeline's fill and drain. No schedule has anything else to order.
 */
export function forwardOnlyOrder(stages: number, microBatches: number, chunks: number): ScheduledPass[][] {
  return Array.from({ length: stages }, () => Array.from({ length: chunks * microBatches }, (_, i) => ({ pass: 'F' as const, microBatch: i % microBatches, chunk: Math.floor(i / microBatches) })));
}
