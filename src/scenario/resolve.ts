import { GPU_PRESETS, HOST_OVERHEAD_PER_LAYER, NODE_PRESETS, type GpuSpec, type NodeSpec } from '../hardware/presets.js';
import type { ClusterSpec } from '../hardware/topology.js';
import { MODEL_PRESETS } from '../workload/presets.js';
import type { ModelSpec, Recompute } from '../workload/transformer.js';
import type { ScenarioInput } from './schema.js';

/**
 * A scenario with every preset resolved and every default filled: plain,
 * serialisable data, in base units (bytes, seconds, bytes/s, FLOP/s).
 */
export interface Scenario {
  name: string;
  description?: string;
  seed: number;
  cluster: ClusterSpec & { collectiveStepLatencySeconds: number };
  model: ModelSpec;
  training: {
    globalBatch: number;
    microBatch: number;
    precision: 'fp32' | 'fp16' | 'bf16';
    optimizer: 'adam' | 'adamw' | 'sgd';
    recompute: Recompute;
    flashAttention: boolean;
    /** Host time to issue one layer's forward kernels, seconds. */
    hostOverheadPerLayerSeconds: number;
  };
  parallel: {
    tp: number;
    pp: number;
    dp: number;
    schedule: string;
    chunks: number;
    /** Transformer layers on each pipeline stage. */
    layersPerStage: number[];
    gradientBucketBytes: number;
    /** ZeRO stage over the data-parallel group. */
    zero: 0 | 1 | 2 | 3;
    /** ZeRO-3: layers whose parameters are gathered ahead of the one computing. */
    prefetchLayers: number;
    offload: { optimizer: 'none' | 'cpu' | 'nvme'; params: 'none' | 'cpu' | 'nvme'; pinnedBufferBytes: number };
  };
  /** Profiled times, seconds per micro-batch, one entry per stage. */
  costs?: {
    forwardSeconds?: number[];
    backwardSeconds?: number[];
    weightGradSeconds?: number[];
    p2pSeconds?: number;
    optimizerSeconds?: number;
  };
  variability: { jitter: number; stragglers: number; stragglerSlowdown: number };
}

/** A problem found while resolving, with the field path it belongs to. */
export interface PathIssue {
  path: (string | number)[];
  message: string;
}

/** What a schedule needs to judge a configuration. */
export interface ScheduleShape {
  pp: number;
  chunks: number;
  microBatches: number;
  layersPerStage: number[];
}

/** The registered schedules, passed in so this layer does not depend on strategies. */
export interface ResolveContext {
  schedules: readonly string[];
  /** Problems a schedule has with a configuration, as paths and messages. */
  checkSchedule(name: string, shape: ScheduleShape): PathIssue[];
  /** Whether a schedule splits the backward into B and W. */
  splitsBackward(name: string): boolean;
}

