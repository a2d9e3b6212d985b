import { buildGpt, type GptBuildOptions, type GptSpec } from './gpt.js';
import { elements, type Workload } from './types.js';

/**
 * Model kinds by name. A kind is a resolved specification and a function that builds its workload for a
 * micro-batch; the lowering sees only the workload. Adding a kind is a new file and one line here.
 */
export const MODEL_KINDS = {
  gpt: buildGpt,
} as const;

export type ModelKind = keyof typeof MODEL_KINDS;
/** A resolved model: today every kind is GPT-shaped. */
export type ModelSpec = GptSpec;
export type WorkloadOptions = GptBuildOptions;

export function buildWorkload(model: ModelSpec, options: WorkloadOptions): Workload {
  return MODEL_KINDS.gpt(model, options);
}

/** Ψ: every parameter of a workload; a tied tensor is a parameter of its owner only, so it counts once. */
export function workloadParameters(workload: Workload): number {
  let sum = 0;
  for (const block of workload.blocks) for (const op of block.ops) for (const p of op.parameters) sum += elements(p.shape);
  return sum;
}

/**
 * Ψ of a model, independent of the micro-batch. Its layers are alike, so it is the one-layer model's plus the
 * rest times one layer's: no workload of a billion layers is built to count them.
 */
export function modelParameters(model: ModelSpec): number {
  const withLayers = (layers: number) => workloadParameters(buildWorkload({ ...model, layers }, { microBatch: 1, attention: 'standard' }));
  const one = withLayers(1);
  return one + (model.layers - 1) * (withLayers(2) - one);
}
