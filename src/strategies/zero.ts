/**
 * Where a device's model states live under ZeRO (Rajbhandari et al., SC20) and
 * its offloading variants, ZeRO-Offload (Ren et al., ATC 2021) and
 * ZeRO-Infinity (Rajbhandari et al., SC21).
 *
 * Stage 1 shards optimizer states over the N data-parallel ranks, stage 2
 * gradients too, stage 3 parameters too. With mixed-precision Adam that gives
 * per device 16Ψ, 4Ψ + 12Ψ/N, 2Ψ + 14Ψ/N and 16Ψ/N bytes. Offloading moves
 * the optimizer's shard (and the gradients it consumes) to host memory or NVMe,
 * and with stage 3 the parameter shard too.
 */
import type { Tier } from './layout.js';

export type OffloadTarget = 'none' | 'cpu' | 'nvme';

export interface ZeroConfig {
  stage: 0 | 1 | 2 | 3;
  /** Data-parallel ranks the states are sharded over. */
  ranks: number;
  offloadOptimizer: OffloadTarget;
  offloadParams: OffloadTarget;
}

export interface StateBytes {
  params: number;
  grads: number;
  optimizer: number;
}

export type StatePlacement = Record<Tier, StateBytes>;

const tierOf = (target: OffloadTarget): Tier => (target === 'none' ? 'hbm' : target === 'cpu' ? 'cpu' : 'nvme');

export function placeModelStates(parameters: number, bytes: { param: number; grad: number; optimizer: number }, zero: ZeroConfig): StatePlacement {
  const placement: StatePlacement = { hbm: { params: 0, grads: 0, optimizer: 0 }, cpu: { params: 0, grads: 0, optimizer: 0 }, nvme: { params: 0, grads: 0, optimizer: 0 } };
  const n = zero.ranks;
  const params = parameters * bytes.param;
  const grads = parameters * bytes.grad;
  const optimizer = parameters * bytes.optimizer;
  placement[zero.stage === 3 ? tierOf(zero.offloadParams) : 'hbm'].params += zero.stage === 3 ? params / n : params;
  // An offloaded optimizer keeps the gradient shard it consumes beside its states (ZeRO-Offload in host memory,
  // ZeRO-Infinity on NVMe too).
  const gradTier: Tier = zero.stage >= 2 ? tierOf(zero.offloadOptimizer) : 'hbm';
  placement[gradTier].grads += zero.stage >= 2 ? grads / n : grads;
  placement[zero.stage >= 1 ? tierOf(zero.offloadOptimizer) : 'hbm'].optimizer += zero.stage >= 1 ? optimizer / n : optimizer;
  return placement;
}
