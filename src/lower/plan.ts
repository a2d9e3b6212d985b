import type { OperationGraph } from '../engine/graph.js';
import type { DeviceMesh } from '../strategies/mesh.js';
import type { ScheduledPass } from '../strategies/pipeline/schedule.js';
import type { StepProgram } from '../strategies/program.js';
import type { StepConfig } from './config.js';
import type { LabelTable } from './labels.js';
import type { StepResources } from './resources.js';
import type { ReplicaSymmetry } from './symmetry.js';
import type { VirtualStageModel } from './stage-model.js';
import type { MemoryEffect } from './step-end.js';

/** The lowered step: the operation graph the executor runs, and what reports need to read it. */
export interface StepPlan {
  config: StepConfig;
  program: StepProgram;
  mesh: DeviceMesh;
  resources: StepResources;
  graph: OperationGraph;
  /** What each operation is: rows of this table, by `graph.label`. */
  labels: LabelTable;
  /** Memory in use before the step starts (model states), by location and category. */
  baseline: MemoryEffect[];
  /** Capacity of each memory location, bytes. */
  capacities: Float64Array;
  microBatches: number;
  stages: StageModel[];
  virtualStages: VirtualStageModel[];
  /** Each device position's pass order, as the schedule gave it. */
  order: ScheduledPass[][];
  /** Ψ. */
  parameters: number;
  /** FLOPs the model needs per step, all devices together. */
  modelFlops: number;
  /** FLOPs the hardware executes per step, including recomputation. */
  hardwareFlops: number;
  /** Peak dense FLOP/s of one device at the training precision. */
  peakFlopsPerDevice: number;
  /**
   * When only some data-parallel replicas were built (lowerStep's `symmetry` option): which, and whom every other
   * device mirrors. The graph then holds the simulated devices' operations only.
   */
  symmetry?: ReplicaSymmetry;
}

/** A pipeline device position, all its chunks together. */
export interface StageModel {
  stage: number;
  layers: number;
  parametersPerDevice: number;
  /** Activation bytes of one micro-batch through all of this device's chunks. */
  activationBytes: number;
  /** Backward FLOPs per micro-batch, all chunks, recompute included. */
  backwardFlops: number;
}

