import type { CollectiveProtocol } from '../collectives/protocols.js';
import type { ClusterSpec } from '../hardware/topology.js';
import type { DeviceMesh } from '../strategies/mesh.js';
import type { ParallelConfig } from '../strategies/registry.js';
import type { Optimizer } from '../training/optimizer.js';
import type { GradientAccumulation, Precision } from '../training/precision.js';
import type { Recompute } from '../training/recompute.js';
import type { WeightBits } from '../training/states.js';
import type { ModelSpec } from '../workload/registry.js';

/**
 * Everything the lowering needs to build one step, as plain data in base units (bytes, seconds, bytes/s,
 * FLOP/s). A resolved scenario is one (src/scenario/resolve.ts adds its name).
 */
export interface StepConfig {
  seed: number;
  cluster: ClusterSpec & { collectiveStepLatencySeconds: number; collectiveProtocol?: CollectiveProtocol };
  model: ModelSpec;
  training: TrainingConfig;
  parallel: ParallelConfig;
  /** Profiled times, seconds per micro-batch, one entry per stage: they replace the derived ones exactly. */
  costs?: ProfiledCosts;
  variability: VariabilityConfig;
}

export interface TrainingConfig {
  globalBatch: number;
  microBatch: number;
  precision: Precision;
  /** The type gradients accumulate and are reduced in. */
  gradAccumulation: GradientAccumulation;
  optimizer: Optimizer;
  /** Quantisation-aware training: the working weights are stored at this many bits (training/states.ts). */
  weightBits?: WeightBits;
  recompute: Recompute;
  /** With full recomputation, only the first this many layers of each virtual stage are recomputed (all when absent). */
  recomputeLayers?: number;
  flashAttention: boolean;
  /** Forward-only recycling iterations before the one that takes gradients (AlphaFold); 0 for other models. */
  recycles: number;
  /** Host time to issue one layer's forward kernels, seconds. */
  hostOverheadPerLayerSeconds: number;
  /** Software time of one pipeline transfer, on top of its link latency and bytes, seconds. */
  transferOverheadSeconds: number;
}

export interface ProfiledCosts {
  forwardSeconds?: number[];
  backwardSeconds?: number[];
  weightGradSeconds?: number[];
  p2pSeconds?: number;
  optimizerSeconds?: number;
}

/** Seeded noise: per-operation jitter (relative standard deviation) and straggler devices slowed by a factor. */
export interface VariabilityConfig {
  jitter: number;
  stragglers: number;
  stragglerSlowdown: number;
}

/** Micro-batches each data-parallel replica runs per step. */
export const microBatchesOf = (config: StepConfig, mesh: DeviceMesh): number => config.training.globalBatch / (config.training.microBatch * mesh.sizeOf('dp'));
