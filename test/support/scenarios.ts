import { stringify } from 'yaml';
import { parseScenario } from '../../src/scenario/load.js';
import type { Scenario } from '../../src/scenario/resolve.js';
import { scheduleContext } from '../../src/strategies/pipeline/registry.js';

type Tree = Record<string, unknown>;

/** Deep-merges plain objects; arrays and scalars replace. */
export function merge(base: Tree, patch: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Tree, v as Tree) : v;
  }
  return out;
}

/** A small valid scenario as a plain object: 1 node of 4 GPUs, a tiny GPT, TP 1 x PP 4 x DP 1. */
export const BASE: Tree = {
  name: 'test',
  seed: 7,
  cluster: { nodes: 1, gpusPerNode: 4, node: 'dgx-a100' },
  model: { preset: 'gpt-tiny' },
  training: { globalBatch: 8, microBatch: 1 },
  parallel: { tp: 1, pp: 4, dp: 1, schedule: '1f1b' },
};

/** Builds a scenario through the real loader (YAML text), so tests see exactly what users get. */
export function scenario(patch: Tree = {}, base: Tree = BASE): Scenario {
  return parseScenario(stringify(merge(base, patch)), 'test.yaml', scheduleContext);
}

/**
 * Pipeline-only scenario with profiled costs and (by default) free communication:
 * the setting of the bubble laws. Untied embeddings, so no gradient sync between
 * the first and last stage adds communication.
 */
export function pipelineScenario(opts: { p: number; m: number; schedule: string; forward: number | number[]; backward: number | number[]; p2p?: number; optimizer?: number }): Scenario {
  return scenario({
    cluster: { nodes: 1, gpusPerNode: opts.p },
    training: { globalBatch: opts.m, microBatch: 1 },
    model: { preset: 'gpt-tiny', layers: Math.max(4, opts.p), tiedEmbeddings: false },
    parallel: { tp: 1, pp: opts.p, dp: 1, schedule: opts.schedule },
    costs: { forward: opts.forward, backward: opts.backward, p2p: opts.p2p ?? 0, optimizer: opts.optimizer ?? 0 },
  });
}
