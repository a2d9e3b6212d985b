import type { CollectiveKind } from '../collectives/collectives.js';
import { toNanoseconds } from '../engine/kernel.js';
import { passSeconds, type ComputeModel } from '../hardware/compute.js';
import type { DeviceMesh, MeshAxis } from '../strategies/mesh.js';
import type { ProgramOp, StepProgram } from '../strategies/program.js';
import { isSplit, opStates, transition, type OpLayout, type OpStates } from '../strategies/sharding.js';
import { elementBytes, peakFlopsPerSecond } from '../training/precision.js';
import { recomputePlan } from '../training/recompute.js';
import { elements, type BlockKind, type Shape, type Tensor } from '../workload/types.js';
import type { StepConfig } from './config.js';

/**
 * What one device does for each block of each virtual stage, per micro-batch: FLOPs, HBM traffic, activation
 * memory, parameters and blocking collectives, summed over the block's operations as their layouts shard them; and
 * each virtual stage's pass times, from the compute model (hardware/compute.ts) or from profiled costs.
 */
export interface CollectiveStep {
  kind: CollectiveKind;
  axis: MeshAxis;
  /** Per rank, as planCollective counts them: the whole tensor, or for an all-to-all each rank's send buffer. */
  bytes: number;
}

export interface UnitCosts {
  kind: BlockKind;
  layers: number;
  /** Parameters one device holds, before any data-parallel sharding. */
  parameters: number;
  forwardFlops: number;
  /** Input gradients, without recomputation. */
  inputGradFlops: number;
  weightGradFlops: number;
  /** Forward FLOPs run again before the input-gradient pass. */
  recomputeFlops: number;
  /** HBM bytes the element-wise kernels move in each pass, and in the forward run again. */
  movedBytes: number;
  recomputeMovedBytes: number;
  /** Activation bytes kept from the forward to the backward; of those, kept from B until W; rebuilt during B. */
  activationBytes: number;
  weightGradBytes: number;
  rebuiltBytes: number;
  /** Forward-equivalents of kernel launches the recomputation adds. */
  extraIssues: number;
  /** Blocking collectives after the block's compute: in the forward, and in the input-gradient pass. */
  forwardCollectives: CollectiveStep[];
  backwardCollectives: CollectiveStep[];
}

/** One virtual stage: a run of blocks on one chunk of one pipeline device, as one device of it computes. */
export interface VirtualStageModel {
  virtualStage: number;
  /** Pipeline position of the device holding it. */
  stage: number;
  chunk: number;
  layers: number;
  units: UnitCosts[];
  /** Parameters held by each device. */
  parametersPerDevice: number;
  /** Per micro-batch and device, FLOPs. */
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
  /** Extra bytes while a backward rebuilds a layer (full recompute). */
  recomputeBytes: number;
  /** Bytes each device sends to the next virtual stage after a forward, and to the previous one after B. */
  sendForwardBytes: number;
  sendBackwardBytes: number;
}

