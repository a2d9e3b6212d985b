import type { Tensor } from '../workload/types.js';
import { stateBytesPerParameter, takesGradients, type Optimizer } from './optimizer.js';
import { gradientBytes, precisionSpec, type GradientAccumulation, type Precision } from './precision.js';

/**
 * Bytes per parameter of each kind of model state, from the training techniques together: the precision, the
 * optimizer, where gradients accumulate and quantisation-aware training. Every place that sizes model states (the
 * memory before the step, parameter gathers and transfers, the optimizer step, the planner's bound) asks here.
 *
 * Quantisation-aware training (`weightBits`; LLM-QAT, Liu et al. 2023; BitNet b1.58, Ma et al. 2024): the weights the
 * forward and backward read are kept quantised to `weightBits` bits, and the optimizer updates the full-precision
 * master copy it keeps anyway in mixed precision, writing the quantised weights after each step (straight-through
 * gradients stay in the training precision). 1.58-bit (ternary) weights pack five to a byte (3⁵ = 243 ≤ 256). The
 * per-channel or per-tensor scales are a few bytes per row and are not counted. A framework that stores a 16-bit
 * copy and quantises it on the fly (fake quantisation) saves nothing: this is the saving a QAT run that stores its
 * working weights at their bits gets.
 */
export const WEIGHT_BITS = [8, 4, 2, 1.58] as const;
export type WeightBits = (typeof WEIGHT_BITS)[number];

/** Bytes of one stored weight of this many bits. */
export const quantisedWeightBytes = (bits: WeightBits): number => (bits === 1.58 ? 1 / 5 : bits / 8);

export interface StateTechniques {
  precision: Precision;
  gradAccumulation: GradientAccumulation;
  optimizer: Optimizer;
  weightBits?: WeightBits;
}

export interface StateBytes {
  /** The working weights the passes read, and what a parameter gather or transfer moves. */
  parameter: number;
  /** The accumulated gradient (0 when the optimizer takes none). */
  gradient: number;
  /** Optimizer states with the fp32 master copy. */
  optimizer: number;
  /** What one optimizer step moves through the memory holding the states. */
  step: number;
}

export function stateBytes(t: StateTechniques, parameters: () => Iterable<Tensor>): StateBytes {
  const precision = precisionSpec(t.precision);
  const parameter = t.weightBits !== undefined ? quantisedWeightBytes(t.weightBits) : precision.parameterBytes;
  if (!takesGradients(t.optimizer)) {
    // Zeroth order (MeZO): no gradients, no states, no master copy; the step perturbs the weights in place three
    // times (+εz, -2εz, +εz) and updates them once, regenerating z from its seed: four reads and writes of each weight.
    return { parameter, gradient: 0, optimizer: 0, step: 8 * parameter };
  }
  const gradient = gradientBytes(t.precision, t.gradAccumulation);
  const optimizer = stateBytesPerParameter(t.optimizer, t.precision, parameters);
  // It reads the gradient, reads and writes the states, and writes the working weights.
  return { parameter, gradient, optimizer, step: gradient + 2 * optimizer + parameter };
}
