import { z } from 'zod';
import type { PathIssue } from '../../errors.js';
import { choice, quantity } from '../../fields.js';
import type { ParallelismPass } from '../pass.js';
import type { Tier } from '../program.js';
import type { ZeroConfig } from './zero.js';

/**
 * ZeRO-Offload (Ren et al., ATC 2021) and ZeRO-Infinity (Rajbhandari et al., SC21): the optimizer's shard (and the
 * gradient shard it consumes) in host memory or on NVMe, updated by the CPU; with ZeRO-3 the parameter shard too,
 * fetched to the GPU before each gather. Each GPU keeps a pinned host buffer for the transfers.
 */
const targets = ['none', 'cpu', 'nvme'] as const;
const fields = {
  offload: z
    .object({ optimizer: choice(targets).default('none'), params: choice(targets).default('none'), pinnedBuffer: quantity('size').default(2 ** 30) })
    .strict()
    .prefault({}),
};

export interface OffloadConfig {
  offload: { optimizer: 'none' | 'cpu' | 'nvme'; params: 'none' | 'cpu' | 'nvme'; pinnedBufferBytes: number };
}

const tierOf = (target: 'none' | 'cpu' | 'nvme'): Tier => (target === 'none' ? 'hbm' : target);

export const offload: ParallelismPass<typeof fields, OffloadConfig, OffloadConfig & ZeroConfig> = {
  name: 'offload',
  fields,
  resolve: ({ offload: o }) => ({ offload: { optimizer: o.optimizer, params: o.params, pinnedBufferBytes: o.pinnedBuffer } }),
  check({ offload: o, zero }) {
    const issues: PathIssue[] = [];
    if (o.params !== 'none' && zero !== 3) {
      issues.push({ path: ['parallel', 'offload', 'params'], message: `offloading parameters (${o.params}) needs ZeRO-3 (ZeRO-Infinity fetches them layer by layer); set parallel.zero: 3, or offload.params: none` });
    }
    if (o.optimizer !== 'none' && zero === 0) {
      issues.push({ path: ['parallel', 'offload', 'optimizer'], message: `offloading the optimizer (${o.optimizer}) builds on ZeRO: set parallel.zero to 1, 2 or 3 (ZeRO-Offload uses 2)` });
    }
    if (o.optimizer === 'nvme' && zero !== 3) {
      issues.push({ path: ['parallel', 'offload', 'optimizer'], message: `optimizer states on NVMe are ZeRO-Infinity, which needs ZeRO-3; set parallel.zero: 3, or offload.optimizer: cpu` });
    }
    return issues;
  },
  apply(program, { offload: o }) {
    if (o.optimizer === 'none' && o.params === 'none') return program;
    const { states } = program;
    const optimizerTier = tierOf(o.optimizer);
    // An offloaded optimizer keeps the gradient shard it consumes beside its states.
    return {
      ...program,
      states: {
        ...states,
        optimizer: { ...states.optimizer, tier: optimizerTier },
        grads: { ...states.grads, tier: states.grads.shardAxes.length > 0 ? optimizerTier : 'hbm' },
        params: { ...states.params, tier: states.params.shardAxes.length > 0 ? tierOf(o.params) : 'hbm' },
        pinnedHostBytes: o.pinnedBufferBytes,
      },
    };
  },
};
