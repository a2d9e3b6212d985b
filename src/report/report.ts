import type { ExecutionResult } from '../engine/executor.js';
import { NANOSECONDS_PER_SECOND } from '../engine/kernel.js';
import type { MemoryTracker } from '../engine/memory.js';
import { LINK_TYPES, type LinkType, type Topology } from '../hardware/topology.js';
import type { Scenario } from '../scenario/resolve.js';
import type { OperationGraph } from '../engine/graph.js';
import type { StepPlan } from '../lower/lower.js';
import type { Coordinates } from '../strategies/mesh.js';
import { CATEGORIES, KIND, LANE, OP_KINDS, TIERS, TRANSFER_KINDS, type Category, type Tier, type TransferKind } from '../lower/resources.js';
import { VERSION } from '../version.js';
import { isGpt } from '../workload/registry.js';

/**
 * The report of one simulated step: plain data, every time in seconds, every
 * size in bytes, every rate per second. docs/report.md documents each field.
 * Figures come from the executed timeline, never from closed forms.
 */
/** The model as the report states it: a GPT-shaped transformer's dimensions, or an Evoformer's (kind `evoformer`). */
export type ModelSummary =
  | { name: string; kind?: undefined; parameters: number; layers: number; hidden: number; heads: number; seqLength: number; vocab: number }
  | { name: string; kind: 'evoformer'; parameters: number; layers: number; extraLayers: number; residues: number; msaRows: number; extraMsaRows: number; recycles: number }
  | { name: string; kind: 'vit'; parameters: number; layers: number; grid: number[]; window: number[]; channels: number[] };

export interface DeviceReport {
  rank: number;
  node: number;
  /** The GPU's place on each axis of the device mesh: tp, dp and pp always, and any other axis in use. */
  coordinates: Coordinates;
  /** Seconds the compute lane ran operations. */
  busyTime: number;
  /** stepTime - busyTime, seconds. */
  idleTime: number;
  /** idleTime / stepTime. */
  bubbleFraction: number;
  /** Bytes; cpu and nvme are the device's node's (shared by its GPUs). */
  peakMemory: Record<Tier, number>;
  /** HBM bytes by category at this device's HBM peak. */
  memoryBreakdown: Record<Category, number>;
  /** Bytes this device sent during the step. */
  sentBytes: number;
  /** Seconds during which this device's communication or offload lanes were busy and its compute lane idle. */
  exposedCommunicationTime: number;
}

export interface OverflowReport {
  tier: Tier;
  /** Device rank for hbm; node index for cpu and nvme. */
  device?: number;
  node?: number;
  capacity: number;
  /** Largest excess over capacity, bytes. */
  excess: number;
  /** When usage first went over capacity, seconds into the step. */
  firstAt: number;
  /** When the largest excess happened, seconds. */
  maxAt: number;
}

export interface StageReport {
  stage: number;
  layers: number;
  /** Parameters held by each device of the stage. */
  parametersPerDevice: number;
  /** Highest activation bytes any device of the stage held, bytes. */
  peakActivations: number;
  /** Highest HBM bytes any device of the stage used, bytes. */
  peakHbm: number;
  /** Mean bubble fraction over the stage's devices. */
  bubbleFraction: number;
}

