import { toNanoseconds } from '../engine/kernel.js';
import type { Topology } from '../hardware/topology.js';
import type { CollectivePlan } from './collectives.js';

/** Seconds the slowest flow of `plan` takes alone at its path's bottleneck. */
function slowestFlowSeconds(topology: Topology, plan: CollectivePlan): number {
  let slowest = 0;
  for (const f of plan.flows) {
    const bottleneck = topology.pathBottleneckBytesPerSecond(f.source, f.target);
    slowest = Math.max(slowest, Number.isFinite(bottleneck) ? f.bytes / bottleneck : 0);
  }
  return slowest;
}

/**
 * Times on an idle network, for schedules that plan with costs before the step runs: each flow at its path's
 * bottleneck, plus the latency of every algorithm step. The simulation itself never uses them.
 */
export function estimateCollectiveNs(topology: Topology, plan: CollectivePlan, stepLatencySeconds: number): number {
  let latency = 0;
  for (const f of plan.flows) latency = Math.max(latency, topology.pathLatencySeconds(f.source, f.target));
  return toNanoseconds(slowestFlowSeconds(topology, plan) + plan.steps * (stepLatencySeconds + latency));
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
  if (plan.flows.some((f) => Math.floor(f.source / perNode) !== Math.floor(f.target / perNode))) return 0;
  return Math.floor((slowestFlowSeconds(topology, plan) + plan.steps * stepLatencySeconds) * 1e9);
}
