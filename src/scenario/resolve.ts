import type { PathIssue } from '../errors.js';
import { GPU_PRESETS, HOST_OVERHEAD_PER_LAYER, NODE_PRESETS, TRANSFER_OVERHEAD, type GpuSpec, type NodeSpec } from '../hardware/presets.js';
import type { StepConfig } from '../lower/config.js';
import { resolveParallel } from '../strategies/registry.js';
import { ALPHAFOLD2, MODEL_PRESETS } from '../workload/presets.js';
import type { EvoformerSpec } from '../workload/evoformer.js';
import { isGpt, type ModelSpec } from '../workload/registry.js';
import type { VitSpec } from '../workload/vit.js';
import type { ScenarioInput } from './schema.js';
import { takesGradients } from '../training/optimizer.js';

/**
 * A scenario with every preset resolved and every default filled: plain, serialisable data, in base units (bytes,
 * seconds, bytes/s, FLOP/s). It is the lowering's step configuration with a name.
 */
export interface Scenario extends StepConfig {
  name: string;
  description?: string;
}

export function resolveScenario(input: ScenarioInput): { scenario?: Scenario; issues: PathIssue[] } {
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
    ...(gpuInput.fp8Flops ?? gpuBase.fp8FlopsPerSecond ? { fp8FlopsPerSecond: gpuInput.fp8Flops ?? gpuBase.fp8FlopsPerSecond } : {}),
    memoryBytes: gpuInput.memory ?? gpuBase.memoryBytes,
    memoryBandwidthBytesPerSecond: gpuInput.memoryBandwidth ?? gpuBase.memoryBandwidthBytesPerSecond,
    nvlinkBandwidthBytesPerSecond: gpuInput.nvlinkBandwidth ?? gpuBase.nvlinkBandwidthBytesPerSecond,
    computeEfficiency: gpuInput.computeEfficiency ?? gpuBase.computeEfficiency,
    memoryEfficiency: gpuInput.memoryEfficiency ?? gpuBase.memoryEfficiency,
    efficiencyHalfSize: gpuInput.efficiencyHalfSize ?? gpuBase.efficiencyHalfSize,
    ...((gpuInput.flashAttentionEfficiency ?? gpuBase.flashAttentionEfficiency) !== undefined ? { flashAttentionEfficiency: gpuInput.flashAttentionEfficiency ?? gpuBase.flashAttentionEfficiency } : {}),
  };
  const gpusPerNode = input.cluster.gpusPerNode ?? node.gpusPerNode;
  const devices = input.cluster.nodes * gpusPerNode;

  // Model.
  const model = resolveModel(input.model, fail);
  const t = input.training;
  // Mixed precision by default: bf16, or fp16 on a GPU without bf16 (V100).
  const precision = t.precision ?? (gpu.bf16 === false ? 'fp16' : 'bf16');
  const recycles = model.kind === 'evoformer' ? (t.recycles ?? 3) : 0;
  if (isGpt(model) && model.attention !== undefined && t.flashAttention) {
    fail(['training', 'flashAttention'], `FlashAttention computes exact attention block by block; model.attention is ${model.attention}, which never forms the full score matrix; set one or the other`);
  }
  if (precision === 'bf16' && gpu.bf16 === false) {
    fail(['training', 'precision'], `the ${gpu.name} has no bf16 tensor cores (A100 and later do); use fp16 mixed precision, or fp32`);
  }
  if (precision === 'fp8' && gpu.fp8FlopsPerSecond === undefined) {
    fail(['training', 'precision'], `fp8 runs the matrix multiplications on fp8 tensor cores, which the ${gpu.name} does not have (H100 and H200 do); use ${gpu.bf16 === false ? 'fp16' : 'bf16'}, a GPU with fp8 (cluster.gpu: h100-sxm), or give cluster.gpu.fp8Flops`);
  }
  if (t.recomputeLayers !== undefined && t.recompute !== 'full') {
    fail(['training', 'recomputeLayers'], `recomputes the first layers of each stage in full, but training.recompute is ${t.recompute}; set training.recompute: full, or leave recomputeLayers out`);
  }
  if (model.kind === 'evoformer' && t.recompute === 'selective') {
    fail(['training', 'recompute'], 'selective recomputation drops a transformer layer\'s attention scores and reruns its attention core; an Evoformer is checkpointed per block (full) or not at all (none), as AlphaFold, OpenFold and FastFold train it; to keep no attention probabilities, set training.flashAttention: true');
  }
  if (t.weightBits !== undefined && precision === 'fp32') {
    fail(['training', 'weightBits'], `quantisation-aware training keeps its full-precision master weights in the optimizer and stores the working weights at ${t.weightBits} bits; in fp32 training the working weights are the master copy; use precision bf16 or fp16 with it`);
  }
  if (!takesGradients(t.optimizer) && t.weightBits !== undefined) {
    fail(['training', 'weightBits'], `${t.optimizer} perturbs and updates the working weights in place, with no full-precision copy to quantise from; quantised weights cannot take its small steps; leave weightBits out`);
  }
  if (!takesGradients(t.optimizer) && t.recompute !== 'none') {
    fail(['training', 'recompute'], `${t.optimizer} runs two forward passes and no backward, so nothing is kept for a backward to recompute; use recompute: none`);
  }
  if (model.kind !== 'evoformer' && t.recycles !== undefined && t.recycles > 0) {
    fail(['training', 'recycles'], `recycling runs an AlphaFold-style model forward again before the step that takes gradients; it applies to model.kind evoformer, not to this ${model.kind === 'vit' ? 'vision transformer' : 'GPT-shaped model'}; leave training.recycles out or set it to 0`);
  }

  // Parallelism: each pass resolves and checks its own fields. The global batch is given, or is the micro-batch times
  // the data-parallel degree times the accumulation steps given (the degree does not depend on the batch).
  const context = { model, devices, nodes: input.cluster.nodes, gpusPerNode };
  const trainingContext = (globalBatch: number) => ({ globalBatch, microBatch: t.microBatch, precision: precision, flashAttention: t.flashAttention });
  let globalBatch = t.globalBatch ?? 1;
  if (t.accumulation !== undefined) {
    const dp = resolveParallel(input.parallel, { ...context, training: trainingContext(t.microBatch) }, false).parallel?.dp ?? 1;
    const derived = t.microBatch * dp * t.accumulation;
    if (t.globalBatch === undefined) globalBatch = derived;
    else if (t.globalBatch !== derived) {
      fail(['training', 'accumulation'], `${t.accumulation} accumulation steps of micro-batch ${t.microBatch} on dp ${dp} make a global batch of ${derived}, but training.globalBatch is ${t.globalBatch}; give one of the two, or make them agree`);
    }
  } else if (t.globalBatch === undefined) {
    fail(['training', 'globalBatch'], 'missing required field (or give training.accumulation, the micro-batches each data-parallel replica runs per step)');
  }
  const resolved = resolveParallel(input.parallel, { ...context, training: trainingContext(globalBatch) });
  issues.push(...resolved.issues);
  const parallel = resolved.parallel as { zero?: number; offload?: { optimizer: string; params: string } } | undefined;
  if (!takesGradients(t.optimizer) && parallel && ((parallel.zero ?? 0) === 1 || parallel.zero === 2)) {
    fail(['parallel', 'zero'], `${t.optimizer} keeps no gradients and no optimizer states, so ZeRO-${parallel.zero} has nothing to shard; use zero: 0, or zero: 3 to shard the parameters`);
  }
  if (!takesGradients(t.optimizer) && parallel?.offload && parallel.offload.optimizer !== 'none') {
    fail(['parallel', 'offload', 'optimizer'], `${t.optimizer} keeps no optimizer states to offload (it updates the weights in place on the GPU); use offload.optimizer: none`);
  }
  if (!takesGradients(t.optimizer) && parallel?.offload && parallel.offload.params !== 'none') {
    fail(['parallel', 'offload', 'params'], `${t.optimizer} perturbs and updates every weight in place on the GPU each step, which offloaded parameters are not modelled for; use offload.params: none, or zero: 3 to shard them`);
  }
  if (model.kind === 'vit' && parallel && (parallel as { pp?: number }).pp !== undefined && (parallel as { pp: number }).pp > 1) {
    fail(['parallel', 'pp'], `pipeline parallelism is not modelled for model.kind vit: its U-Net's skip connections run from each encoder stage to the decoder stage that mirrors it; split it with data parallelism (parallel.dp, with parallel.zero)`);
  }
  if (t.recomputeLayers !== undefined && resolved.parallel) {
    const { layersPerStage, chunks } = resolved.parallel;
    const fewest = Math.min(...layersPerStage) / chunks;
    if (t.recomputeLayers > fewest) {
      fail(['training', 'recomputeLayers'], `${t.recomputeLayers} layers, but a virtual stage holds as few as ${Math.floor(fewest)} (layers per stage ${layersPerStage.join(', ')}${chunks > 1 ? ` in ${chunks} chunks` : ''}); use 1 to ${Math.floor(fewest)}, or leave it out to recompute every layer`);
    }
  }
  const pp = typeof input.parallel.pp === 'number' ? input.parallel.pp : 1;

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
        collectiveProtocol: input.cluster.collectiveProtocol,
      },
      model,
      training: {
        globalBatch,
        microBatch: t.microBatch,
        precision,
        gradAccumulation: t.gradAccumulation,
        optimizer: t.optimizer,
        ...(t.weightBits !== undefined ? { weightBits: t.weightBits } : {}),
        recompute: t.recompute,
        ...(t.recomputeLayers !== undefined ? { recomputeLayers: t.recomputeLayers } : {}),
        flashAttention: t.flashAttention,
        recycles,
        hostOverheadPerLayerSeconds: t.hostOverheadPerLayer ?? HOST_OVERHEAD_PER_LAYER,
        transferOverheadSeconds: t.transferOverhead ?? TRANSFER_OVERHEAD,
      },
      parallel: resolved.parallel!,
      ...(costs ? { costs } : {}),
      variability: { ...input.variability },
    },
  };
}


