import { stringify } from 'yaml';
import { ScenarioError } from '../../src/errors.js';
import { parseScenario } from '../../src/scenario/load.js';
import type { Scenario } from '../../src/scenario/resolve.js';

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
  return parseScenario(stringify(merge(base, patch)), 'test.yaml');
}

/** A scenario, or undefined where a check refuses the combination (for properties over random layouts). */
export function tryScenario(patch: Tree): Scenario | undefined {
  try {
    return scenario(patch);
  } catch (error) {
    if (error instanceof ScenarioError) return undefined;
    throw error;
  }
}

/**
 * Pipeline-only scenario with profiled costs and (by default) free communication:
 * the setting of the bubble laws. Untied embeddings, so no gradient sync between
 * the first and last stage adds communication.
 */
export function pipelineScenario(opts: {
  p: number;
  m: number;
  schedule: string;
  chunks?: number;
  forward: number | number[] | string[];
  backward: number | number[] | string[];
  weightGrad?: number | number[] | string[];
  p2p?: number;
  optimizer?: number;
  microBatchGroup?: number;
}): Scenario {
  const chunks = opts.chunks ?? 1;
  return scenario({
    cluster: { nodes: 1, gpusPerNode: opts.p },
    training: { globalBatch: opts.m, microBatch: 1 },
    // The same model for every schedule (12 layers per stage divide into 1 to 4 chunks), and a tiny vocabulary keeps
    // the stages uniform: the papers' memory laws assume the logits are small next to the layers.
    model: { preset: 'gpt-tiny', layers: opts.p * 12, vocab: 64, tiedEmbeddings: false },
    parallel: { tp: 1, pp: opts.p, dp: 1, schedule: opts.schedule, chunks, ...(opts.microBatchGroup !== undefined ? { microBatchGroup: opts.microBatchGroup } : {}) },
    costs: { forward: opts.forward, backward: opts.backward, ...(opts.weightGrad !== undefined ? { weightGrad: opts.weightGrad } : {}), p2p: opts.p2p ?? 0, optimizer: opts.optimizer ?? 0 },
  });
}
