import { DirectedGraph } from 'graphology';
import { bidirectional } from 'graphology-shortest-path';
import type { LinkSet } from '../engine/network.js';
import type { Router } from '../engine/executor.js';
import { MAX_HOPS } from '../engine/network.js';
import type { GpuSpec, NodeSpec } from './presets.js';
import { Recent } from '../recent.js';

/**
 * The cluster as a graph: GPUs, NVSwitches, PCIe switches, CPUs (host memory),
 * NVMe, NICs, leaf and spine switches. Every physical link is two directed edges,
 * one per direction, each a separate bandwidth resource of the engine.
 *
 * Vertex numbering puts GPUs first, so a GPU's vertex is its global rank.
 */
export type VertexKind = 'gpu' | 'nvswitch' | 'pcie-switch' | 'cpu' | 'nvme' | 'nic' | 'leaf' | 'spine';
export type LinkType = 'nvlink' | 'pcie' | 'infiniband' | 'nvme';
export const LINK_TYPES: readonly LinkType[] = ['nvlink', 'pcie', 'infiniband', 'nvme'];

export interface FabricSpec {
  /** Nodes whose NICs connect to one leaf switch. */
  nodesPerLeaf: number;
  /** Leaf downlink over uplink capacity; 1 is a non-blocking fat tree. */
  oversubscription: number;
  /** Per switch hop, seconds. */
  switchLatencySeconds: number;
}

export interface ClusterSpec {
  nodes: number;
  gpusPerNode: number;
  gpu: GpuSpec;
  node: NodeSpec;
  fabric: FabricSpec;
  /** Fraction of each link's bandwidth that transfers achieve (protocol overheads). */
  linkEfficiency: number;
}

export interface Topology extends LinkSet, Router {
  readonly graph: DirectedGraph;
  readonly spec: ClusterSpec;
  readonly devices: number;
  readonly vertexCount: number;
  readonly vertexKind: VertexKind[];
  readonly linkType: LinkType[];
  readonly linkLatencySeconds: Float64Array;
  /** Vertex of each node's CPU (host memory). */
  cpuVertex(node: number): number;
  /** Vertex of each node's NVMe. */
  nvmeVertex(node: number): number;
  nodeOf(device: number): number;
  /** The links from source to target, in order (a fresh array: for queries, not for the hot path, which uses `route`). */
  path(source: number, target: number): Int32Array;
  /** Sum of link latencies along the path, seconds. */
  pathLatencySeconds(source: number, target: number): number;
  /** Capacity of the slowest link on the path that can limit a flow, bytes per second (Infinity where none can). */
  pathBottleneckBytesPerSecond(source: number, target: number): number;
  /** Type of the widest-reaching link a path crosses: infiniband, else nvme, else nvlink, else pcie. */
  pathType(source: number, target: number): LinkType;
  /**
   * A target that routes a flow between GPUs of two nodes through the rail of local GPU `relay`: out through that
   * GPU's NIC on the source's node and in through the same rail's NIC on the target's node, as NCCL's channels
   * (with PXN, over NVLink to the GPU beside the NIC) spread one collective's traffic over a node's NICs. Routing
   * functions take it in place of the target.
   */
  viaRail(target: number, relay: number): number;
  /**
   * Where every link goes when each GPU d goes to GPU `deviceMap[d]` and every other vertex goes with the GPUs it
   * serves: a node's host memory, NVMe and NVSwitch where its GPUs go (all into one node), a PCIe switch and a NIC
   * where the GPUs behind them go (all behind one), a NIC no GPU's rail to the same place in that node, a leaf where
   * its nodes go (all under one leaf), the spine staying: link l becomes link `images[l]`. Undefined when the GPUs
   * of one node, switch, NIC or leaf go apart, or some link has no image. The map need not be one to one.
   */
  linkImages(deviceMap: ArrayLike<number>): Int32Array | undefined;
  /** 1 for the links that only traffic to or from host memory and NVMe crosses (a PCIe switch's uplink, the NVMe's). */
  readonly hostSide: Uint8Array;
  /**
   * Every route between GPUs, and between a GPU and its node's host memory, is one of the cluster's regular ones
   * (NVSwitch inside a node, each GPU's own NIC behind its own PCIe switch across nodes), none found by a search.
   */
  readonly regularRoutes: boolean;
}

