import seedrandom from 'seedrandom';
import { planCollective, type CollectiveKind } from '../collectives/collectives.js';
import { AT_END, AT_START, OperationGraphBuilder, type OperationGraph } from '../engine/graph.js';
import { toNanoseconds } from '../engine/kernel.js';
import { passSeconds, type ComputeModel } from '../hardware/compute.js';
import type { Topology } from '../hardware/topology.js';
import type { Scenario } from '../scenario/resolve.js';
import {
  embeddingParameters,
  layerActivationBytes,
  layerFlops,
  layerParameters,
  logitsActivationBytes,
  logitsFlops,
  outputParameters,
  recomputedLayerBytes,
  totalParameters,
  type ActivationOptions,
} from '../workload/transformer.js';
import { getSchedule } from './pipeline/registry.js';
import type { ScheduledPass } from './pipeline/schedule.js';
import { CATEGORY, KIND, LANE, Layout } from './layout.js';

/**
 * Builds the operation graph of one training step: the composition of pipeline
 * (a registered schedule), tensor and data parallelism over the cluster layout.
 *
 * Granularity: one compute operation per (device, pass, micro-batch); the
 * tensor-parallel all-reduces of a pass (two per layer in forward, two in
 * backward, Megatron) follow it as one collective operation repeated once per
 * all-reduce, which blocks the device's next compute as Megatron's synchronous
 * all-reduces do. The last backward of each stage is split into gradient buckets
 * so that data-parallel all-reduces overlap the rest of that backward.
 */

export interface MemoryEffect {
  location: number;
  category: number;
  bytes: number;
}

export interface StageModel {
  stage: number;
  layers: number;
  /** Parameters held by each tensor-parallel rank of the stage. */
  parametersPerDevice: number;
  /** Per micro-batch and tensor-parallel rank, FLOPs. */
  forwardFlops: number;
  /** Backward FLOPs including any recomputed forward. */
  backwardFlops: number;
  /** Backward FLOPs the model needs (no recompute). */
  modelBackwardFlops: number;
  forwardNs: number;
  backwardNs: number;
  /** Activation bytes a micro-batch keeps from forward to backward. */
  activationBytes: number;
  /** Extra bytes while a backward recomputes a layer (full recompute). */
  recomputeBytes: number;
  tpAllReducesForward: number;
  tpAllReducesBackward: number;
}

export interface StepPlan {
  scenario: Scenario;
  layout: Layout;
  graph: OperationGraph;
  /** Memory in use before the step starts (model states), by location and category. */
  baseline: MemoryEffect[];
  /** Capacity of each memory location, bytes. */
  capacities: Float64Array;
  microBatches: number;
  stages: StageModel[];
  /** Ψ. */
  parameters: number;
  /** FLOPs the model needs per step, all devices together. */
  modelFlops: number;
  /** FLOPs the hardware executes per step, including recomputation. */
  hardwareFlops: number;
  /** Peak dense FLOP/s of one device at the training precision. */
  peakFlopsPerDevice: number;
}

interface BucketSegment {
  /** Share of the stage's backward in this segment. */
  fraction: number;
  layers: number;
  gradBytes: number;
  tpAllReduces: number;
}

