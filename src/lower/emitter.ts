import { planCollective, type CollectiveKind, type CollectivePlan } from '../collectives/collectives.js';
import { chooseProtocol, type CollectiveProtocol } from '../collectives/protocols.js';
import type { AllocationHook } from '../engine/allocation.js';
import { OperationGraphBuilder } from '../engine/graph.js';
import { toNanoseconds } from '../engine/kernel.js';
import type { Topology } from '../hardware/topology.js';
import type { Tier } from '../strategies/program.js';
import { LabelTableBuilder, type OperationLabels } from './labels.js';
import { LANE, type StepResources } from './resources.js';

/** A collective group as its latency and striping see it (StepEmitter.groupShape). */
interface GroupShape {
  /** The slowest path latency of a hop inside a node, and across nodes, seconds. */
  intraSeconds: number;
  interSeconds: number;
  /** Nodes the group spans, and the fewest members on one of them. */
  nodes: number;
  membersPerNode: number;
  /** The hops inside a node are NVLink; the seconds per byte of the slowest flow at full rate (striped where it is). */
  nvlink: boolean;
  secondsPerByte: number;
  /** Local ranks of the members on each node, when the group spans nodes and its flows may be striped. */
  rails?: Map<number, number[]>;
}

/**
 * Which pairs of members a collective's flows join, as a small number: a group's shape depends on nothing else.
 * The rings of all-reduce, reduce-scatter and all-gather cross the same pairs; a broadcast's ring is open; an
 * all-to-all crosses every pair.
 */