const TYPE_RANK: Record<LinkType, number> = { infiniband: 3, nvme: 2, nvlink: 1, pcie: 0 };
const TYPES_BY_RANK: LinkType[] = ['pcie', 'nvlink', 'nvme', 'infiniband'];

/** The last cluster's topology: a search or a sweep simulates thousands of candidates on one cluster. */
const lastBuilt = new Recent<Topology>(1);

/**
 * The topology of `spec`, built once for the same cluster asked for again. A topology is never changed once built
 * (its route caches only fill), so one can serve every simulation of the cluster.
 */
export function topologyOf(spec: ClusterSpec): Topology {
  return lastBuilt.get(JSON.stringify(spec), () => buildTopology(spec));
}

export function buildTopology(spec: ClusterSpec): Topology {
  const { nodes, gpusPerNode, node, gpu, fabric } = spec;
  const devices = nodes * gpusPerNode;
  const vertexKind: VertexKind[] = [];
  const keys: string[] = [];
  /** Node of each vertex, -1 for the fabric's switches. */
  const vertexNodeList: number[] = [];
  const capacity: number[] = [];
  const latency: number[] = [];
  const binding: number[] = [];
  const linkType: LinkType[] = [];
  const linkFrom: number[] = [];
  const linkTo: number[] = [];
  const vendorBandwidth: number[] = [];

  const vertex = (key: string, kind: VertexKind, nodeIndex = -1) => {
    const id = keys.length;
    keys.push(key);
    vertexKind.push(kind);
    vertexNodeList.push(nodeIndex);
    return id;
  };
  /** One physical link: two directed edges with their own capacities. */
  const link = (a: number, b: number, type: LinkType, up: number, down: number, latencySeconds: number, isBinding = true) => {
    for (let direction = 0; direction < 2; direction++) {
      const bw = direction === 0 ? up : down;
      capacity.push(bw * spec.linkEfficiency);
      vendorBandwidth.push(bw);
      latency.push(latencySeconds);
      binding.push(isBinding ? 1 : 0);
      linkType.push(type);
      linkFrom.push(direction === 0 ? a : b);
      linkTo.push(direction === 0 ? b : a);
    }
  };

  for (let n = 0; n < nodes; n++) for (let g = 0; g < gpusPerNode; g++) vertex(`n${n}.gpu${g}`, 'gpu', n);

  const switchesPerNode = Math.ceil(gpusPerNode / node.gpusPerPcieSwitch);
  const nicsPerNode = node.nics;
  const cpu: number[] = [];
  const nvme: number[] = [];
  const nvswitchOf: number[] = [];
  const firstPcieSwitch: number[] = [];
  const nic: number[][] = [];
  /** Each PCIe switch's NICs in order, and each NIC's switch. */
  const nicsOfSwitch = new Map<number, number[]>();
  const switchOfNic = new Map<number, number>();
  const leaves = nodes > 1 ? Math.ceil(nodes / fabric.nodesPerLeaf) : 0;
  const leafVertex: number[] = [];
  for (let l = 0; l < leaves; l++) leafVertex.push(vertex(`leaf${l}`, 'leaf'));
  const spine = leaves > 1 ? vertex('spine', 'spine') : -1;

  for (let n = 0; n < nodes; n++) {
    const base = n * gpusPerNode;
    cpu.push(vertex(`n${n}.cpu`, 'cpu', n));
    nvme.push(vertex(`n${n}.nvme`, 'nvme', n));
    link(cpu[n], nvme[n], 'nvme', node.nvmeWriteBytesPerSecond, node.nvmeReadBytesPerSecond, node.nvmeLatencySeconds);
    const psw: number[] = [];
    firstPcieSwitch.push(keys.length);
    for (let s = 0; s < switchesPerNode; s++) {
      psw.push(vertex(`n${n}.pcie${s}`, 'pcie-switch', n));
      link(psw[s], cpu[n], 'pcie', node.pcie.bandwidthBytesPerSecond, node.pcie.bandwidthBytesPerSecond, node.pcie.latencySeconds);
    }
    nvswitchOf.push(-1);
    if (node.nvswitch && gpusPerNode > 1) {
      const nvs = vertex(`n${n}.nvswitch`, 'nvswitch', n);
      nvswitchOf[n] = nvs;
      for (let g = 0; g < gpusPerNode; g++) {
        const bw = gpu.nvlinkBandwidthBytesPerSecond;
        link(base + g, nvs, 'nvlink', bw, bw, node.nvlinkLatencySeconds);
      }
    }
    for (let g = 0; g < gpusPerNode; g++) {
      const bw = node.pcie.bandwidthBytesPerSecond;
      link(base + g, psw[Math.floor(g / node.gpusPerPcieSwitch)], 'pcie', bw, bw, node.pcie.latencySeconds);
    }
    const nodeNics: number[] = [];
    if (nodes > 1) {
      for (let k = 0; k < nicsPerNode; k++) {
        const id = vertex(`n${n}.nic${k}`, 'nic', n);
        nodeNics.push(id);
        const sw = psw[Math.min(switchesPerNode - 1, Math.floor((k * switchesPerNode) / nicsPerNode))];
        if (!nicsOfSwitch.has(sw)) nicsOfSwitch.set(sw, []);
        nicsOfSwitch.get(sw)!.push(id);
        switchOfNic.set(id, sw);
        const pbw = node.pcie.bandwidthBytesPerSecond;
        link(id, sw, 'pcie', pbw, pbw, node.pcie.latencySeconds);
        const nbw = node.nic.bandwidthBytesPerSecond;
        link(id, leafVertex[Math.floor(n / fabric.nodesPerLeaf)], 'infiniband', nbw, nbw, node.nic.latencySeconds + fabric.switchLatencySeconds);
      }
    }
    nic.push(nodeNics);
  }
  if (spine >= 0) {
    for (let l = 0; l < leaves; l++) {
      const nodesHere = Math.min(fabric.nodesPerLeaf, nodes - l * fabric.nodesPerLeaf);
      const down = nodesHere * nicsPerNode * node.nic.bandwidthBytesPerSecond;
      // A non-blocking leaf uplink carries everything its NICs can send: it can never be the bottleneck.
      link(leafVertex[l], spine, 'infiniband', down / fabric.oversubscription, down / fabric.oversubscription, fabric.switchLatencySeconds, fabric.oversubscription > 1);
    }
  }

  /**
   * The graphology graph of the same vertices and links, built on first use: the regular routes below need no
   * graph search, and at 16,384 GPUs the graph's objects cost more time and heap than the rest of the topology.
   */
  let graph: DirectedGraph | undefined;
  const materialise = (): DirectedGraph => {
    if (graph) return graph;
    graph = new DirectedGraph({ allowSelfLoops: false });
    for (let v = 0; v < keys.length; v++) {
      const attrs: Record<string, unknown> = { id: v, kind: vertexKind[v] };
      if (vertexNodeList[v] >= 0) attrs.node = vertexNodeList[v];
      if (v < devices) attrs.local = v % gpusPerNode;
      graph.addNode(keys[v], attrs);
    }
    for (let l = 0; l < linkFrom.length; l++) {
      graph.addDirectedEdge(keys[linkFrom[l]], keys[linkTo[l]], { link: l, type: linkType[l], bandwidthBytesPerSecond: vendorBandwidth[l], latencySeconds: latency[l] });
    }
    return graph;
  };

  const count = capacity.length;
  const vertexTotal = keys.length;
  /** Link id of each directed edge, by (from, to) vertex pair. */
  const linkBetween = new Map<number, number>();
  for (let l = 0; l < count; l++) linkBetween.set(linkFrom[l] * vertexTotal + linkTo[l], l);
  const capacityBytesPerSecond = Float64Array.from(capacity);
  const linkLatencySeconds = Float64Array.from(latency);
  const bindingMask = Uint8Array.from(binding);
  const vertexCount = keys.length;
  const linkTypeRank = Uint8Array.from(linkType, (t) => TYPE_RANK[t]);

  /** Shortest path by breadth-first search on the graph: the general case. */
  const searched = (from: number, to: number): number[] => {
    const g = materialise();
    const path = bidirectional(g, keys[from], keys[to]);
    if (!path) throw new Error(`no route from ${keys[from]} to ${keys[to]}`);
    const out: number[] = [];
    for (let i = 0; i + 1 < path.length; i++) out.push(g.getEdgeAttribute(g.edge(path[i], path[i + 1])!, 'link') as number);
    return out;
  };
  const vertexNode = Int32Array.from(vertexNodeList);
  const isHost = (v: number) => vertexKind[v] === 'cpu' || vertexKind[v] === 'nvme';
  const nodeOf = (v: number) => vertexNode[v];
  const railNic = (device: number) => nic[nodeOf(device)][Math.floor(((device % gpusPerNode) * nicsPerNode) / gpusPerNode)];
  const pcieSwitchOf = (device: number) => firstPcieSwitch[nodeOf(device)] + Math.floor((device % gpusPerNode) / node.gpusPerPcieSwitch);
  const leafOf = (n: number) => leafVertex[Math.floor(n / fabric.nodesPerLeaf)];
  /** Links along a list of vertices, or undefined when two of them are not adjacent. */
  const along = (vertices: number[]): number[] | undefined => {
    const out: number[] = [];
    for (let i = 0; i + 1 < vertices.length; i++) {
      const id = linkBetween.get(vertices[i] * vertexCount + vertices[i + 1]);
      if (id === undefined) return undefined;
      out.push(id);
    }
    return out;
  };

  // The cluster's regular routes, resolved once into link ids, so that routing a flow reads a few array entries:
  // GPU to GPU through NVSwitch; rail-aligned across nodes (GPU g leaves through its own NIC and enters the peer
  // through the peer's), as an egress half (GPU, PCIe switch, NIC, leaf) and an ingress half; leaf to leaf through
  // the spine; GPU to host memory through its PCIe switch, and on to NVMe. -1 marks a route the structure does not
  // give (no NVSwitch, or a NIC on another PCIe switch): those are searched on the graph, still rail-aligned across
  // nodes, and cached.
  const nvUp = new Int32Array(devices).fill(-1);
  const nvDown = new Int32Array(devices).fill(-1);
  const egress = new Int32Array(devices * 3).fill(-1);
  const ingress = new Int32Array(devices * 3).fill(-1);
  const toHost = new Int32Array(devices * 2).fill(-1);
  const fromHost = new Int32Array(devices * 2).fill(-1);
  const leafIndexOfVertex = new Int32Array(vertexCount).fill(-1);
  leafVertex.forEach((v, i) => (leafIndexOfVertex[v] = i));
  const leafUp = leafVertex.map((l) => (spine >= 0 ? (along([l, spine])?.[0] ?? -1) : -1));
  const leafDown = leafVertex.map((l) => (spine >= 0 ? (along([spine, l])?.[0] ?? -1) : -1));
  const nvmeWrite = cpu.map((c, n) => along([c, nvme[n]])![0]);
  const nvmeRead = cpu.map((c, n) => along([nvme[n], c])![0]);
  const fill = (table: Int32Array, at: number, links: number[] | undefined) => {
    if (links) table.set(links, at);
  };
  for (let d = 0; d < devices; d++) {
    const n = nodeOf(d);
    if (nvswitchOf[n] >= 0) {
      nvUp[d] = along([d, nvswitchOf[n]])![0];
      nvDown[d] = along([nvswitchOf[n], d])![0];
    }
    const sw = pcieSwitchOf(d);
    if (nodes > 1) {
      fill(egress, 3 * d, along([d, sw, railNic(d), leafOf(n)]));
      fill(ingress, 3 * d, along([leafOf(n), railNic(d), sw, d]));
    }
    fill(toHost, 2 * d, along([d, sw, cpu[n]]));
    fill(fromHost, 2 * d, along([cpu[n], sw, d]));
  }
  const searchedCache = new Map<number, Int32Array>();
  const regularRoutes =
    (gpusPerNode === 1 || nvUp.every((l) => l >= 0)) &&
    (nodes === 1 || (egress.every((l) => l >= 0) && ingress.every((l) => l >= 0))) &&
    toHost.every((l) => l >= 0) &&
    fromHost.every((l) => l >= 0);

  /**
   * A route through the rail of local GPU `relay` (see `viaRail`): that GPU's PCIe switch and NIC on the source's
   * node, the fabric, and the same rail on the target's node. The NVLink legs to and from the relay GPUs are left
   * out: NVLink has ten times a NIC's bandwidth, so they never bind, and they would join every ring of a node into
   * one contention component whose every flow is re-rated at each completion.
   */
  const relayed = (source: number, target: number, relay: number, out: Int32Array): number =>
    route(vertexNode[source] * gpusPerNode + relay, vertexNode[target] * gpusPerNode + relay, out);

  /** Writes the links from `source` to `target` into `out` and returns how many there are. */
  const route = (source: number, target: number, out: Int32Array): number => {
    if (target >= vertexCount) {
      const relay = Math.floor(target / vertexCount) - 1;
      return relayed(source, target - (relay + 1) * vertexCount, relay, out);
    }
    const gpuS = source < devices;
    const gpuT = target < devices;
    if (gpuS && gpuT) {
      const a = vertexNode[source];
      const b = vertexNode[target];
      if (a === b) {
        if (nvUp[source] >= 0) {
          out[0] = nvUp[source];
          out[1] = nvDown[target];
          return 2;
        }
      } else if (egress[3 * source] >= 0 && ingress[3 * target] >= 0) {
        out[0] = egress[3 * source];
        out[1] = egress[3 * source + 1];
        out[2] = egress[3 * source + 2];
        let k = 3;
        const la = leafIndexOfVertex[leafOf(a)];
        const lb = leafIndexOfVertex[leafOf(b)];
        if (la !== lb) {
          out[k++] = leafUp[la];
          out[k++] = leafDown[lb];
        }
        out[k++] = ingress[3 * target];
        out[k++] = ingress[3 * target + 1];
        out[k++] = ingress[3 * target + 2];
        return k;
      }
    } else if (gpuS && vertexNode[target] === vertexNode[source] && toHost[2 * source] >= 0) {
      // To host memory, and on to NVMe behind it.
      const toNvme = vertexKind[target] === 'nvme';
      if (toNvme || vertexKind[target] === 'cpu') {
        out[0] = toHost[2 * source];
        out[1] = toHost[2 * source + 1];
        if (toNvme) out[2] = nvmeWrite[vertexNode[source]];
        return toNvme ? 3 : 2;
      }
    } else if (gpuT && vertexNode[source] === vertexNode[target] && fromHost[2 * target] >= 0) {
      // From host memory, or from NVMe through it.
      const fromNvme = vertexKind[source] === 'nvme';
      if (fromNvme || vertexKind[source] === 'cpu') {
        let k = 0;
        if (fromNvme) out[k++] = nvmeRead[vertexNode[target]];
        out[k++] = fromHost[2 * target];
        out[k++] = fromHost[2 * target + 1];
        return k;
      }
    }
    const key = source * vertexCount + target;
    let found = searchedCache.get(key);
    if (!found) {
      // Across nodes the route stays rail-aligned even where the structure is irregular: through each GPU's own NIC.
      const crossNode = gpuS && gpuT && vertexNode[source] !== vertexNode[target];
      const links = crossNode ? [...searched(source, railNic(source)), ...searched(railNic(source), railNic(target)), ...searched(railNic(target), target)] : searched(source, target);
      found = Int32Array.from(links);
      searchedCache.set(key, found);
    }
    out.set(found);
    return found.length;
  };

  /** A scratch route for the queries below, which read it before the next route is written. */
  const scratch = new Int32Array(MAX_HOPS);
  const path = (source: number, target: number): Int32Array => scratch.slice(0, route(source, target, scratch));

  return {
    get graph() {
      return materialise();
    },
    spec,
    devices,
    vertexCount,
    vertexKind,
    linkType,
    linkLatencySeconds,
    count,
    capacityBytesPerSecond,
    binding: bindingMask,
    path,
    cpuVertex: (n) => cpu[n],
    nvmeVertex: (n) => nvme[n],
    nodeOf,
    route,
    pathLatencySeconds(source, target) {
      const hops = route(source, target, scratch);
      let sum = 0;
      for (let i = 0; i < hops; i++) sum += linkLatencySeconds[scratch[i]];
      return sum;
    },
    pathBottleneckBytesPerSecond(source, target) {
      const hops = route(source, target, scratch);
      let bottleneck = Infinity;
      for (let i = 0; i < hops; i++) if (bindingMask[scratch[i]]) bottleneck = Math.min(bottleneck, capacityBytesPerSecond[scratch[i]]);
      return bottleneck;
    },
    viaRail: (target, relay) => target + (relay + 1) * vertexCount,
    regularRoutes,
    hostSide: Uint8Array.from({ length: count }, (_, l) => (isHost(linkFrom[l]) || isHost(linkTo[l]) ? 1 : 0)),
    linkImages(deviceMap) {
      const image = new Int32Array(vertexCount).fill(-1);
      /** Sets vertex v's image, or says the GPUs it serves go apart. */
      const place = (v: number, to: number) => {
        if (image[v] !== -1 && image[v] !== to) return false;
        image[v] = to;
        return true;
      };
      for (let d = 0; d < devices; d++) {
        const to = deviceMap[d];
        const n = vertexNode[d];
        const m = vertexNode[to];
        image[d] = to;
        if (!place(cpu[n], cpu[m]) || !place(pcieSwitchOf(d), pcieSwitchOf(to))) return undefined;
        if (nodes > 1 && nicsPerNode > 0 && !place(railNic(d), railNic(to))) return undefined;
      }
      // A NIC that is no GPU's rail (it carries nothing) goes to its place among its switch's NICs where the switch goes;
      // the rest of a node's own vertices (NVMe, NVSwitch) keep their place in it, as host memory goes.
      for (let v = 0; v < vertexCount; v++) {
        const n = vertexNode[v];
        if (image[v] !== -1 || n < 0) continue;
        const sw = switchOfNic.get(v);
        image[v] = sw === undefined ? image[cpu[n]] + (v - cpu[n]) : (nicsOfSwitch.get(image[sw])?.[nicsOfSwitch.get(sw)!.indexOf(v)] ?? -1);
        if (image[v] === -1) return undefined;
      }
      const nodeImage = (n: number) => vertexNode[image[cpu[n]]];
      for (let l = 0; l < leaves; l++) {
        const first = l * fabric.nodesPerLeaf;
        for (let n = first; n < Math.min(nodes, first + fabric.nodesPerLeaf); n++) if (!place(leafVertex[l], leafOf(nodeImage(n)))) return undefined;
      }
      if (spine >= 0) image[spine] = spine;
      const images = new Int32Array(count);
      for (let l = 0; l < count; l++) {
        const found = linkBetween.get(image[linkFrom[l]] * vertexCount + image[linkTo[l]]);
        if (found === undefined) return undefined;
        images[l] = found;
      }
      return images;
    },
    pathType(source, target) {
      const hops = route(source, target, scratch);
      let best = 0;
      for (let i = 0; i < hops; i++) best = Math.max(best, linkTypeRank[scratch[i]]);
      return TYPES_BY_RANK[best];
    },
  };
}
