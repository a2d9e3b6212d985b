import type { ExecutionResult, Router } from '../engine/executor.js';
import { OperationGraphBuilder } from '../engine/graph.js';
import type { AllocationHook } from '../engine/allocation.js';
import type { MemoryTracker } from '../engine/memory.js';
import type { Topology } from '../hardware/topology.js';
import type { DeviceMesh } from '../strategies/mesh.js';
import type { StepProgram } from '../strategies/program.js';
import type { StepConfig } from './config.js';
import { LANES, type StepResources } from './resources.js';

/**
 * The data-parallel replica symmetry: simulate some replicas and mirror the rest, exactly.
 *
 * Shifting every rank's data-parallel coordinate by k (mod dp) maps the step's operations onto themselves: replicas
 * run the same passes, and every collective over dp keeps its ring. When that shift is also a symmetry of the
 * cluster, it is a symmetry of the whole simulation: the replicas dp = j, j + k, ... start, end and fill memory
 * alike, and an event-level run of the replicas dp < k alone, the rest standing in for them, gives every figure of
 * the full run. The shift is a symmetry of the cluster when its GPUs' moves carry every link onto a link alike
 * (Topology.linkImages): either whole nodes move onto nodes, each GPU keeping its place in its node, leaves moving
 * with their nodes; or, where a node holds whole groups of replicas (tensor x data-parallel blocks, the pipeline
 * across nodes), GPUs move within their nodes, PCIe switches and NICs with them. What is needed for that:
 *
 * - Only the operations of the simulated devices are built (MirroredGraphBuilder). An operation over a whole dp
 *   group keeps the lanes, flows and memory effects of its simulated members; those of the others are their
 *   mirror images and happen at the same times.
 * - A flow from a simulated device to a mirrored one still crosses the links of the mirrored device (its node, its
 *   PCIe switch and NIC): each link becomes its stand-in on the simulated side (MirroredRouter). The stand-in carries
 *   the mirror image of that very flow in the full run, so every link carries the same flows, and max-min sharing
 *   gives the same rates.
 * - A link that comes back to itself in fewer shifts than the replicas do (a leaf's uplink the shift leaves in place,
 *   a NIC or PCIe switch two replicas share, a node's NVMe when GPUs move within the node) would carry several
 *   images' flows: where such a link can bind and the step's traffic crosses it, the symmetry is not used. Nor is it
 *   with variability, whose noise differs per device, nor on routes found by a search (see replicaSymmetry).
 * - Host memory and NVMe stay in place when GPUs move within their nodes, shared by simulated and mirrored replicas:
 *   they hold every device's states from the start (the baseline), and no operation changes them (a builder fault
 *   if one did). Their links carry only the offloaded states' traffic, which the placement of the states says; a flow
 *   to or from a host the symmetry took to be idle is a builder fault too. Only links are checked: the host's other
 *   resources (the CPU optimizer's rate) are fixed shares per GPU, not contended.
 * - Max-min sharing in floating point also depends on the order in which flows join a link. Every flow between
 *   replicas belongs to one operation over a dp group, built in both runs (its first member is simulated), so the
 *   order is kept; a per-device operation with flows to other replicas would need another look.
 * - Memory is counted in whole bytes (MemoryTracker.change), so that a device's use does not depend on the order of
 *   the changes at one instant, which the mirrored run does not keep.
 * - After the run, each mirrored device takes its counterpart's figures (mirrorResults), and the report sums them
 *   as it sums simulated ones.
 *
 * The property test in test/lower/symmetry.test.ts holds reports with and without it equal.
 */
export interface ReplicaSymmetry {
  /** Data-parallel replicas simulated (k), of all (dp). */
  replicas: number;
  of: number;
  /** The device whose figures each device takes: itself when simulated. */
  mirrorOf: Int32Array;
  /** The node each node's host memory and NVMe take their figures from: itself when simulated. */
  nodeMirrorOf: Int32Array;
  /** 1 for the devices, lanes, topology vertices and memory locations that are simulated. */
  keepDevice: Uint8Array;
  keepLane: Uint8Array;
  /** Also QUIET for host memory and NVMe that no state lives in, whose links the symmetry took to carry nothing. */
  keepVertex: Uint8Array;
  /** Also SHARED for host memory and NVMe that simulated and mirrored replicas share (GPUs moving within nodes). */
  keepLocation: Uint8Array;
  /** Each link's stand-in among the simulated nodes' links and their leaves' (itself for theirs, and for the spine's). */
  linkStandIn: Int32Array;
}