export function stageCosts(config: StepConfig, program: StepProgram): VirtualStageModel[] {
  const { cluster, training } = config;
  const { mesh } = program;
  const precision = training.precision;
  const recompute = recomputePlan(training.recompute);
  const profiled = config.costs?.forwardSeconds !== undefined;
  // Mesh axes that split anything: those of more than one rank.
  const axes = mesh.axes.filter((axis) => mesh.sizeOf(axis) > 1);
  const share = (shape: Shape, layout: OpLayout) => {
    let divisor = 1;
    for (const axis of axes) if (isSplit(shape, layout, axis)) divisor *= mesh.sizeOf(axis);
    return divisor;
  };
  const bytesOf = (t: Tensor, layout: OpLayout) => (elements(t.shape) * elementBytes(t.element, precision)) / share(t.shape, layout);

  // Every operation in forward order, with its states along each axis and the layout its input arrives in.
  const chain: { p: ProgramOp; vs: number; unit: number; states: OpStates[] }[] = [];
  program.stages.forEach((stage, vs) => stage.blocks.forEach((block, unit) => block.ops.forEach((p) => chain.push({ p, vs, unit, states: axes.map((axis) => opStates(p.op, p.layout, axis)) }))));
  const arrival = (i: number): OpLayout => {
    if (i === 0) return chain[i].p.layout;
    const layout: Record<string, unknown> = { ...chain[i].p.layout };
    // An operation that gathers its input keeps it as it arrived, split (Megatron's sequence-parallel linears).
    axes.forEach((axis, a) => {
      if (transition(chain[i - 1].states[a].output, chain[i].states[a].input) === 'allGather') layout[axis] = chain[i - 1].p.layout[axis];
    });
    return layout as OpLayout;
  };
  const collective = (kind: CollectiveKind | undefined, axis: MeshAxis, t: Tensor, layout: OpLayout): CollectiveStep[] => {
    if (kind === undefined || profiled) return [];
    // The whole tensor along this axis, split along the others.
    const others = axes.filter((x) => x !== axis && isSplit(t.shape, layout, x)).reduce((n, x) => n * mesh.sizeOf(x), 1);
    const whole = (elements(t.shape) * elementBytes(t.element, precision)) / others;
    return [{ kind, axis, bytes: kind === 'allToAll' ? whole / mesh.sizeOf(axis) : whole }];
  };

  const stages = program.stages.map((stage) =>
    stage.blocks.map((block): UnitCosts => {
      const rebuilt = recompute.rebuildsWhole(block.kind);
      const unit: UnitCosts = {
        kind: block.kind,
        layers: block.kind === 'layer' ? 1 : 0,
        parameters: 0,
        forwardFlops: 0,
        inputGradFlops: 0,
        weightGradFlops: 0,
        recomputeFlops: 0,
        movedBytes: 0,
        recomputeMovedBytes: 0,
        activationBytes: 0,
        weightGradBytes: 0,
        rebuiltBytes: 0,
        extraIssues: rebuilt ? recompute.extraIssues : 0,
        forwardCollectives: [],
        backwardCollectives: [],
      };
      return unit;
    }),
  );

  // Blocks rebuilt whole for their backward, with the collectives their forward runs inside them.
  const rebuilt = new Map<UnitCosts, CollectiveStep[]>();
  for (const units of stages) for (const unit of units) if (recompute.rebuildsWhole(unit.kind)) rebuilt.set(unit, []);
  let weightGradKept = 0;
  chain.forEach(({ p, vs, unit: u, states }, i) => {
    const unit = stages[vs][u];
    const block = program.stages[vs].blocks[u];
    const { op, layout } = p;
    const index = block.ops.indexOf(p);
    const siteLayout = arrival(i);
    const layoutOf = (site: 'input' | 'own') => (site === 'input' ? siteLayout : layout);
    // The operation's work divides over every axis that splits one of its tensors.
    const work = Math.max(share(op.input.shape, layout), share(op.output.shape, layout), ...op.parameters.map((t) => share(t.shape, layout)));
    unit.forwardFlops += op.flops.forward / work;
    unit.inputGradFlops += op.flops.inputGrad / work;
    unit.weightGradFlops += op.flops.weightGrad / work;
    const moved = op.moved.reduce((sum, t) => sum + t.times * bytesOf(t, layoutOf(t.site)), 0);
    unit.movedBytes += moved;
    if (recompute.reruns(block.kind, op)) {
      unit.recomputeFlops += op.flops.forward / work;
      if (recompute.rebuildsWhole(block.kind)) unit.recomputeMovedBytes += moved;
    }
    for (const t of op.saved) {
      const bytes = bytesOf(t, layoutOf(t.site));
      if (recompute.keeps(block.kind, index, t)) unit.activationBytes += bytes;
      if (recompute.rebuildsWhole(block.kind)) unit.rebuiltBytes += bytes;
      if (t.weightGrad) weightGradKept += bytes;
    }
    // Legacy: every parameter counted as split over tp (see docs/design.md).
    for (const t of op.parameters) unit.parameters += (elements(t.shape) * 1) / mesh.sizeOf('tp');
    // Collectives between this operation and the next, by the sharding rule: forward on the producer's side,
    // backward on the side that produces the gradient.
    const next = chain[i + 1];
    axes.forEach((axis, a) => {
      if (next) {
        const steps = collective(transition(states[a].output, next.states[a].input), axis, op.output, layout);
        unit.forwardCollectives.push(...steps);
        // A block rebuilt for its backward repeats the collectives inside it, not the one handing its output on.
        if (rebuilt.has(unit) && index < block.ops.length - 1) rebuilt.get(unit)!.push(...steps);
      }
      if (i > 0) unit.backwardCollectives.push(...collective(transition(states[a].inputGrad, chain[i - 1].states[a].outputGrad), axis, op.input, layout));
    });
    if (index === block.ops.length - 1) {
      for (const t of block.tiedCopies) unit.parameters += elements(t.shape) / mesh.sizeOf('tp');
      unit.weightGradBytes = Math.min(weightGradKept, unit.activationBytes);
      weightGradKept = 0;
    }
  });
  // A rebuilt block runs its forward again, collectives included, before its backward.
  for (const [unit, steps] of rebuilt) unit.backwardCollectives = [...steps, ...unit.backwardCollectives];

  const computeModel: ComputeModel = {
    peakFlopsPerSecond: peakFlopsPerSecond(cluster.gpu, precision),
    computeEfficiency: cluster.gpu.computeEfficiency,
    efficiencyHalfSize: cluster.gpu.efficiencyHalfSize,
    memoryBytesPerSecond: cluster.gpu.memoryBandwidthBytesPerSecond * cluster.gpu.memoryEfficiency,
    hostOverheadPerLayerSeconds: training.hostOverheadPerLayerSeconds,
  };
  const costs = config.costs;
  const lastVs = program.stages.length - 1;
  return program.stages.map((stage, vs): VirtualStageModel => {
    const units = stages[vs];
    const sum = (f: (u: UnitCosts) => number) => units.reduce((a, u) => a + f(u), 0);
    const layers = stage.layers;
    const forwardFlops = sum((u) => u.forwardFlops);
    const recomputeFlops = sum((u) => u.recomputeFlops);
    const inputGradFlops = sum((u) => u.inputGradFlops) + recomputeFlops;
    const weightGradFlops = sum((u) => u.weightGradFlops);
    const traffic = sum((u) => u.movedBytes);
    const issues = 1 + Math.max(0, ...units.map((u) => u.extraIssues));
    const activationBytes = sum((u) => u.activationBytes);
    let forwardNs: number;
    let inputGradNs: number;
    let weightGradNs: number;
    if (profiled) {
      forwardNs = toNanoseconds(costs!.forwardSeconds![stage.stage] / config.parallel.chunks);
      inputGradNs = toNanoseconds(costs!.backwardSeconds![stage.stage] / config.parallel.chunks);
      weightGradNs = toNanoseconds((costs!.weightGradSeconds?.[stage.stage] ?? 0) / config.parallel.chunks);
    } else {
      forwardNs = toNanoseconds(passSeconds(computeModel, { flops: forwardFlops, bytes: traffic, layers, issues: 1 }));
      inputGradNs = toNanoseconds(passSeconds(computeModel, { flops: inputGradFlops, bytes: traffic + sum((u) => u.recomputeMovedBytes), layers, issues }));
      weightGradNs = toNanoseconds(passSeconds(computeModel, { flops: weightGradFlops, bytes: traffic, layers, issues: 1 }));
    }
    // What crosses to the neighbouring virtual stages: the activation as the next stage's first operation takes it,
    // and the input gradient as the previous stage's last operation needs it.
    const first = chain.findIndex((c) => c.vs === vs);
    const last = first + program.stages[vs].blocks.reduce((n, b) => n + b.ops.length, 0) - 1;
    const sendForwardBytes = vs < lastVs ? inState(chain[last + 1].p.op.input, chain[last + 1].states.map((s) => s.input)) : 0;
    const sendBackwardBytes = vs > 0 ? inState(chain[first - 1].p.op.output, chain[first - 1].states.map((s) => s.outputGrad)) : 0;
    return {
      virtualStage: vs,
      stage: stage.stage,
      chunk: stage.chunk,
      layers,
      units,
      parametersPerDevice: sum((u) => u.parameters),
      forwardFlops,
      inputGradFlops,
      weightGradFlops,
      modelBackwardFlops: inputGradFlops - recomputeFlops + weightGradFlops,
      forwardNs,
      inputGradNs,
      weightGradNs,
      backwardNs: inputGradNs + weightGradNs,
      activationBytes,
      weightGradBytes: Math.min(sum((u) => u.weightGradBytes), activationBytes),
      recomputeBytes: Math.max(0, ...units.map((u) => u.rebuiltBytes)),
      sendForwardBytes,
      sendBackwardBytes,
    };
  });

  /** Bytes of a tensor on one device when it lies in these states along the split axes. */
  function inState(t: Tensor, states: readonly string[]): number {
    let divisor = 1;
    states.forEach((state, a) => {
      if (state.startsWith('S:') && t.shape[state.slice(2) as keyof Shape] !== undefined) divisor *= mesh.sizeOf(axes[a]);
    });
    return (elements(t.shape) * elementBytes(t.element, precision)) / divisor;
  }
}

export type { DeviceMesh };
