import type { AllocationHook } from '../engine/allocation.js';
import { AT_END, AT_START } from '../engine/graph.js';
import type { Topology } from '../hardware/topology.js';
import type { MeshAxis } from '../strategies/mesh.js';
import { getSchedule } from '../strategies/pipeline/registry.js';
import type { Pass } from '../strategies/pipeline/schedule.js';
import type { StepProgram } from '../strategies/program.js';
import { takesGradients } from '../training/optimizer.js';
import { peakFlopsPerSecond } from '../training/precision.js';
import { stateBytes } from '../training/states.js';
import { modelParameters, parameterTensors } from '../workload/registry.js';
import { microBatchesOf, type StepConfig } from './config.js';
import { StepEmitter } from './emitter.js';
import { CATEGORY, KIND, LANE, OP_KINDS, StepResources } from './resources.js';
import { AttentionPhases } from './attention-phase.js';
import { ScatterGather } from './scatter-gather.js';
import { attentionShare, blockSegments, gradientBuckets, passCollectives, recomputeShare, segmentOf, type Segment } from './segments.js';
import { BlockingCollectives } from './blocking.js';
import type { VirtualStageModel } from './stage-model.js';
import { sharedStageCosts } from './shared-stage-costs.js';
import { passOrder } from './order.js';
import { finishStep } from './step-end.js';
import type { StageModel, StepPlan } from './plan.js';
import { Variability } from './variability.js';
import { MIRRORED, simulatedDevices, type ReplicaSymmetry } from './symmetry.js';
import { graphReservation } from './limits.js';

export type { StageModel, StepPlan } from './plan.js';

/**
 * The lowering: the step program, the schedule's order and the mesh become the operation graph the executor runs.
 *
 * The model is cut into p x v virtual stages; the schedule says which device and chunk holds each, and in which
 * order each device runs its passes. A forward's output goes to the next virtual stage, over a transfer when that
 * stage lives on another device; a backward's (or B's) input gradient goes to the previous one. Each pass of each
 * rank is one compute operation, cut into segments where the program asks (segments.ts), each followed by its
 * blocking collectives as one operation per kind, as Megatron's synchronous collectives block the next compute.
 * Gradients leave as the program's gradient policy says; the step ends with the optimizer (step-end.ts).
 */
const FORWARD = 0;
const BACKWARD = 1;

/** Activation bytes the last segment of a pass frees: B what W does not need; W the rest; a whole backward all. */
const freedBy = (v: VirtualStageModel, pass: Pass) =>
  pass === 'B' ? v.activationBytes - v.weightGradBytes + v.recomputeBytes : pass === 'W' ? v.weightGradBytes : v.activationBytes + v.recomputeBytes;

export interface LowerOptions {
  allocation?: AllocationHook;
  /**
   * The step's replica symmetry (replicaSymmetry in symmetry.ts), to simulate only the data-parallel replicas it
   * needs: the plan's `symmetry` then says which, and the graph holds only their operations.
   */
  symmetry?: ReplicaSymmetry;
}

