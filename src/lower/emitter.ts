import { planCollective, type CollectiveKind, type CollectivePlan } from '../collectives/collectives.js';
import type { AllocationHook } from '../engine/allocation.js';
import { OperationGraphBuilder } from '../engine/graph.js';
import { toNanoseconds } from '../engine/kernel.js';
import type { Topology } from '../hardware/topology.js';
import type { Tier } from '../strategies/program.js';
import { LabelTableBuilder, type OperationLabels } from './labels.js';
import { LANE, type StepResources } from './resources.js';

/**
 * Adds the step's operations to the graph: compute on a lane, point-to-point transfers, collectives over a group,
 * and transfers between a GPU and its node's host memory or NVMe. Each computes its latency from the topology once
 * where it can, since a step repeats the same few transfers and groups in every pass.
 */
export class StepEmitter {
  readonly graph: OperationGraphBuilder;
  readonly labels = new LabelTableBuilder();
  private readonly stepLatency: number;
  // A send lane always reaches the same peer, so its latency is computed once.
  private readonly sendPeer: Int32Array;
  private readonly sendLatencyNs: Float64Array;
  // A group's path latency is computed once per group: per stride, for rings and for all-to-alls, by first rank.
  private readonly groupLatency = new Map<number, Float64Array>();

  constructor(
    readonly resources: StepResources,
    readonly topology: Topology,
    expectedOperations: number,
    stepLatencySeconds: number,
    allocation?: AllocationHook,
  ) {
    this.graph = new OperationGraphBuilder(resources.laneCount, expectedOperations, { allocation });
    this.stepLatency = stepLatencySeconds;
    this.sendPeer = new Int32Array(resources.laneCount).fill(-1);
    this.sendLatencyNs = new Float64Array(resources.laneCount);
  }

  label(labels: OperationLabels): number {
    return this.labels.add(labels);
  }

  /** An operation of `ns` holding one of `device`'s lanes. */
  compute(label: number, device: number, ns: number, laneKind: number = LANE.compute): number {
    const op = this.graph.operation(label, device, ns);
    this.graph.lane(this.resources.lane(device, laneKind));
    return op;
  }

  /** A point-to-point transfer (the most common operation), without building a collective plan. */
  transfer(from: number, to: number, bytes: number, sendLane: number, receiveLane: number, label: number, fixedSeconds?: number): number {
    const g = this.graph;
    const timed = fixedSeconds === undefined;
    const lane = this.resources.lane(from, sendLane);
    if (timed && this.sendPeer[lane] !== to) {
      this.sendPeer[lane] = to;
      this.sendLatencyNs[lane] = toNanoseconds(this.stepLatency + this.topology.pathLatencySeconds(from, to));
    }
    const op = g.operation(label, from, timed ? 0 : toNanoseconds(fixedSeconds), timed ? this.sendLatencyNs[lane] : 0);
    g.lane(lane);
    g.lane(this.resources.lane(to, receiveLane));
    g.flow(op, from, to, bytes, timed);
    return op;
  }

  /** A collective over `group` (ring order) holding lane `laneKind` of every member. */
  collective(kind: CollectiveKind, group: number[], bytes: number, repeat: number, laneKind: number, label: number): number {
    const plan = planCollective(kind, group, bytes, repeat);
    let longest = 0;
    for (const f of plan.flows) longest = Math.max(longest, this.topology.pathLatencySeconds(f.source, f.target));
    const op = this.graph.operation(label, group[0], 0, toNanoseconds(plan.steps * (this.stepLatency + longest)));
    for (const device of group) this.graph.lane(this.resources.lane(device, laneKind));
    for (const f of plan.flows) this.graph.flow(op, f.source, f.target, f.bytes);
    return op;
  }

  /**
   * A collective over the `size` ranks `firstDevice`, `firstDevice + stride`, ... (a tensor-parallel group is
   * consecutive ranks), on their `laneKind` lanes. `plan` is the collective planned over the offsets 0 to size - 1:
   * planned once, shifted to each group.
   */
  groupCollective(plan: CollectivePlan, kind: CollectiveKind, firstDevice: number, size: number, stride: number, laneKind: number, label: number): number {
    // Rings of one group cross the same pairs whatever their kind; an all-to-all crosses every pair.
    const tableKey = kind === 'allToAll' ? -stride : stride;
    let latencies = this.groupLatency.get(tableKey);
    if (latencies === undefined) this.groupLatency.set(tableKey, (latencies = new Float64Array(this.resources.devices).fill(-1)));
    let pathLatency = latencies[firstDevice];
    if (pathLatency < 0) {
      pathLatency = 0;
      for (const f of plan.flows) pathLatency = Math.max(pathLatency, this.topology.pathLatencySeconds(firstDevice + f.source * stride, firstDevice + f.target * stride));
      latencies[firstDevice] = pathLatency;
    }
    const g = this.graph;
    const op = g.operation(label, firstDevice, 0, toNanoseconds(plan.steps * (this.stepLatency + pathLatency)));
    for (let r = 0; r < size; r++) g.lane(this.resources.lane(firstDevice + r * stride, laneKind));
    for (const f of plan.flows) g.flow(op, firstDevice + f.source * stride, firstDevice + f.target * stride, f.bytes);
    return op;
  }

  /** The topology vertex of `device`'s node's host memory or NVMe. */
  hostVertex(device: number, tier: Exclude<Tier, 'hbm'>): number {
    const node = this.resources.nodeOf(device);
    return tier === 'cpu' ? this.topology.cpuVertex(node) : this.topology.nvmeVertex(node);
  }

  /** A transfer between vertices `from` and `to` for `device` (its GPU, host memory, NVMe), on the device's offload lane. */
  offloadTransfer(device: number, from: number, to: number, bytes: number, label: number): number {
    const op = this.graph.operation(label, device, 0, toNanoseconds(this.topology.pathLatencySeconds(from, to)));
    this.graph.lane(this.resources.lane(device, LANE.offload));
    this.graph.flow(op, from, to, bytes);
    return op;
  }
}
