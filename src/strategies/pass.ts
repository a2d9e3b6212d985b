import type { z } from 'zod';
import type { PathIssue } from '../errors.js';
import type { Precision } from '../training/precision.js';
import type { GptSpec } from '../workload/gpt.js';
import { isGpt, type ModelSpec } from '../workload/registry.js';
import type { Coordinates, DeviceMesh } from './mesh.js';
import type { StepProgram } from './program.js';

/**
 * A parallelism pass: one file that owns its scenario fields under `parallel`, checks them against the rest of
 * the configuration, and rewrites the step program. Passes run in the registry's order (registry.ts); adding one
 * is a new file and a line there.
 */
export interface ParallelismPass<Fields extends z.ZodRawShape, Config extends object, Reads extends object = Config> {
  name: string;
  /** The fields it adds under `parallel` in a scenario file, with their defaults (docs/scenario.md documents each). */
  fields: Fields;
  /** Its resolved configuration from the parsed fields, with defaults that depend on the rest filled in. */
  resolve(input: z.output<z.ZodObject<Fields>>, context: ResolveContext): Config;
  /** The mesh axes it defines, with their sizes. */
  axes?(config: Config): Coordinates;
  /**
   * Problems with the configuration, as scenario paths and messages: empty when it can run. `config` is the whole
   * resolved `parallel` configuration; `Reads` names the other passes' fields this one reads.
   */
  check(config: Reads, context: CheckContext): PathIssue[];
  /** The program rewritten for this parallelism. */
  apply(program: StepProgram, config: Reads, context: ApplyContext): StepProgram;
}

/** What a pass may read besides its own fields. */
export interface ConfigContext {
  model: ModelSpec;
  devices: number;
  nodes: number;
  gpusPerNode: number;
  training: { globalBatch: number; microBatch: number; precision: Precision; flashAttention: boolean };
}

export interface ResolveContext extends ConfigContext {
  /** Mesh axes the passes before this one defined. */
  axesSoFar: Coordinates;
  /** Reports a problem found while resolving. */
  fail(path: (string | number)[], message: string): void;
}

export interface CheckContext extends ConfigContext {
  mesh: DeviceMesh;
  /** Micro-batches per data-parallel replica (maybe not whole when the batch does not divide). */
  microBatches: number;
}

/**
 * For a parallelism that splits what only a GPT-shaped transformer has (heads, a token sequence): the model, when it
 * is one, else a refusal at `field` naming what does apply to the model's kind.
 */
export function gptModel(model: ModelSpec, field: string, what: string): { model: GptSpec; issues: PathIssue[] } | { model?: undefined; issues: PathIssue[] } {
  if (isGpt(model)) return { model, issues: [] };
  const message =
    model.kind === 'evoformer'
      ? `${what} does not apply to model.kind evoformer, which has no attention heads to split or token sequence to cut; an Evoformer is split by Dynamic Axial Parallelism (parallel.dap) and data parallelism (parallel.dp, with parallel.zero)`
      : `${what} is not modelled for model.kind vit, whose windowed blocks change width from stage to stage; a weather vision transformer is split by data parallelism (parallel.dp, with parallel.zero), as Pangu-Weather, FuXi and Aurora train`;
  return { issues: [{ path: ['parallel', field], message }] };
}

export interface ApplyContext {
  mesh: DeviceMesh;
}
