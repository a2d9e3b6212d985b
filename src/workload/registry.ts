import { buildEvoformer, type EvoformerBuildOptions, type EvoformerSpec } from './evoformer.js';
import { buildGpt, type GptBuildOptions, type GptSpec } from './gpt.js';
import { buildVit, type VitSpec } from './vit.js';
import { elements, type Tensor, type Workload } from './types.js';
import { Recent } from '../recent.js';

/**
 * Model kinds by name. A kind is a resolved specification and a function that builds its workload for a
 * micro-batch; the lowering sees only the workload. Adding a kind is a new file and one line here.
 */
export const MODEL_KINDS = {
  gpt: (model: ModelSpec, options: WorkloadOptions) => buildGpt(model as GptSpec, options),
  evoformer: (model: ModelSpec, options: WorkloadOptions) => buildEvoformer(model as EvoformerSpec, { ...options, recycles: options.recycles ?? 0 }),
  vit: (model: ModelSpec, options: WorkloadOptions) => buildVit(model as VitSpec, options),
} as const;

export type ModelKind = keyof typeof MODEL_KINDS;
/** A resolved model of any kind; a GPT-shaped one may leave `kind` out. */
export type ModelSpec = GptSpec | EvoformerSpec | VitSpec;
export type WorkloadOptions = GptBuildOptions & Partial<Pick<EvoformerBuildOptions, 'recycles'>>;

export const kindOf = (model: ModelSpec): ModelKind => model.kind ?? 'gpt';
export const isEvoformer = (model: ModelSpec): model is EvoformerSpec => model.kind === 'evoformer';
export const isGpt = (model: ModelSpec): model is GptSpec => kindOf(model) === 'gpt';

/**
 * The workload of a model, built once for the last few models and options asked for: a search builds the same
 * one for thousands of candidates. Workloads are read, never changed, so they are shared.
 */
export function buildWorkload(model: ModelSpec, options: WorkloadOptions): Workload {
  return recentWorkloads.get(JSON.stringify([model, options]), () => MODEL_KINDS[kindOf(model)](model, options));
}
const recentWorkloads = new Recent<Workload>(8);

/** Every parameter tensor of a workload, once each: a tied tensor belongs to its owner only; recycled blocks own none. */
export function* parameterTensors(workload: Workload): Generator<Tensor> {
  for (const block of workload.blocks) if (block.kind !== 'recycle') for (const op of block.ops) yield* op.parameters;
}

/** Ψ: every parameter of a workload. */
export function workloadParameters(workload: Workload): number {
  let sum = 0;
  for (const p of parameterTensors(workload)) sum += elements(p.shape);
  return sum;
}

/**
 * Ψ of a model, independent of the micro-batch. Its layers are alike, so it is the one-layer model's plus the
 * rest times one layer's: no workload of a billion layers is built to count them.
 */
export function modelParameters(model: ModelSpec): number {
  if (kindOf(model) !== 'gpt') return workloadParameters(buildWorkload(model, { microBatch: 1, attention: 'standard' }));
  const withLayers = (layers: number) => workloadParameters(buildWorkload({ ...model, layers }, { microBatch: 1, attention: 'standard' }));
  const one = withLayers(1);
  return one + (model.layers - 1) * (withLayers(2) - one);
}
