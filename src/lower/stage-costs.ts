import type { CollectiveKind } from '../collectives/collectives.js';
import type { BlockCosts, CollectiveStep, VirtualStageModel } from './stage-model.js';
import { toNanoseconds } from '../engine/kernel.js';
import { passSeconds, type ComputeModel } from '../hardware/compute.js';
import type { MeshAxis } from '../strategies/mesh.js';
import { ownerLayout, type ProgramBlock, type ProgramOp, type StepProgram } from '../strategies/program.js';
import { isSplit, opStates, shards, transition, withoutAxis, type OpLayout, type OpStates } from '../strategies/sharding.js';
import { elementBytes, gemmSpeedup, peakFlopsPerSecond } from '../training/precision.js';
import { takesGradients } from '../training/optimizer.js';
import { recomputePlan } from '../training/recompute.js';
import { DATA, elements, type SavedTensor, type Shape, type Tensor, type WorkloadOp } from '../workload/types.js';
import type { StepConfig } from './config.js';

/**
 * What one device does for each block of each virtual stage, per micro-batch: FLOPs, HBM traffic, activation
 * memory, parameters and blocking collectives, summed over the block's operations as their layouts shard them; and
 * each virtual stage's pass times, from the compute model (hardware/compute.ts) or from profiled costs.
 */