export function buildStep(scenario: Scenario, topology: Topology): StepPlan {
  const { cluster, model, training, parallel } = scenario;
  const { tp, pp, dp } = parallel;
  const layout = new Layout(cluster.nodes, cluster.gpusPerNode, tp, dp, pp);
  const microBatches = training.globalBatch / (training.microBatch * dp);
  const schedule = getSchedule(parallel.schedule);
  const order = schedule.order({ stages: pp, microBatches, chunks: parallel.chunks });

  const fp32 = training.precision === 'fp32';
  const bytesPerElement = fp32 ? 4 : 2;
  const paramBytes = bytesPerElement;
  const gradBytes = bytesPerElement;
  // Optimizer bytes per parameter: Adam keeps momentum and variance (and an fp32 master copy in mixed precision); SGD momentum only.
  const optimizerBytes = training.optimizer === 'sgd' ? (fp32 ? 4 : 8) : fp32 ? 8 : 12;
  const peakFlopsPerDevice = fp32 ? cluster.gpu.fp32FlopsPerSecond : cluster.gpu.flopsPerSecond;
  const memoryRate = cluster.gpu.memoryBandwidthBytesPerSecond * cluster.gpu.memoryEfficiency;
  const computeModel: ComputeModel = {
    peakFlopsPerSecond: peakFlopsPerDevice,
    computeEfficiency: cluster.gpu.computeEfficiency,
    efficiencyHalfSize: cluster.gpu.efficiencyHalfSize,
    memoryBytesPerSecond: memoryRate,
    hostOverheadPerLayerSeconds: training.hostOverheadPerLayerSeconds,
  };

  const act: ActivationOptions = { microBatch: training.microBatch, tp, recompute: training.recompute, flashAttention: training.flashAttention, bytesPerElement };
  const perLayer = layerFlops(model, training.microBatch);
  const logits = logitsFlops(model, training.microBatch);
  const attentionFlops = perLayer.inputGrad - perLayer.forward; // 4·b·s²·h, what selective recompute repeats
  const tiedCopy = model.tiedEmbeddings && pp > 1;
  const hiddenBytes = training.microBatch * model.seqLength * model.hidden * bytesPerElement;
  const costs = scenario.costs;
  const profiled = costs?.forwardSeconds !== undefined;

  // Per-stage model: parameters, FLOPs, times and activation bytes of one tensor-parallel rank.
  const stages: StageModel[] = parallel.layersPerStage.map((layers, stage) => {
    const first = stage === 0;
    const last = stage === pp - 1;
    let params = layers * layerParameters(model);
    if (first) params += embeddingParameters(model);
    if (last) params += outputParameters(model) + (tiedCopy ? model.vocab * model.hidden : 0);
    params /= tp;
    const forwardFlops = (layers * perLayer.forward + (last ? logits.forward : 0)) / tp;
    const modelBackwardFlops = (layers * (perLayer.inputGrad + perLayer.weightGrad) + (last ? logits.inputGrad + logits.weightGrad : 0)) / tp;
    const recomputeFlops = training.recompute === 'full' ? (layers * perLayer.forward) / tp : training.recompute === 'selective' ? (layers * attentionFlops) / tp : 0;
    const activationBytes = layers * layerActivationBytes(model, act) + (last ? logitsActivationBytes(model, act) : 0);
    // Element-wise traffic: each of a layer's activation tensors is written once and read once in the forward,
    // and the backward moves twice that; recomputing the forward moves it again.
    const forwardTraffic = 2 * layers * layerActivationBytes(model, { ...act, recompute: 'none' });
    const recomputeTraffic = training.recompute === 'full' ? forwardTraffic : 0;
    const recomputeBytes = training.recompute === 'full' && layers > 0 ? recomputedLayerBytes(model, act) : 0;
    const forwardSeconds = profiled ? costs!.forwardSeconds![stage] : passSeconds(computeModel, { flops: forwardFlops, bytes: forwardTraffic, layers, issues: 1 });
    const backwardSeconds = profiled
      ? costs!.backwardSeconds![stage] + (costs!.weightGradSeconds?.[stage] ?? 0)
      : passSeconds(computeModel, { flops: modelBackwardFlops + recomputeFlops, bytes: 2 * forwardTraffic + recomputeTraffic, layers, issues: training.recompute === 'full' ? 3 : 2 });
    const recomputeAllReduces = training.recompute === 'full' ? 2 * layers : 0;
    return {
      stage,
      layers,
      parametersPerDevice: params,
      forwardFlops,
      backwardFlops: modelBackwardFlops + recomputeFlops,
      modelBackwardFlops,
      forwardNs: toNanoseconds(forwardSeconds),
      backwardNs: toNanoseconds(backwardSeconds),
      activationBytes,
      recomputeBytes,
      // Profiled times already include tensor-parallel communication.
      tpAllReducesForward: tp > 1 && !profiled ? 2 * layers + (first ? 1 : 0) : 0,
      tpAllReducesBackward: tp > 1 && !profiled ? 2 * layers + (last ? 1 : 0) + recomputeAllReduces : 0,
    };
  });

  // Variability: stragglers and per-operation jitter, drawn from the scenario's seed in a fixed order.
  const rng = seedrandom(String(scenario.seed));
  const slowdown = new Float64Array(layout.devices).fill(1);
  if (scenario.variability.stragglers > 0) {
    const ranks = Array.from({ length: layout.devices }, (_, i) => i);
    for (let i = ranks.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [ranks[i], ranks[j]] = [ranks[j], ranks[i]];
    }
    for (let i = 0; i < scenario.variability.stragglers; i++) slowdown[ranks[i]] = scenario.variability.stragglerSlowdown;
  }
  const jitter = scenario.variability.jitter;
  const vary = (ns: number, device: number): number => {
    let factor = slowdown[device];
    if (jitter > 0) {
      const u = 1 - rng();
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
      factor *= Math.max(0.05, 1 + jitter * z);
    }
    return factor === 1 ? ns : Math.round(ns * factor);
  };

  const g = new OperationGraphBuilder(layout.laneCount);
  const stepLatency = cluster.collectiveStepLatencySeconds;

  /** Adds a collective (or p2p) operation over `group` holding `laneKind` of each member. */
  const collective = (kind: CollectiveKind, group: number[], bytes: number, repeat: number, laneKinds: number[], labels: { stage?: number; microBatch?: number }, fixedSeconds?: number): number => {
    const plan = planCollective(kind, group, bytes, repeat);
    let maxPathLatency = 0;
    for (const f of plan.flows) maxPathLatency = Math.max(maxPathLatency, topology.pathLatencySeconds(f.source, f.target));
    const lanes = group.map((device, i) => layout.lane(device, laneKinds[Math.min(i, laneKinds.length - 1)]));
    const latencyNs = fixedSeconds === undefined ? toNanoseconds(plan.steps * (stepLatency + maxPathLatency)) : 0;
    const total = plan.flows.reduce((sum, f) => sum + f.bytes, 0);
    const op = g.add({ kind: KIND[kind], device: group[0], ...labels, bytes: total }, fixedSeconds === undefined ? 0 : toNanoseconds(fixedSeconds), lanes, latencyNs);
    for (const f of plan.flows) g.flow(op, f.source, f.target, f.bytes, fixedSeconds === undefined);
    return op;
  };

  // Gradient buckets of each stage's last backward, in backward order (last layer first).
  const buckets: BucketSegment[][] = stages.map((s) => bucketize(s, dp > 1 ? parallel.gradientBucketBytes : Infinity));
  function bucketize(s: StageModel, bucketBytes: number): BucketSegment[] {
    const last = s.stage === pp - 1;
    const first = s.stage === 0;
    const units: { flops: number; params: number; layers: number; tpAllReduces: number }[] = [];
    const layerBwd = (perLayer.inputGrad + perLayer.weightGrad) / tp;
    if (last) units.push({ flops: (logits.inputGrad + logits.weightGrad) / tp, params: (outputParameters(model) + (tiedCopy ? model.vocab * model.hidden : 0)) / tp, layers: 0, tpAllReduces: s.tpAllReducesBackward > 0 ? 1 : 0 });
    const perLayerAllReduces = s.layers > 0 && s.tpAllReducesBackward > 0 ? (training.recompute === 'full' ? 4 : 2) : 0;
    for (let i = 0; i < s.layers; i++) units.push({ flops: layerBwd, params: layerParameters(model) / tp, layers: 1, tpAllReduces: perLayerAllReduces });
    if (first) units.push({ flops: 0, params: embeddingParameters(model) / tp, layers: 0, tpAllReduces: 0 });
    const totalFlops = units.reduce((a, u) => a + u.flops, 0) || 1;
    const out: BucketSegment[] = [];
    let cur: BucketSegment = { fraction: 0, layers: 0, gradBytes: 0, tpAllReduces: 0 };
    for (const u of units) {
      cur.fraction += u.flops / totalFlops;
      cur.layers += u.layers;
      cur.gradBytes += u.params * gradBytes;
      cur.tpAllReduces += u.tpAllReduces;
      if (cur.gradBytes >= bucketBytes) {
        out.push(cur);
        cur = { fraction: 0, layers: 0, gradBytes: 0, tpAllReduces: 0 };
      }
    }
    if (cur.gradBytes > 0 || cur.fraction > 0 || out.length === 0) out.push(cur);
    return out;
  }

  // Pipeline transfers: op id of the transfer that delivers (stage, micro-batch) input, per (tp, dp) rank.
  const key = (tpRank: number, dpRank: number, stage: number, mb: number) => ((stage * dp + dpRank) * tp + tpRank) * microBatches + mb;
  const slots = pp * dp * tp * microBatches;
  const forwardOp = new Int32Array(slots).fill(-1);
  // The transfer delivering each pass's input and the compute consuming it. Stages are built in order, so a
  // forward's input exists before its consumer and a backward's after it: whichever comes second links them.
  const inputs = [new Int32Array(slots).fill(-1), new Int32Array(slots).fill(-1)];
  const consumers = [new Int32Array(slots).fill(-1), new Int32Array(slots).fill(-1)];
  const FORWARD = 0;
  const BACKWARD = 1;
  const linkInput = (direction: number, k: number, device: number) => {
    const transfer = inputs[direction][k];
    const consumer = consumers[direction][k];
    if (transfer < 0 || consumer < 0) return;
    g.dependOn(consumer, transfer);
    // The receive buffer is freed once the compute that reads it has ended.
    g.memory(consumer, layout.hbm(device), CATEGORY.buffers, -hiddenBytes, AT_END);
  };
  /** Gradient buckets whose backward segment has been emitted, waiting for their all-reduce. */
  const bucketReady: { stage: number; dpRank: number; segIndex: number; ops: number[] }[] = [];
  /** Each device's latest compute (or the collective that completes it). */
  const lastOpOf = new Int32Array(layout.devices).fill(-1);
  /** The collective after each device's latest compute, which its next compute must wait for. */
  const lastBlocking = new Int32Array(layout.devices).fill(-1);
  /** Data-parallel gradient all-reduces of each device, for the optimizer to wait on. */
  const gradientSync: number[][] = Array.from({ length: layout.devices }, () => []);

  const p2pSeconds = costs?.p2pSeconds;
  const lastBackwardIndex = order.map((stageOrder) => {
    let idx = -1;
    stageOrder.forEach((e, i) => {
      if (e.pass === 'BW' || e.pass === 'W') idx = i;
    });
    return idx;
  });

  // Build stage by stage, so that every lane receives its operations in program order.
  for (let stage = 0; stage < pp; stage++) {
    const s = stages[stage];
    for (let dpRank = 0; dpRank < dp; dpRank++) {
      const group = Array.from({ length: tp }, (_, t) => layout.device(t, dpRank, stage));
      order[stage].forEach((entry, index) => {
        const isForward = entry.pass === 'F';
        const finalBackward = index === lastBackwardIndex[stage] && dp > 1;
        const segments: BucketSegment[] = isForward
          ? [{ fraction: 1, layers: s.layers, gradBytes: 0, tpAllReduces: s.tpAllReducesForward }]
          : finalBackward
            ? buckets[stage]
            : [{ fraction: 1, layers: s.layers, gradBytes: 0, tpAllReduces: s.tpAllReducesBackward }];
        let lastOps: number[] = [];
        segments.forEach((segment, segIndex) => {
          const computeOps = group.map((device, tpRank) => {
            const ns = Math.round((isForward ? s.forwardNs : s.backwardNs) * segment.fraction);
            const flops = (isForward ? s.forwardFlops : s.backwardFlops) * segment.fraction;
            const op = g.add(
              { kind: isForward ? KIND.forward : KIND.backward, device, stage, microBatch: entry.microBatch, chunk: entry.chunk, layers: segment.layers, flops },
              vary(ns, device),
              [layout.lane(device, LANE.compute)],
            );
            if (lastBlocking[device] >= 0) g.dependOn(op, lastBlocking[device]);
            const k = key(tpRank, dpRank, stage, entry.microBatch);
            if (segIndex === 0) {
              const direction = isForward ? FORWARD : BACKWARD;
              consumers[direction][k] = op;
              linkInput(direction, k, device);
              if (!isForward) {
                g.dependOn(op, forwardOp[k]);
                if (s.recomputeBytes > 0) g.memory(op, layout.hbm(device), CATEGORY.activations, s.recomputeBytes, AT_START);
              }
            }
            if (isForward) {
              forwardOp[k] = op;
              g.memory(op, layout.hbm(device), CATEGORY.activations, s.activationBytes, AT_START);
            } else if (segIndex === segments.length - 1) {
              g.memory(op, layout.hbm(device), CATEGORY.activations, -(s.activationBytes + s.recomputeBytes), AT_END);
            }
            return op;
          });
          let after = computeOps;
          if (segment.tpAllReduces > 0) {
            const ar = collective('allReduce', group, hiddenBytes, segment.tpAllReduces, [LANE.tp], { stage, microBatch: entry.microBatch });
            for (const op of computeOps) g.dependOn(ar, op);
            for (const device of group) lastBlocking[device] = ar;
            after = group.map(() => ar);
          } else {
            for (const device of group) lastBlocking[device] = -1;
          }
          lastOps = after;
          group.forEach((device, tpRank) => (lastOpOf[device] = after[tpRank]));
          if (finalBackward) {
            // This bucket's gradients are ready on this replica: all-reduce across the data-parallel group when every replica is.
            bucketReady.push({ stage, dpRank, segIndex, ops: after });
          }
        });
        // Stage-to-stage transfers, one per tensor-parallel rank to its counterpart.
        const peerStage = isForward ? stage + 1 : stage - 1;
        if (peerStage < 0 || peerStage >= pp) return;
        group.forEach((device, tpRank) => {
          const peer = layout.device(tpRank, dpRank, peerStage);
          const lanes = isForward ? [LANE.sendNext, LANE.recvPrev] : [LANE.sendPrev, LANE.recvNext];
          const transfer = collective('p2p', [device, peer], hiddenBytes, 1, lanes, { stage, microBatch: entry.microBatch }, p2pSeconds);
          g.dependOn(transfer, lastOps[tpRank]);
          g.memory(transfer, layout.hbm(peer), CATEGORY.buffers, hiddenBytes, AT_START);
          const k = key(tpRank, dpRank, peerStage, entry.microBatch);
          const direction = isForward ? FORWARD : BACKWARD;
          inputs[direction][k] = transfer;
          linkInput(direction, k, peer);
        });
      });
    }
    // Data-parallel all-reduce of each gradient bucket of this stage, per tensor-parallel rank.
    if (dp > 1) {
      buckets[stage].forEach((bucket, segIndex) => {
        for (let tpRank = 0; tpRank < tp; tpRank++) {
          const members = Array.from({ length: dp }, (_, d) => layout.device(tpRank, d, stage));
          const ar = collective('allReduce', members, bucket.gradBytes, 1, [LANE.dp], { stage });
          for (const ready of bucketReady) if (ready.stage === stage && ready.segIndex === segIndex) g.dependOn(ar, ready.ops[tpRank]);
          for (const device of members) gradientSync[device].push(ar);
        }
      });
      bucketReady.length = 0;
    }
  }

  // Tied embeddings: the first and last stages each hold the word embedding; their gradients are summed.
  if (tiedCopy) {
    const bytes = (model.vocab * model.hidden * gradBytes) / tp;
    for (let dpRank = 0; dpRank < dp; dpRank++) {
      for (let tpRank = 0; tpRank < tp; tpRank++) {
        const a = layout.device(tpRank, dpRank, 0);
        const b = layout.device(tpRank, dpRank, pp - 1);
        const ar = collective('allReduce', [a, b], bytes, 1, [LANE.dp], { stage: 0 });
        for (const device of [a, b]) {
          for (const sync of gradientSync[device]) g.dependOn(ar, sync);
          if (gradientSync[device].length === 0) g.dependOn(ar, lastOpOf[device]);
        }
        gradientSync[a].push(ar);
        gradientSync[b].push(ar);
      }
    }
  }

  // Optimizer step: memory-bound, reads gradients and optimizer states, writes states and parameters.
  for (let device = 0; device < layout.devices; device++) {
    const stage = layout.coordinates(device).pp;
    const params = stages[stage].parametersPerDevice;
    const seconds = costs?.optimizerSeconds ?? (params * (gradBytes + 2 * optimizerBytes + paramBytes)) / memoryRate;
    const op = g.add({ kind: KIND.optimizer, device, stage }, vary(toNanoseconds(seconds), device), [layout.lane(device, LANE.compute)]);
    for (const sync of gradientSync[device]) g.dependOn(op, sync);
    if (lastOpOf[device] >= 0) g.dependOn(op, lastOpOf[device]);
  }

  const baseline: MemoryEffect[] = [];
  for (let device = 0; device < layout.devices; device++) {
    const params = stages[layout.coordinates(device).pp].parametersPerDevice;
    baseline.push({ location: layout.hbm(device), category: CATEGORY.params, bytes: params * paramBytes });
    baseline.push({ location: layout.hbm(device), category: CATEGORY.grads, bytes: params * gradBytes });
    baseline.push({ location: layout.hbm(device), category: CATEGORY.optimizer, bytes: params * optimizerBytes });
  }
  const capacities = new Float64Array(layout.locationCount);
  for (let d = 0; d < layout.devices; d++) capacities[layout.hbm(d)] = cluster.gpu.memoryBytes;
  for (let n = 0; n < cluster.nodes; n++) {
    capacities[layout.cpu(n)] = cluster.node.hostMemoryBytes;
    capacities[layout.nvme(n)] = cluster.node.nvmeBytes;
  }

  const perReplicaModelFlops = stages.reduce((sum, s) => sum + (s.forwardFlops + s.modelBackwardFlops) * tp, 0) * microBatches;
  const perReplicaHardwareFlops = stages.reduce((sum, s) => sum + (s.forwardFlops + s.backwardFlops) * tp, 0) * microBatches;
  return {
    scenario,
    layout,
    graph: g.build(),
    baseline,
    capacities,
    microBatches,
    stages,
    parameters: totalParameters(model),
    modelFlops: perReplicaModelFlops * dp,
    hardwareFlops: perReplicaHardwareFlops * dp,
    peakFlopsPerDevice,
  };
}
