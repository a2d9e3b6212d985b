import type { LinkType, Topology } from './topology.js';

/** A plain summary of a topology for `dtsim topology`. */
export interface TopologySummary {
  nodes: number;
  gpusPerNode: number;
  devices: number;
  vertices: Record<string, number>;
  links: Record<string, { count: number; bandwidthBytesPerSecond: number[]; latencySeconds: number[] }>;
  examplePaths: { from: string; to: string; hops: string[]; type: LinkType; latencySeconds: number; bottleneckBytesPerSecond: number }[];
}

export function summarizeTopology(topology: Topology): TopologySummary {
  const vertices: Record<string, number> = {};
  for (const kind of topology.vertexKind) vertices[kind] = (vertices[kind] ?? 0) + 1;
  const links: TopologySummary['links'] = {};
  topology.graph.forEachEdge((_edge, attrs) => {
    const entry = (links[attrs.type as string] ??= { count: 0, bandwidthBytesPerSecond: [], latencySeconds: [] });
    entry.count++;
    if (!entry.bandwidthBytesPerSecond.includes(attrs.bandwidthBytesPerSecond)) entry.bandwidthBytesPerSecond.push(attrs.bandwidthBytesPerSecond);
    if (!entry.latencySeconds.includes(attrs.latencySeconds)) entry.latencySeconds.push(attrs.latencySeconds);
  });
  const { gpusPerNode, nodes } = topology.spec;
  const examples: [number, number][] = [];
  if (gpusPerNode > 1) examples.push([0, 1]);
  if (nodes > 1) examples.push([0, gpusPerNode]);
  examples.push([0, topology.cpuVertex(0)]);
  examples.push([topology.cpuVertex(0), topology.nvmeVertex(0)]);
  const keyOf = (v: number) => topology.graph.findNode((_k, a) => a.id === v)!;
  const examplePaths = examples.map(([a, b]) => {
    const linksOnPath = topology.path(a, b);
    const hops = [keyOf(a)];
    for (const l of linksOnPath) hops.push(topology.graph.target(topology.graph.findEdge((_e, at) => at.link === l)!));
    return { from: keyOf(a), to: keyOf(b), hops, type: topology.pathType(a, b), latencySeconds: topology.pathLatencySeconds(a, b), bottleneckBytesPerSecond: topology.pathBottleneckBytesPerSecond(a, b) };
  });
  return { nodes, gpusPerNode, devices: topology.devices, vertices, links, examplePaths };
}