/**
 * The replica symmetry of a step, with the fewest replicas to simulate, or undefined when there is none that is
 * exact (see above).
 */
export function replicaSymmetry(config: StepConfig, program: Pick<StepProgram, 'mesh' | 'states'>, topology: Topology, resources: StepResources): ReplicaSymmetry | undefined {
  // Routes found by a search (nodes without NVSwitch, a NIC behind another GPU's PCIe switch) are left out: there the
  // full run's own max-min rounding was seen to differ between mirror-image nodes by an ulp, moving a step by 1 ns.
  if (!topology.regularRoutes) return undefined;
  const { mesh, states } = program;
  const dp = mesh.sizeOf('dp');
  const stride = mesh.rank({ dp: 1 });
  const { devices, gpusPerNode, nodes } = resources;
  const tiers = [states.params.tier, states.grads.tier, states.optimizer.tier];
  const traffic = { host: tiers.some((t) => t !== 'hbm'), nvme: tiers.includes('nvme') };
  const dpOf = (device: number) => mesh.coordinate(device, 'dp');
  for (const k of replicaShifts(config, mesh)) {
    const moved = Int32Array.from({ length: devices }, (_, d) => d + (((dpOf(d) + k) % dp) - dpOf(d)) * stride);
    // Whole nodes move, local places kept; or GPUs move within their nodes, host memory and NVMe staying.
    const withinNodes = moved.every((to, d) => resources.nodeOf(to) === resources.nodeOf(d));
    if (!withinNodes && moved.some((to, d) => to % gpusPerNode !== d % gpusPerNode)) continue;
    const images = topology.linkImages(moved);
    if (!images || !preservesCluster(topology, images, dp / k, traffic)) continue;
    const mirrorOf = Int32Array.from({ length: devices }, (_, d) => d - (dpOf(d) - (dpOf(d) % k)) * stride);
    const nodeMirrorOf = Int32Array.from({ length: nodes }, (_, n) => Math.floor(mirrorOf[n * gpusPerNode] / gpusPerNode));
    // Each GPU goes where the shifts that bring it back to the simulated replicas take it, and its switches, NIC,
    // node and leaf with it; undefined would mean that they did not go together.
    const linkStandIn = topology.linkImages(mirrorOf);
    if (!linkStandIn) continue;
    const keepDevice = Uint8Array.from(mirrorOf, (m, d) => (m === d ? 1 : 0));
    const keepNode = Uint8Array.from(nodeMirrorOf, (m, n) => (m === n ? 1 : 0));
    const keepLane = new Uint8Array(resources.laneCount);
    for (let d = 0; d < devices; d++) if (keepDevice[d]) keepLane.fill(1, resources.lane(d, 0), resources.lane(d, LANES.length));
    const kind = topology.vertexKind;
    const quiet = (v: number) => (kind[v] === 'cpu' && !traffic.host) || (kind[v] === 'nvme' && !traffic.nvme);
    const keepVertex = Uint8Array.from({ length: topology.vertexCount }, (_, v) => {
      if (v < devices) return keepDevice[v];
      const node = topology.nodeOf(v);
      return node >= 0 && !keepNode[node] ? 0 : quiet(v) ? QUIET : 1;
    });
    const keepLocation = Uint8Array.from({ length: resources.locationCount }, (_, l) =>
      resources.tierOf(l) === 'hbm' ? keepDevice[l] : withinNodes ? SHARED : keepNode[resources.nodeOfLocation(l)],
    );
    return { replicas: k, of: dp, mirrorOf, nodeMirrorOf, keepDevice, keepLane, keepVertex, keepLocation, linkStandIn };
  }
  return undefined;
}

