import { planCollective, type CollectivePlan } from '../collectives/collectives.js';
import { AT_START } from '../engine/graph.js';
import type { DeviceMesh } from '../strategies/mesh.js';
import type { StepEmitter } from './emitter.js';
import { CATEGORY } from './resources.js';

/**
 * Megatron's scatter/gather of pipeline transfers (Narayanan et al., SC21, section 4.1): a tensor that every rank of
 * a tensor-parallel group holds (no sequence parallelism) goes to the next stage as 1/t from each rank, and the
 * receiving group all-gathers it over NVLink, on the receive lanes that took the pieces (so in the order they
 * arrived), before the pass that reads it. Each receive buffer grows by its piece at the transfer and by the rest
 * at the gather.
 */
export class ScatterGather {
  // Each stage's tensor-parallel groups, and each sending virtual stage's gather planned over ranks 0 to t - 1.
  private readonly groups: number[][][] = [];
  private readonly plans: CollectivePlan[][] = [[], []];

  constructor(
    private readonly enabled: boolean,
    private readonly mesh: DeviceMesh,
    private readonly emit: StepEmitter,
  ) {}

  /** The ranks a transfer of a tensor held by `replicas` ranks is split over: 1 when it is sent whole. */
  split(replicas: number, crossesStages: boolean): number {
    return this.enabled && crossesStages && replicas > 1 ? replicas : 1;
  }

  /**
   * Gathers the pieces of a `bytes` tensor (sent from virtual stage `vs` in `direction`) in every tensor-parallel
   * group of `stage`; `gathered(peer, op)` hands each receiver the gather it now waits for, and must make the gather
   * wait for that receiver's piece.
   */
  gather(stage: number, vs: number, direction: number, bytes: number, split: number, receiveLane: number, label: number, gathered: (peer: number, op: number) => void): void {
    const plan = (this.plans[direction][vs] ??= planCollective('allGather', Array.from({ length: split }, (_, i) => i), bytes));
    for (const members of (this.groups[stage] ??= this.mesh.groupsInStage(stage, ['tp']).groups)) {
      const op = this.emit.groupCollective(plan, 'allGather', members[0], members.length, members[1] - members[0], receiveLane, label);
      for (const peer of members) {
        this.emit.graph.memory(op, this.emit.resources.hbm(peer), CATEGORY.buffers, bytes - bytes / split, AT_START);
        gathered(peer, op);
      }
    }
  }
}