export function lowerStep(config: StepConfig, program: StepProgram, topology: Topology, options: LowerOptions = {}): StepPlan {
  const { cluster, training } = config;
  const { mesh, gradients, states } = program;
  const pp = mesh.sizeOf('pp');
  const resources = new StepResources(cluster.nodes, cluster.gpusPerNode);
  const { symmetry } = options;
  // The builder drops a mirrored device's operations; skipping them here saves making them.
  const { simulated, simulatedGroups } = simulatedDevices(symmetry);
  // A zeroth-order optimizer (MeZO) runs each micro-batch forward twice, with the weights perturbed each way, and no
  // backward: micro-batch m + i is micro-batch i's second forward.
  const zerothOrder = !takesGradients(training.optimizer);
  const microBatches = microBatchesOf(config, mesh);
  // Forward passes each micro-batch runs on each virtual stage.
  const forwardsEach = zerothOrder ? 2 : 1;
  const runs = microBatches * forwardsEach;
  const schedule = getSchedule(program.schedule);
  const { gradient: gradBytes, parameter: paramBytes } = stateBytes(training, () => parameterTensors(program.workload));
  const costs = config.costs;
  const stepLatency = cluster.collectiveStepLatencySeconds;
  const perStage = mesh.ranksPerStage;
  const firstRank = (stage: number) => stage * perStage;

  const virtualStages = sharedStageCosts(config, program);
  const lastVs = virtualStages.length - 1;
  const vsOf: number[][] = Array.from({ length: pp }, () => []);
  for (const v of virtualStages) vsOf[v.stage][v.chunk] = v.virtualStage;
  const stages: StageModel[] = vsOf.map((virtual, stage) => {
    const mine = virtual.map((vs) => virtualStages[vs]);
    return {
      stage,
      layers: mine.reduce((a, v) => a + v.layers, 0),
      parametersPerDevice: mine.reduce((a, v) => a + v.parametersPerDevice, 0),
      activationBytes: mine.reduce((a, v) => a + v.activationBytes, 0),
      backwardFlops: mine.reduce((a, v) => a + v.inputGradFlops + v.weightGradFlops, 0),
    };
  });

  const collectives = passCollectives(virtualStages);
  const { forward: forwardGroups, backward: backwardGroups } = collectives;
  const order = passOrder(config, program, topology, virtualStages, collectives);

  const variability = new Variability(config.seed, resources.devices, config.variability);

  const paramsSharded = states.params.shardAxes.length > 0;
  const expectedOperations = graphReservation(order, virtualStages, mesh, paramsSharded, resources.devices, symmetry);
  const emit = new StepEmitter(resources, topology, expectedOperations, stepLatency, options.allocation, cluster.collectiveProtocol, symmetry);
  const g = emit.graph;

  /** Where in the step an operation belongs, for its label. */
  // Made by one function, so that every one has the same shape for the JIT.
  type Place = { stage: number; microBatch: number; chunk: number };
  const place = (stage: number, microBatch = -1, chunk = -1): Place => ({ stage, microBatch, chunk });
  const labelAt = (kind: number, at: Place) => emit.label({ kind, stage: at.stage, microBatch: at.microBatch, chunk: at.chunk });

  // Gradients leave the compute pass when there is a group to reduce over or a host optimizer to feed.
  const gradientGroupSize = gradients.axes.reduce((n, axis) => n * mesh.sizeOf(axis), 1);
  const optimizerOffloaded = states.optimizer.tier !== 'hbm';
  const syncGradients = !zerothOrder && (gradientGroupSize > 1 || optimizerOffloaded);
  const perMicroBatch = gradients.every === 'micro-batch';
  const buckets: Segment[][] = virtualStages.map((v) => gradientBuckets(v, gradBytes, syncGradients ? gradients.bucketBytes : Infinity));
  // Which entry of each device's order produces each chunk's gradients last: it is split into buckets.
  const gradientPass: Pass = schedule.splitBackward ? 'W' : 'BW';
  const finalGradientIndex = order.map((stageOrder) => {
    const last = new Map<number, number>();
    stageOrder.forEach((e, i) => {
      if (e.pass === gradientPass) last.set(e.chunk, i);
    });
    return last;
  });

  const key = (local: number, vs: number, mb: number) => (vs * perStage + local) * runs + mb;
  const slots = virtualStages.length * perStage * runs;
  const forwardOp = new Int32Array(slots).fill(-1);
  const inputGradOp = new Int32Array(slots).fill(-1);
  // The producer delivering each pass's input (a transfer, or the producing op on the same device) and the compute
  // consuming it. Whichever is created second links them.
  const inputs = [new Int32Array(slots).fill(-1), new Int32Array(slots).fill(-1)];
  const viaTransfer = [new Uint8Array(slots), new Uint8Array(slots)];
  const consumers = [new Int32Array(slots).fill(-1), new Int32Array(slots).fill(-1)];
  // The compute that reads the received input, which frees its buffer: the consumer, or the backward after a
  // recomputed forward that waits for the input in its place.
  const readers = [new Int32Array(slots).fill(-1), new Int32Array(slots).fill(-1)];
  // A receive buffer holds what the neighbouring virtual stage sent: forward from the one before, backward from the one after.
  const received = [virtualStages.map((v) => (v.virtualStage > 0 ? virtualStages[v.virtualStage - 1].sendForwardBytes : 0)), virtualStages.map((v) => (v.virtualStage < lastVs ? virtualStages[v.virtualStage + 1].sendBackwardBytes : 0))];
  const linkInput = (direction: number, vs: number, k: number, device: number) => {
    const producer = inputs[direction][k];
    const consumer = consumers[direction][k];
    if (producer < 0 || consumer < 0) return;
    g.dependOn(consumer, producer);
    // A receive buffer is freed once the compute that reads it has ended.
    if (viaTransfer[direction][k]) g.memory(readers[direction][k], resources.hbm(device), CATEGORY.buffers, -received[direction][vs], AT_END);
  };
  /** Gradient buckets whose pass has been emitted, waiting for their reduction: per (stage, chunk, bucket), each rank's last op. */
  const bucketReady = new Map<string, Int32Array>();
  /** The collective after each device's latest compute, which its next compute must wait for. */
  const lastBlocking = new Int32Array(resources.devices).fill(-1);
  /** Each device's latest compute (or the collective that completes it). */
  const lastOpOf = new Int32Array(resources.devices).fill(-1);
  /** What each device's optimizer step waits for: gradient reductions and their transfers to the host. */
  const gradientSync: number[][] = Array.from({ length: resources.devices }, () => []);
  /** Sharded parameters: each device's compute ops in emission order, for the prefetch window of parameter gathers. */
  const computeHistory: number[][] = Array.from({ length: resources.devices }, () => []);
  const p2pSeconds = costs?.p2pSeconds;
  // A profiled transfer time is the whole transfer's: no scatter/gather on top of it.
  const scatterGather = new ScatterGather(config.parallel.scatterGather && p2pSeconds === undefined, mesh, emit);
  const optimizerTier = states.optimizer.tier === 'nvme' ? 'nvme' : 'cpu';

  /**
   * Reduces a gradient segment over its group (all-reduce, or reduce-scatter when states are sharded), then sends
   * each device's shard to the host when the optimizer lives there.
   */
  const reduceGradients = (members: number[], bytes: number, ready: ArrayLike<number>, at: Place) => {
    let reduced = -1;
    if (members.length > 1) {
      reduced = emit.collective(gradients.collective, members, bytes, 1, LANE.dp, labelAt(KIND[gradients.collective], at));
      for (let d = 0; d < members.length; d++) g.dependOn(reduced, ready[d]);
    }
    const offloadLabel = optimizerOffloaded ? labelAt(KIND.offload, place(at.stage, at.microBatch)) : -1;
    members.forEach((device, d) => {
      if (!simulated(device)) return;
      let done = reduced >= 0 ? reduced : ready[d];
      if (optimizerOffloaded) {
        const down = emit.offloadTransfer(device, device, emit.hostVertex(device, optimizerTier), bytes / members.length, offloadLabel);
        g.dependOn(down, done);
        done = down;
      }
      // Gradients reduced every micro-batch live in a full-size buffer only until they are reduced and sent on.
      if (perMicroBatch) g.memory(done, resources.hbm(device), CATEGORY.buffers, -bytes, AT_END);
      gradientSync[device].push(done);
    });
  };
  const passLabel = new Int32Array(OP_KINDS.length);
  // A mirrored position's stays MIRRORED: what waits for it, such as a gradient reduction over dp, drops the wait.
  const lastOps = new Int32Array(perStage).fill(MIRRORED);
  // The whole stage, and each rank alone: the groups of a segment without a common collective axis.
  let allRanks: number[] = [];
  let eachRank: number[][] = [];
  const blocking = new BlockingCollectives(emit, { lastOps, lastBlocking, lastOpOf });
  // Collectives over these axes overlap the compute of their segment (blocking.ts). Overlap needs no pipeline: a pass
  // with inputs from another stage never overlaps (the DAP pass refuses pp > 1).
  const overlappedAxes = program.overlappedAxes ?? [];
  const computeStart = new Int32Array(perStage).fill(-1);

  // Context parallelism: a segment's attention in steps (attention-phase.ts).
  const attention = new AttentionPhases(program.contextAttention, mesh, emit, variability, { lastOps, lastBlocking, lastOpOf });

  // Build in program order: for each device position, its passes in order; within a pass, its segments; for each
  // segment, every rank of the stage. Every lane then receives its operations in program order.
  for (let stage = 0; stage < pp; stage++) {
    const first = firstRank(stage);
    const reduceGroups = mesh.groupsInStage(stage, gradients.axes);
    const fetchGroups = mesh.groupsInStage(stage, states.params.shardAxes);
    allRanks = Array.from({ length: perStage }, (_, local) => first + local).filter(simulated);
    eachRank = allRanks.map((device) => [device]);
    // This stage's groups over one axis, looked up per segment without building a key.
    const byAxis = new Map<MeshAxis, number[][]>();
    const axisGroups = (axis: MeshAxis) => byAxis.get(axis) ?? (byAxis.set(axis, simulatedGroups(mesh.groupsInStage(stage, [axis]).groups)), byAxis.get(axis)!);
    order[stage].forEach((entry, index) => {
      const vs = vsOf[stage][entry.chunk];
      const v = virtualStages[vs];
      const mb = entry.microBatch;
      const pass = entry.pass;
      const isForward = pass === 'F';
      // Accumulated gradients are reduced after the last micro-batch, in buckets that overlap its backward; gradients
      // reduced every micro-batch, after each gradient pass.
      const isGradientPass = pass === gradientPass;
      const finalGradient = syncGradients && !perMicroBatch && isGradientPass && finalGradientIndex[stage].get(entry.chunk) === index;
      const reduceInline = syncGradients && perMicroBatch && isGradientPass;
      const passNs = pass === 'F' ? v.forwardNs : pass === 'B' ? v.inputGradNs : pass === 'W' ? v.weightGradNs : v.backwardNs;
      const passFlops = pass === 'F' ? v.forwardFlops : pass === 'B' ? v.inputGradFlops : pass === 'W' ? v.weightGradFlops : v.inputGradFlops + v.weightGradFlops;
      const kind = pass === 'F' ? KIND.forward : pass === 'B' ? KIND.inputGrad : pass === 'W' ? KIND.weightGrad : KIND.backward;
      // A recomputed forward runs as its own operation before the backward it serves, each segment's before that
      // segment's backward (Megatron reruns a checkpointed layer when its backward starts); its share of the pass's
      // time goes by time FLOPs. Context-parallel attention steps keep their recomputation inside them.
      const rerunShare = recomputeShare(v, pass);
      // Filled by push in every case: one array layout for the JIT (a literal and map()'s result differ).
      const segments: Segment[] = [];
      if (paramsSharded) segments.push(...blockSegments(v, isForward, gradBytes));
      else if (finalGradient || reduceInline) for (const b of buckets[vs]) segments.push(segmentOf(b.fraction, b.layers, b.gradBytes, b.params, pass === 'W' ? [] : b.collectives, pass === 'W' ? 0 : b.attention, b.ringBytes, pass === 'W' ? 0 : b.recompute));
      else segments.push(segmentOf(1, v.layers, 0, v.parametersPerDevice, isForward ? forwardGroups[vs] : pass === 'W' ? [] : backwardGroups[vs], attentionShare(v, pass), v.ringBytes, rerunShare));
      const labels = place(stage, mb, entry.chunk);
      // One label per kind of operation in this pass, shared by every rank.
      passLabel.fill(-1);
      const labelOf = (kind: number) => (passLabel[kind] >= 0 ? passLabel[kind] : (passLabel[kind] = labelAt(kind, labels)));

      segments.forEach((segment, segIndex) => {
        const ring = attention.active && segment.attention > 0;
        // Of the pass's time, this segment's recomputed forward; its FLOPs are the segment's share of the pass's.
        const rerun = ring || rerunShare === 0 ? 0 : segment.recompute;
        const rerunFlops = rerun > 0 ? (v.recomputeFlops * rerun) / rerunShare : 0;
        const computeLabel = emit.label({ kind, stage, microBatch: mb, chunk: entry.chunk, layers: segment.layers, flops: passFlops * segment.fraction - rerunFlops });
        const rerunLabel = rerun > 0 ? emit.label({ kind: KIND.recompute, stage, microBatch: mb, chunk: entry.chunk, layers: segment.layers, flops: rerunFlops }) : -1;
        const firstSegment = segIndex === 0;
        const lastSegment = segIndex === segments.length - 1;
        // Sharded parameters: gather this segment's from the group (fetching this device's shard from host memory or
        // NVMe first, with ZeRO-Infinity), at most `prefetchBlocks` segments ahead of the compute.
        const gathered: number[] = [];
        if (paramsSharded) {
          const fullBytes = segment.params * paramBytes;
          const fetchFrom = states.params.tier;
          const fetchLabel = fetchFrom === 'hbm' ? -1 : labelAt(KIND.offload, place(stage, mb));
          for (const members of simulatedGroups(fetchGroups.groups)) {
            const shardBytes = fullBytes / members.length;
            const fetches = members.map((device) => {
              if (fetchFrom === 'hbm' || !simulated(device)) return -1;
              const fetch = emit.offloadTransfer(device, emit.hostVertex(device, fetchFrom), device, shardBytes, fetchLabel);
              g.memory(fetch, resources.hbm(device), CATEGORY.buffers, shardBytes, AT_START);
              const history = computeHistory[device];
              const window = history.length - 1 - states.prefetchBlocks;
              if (window >= 0) g.dependOn(fetch, history[window]);
              return fetch;
            });
            const ag = emit.collective('allGather', members, fullBytes, 1, LANE.gather, labelOf(KIND.allGather));
            members.forEach((device, d) => {
              if (!simulated(device)) return;
              const history = computeHistory[device];
              const window = history.length - 1 - states.prefetchBlocks;
              if (window >= 0) g.dependOn(ag, history[window]);
              if (fetches[d] >= 0) {
                g.dependOn(ag, fetches[d]);
                g.memory(ag, resources.hbm(device), CATEGORY.buffers, -shardBytes, AT_END);
              }
              g.memory(ag, resources.hbm(device), CATEGORY.buffers, fullBytes, AT_START);
            });
            gathered[fetchGroups.groupOf[members[0] - first]] = ag;
          }
        }
        // Attention split into context-parallel steps runs as operations of its own after the rest of the segment.
        const segmentNs = Math.round(passNs * (ring ? segment.fraction - segment.attention : segment.fraction));
        const rerunNs = rerun > 0 ? Math.round(passNs * rerun) : 0;
        // Each rank's compute, then the segment's blocking collectives: group by group when they all run over one
        // mesh axis (a tensor-parallel group's compute and its collectives together), else after the whole stage.
        const collectives = segment.collectives;
        const axis = collectives.length > 0 && collectives.every((c) => c.axis === collectives[0].axis) ? collectives[0].axis : undefined;
        const groups = ring || collectives.length === 0 ? eachRank : axis === undefined ? [allRanks] : axisGroups(axis);
        const freesActivations = !isForward && lastSegment;
        const overlapped = axis !== undefined && !ring && overlappedAxes.includes(axis) && pp === 1;
        const markLabel = overlapped ? emit.label({ kind, stage, microBatch: mb, chunk: entry.chunk, layers: 0, flops: 0 }) : -1;
        for (let gi = 0; gi < groups.length; gi++) {
          const members = groups[gi];
          for (let m = 0; m < members.length; m++) {
            const device = members[m];
            const local = device - first;
            if (overlapped) {
              computeStart[local] = g.operation(markLabel, device, 0);
              g.lane(resources.lane(device, LANE.compute));
            }
            // The graph's calls directly: this loop adds most of a large step's operations.
            let rerunOp = -1;
            if (rerun > 0) {
              rerunOp = g.operation(rerunLabel, device, variability.vary(rerunNs, device));
              g.lane(resources.lane(device, LANE.compute));
            }
            const op = g.operation(computeLabel, device, variability.vary(segmentNs - rerunNs, device));
            g.lane(resources.lane(device, LANE.compute));
            // What the compute waits for: an overlapped compute's start, or its recomputed forward, takes its waits
            // (the lane orders them).
            const firstOp = rerunOp >= 0 ? rerunOp : op;
            const waits = overlapped ? computeStart[local] : firstOp;
            if (lastBlocking[device] >= 0) g.dependOn(waits, lastBlocking[device]);
            const k = key(local, vs, mb);
            const hbm = resources.hbm(device);
            if (paramsSharded) {
              g.dependOn(waits, gathered[fetchGroups.groupOf[local]]);
              // The gathered parameters are released once the segment's compute has used them.
              g.memory(op, hbm, CATEGORY.buffers, -segment.params * paramBytes, AT_END);
              computeHistory[device].push(op);
            }
            // Gradients reduced every micro-batch are double-buffered: a segment waits until the gradients of the
            // segment before last have left, so a slow reduction or offload stalls the backward instead of piling up buffers.
            if (reduceInline) {
              g.memory(op, hbm, CATEGORY.buffers, segment.gradBytes, AT_START);
              const sent = gradientSync[device];
              if (sent.length >= 2) g.dependOn(waits, sent[sent.length - 2]);
            }
            if (firstSegment) {
              if (pass !== 'W') {
                const direction = isForward ? FORWARD : BACKWARD;
                // A recomputed forward starts when the backward's input has arrived, as Megatron reruns it inside the backward.
                consumers[direction][k] = firstOp;
                readers[direction][k] = op;
                linkInput(direction, vs, k, device);
              }
              if (pass === 'B' || pass === 'BW') {
                g.dependOn(waits, forwardOp[k]);
                if (v.recomputeBytes > 0) g.memory(firstOp, hbm, CATEGORY.activations, v.recomputeBytes, AT_START);
              }
              if (pass === 'W') g.dependOn(waits, inputGradOp[k]);
              if (isForward) {
                forwardOp[k] = op;
                g.memory(op, hbm, CATEGORY.activations, v.activationBytes + v.forwardWorkingBytes, AT_START);
              }
            }
            if (isForward && lastSegment && v.forwardWorkingBytes > 0) g.memory(op, hbm, CATEGORY.activations, -v.forwardWorkingBytes, AT_END);
            if (freesActivations && !ring) g.memory(op, hbm, CATEGORY.activations, -freedBy(v, pass), AT_END);
            if (pass === 'B' && lastSegment && !ring) inputGradOp[k] = op;
            lastOps[local] = op;
            lastBlocking[device] = -1;
            lastOpOf[device] = op;
          }
          if (axis !== undefined && !ring) blocking.after(collectives, members, first, labelOf, overlapped ? computeStart : undefined);
          if (overlapped) blocking.join(members, first, markLabel);
        }
        if (ring) {
          const last = attention.run(segment, passNs, kind, labels, isForward, first);
          for (let local = 0; local < perStage; local++) {
            if (freesActivations) g.memory(last[local], resources.hbm(first + local), CATEGORY.activations, -freedBy(v, pass), AT_END);
            if (pass === 'B' && lastSegment) inputGradOp[key(local, vs, mb)] = last[local];
          }
          if (axis !== undefined) for (const members of axisGroups(axis)) blocking.after(collectives, members, first, labelOf);
        }
        if (collectives.length > 0 && axis === undefined) {
          // Over several axes: each collective over each of its groups, after what each member did last.
          for (const c of collectives) for (const members of axisGroups(c.axis)) blocking.after([c], members, first, labelOf);
        }
        if (finalGradient) bucketReady.set(`${stage}:${entry.chunk}:${segIndex}`, lastOps.slice());
        // Gradients reduced every micro-batch go as soon as every member of the group has them.
        if (reduceInline && segment.gradBytes > 0) for (const members of simulatedGroups(reduceGroups.groups)) reduceGradients(members, segment.gradBytes, members.map((d) => lastOps[d - first]), labels);
      });
      if (pass === 'W') return;
      // The pass's output goes to the neighbouring virtual stage: activations forward, input gradients backward.
      const peerVs = isForward ? vs + 1 : vs - 1;
      if (peerVs < 0 || peerVs > lastVs) return;
      const peerStage = virtualStages[peerVs].stage;
      const direction = isForward ? FORWARD : BACKWARD;
      const bytes = isForward ? v.sendForwardBytes : v.sendBackwardBytes;
      const next = (stage + 1) % pp === peerStage;
      const receiveLane = next ? LANE.recvPrev : LANE.recvNext;
      // Megatron's scatter/gather: a tensor every tensor-parallel rank holds goes as 1/t from each, then is gathered.
      const split = scatterGather.split(isForward ? v.sendForwardReplicas : v.sendBackwardReplicas, peerStage !== stage);
      for (let local = 0; local < perStage; local++) {
        const device = first + local;
        if (!simulated(device)) continue;
        const k = key(local, peerVs, mb);
        const peer = firstRank(peerStage) + local;
        if (peer === device) {
          inputs[direction][k] = lastOps[local];
        } else {
          // Each lane pair carries one sender's transfers to one receiver, in the sender's order.
          const piece = bytes / split;
          const sent = emit.transfer(device, peer, piece, next ? LANE.sendNext : LANE.sendPrev, receiveLane, labelOf(KIND.p2p), p2pSeconds, training.transferOverheadSeconds);
          g.dependOn(sent, lastOps[local]);
          if (lastBlocking[device] >= 0 && lastBlocking[device] !== lastOps[local]) g.dependOn(sent, lastBlocking[device]);
          g.memory(sent, resources.hbm(peer), CATEGORY.buffers, piece, AT_START);
          inputs[direction][k] = sent;
          viaTransfer[direction][k] = 1;
        }
        if (split === 1) linkInput(direction, peerVs, k, peer);
      }
      if (split > 1) {
        scatterGather.gather(peerStage, vs, direction, bytes, split, receiveLane, labelOf(KIND.allGather), (peer, gather) => {
          const k = key(peer - firstRank(peerStage), peerVs, mb);
          g.dependOn(gather, inputs[direction][k]);
          inputs[direction][k] = gather;
          linkInput(direction, peerVs, k, peer);
        });
      }
    });
    // The reduction of each gradient bucket of this device position, in the order the buckets become ready.
    if (syncGradients && !perMicroBatch) {
      const chunkOrder = [...finalGradientIndex[stage].entries()].sort((a, b) => a[1] - b[1]).map(([chunk]) => chunk);
      for (const chunk of chunkOrder) {
        const vs = vsOf[stage][chunk];
        buckets[vs].forEach((bucket, segIndex) => {
          const ready = bucketReady.get(`${stage}:${chunk}:${segIndex}`)!;
          for (const members of simulatedGroups(reduceGroups.groups)) reduceGradients(members, bucket.gradBytes, members.map((d) => ready[d - first]), place(stage, -1, chunk));
        });
      }
    }
  }

  const end = finishStep({ config, program, emit, stages, virtualStages, variability, gradientSync, lastOpOf, labelAt: (kind, stage) => labelAt(kind, place(stage)) });
  const peakFlopsPerDevice = peakFlopsPerSecond(cluster.gpu, training.precision);
  // Every rank of a stage (tensor, sequence, context and data-parallel) runs its share of each micro-batch.
  const modelFlops = virtualStages.reduce((sum, v) => sum + (forwardsEach * v.forwardFlops + v.modelBackwardFlops) * perStage, 0) * microBatches;
  const hardwareFlops = virtualStages.reduce((sum, v) => sum + (forwardsEach * v.forwardFlops + v.inputGradFlops + v.weightGradFlops) * perStage, 0) * microBatches;
  return {
    config,
    program,
    mesh,
    resources,
    graph: g.build(),
    labels: emit.labels.build(),
    baseline: end.baseline,
    capacities: end.capacities,
    microBatches,
    stages,
    virtualStages,
    order,
    parameters: modelParameters(config.model),
    modelFlops,
    hardwareFlops,
    peakFlopsPerDevice,
    symmetry,
  };
}
