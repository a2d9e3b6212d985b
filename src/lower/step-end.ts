import { toNanoseconds } from '../engine/kernel.js';
import type { StepProgram, StatePlacement } from '../strategies/program.js';
import { parameterTensors } from '../workload/registry.js';
import { stateBytes } from '../training/states.js';
import { ownerLayout } from '../strategies/program.js';
import { shards } from '../strategies/sharding.js';
import { elements } from '../workload/types.js';
import type { StepConfig } from './config.js';
import type { StepEmitter } from './emitter.js';
import { CATEGORY, KIND, LANE, TIERS } from './resources.js';
import type { VirtualStageModel } from './stage-model.js';
import type { Variability } from './variability.js';

/**
 * The end of a step and what precedes it: the gradient sum of tied parameters, the optimizer step on each
 * device's shard with the parameter transfers and gathers after it, and the model states in memory before the step.
 */
export interface MemoryEffect {
  location: number;
  category: number;
  bytes: number;
}

export interface StepEndInput {
  config: StepConfig;
  program: StepProgram;
  emit: StepEmitter;
  stages: { parametersPerDevice: number }[];
  virtualStages: VirtualStageModel[];
  variability: Variability;
  /** What each device's optimizer step waits for: its gradient reductions (appended to here). */
  gradientSync: number[][];
  /** Each device's latest compute or blocking collective. */
  lastOpOf: Int32Array;
  labelAt(kind: number, stage: number): number;
}