const GPT_FIELDS = ['hidden', 'heads', 'kvHeads', 'headDim', 'ffnHidden', 'vocab', 'seqLength', 'mlp', 'tiedEmbeddings', 'positionEmbedding', 'causal', 'dropout', 'attention', 'attentionRank'] as const;
const EVOFORMER_FIELDS = ['extraLayers', 'residues', 'msaRows', 'extraMsaRows', 'msaChannels', 'pairChannels', 'extraMsaChannels', 'singleChannels'] as const;
const VIT_FIELDS = ['inputChannels', 'outputChannels', 'patch', 'grid', 'window', 'stages', 'mlpRatio', 'positionBias', 'norm', 'resample'] as const;
/** Each kind's own fields: those of the others do not apply to it. */
const KIND_FIELDS: Record<string, readonly string[]> = { gpt: ['layers', ...GPT_FIELDS], evoformer: ['layers', ...EVOFORMER_FIELDS], vit: VIT_FIELDS };

/** The model section: a preset, overridden field by field, of the kind it names (a GPT-shaped one by default). */
function resolveModel(m: ScenarioInput['model'], fail: (path: (string | number)[], message: string) => void): ModelSpec {
  const base = m.preset ? MODEL_PRESETS[m.preset] : undefined;
  const baseKind = base?.kind ?? 'gpt';
  const kind = m.kind ?? baseKind;
  if (m.kind !== undefined && base !== undefined && m.kind !== baseKind) fail(['model', 'kind'], `model.preset ${m.preset} is a model of kind ${baseKind}, not ${m.kind}; leave model.kind out or choose a preset of kind ${m.kind}`);
  const own = KIND_FIELDS[kind];
  for (const key of ['layers', ...GPT_FIELDS, ...EVOFORMER_FIELDS, ...VIT_FIELDS] as const) {
    if (m[key] !== undefined && !own.includes(key)) fail(['model', key], `model.${key} does not apply to a model of kind ${kind}; its fields are ${own.join(', ')}`);
  }
  if (kind === 'vit') return resolveVit(m, base?.kind === 'vit' ? base : undefined, fail);
  if (kind === 'evoformer') {
    // Without a preset, AlphaFold 2's dimensions.
    const e = base?.kind === 'evoformer' ? base : ALPHAFOLD2;
    const spec: EvoformerSpec = { ...e, kind: 'evoformer', name: m.preset ?? 'custom-evoformer', layers: m.layers ?? e.layers };
    for (const key of EVOFORMER_FIELDS) spec[key] = m[key] ?? e[key];
    return spec;
  }
  const gpt = base?.kind === undefined || base.kind === 'gpt' ? base : undefined;
  const required = ['layers', 'hidden', 'heads', 'vocab', 'seqLength'] as const;
  if (!gpt) for (const key of required) if (m[key] === undefined) fail(['model', key], 'missing required field (or give model.preset)');
  const hidden = m.hidden ?? gpt?.hidden ?? 1;
  const heads = m.heads ?? gpt?.heads ?? 1;
  const headDim = m.headDim ?? (m.heads === undefined && m.hidden === undefined ? gpt?.headDim : undefined);
  const model: ModelSpec = {
    name: m.preset ?? 'custom',
    layers: m.layers ?? gpt?.layers ?? 1,
    hidden,
    heads,
    kvHeads: m.kvHeads ?? (m.heads === undefined ? gpt?.kvHeads : undefined) ?? heads,
    // A preset's own head size holds while its heads and hidden size do.
    ...(headDim !== undefined ? { headDim } : {}),
    ffnHidden: m.ffnHidden ?? (m.hidden === undefined ? gpt?.ffnHidden : undefined) ?? 4 * hidden,
    vocab: m.vocab ?? gpt?.vocab ?? 1,
    seqLength: m.seqLength ?? gpt?.seqLength ?? 1,
    mlp: m.mlp ?? gpt?.mlp ?? 'gelu',
    tiedEmbeddings: m.tiedEmbeddings ?? gpt?.tiedEmbeddings ?? true,
    positionEmbedding: m.positionEmbedding ?? gpt?.positionEmbedding ?? 'learned',
    causal: m.causal ?? gpt?.causal ?? true,
    dropout: m.dropout ?? gpt?.dropout ?? true,
    ...(m.attention !== undefined && m.attention !== 'standard' ? { attention: m.attention } : {}),
    ...(m.attentionRank !== undefined ? { attentionRank: m.attentionRank } : {}),
  };
  const approximate = model.attention !== undefined;
  if (approximate && m.attentionRank === undefined) {
    fail(['model', 'attentionRank'], `${model.attention} attention needs its size: ${model.attention === 'linformer' ? 'the rows keys and values are projected to (Wang et al. use 128 to 256)' : 'the random features queries and keys are mapped to (Choromanski et al. use about 256)'}; give model.attentionRank`);
  }
  if (!approximate && m.attentionRank !== undefined) fail(['model', 'attentionRank'], 'is the size of an approximate attention; set model.attention: linformer or performer, or leave attentionRank out');
  if (model.attention === 'linformer' && model.causal) {
    fail(['model', 'attention'], "Linformer's projection along the sequence mixes later positions into every key, so it has no causal form; set model.causal: false (an encoder such as BERT or ESM-2), or use performer");
  }
  if (model.attention === 'linformer' && m.attentionRank !== undefined && m.attentionRank >= model.seqLength) {
    fail(['model', 'attentionRank'], `${m.attentionRank} rows is no smaller than the sequence (${model.seqLength}): Linformer saves only with a rank below it`);
  }
  if (model.headDim === undefined && hidden % heads !== 0) fail(['model', 'hidden'], `hidden size ${hidden} must be divisible by heads (${heads}), or give model.headDim`);
  if (heads % model.kvHeads !== 0) fail(['model', 'kvHeads'], `heads (${heads}) must be divisible by kvHeads (${model.kvHeads})`);
  return model;
}

