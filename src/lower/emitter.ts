import { collectiveVolume, planCollective, type CollectiveKind, type CollectivePlan, type CollectiveVolume } from '../collectives/collectives.js';
import { chooseProtocol, type CollectiveProtocol } from '../collectives/protocols.js';
import type { AllocationHook } from '../engine/allocation.js';
import { OperationGraphBuilder } from '../engine/graph.js';
import { toNanoseconds } from '../engine/kernel.js';
import type { Topology } from '../hardware/topology.js';
import type { Tier } from '../strategies/program.js';
import { LabelTableBuilder, type OperationLabels } from './labels.js';
import { LANE, type StepResources } from './resources.js';
import { MirroredGraphBuilder, type ReplicaSymmetry } from './symmetry.js';

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
 * A collective group as the emitter builds it each time: its shape, the members whose lanes it holds, and each of
 * its flows as a source and the targets it is striped over (one, where it is not), each carrying an equal part.
 * With the replica symmetry, only the simulated devices' lanes and flows (symmetry.ts).
 */
interface BuiltGroup {
  shape: GroupShape;
  members: number[];
  sources: number[];
  targets: number[][];
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
  private readonly builtGroups = new WeakMap<readonly number[], BuiltGroup[]>();
  /** With the replica symmetry, 1 for the vertices whose flows are built. */
  private readonly keepVertex: Uint8Array | undefined;
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
    /** Build only the simulated replicas' share of the step (symmetry.ts). */
    symmetry?: ReplicaSymmetry,
  ) {
    this.graph = symmetry
      ? new MirroredGraphBuilder(symmetry, resources.laneCount, expectedOperations, { allocation })
      : new OperationGraphBuilder(resources.laneCount, expectedOperations, { allocation });
    this.keepVertex = symmetry?.keepVertex;
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
    const volume = collectiveVolume(kind, group.length, bytes, repeat);
    if (volume === undefined) {
      // Nothing moves: the operation holds the lanes, for its latency if any.
      const empty = planCollective(kind, group, bytes, repeat);
      const shape = this.groupShape(empty, (i) => i, (r) => group[r], group.length);
      const op = this.graph.operation(label, group[0], 0, this.latencyNs(kind, volumeOf(empty), group.length, shape));
      for (const device of group) this.graph.lane(this.resources.lane(device, laneKind));
      return op;
    }
    const built = this.builtGroup(kind, group);
    const g = this.graph;
    const op = g.operation(label, group[0], 0, this.latencyNs(kind, volume, group.length, built.shape));
    for (const device of built.members) g.lane(this.resources.lane(device, laneKind));
    for (let f = 0; f < built.sources.length; f++) {
      const targets = built.targets[f];
      for (const target of targets) g.flow(op, built.sources[f], target, volume.flowBytes / targets.length);
    }
    return op;
  }

  /**
   * A group as collectives over it are built: the lowering passes the same group arrays again for every pass, and
   * what is built depends only on which pairs the flows join (pairsOf).
   */
  private builtGroup(kind: CollectiveKind, group: number[]): BuiltGroup {
    let built = this.builtGroups.get(group);
    if (built === undefined) this.builtGroups.set(group, (built = []));
    const cached = built[pairsOf(kind)];
    if (cached !== undefined) return cached;
    const plan = planCollective(kind, group, 1);
    const shape = this.groupShape(plan, (i) => i, (r) => group[r], group.length);
    const keep = this.keepVertex;
    const simulated = (device: number) => keep === undefined || keep[device] === 1;
    const made: BuiltGroup = { shape, members: group.filter(simulated), sources: [], targets: [] };
    for (const f of plan.flows) {
      if (!simulated(f.source)) continue;
      made.sources.push(f.source);
      const rails = this.stripeRails(f.source, f.target, shape);
      made.targets.push(rails ? rails.map((rail) => this.topology.viaRail(f.target, rail)) : [f.target]);
    }
    return (built[pairsOf(kind)] = made);
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
    const op = g.operation(label, firstDevice, 0, this.latencyNs(kind, volumeOf(plan), size, shape));
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
  private latencyNs(kind: CollectiveKind, plan: CollectiveVolume, size: number, shape: GroupShape): number {
    let interSteps = 0;
    if (shape.nodes > 1) interSteps = kind === 'allToAll' || kind === 'p2p' ? plan.steps : Math.round((plan.steps / (size - 1)) * (shape.nodes - 1));
    const intraSteps = plan.steps - interSteps;
    if (this.protocol === 'fitted') return toNanoseconds(intraSteps * shape.intraSeconds + interSteps * shape.interSeconds + plan.steps * this.stepLatency);
    const bytesPerRank = plan.ring ? plan.flowBytes : 0;
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

  /** The plan's flows (`deviceOf` maps its ranks to devices), each striped where it crosses nodes (stripeRails). */
  private addFlows(op: number, plan: CollectivePlan, deviceOf: (rank: number) => number, shape: GroupShape): void {
    const g = this.graph;
    const keep = this.keepVertex;
    for (const f of plan.flows) {
      const source = deviceOf(f.source);
      // A mirrored device's flows are not built (symmetry.ts): skip their striping too.
      if (keep !== undefined && keep[source] === 0) continue;
      const target = deviceOf(f.target);
      const rails = this.stripeRails(source, target, shape);
      if (rails === undefined) g.flow(op, source, target, f.bytes);
      else for (const rail of rails) g.flow(op, source, this.topology.viaRail(target, rail), f.bytes / rails.length);
    }
  }

  /**
   * The rails a flow from `source` to `target` is striped over, or undefined where it goes straight: one that
   * crosses nodes leaves through the rails of the group's members on its source node, as NCCL's channels spread a
   * collective over a node's NICs, so a ring with several members per node is not held to one NIC's bandwidth.
   */
  private stripeRails(source: number, target: number, shape: GroupShape): number[] | undefined {
    const gpusPerNode = this.topology.spec.gpusPerNode;
    const rails = shape.rails?.get(Math.floor(source / gpusPerNode));
    if (!rails || rails.length < 2 || Math.floor(source / gpusPerNode) === Math.floor(target / gpusPerNode)) return undefined;
    return rails;
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

/** A plan's volume, as collectiveVolume gives it. */
const volumeOf = (plan: CollectivePlan): CollectiveVolume => ({ flowBytes: plan.ring && plan.flows.length > 0 ? plan.flows[0].bytes : 0, steps: plan.steps, ring: plan.ring });
