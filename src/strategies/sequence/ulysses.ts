import { count } from '../../fields.js';
import { gptModel, type ParallelismPass } from '../pass.js';
import { withLayout } from '../program.js';
import type { TensorConfig } from '../tensor/megatron-tp.js';

/**
 * DeepSpeed-Ulysses (Jacobs et al., 2023): the sequence is split over the `sp` mesh axis everywhere but in the
 * attention core, which is split over attention heads instead. By the rule in sharding.ts, the fused Q, K and V are
 * exchanged all-to-all before attention and the attention output all-to-all after it (and the reverse in the
 * backward): per device about 4·N·h/P elements a layer, falling as P grows where Megatron's sequence parallelism
 * moves a constant 4·N·h. Every activation, FLOP and pipeline transfer divides by P.
 *
 * The weights are whole on every rank of the group, so their gradients are summed over it as over data-parallel
 * replicas, and ZeRO shards over the data x sequence group, as DeepSpeed does.
 */
const fields = { ulysses: count('a whole number of GPUs, at least 1').default(1) };

export interface UlyssesConfig {
  /** GPUs a sequence is split over, Ulysses-style (mesh axis `sp`). */
  ulysses: number;
}

export const ulysses: ParallelismPass<typeof fields, UlyssesConfig, UlyssesConfig & TensorConfig> = {
  name: 'ulysses',
  fields,
  resolve: ({ ulysses: degree }) => ({ ulysses: degree }),
  axes: ({ ulysses: degree }) => (degree > 1 ? { sp: degree } : {}),
  check({ ulysses: degree, tp }, context) {
    if (degree === 1) return [];
    const { model, issues } = gptModel(context.model, 'ulysses', `ulysses = ${degree} (DeepSpeed-Ulysses sequence parallelism)`);
    if (model === undefined) return issues;
    const fail = (message: string) => issues.push({ path: ['parallel', 'ulysses'], message });
    const headsPerRank = model.heads / tp;
    // With tensor parallelism, each tensor-parallel rank's heads (and key/value heads) are spread over the group.
    const kvPerRank = model.kvHeads >= tp ? model.kvHeads / tp : 1;
    if (model.heads % (tp * degree) !== 0) {
      fail(`ulysses = ${degree} must divide the attention heads each tensor-parallel rank holds (${model.heads} / tp ${tp} = ${headsPerRank}); tp x ulysses must divide ${model.heads}`);
    } else if (kvPerRank % degree !== 0) {
      fail(`ulysses = ${degree} must divide the key/value heads each tensor-parallel rank holds (${kvPerRank} of ${model.kvHeads}); use a degree that divides ${kvPerRank}`);
    }
    if (model.seqLength % degree !== 0) fail(`ulysses = ${degree} splits the sequence, but model.seqLength ${model.seqLength} is not divisible by ${degree}`);
    return issues;
  },
  apply(program, { ulysses: degree }) {
    if (degree === 1) return program;
    const split = withLayout(program, () => true, { sp: ['seq'] });
    const attention = withLayout(split, (op) => op.class === 'attention', { sp: ['heads', 'kvHeads'] });
    return { ...attention, gradients: { ...attention.gradients, axes: [...attention.gradients.axes, 'sp'] } };
  },
};