/** A weather vision transformer: a preset (Pangu-Weather's shape without one), overridden field by field. */
function resolveVit(m: ScenarioInput['model'], base: Omit<VitSpec, 'name'> | undefined, fail: (path: (string | number)[], message: string) => void): VitSpec {
  const v = base ?? (MODEL_PRESETS['pangu-weather'] as Omit<VitSpec, 'name'>);
  const stages = m.stages ?? v.stages;
  const spec: VitSpec = {
    kind: 'vit',
    name: m.preset ?? 'custom-vit',
    layers: stages.reduce((n, s) => n + s.depth, 0),
    inputChannels: m.inputChannels ?? v.inputChannels,
    outputChannels: m.outputChannels ?? v.outputChannels,
    patch: m.patch ?? v.patch,
    grid: m.grid ?? v.grid,
    window: m.window ?? v.window,
    stages,
    mlpRatio: m.mlpRatio ?? v.mlpRatio,
    positionBias: m.positionBias ?? v.positionBias,
    norm: m.norm ?? v.norm,
    resample: m.resample ?? v.resample,
  };
  if (spec.window.length !== spec.grid.length) fail(['model', 'window'], `gives ${spec.window.length} sizes for a grid of ${spec.grid.length} axes (${spec.grid.join(' x ')}); give one window size per axis`);
  spec.stages.forEach((s, i) => {
    if (s.channels % s.heads !== 0) fail(['model', 'stages', i, 'heads'], `${s.heads} heads do not divide the stage's ${s.channels} channels`);
    const before = i === 0 ? s.channels : spec.stages[i - 1].channels;
    const ratio = s.channels / before;
    if (spec.resample === 'conv' && ratio !== 1) fail(['model', 'stages', i, 'channels'], `with resample: conv every stage keeps the first stage's ${spec.stages[0].channels} channels (the convolutions resample the grid before and after them); use resample: merge for a U-Net whose stages change width`);
    else if (ratio !== 1 && ratio !== 2 && ratio !== 0.5) fail(['model', 'stages', i, 'channels'], `${s.channels} channels after ${before}: a stage merges 2 x 2 tokens into twice the channels, or splits them into half; use ${before / 2}, ${before} or ${2 * before}`);
  });
  return spec;
}
