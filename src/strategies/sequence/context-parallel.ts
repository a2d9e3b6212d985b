import { choice, count } from '../../fields.js';
import { gptModel, type ParallelismPass } from '../pass.js';
import { withLayout, type ContextAttention } from '../program.js';

/**
 * Context parallelism: every operation's sequence is split over the `cp` mesh axis, so each rank keeps 1/P of every
 * activation and runs 1/P of every FLOP. Attention is the one operation whose queries read the whole sequence's
 * keys and values; two ways to give them:
 *
 * - `ring` (Ring Attention, Liu et al., 2023; Megatron-LM's context parallelism): each rank keeps its query block
 *   and passes key/value blocks around the ring in P - 1 steps, each transfer overlapping the attention of the
 *   block it holds; the backward passes the blocks again, each with the gradient of the block before, and one last
 *   hop returns each block's gradient to its owner. Communication shows where a block's attention is shorter than
 *   its transfer, and in that last hop.
 * - `allgather` (Llama 3, Dubey et al., 2024, §3.3.2): keys and values all-gathered before attention (small under
 *   grouped-query attention) and kept for the backward, their gradients reduce-scattered after it.
 *
 * A causal mask leaves rank i of a contiguous split i + 1/2 blocks of work of the P/2 average: the last rank
 * works twice the average and the first almost nothing. The zig-zag split (2P chunks, rank i holding chunks i and
 * 2P - 1 - i) gives every rank, and with a ring every step, the same work. The weights are whole on every rank, so
 * gradients are summed over the group as over data-parallel replicas, and ZeRO shards over data x context.
 */
const fields = {
  cp: count('a whole number of GPUs, at least 1').default(1),
  cpAttention: choice(['ring', 'allgather'] as const).default('ring'),
  cpSplit: choice(['zigzag', 'contiguous'] as const).default('zigzag'),
};

export interface ContextConfig {
  /** GPUs a sequence is split over (mesh axis `cp`). */
  cp: number;
  cpAttention: 'ring' | 'allgather';
  cpSplit: 'zigzag' | 'contiguous';
}

export const contextParallel: ParallelismPass<typeof fields, ContextConfig> = {
  name: 'context',
  fields,
  resolve: ({ cp, cpAttention, cpSplit }) => ({ cp, cpAttention, cpSplit }),
  axes: ({ cp }) => (cp > 1 ? { cp } : {}),
  check({ cp, cpAttention, cpSplit }, { model: spec, training }) {
    if (cp === 1) return [];
    const { model, issues } = gptModel(spec, 'cp', `cp = ${cp} (context parallelism)`);
    if (model === undefined) return issues;
    if (model.attention !== undefined) {
      issues.push({ path: ['parallel', 'cp'], message: `context parallelism splits exact attention's keys and values over the sequence; ${model.attention} attention reduces them over the whole sequence first, which this split does not model; use model.attention: standard, or ulysses` });
    }
    const chunks = cpSplit === 'zigzag' ? 2 * cp : cp;
    if (model.seqLength % chunks !== 0) {
      const how = cpSplit === 'zigzag' ? `the zig-zag split cuts it into 2 x cp = ${chunks} chunks` : `the contiguous split cuts it into cp = ${cp} blocks`;
      issues.push({ path: ['parallel', 'cp'], message: `model.seqLength ${model.seqLength} is not divisible by ${chunks}: ${how}; use a sequence length that is a multiple of ${chunks}, or another cp` });
    }
    if (cpAttention === 'ring' && !training.flashAttention) {
      issues.push({ path: ['parallel', 'cpAttention'], message: 'ring attention computes attention block by block, as FlashAttention does, and never holds a whole score matrix; set training.flashAttention: true, or cpAttention: allgather' });
    }
    return issues;
  },
  apply(program, { cp, cpAttention, cpSplit }) {
    if (cp === 1) return program;
    const split = withLayout(program, () => true, { cp: ['seq'] });
    const causal = program.workload.blocks.some((block) => block.ops.some((op) => op.causal === true));
    const uneven = causal && cpSplit === 'contiguous';
    const contextAttention: ContextAttention = {
      axis: 'cp',
      exchange: cpAttention,
      steps: cpAttention === 'ring' ? cp : 1,
      work: Array.from({ length: cp }, (_, rank) => (cpAttention === 'ring' ? ringWork(rank, cp, uneven) : [uneven ? (2 * rank + 1) / cp : 1])),
    };
    return { ...split, contextAttention, gradients: { ...split.gradients, axes: [...split.gradients.axes, 'cp'] } };
  },
};

/**
 * Rank `rank`'s attention work in each ring step, as a multiple of the average. In step j it holds the block of rank
 * rank - j; on a contiguous causal split that block is the diagonal (half a block of work) in step 0, earlier
 * positions (a whole block) while j <= rank, and later positions (masked, none) after.
 */
function ringWork(rank: number, steps: number, uneven: boolean): number[] {
  return Array.from({ length: steps }, (_, j) => (!uneven ? 1 : j === 0 ? 1 : j <= rank ? 2 : 0));
}