export function stageCosts(config: StepConfig, program: StepProgram): VirtualStageModel[] {
  const { cluster, training } = config;
  const { mesh } = program;
  const precision = training.precision;
  // Full recomputation of only the first `recomputeLayers` layers of each virtual stage (Megatron's block method):
  // the layers after them keep everything.
  const policy = recomputePlan(training.recompute);
  const keepAll = recomputePlan('none');
  const limit = training.recompute === 'full' ? (training.recomputeLayers ?? Infinity) : Infinity;
  const plans = program.stages.map((stage) => {
    let ordinal = 0;
    return stage.blocks.map((block) => (block.kind === 'layer' && ordinal++ >= limit ? keepAll : policy));
  });
  const profiled = config.costs?.forwardSeconds !== undefined;
  // A zeroth-order optimizer (MeZO) runs forwards only: nothing is kept for a backward, and there is none.
  const zerothOrder = !takesGradients(training.optimizer);
  // Mesh axes that split anything: those of more than one rank.
  const axes = mesh.axes.filter((axis) => mesh.sizeOf(axis) > 1);
  const share = (shape: Shape, layout: OpLayout) => shards(shape, layout, mesh);
  const context = program.contextAttention;
  // fp8: matrix multiplications run this many times faster than the 16-bit peak the rest runs at.
  const gemmFaster = gemmSpeedup(cluster.gpu, training.precision);
  // FlashAttention kernels run at their own fraction of the peak, against the GEMMs' the compute model applies.
  const flashSpeed = (cluster.gpu.flashAttentionEfficiency ?? cluster.gpu.computeEfficiency) / cluster.gpu.computeEfficiency;
  const bytesOf = (t: Tensor, layout: OpLayout) => (elements(t.shape) * elementBytes(t.element, precision)) / share(t.shape, layout);

  // Every operation in forward order, with its states along each axis. A step repeats the same few operations in
  // the same layouts (every layer alike), so states and each operation's share of its block are worked out once
  // per distinct (operation, layout, neighbours, place in its block) and added up where they recur.
  const layoutIds = new Map<string, number>();
  const opIds = new Map<WorkloadOp, number>();
  const idOf = <K>(ids: Map<K, number>, key: K) => ids.get(key) ?? (ids.set(key, ids.size), ids.size - 1);
  // Layouts alike are one id; the layers of a program share their layout objects (withLayouts), so each object is
  // written out once.
  const layoutObjects = new Map<OpLayout, number>();
  const layoutId = (layout: OpLayout) => layoutObjects.get(layout) ?? (layoutObjects.set(layout, idOf(layoutIds, JSON.stringify(layout))), layoutObjects.get(layout)!);
  const statesSeen = new Map<string, OpStates[]>();
  // Each program operation's id and states, worked out once however many layers share it.
  const seen = new Map<ProgramOp, { id: string; states: OpStates[] }>();
  const infoOf = (p: ProgramOp) => {
    let info = seen.get(p);
    if (info === undefined) {
      const id = `${idOf(opIds, p.op)}:${layoutId(p.layout)}`;
      let states = statesSeen.get(id);
      if (states === undefined) statesSeen.set(id, (states = axes.map((axis) => opStates(p.op, p.layout, axis))));
      seen.set(p, (info = { id, states }));
    }
    return info;
  };
  // Where each operation's input comes from: the operation before, or the latest one of the name it gives (-1: none).
  const latest = new Map<string, number>();
  let position = 0;
  const chain = program.stages.flatMap((stage, vs) =>
    stage.blocks.flatMap((block, blockIndex) =>
      block.ops.map((p, index) => {
        const { id, states } = infoOf(p);
        const from = p.op.from;
        const producer = from === undefined ? position - 1 : from === DATA ? -1 : (latest.get(from) ?? -1);
        if (from !== undefined && from !== DATA && producer < 0) throw new Error(`operation ${p.op.name} reads ${from}, which no operation before it is`);
        latest.set(p.op.name, position++);
        return { p, vs, blockIndex, index, id, states, producer };
      }),
    ),
  );
  const collective = (kind: CollectiveKind | undefined, axis: MeshAxis, t: Tensor, layout: OpLayout): CollectiveStep[] => {
    if (kind === undefined || profiled) return [];
    // The whole tensor along this axis, split along the others.
    const others = axes.filter((x) => x !== axis && isSplit(t.shape, layout, x)).reduce((n, x) => n * mesh.sizeOf(x), 1);
    const whole = (elements(t.shape) * elementBytes(t.element, precision)) / others;
    return [{ kind, axis, bytes: kind === 'allToAll' ? whole / mesh.sizeOf(axis) : whole }];
  };

  /** What operation `i` of the chain adds to its block. */
  const contribution = (i: number) => {
    const { p, vs, blockIndex, index, states, producer } = chain[i];
    const { op, layout } = p;
    const block = program.stages[vs].blocks[blockIndex];
    const recompute = plans[vs][blockIndex];
    // A recycled block runs its forward only: it keeps nothing and has no backward or parameters of its own.
    const forwardOnly = block.kind === 'recycle';
    // The operation whose output this one reads, when it is the one before (else the transition is this one's, below).
    const previous = op.from === undefined ? chain[i - 1] : undefined;
    const source = producer >= 0 ? chain[producer] : undefined;
    const next = chain[i + 1]?.p.op.from === undefined ? chain[i + 1] : undefined;
    // An operation that gathers its input keeps it as it arrived, split (Megatron's sequence-parallel linears).
    let siteLayout = layout;
    if (previous) {
      const arrived: Record<string, unknown> = { ...layout };
      axes.forEach((axis, a) => {
        if (transition(previous.states[a].output, states[a].input) === 'allGather') arrived[axis] = previous.p.layout[axis];
      });
      siteLayout = arrived as OpLayout;
    }
    const layoutOf = (site: 'input' | 'own') => (site === 'input' ? siteLayout : layout);
    // The operation's work divides over every axis that splits one of its tensors.
    const work = Math.max(share(op.input.shape, layout), share(op.output.shape, layout), ...op.parameters.map((t) => share(t.shape, layout)));
    const reruns = recompute.reruns(block.kind, op);
    const whole = recompute.rebuildsWhole(block.kind);
    const moved = op.moved.reduce((sum, t) => sum + t.times * bytesOf(t, layoutOf(t.site)), 0);
    // A FlashAttention kernel recomputes its scores inside its backward, and runs at its own efficiency.
    const speed = op.class === 'gemm' ? gemmFaster : op.flash ? flashSpeed : 1;
    const c = { forward: op.flops.forward / work, inputGrad: op.flops.inputGrad / work, weightGrad: op.flops.weightGrad / work, recompute: reruns ? op.flops.forward / work : 0, kernelRecompute: (op.flash?.backwardRecompute ?? 0) / work, moved, recomputeMoved: reruns && whole ? moved : 0, speed };
    // Context parallelism: the keys and values the attention reads across the sequence, gathered whole and kept so
    // (allgather), or passed around the ring block by block (ring).
    const exchanged = context !== undefined && op.keyValue !== undefined ? op.keyValue : [];
    const gathered = context?.exchange === 'allgather' ? exchanged : [];
    const layoutFor = (t: SavedTensor) => (gathered.includes(t) ? withoutAxis(layoutOf(t.site), context!.axis) : layoutOf(t.site));
    const saved = forwardOnly ? [] : op.saved.map((t) => ({ bytes: bytesOf(t, layoutFor(t)), kept: !zerothOrder && recompute.keeps(block.kind, index, t), weightGrad: t.weightGrad === true }));
    const ringBytes = context?.exchange === 'ring' ? exchanged.reduce((sum, t) => sum + bytesOf(t, layout), 0) : 0;
    // As time FLOPs: the shares of a pass's time go by them.
    const ring = exchanged.length > 0 ? { forward: c.forward / speed, inputGrad: (c.inputGrad + c.recompute + c.kernelRecompute) / speed, bytes: ringBytes } : { forward: 0, inputGrad: 0, bytes: 0 };
    // Split as the layout splits them; the others (norm weights, row-parallel biases, position embeddings) replicated.
    const parameters = forwardOnly ? [] : op.parameters.map((t) => elements(t.shape) / share(t.shape, layout));
    // Collectives between this operation and the next, by the sharding rule: forward on the producer's side,
    // backward on the side that produces the gradient. A block rebuilt for its backward repeats the collectives
    // inside it, not the one handing its output on.
    const forwardSteps: CollectiveStep[] = [];
    const backwardSteps: CollectiveStep[] = [];
    const inbound: CollectiveStep[] = [];
    for (const t of gathered) {
      forwardSteps.push(...collective('allGather', context!.axis, t, layout));
      backwardSteps.push(...collective('reduceScatter', context!.axis, t, layout));
    }
    // What hands the output on to the next operation (not repeated when the block is rebuilt: it leaves the block).
    const handoff: CollectiveStep[] = [];
    axes.forEach((axis, a) => {
      if (next) {
        const steps = collective(transition(states[a].output, next.states[a].input), axis, op.output, layout);
        forwardSteps.push(...steps);
        handoff.push(...steps);
      }
      if (previous) backwardSteps.push(...collective(transition(states[a].inputGrad, previous.states[a].outputGrad), axis, op.input, layout));
      // An input from further back: its collective is this operation's, before its compute, in either direction.
      if (op.from !== undefined && source) {
        inbound.push(...collective(transition(source.states[a].output, states[a].input), axis, source.p.op.output, source.p.layout));
        backwardSteps.push(...collective(transition(states[a].inputGrad, source.states[a].outputGrad), axis, op.input, layout));
      }
      // What it computes split and needs whole: gathered over each axis that splits the operation but not the tensor.
      for (const t of op.gathered ?? []) {
        if (isSplit(op.input.shape, layout, axis) && !isSplit(t.shape, layout, axis)) {
          forwardSteps.push(...collective('allGather', axis, t, layout));
          backwardSteps.push(...collective('reduceScatter', axis, t, layout));
        }
      }
    });
    // A rebuilt block starts from its kept input as it arrived: what it exchanges inside itself runs again.
    const rebuiltSteps = whole ? [...(index > 0 ? inbound : []), ...(index < block.ops.length - 1 ? forwardSteps : forwardSteps.filter((s) => !handoff.includes(s)))] : [];
    forwardSteps.unshift(...inbound);
    if (forwardOnly || zerothOrder) return { ...c, inputGrad: 0, weightGrad: 0, recompute: 0, kernelRecompute: 0, recomputeMoved: 0, saved, parameters, forwardSteps, backwardSteps: [], rebuiltSteps: [], ring: { ...ring, inputGrad: 0 } };
    return { ...c, saved, parameters, forwardSteps, backwardSteps, rebuiltSteps, ring };
  };
  const contributions = new Map<string, ReturnType<typeof contribution>>();

  const stages = program.stages.map((stage, vs) =>
    stage.blocks.map((block, blockIndex): BlockCosts => ({
      kind: block.kind,
      layers: block.kind === 'layer' ? 1 : 0,
      parameters: 0,
      forwardFlops: 0,
      inputGradFlops: 0,
      weightGradFlops: 0,
      recomputeFlops: 0,
      kernelRecomputeFlops: 0,
      timeFlops: { forward: 0, inputGrad: 0, weightGrad: 0, recompute: 0 },
      movedBytes: 0,
      recomputeMovedBytes: 0,
      activationBytes: 0,
      weightGradBytes: 0,
      rebuiltBytes: 0,
      extraIssues: plans[vs][blockIndex].rebuildsWhole(block.kind) ? plans[vs][blockIndex].extraIssues : 0,
      forwardCollectives: [],
      backwardCollectives: [],
      attentionForwardFlops: 0,
      attentionInputGradFlops: 0,
      ringBytes: 0,
    })),
  );

  // Blocks rebuilt whole for their backward, with the collectives their forward runs inside them.
  const rebuilt = new Map<BlockCosts, CollectiveStep[]>();
  stages.forEach((costs, vs) => costs.forEach((block, blockIndex) => plans[vs][blockIndex].rebuildsWhole(block.kind) && rebuilt.set(block, [])));
  let weightGradKept = 0;
  // A layer between two more of the same block, after one more, adds up exactly as the one before it did: the same
  // operations with the same neighbours, and inputs from at most one block back (an input named in the block comes
  // from it or from the one before it; one named elsewhere, from the same operation for both). Its costs are a copy.
  const repeatsBlockBefore = (vs: number, j: number) => {
    const blocks = program.stages[vs].blocks;
    const block = blocks[j];
    return j >= 2 && j + 1 < blocks.length && blocks[j - 2] === block && blocks[j - 1] === block && blocks[j + 1] === block && plans[vs][j - 1] === plans[vs][j];
  };
  let i = 0;
  program.stages.forEach((stage, vs) =>
    stage.blocks.forEach((block, blockIndex) => {
      const unit = stages[vs][blockIndex];
      if (repeatsBlockBefore(vs, blockIndex)) {
        copyBlockCosts(stages[vs][blockIndex - 1], unit, rebuilt);
        i += block.ops.length;
        return;
      }
      for (let index = 0; index < block.ops.length; index++, i++) addContribution(unit, block, vs, blockIndex, index, i);
    }),
  );
  function addContribution(unit: BlockCosts, block: ProgramBlock, vs: number, blockIndex: number, index: number, i: number): void {
    const { id } = chain[i];
    const source = chain[i].producer;
    const key = `${chain[i - 1]?.id}|${id}|${chain[i + 1]?.id}|${source >= 0 ? chain[source].id : ''}|${block.kind}|${index}|${block.ops.length}|${plans[vs][blockIndex] === keepAll ? 'kept' : ''}`;
    let c = contributions.get(key);
    if (c === undefined) contributions.set(key, (c = contribution(i)));
    unit.forwardFlops += c.forward;
    unit.inputGradFlops += c.inputGrad + c.kernelRecompute;
    unit.kernelRecomputeFlops += c.kernelRecompute;
    unit.weightGradFlops += c.weightGrad;
    unit.timeFlops.forward += c.forward / c.speed;
    unit.timeFlops.inputGrad += (c.inputGrad + c.kernelRecompute) / c.speed;
    unit.timeFlops.weightGrad += c.weightGrad / c.speed;
    unit.timeFlops.recompute += c.recompute / c.speed;
    unit.movedBytes += c.moved;
    unit.recomputeFlops += c.recompute;
    unit.recomputeMovedBytes += c.recomputeMoved;
    unit.attentionForwardFlops += c.ring.forward;
    unit.attentionInputGradFlops += c.ring.inputGrad;
    unit.ringBytes += c.ring.bytes;
    for (const t of c.saved) {
      if (t.kept) unit.activationBytes += t.bytes;
      // A rebuilt block's activations live again during its backward, but for those it kept all along.
      // Without a backward, they live while the forward computes the block.
      if ((rebuilt.has(unit) || zerothOrder) && !t.kept) unit.rebuiltBytes += t.bytes;
      if (t.weightGrad) weightGradKept += t.bytes;
    }
    for (const n of c.parameters) unit.parameters += n;
    unit.forwardCollectives.push(...c.forwardSteps);
    unit.backwardCollectives.push(...c.backwardSteps);
    rebuilt.get(unit)?.push(...c.rebuiltSteps);
    if (index === block.ops.length - 1) {
      for (const t of block.tiedCopies) unit.parameters += elements(t.shape) / share(t.shape, ownerLayout(program, program.tied!.owner, t));
      // W needs the linear projections' inputs: kept ones (at most what the block keeps), or, in a block rebuilt for
      // its backward, the rebuilt ones, which then live from B until W.
      unit.weightGradBytes = rebuilt.has(unit) ? weightGradKept : Math.min(weightGradKept, unit.activationBytes);
      weightGradKept = 0;
    }
  }
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
  // Profiled times are per pipeline stage: each of its chunks takes its share.
  const chunks = program.stages.length / mesh.sizeOf('pp');
  return program.stages.map((stage, vs): VirtualStageModel => {
    const blocks = stages[vs];
    const sum = (f: (b: BlockCosts) => number) => blocks.reduce((a, b) => a + f(b), 0);
    const layers = stage.layers;
    const forwardFlops = sum((u) => u.forwardFlops);
    const recomputeFlops = sum((u) => u.recomputeFlops);
    const inputGradFlops = sum((u) => u.inputGradFlops) + recomputeFlops;
    const weightGradFlops = sum((u) => u.weightGradFlops);
    const traffic = sum((u) => u.movedBytes);
    // Recycled blocks run no backward.
    const backwardTraffic = traffic - sum((u) => (u.kind === 'recycle' ? u.movedBytes : 0));
    // Kernel issues per layer in the input-gradient pass: one more in each layer rebuilt for it.
    const issues = 1 + blocks.reduce((n, u) => n + u.extraIssues * u.layers, 0) / Math.max(1, layers);
    const activationBytes = sum((u) => u.activationBytes);
    const time = (f: (t: BlockCosts['timeFlops']) => number) => sum((u) => f(u.timeFlops));
    const forwardTimeFlops = time((t) => t.forward);
    const inputGradTimeFlops = time((t) => t.inputGrad + t.recompute);
    const weightGradTimeFlops = time((t) => t.weightGrad);
    let forwardNs: number;
    let inputGradNs: number;
    let weightGradNs: number;
    if (profiled) {
      forwardNs = toNanoseconds(costs!.forwardSeconds![stage.stage] / chunks);
      inputGradNs = toNanoseconds(costs!.backwardSeconds![stage.stage] / chunks);
      weightGradNs = toNanoseconds((costs!.weightGradSeconds?.[stage.stage] ?? 0) / chunks);
    } else {
      // A recycled block is a forward of the whole network: as many layers' kernels to issue again.
      const recycledLayers = layers * blocks.filter((u) => u.kind === 'recycle').length;
      forwardNs = toNanoseconds(passSeconds(computeModel, { flops: forwardTimeFlops, bytes: traffic, layers: layers + recycledLayers, issues: 1 }));
      inputGradNs = toNanoseconds(passSeconds(computeModel, { flops: inputGradTimeFlops, bytes: backwardTraffic + sum((u) => u.recomputeMovedBytes), layers, issues }));
      weightGradNs = toNanoseconds(passSeconds(computeModel, { flops: weightGradTimeFlops, bytes: backwardTraffic, layers, issues: 1 }));
    }
    if (zerothOrder) inputGradNs = weightGradNs = 0;
    // What crosses to the neighbouring virtual stages: the activation as the next stage's first operation takes it,
    // and the input gradient as the previous stage's last operation needs it.
    const first = chain.findIndex((c) => c.vs === vs);
    const last = first + program.stages[vs].blocks.reduce((n, b) => n + b.ops.length, 0) - 1;
    const sendForwardBytes = vs < lastVs ? inState(chain[last + 1].p.op.input, chain[last + 1].states.map((s) => s.input)) : 0;
    const sendBackwardBytes = vs > 0 ? inState(chain[first - 1].p.op.output, chain[first - 1].states.map((s) => s.outputGrad)) : 0;
    const tp = axes.indexOf('tp');
    const replicas = (states: readonly string[] | undefined) => (tp >= 0 && states?.[tp] === 'R' ? mesh.sizeOf('tp') : 1);
    const sendForwardReplicas = vs < lastVs ? replicas(chain[last + 1].states.map((s) => s.input)) : 1;
    const sendBackwardReplicas = vs > 0 ? replicas(chain[first - 1].states.map((s) => s.outputGrad)) : 1;
    return {
      virtualStage: vs,
      stage: stage.stage,
      chunk: stage.chunk,
      layers,
      blocks,
      parametersPerDevice: sum((u) => u.parameters),
      forwardFlops,
      inputGradFlops,
      weightGradFlops,
      modelBackwardFlops: inputGradFlops - recomputeFlops - sum((u) => u.kernelRecomputeFlops) + weightGradFlops,
      recomputeFlops,
      recomputeTimeFlops: time((t) => t.recompute),
      forwardTimeFlops,
      inputGradTimeFlops,
      weightGradTimeFlops,
      forwardNs,
      inputGradNs,
      weightGradNs,
      backwardNs: inputGradNs + weightGradNs,
      activationBytes,
      weightGradBytes: sum((b) => b.weightGradBytes),
      recomputeBytes: zerothOrder ? 0 : Math.max(0, ...blocks.map((u) => u.rebuiltBytes)),
      forwardWorkingBytes: zerothOrder ? Math.max(0, ...blocks.map((u) => u.rebuiltBytes)) : 0,
      sendForwardBytes,
      sendBackwardBytes,
      sendForwardReplicas,
      sendBackwardReplicas,
      attentionForwardFlops: sum((u) => u.attentionForwardFlops),
      attentionInputGradFlops: sum((u) => u.attentionInputGradFlops),
      ringBytes: sum((u) => u.ringBytes),
    };
  });

  /** Bytes of a tensor on one device when it lies in these states along the split axes. */
  // As shards() splits a tensor: a split tensor axis shorter than the mesh axis is split into its own length.
  function inState(t: Tensor, states: readonly string[]): number {
    let divisor = 1;
    states.forEach((state, a) => {
      const length = state.startsWith('S:') ? t.shape[state.slice(2) as keyof Shape] : undefined;
      if (length !== undefined) divisor *= Math.min(mesh.sizeOf(axes[a]), length);
    });
    return (elements(t.shape) * elementBytes(t.element, precision)) / divisor;
  }
}

/** `from`'s costs into `to` (a block of the same kind, plan and neighbours), and the collectives a rebuild of it runs. */
function copyBlockCosts(from: BlockCosts, to: BlockCosts, rebuilt: Map<BlockCosts, CollectiveStep[]>): void {
  Object.assign(to, from, {
    timeFlops: { ...from.timeFlops },
    forwardCollectives: [...from.forwardCollectives],
    backwardCollectives: [...from.backwardCollectives],
  });
  rebuilt.get(to)?.push(...rebuilt.get(from)!);
}
