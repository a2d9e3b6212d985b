import type { Tensor } from '../workload/types.js';
import { precisionSpec, type Precision } from './precision.js';

/**
 * Optimizers: the state each keeps, and what its step moves through memory.
 *
 * State per parameter, in fp32 unless said, from each method's paper; in mixed precision every optimizer also keeps
 * the fp32 master parameters (4 bytes):
 * - adam, adamw (Kingma and Ba; Loshchilov and Hutter): first and second moments, 8 bytes (the ZeRO paper's K = 12
 *   with the master copy);
 * - sgd: momentum, 4 bytes;
 * - lion (Chen et al., 2023): momentum only, 4 bytes;
 * - adafactor (Shazeer and Stern, 2018), without first moment (its default, beta1 = 0): the second moment of a matrix
 *   factored into its row and column sums, r + c values for r x c; a vector keeps it whole;
 * - sm3 (Anil et al., 2019), with momentum: 4 bytes, and one accumulator per row and per column of a matrix;
 * - came (Luo et al., 2023): momentum, 4 bytes, and two factored matrices (second moment and confidence);
 * - adam-mini (Zhang et al., 2024): momentum, 4 bytes, and one second-moment value per parameter block (negligible);
 * - adam8bit (Dettmers et al., 2022): both moments in 8 bits, 2 bytes, with an fp32 scale per block of 2,048;
 * - mezo (Malladi et al., NeurIPS 2023): zeroth order, two forward passes a step with the weights perturbed by +εz
 *   and -εz, z regenerated from a seed; no backward, no gradients, no states, and no master copy (it updates the
 *   working weights in place, training in an inference's memory).
 * A factored optimizer's bytes depend on the model's matrix shapes, so state bytes are counted over the workload's
 * parameter tensors (`stateBytesPerParameter`): a weight with a `hidden` axis and others is a matrix of the hidden size
 * by the rest (as the framework stores it: QKV hidden x heads·headDim, the output projection heads·headDim x hidden);
 * a tensor without one (a bias, a norm's scale) is a vector.
 */
export const OPTIMIZERS = ['adam', 'adamw', 'sgd', 'lion', 'adafactor', 'sm3', 'came', 'adam-mini', 'adam8bit', 'mezo'] as const;
export type Optimizer = (typeof OPTIMIZERS)[number];

interface OptimizerSpec {
  /** State bytes every parameter keeps, master copy aside. */
  perParameter: number;
  /** fp32 accumulators factored per matrix (r + c values each); a vector keeps each one whole. */
  factored: number;
  /** It takes gradients: a zeroth-order optimizer (MeZO) estimates them from two forwards and runs no backward. */
  gradients?: false;
}

const SPECS: Record<Optimizer, OptimizerSpec> = {
  adam: { perParameter: 8, factored: 0 },
  adamw: { perParameter: 8, factored: 0 },
  sgd: { perParameter: 4, factored: 0 },
  lion: { perParameter: 4, factored: 0 },
  adafactor: { perParameter: 0, factored: 1 },
  sm3: { perParameter: 4, factored: 1 },
  came: { perParameter: 4, factored: 2 },
  'adam-mini': { perParameter: 4, factored: 0 },
  adam8bit: { perParameter: 2 + 8 / 2048, factored: 0 },
  mezo: { perParameter: 0, factored: 0, gradients: false },
};

/** Whether the optimizer takes gradients, so that the step runs a backward. */
export const takesGradients = (optimizer: Optimizer): boolean => SPECS[optimizer].gradients !== false;

/**
 * Optimizer-state bytes per parameter of a model with these parameter tensors (an average over them where the
 * optimizer factors matrices), master copy included. The tensors are asked for only by an optimizer that factors.
 */
export function stateBytesPerParameter(optimizer: Optimizer, precision: Precision, parameters: () => Iterable<Tensor>): number {
  const spec = SPECS[optimizer];
  const master = precisionSpec(precision).masterCopy && takesGradients(optimizer) ? 4 : 0;
  if (spec.factored === 0) return spec.perParameter + master;
  let count = 0;
  let factoredValues = 0;
  for (const t of parameters()) {
    const n = Object.values(t.shape).reduce((a, b) => a * b, 1);
    const rows = t.shape.hidden;
    count += n;
    factoredValues += rows !== undefined && Object.keys(t.shape).length >= 2 ? rows + n / rows : n;
  }
  return spec.perParameter + master + (count > 0 ? (4 * spec.factored * factoredValues) / count : 0);
}
