import { toNanoseconds } from '../engine/kernel.js';
import type { Topology } from '../hardware/topology.js';
import type { CollectivePlan } from './collectives.js';

/**
 * Times on an idle network, for schedules that plan with costs before the step runs: each flow at its path's
 * bottleneck, plus the latency of every algorithm step. The simulation itself never uses them.
 */
export function estimateCollectiveNs(topology: Topology, plan: CollectivePlan, stepLatencySeconds: number): number {
  let slowest = 0;
  let latency = 0;
  for (const f of plan.flows) {
    let bottleneck = Infinity;
    let pathLatency = 0;
    for (const link of topology.path(f.source, f.target)) {
      pathLatency += topology.linkLatencySeconds[link];
      if (topology.binding[link]) bottleneck = Math.min(bottleneck, topology.capacityBytesPerSecond[link]);
    }
    slowest = Math.max(slowest, Number.isFinite(bottleneck) ? f.bytes / bottleneck : 0);
    latency = Math.max(latency, pathLatency);
  }
  return toNanoseconds(slowest + plan.steps * (stepLatencySeconds + latency));
}

/** A transfer's time alone on an idle network. */
export function estimateTransferNs(topology: Topology, from: number, to: number, bytes: number, stepLatencySeconds: number): number {
  let bottleneck = Infinity;
  let latency = stepLatencySeconds;
  for (const link of topology.path(from, to)) {
    latency += topology.linkLatencySeconds[link];
    if (topology.binding[link]) bottleneck = Math.min(bottleneck, topology.capacityBytesPerSecond[link]);
  }
  return toNanoseconds(latency + (Number.isFinite(bottleneck) ? bytes / bottleneck : 0));
}

/**
 * A time no run of a collective inside one node can beat, nanoseconds: its slowest flow alone at its path's
 * bottleneck (flows inside a node are not striped, and sharing only slows them), plus, where `stepLatencySeconds`
 * is the fitted software latency each algorithm step pays, that for every step. 0 for a group across nodes, whose
 * flows are striped over rails.
 */
export function collectiveFloorNs(topology: Topology, plan: CollectivePlan, stepLatencySeconds: number): number {
  const perNode = topology.spec.gpusPerNode;
  let slowest = 0;
  for (const f of plan.flows) {
    if (Math.floor(f.source / perNode) !== Math.floor(f.target / perNode)) return 0;
    let bottleneck = Infinity;
    for (const link of topology.path(f.source, f.target)) if (topology.binding[link]) bottleneck = Math.min(bottleneck, topology.capacityBytesPerSecond[link]);
    slowest = Math.max(slowest, Number.isFinite(bottleneck) ? f.bytes / bottleneck : 0);
  }
  return Math.floor((slowest + plan.steps * stepLatencySeconds) * 1e9);
}