/**
 * The least share of the data-parallel replicas (k / dp) a replica symmetry of this layout could leave to simulate,
 * before the cluster is looked at: replicaSymmetry's k must divide dp and move GPUs within or between whole nodes.
 * 1 where it cannot apply. Checking a step's size against a limit with it needs no topology, which for a cluster of
 * a million GPUs would take longer to build than the answer is worth.
 */
export function leastReplicaShare(config: StepConfig, mesh: DeviceMesh): number {
  const [least] = replicaShifts(config, mesh);
  return least === undefined ? 1 : least / mesh.sizeOf('dp');
}

/**
 * The shifts k of the data-parallel coordinate a replica symmetry may use, least first: k divides dp, and either
 * moves every GPU a whole number of nodes, or keeps every GPU in its node (a node holds whole blocks of the ranks
 * that differ in dp and the axes inside it). None with variability (its noise differs per device), or one replica.
 */
function replicaShifts(config: StepConfig, mesh: DeviceMesh): number[] {
  const { gpusPerNode } = config.cluster;
  const dp = mesh.sizeOf('dp');
  if (config.variability.jitter > 0 || config.variability.stragglers > 0) return [];
  const stride = mesh.rank({ dp: 1 });
  const withinNodes = gpusPerNode % (dp * stride) === 0;
  return Array.from({ length: dp - 1 }, (_, i) => i + 1).filter((k) => dp % k === 0 && (withinNodes || (k * stride) % gpusPerNode === 0));
}

/**
 * Which devices and groups the lowering builds: with the symmetry, the simulated devices, and the groups whose first
 * member is simulated (a group over dp lists its members in rank order, dp = 0 first, so it is built; one over other
 * axes lies within one replica, simulated or not); without it, all.
 */
export function simulatedDevices(symmetry: ReplicaSymmetry | undefined): { simulated: (device: number) => boolean; simulatedGroups: (groups: number[][]) => number[][] } {
  if (!symmetry) return { simulated: () => true, simulatedGroups: (groups) => groups };
  const simulated = (device: number) => symmetry.keepDevice[device] === 1;
  return { simulated, simulatedGroups: (groups) => groups.filter((members) => simulated(members[0])) };
}

/**
 * Whether the links' images under a move of order `order` (that many moves bring every GPU back) leave the cluster
 * as it was: every link lands on a link alike. And every link that can bind must come back only after `order`
 * moves: one that comes back sooner (a leaf's uplink when the moves stay under the leaf, a NIC two replicas share)
 * is the image of several of a simulated flow's links at once, and would carry several images' flows where the
 * simulation puts one. Links to host memory that no state lives in, and to NVMe that none does, carry nothing and need not.
 */
function preservesCluster(topology: Topology, images: Int32Array, order: number, traffic: { host: boolean; nvme: boolean }): boolean {
  const { capacityBytesPerSecond: capacity, linkLatencySeconds: latency, binding, linkType, hostSide } = topology;
  for (let l = 0; l < images.length; l++) {
    const i = images[l];
    if (capacity[i] !== capacity[l] || latency[i] !== latency[l] || binding[i] !== binding[l] || linkType[i] !== linkType[l]) return false;
    const carries = hostSide[l] === 0 || (linkType[l] === 'nvme' ? traffic.nvme : traffic.host);
    if (binding[l] === 1 && carries) {
      let back = 1;
      for (let at = i; at !== l && back <= order; at = images[at]) back++;
      if (back !== order) return false;
    }
  }
  return true;
}

/** keepLocation of host memory and NVMe shared by simulated and mirrored replicas: an operation may not change it. */
const SHARED = 2;
/** keepVertex of host memory and NVMe whose links the symmetry took to carry nothing: no flow may start or end there. */
const QUIET = 2;

/**
 * An operation of a mirrored device: not built; dependencies on it and effects of it are dropped. Not -1, which the
 * lowering uses for "no operation": a dependency on that is still a fault the builder reports.
 */
export const MIRRORED = -2;

