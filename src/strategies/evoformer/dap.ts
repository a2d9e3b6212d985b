import { z } from 'zod';
import type { PathIssue } from '../../errors.js';
import { count } from '../../fields.js';
import type { TensorAxis } from '../../workload/types.js';
import type { ParallelismPass } from '../pass.js';
import type { PipelineConfig } from '../pipeline/pipeline-parallel.js';
import { withLayouts } from '../program.js';

/**
 * FastFold's Dynamic Axial Parallelism (Cheng et al., 2022) on the Evoformer (workload/evoformer.ts): the MSA and
 * pair representations are split over the `dap` mesh axis along the axis an operation does not compute along, and
 * the parameters stay whole on every rank.
 *
 * MSA row attention works along residues, so it splits the MSA's sequences; column attention, the MSA transition
 * and the outer-product mean split its residues. The triangle operations around the starting node (outgoing
 * multiplication, starting-node attention) split the pair's rows i, those around the ending node its columns j,
 * and the pair transition the columns as the ending-node attention left them. By the rule in sharding.ts every
 * switch of axis is an all-to-all (two of the MSA and four of the pair per block, as FastFold's); the tensors an
 * operation computes from its slice and needs whole (row attention's pair bias, the outer-product mean's and each
 * triangle multiplication's projection, the triangle attentions' biases) are all-gathered, and the backward mirrors
 * both: all-to-all for all-to-all, reduce-scatter for all-gather. Embedders split as the operations after them do;
 * the structure module is not split, and gathers the pair whole.
 *
 * Every rank of a group computes with the same weights on its slice of the same protein, so gradients are summed
 * over `dap` as over data-parallel replicas, and ZeRO shards over the data x DAP group.
 *
 * `dapOverlap` stands for FastFold's duality asynchronous operations: a pass's DAP collectives run alongside its
 * computation instead of after it, which bounds from below what overlapping can reach (the real overlap is limited
 * to the computation that does not depend on the exchanged tensor).
 */
const fields = {
  dap: count('a whole number of GPUs, at least 1').default(1),
  dapOverlap: z.boolean({ error: 'expected true or false' }).default(false),
};

export interface DapConfig {
  /** GPUs one protein's representations are split over (mesh axis `dap`). */
  dap: number;
  dapOverlap: boolean;
}

/** The tensor axes each Evoformer operation splits over `dap`: the MSA's first, then the pair's. */
export const DAP_SPLITS: Readonly<Record<string, readonly TensorAxis[]>> = {
  'msa-embedding': ['msaRows'],
  'pair-embedding': ['residues'],
  // Row attention splits the MSA's sequences, and reads the pair as the block before left it (split along j).
  'msa-row-attention': ['msaRows', 'residues2'],
  'msa-column-attention': ['residues'],
  'msa-transition': ['residues'],
  // The masked-MSA head reads the MSA as the last block left it.
  'masked-msa-head': ['residues'],
  'outer-product-mean': ['residues'],
  'triangle-multiplication-outgoing': ['residues'],
  'triangle-multiplication-incoming': ['residues2'],
  'triangle-attention-starting': ['residues'],
  'triangle-attention-ending': ['residues2'],
  'pair-transition': ['residues2'],
};

/** The split of an operation, the extra-MSA stack's named as the main stack's. */
export const dapSplit = (name: string): readonly TensorAxis[] | undefined => DAP_SPLITS[name.startsWith('extra-') ? name.slice('extra-'.length) : name];

export const dynamicAxialParallel: ParallelismPass<typeof fields, DapConfig, DapConfig & PipelineConfig> = {
  name: 'dap',
  fields,
  resolve: ({ dap, dapOverlap }) => ({ dap, dapOverlap }),
  axes: ({ dap }) => (dap > 1 ? { dap } : {}),
  check({ dap, dapOverlap, pp }, { model, gpusPerNode }) {
    const issues: PathIssue[] = [];
    const fail = (field: string, message: string) => issues.push({ path: ['parallel', field], message });
    if (model.kind !== 'evoformer') {
      const instead = model.kind === 'vit' ? 'a vision transformer, split by data parallelism (parallel.dp, with parallel.zero)' : 'a GPT-shaped transformer; split it with tp, cp or ulysses';
      if (dap > 1) fail('dap', `dap = ${dap}: Dynamic Axial Parallelism splits an Evoformer's MSA and pair representations, and this model is ${instead}, or set model.kind: evoformer (or model.preset: alphafold2)`);
      if (dapOverlap) fail('dapOverlap', 'dapOverlap overlaps Dynamic Axial Parallelism, which applies only to model.kind evoformer');
      return issues;
    }
    if (pp > 1) fail('pp', `pp = ${pp}: an Evoformer is not pipelined here (AlphaFold's training systems split it with DAP and data parallelism); use parallel.dap`);
    if (dap === 1) {
      if (dapOverlap) fail('dapOverlap', 'dapOverlap overlaps the collectives of parallel.dap, which is 1; set dap to 2 or more, or leave dapOverlap out');
      return issues;
    }
    const sizes: [string, number][] = [
      ['model.residues', model.residues],
      ['model.msaRows', model.msaRows],
      ...(model.extraLayers > 0 ? [['model.extraMsaRows', model.extraMsaRows] as [string, number]] : []),
    ];
    const uneven = sizes.filter(([, size]) => size % dap !== 0);
    if (uneven.length > 0) {
      const valid = Array.from({ length: gpusPerNode }, (_, i) => i + 1).filter((d) => sizes.every(([, size]) => size % d === 0));
      fail(
        'dap',
        `dap = ${dap} must divide what it splits, but ${uneven.map(([field, size]) => `${field} (${size})`).join(' and ')} ${uneven.length > 1 ? 'are' : 'is'} not divisible by ${dap}; degrees within a node that divide ${sizes.map(([field]) => field).join(', ')}: ${valid.join(', ')}`,
      );
    }
    return issues;
  },
  apply(program, { dap, dapOverlap }) {
    if (dap === 1) return program;
    const split = withLayouts(program, (op) => {
      const axes = dapSplit(op.name);
      return axes === undefined ? undefined : { dap: axes };
    });
    return { ...split, gradients: { ...split.gradients, axes: [...split.gradients.axes, 'dap'] }, ...(dapOverlap ? { overlappedAxes: ['dap' as const] } : {}) };
  },
};