export function finishStep({ config, program, emit, stages, virtualStages, variability, gradientSync, lastOpOf, labelAt }: StepEndInput): { baseline: MemoryEffect[]; capacities: Float64Array } {
  const { cluster, training } = config;
  const { mesh, states } = program;
  const { resources } = emit;
  const g = emit.graph;
  const bytes = stateBytes(training, () => parameterTensors(program.workload));
  const { gradient: gradBytes, parameter: paramBytes, optimizer: optimizerBytes } = bytes;
  const perStage = mesh.ranksPerStage;
  const shardsOf = (placement: StatePlacement) => placement.shardAxes.reduce((n, axis) => n * mesh.sizeOf(axis), 1);

  // Tied parameters on two devices: their gradients are summed between the two (when there are gradients).
  if (program.tied && gradBytes > 0) {
    // Split as the operation that owns them splits them.
    const { tensor, owner, copy } = program.tied;
    // With sharded gradients (ZeRO-2) each device sums only its shard.
    const bytes = (elements(tensor.shape) * gradBytes) / shards(tensor.shape, ownerLayout(program, owner, tensor), mesh) / shardsOf(states.grads);
    const from = virtualStages[owner].stage;
    const to = virtualStages[copy].stage;
    for (let local = 0; local < perStage; local++) {
      const a = from * perStage + local;
      const b = to * perStage + local;
      const ar = emit.collective('allReduce', [a, b], bytes, 1, LANE.dp, labelAt(KIND.allReduce, from));
      for (const device of [a, b]) {
        for (const sync of gradientSync[device]) g.dependOn(ar, sync);
        if (gradientSync[device].length === 0) g.dependOn(ar, lastOpOf[device]);
      }
      gradientSync[a].push(ar);
      gradientSync[b].push(ar);
    }
  }

  // Optimizer step on each device's shard: memory-bound on the GPU (reads gradients and optimizer states, writes
  // states and parameters), or at the host's Adam rate when offloaded, streaming states through NVMe if they live
  // there. Then the updated parameters go back where they live, and are gathered from the group they are sharded over.
  const optimizerOffloaded = states.optimizer.tier !== 'hbm';
  const optimizerShards = shardsOf(states.optimizer);
  const costs = config.costs;
  const memoryRate = cluster.gpu.memoryBandwidthBytesPerSecond * cluster.gpu.memoryEfficiency;
  const updated: number[] = new Array(resources.devices).fill(-1);
  const optimizerLabel = stages.map((_, stage) => labelAt(KIND.optimizer, stage));
  for (let device = 0; device < resources.devices; device++) {
    const stage = mesh.coordinate(device, 'pp');
    const shard = stages[stage].parametersPerDevice / optimizerShards;
    let op: number;
    if (!optimizerOffloaded) {
      const seconds = costs?.optimizerSeconds ?? (shard * bytes.step) / memoryRate;
      op = emit.compute(optimizerLabel[stage], device, variability.vary(toNanoseconds(seconds), device));
    } else {
      const rate = cluster.node.hostOptimizerParamsPerSecond / cluster.gpusPerNode;
      const seconds = costs?.optimizerSeconds ?? shard / rate;
      op = emit.compute(optimizerLabel[stage], device, toNanoseconds(seconds), LANE.host);
      if (states.optimizer.tier === 'nvme') {
        const cpu = emit.hostVertex(device, 'cpu');
        const nvme = emit.hostVertex(device, 'nvme');
        g.flow(op, nvme, cpu, shard * optimizerBytes);
        g.flow(op, cpu, nvme, shard * optimizerBytes);
      }
    }
    for (const sync of gradientSync[device]) g.dependOn(op, sync);
    if (lastOpOf[device] >= 0) g.dependOn(op, lastOpOf[device]);
    updated[device] = op;
    // Updated parameters go where they live: from the host optimizer to the GPU or to NVMe (ZeRO-Infinity), or from
    // the GPU's optimizer to a shard kept in host memory or on NVMe.
    const from = optimizerOffloaded ? emit.hostVertex(device, 'cpu') : device;
    const to = states.params.tier === 'hbm' ? device : emit.hostVertex(device, states.params.tier);
    if (from !== to) {
      const back = emit.offloadTransfer(device, from, to, shard * paramBytes, labelAt(KIND.offload, stage));
      g.dependOn(back, op);
      updated[device] = back;
    }
  }
  // Optimizer states sharded and parameters whole: every device gathers the updated parameters (ZeRO-1 and 2).
  const regather = states.params.shardAxes.length === 0 ? states.optimizer.shardAxes : [];
  if (regather.length > 0 && optimizerShards > 1) {
    for (let stage = 0; stage < stages.length; stage++) {
      const seen = new Set<number>();
      for (let local = 0; local < perStage; local++) {
        if (seen.has(local)) continue;
        const members = mesh.group(stage * perStage + local, regather);
        for (const m of members) seen.add(m - stage * perStage);
        const ag = emit.collective('allGather', members, stages[stage].parametersPerDevice * paramBytes, 1, LANE.gather, labelAt(KIND.allGather, stage));
        for (const device of members) g.dependOn(ag, updated[device]);
      }
    }
  }

  // Model states before the step, on the tiers their placement says, sharded over their groups; pinned host buffers
  // for offloading.
  const baseline: MemoryEffect[] = [];
  const kinds = [
    { category: CATEGORY.params, placement: states.params, bytes: paramBytes },
    { category: CATEGORY.grads, placement: states.grads, bytes: gradBytes },
    { category: CATEGORY.optimizer, placement: states.optimizer, bytes: optimizerBytes },
  ];
  for (let device = 0; device < resources.devices; device++) {
    const parameters = stages[mesh.coordinate(device, 'pp')].parametersPerDevice;
    for (const tier of TIERS) {
      for (const kind of kinds) {
        if (kind.placement.tier !== tier) continue;
        const bytes = (parameters * kind.bytes) / shardsOf(kind.placement);
        if (bytes > 0) baseline.push({ location: resources.location(device, tier), category: kind.category, bytes });
      }
    }
    if (states.pinnedHostBytes > 0) baseline.push({ location: resources.location(device, 'cpu'), category: CATEGORY.buffers, bytes: states.pinnedHostBytes });
  }
  const capacities = new Float64Array(resources.locationCount);
  for (let d = 0; d < resources.devices; d++) capacities[resources.hbm(d)] = cluster.gpu.memoryBytes;
  for (let n = 0; n < cluster.nodes; n++) {
    capacities[resources.cpu(n)] = cluster.node.hostMemoryBytes;
    capacities[resources.nvme(n)] = cluster.node.nvmeBytes;
  }
  return { baseline, capacities };
}