export interface Report {
  name: string;
  seed: number;
  version: string;
  units: { time: 'seconds'; memory: 'bytes'; communication: 'bytes'; throughput: 'per second' };
  /** Seconds per optimizer step. */
  stepTime: number;
  /** Mean over devices of compute-idle time / stepTime. */
  bubbleFraction: number;
  /** Mean over devices of the seconds communication or offloading ran while compute was idle. */
  exposedCommunicationTime: number;
  /**
   * The zero-bubble paper's bubble rate: over each device's span from its first to its last forward or
   * backward, the idle share; the largest over devices. It leaves out the pipeline's fill and drain offsets.
   */
  pipelineBubbleRate: number;
  throughput: {
    /** Samples (sequences, or proteins for an Evoformer) of the global batch per second of step time. */
    samplesPerSecond: number;
    /** Tokens per second, for a model of token sequences (absent for an Evoformer). */
    tokensPerSecond?: number;
    /** Model FLOPs (no recompute) per second per device, in TFLOP/s. */
    tflopsPerDevice: number;
    /** Model FLOPs / (stepTime x devices x peak). */
    mfu: number;
    /** Hardware FLOPs (recompute included) / (stepTime x devices x peak). */
    hfu: number;
  };
  /** What ran: enough to read the report without the scenario. */
  cluster: { nodes: number; gpusPerNode: number; gpu: string; node: string; devices: number };
  model: ModelSummary;
  parallel: {
    tp: number;
    pp: number;
    dp: number;
    /** Sizes of the device mesh's axes. */
    mesh: Coordinates;
    sequenceParallel: boolean;
    zero: number;
    schedule: string;
    chunks: number;
    microBatches: number;
    microBatch: number;
    globalBatch: number;
  };
  memory: {
    /** Highest use of any location of each tier, bytes. */
    peak: Record<Tier, number>;
    /** Capacity of one location of each tier, bytes. */
    capacity: Record<Tier, number>;
    fits: boolean;
    /** Device with the highest HBM peak. */
    worstDevice: number;
    /** Bytes by category at the peak of the fullest location of each tier: what lives on HBM, host memory, NVMe. */
    breakdown: Record<Tier, Record<Category, number>>;
    overflows: OverflowReport[];
  };
  communication: {
    /** All bytes sent, bytes. */
    bytes: number;
    /** By operation: collectives, pipeline p2p, offload transfers between HBM, host memory and NVMe, and Ring Attention's key/value blocks (ring). */
    byKind: Record<TransferKind, number>;
    /** Each transfer's bytes under the widest-reaching link type its path crosses. */
    byLinkType: Record<LinkType, number>;
    /** byKind split by link type, as byLinkType counts them. */
    byKindAndLinkType: Record<TransferKind, Record<LinkType, number>>;
  };
  stages: StageReport[];
  devices: DeviceReport[];
  /** Things a reader should check: implausible inputs, results outside physical limits. */
  warnings: string[];
  /**
   * What the engine ran: operations and events; and, when the step's replica symmetry was used (simulate's
   * `symmetry` option), the data-parallel replicas simulated of all, every other one mirroring one of them.
   */
  simulation: { operations: number; events: number; devices: number; replicas?: { simulated: number; of: number } };
}

export interface ReportInput {
  scenario: Scenario;
  topology: Topology;
  plan: StepPlan;
  execution: ExecutionResult;
  memory: MemoryTracker;
}

/** A simulated step with its report: what traces and timelines are drawn from. */
export interface SimulatedStep extends ReportInput {
  report: Report;
}

const zeroRecord = <K extends string>(keys: readonly K[]) => Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;