export function resolveScenario(input: ScenarioInput, context: ResolveContext): { scenario?: Scenario; issues: PathIssue[] } {
  const issues: PathIssue[] = [];
  const fail = (path: (string | number)[], message: string) => issues.push({ path, message });

  // Node and GPU.
  const nodeInput = input.cluster.node;
  const nodeBase = NODE_PRESETS[nodeInput.preset ?? 'dgx-a100'];
  const node: NodeSpec = {
    ...nodeBase,
    nvswitch: nodeInput.nvswitch ?? nodeBase.nvswitch,
    nvlinkLatencySeconds: nodeInput.nvlinkLatency ?? nodeBase.nvlinkLatencySeconds,
    pcie: { bandwidthBytesPerSecond: nodeInput.pcie?.bandwidth ?? nodeBase.pcie.bandwidthBytesPerSecond, latencySeconds: nodeInput.pcie?.latency ?? nodeBase.pcie.latencySeconds },
    gpusPerPcieSwitch: nodeInput.gpusPerPcieSwitch ?? nodeBase.gpusPerPcieSwitch,
    nics: nodeInput.nics ?? nodeBase.nics,
    nic: { bandwidthBytesPerSecond: nodeInput.nic?.bandwidth ?? nodeBase.nic.bandwidthBytesPerSecond, latencySeconds: nodeInput.nic?.latency ?? nodeBase.nic.latencySeconds },
    hostMemoryBytes: nodeInput.hostMemory ?? nodeBase.hostMemoryBytes,
    hostOptimizerParamsPerSecond: nodeInput.hostOptimizerRate ?? nodeBase.hostOptimizerParamsPerSecond,
    nvmeBytes: nodeInput.nvme?.capacity ?? nodeBase.nvmeBytes,
    nvmeReadBytesPerSecond: nodeInput.nvme?.readBandwidth ?? nodeBase.nvmeReadBytesPerSecond,
    nvmeWriteBytesPerSecond: nodeInput.nvme?.writeBandwidth ?? nodeBase.nvmeWriteBytesPerSecond,
    nvmeLatencySeconds: nodeInput.nvme?.latency ?? nodeBase.nvmeLatencySeconds,
  };
  const gpuInput = input.cluster.gpu ?? {};
  const gpuBase = GPU_PRESETS[gpuInput.preset ?? node.gpu];
  const gpu: GpuSpec = {
    ...gpuBase,
    flopsPerSecond: gpuInput.flops ?? gpuBase.flopsPerSecond,
    fp32FlopsPerSecond: gpuInput.fp32Flops ?? gpuBase.fp32FlopsPerSecond,
    memoryBytes: gpuInput.memory ?? gpuBase.memoryBytes,
    memoryBandwidthBytesPerSecond: gpuInput.memoryBandwidth ?? gpuBase.memoryBandwidthBytesPerSecond,
    nvlinkBandwidthBytesPerSecond: gpuInput.nvlinkBandwidth ?? gpuBase.nvlinkBandwidthBytesPerSecond,
    computeEfficiency: gpuInput.computeEfficiency ?? gpuBase.computeEfficiency,
    memoryEfficiency: gpuInput.memoryEfficiency ?? gpuBase.memoryEfficiency,
    efficiencyHalfSize: gpuInput.efficiencyHalfSize ?? gpuBase.efficiencyHalfSize,
  };
  const gpusPerNode = input.cluster.gpusPerNode ?? node.gpusPerNode;
  const devices = input.cluster.nodes * gpusPerNode;

  // Model.
  const m = input.model;
  const base = m.preset ? MODEL_PRESETS[m.preset] : undefined;
  const required = ['layers', 'hidden', 'heads', 'vocab', 'seqLength'] as const;
  if (!base) for (const key of required) if (m[key] === undefined) fail(['model', key], 'missing required field (or give model.preset)');
  const hidden = m.hidden ?? base?.hidden ?? 1;
  const heads = m.heads ?? base?.heads ?? 1;
  const model: ModelSpec = {
    name: m.preset ?? 'custom',
    layers: m.layers ?? base?.layers ?? 1,
    hidden,
    heads,
    kvHeads: m.kvHeads ?? (m.heads === undefined ? base?.kvHeads : undefined) ?? heads,
    ffnHidden: m.ffnHidden ?? (m.hidden === undefined ? base?.ffnHidden : undefined) ?? 4 * hidden,
    vocab: m.vocab ?? base?.vocab ?? 1,
    seqLength: m.seqLength ?? base?.seqLength ?? 1,
    mlp: m.mlp ?? base?.mlp ?? 'gelu',
    tiedEmbeddings: m.tiedEmbeddings ?? base?.tiedEmbeddings ?? true,
    positionEmbedding: m.positionEmbedding ?? base?.positionEmbedding ?? 'learned',
  };
  if (hidden % heads !== 0) fail(['model', 'hidden'], `hidden size ${hidden} must be divisible by heads (${heads})`);
  if (heads % model.kvHeads !== 0) fail(['model', 'kvHeads'], `heads (${heads}) must be divisible by kvHeads (${model.kvHeads})`);

  // Parallelism.
  const p = input.parallel;
  const { tp, pp, chunks } = p;
  const dp = p.dp ?? Math.max(1, Math.floor(devices / (tp * pp)));
  if (tp * pp * dp !== devices) {
    const where = p.dp === undefined ? ['parallel', 'tp'] : ['parallel', 'dp'];
    fail(where, `tp x pp x dp = ${tp} x ${pp} x ${dp} = ${tp * pp * dp} must equal the GPU count, cluster.nodes x gpusPerNode = ${input.cluster.nodes} x ${gpusPerNode} = ${devices}`);
  }
  if (heads % tp !== 0) fail(['parallel', 'tp'], `tp = ${tp} must divide the attention heads (${heads}); divisors that work: ${divisors(heads).filter((d) => d <= devices).join(', ')}`);
  else if (model.kvHeads % tp !== 0 && tp % model.kvHeads !== 0) fail(['parallel', 'tp'], `tp = ${tp} must divide the key/value heads (${model.kvHeads}) or be a multiple of them`);
  if (model.ffnHidden % tp !== 0) fail(['parallel', 'tp'], `tp = ${tp} must divide ffnHidden (${model.ffnHidden})`);
  if (!context.schedules.includes(p.schedule)) fail(['parallel', 'schedule'], `unknown schedule ${JSON.stringify(p.schedule)}; registered schedules: ${context.schedules.join(', ')}`);

  let layersPerStage: number[];
  if (p.layersPerStage) {
    layersPerStage = p.layersPerStage;
    if (layersPerStage.length !== pp) fail(['parallel', 'layersPerStage'], `lists ${layersPerStage.length} stages but parallel.pp is ${pp}`);
    const sum = layersPerStage.reduce((a, b) => a + b, 0);
    if (sum !== model.layers) fail(['parallel', 'layersPerStage'], `adds up to ${sum} layers but the model has ${model.layers}`);
  } else {
    if (model.layers < pp) fail(['parallel', 'pp'], `pp = ${pp} is more stages than the model's ${model.layers} layers`);
    layersPerStage = splitEvenly(model.layers, pp);
  }

  // ZeRO and offloading.
  const { zero, offload } = p;
  const offloading = offload.optimizer !== 'none' || offload.params !== 'none';
  if (zero > 0 && dp === 1 && !offloading) {
    fail(['parallel', 'zero'], `zero: ${zero} shards model states over the data-parallel group, but dp is 1, so there is nothing to shard; use zero: 0, more data-parallel replicas, or offload (parallel.offload)`);
  }
  if (zero >= 2 && pp > 1) {
    fail(['parallel', 'zero'], `zero: ${zero} with pipeline parallelism (pp = ${pp}) is not modelled, as DeepSpeed does not support it either; use zero: 1 (Megatron's distributed optimizer), or pp: 1`);
  }
  if (offload.params !== 'none' && zero !== 3) {
    fail(['parallel', 'offload', 'params'], `offloading parameters (${offload.params}) needs ZeRO-3 (ZeRO-Infinity fetches them layer by layer); set parallel.zero: 3, or offload.params: none`);
  }
  if (offload.optimizer !== 'none' && zero === 0) {
    fail(['parallel', 'offload', 'optimizer'], `offloading the optimizer (${offload.optimizer}) builds on ZeRO: set parallel.zero to 1, 2 or 3 (ZeRO-Offload uses 2)`);
  }
  if (zero === 3 && context.schedules.includes(p.schedule) && context.splitsBackward(p.schedule)) {
    fail(['parallel', 'schedule'], `zero: 3 gathers each layer's parameters for its forward and backward; with pp = 1 a split backward gains nothing, so the ${p.schedule} schedule is not modelled with it; use 1f1b or gpipe`);
  }
  if (offload.optimizer === 'nvme' && zero !== 3) {
    fail(['parallel', 'offload', 'optimizer'], `optimizer states on NVMe are ZeRO-Infinity, which needs ZeRO-3; set parallel.zero: 3, or offload.optimizer: cpu`);
  }

  // Training.
  const t = input.training;
  if (t.globalBatch % (t.microBatch * dp) !== 0) {
    fail(['training', 'globalBatch'], `globalBatch ${t.globalBatch} must be divisible by microBatch x dp = ${t.microBatch} x ${dp} = ${t.microBatch * dp} (each data-parallel replica runs a whole number of micro-batches)`);
  }

  if (issues.length === 0 && context.schedules.includes(p.schedule)) {
    issues.push(...context.checkSchedule(p.schedule, { pp, chunks, microBatches: t.globalBatch / (t.microBatch * dp), layersPerStage }));
  }

  // Profiled costs.
  let costs: Scenario['costs'];
  if (input.costs) {
    const c = input.costs;
    const perStage = (key: 'forward' | 'backward' | 'weightGrad') => {
      const value = c[key];
      if (value === undefined) return undefined;
      const list = Array.isArray(value) ? value : Array.from({ length: pp }, () => value);
      if (list.length !== pp) fail(['costs', key], `lists ${list.length} stage times but parallel.pp is ${pp}; give one time or one per stage`);
      return list;
    };
    costs = {
      forwardSeconds: perStage('forward'),
      backwardSeconds: perStage('backward'),
      weightGradSeconds: perStage('weightGrad'),
      p2pSeconds: c.p2p,
      optimizerSeconds: c.optimizer,
    };
    if ((costs.forwardSeconds === undefined) !== (costs.backwardSeconds === undefined)) {
      fail(['costs', costs.forwardSeconds ? 'backward' : 'forward'], 'profiled costs need both costs.forward and costs.backward');
    }
    if (costs.weightGradSeconds && !costs.forwardSeconds) fail(['costs', 'weightGrad'], 'costs.weightGrad needs costs.forward and costs.backward too');
  }
  if (input.variability.stragglers > devices) fail(['variability', 'stragglers'], `${input.variability.stragglers} stragglers but only ${devices} GPUs`);

  if (issues.length > 0) return { issues };
  return {
    issues,
    scenario: {
      name: input.name,
      ...(input.description !== undefined ? { description: input.description } : {}),
      seed: input.seed,
      cluster: {
        nodes: input.cluster.nodes,
        gpusPerNode,
        gpu,
        node,
        fabric: {
          nodesPerLeaf: input.cluster.fabric.nodesPerLeaf,
          oversubscription: input.cluster.fabric.oversubscription,
          switchLatencySeconds: input.cluster.fabric.switchLatency,
        },
        linkEfficiency: input.cluster.linkEfficiency,
        collectiveStepLatencySeconds: input.cluster.collectiveStepLatency,
      },
      model,
      training: {
        globalBatch: t.globalBatch,
        microBatch: t.microBatch,
        precision: t.precision,
        optimizer: t.optimizer,
        recompute: t.recompute,
        flashAttention: t.flashAttention,
        hostOverheadPerLayerSeconds: t.hostOverheadPerLayer ?? HOST_OVERHEAD_PER_LAYER,
      },
      parallel: {
        tp,
        pp,
        dp,
        schedule: p.schedule,
        chunks,
        layersPerStage,
        // PyTorch DDP's 25 MiB buckets without ZeRO; DeepSpeed's reduce_bucket_size of 5e8 elements with it.
        gradientBucketBytes: p.gradientBucket ?? (zero === 0 ? 25 * 2 ** 20 : 5e8 * (t.precision === 'fp32' ? 4 : 2)),
        zero,
        prefetchLayers: p.prefetchLayers,
        offload: { optimizer: offload.optimizer, params: offload.params, pinnedBufferBytes: offload.pinnedBuffer },
      },
      ...(costs ? { costs } : {}),
      variability: { ...input.variability },
    },
  };
}

/** Megatron's default split: equal layers per stage, the remainder on the first stages. */
export function splitEvenly(layers: number, stages: number): number[] {
  const base = Math.floor(layers / stages);
  const extra = layers % stages;
  return Array.from({ length: stages }, (_, i) => base + (i < extra ? 1 : 0));
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}
