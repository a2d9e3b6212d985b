import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseScenario, type LoadOptions } from '../../src/scenario/load.js';
import { parseVariant } from '../../src/scenario/variants.js';

// parseVariant reads a text once and applies each variant's overrides to a copy of its values: the law is that it
// answers exactly as parseScenario does, the same scenario or the same error, whatever the overrides.

const outcome = (read: () => unknown) => {
  try {
    return { scenario: JSON.stringify(read()) };
  } catch (error) {
    const e = error as Error & { issues?: unknown };
    return { error: `${e.constructor.name}: ${e.message} ${JSON.stringify(e.issues ?? null)}` };
  }
};

const bundled = readdirSync('scenarios')
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => ({ file: `scenarios/${f}`, text: readFileSync(`scenarios/${f}`, 'utf8') }));

// Texts the shortcut must leave to parseScenario, beside the bundled ones it takes.
const odd = [
  { file: 'alias.yaml', text: 'name: a\ncluster: &c { nodes: 1, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: gpt3-1.3b }\ntraining: { globalBatch: 8, microBatch: 1 }\nparallel: { tp: 1, pp: 1, dp: 8 }\n' },
  { file: 'dup.yaml', text: 'name: a\nname: b\ncluster: { nodes: 1, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: gpt3-1.3b }\ntraining: { globalBatch: 8, microBatch: 1 }\nparallel: { tp: 1, pp: 1, dp: 8 }\n' },
  { file: 'bad.yaml', text: 'name: [a\n' },
  { file: 'list.yaml', text: '- 1\n- 2\n' },
  { file: 'numkey.yaml', text: 'name: a\n1: x\ncluster: { nodes: 1, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: gpt3-1.3b }\ntraining: { globalBatch: 8, microBatch: 1 }\nparallel: { tp: 1, pp: 1, dp: 8 }\n' },
  { file: 'proto.yaml', text: 'name: a\n__proto__: { x: 1 }\ncluster: { nodes: 1, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: gpt3-1.3b }\ntraining: { globalBatch: 8, microBatch: 1 }\nparallel: { tp: 1, pp: 1, dp: 8 }\n' },
  // Tags that read as values other than mappings, lists and scalars (a review found sets going into them).
  ...['costs: !!timestamp 2001-12-14', 'costs: !!binary ""', 'costs: !!set {}', 'costs: !!omap [ a: 1 ]', 'junk: !!timestamp 2001-12-14'].map((line, i) => ({ file: `tag${i}.yaml`, text: `name: a\n${line}\ncluster: { nodes: 1, gpusPerNode: 8, gpu: !!omap [ preset: a100-80gb ], node: dgx-a100 }\nmodel: { preset: gpt3-1.3b }\ntraining: { globalBatch: 8, microBatch: 1 }\nparallel: { tp: 1, pp: 1, dp: 8 }\n` })),
  { file: 'yaml11.yaml', text: '%YAML 1.1\n---\nname: a\ncosts: 2001-12-14\ncluster: { nodes: 1, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: gpt3-1.3b }\ntraining: { globalBatch: 8, microBatch: 1 }\nparallel: { tp: 1, pp: 1, dp: 8 }\n' },
  { file: 'nulls.yaml', text: 'name: a\ncluster: { nodes: 1, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: gpt3-1.3b }\ntraining: { globalBatch: 8, microBatch: 1 }\nparallel:\n  tp: 1\n  offload:\n' },
];

const paths = [
  'parallel.tp', 'parallel.pp', 'parallel.dp', 'parallel.zero', 'parallel.schedule', 'parallel.chunks', 'parallel.offload.optimizer', 'parallel.offload.params',
  'parallel.sequenceParallel', 'parallel.cp', 'training.microBatch', 'training.recompute', 'training.globalBatch', 'training.precision', 'cluster.nodes',
  'cluster.gpu.memory', 'cluster.node.nics', 'costs.p2p', 'costs.optimizer', 'junk.x', 'cluster.gpu', 'model.layers', 'model.preset', 'seed', 'name', 'parallel.stages.0', 'parallel.layersPerStage',
  'parallel.nope', 'nope', 'parallel.tp.x', '__proto__.x', 'parallel.__proto__', 'constructor', 'cluster.gpu.preset',
];
const values = ['1ms', '40GB', '1', '2', '4', '8', '0', '-1', '3.5', 'true', 'false', 'null', '', 'bf16', 'zb-h1', 'selective', 'cpu', 'none', 'a100-40gb', '40GiB', '[1, 2]', '{ a: 1 }', '"quoted"', 'Yes', '.inf', '1e3', '[unclosed'];

const override = fc.tuple(fc.constantFrom(...paths), fc.constantFrom(...values)).map(([p, v]) => `${p}=${v}`);
const options: fc.Arbitrary<LoadOptions> = fc.record(
  {
    set: fc.array(fc.oneof(override, fc.constantFrom('novalue', '=4', 'a..b=1', 'parallel.stages.20000=1')), { maxLength: 5 }),
    unset: fc.array(fc.constantFrom('junk.x', 'junk', 'parallel.dp', 'parallel.tp', 'training.accumulation', 'parallel.layersPerStage', 'parallel.missing.deeper', 'nothing'), { maxLength: 2 }),
    seed: fc.integer({ min: 0, max: 9 }),
  },
  { requiredKeys: [] },
);

describe('parseVariant', () => {
  it('answers exactly as parseScenario (the same scenario, or the same error) for any overrides, on bundled and odd files', () => {
    let scenarios = 0;
    fc.assert(
      fc.property(fc.constantFrom(...bundled, ...odd), options, ({ file, text }, o) => {
        const expected = outcome(() => parseScenario(text, file, o));
        expect(outcome(() => parseVariant(text, file, o))).toEqual(expected);
        if (expected.scenario !== undefined) scenarios++;
      }),
      { numRuns: 600, seed: 14 },
    );
    // Not only errors: a good share of the variants are scenarios.
    expect(scenarios).toBeGreaterThan(100);
  });

  it('does not change the values it keeps for later variants', () => {
    const { file, text } = bundled.find((b) => b.file.endsWith('small-gpt.yaml'))!;
    const variant = parseVariant(text, file, { set: ['parallel.zero=2', 'parallel.offload.optimizer=cpu', 'cluster.node.nics=4', 'training.microBatch=2'], unset: ['parallel.dp'] });
    expect(variant.cluster.node.nics).toBe(4);
    expect(JSON.stringify(parseVariant(text, file))).toBe(JSON.stringify(parseScenario(text, file)));
  });
});
