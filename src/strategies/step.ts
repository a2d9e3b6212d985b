import seedrandom from 'seedrandom';
import { planCollective, type CollectiveKind } from '../collectives/collectives.js';
import { AT_END, AT_START, OperationGraphBuilder, type OperationGraph } from '../engine/graph.js';
import { toNanoseconds } from '../engine/kernel.js';
import type { AllocationHook } from '../engine/allocation.js';
import { LabelTableBuilder, type LabelTable } from '../lower/labels.js';
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
  weightGradInputBytes,
  type ActivationOptions,
} from '../workload/transformer.js';
import { getSchedule } from './pipeline/registry.js';
import type { Pass, PassCosts, ScheduledPass } from './pipeline/schedule.js';
import { CATEGORY, KIND, LANE, Layout, OP_KINDS, TIERS } from './layout.js';
import { placeModelStates } from './zero.js';

/**
 * Builds the operation graph of one training step: the composition of pipeline
 * (a registered schedule), tensor and data parallelism over the cluster layout.
 *
 * The model is cut into p x v virtual stages; the schedule says which device
 * and chunk holds each, and in which order each device runs its passes. A
 * forward's output goes to the next virtual stage, over a transfer when that
 * stage lives on another device; a backward's (or B's) input gradient goes to
 * the previous one.
 *
 * Granularity: one compute operation per (device, pass, chunk, micro-batch);
 * the tensor-parallel all-reduces of a pass (two per layer in forward and in
 * the input-gradient backward, Megatron) follow it as one collective repeated
 * once per all-reduce, blocking the device's next compute as Megatron's
 * synchronous all-reduces do. The last gradient pass of each chunk is split
 * into gradient buckets so that data-parallel all-reduces overlap the rest.
 */

export interface MemoryEffect {
  location: number;
  category: number;
  bytes: number;
}

/** One virtual stage: a contiguous run of layers on one chunk of one pipeline device. */
export interface VirtualStageModel {
  virtualStage: number;
  /** Pipeline position of the device holding it. */
  stage: number;
  chunk: number;
  layers: number;
  /** Parameters held by each tensor-parallel rank. */
  parametersPerDevice: number;
  /** Per micro-batch and tensor-parallel rank, FLOPs. */
  forwardFlops: number;
  /** Input-gradient FLOPs (B), including any recomputed forward. */
  inputGradFlops: number;
  weightGradFlops: number;
  /** Backward FLOPs the model needs (no recompute). */
  modelBackwardFlops: number;
  forwardNs: number;
  inputGradNs: number;
  weightGradNs: number;
  /** B and W as one backward. */
  backwardNs: number;
  /** Activation bytes a micro-batch keeps from forward to backward. */
  activationBytes: number;
  /** Of those, bytes kept from B until W. */
  weightGradBytes: number;
  /** Extra bytes while a backward recomputes a layer (full recompute). */
  recomputeBytes: number;
  tpAllReducesForward: number;
  tpAllReducesBackward: number;
}

/** A pipeline device position, all its chunks together. */
export interface StageModel {
  stage: number;
  layers: number;
  parametersPerDevice: number;
  /** Activation bytes of one micro-batch through all of this device's chunks. */
  activationBytes: number;
  /** Backward FLOPs per micro-batch, all chunks, recompute included. */
  backwardFlops: number;
}

export interface StepPlan {
  scenario: Scenario;
  layout: Layout;
  graph: OperationGraph;
  /** What each operation is: rows of this table, by `graph.label`. */
  labels: LabelTable;
  /** Memory in use before the step starts (model states), by location and category. */
  baseline: MemoryEffect[];
  /** Capacity of each memory location, bytes. */
  capacities: Float64Array;
  microBatches: number;
  stages: StageModel[];
  virtualStages: VirtualStageModel[];
  /** Each device position's pass order, as the schedule gave it. */
  order: ScheduledPass[][];
  /** Ψ. */
  parameters: number;
  /** FLOPs the model needs per step, all devices together. */
  modelFlops: number;
  /** FLOPs the hardware executes per step, including recomputation. */
  hardwareFlops: number;
  /** Peak dense FLOP/s of one device at the training precision. */
  peakFlopsPerDevice: number;
}

interface Segment {
  /** Share of the pass in this segment. */
  fraction: number;
  layers: number;
  gradBytes: number;
  /** Parameters of the segment's layers on one tensor-parallel rank. */
  params: number;
  tpAllReduces: number;
}

const segmentOf = (fraction: number, layers: number, gradBytes: number, params: number, tpAllReduces: number): Segment => ({ fraction, layers, gradBytes, params, tpAllReduces });

const FORWARD = 0;
const BACKWARD = 1;

