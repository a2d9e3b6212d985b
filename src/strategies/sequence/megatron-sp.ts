import { z } from 'zod';
import { gptModel, type ParallelismPass } from '../pass.js';
import { withLayout } from '../program.js';
import type { TensorConfig } from '../tensor/megatron-tp.js';

/**
 * Megatron sequence parallelism (Korthikanti et al., MLSys 2023, §4.2.2): the layer norms and dropouts, which tensor
 * parallelism leaves whole on every rank, are split along the sequence over the same `tp` group. Each all-reduce
 * of tensor parallelism then becomes a reduce-scatter into the sequence-split region and an all-gather out of it,
 * moving the same bytes; their activations, and the pipeline transfers between stages, shrink by the TP degree.
 * All of this follows from the layouts by the rule in sharding.ts.
 *
 * Not modelled: Megatron all-gathers the saved sequence-split input of each column-parallel linear again in the
 * backward pass for its weight gradient, overlapped with the input-gradient GEMM; the paper counts sequence
 * parallelism's traffic equal to tensor parallelism's without it.
 */
const fields = { sequenceParallel: z.boolean({ error: 'expected true or false' }).default(false) };

export interface SequenceConfig {
  sequenceParallel: boolean;
}

export const sequenceParallel: ParallelismPass<typeof fields, SequenceConfig, SequenceConfig & TensorConfig> = {
  name: 'sequence',
  fields,
  resolve: ({ sequenceParallel }) => ({ sequenceParallel }),
  check({ sequenceParallel, tp }, context) {
    if (!sequenceParallel) return [];
    const { model, issues } = gptModel(context.model, 'sequenceParallel', 'sequenceParallel (Megatron sequence parallelism)');
    if (model === undefined) return issues;
    if (tp === 1) issues.push({ path: ['parallel', 'sequenceParallel'], message: 'sequence parallelism splits the layer norms and dropouts over the tensor-parallel group, but tp is 1; set parallel.tp to 2 or more, or sequenceParallel: false' });
    else if (model.seqLength % tp !== 0) {
      issues.push({ path: ['parallel', 'sequenceParallel'], message: `sequence parallelism splits the sequence over tp = ${tp} ranks, but model.seqLength ${model.seqLength} is not divisible by ${tp}; use a sequence length that is a multiple of ${tp}, another tp, or sequenceParallel: false` });
    }
    return issues;
  },
  // The operations between the tensor-parallel regions: layer norms and dropouts on [batch, seq, hidden].
  apply: (program, { sequenceParallel }) =>
    sequenceParallel ? withLayout(program, (op) => (op.class === 'norm' || op.class === 'elementwise') && op.input.shape.hidden !== undefined && op.input.shape.seq !== undefined, { tp: ['seq'] }) : program,
};
