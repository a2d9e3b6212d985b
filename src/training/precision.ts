import type { GpuSpec } from '../hardware/presets.js';
import type { ElementType } from '../workload/types.js';

/**
 * Training precisions: bytes per element of each kind of tensor, and which peak the GEMMs run at. Mixed
 * precision (fp16, bf16) keeps 16-bit parameters, gradients and activations and an fp32 master copy of the
 * parameters with the optimizer states (Micikevicius et al., ICLR 2018; the ZeRO paper's 2Ψ + 2Ψ + 12Ψ). fp8 is
 * bf16 mixed precision whose matrix multiplications run at the fp8 peak, as NVIDIA's Transformer Engine runs them
 * (Micikevicius et al., 2022): weights, gradients and activations stay bf16 in memory (the fp8 copies it casts for
 * each GEMM are transient, and caching GEMM inputs in fp8 is not modelled); the other kernels run as in bf16.
 */
export const PRECISIONS = ['fp32', 'fp16', 'bf16', 'fp8'] as const;
export type Precision = (typeof PRECISIONS)[number];

export interface PrecisionSpec {
  /** Bytes of a parameter, a gradient and an activation element. */
  parameterBytes: number;
  gradientBytes: number;
  activationBytes: number;
  /** The optimizer keeps an fp32 copy of the parameters. */
  masterCopy: boolean;
  /** Which peak of the GPU the GEMMs run at. */
  peak: 'half' | 'fp32';
}

const TABLE: Record<Precision, PrecisionSpec> = {
  fp32: { parameterBytes: 4, gradientBytes: 4, activationBytes: 4, masterCopy: false, peak: 'fp32' },
  fp16: { parameterBytes: 2, gradientBytes: 2, activationBytes: 2, masterCopy: true, peak: 'half' },
  bf16: { parameterBytes: 2, gradientBytes: 2, activationBytes: 2, masterCopy: true, peak: 'half' },
  fp8: { parameterBytes: 2, gradientBytes: 2, activationBytes: 2, masterCopy: true, peak: 'half' },
};

export const precisionSpec = (precision: Precision): PrecisionSpec => TABLE[precision];

/**
 * Where gradients accumulate over micro-batches and are reduced: in the training precision's gradient type, or in
 * fp32 buffers (Megatron's main_grad, its default with bf16: --accumulate-allreduce-grads-in-fp32).
 */
export const GRADIENT_ACCUMULATIONS = ['precision', 'fp32'] as const;
export type GradientAccumulation = (typeof GRADIENT_ACCUMULATIONS)[number];

/** Bytes of an accumulated gradient element. */
export const gradientBytes = (precision: Precision, accumulation: GradientAccumulation): number => (accumulation === 'fp32' ? 4 : TABLE[precision].gradientBytes);

/** Bytes of one element of a tensor of `element` type. Dropout masks are one byte in every precision. */
export function elementBytes(element: ElementType, precision: Precision): number {
  const spec = TABLE[precision];
  switch (element) {
    case 'activation':
      return spec.activationBytes;
    case 'parameter':
      return spec.parameterBytes;
    case 'fp32':
      return 4;
    case 'mask':
      return 1;
  }
}

/** The dense peak of one GPU at this precision, FLOP/s. */
export const peakFlopsPerSecond = (gpu: GpuSpec, precision: Precision): number => (TABLE[precision].peak === 'fp32' ? gpu.fp32FlopsPerSecond : gpu.flopsPerSecond);

/**
 * How many times faster than the precision's peak its matrix multiplications run: the fp8 peak over the 16-bit one
 * for fp8 on a GPU that has it, else 1. MFU stays measured against the 16-bit peak.
 */
export const gemmSpeedup = (gpu: GpuSpec, precision: Precision): number => (precision === 'fp8' && gpu.fp8FlopsPerSecond !== undefined ? gpu.fp8FlopsPerSecond / gpu.flopsPerSecond : 1);
