import { z } from 'zod';
import type { PathIssue } from '../errors.js';
import type { Workload } from '../workload/types.js';
import { dataParallel } from './data/data-parallel.js';
import { dynamicAxialParallel } from './evoformer/dap.js';
import { offload } from './data/offload.js';
import { zeroRedundancy } from './data/zero.js';
import { DeviceMesh, type Coordinates } from './mesh.js';
import type { CheckContext, ConfigContext, ParallelismPass } from './pass.js';
import { pipelineParallel } from './pipeline/pipeline-parallel.js';
import { initialProgram, type StepProgram } from './program.js';
import { contextParallel } from './sequence/context-parallel.js';
import { sequenceParallel } from './sequence/megatron-sp.js';
import { ulysses } from './sequence/ulysses.js';
import { tensorParallel } from './tensor/megatron-tp.js';

/**
 * Every parallelism pass, in the order they resolve their fields and rewrite the step program. Adding one is a new
 * file under src/strategies/<family>/ and one line here; its fields join the scenario's `parallel` section and its
 * configuration joins `ParallelConfig`. A pass that defines a mesh axis comes before `dataParallel`, whose degree
 * defaults to what the others leave.
 */
export const PASSES = [tensorParallel, sequenceParallel, contextParallel, ulysses, dynamicAxialParallel, pipelineParallel, dataParallel, zeroRedundancy, offload] as const;

type ConfigOf<P> = P extends ParallelismPass<z.ZodRawShape, infer C, object> ? C : never;
type Intersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
/** The resolved `parallel` section: every pass's configuration together. */
export type ParallelConfig = Intersection<ConfigOf<(typeof PASSES)[number]>>;

// Passes are called through this view: each reads the whole configuration, of which its own is a part.
type AnyPass = ParallelismPass<z.ZodRawShape, object, ParallelConfig>;
const passes = PASSES as unknown as readonly AnyPass[];

/** The scenario's `parallel` section: every pass's fields, each owned by one pass. */
export const parallelFields: z.ZodRawShape = {};
for (const pass of passes) {
  for (const field of Object.keys(pass.fields)) if (field in parallelFields) throw new Error(`parallelism passes: field parallel.${field} is declared twice (${pass.name})`);
  Object.assign(parallelFields, pass.fields);
}

/**
 * Resolves the parsed `parallel` section pass by pass, then checks it whole (unless `check` is false: the mesh's
 * degrees before any check, which do not depend on the batch).
 */
export function resolveParallel(input: Record<string, unknown>, context: ConfigContext, check = true): { parallel?: ParallelConfig; issues: PathIssue[] } {
  const issues: PathIssue[] = [];
  const fail = (path: (string | number)[], message: string) => issues.push({ path, message });
  const resolved: Record<string, unknown> = {};
  const axes: Coordinates = {};
  for (const pass of passes) {
    Object.assign(resolved, pass.resolve(input as never, { ...context, axesSoFar: { ...axes }, fail }));
    Object.assign(axes, pass.axes?.(resolved as unknown as ParallelConfig));
  }
  const parallel = resolved as unknown as ParallelConfig;
  if (!check) return { parallel, issues };
  const product = Object.values(axes).reduce((a, b) => a * b, 1);
  if (product !== context.devices) {
    const degrees = Object.entries(axes);
    const { nodes, gpusPerNode } = context;
    fail(
      ['parallel', input.dp === undefined ? 'tp' : 'dp'],
      `${degrees.map(([k]) => k).join(' x ')} = ${degrees.map(([, v]) => v).join(' x ')} = ${product} must equal the GPU count, cluster.nodes x gpusPerNode = ${nodes} x ${gpusPerNode} = ${context.devices}`,
    );
  }
  const mesh = new DeviceMesh(axes);
  const checks: CheckContext = { ...context, mesh, microBatches: context.training.globalBatch / (context.training.microBatch * mesh.sizeOf('dp')) };
  for (const pass of passes) issues.push(...pass.check(parallel, checks));
  return issues.length > 0 ? { issues } : { parallel, issues };
}

/** The device mesh a configuration defines. */
export function meshOf(parallel: ParallelConfig): DeviceMesh {
  const axes: Coordinates = {};
  for (const pass of passes) Object.assign(axes, pass.axes?.(parallel));
  return new DeviceMesh(axes);
}

/** The step program of a workload under a configuration: the initial program rewritten by every pass in turn. */
export function buildProgram(workload: Workload, parallel: ParallelConfig): StepProgram {
  const mesh = meshOf(parallel);
  let program = initialProgram(workload, mesh);
  for (const pass of passes) program = pass.apply(program, parallel, { mesh });
  return program;
}