/**
 * Builds only the simulated devices' share of a step: an operation of a mirrored device is not added (its id is
 * MIRRORED), and an operation of a simulated one keeps only the lanes, flows (by source) and memory effects of
 * simulated devices and nodes. A dependency on a mirrored operation is dropped: an operation that waits for one
 * waits for its simulated image as well (a dp group's collective waits for every member), which ends at the same time.
 */
export class MirroredGraphBuilder extends OperationGraphBuilder {
  private skipping = false;

  constructor(
    private readonly symmetry: ReplicaSymmetry,
    laneCount: number,
    expectedOperations: number,
    options: { allocation?: AllocationHook } = {},
  ) {
    super(laneCount, expectedOperations, options);
  }

  override operation(label: number, device: number, durationNs: number, latencyNs = 0): number {
    this.skipping = this.symmetry.keepDevice[device] === 0;
    return this.skipping ? MIRRORED : super.operation(label, device, durationNs, latencyNs);
  }

  override lane(lane: number): void {
    if (!this.skipping && this.symmetry.keepLane[lane] === 1) super.lane(lane);
  }

  override dependOn(op: number, dependency: number): void {
    if (op !== MIRRORED && dependency !== MIRRORED) super.dependOn(op, dependency);
  }

  override flow(op: number, sourceVertex: number, targetVertex: number, bytes: number, timed = true): void {
    if (op === MIRRORED) return;
    const keep = this.symmetry.keepVertex;
    // A target past the vertices is one routed through a rail (Topology.viaRail): GPU to GPU.
    if (keep[sourceVertex] === QUIET || (targetVertex < keep.length && keep[targetVertex] === QUIET)) {
      throw new Error('a flow to or from host memory or NVMe that the replica symmetry took to carry nothing (no state lives there): replicaSymmetry must count it as traffic');
    }
    if (keep[sourceVertex] === 1) super.flow(op, sourceVertex, targetVertex, bytes, timed);
  }

  override memory(op: number, location: number, category: number, bytes: number, when: 0 | 1): void {
    const keep = this.symmetry.keepLocation[location];
    if (op === MIRRORED || keep === 0) return;
    // Host memory and NVMe hold model states from the start (the step's baseline, every device's), and no operation
    // changes them; one that did would need its mirror images' changes too.
    if (keep === SHARED) throw new Error('an operation changes host memory or NVMe that simulated and mirrored replicas share: the replica symmetry cannot mirror it');
    super.memory(op, location, category, bytes, when);
  }
}

/** Routes as the cluster does, each link replaced by its stand-in on the simulated nodes. */
export class MirroredRouter implements Router {
  constructor(
    private readonly inner: Router,
    private readonly standIn: Int32Array,
  ) {}

  route(sourceVertex: number, targetVertex: number, out: Int32Array): number {
    const hops = this.inner.route(sourceVertex, targetVertex, out);
    for (let i = 0; i < hops; i++) out[i] = this.standIn[out[i]];
    return hops;
  }
}

/**
 * Gives each mirrored device, and each mirrored node's host memory and NVMe, the figures of its counterpart: lane
 * busy times, exposed communication and memory. Operation times and link bytes stay those of the simulated share.
 */
export function mirrorResults(symmetry: ReplicaSymmetry, resources: StepResources, execution: ExecutionResult, memory: MemoryTracker): void {
  const { mirrorOf, nodeMirrorOf } = symmetry;
  for (let d = 0; d < resources.devices; d++) {
    const from = mirrorOf[d];
    if (from === d) continue;
    execution.laneBusyNs.copyWithin(resources.lane(d, 0), resources.lane(from, 0), resources.lane(from, LANES.length));
    if (execution.exposedNs.length > 0) execution.exposedNs[d] = execution.exposedNs[from];
    memory.copyLocation(resources.hbm(d), resources.hbm(from));
  }
  for (let n = 0; n < resources.nodes; n++) {
    const from = nodeMirrorOf[n];
    if (from === n) continue;
    memory.copyLocation(resources.cpu(n), resources.cpu(from));
    memory.copyLocation(resources.nvme(n), resources.nvme(from));
  }
}
