import { count } from '../../fields.js';
import { gptModel, type ParallelismPass } from '../pass.js';
import { withLayout } from '../program.js';

/**
 * Megatron tensor parallelism (Shoeybi et al., 2019; Narayanan et al., SC21): the attention heads, the FFN columns
 * and the vocabulary are split over the `tp` axis. Column-parallel linears (QKV, the first FFN matrix, the logits)
 * split their outputs; row-parallel ones (the attention output and the second FFN matrix) and the vocabulary-parallel
 * embedding produce partial sums. The collectives this needs (two all-reduces per layer in each direction, one for
 * the embedding and one for the logits) follow from the layouts by the rule in sharding.ts.
 */
const fields = { tp: count().default(1) };

export interface TensorConfig {
  tp: number;
}

/** Tensor axes Megatron splits over `tp`. */
export const MODEL_PARALLEL_AXES = ['heads', 'kvHeads', 'ffn', 'vocab'] as const;

export const tensorParallel: ParallelismPass<typeof fields, TensorConfig> = {
  name: 'tensor',
  fields,
  resolve: ({ tp }) => ({ tp }),
  axes: ({ tp }) => ({ tp }),
  check({ tp }, context) {
    if (tp === 1) return [];
    const { model, issues } = gptModel(context.model, 'tp', `tp = ${tp} (Megatron tensor parallelism)`);
    if (model === undefined) return issues;
    const devices = context.devices;
    if (model.heads % tp !== 0) {
      issues.push({ path: ['parallel', 'tp'], message: `tp = ${tp} must divide the attention heads (${model.heads}); divisors that work: ${divisors(model.heads, devices).join(', ')}` });
    } else if (model.kvHeads % tp !== 0 && tp % model.kvHeads !== 0) {
      issues.push({ path: ['parallel', 'tp'], message: `tp = ${tp} must divide the key/value heads (${model.kvHeads}) or be a multiple of them` });
    }
    if (model.ffnHidden % tp !== 0) issues.push({ path: ['parallel', 'tp'], message: `tp = ${tp} must divide ffnHidden (${model.ffnHidden})` });
    return issues;
  },
  apply: (program, { tp }) => (tp === 1 ? program : withLayout(program, () => true, { tp: MODEL_PARALLEL_AXES })),
};

/** The divisors of n up to `most` (the GPU count): n may be huge, the GPUs are not. */
function divisors(n: number, most: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= Math.min(n, most); d++) if (n % d === 0) out.push(d);
  return out;
}
