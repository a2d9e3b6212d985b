/**
 * The resources a step's operations run on, and the names reports read them by: each device's lanes (serial
 * resources, like CUDA streams), the kinds of operation, and the memory locations of each tier.
 */
import { COLLECTIVE_KINDS } from '../collectives/collectives.js';
import { COUNTED, COVERING, type LaneExposure } from '../engine/executor.js';
import { MEMORY_TIERS, type Tier } from '../strategies/program.js';

/** Serial lanes of every device, like CUDA streams: compute, then one per kind of communication. */
export const LANES = ['compute', 'tp', 'dp', 'gather', 'pp-send-next', 'pp-recv-prev', 'pp-send-prev', 'pp-recv-next', 'offload', 'host', 'cp-send', 'cp-recv'] as const;
/**
 * compute: the GPU's kernels; tp: the blocking collectives of tensor, sequence and context parallelism; dp: gradient
 * all-reduces and reduce-scatters; gather: ZeRO parameter all-gathers; pp-*: pipeline transfers to and from each
 * neighbour; offload: transfers between HBM, host memory and NVMe; host: the CPU optimizer working for this GPU;
 * cp-*: Ring Attention's key/value blocks to the next rank of the ring and from the previous one.
 */
export const LANE = { compute: 0, tp: 1, dp: 2, gather: 3, sendNext: 4, recvPrev: 5, sendPrev: 6, recvNext: 7, offload: 8, host: 9, ringSend: 10, ringReceive: 11 } as const;

/** recompute: a forward run again before its backward (activation recomputation). */
export const COMPUTE_KINDS = ['forward', 'backward', 'inputGrad', 'weightGrad', 'recompute', 'optimizer'] as const;
/**
 * Communication by kind: collectives and point-to-point transfers between GPUs, offload transfers between HBM, host
 * memory and NVMe, and Ring Attention's key/value blocks passed around the context-parallel ring.
 */
export const TRANSFER_KINDS = [...COLLECTIVE_KINDS, 'offload', 'ring'] as const;
export type TransferKind = (typeof TRANSFER_KINDS)[number];
/** Operation kinds, numbered in this order in the label table's `kind` column. */
export const OP_KINDS = [...COMPUTE_KINDS, ...TRANSFER_KINDS] as const;
export type OpKind = (typeof OP_KINDS)[number];
export const KIND = Object.fromEntries(OP_KINDS.map((k, i) => [k, i])) as Record<OpKind, number>;
export const isCommunication = (kind: number) => kind >= COMPUTE_KINDS.length;

export const TIERS = MEMORY_TIERS;
export type { Tier };
export const CATEGORIES = ['params', 'grads', 'optimizer', 'activations', 'buffers'] as const;
export type Category = (typeof CATEGORIES)[number];
export const CATEGORY = Object.fromEntries(CATEGORIES.map((c, i) => [c, i])) as Record<Category, number>;

/** Devices, their nodes, their lanes and the memory locations of a cluster. */
export class StepResources {
  readonly devices: number;
  readonly locationCount: number;

  constructor(
    readonly nodes: number,
    readonly gpusPerNode: number,
  ) {
    this.devices = nodes * gpusPerNode;
    this.locationCount = this.devices + 2 * nodes;
  }

  nodeOf(device: number): number {
    return Math.floor(device / this.gpusPerNode);
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
  /** The location of `tier` that `device` uses. */
  location(device: number, tier: Tier): number {
    return tier === 'hbm' ? device : tier === 'cpu' ? this.cpu(this.nodeOf(device)) : this.nvme(this.nodeOf(device));
  }
  tierOf(location: number): Tier {
    return location < this.devices ? 'hbm' : location < this.devices + this.nodes ? 'cpu' : 'nvme';
  }
  /** The node index of a host-memory or NVMe location. */
  nodeOfLocation(location: number): number {
    const tier = this.tierOf(location);
    return tier === 'hbm' ? this.nodeOf(location) : location - this.devices - (tier === 'nvme' ? this.nodes : 0);
  }
}