const PAIR_CLASSES = 4;
const pairsOf = (kind: CollectiveKind): number => (kind === 'broadcast' ? 0 : kind === 'allToAll' ? 1 : kind === 'p2p' ? 2 : 3);

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
  // A group's shape is computed once per group: per stride, for rings and for all-to-alls, by first rank.
  private readonly groupShapes = new Map<number, GroupShape[]>();
  // And for collectives over a list of members, by the list and the pairs its flows join.
  private readonly shapesOfGroup = new WeakMap<readonly number[], GroupShape[]>();
  /** Whether a rail can be named in a flow's target (viaRail's encoding fits the graph's 32-bit vertex ids). */
  private readonly canStripe: boolean;

  constructor(
    readonly resources: StepResources,
    readonly topology: Topology,
    expectedOperations: number,
    stepLatencySeconds: number,
    allocation?: AllocationHook,
    /** How collectives are timed: the fitted latency per step, NCCL's protocol choice, or one protocol. */
    private readonly protocol: CollectiveProtocol = 'fitted',
  ) {
    this.graph = new OperationGraphBuilder(resources.laneCount, expectedOperations, { allocation });
    this.stepLatency = stepLatencySeconds;
    this.sendPeer = new Int32Array(resources.laneCount).fill(-1);
    this.sendLatencyNs = new Float64Array(resources.laneCount);
    this.canStripe = (topology.spec.gpusPerNode + 1) * topology.vertexCount < 2 ** 31;
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

  /**
   * A point-to-point transfer (the most common operation), without building a collective plan. A lane always
   * carries the same kind of transfer, so its latency (with `overheadSeconds` of software time) is cached by lane.
   */
  transfer(from: number, to: number, bytes: number, sendLane: number, receiveLane: number, label: number, fixedSeconds?: number, overheadSeconds = 0): number {
    const g = this.graph;
    const timed = fixedSeconds === undefined;
    const lane = this.resources.lane(from, sendLane);
    if (timed && this.sendPeer[lane] !== to) {
      this.sendPeer[lane] = to;
      this.sendLatencyNs[lane] = toNanoseconds(this.stepLatency + overheadSeconds + this.topology.pathLatencySeconds(from, to));
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
    // The lowering passes the same group arrays again for every pass, and a shape depends only on which pairs the
    // flows join (pairsOf).
    const shape = plan.flows.length === 0 ? this.groupShape(plan, (i) => i, (r) => group[r], group.length) : this.cachedShape(kind, plan, group);
    const op = this.graph.operation(label, group[0], 0, this.latencyNs(kind, plan, group.length, shape));
    for (const device of group) this.graph.lane(this.resources.lane(device, laneKind));
    this.addFlows(op, plan, (i) => i, shape);
    return op;
  }

  private cachedShape(kind: CollectiveKind, plan: CollectivePlan, group: number[]): GroupShape {
    let shapes = this.shapesOfGroup.get(group);
    if (shapes === undefined) this.shapesOfGroup.set(group, (shapes = []));
    return (shapes[pairsOf(kind)] ??= this.groupShape(plan, (i) => i, (r) => group[r], group.length));
  }

  /**
   * A collective over the `size` ranks `firstDevice`, `firstDevice + stride`, ... (a tensor-parallel group is
   * consecutive ranks), on their `laneKind` lanes. `plan` is the collective planned over the offsets 0 to size - 1:
   * planned once, shifted to each group.
   */
  groupCollective(plan: CollectivePlan, kind: CollectiveKind, firstDevice: number, size: number, stride: number, laneKind: number, label: number): number {
    const tableKey = stride * PAIR_CLASSES + pairsOf(kind);
    let shapes = this.groupShapes.get(tableKey);
    if (shapes === undefined) this.groupShapes.set(tableKey, (shapes = []));
    const deviceOf = (i: number) => firstDevice + i * stride;
    const shape = (shapes[firstDevice] ??= this.groupShape(plan, deviceOf, deviceOf, size));
    const g = this.graph;
    const op = g.operation(label, firstDevice, 0, this.latencyNs(kind, plan, size, shape));
    for (let r = 0; r < size; r++) g.lane(this.resources.lane(deviceOf(r), laneKind));
    this.addFlows(op, plan, deviceOf, shape);
    return op;
  }

  /**
   * What a group's latency and striping need, from its flows (`deviceOf` maps a plan's ranks to devices) and its
   * `size` members (`memberAt`): the slowest path inside a node and across nodes, and the local ranks of its members
   * on each of its nodes.
   */
  private groupShape(plan: CollectivePlan, deviceOf: (rank: number) => number, memberAt: (index: number) => number, size: number): GroupShape {
    const { topology } = this;
    const gpusPerNode = topology.spec.gpusPerNode;
    const members = new Map<number, number[]>();
    for (let r = 0; r < size; r++) {
      const device = memberAt(r);
      const node = Math.floor(device / gpusPerNode);
      const list = members.get(node);
      if (list) list.push(device % gpusPerNode);
      else members.set(node, [device % gpusPerNode]);
    }
    const oneNode = members.size === 1;
    let membersPerNode = size;
    for (const list of members.values()) membersPerNode = Math.min(membersPerNode, list.length);
    let intra = 0;
    let inter = 0;
    let nvlink = true;
    let secondsPerByte = 0;
    for (const f of plan.flows) {
      const source = deviceOf(f.source);
      const target = deviceOf(f.target);
      const latency = topology.pathLatencySeconds(source, target);
      const crosses = !oneNode && Math.floor(source / gpusPerNode) !== Math.floor(target / gpusPerNode);
      if (crosses) inter = Math.max(inter, latency);
      else {
        intra = Math.max(intra, latency);
        if (this.protocol !== 'fitted') nvlink &&= topology.pathType(source, target) === 'nvlink';
      }
      if (this.protocol === 'fitted') continue;
      // A striped flow leaves through as many NICs as its node has members (addFlows).
      const stripes = crosses && plan.ring ? members.get(Math.floor(source / gpusPerNode))!.length : 1;
      secondsPerByte = Math.max(secondsPerByte, 1 / (stripes * topology.pathBottleneckBytesPerSecond(source, target)));
    }
    const shape = { intraSeconds: intra, interSeconds: inter, nodes: members.size, membersPerNode, nvlink, secondsPerByte };
    if (oneNode) return shape;
    // An all-to-all needs no striping: every member sends across nodes through its own rail already.
    return { ...shape, rails: this.canStripe && plan.ring ? members : undefined };
  }

  /**
   * A collective's fixed time, as NCCL's tuning model counts it for a ring: each algorithm step pays the path
   * latency of the hop it takes, and only the steps that cross nodes (the number of nodes less one per pass around
   * the ring) pay the network's. On top, per step, the fitted software latency; or, with `protocol` other than
   * `fitted`, what NCCL's protocol adds, its latency and the bandwidth it leaves unused (collectives/protocols.ts).
   * Point-to-point and all-to-all traffic then runs on Simple.
   */
  private latencyNs(kind: CollectiveKind, plan: CollectivePlan, size: number, shape: GroupShape): number {
    let interSteps = 0;
    if (shape.nodes > 1) interSteps = kind === 'allToAll' || kind === 'p2p' ? plan.steps : Math.round((plan.steps / (size - 1)) * (shape.nodes - 1));
    const intraSteps = plan.steps - interSteps;
    if (this.protocol === 'fitted') return toNanoseconds(intraSteps * shape.intraSeconds + interSteps * shape.interSeconds + plan.steps * this.stepLatency);
    const bytesPerRank = plan.ring && plan.flows.length > 0 ? plan.flows[0].bytes : 0;
    const call = {
      kind,
      ranks: size,
      bufferBytes: plan.steps > 0 ? (size * bytesPerRank) / plan.steps : 0,
      steps: plan.steps,
      interSteps,
      intraSeconds: shape.intraSeconds,
      interSeconds: shape.interSeconds,
      bytesPerRank,
      secondsPerByte: shape.secondsPerByte,
      nvlink: shape.nvlink,
      nodes: shape.nodes,
      membersPerNode: shape.membersPerNode,
    };
    const choice = chooseProtocol(call, !plan.ring ? 'Simple' : this.protocol === 'nccl' ? undefined : this.protocol);
    return toNanoseconds(choice.overheadSeconds);
  }

  /**
   * The plan's flows; one that crosses nodes is striped over the rails of the group's members on its source node,
   * as NCCL's channels spread a collective over a node's NICs, so a ring with several members per node is not held
   * to one NIC's bandwidth.
   */
  private addFlows(op: number, plan: CollectivePlan, deviceOf: (rank: number) => number, shape: GroupShape): void {
    const g = this.graph;
    const { topology } = this;
    const gpusPerNode = topology.spec.gpusPerNode;
    for (const f of plan.flows) {
      const source = deviceOf(f.source);
      const target = deviceOf(f.target);
      const rails = shape.rails?.get(Math.floor(source / gpusPerNode));
      if (!rails || rails.length < 2 || Math.floor(source / gpusPerNode) === Math.floor(target / gpusPerNode)) {
        g.flow(op, source, target, f.bytes);
        continue;
      }
      for (const rail of rails) g.flow(op, source, topology.viaRail(target, rail), f.bytes / rails.length);
    }
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
