import { z } from 'zod';
import type { PathIssue } from '../../errors.js';
import type { ParallelismPass } from '../pass.js';
import type { PipelineConfig } from '../pipeline/pipeline-parallel.js';
import { getSchedule, SCHEDULES } from '../pipeline/registry.js';
import type { OffloadConfig } from './offload.js';

/**
 * ZeRO (Rajbhandari et al., SC20): model states sharded over the data-parallel group. Stage 1 shards the optimizer
 * states, stage 2 the gradients too, stage 3 the parameters too. With mixed-precision Adam that gives per device
 * 16Ψ, 4Ψ + 12Ψ/N, 2Ψ + 14Ψ/N and 16Ψ/N bytes. Gradients are reduce-scattered rather than all-reduced; from
 * stage 2 on after every micro-batch, since a device keeps only its shard; stage 3 gathers each block's parameters
 * before each pass, at most `prefetchLayers` blocks ahead; stages 1 and 2 gather the updated parameters after the
 * optimizer step.
 *
 * With pipeline parallelism each stage's data-parallel group shards its own states: stage 1 is Megatron's
 * distributed optimizer, stage 2 what Llama 3's FSDP does with its pipeline (parameters kept whole through the
 * step, gradients reduce-scattered after each micro-batch's backward).
 */
const fields = {
  zero: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3)], { error: 'expected a ZeRO stage: 0, 1, 2 or 3' }).default(0),
  prefetchLayers: z.number().int({ error: 'expected a whole number of layers, 0 or more' }).min(0, { error: 'expected a whole number of layers, 0 or more' }).max(1e9, { error: 'expected a whole number of layers, at most 1e9' }).default(1),
};

export interface ZeroConfig {
  /** ZeRO stage over the data-parallel group. */
  zero: 0 | 1 | 2 | 3;
  /** ZeRO-3: layers whose parameters are gathered ahead of the one computing. */
  prefetchLayers: number;
}

export const zeroRedundancy: ParallelismPass<typeof fields, ZeroConfig, ZeroConfig & PipelineConfig & OffloadConfig> = {
  name: 'zero',
  fields,
  resolve: ({ zero, prefetchLayers }) => ({ zero, prefetchLayers }),
  check({ zero, pp, schedule, offload }, { mesh }) {
    const issues: PathIssue[] = [];
    const offloading = offload.optimizer !== 'none' || offload.params !== 'none';
    // The ranks that hold the same weights: data-parallel replicas, and the ranks of a sequence split over.
    const replicas = mesh.size / (mesh.sizeOf('tp') * mesh.sizeOf('pp'));
    if (zero > 0 && replicas === 1 && !offloading) {
      issues.push({ path: ['parallel', 'zero'], message: `zero: ${zero} shards model states over the data-parallel group, but dp is 1, so there is nothing to shard; use zero: 0, more data-parallel replicas, or offload (parallel.offload)` });
    }
    if (zero === 3 && pp > 1) {
      issues.push({ path: ['parallel', 'zero'], message: `zero: 3 with pipeline parallelism (pp = ${pp}) would gather every layer's parameters for each of its micro-batches; it is not modelled, as DeepSpeed does not support it either; use zero: 2 (sharded gradients and optimizer states, as Llama 3's FSDP keeps parameters whole through the step), zero: 1 (Megatron's distributed optimizer), or pp: 1` });
    }
    if (zero === 3 && schedule in SCHEDULES && getSchedule(schedule).splitBackward) {
      issues.push({ path: ['parallel', 'schedule'], message: `zero: 3 gathers each layer's parameters for its forward and backward; with pp = 1 a split backward gains nothing, so the ${schedule} schedule is not modelled with it; use 1f1b or gpipe` });
    }
    return issues;
  },
  apply(program, { zero, prefetchLayers }) {
    if (zero === 0) return program;
    const { states, gradients } = program;
    const sharded = (placement: typeof states.params, yes: boolean) => (yes ? { ...placement, shardAxes: gradients.axes } : placement);
    return {
      ...program,
      gradients: { ...gradients, collective: 'reduceScatter', every: zero >= 2 ? 'micro-batch' : 'step' },
      states: { ...states, optimizer: sharded(states.optimizer, true), grads: sharded(states.grads, zero >= 2), params: sharded(states.params, zero === 3), prefetchBlocks: prefetchLayers },
    };
  },
};