export function buildReport({ scenario, topology, plan, execution, memory }: ReportInput): Report {
  const { resources: layout, graph, mesh } = plan;
  const stepNs = execution.makespanNs;
  const stepTime = stepNs / NANOSECONDS_PER_SECOND;
  const categories = CATEGORIES.length;

  const { totalBytes, bytesByKind, bytesByKindAndLinkType, bytesByLinkType, sent, spanStart, spanEnd, spanBusy } = sumOperations(graph, plan.labels.kind, execution, topology, layout.devices, plan.symmetry?.mirrorOf);
  // The only compute operation with flows is a host optimizer streaming its states through NVMe: offload traffic.
  const byKind = zeroRecord(TRANSFER_KINDS);
  const byKindAndLinkType = Object.fromEntries(TRANSFER_KINDS.map((kind) => [kind, zeroRecord(LINK_TYPES)])) as Record<TransferKind, Record<LinkType, number>>;
  OP_KINDS.forEach((kind, i) => {
    const named = (TRANSFER_KINDS as readonly string[]).includes(kind) ? (kind as TransferKind) : 'offload';
    byKind[named] += bytesByKind[i];
    LINK_TYPES.forEach((type, t) => (byKindAndLinkType[named][type] += bytesByKindAndLinkType[i * LINK_TYPES.length + t]));
  });
  const byLinkType = zeroRecord(LINK_TYPES);
  LINK_TYPES.forEach((type, i) => (byLinkType[type] = bytesByLinkType[i]));

  let pipelineBubbleRate = 0;
  for (let d = 0; d < layout.devices; d++) {
    const span = spanEnd[d] - spanStart[d];
    if (span > 0) pipelineBubbleRate = Math.max(pipelineBubbleRate, (span - spanBusy[d]) / span);
  }

  // Measured by the executor on each device's lanes, as simulate() asks (resources.communicationExposure()).
  const exposed = execution.exposedNs;
  if (exposed.length !== layout.devices) throw new Error('the step was executed without measuring exposed communication per device');

  const devices: DeviceReport[] = [];
  let bubbleSum = 0;
  let worstDevice = 0;
  for (let d = 0; d < layout.devices; d++) {
    const node = layout.nodeOf(d);
    const busyNs = execution.laneBusyNs[layout.lane(d, LANE.compute)];
    const bubble = stepNs > 0 ? (stepNs - busyNs) / stepNs : 0;
    bubbleSum += bubble;
    const hbm = layout.hbm(d);
    if (memory.peak[hbm] > memory.peak[layout.hbm(worstDevice)]) worstDevice = d;
    const breakdown = zeroRecord(CATEGORIES);
    CATEGORIES.forEach((cat, i) => (breakdown[cat] = memory.peakByCategory[hbm * categories + i]));
    devices.push({
      rank: d,
      node,
      coordinates: mesh.coordinates(d),
      busyTime: busyNs / NANOSECONDS_PER_SECOND,
      idleTime: (stepNs - busyNs) / NANOSECONDS_PER_SECOND,
      bubbleFraction: bubble,
      peakMemory: { hbm: memory.peak[hbm], cpu: memory.peak[layout.cpu(node)], nvme: memory.peak[layout.nvme(node)] },
      memoryBreakdown: breakdown,
      sentBytes: sent[d],
      exposedCommunicationTime: exposed[d] / NANOSECONDS_PER_SECOND,
    });
  }

  const peak = zeroRecord(TIERS);
  const fullest = { hbm: -1, cpu: -1, nvme: -1 } as Record<Tier, number>;
  for (let loc = 0; loc < layout.locationCount; loc++) {
    const tier = layout.tierOf(loc);
    if (fullest[tier] < 0 || memory.peak[loc] > peak[tier]) {
      peak[tier] = Math.max(peak[tier], memory.peak[loc]);
      fullest[tier] = loc;
    }
  }
  const breakdown = Object.fromEntries(
    TIERS.map((tier) => {
      const b = zeroRecord(CATEGORIES);
      if (fullest[tier] >= 0) CATEGORIES.forEach((cat, i) => (b[cat] = memory.peakByCategory[fullest[tier] * categories + i]));
      return [tier, b];
    }),
  ) as Record<Tier, Record<Category, number>>;
  const overflows: OverflowReport[] = memory.overflows.map((o) => {
    const tier = layout.tierOf(o.location);
    const where = tier === 'hbm' ? { device: o.location } : { node: layout.nodeOfLocation(o.location) };
    return {
      tier,
      ...where,
      capacity: plan.capacities[o.location],
      excess: o.maxExcessBytes,
      firstAt: o.firstAtNs / NANOSECONDS_PER_SECOND,
      maxAt: o.maxAtNs / NANOSECONDS_PER_SECOND,
    };
  });

  const activations = CATEGORIES.indexOf('activations');
  const stages: StageReport[] = plan.stages.map((s) => {
    const members = devices.filter((d) => d.coordinates.pp === s.stage);
    return {
      stage: s.stage,
      layers: s.layers,
      parametersPerDevice: s.parametersPerDevice,
      peakActivations: Math.max(...members.map((d) => memory.categoryPeak[layout.hbm(d.rank) * categories + activations])),
      peakHbm: Math.max(...members.map((d) => d.peakMemory.hbm)),
      bubbleFraction: members.reduce((a, d) => a + d.bubbleFraction, 0) / members.length,
    };
  });

  const { training, parallel, model } = scenario;
  const deviceSeconds = stepTime * layout.devices;
  const warnings: string[] = [];
  const hfu = deviceSeconds > 0 ? plan.hardwareFlops / (deviceSeconds * plan.peakFlopsPerDevice) : 0;
  if (hfu > 1) {
    warnings.push(
      `the step runs the model's FLOPs at ${(hfu * 100).toFixed(0)}% of the GPUs' peak, which no hardware can: ${scenario.costs ? 'the profiled costs are too short for this model' : 'check the GPU peak and efficiency'}`,
    );
  }
  if (scenario.variability.jitter > 0 || scenario.variability.stragglers > 0) warnings.push('variability is on: durations carry seeded noise, so figures vary with the seed');
  // Configurations that run, but that the real frameworks refuse or that run badly.
  if (parallel.tp > scenario.cluster.gpusPerNode) {
    warnings.push(`tensor parallelism over ${parallel.tp} GPUs spans nodes of ${scenario.cluster.gpusPerNode}: its blocking collectives cross the inter-node network every layer; Megatron keeps tp within a node`);
  }
  if (isGpt(model) && parallel.tp > model.kvHeads) {
    warnings.push(`tp = ${parallel.tp} exceeds the ${model.kvHeads} key/value heads: each is replicated on ${parallel.tp / model.kvHeads} GPUs, as Megatron does, computing and storing them ${parallel.tp / model.kvHeads} times`);
  }
  return {
    name: scenario.name,
    seed: scenario.seed,
    version: VERSION,
    units: { time: 'seconds', memory: 'bytes', communication: 'bytes', throughput: 'per second' },
    stepTime,
    bubbleFraction: bubbleSum / layout.devices,
    exposedCommunicationTime: devices.reduce((a, d) => a + d.exposedCommunicationTime, 0) / layout.devices,
    pipelineBubbleRate,
    throughput: {
      samplesPerSecond: stepTime > 0 ? training.globalBatch / stepTime : 0,
      ...(isGpt(model) ? { tokensPerSecond: stepTime > 0 ? (training.globalBatch * model.seqLength) / stepTime : 0 } : {}),
      tflopsPerDevice: deviceSeconds > 0 ? plan.modelFlops / deviceSeconds / 1e12 : 0,
      mfu: deviceSeconds > 0 ? plan.modelFlops / (deviceSeconds * plan.peakFlopsPerDevice) : 0,
      hfu,
    },
    cluster: { nodes: scenario.cluster.nodes, gpusPerNode: scenario.cluster.gpusPerNode, gpu: scenario.cluster.gpu.name, node: scenario.cluster.node.name, devices: layout.devices },
    model:
      model.kind === 'evoformer'
        ? { name: model.name, kind: 'evoformer', parameters: plan.parameters, layers: model.layers, extraLayers: model.extraLayers, residues: model.residues, msaRows: model.msaRows, extraMsaRows: model.extraMsaRows, recycles: training.recycles }
        : model.kind === 'vit'
          ? { name: model.name, kind: 'vit', parameters: plan.parameters, layers: model.layers, grid: [...model.grid], window: [...model.window], channels: model.stages.map((s) => s.channels) }
          : { name: model.name, parameters: plan.parameters, layers: model.layers, hidden: model.hidden, heads: model.heads, seqLength: model.seqLength, vocab: model.vocab },
    parallel: {
      tp: parallel.tp,
      pp: parallel.pp,
      dp: parallel.dp,
      mesh: mesh.sizes(),
      sequenceParallel: parallel.sequenceParallel,
      zero: parallel.zero,
      schedule: parallel.schedule,
      chunks: parallel.chunks,
      microBatches: plan.microBatches,
      microBatch: training.microBatch,
      globalBatch: training.globalBatch,
    },
    memory: {
      peak,
      capacity: { hbm: scenario.cluster.gpu.memoryBytes, cpu: scenario.cluster.node.hostMemoryBytes, nvme: scenario.cluster.node.nvmeBytes },
      fits: overflows.length === 0,
      worstDevice,
      breakdown,
      overflows,
    },
    communication: { bytes: totalBytes, byKind, byLinkType, byKindAndLinkType },
    stages,
    devices,
    warnings,
    simulation: {
      operations: graph.count,
      events: execution.eventsProcessed,
      devices: layout.devices,
      ...(plan.symmetry ? { replicas: { simulated: plan.symmetry.replicas, of: plan.symmetry.of } } : {}),
    },
  };
}

