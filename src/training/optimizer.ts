import { gradientBytes, precisionSpec, type GradientAccumulation, type Precision } from './precision.js';

/**
 * Optimizers: the state each keeps per parameter, and what its step moves through memory.
 * Adam and AdamW keep momentum and variance (Kingma and Ba), SGD momentum only; in mixed precision each also keeps
 * the fp32 master parameters: 12 and 8 bytes per parameter, or 8 and 4 in fp32 (the ZeRO paper's K).
 */
export const OPTIMIZERS = ['adam', 'adamw', 'sgd'] as const;
export type Optimizer = (typeof OPTIMIZERS)[number];

const MOMENTS: Record<Optimizer, number> = { adam: 2, adamw: 2, sgd: 1 };

/** Optimizer-state bytes per parameter. */
export function optimizerStateBytes(optimizer: Optimizer, precision: Precision): number {
  return 4 * MOMENTS[optimizer] + (precisionSpec(precision).masterCopy ? 4 : 0);
}

/**
 * Bytes one optimizer step moves through the memory holding it, per parameter: it reads the gradient, reads and
 * writes the states, and writes the parameter. The step is memory-bound on a GPU.
 */
export function optimizerStepBytes(optimizer: Optimizer, precision: Precision, accumulation: GradientAccumulation = 'precision'): number {
  return gradientBytes(precision, accumulation) + 2 * optimizerStateBytes(optimizer, precision) + precisionSpec(precision).parameterBytes;
}
