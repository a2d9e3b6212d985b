/**
 * Time of a compute pass on one GPU. A layer's kernels run one after another:
 * matrix multiplications at the compute roof, element-wise kernels (layer norm,
 * softmax, dropout, activation functions) at the memory roof, so their times
 * add. The host's time to issue the kernels bounds the pass from below.
 *
 * - GEMMs: `FLOPs / (peak x efficiency)`, where the efficiency grows with the
 *   work per layer, `computeEfficiency x w / (w + efficiencyHalfSize)`: small
 *   GEMMs cannot fill the GPU, while large ones approach `computeEfficiency`.
 * - Element-wise kernels: `bytes / (HBM bandwidth x memoryEfficiency)`.
 * - Host: the CPU issues kernels ahead of the GPU, so its per-layer overhead
 *   (framework code, kernel launches) is hidden unless the GPU work per layer
 *   is shorter. A backward issues about twice a forward's kernels.
 * - The two meet smoothly: `(gpu^k + host^k)^(1/k)` with k = HOST_GPU_SMOOTHNESS.
 *   Far apart, that is the larger of the two. When they are close, the pass
 *   takes up to 2^(1/k) more (12% at k = 6), because the CPU and the GPU take
 *   turns waiting: kernels short enough to drain the launch queue leave the GPU
 *   idle, and the CPU blocks on the GPU at synchronisations.
 *
 * The parameters were calibrated on measured Megatron-DeepSpeed step times
 * (docs/validation.md).
 */
export interface ComputeModel {
  peakFlopsPerSecond: number;
  computeEfficiency: number;
  /** FLOPs per layer at which the achieved efficiency is half of computeEfficiency. */
  efficiencyHalfSize: number;
  memoryBytesPerSecond: number;
  /** Host time to issue one layer's forward kernels, seconds. */
  hostOverheadPerLayerSeconds: number;
}

export interface PassWork {
  /** FLOPs of the pass's matrix multiplications. */
  flops: number;
  /** Bytes the pass's element-wise kernels read and write. */
  bytes: number;
  /** Transformer layers in the pass (at least 1 for the work-per-layer measure). */
  layers: number;
  /** Forward-equivalents of kernels issued per layer: 1 forward, 2 backward, one more when the forward is recomputed. */
  issues: number;
}

export function achievedEfficiency(model: ComputeModel, flopsPerLayer: number): number {
  if (model.efficiencyHalfSize <= 0) return model.computeEfficiency;
  return (model.computeEfficiency * flopsPerLayer) / (flopsPerLayer + model.efficiencyHalfSize);
}

export function passSeconds(model: ComputeModel, work: PassWork): number {
  // Work per layer per forward-equivalent: the size of the pass's GEMMs, whatever the pass.
  const perLayer = work.flops / (Math.max(1, work.layers) * Math.max(1, work.issues));
  const efficiency = achievedEfficiency(model, perLayer);
  const gpu = (work.flops > 0 ? work.flops / (model.peakFlopsPerSecond * efficiency) : 0) + work.bytes / model.memoryBytesPerSecond;
  const host = work.layers * work.issues * model.hostOverheadPerLayerSeconds;
  if (host === 0 || gpu === 0) return Math.max(gpu, host);
  // Scaled by the larger term, so that neither power overflows nor underflows.
  const larger = Math.max(gpu, host);
  return larger * ((gpu / larger) ** HOST_GPU_SMOOTHNESS + (host / larger) ** HOST_GPU_SMOOTHNESS) ** (1 / HOST_GPU_SMOOTHNESS);
}

/**
 * How sharply a pass's time turns from the host's to the GPU's: the k of the smooth maximum. Fitted on the even
 * vTrain rows with the other parameters at their defaults: k = 3, 4, 6, 10 and a sharp maximum give 11.0%, 8.6%,
 * 7.9%, 8.1% and 8.3% mean absolute error; the odd rows give 7.95% at 6 (docs/validation.md).
 */
export const HOST_GPU_SMOOTHNESS = 6;