/**
 * One pass over the operations: bytes by kind and link type, per device (the sender's, or for a flow from host memory
 * or NVMe the operation's); bytes each device sent; each device's span of forward and backward passes and its
 * compute time within it. Totals are summed over devices, in device order, so that a step simulated with its replica
 * symmetry, whose mirrored devices copy their counterparts' rows (`mirrorOf`), sums to the same bits. A function of
 * its own, not a loop inside buildReport, so that the JIT optimises it in a few milliseconds instead of compiling
 * all of buildReport while the loop runs slowly.
 */
function sumOperations(graph: OperationGraph, kindOf: Uint8Array, execution: ExecutionResult, topology: Topology, devices: number, mirrorOf: Int32Array | undefined) {
  const kinds = OP_KINDS.length;
  const types = LINK_TYPES.length;
  const row = kinds * types;
  const deviceBytes = new Float64Array(devices * row);
  const linkTypeIndex = new Map(LINK_TYPES.map((t, i) => [t, i]));
  const sent = new Float64Array(devices);
  // Flows repeat the same few (source, target) pairs every micro-batch: a small direct-mapped cache of their path's
  // link type saves a route per flow.
  const CACHE = 4096;
  const cachedSource = new Int32Array(CACHE).fill(-1);
  const cachedTarget = new Int32Array(CACHE);
  const cachedType = new Int32Array(CACHE);
  const spanStart = new Float64Array(devices).fill(Infinity);
  const spanEnd = new Float64Array(devices).fill(-Infinity);
  const spanBusy = new Float64Array(devices);
  const { flowStart, flowSize, flowSource, flowTarget, label: labelOf, device: deviceOf } = graph;
  const sizeBytes = graph.flowSizes.bytes;
  const { startNs, endNs } = execution;
  for (let op = 0; op < graph.count; op++) {
    const kind = kindOf[labelOf[op]];
    const d = deviceOf[op];
    const last = flowStart[op + 1];
    for (let i = flowStart[op]; i < last; i++) {
      const bytes = sizeBytes[flowSize[i]];
      const source = flowSource[i];
      const target = flowTarget[i];
      const slot = (Math.imul(source, 40503) ^ target) & (CACHE - 1);
      if (cachedSource[slot] !== source || cachedTarget[slot] !== target) {
        cachedSource[slot] = source;
        cachedTarget[slot] = target;
        cachedType[slot] = linkTypeIndex.get(topology.pathType(source, target))!;
      }
      const owner = source < devices ? source : d;
      deviceBytes[owner * row + kind * types + cachedType[slot]] += bytes;
      if (source < devices) sent[source] += bytes;
    }
    if (kind !== KIND.forward && kind !== KIND.backward && kind !== KIND.inputGrad && kind !== KIND.weightGrad && kind !== KIND.recompute) continue;
    const start = startNs[op];
    const end = endNs[op];
    if (start < spanStart[d]) spanStart[d] = start;
    if (end > spanEnd[d]) spanEnd[d] = end;
    spanBusy[d] += end - start;
  }
  if (mirrorOf) {
    for (let d = 0; d < devices; d++) {
      const from = mirrorOf[d];
      if (from === d) continue;
      deviceBytes.copyWithin(d * row, from * row, (from + 1) * row);
      for (const column of [sent, spanStart, spanEnd, spanBusy]) column[d] = column[from];
    }
  }
  const bytesByKind = new Float64Array(kinds);
  const bytesByLinkType = new Float64Array(types);
  const bytesByKindAndLinkType = new Float64Array(row);
  let totalBytes = 0;
  for (let d = 0; d < devices; d++) {
    for (let k = 0; k < kinds; k++) {
      for (let t = 0; t < types; t++) {
        const bytes = deviceBytes[d * row + k * types + t];
        if (bytes === 0) continue;
        totalBytes += bytes;
        bytesByKind[k] += bytes;
        bytesByLinkType[t] += bytes;
        bytesByKindAndLinkType[k * types + t] += bytes;
      }
    }
  }
  return { totalBytes, bytesByKind, bytesByKindAndLinkType, bytesByLinkType, sent, spanStart, spanEnd, spanBusy };
}