/** `allocation`: where the graph's columns come from (see engine/allocation.ts). */
export function buildStep(scenario: Scenario, topology: Topology, options: { allocation?: AllocationHook } = {}): StepPlan {
  const { cluster, model, training, parallel } = scenario;
  const { tp, pp, dp, chunks } = parallel;
  const layout = new Layout(cluster.nodes, cluster.gpusPerNode, tp, dp, pp);
  const microBatches = training.globalBatch / (training.microBatch * dp);
  const schedule = getSchedule(parallel.schedule);
  const virtualCount = pp * chunks;

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
  const hiddenBytes = training.microBatch * model.seqLength * model.hidden * bytesPerElement;
  const costs = scenario.costs;
  const profiled = costs?.forwardSeconds !== undefined;
  const fullRecompute = training.recompute === 'full';

  // Placement of virtual stages.
  const deviceOfVs = new Int32Array(virtualCount);
  const chunkOfVs = new Int32Array(virtualCount);
  const vsOf: number[][] = Array.from({ length: pp }, () => []);
  for (let d = 0; d < pp; d++) {
    for (let c = 0; c < chunks; c++) {
      const vs = schedule.virtualStage(d, c, pp, chunks);
      deviceOfVs[vs] = d;
      chunkOfVs[vs] = c;
      vsOf[d][c] = vs;
    }
  }
  const lastVs = virtualCount - 1;
  const tiedCopy = model.tiedEmbeddings && deviceOfVs[0] !== deviceOfVs[lastVs];

  // Per virtual stage: parameters, FLOPs, times and activation bytes of one tensor-parallel rank.
  const virtualStages: VirtualStageModel[] = [];
  for (let vs = 0; vs < virtualCount; vs++) {
    const stage = deviceOfVs[vs];
    const chunk = chunkOfVs[vs];
    const layers = parallel.layersPerStage[stage] / chunks;
    const first = vs === 0;
    const last = vs === lastVs;
    let params = layers * layerParameters(model);
    if (first) params += embeddingParameters(model);
    if (last) params += outputParameters(model) + (tiedCopy ? model.vocab * model.hidden : 0);
    params /= tp;
    const forwardFlops = (layers * perLayer.forward + (last ? logits.forward : 0)) / tp;
    const recomputeFlops = fullRecompute ? (layers * perLayer.forward) / tp : training.recompute === 'selective' ? (layers * attentionFlops) / tp : 0;
    const inputGradFlops = (layers * perLayer.inputGrad + (last ? logits.inputGrad : 0)) / tp + recomputeFlops;
    const weightGradFlops = (layers * perLayer.weightGrad + (last ? logits.weightGrad : 0)) / tp;
    const activationBytes = layers * layerActivationBytes(model, act) + (last ? logitsActivationBytes(model, act) : 0);
    const weightGradBytes = layers * weightGradInputBytes(model, act);
    const recomputeBytes = fullRecompute && layers > 0 ? recomputedLayerBytes(model, act) : 0;
    // Element-wise traffic: each of a layer's activation tensors is written once and read once in the forward;
    // B and W each move as much again, and recomputing the forward moves it once more.
    const traffic = 2 * layers * layerActivationBytes(model, { ...act, recompute: 'none' });
    const recomputeTraffic = fullRecompute ? traffic : 0;
    let forwardNs: number;
    let inputGradNs: number;
    let weightGradNs: number;
    if (profiled) {
      forwardNs = toNanoseconds(costs!.forwardSeconds![stage] / chunks);
      inputGradNs = toNanoseconds(costs!.backwardSeconds![stage] / chunks);
      weightGradNs = toNanoseconds((costs!.weightGradSeconds?.[stage] ?? 0) / chunks);
    } else {
      forwardNs = toNanoseconds(passSeconds(computeModel, { flops: forwardFlops, bytes: traffic, layers, issues: 1 }));
      inputGradNs = toNanoseconds(passSeconds(computeModel, { flops: inputGradFlops, bytes: traffic + recomputeTraffic, layers, issues: fullRecompute ? 2 : 1 }));
      weightGradNs = toNanoseconds(passSeconds(computeModel, { flops: weightGradFlops, bytes: traffic, layers, issues: 1 }));
    }
    virtualStages.push({
      virtualStage: vs,
      stage,
      chunk,
      layers,
      parametersPerDevice: params,
      forwardFlops,
      inputGradFlops,
      weightGradFlops,
      modelBackwardFlops: inputGradFlops - recomputeFlops + weightGradFlops,
      forwardNs,
      inputGradNs,
      weightGradNs,
      backwardNs: inputGradNs + weightGradNs,
      activationBytes,
      weightGradBytes: Math.min(weightGradBytes, activationBytes),
      recomputeBytes,
      // Profiled times already include tensor-parallel communication.
      tpAllReducesForward: tp > 1 && !profiled ? 2 * layers + (first ? 1 : 0) : 0,
      tpAllReducesBackward: tp > 1 && !profiled ? 2 * layers + (last ? 1 : 0) + (fullRecompute ? 2 * layers : 0) : 0,
    });
  }
  const stages: StageModel[] = parallel.layersPerStage.map((layers, stage) => {
    const mine = vsOf[stage].map((vs) => virtualStages[vs]);
    return {
      stage,
      layers,
      parametersPerDevice: mine.reduce((a, v) => a + v.parametersPerDevice, 0),
      activationBytes: mine.reduce((a, v) => a + v.activationBytes, 0),
      backwardFlops: mine.reduce((a, v) => a + v.inputGradFlops + v.weightGradFlops, 0),
    };
  });

  // The schedule, given the costs of each pass so that cost-aware schedules can plan with them.
  const p2pEstimateNs =
    costs?.p2pSeconds !== undefined
      ? toNanoseconds(costs.p2pSeconds)
      : pp > 1
        ? estimateTransferNs(topology, layout.device(0, 0, 0), layout.device(0, 0, 1), hiddenBytes, cluster.collectiveStepLatencySeconds)
        : 0;
  // What the blocking tensor-parallel all-reduces after a pass add to it, on an idle network.
  const tpGroup = Array.from({ length: tp }, (_, t) => layout.device(t, 0, 0));
  const tpAllReduceNs = (count: number) => (count > 0 ? estimateCollectiveNs(topology, planCollective('allReduce', tpGroup, hiddenBytes, count), cluster.collectiveStepLatencySeconds) : 0);
  const passCosts: PassCosts = {
    forward: virtualStages.map((v) => v.forwardNs + tpAllReduceNs(v.tpAllReducesForward)),
    inputGrad: virtualStages.map((v) => v.inputGradNs + tpAllReduceNs(v.tpAllReducesBackward)),
    weightGrad: virtualStages.map((v) => v.weightGradNs),
    p2p: p2pEstimateNs,
  };
  const passMemory = { activation: virtualStages.map((v) => v.activationBytes), weightGrad: virtualStages.map((v) => v.weightGradBytes) };
  const order = schedule.order({ stages: pp, microBatches, chunks, costs: passCosts, memory: passMemory });

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

  // Room for the graph: per pass of a device position, each replica's compute on every tensor-parallel rank, a
  // tensor-parallel collective and a transfer per rank, for every segment; a quarter more for everything else.
  const passesPerReplica = order.reduce((sum, stageOrder) => sum + stageOrder.length, 0);
  const segmentsPerPass = parallel.zero === 3 ? Math.max(...virtualStages.map((v) => v.layers)) + 2 : 1;
  // Capped, so that an enormous estimate reserves no more than 32M operations' worth; past that, lists double.
  const expectedOperations = Math.min(2 ** 25, 1.25 * (passesPerReplica * dp * (2 * tp + 1) * segmentsPerPass + 4 * layout.devices));
  const g = new OperationGraphBuilder(layout.laneCount, expectedOperations, { allocation: options.allocation });
  const labelTable = new LabelTableBuilder();
  const stepLatency = cluster.collectiveStepLatencySeconds;

  /** Where in the step an operation belongs, for its label. */
  // Places and segments are made by one function each, so that every one has the same shape: the JIT's code for
  // the passes then sees one object layout and is not thrown away and compiled again.
  type Place = { stage: number; microBatch: number; chunk: number };
  const place = (stage: number, microBatch = -1, chunk = -1): Place => ({ stage, microBatch, chunk });
  const labelAt = (kind: number, at: Place) => labelTable.add({ kind, stage: at.stage, microBatch: at.microBatch, chunk: at.chunk });

  /** Adds a point-to-point transfer, the most common operation, without building a collective plan. */
  // A send lane always reaches the same peer, so its latency is computed once.
  const sendPeer = new Int32Array(layout.laneCount).fill(-1);
  const sendLatencyNs = new Float64Array(layout.laneCount);
  const transfer = (from: number, to: number, bytes: number, sendLane: number, receiveLane: number, label: number, fixedSeconds?: number): number => {
    const timed = fixedSeconds === undefined;
    const lane = layout.lane(from, sendLane);
    if (timed && sendPeer[lane] !== to) {
      sendPeer[lane] = to;
      sendLatencyNs[lane] = toNanoseconds(stepLatency + topology.pathLatencySeconds(from, to));
    }
    const op = g.operation(label, from, timed ? 0 : toNanoseconds(fixedSeconds), timed ? sendLatencyNs[lane] : 0);
    g.lane(lane);
    g.lane(layout.lane(to, receiveLane));
    g.flow(op, from, to, bytes, timed);
    return op;
  };

  /** The longest path latency among a plan's flows, seconds. */
  const longestPathLatency = (plan: ReturnType<typeof planCollective>) => {
    let longest = 0;
    for (const f of plan.flows) longest = Math.max(longest, topology.pathLatencySeconds(f.source, f.target));
    return longest;
  };
  /** Adds a collective operation over `group` holding lane `laneKind` of every member. */
  const collective = (kind: CollectiveKind, group: number[], bytes: number, repeat: number, laneKind: number, label: number): number => {
    const plan = planCollective(kind, group, bytes, repeat);
    const maxPathLatency = longestPathLatency(plan);
    const op = g.operation(label, group[0], 0, toNanoseconds(plan.steps * (stepLatency + maxPathLatency)));
    for (const device of group) g.lane(layout.lane(device, laneKind));
    for (const f of plan.flows) g.flow(op, f.source, f.target, f.bytes);
    return op;
  };

  /**
   * The layers of a virtual stage as units in pass order (the embedding first and the output layer last in a
   * forward; the reverse in a backward), with their share of the pass's FLOPs, their parameters and their
   * tensor-parallel all-reduces.
   */
  function units(v: VirtualStageModel, forward: boolean): Segment[] {
    const first = v.virtualStage === 0;
    const last = v.virtualStage === lastVs;
    const list: Segment[] = [];
    const outputParams = (outputParameters(model) + (tiedCopy ? model.vocab * model.hidden : 0)) / tp;
    const layerFlopsOf = forward ? perLayer.forward : perLayer.inputGrad + perLayer.weightGrad;
    const logitsFlopsOf = forward ? logits.forward : logits.inputGrad + logits.weightGrad;
    const layerAllReduces = v.layers === 0 ? 0 : forward ? (v.tpAllReducesForward - (first && v.tpAllReducesForward > 0 ? 1 : 0)) / v.layers : (v.tpAllReducesBackward - (last && v.tpAllReducesBackward > 0 ? 1 : 0)) / v.layers;
    if (first) list.push(segmentOf(0, 0, 0, embeddingParameters(model) / tp, forward && v.tpAllReducesForward > 0 ? 1 : 0));
    for (let i = 0; i < v.layers; i++) list.push(segmentOf(layerFlopsOf / tp, 1, 0, layerParameters(model) / tp, layerAllReduces));
    if (last) list.push(segmentOf(logitsFlopsOf / tp, 0, 0, outputParams, !forward && v.tpAllReducesBackward > 0 ? 1 : 0));
    const total = list.reduce((a, u) => a + u.fraction, 0) || 1;
    for (const u of list) {
      u.fraction /= total;
      u.gradBytes = u.params * gradBytes;
    }
    return forward ? list : list.reverse();
  }

  // Gradient buckets of each virtual stage's last gradient pass, in backward order (last layer first): whole
  // layers, grouped until a bucket holds at least the bucket size.
  const buckets: Segment[][] = virtualStages.map((v) => {
    const bucketBytes = dp > 1 || parallel.offload.optimizer !== 'none' ? parallel.gradientBucketBytes : Infinity;
    const out: Segment[] = [];
    let cur = segmentOf(0, 0, 0, 0, 0);
    for (const u of units(v, false)) {
      cur.fraction += u.fraction;
      cur.layers += u.layers;
      cur.gradBytes += u.gradBytes;
      cur.params += u.params;
      cur.tpAllReduces += u.tpAllReduces;
      if (cur.gradBytes >= bucketBytes) {
        out.push(cur);
        cur = segmentOf(0, 0, 0, 0, 0);
      }
    }
    if (cur.gradBytes > 0 || cur.fraction > 0 || out.length === 0) out.push(cur);
    return out;
  });

  // Which entry of each device's order produces each chunk's gradients last: it is split into buckets.
  const gradientPass: Pass = schedule.splitBackward ? 'W' : 'BW';
  const finalGradientIndex = order.map((stageOrder) => {
    const last = new Map<number, number>();
    stageOrder.forEach((e, i) => {
      if (e.pass === gradientPass) last.set(e.chunk, i);
    });
    return last;
  });

  const zero = parallel.zero;
  const offload = parallel.offload;
  const optimizerOffloaded = offload.optimizer !== 'none';
  const shardRanks = zero >= 1 ? dp : 1;
  const hostVertex = (device: number, target: 'cpu' | 'nvme') => (target === 'cpu' ? topology.cpuVertex(layout.coordinates(device).node) : topology.nvmeVertex(layout.coordinates(device).node));
  /** A transfer between a device and its node's host memory or NVMe, on the device's offload lane. */
  const offloadTransfer = (device: number, from: number, to: number, bytes: number, label: number): number => {
    const latencyNs = toNanoseconds(topology.pathLatencySeconds(from, to));
    const op = g.operation(label, device, 0, latencyNs);
    g.lane(layout.lane(device, LANE.offload));
    g.flow(op, from, to, bytes);
    return op;
  };
  const dpGroup = (tpRank: number, stage: number) => Array.from({ length: dp }, (_, d) => layout.device(tpRank, d, stage));

  const key = (tpRank: number, dpRank: number, vs: number, mb: number) => ((vs * dp + dpRank) * tp + tpRank) * microBatches + mb;
  const slots = virtualCount * dp * tp * microBatches;
  const forwardOp = new Int32Array(slots).fill(-1);
  const inputGradOp = new Int32Array(slots).fill(-1);
  // The producer delivering each pass's input (a transfer, or the producing op on the same device) and the compute
  // consuming it. Whichever is created second links them.
  const inputs = [new Int32Array(slots).fill(-1), new Int32Array(slots).fill(-1)];
  const viaTransfer = [new Uint8Array(slots), new Uint8Array(slots)];
  const consumers = [new Int32Array(slots).fill(-1), new Int32Array(slots).fill(-1)];
  const linkInput = (direction: number, k: number, device: number) => {
    const producer = inputs[direction][k];
    const consumer = consumers[direction][k];
    if (producer < 0 || consumer < 0) return;
    g.dependOn(consumer, producer);
    // A receive buffer is freed once the compute that reads it has ended.
    if (viaTransfer[direction][k]) g.memory(consumer, layout.hbm(device), CATEGORY.buffers, -hiddenBytes, AT_END);
  };
  /** Gradient buckets whose pass has been emitted, waiting for their data-parallel reduction: per (stage, chunk, bucket), ops per dp rank per tp rank. */
  const bucketReady = new Map<string, number[][]>();
  /** The collective after each device's latest compute, which its next compute must wait for. */
  const lastBlocking = new Int32Array(layout.devices).fill(-1);
  /** Each device's latest compute (or the collective that completes it). */
  const lastOpOf = new Int32Array(layout.devices).fill(-1);
  /** What each device's optimizer step waits for: gradient reductions and their transfers to the host. */
  const gradientSync: number[][] = Array.from({ length: layout.devices }, () => []);
  /** ZeRO-3: each device's compute ops in emission order, for the prefetch window of parameter gathers. */
  const computeHistory: number[][] = Array.from({ length: layout.devices }, () => []);
  const p2pSeconds = costs?.p2pSeconds;

  /**
   * Reduces a gradient segment over the data-parallel group (all-reduce without ZeRO, reduce-scatter with it),
   * then sends this device's shard to the host when the optimizer lives there.
   */
  const reduceGradients = (stage: number, tpRank: number, bytes: number, ready: number[], at: Place) => {
    const members = dpGroup(tpRank, stage);
    let reduced = -1;
    if (dp > 1) {
      const kind = zero === 0 ? 'allReduce' : 'reduceScatter';
      reduced = collective(kind, members, bytes, 1, LANE.dp, labelAt(KIND[kind], at));
      for (const r of ready) g.dependOn(reduced, r);
    }
    const offloadLabel = optimizerOffloaded ? labelAt(KIND.offload, place(at.stage, at.microBatch)) : -1;
    members.forEach((device, d) => {
      let done = reduced >= 0 ? reduced : ready[d];
      if (optimizerOffloaded) {
        const down = offloadTransfer(device, device, hostVertex(device, offload.optimizer === 'nvme' ? 'nvme' : 'cpu'), bytes / dp, offloadLabel);
        g.dependOn(down, done);
        done = down;
      }
      // ZeRO-2/3 hold a full-size gradient only until it is reduced and sent on.
      if (zero >= 2) g.memory(done, layout.hbm(device), CATEGORY.buffers, -bytes, AT_END);
      gradientSync[device].push(done);
    });
  };
  /** Gradients leave the compute pass when there is a data-parallel group to reduce over or a host optimizer to feed. */
  const syncGradients = dp > 1 || optimizerOffloaded;
  const passLabel = new Int32Array(OP_KINDS.length);
  const passLastOps = new Int32Array(dp * tp);
  // A tensor-parallel group is `tp` consecutive ranks: its ring is planned once per repeat count over the offsets
  // 0..tp-1 and shifted to each group, and its path latency is computed once per group.
  const tpOffsets = Array.from({ length: tp }, (_, t) => t);
  const tpPlans = new Map<number, ReturnType<typeof planCollective>>();
  const tpRingLatency = new Float64Array(layout.devices).fill(-1);
  /** The blocking all-reduces after a pass of the tensor-parallel group starting at `firstDevice`, as one collective. */
  const tpAllReduce = (firstDevice: number, repeat: number, label: number): number => {
    let plan = tpPlans.get(repeat);
    if (plan === undefined) tpPlans.set(repeat, (plan = planCollective('allReduce', tpOffsets, hiddenBytes, repeat)));
    let pathLatency = tpRingLatency[firstDevice];
    if (pathLatency < 0) {
      pathLatency = 0;
      for (const f of plan.flows) pathLatency = Math.max(pathLatency, topology.pathLatencySeconds(firstDevice + f.source, firstDevice + f.target));
      tpRingLatency[firstDevice] = pathLatency;
    }
    const op = g.operation(label, firstDevice, 0, toNanoseconds(plan.steps * (stepLatency + pathLatency)));
    for (let t = 0; t < tp; t++) g.lane(layout.lane(firstDevice + t, LANE.tp));
    for (const f of plan.flows) g.flow(op, firstDevice + f.source, firstDevice + f.target, f.bytes);
    return op;
  };

  // Build in program order: for each device position, its passes in order; within a pass, its segments; for each
  // segment, every data-parallel replica. Every lane then receives its operations in program order.
  for (let stage = 0; stage < pp; stage++) {
    order[stage].forEach((entry, index) => {
      const vs = vsOf[stage][entry.chunk];
      const v = virtualStages[vs];
      const mb = entry.microBatch;
      const pass = entry.pass;
      const isForward = pass === 'F';
      // ZeRO-0/1 accumulate gradients over micro-batches and reduce them after the last one, in buckets that
      // overlap its backward; ZeRO-2/3 keep only a shard, so they reduce every micro-batch's gradients.
      const isGradientPass = pass === gradientPass;
      const finalGradient = syncGradients && zero < 2 && isGradientPass && finalGradientIndex[stage].get(entry.chunk) === index;
      const reduceInline = syncGradients && zero >= 2 && isGradientPass;
      const passNs = pass === 'F' ? v.forwardNs : pass === 'B' ? v.inputGradNs : pass === 'W' ? v.weightGradNs : v.backwardNs;
      const passFlops = pass === 'F' ? v.forwardFlops : pass === 'B' ? v.inputGradFlops : pass === 'W' ? v.weightGradFlops : v.inputGradFlops + v.weightGradFlops;
      const passAllReduces = pass === 'F' ? v.tpAllReducesForward : pass === 'W' ? 0 : v.tpAllReducesBackward;
      const kind = pass === 'F' ? KIND.forward : pass === 'B' ? KIND.inputGrad : pass === 'W' ? KIND.weightGrad : KIND.backward;
      // Filled by push in every case: one array layout for the JIT (a literal and map()'s result differ).
      const segments: Segment[] = [];
      if (zero === 3) segments.push(...units(v, isForward));
      else if (finalGradient || reduceInline) for (const b of buckets[vs]) segments.push(segmentOf(b.fraction, b.layers, b.gradBytes, b.params, pass === 'W' ? 0 : b.tpAllReduces));
      else segments.push(segmentOf(1, v.layers, 0, v.parametersPerDevice, passAllReduces));
      const labels = place(stage, mb, entry.chunk);
      // One label per kind of operation in this pass, shared by every replica and rank.
      passLabel.fill(-1);
      const labelOf = (kind: number) => (passLabel[kind] >= 0 ? passLabel[kind] : (passLabel[kind] = labelAt(kind, labels)));
      // The operation ending each replica's and rank's part of the pass (its compute, or the all-reduce after it).
      const lastOps = passLastOps;

      segments.forEach((segment, segIndex) => {
        const computeLabel = labelTable.add({ kind, stage, microBatch: mb, chunk: entry.chunk, layers: segment.layers, flops: passFlops * segment.fraction });
        const firstSegment = segIndex === 0;
        const lastSegment = segIndex === segments.length - 1;
        // ZeRO-3: gather this segment's parameters from every replica (fetching this device's shard from host
        // memory or NVMe first, with ZeRO-Infinity), at most `prefetchLayers` segments ahead of the compute.
        const gathered: number[] = [];
        if (zero === 3) {
          const fullBytes = segment.params * paramBytes;
          const fetchLabel = offload.params === 'none' ? -1 : labelAt(KIND.offload, place(stage, mb));
          for (let tpRank = 0; tpRank < tp; tpRank++) {
            const members = dpGroup(tpRank, stage);
            const fetches = members.map((device) => {
              if (offload.params === 'none') return -1;
              const fetch = offloadTransfer(device, hostVertex(device, offload.params), device, fullBytes / dp, fetchLabel);
              g.memory(fetch, layout.hbm(device), CATEGORY.buffers, fullBytes / dp, AT_START);
              const history = computeHistory[device];
              const window = history.length - 1 - parallel.prefetchLayers;
              if (window >= 0) g.dependOn(fetch, history[window]);
              return fetch;
            });
            const ag = collective('allGather', members, fullBytes, 1, LANE.gather, labelOf(KIND.allGather));
            members.forEach((device, d) => {
              const history = computeHistory[device];
              const window = history.length - 1 - parallel.prefetchLayers;
              if (window >= 0) g.dependOn(ag, history[window]);
              if (fetches[d] >= 0) {
                g.dependOn(ag, fetches[d]);
                g.memory(ag, layout.hbm(device), CATEGORY.buffers, -fullBytes / dp, AT_END);
              }
              g.memory(ag, layout.hbm(device), CATEGORY.buffers, fullBytes, AT_START);
            });
            gathered[tpRank] = ag;
          }
        }
        const segmentOps: number[][] = [];
        const segmentNs = Math.round(passNs * segment.fraction);
        for (let dpRank = 0; dpRank < dp; dpRank++) {
          const firstDevice = layout.device(0, dpRank, stage);
          for (let tpRank = 0; tpRank < tp; tpRank++) {
            const device = firstDevice + tpRank;
            const op = g.operation(computeLabel, device, vary(segmentNs, device));
            g.lane(layout.lane(device, LANE.compute));
            if (lastBlocking[device] >= 0) g.dependOn(op, lastBlocking[device]);
            const k = key(tpRank, dpRank, vs, mb);
            const hbm = layout.hbm(device);
            if (zero === 3) {
              g.dependOn(op, gathered[tpRank]);
              // The gathered parameters are released once the segment's compute has used them.
              g.memory(op, hbm, CATEGORY.buffers, -segment.params * paramBytes, AT_END);
              computeHistory[device].push(op);
            }
            // ZeRO-2/3 produce a full-size gradient that lives until it is reduced and sent on. Gradient buffers are
            // double-buffered: a segment waits until the gradients of the segment before last have left, so a slow
            // reduction or offload stalls the backward instead of piling up buffers.
            if (reduceInline) {
              g.memory(op, hbm, CATEGORY.buffers, segment.gradBytes, AT_START);
              const sent = gradientSync[device];
              if (sent.length >= 2) g.dependOn(op, sent[sent.length - 2]);
            }
            if (firstSegment) {
              if (pass !== 'W') {
                const direction = isForward ? FORWARD : BACKWARD;
                consumers[direction][k] = op;
                linkInput(direction, k, device);
              }
              if (pass === 'B' || pass === 'BW') {
                g.dependOn(op, forwardOp[k]);
                if (v.recomputeBytes > 0) g.memory(op, hbm, CATEGORY.activations, v.recomputeBytes, AT_START);
              }
              if (pass === 'W') g.dependOn(op, inputGradOp[k]);
              if (isForward) {
                forwardOp[k] = op;
                g.memory(op, hbm, CATEGORY.activations, v.activationBytes, AT_START);
              }
            }
            if (!isForward && lastSegment) {
              // B frees what W does not need; W frees the rest; a whole backward frees everything.
              const freed = pass === 'B' ? v.activationBytes - v.weightGradBytes + v.recomputeBytes : pass === 'W' ? v.weightGradBytes : v.activationBytes + v.recomputeBytes;
              g.memory(op, hbm, CATEGORY.activations, -freed, AT_END);
            }
            if (pass === 'B' && lastSegment) inputGradOp[k] = op;
            lastOps[dpRank * tp + tpRank] = op;
          }
          if (segment.tpAllReduces > 0) {
            const ar = tpAllReduce(firstDevice, segment.tpAllReduces, labelOf(KIND.allReduce));
            for (let tpRank = 0; tpRank < tp; tpRank++) {
              g.dependOn(ar, lastOps[dpRank * tp + tpRank]);
              lastOps[dpRank * tp + tpRank] = ar;
            }
          }
          for (let tpRank = 0; tpRank < tp; tpRank++) {
            const last = lastOps[dpRank * tp + tpRank];
            lastBlocking[firstDevice + tpRank] = segment.tpAllReduces > 0 ? last : -1;
            lastOpOf[firstDevice + tpRank] = last;
          }
          if (reduceInline || finalGradient) segmentOps.push(Array.from(lastOps.subarray(dpRank * tp, (dpRank + 1) * tp)));
          if (finalGradient) {
            const id = `${stage}:${entry.chunk}:${segIndex}`;
            const ready = bucketReady.get(id) ?? [];
            ready.push(segmentOps[segmentOps.length - 1]);
            bucketReady.set(id, ready);
          }
        }
        // ZeRO-2/3 reduce each segment's gradients as soon as every replica has them.
        if (reduceInline && segment.gradBytes > 0) {
          for (let tpRank = 0; tpRank < tp; tpRank++) reduceGradients(stage, tpRank, segment.gradBytes, segmentOps.map((ops) => ops[tpRank]), labels);
        }
      });
      if (pass === 'W') return;
      // The pass's output goes to the neighbouring virtual stage: activations forward, input gradients backward.
      const peerVs = isForward ? vs + 1 : vs - 1;
      if (peerVs < 0 || peerVs > lastVs) return;
      const peerStage = deviceOfVs[peerVs];
      const direction = isForward ? FORWARD : BACKWARD;
      for (let dpRank = 0; dpRank < dp; dpRank++) {
        for (let tpRank = 0; tpRank < tp; tpRank++) {
          const device = layout.device(tpRank, dpRank, stage);
          const k = key(tpRank, dpRank, peerVs, mb);
          const peer = layout.device(tpRank, dpRank, peerStage);
          if (peer === device) {
            inputs[direction][k] = lastOps[dpRank * tp + tpRank];
          } else {
            // Each lane pair carries one sender's transfers to one receiver, in the sender's order.
            const next = (stage + 1) % pp === peerStage;
            const sent = transfer(device, peer, hiddenBytes, next ? LANE.sendNext : LANE.sendPrev, next ? LANE.recvPrev : LANE.recvNext, labelOf(KIND.p2p), p2pSeconds);
            g.dependOn(sent, lastOps[dpRank * tp + tpRank]);
            g.memory(sent, layout.hbm(peer), CATEGORY.buffers, hiddenBytes, AT_START);
            inputs[direction][k] = sent;
            viaTransfer[direction][k] = 1;
          }
          linkInput(direction, k, peer);
        }
      }
    });
    // Data-parallel reduction of each gradient bucket of this device position, in the order the buckets become ready.
    if (syncGradients && zero < 2) {
      const chunkOrder = [...finalGradientIndex[stage].entries()].sort((a, b) => a[1] - b[1]).map(([chunk]) => chunk);
      for (const chunk of chunkOrder) {
        const vs = vsOf[stage][chunk];
        buckets[vs].forEach((bucket, segIndex) => {
          const ready = bucketReady.get(`${stage}:${chunk}:${segIndex}`) ?? [];
          for (let tpRank = 0; tpRank < tp; tpRank++) reduceGradients(stage, tpRank, bucket.gradBytes, ready.map((ops) => ops[tpRank]), place(stage, -1, chunk));
        });
      }
    }
  }

  // Tied embeddings: the devices holding the first and the last layers each keep the word embedding; their gradients are summed.
  if (tiedCopy) {
    const bytes = (model.vocab * model.hidden * gradBytes) / tp;
    for (let dpRank = 0; dpRank < dp; dpRank++) {
      for (let tpRank = 0; tpRank < tp; tpRank++) {
        const a = layout.device(tpRank, dpRank, deviceOfVs[0]);
        const b = layout.device(tpRank, dpRank, deviceOfVs[lastVs]);
        const ar = collective('allReduce', [a, b], bytes, 1, LANE.dp, labelAt(KIND.allReduce, place(deviceOfVs[0])));
        for (const device of [a, b]) {
          for (const sync of gradientSync[device]) g.dependOn(ar, sync);
          if (gradientSync[device].length === 0) g.dependOn(ar, lastOpOf[device]);
        }
        gradientSync[a].push(ar);
        gradientSync[b].push(ar);
      }
    }
  }

  // Optimizer step on each device's shard: memory-bound on the GPU (reads gradients and optimizer states, writes
  // states and parameters), or at the host's Adam rate when offloaded, streaming states through NVMe if they live
  // there. Then the updated fp16 parameters go back where they live, and ZeRO-1/2 gather them from every replica.
  const updated: number[] = new Array(layout.devices).fill(-1);
  const optimizerLabel = stages.map((_, stage) => labelAt(KIND.optimizer, place(stage)));
  for (let device = 0; device < layout.devices; device++) {
    const stage = layout.coordinates(device).pp;
    const shard = stages[stage].parametersPerDevice / shardRanks;
    let op: number;
    if (!optimizerOffloaded) {
      const seconds = costs?.optimizerSeconds ?? (shard * (gradBytes + 2 * optimizerBytes + paramBytes)) / memoryRate;
      op = g.operation(optimizerLabel[stage], device, vary(toNanoseconds(seconds), device));
      g.lane(layout.lane(device, LANE.compute));
    } else {
      const rate = cluster.node.hostOptimizerParamsPerSecond / cluster.gpusPerNode;
      const seconds = costs?.optimizerSeconds ?? shard / rate;
      op = g.operation(optimizerLabel[stage], device, toNanoseconds(seconds));
      g.lane(layout.lane(device, LANE.host));
      if (offload.optimizer === 'nvme') {
        const cpu = hostVertex(device, 'cpu');
        const nvme = hostVertex(device, 'nvme');
        g.flow(op, nvme, cpu, shard * optimizerBytes);
        g.flow(op, cpu, nvme, shard * optimizerBytes);
      }
    }
    for (const sync of gradientSync[device]) g.dependOn(op, sync);
    if (lastOpOf[device] >= 0) g.dependOn(op, lastOpOf[device]);
    updated[device] = op;
    if (optimizerOffloaded && offload.params !== 'cpu') {
      // Updated fp16 parameters leave the host: to the GPU, or to NVMe where ZeRO-Infinity keeps them.
      const target = offload.params === 'nvme' ? hostVertex(device, 'nvme') : device;
      const up = offloadTransfer(device, hostVertex(device, 'cpu'), target, shard * paramBytes, labelAt(KIND.offload, place(stage)));
      g.dependOn(up, op);
      updated[device] = up;
    }
  }
  if ((zero === 1 || zero === 2) && dp > 1) {
    for (let stage = 0; stage < pp; stage++) {
      for (let tpRank = 0; tpRank < tp; tpRank++) {
        const members = dpGroup(tpRank, stage);
        const ag = collective('allGather', members, stages[stage].parametersPerDevice * paramBytes, 1, LANE.gather, labelAt(KIND.allGather, place(stage)));
        for (const device of members) g.dependOn(ag, updated[device]);
      }
    }
  }

  // Model states before the step, on the tiers ZeRO and offloading put them; pinned host buffers for offloading.
  const baseline: MemoryEffect[] = [];
  const offloading = optimizerOffloaded || offload.params !== 'none';
  for (let device = 0; device < layout.devices; device++) {
    const c = layout.coordinates(device);
    const placement = placeModelStates(stages[c.pp].parametersPerDevice, { param: paramBytes, grad: gradBytes, optimizer: optimizerBytes }, { stage: zero, ranks: dp, offloadOptimizer: offload.optimizer, offloadParams: offload.params });
    const locations = { hbm: layout.hbm(device), cpu: layout.cpu(c.node), nvme: layout.nvme(c.node) };
    for (const tier of TIERS) {
      const bytes = placement[tier];
      if (bytes.params > 0) baseline.push({ location: locations[tier], category: CATEGORY.params, bytes: bytes.params });
      if (bytes.grads > 0) baseline.push({ location: locations[tier], category: CATEGORY.grads, bytes: bytes.grads });
      if (bytes.optimizer > 0) baseline.push({ location: locations[tier], category: CATEGORY.optimizer, bytes: bytes.optimizer });
    }
    if (offloading) baseline.push({ location: locations.cpu, category: CATEGORY.buffers, bytes: offload.pinnedBufferBytes });
  }
  const capacities = new Float64Array(layout.locationCount);
  for (let d = 0; d < layout.devices; d++) capacities[layout.hbm(d)] = cluster.gpu.memoryBytes;
  for (let n = 0; n < cluster.nodes; n++) {
    capacities[layout.cpu(n)] = cluster.node.hostMemoryBytes;
    capacities[layout.nvme(n)] = cluster.node.nvmeBytes;
  }

  const perReplicaModelFlops = virtualStages.reduce((sum, v) => sum + (v.forwardFlops + v.modelBackwardFlops) * tp, 0) * microBatches;
  const perReplicaHardwareFlops = virtualStages.reduce((sum, v) => sum + (v.forwardFlops + v.inputGradFlops + v.weightGradFlops) * tp, 0) * microBatches;
  return {
    scenario,
    layout,
    graph: g.build(),
    labels: labelTable.build(),
    baseline,
    capacities,
    microBatches,
    stages,
    virtualStages,
    order,
    parameters: totalParameters(model),
    modelFlops: perReplicaModelFlops * dp,
    hardwareFlops: perReplicaHardwareFlops * dp,
    peakFlopsPerDevice,
  };
}

/** A collective's time alone on an idle network (each flow at its path's bottleneck): for schedules that plan with costs. */
function estimateCollectiveNs(topology: Topology, plan: ReturnType<typeof planCollective>, stepLatencySeconds: number): number {
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

/** A transfer's time alone on an idle network: for schedules that plan with costs. */
function estimateTransferNs(topology: Topology, from: number, to: number, bytes: number, stepLatencySeconds: number): number {
  let bottleneck = Infinity;
  let latency = stepLatencySeconds;
  for (const link of topology.path(from, to)) {
    latency += topology.linkLatencySeconds[link];
    if (topology.binding[link]) bottleneck = Math.min(bottleneck, topology.capacityBytesPerSecond[link]);
  }
  return toNanoseconds(latency + (Number.isFinite(bottleneck) ? bytes / bottleneck : 0));
}
