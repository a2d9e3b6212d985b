/**
 * Names shared by the strategies that build a step and the reports that read it:
 * the lanes of a device, the kinds of operation, memory tiers and categories, and
 * where each (tp, dp, pp) rank sits on the cluster.
 */
import { COLLECTIVE_KINDS } from '../collectives/collectives.js';
import { COUNTED, COVERING, type LaneExposure } from '../engine/executor.js';

/** Serial lanes of every device, like CUDA streams: compute, then one per kind of communication. */
export const LANES = ['compute', 'tp', 'dp', 'gather', 'pp-send-next', 'pp-recv-prev', 'pp-send-prev', 'pp-recv-next', 'offload', 'host'] as const;
/**
 * compute: the GPU's kernels; tp: tensor-parallel all-reduces; dp: gradient all-reduces and reduce-scatters;
 * gather: ZeRO parameter all-gathers; pp-*: pipeline transfers to and from each neighbour; offload: transfers
 * between HBM, host memory and NVMe; host: the CPU optimizer working for this GPU.
 */
export const LANE = { compute: 0, tp: 1, dp: 2, gather: 3, sendNext: 4, recvPrev: 5, sendPrev: 6, recvNext: 7, offload: 8, host: 9 } as const;

export const COMPUTE_KINDS = ['forward', 'backward', 'inputGrad', 'weightGrad', 'optimizer'] as const;
/** Communication by kind: collectives and point-to-point transfers between GPUs, and offload transfers between HBM, host memory and NVMe. */
export const TRANSFER_KINDS = [...COLLECTIVE_KINDS, 'offload'] as const;
export type TransferKind = (typeof TRANSFER_KINDS)[number];
/** Operation kinds, numbered in this order in the graph's `kind` column. */
export const OP_KINDS = [...COMPUTE_KINDS, ...TRANSFER_KINDS] as const;
export type OpKind = (typeof OP_KINDS)[number];
export const KIND = Object.fromEntries(OP_KINDS.map((k, i) => [k, i])) as Record<OpKind, number>;
export const isCommunication = (kind: number) => kind >= COMPUTE_KINDS.length;

export const TIERS = ['hbm', 'cpu', 'nvme'] as const;
export type Tier = (typeof TIERS)[number];
export const CATEGORIES = ['params', 'grads', 'optimizer', 'activations', 'buffers'] as const;
export type Category = (typeof CATEGORIES)[number];
export const CATEGORY = Object.fromEntries(CATEGORIES.map((c, i) => [c, i])) as Record<Category, number>;

export interface Coordinates {
  rank: number;
  node: number;
  tp: number;
  dp: number;
  pp: number;
}

/**
 * Megatron's placement: tensor-parallel ranks vary fastest (inside a node), then
 * data-parallel, then pipeline stages.
 */
export class Layout {
  readonly devices: number;
  readonly locationCount: number;

  constructor(
    readonly nodes: number,
    readonly gpusPerNode: number,
    readonly tp: number,
    readonly dp: number,
    readonly pp: number,
  ) {
    this.devices = nodes * gpusPerNode;
    this.locationCount = this.devices + 2 * nodes;
  }

  device(tpRank: number, dpRank: number, stage: number): number {
    return tpRank + this.tp * (dpRank + this.dp * stage);
  }

  coordinates(rank: number): Coordinates {
    return {
      rank,
      node: Math.floor(rank / this.gpusPerNode),
      tp: rank % this.tp,
      dp: Math.floor(rank / this.tp) % this.dp,
      pp: Math.floor(rank / (this.tp * this.dp)),
    };
  }

  lane(device: number, lane: number): number {
    return device * LANES.length + lane;
  }

  get laneCount(): number {
    return this.devices * LANES.length;
  }

  /** Each device's lanes as a group whose communication lanes count and whose compute lane covers: exposed communication. */
  communicationExposure(): LaneExposure {
    const group = new Int32Array(this.laneCount);
    const role = new Uint8Array(this.laneCount).fill(COUNTED);
    for (let device = 0; device < this.devices; device++) {
      group.fill(device, device * LANES.length, (device + 1) * LANES.length);
      role[this.lane(device, LANE.compute)] = COVERING;
    }
    return { groups: this.devices, group, role };
  }

  /** Memory locations: each device's HBM, then each node's host memory, then each node's NVMe. */
  hbm(device: number): number {
    return device;
  }
  cpu(node: number): number {
    return this.devices + node;
  }
  nvme(node: number): number {
    return this.devices + this.nodes + node;
  }
  tierOf(location: number): Tier {
    return location < this.devices ? 'hbm' : location < this.devices + this.nodes ? 'cpu' : 'nvme';
  }
}
