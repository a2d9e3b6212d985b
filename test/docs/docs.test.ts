import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScenarioError, SimulationError, UsageError } from '../../src/errors.js';
import { parseScenario } from '../../src/scenario/load.js';
import { allowedKeys } from '../../src/scenario/schema.js';
import { formatBytes, formatSeconds } from '../../src/report/format.js';
import { simulate } from '../../src/simulate.js';
import { SCHEDULES } from '../../src/strategies/pipeline/registry.js';
import { cli } from '../support/cli.js';

// Docs are checked against the code so they cannot rot.
const read = (file: string) => readFileSync(file, 'utf8');
const scenarioDoc = read('docs/scenario.md');
const tmp = mkdtempSync(join(tmpdir(), 'dtsim-docs-'));

/** Every leaf field of the scenario schema, as a dotted path. */
function schemaPaths(prefix: string[] = []): string[] {
  const keys = allowedKeys(prefix);
  if (keys.length === 0) return [prefix.join('.')];
  return keys.flatMap((k) => schemaPaths([...prefix, k]));
}

/** Fenced YAML blocks that are whole scenarios. */
function scenarioBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]).filter((text) => /^name:/m.test(text));
}

/** `npx dtsim ...` lines in fenced sh blocks, as argument lists. */
function commands(markdown: string): string[][] {
  const blocks = [...markdown.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks
    .flatMap((b) => b.split('\n'))
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter((line) => line.includes('npx dtsim '))
    .map((line) => line.slice(line.indexOf('npx dtsim ') + 'npx dtsim '.length).split(/\s+/))
    .map((words) => {
      const redirect = words.indexOf('>');
      return redirect >= 0 ? words.slice(0, redirect) : words;
    });
}

describe('docs/scenario.md', () => {
  it('documents every field of the schema', () => {
    const missing = schemaPaths().filter((path) => !scenarioDoc.includes(`\`${path}\``));
    expect(missing).toEqual([]);
  });

  it('every whole-scenario example validates', () => {
    const blocks = [...scenarioBlocks(scenarioDoc), ...scenarioBlocks(read('docs/tutorial.md'))];
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    for (const text of blocks) expect(() => parseScenario(text, 'doc.yaml')).not.toThrow();
  });
});

describe('docs/api.md', () => {
  it('its example runs as written against the built package: a summary, then the refused variant naming parallel.tp', () => {
    const example = read('docs/api.md').match(/```js\n([\s\S]*?)```/)![1];
    const file = join(process.cwd(), '.api-example.mjs');
    writeFileSync(file, example);
    try {
      const r = spawnSync(process.execPath, [file], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^dtsim [\d.]+: api-example/);
      expect(r.stdout).toMatch(/step time [\d.]+ s, fits: true/);
      expect(r.stdout).toMatch(/parallel\.tp: tp = 3 must divide the attention heads/);
    } finally {
      rmSync(file, { force: true });
    }
  });
});

describe('docs/scenario.schema.json', () => {
  it('is what dtsim schema prints, and has every field of the scenario schema', async () => {
    const printed = await cli('schema');
    expect(printed.code).toBe(0);
    expect(read('docs/scenario.schema.json')).toBe(printed.stdout);
    const schema = JSON.parse(printed.stdout);
    const has = (path: string) => {
      let node = schema;
      for (const key of path.split('.')) {
        const object = node.anyOf?.find((o: { properties?: object }) => o.properties) ?? node;
        node = object.properties?.[key];
        if (!node) return false;
      }
      return true;
    };
    expect(schemaPaths().filter((path) => !has(path))).toEqual([]);
  });
});

describe('README and tutorial commands', () => {
  const tutorialScenario = join(tmp, 'esm2.yaml');
  writeFileSync(tutorialScenario, scenarioBlocks(read('docs/tutorial.md'))[0]);

  const all = [...commands(read('README.md')), ...commands(read('docs/tutorial.md')), ...commands(read('docs/trace.md')), ...commands(read('docs/schedules.md')), ...commands(read('docs/zero.md'))].map((args) =>
    args.map((a, i) => (a === 'esm2.yaml' ? tutorialScenario : ['--trace', '--output', '--html'].includes(args[i - 1]) ? join(tmp, a) : a)),
  );

  it('the README shows the two command lines', () => {
    const readme = read('README.md');
    expect(readme).toContain('npm ci && npx dtsim run scenarios/small-gpt.yaml');
    expect(readme).toContain('.ci/install-chromium && npm ci && npm test');
  });

  it.each(all.map((args) => [args.join(' '), args]))('dtsim %s exits 0', async (_line, args) => {
    const r = await cli(...(args as string[]));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('the README sample output is what the bundled scenario prints', async () => {
    const r = await cli('run', 'scenarios/small-gpt.yaml');
    const sample = read('README.md').match(/## What you see\n\n```\n([\s\S]*?)```/)![1];
    expect(r.stdout).toBe(sample);
  });
});

describe('outputs shown in docs/schedules.md, zero.md, sequence.md, evoformer.md, techniques.md and weather.md', () => {
  // Each single-command block followed by an output block: the output must be what dtsim prints today (a doc may
  // show only the tail of it: timelines, or a table without its heading).
  const pairsOf = (file: string) => [...read(file).matchAll(/```sh\nnpx dtsim ([^\n]+)\n```\n\n```\n([\s\S]*?)```/g)].map((m) => [file, m[1], m[2]] as const);
  const pairs = [...pairsOf('docs/schedules.md'), ...pairsOf('docs/zero.md'), ...pairsOf('docs/sequence.md'), ...pairsOf('docs/evoformer.md'), ...pairsOf('docs/techniques.md'), ...pairsOf('docs/weather.md')];

  it('schedules.md shows a timeline for every registered schedule', () => {
    for (const name of Object.keys(SCHEDULES)) expect(read('docs/schedules.md')).toContain(`--set parallel.schedule=${name} `);
    expect(pairs.length).toBeGreaterThanOrEqual(7);
  });

  it.each(pairs)('%s: the output of dtsim %s is current', async (_file, command, expected) => {
    const r = await cli(...command.split(/\s+/));
    expect(r.code).toBe(0);
    expect(r.stdout.endsWith(expected)).toBe(true);
  });
});

describe('docs/sequence.md', () => {
  // Its tables quote the bundled scenarios' figures, which the golden files pin (test/golden keeps those current).
  const rows = read('docs/sequence.md')
    .split('\n')
    .map((line) => line.match(/^\| `scenarios\/([^`]+)\.yaml` \|(.*)\|$/))
    .filter((m): m is RegExpMatchArray => m !== null);

  it('quotes every bundled sequence scenario', () => {
    expect(rows.map((m) => m[1]).sort()).toEqual(
      ['esm2-15b-tp-sp-2node', 'gpt-7b-128k-ulysses-8node', 'gpt-7b-256k-ulysses-32node', 'gpt-7b-ring-128k-a100', 'gpt-7b-ring-16k-a100', 'llama3-405b-128k-cp16-h100', 'llama3-405b-16k-h100', 'llama3-405b-8k-h100'].sort(),
    );
  });

  it.each(rows.map((m) => [m[1], m[2]]))('its row for %s shows the simulated step time, peak HBM, fit and throughput', (name, rest) => {
    const figures = JSON.parse(read(`test/golden/__golden__/${name}.json`));
    const cells = rest.split('|').map((c) => c.trim());
    expect(cells).toContain(formatSeconds(figures.stepTime));
    expect(cells).toContain(formatBytes(figures.memory.peak.hbm));
    expect(cells.at(-1)).toBe(figures.memory.fits ? 'yes' : 'no');
    // The Llama 3 table has the published TFLOP/s per GPU, then the simulated.
    if (name.startsWith('llama3')) expect(cells).toContain(String(Math.round(figures.throughput.tflopsPerDevice)));
  });
});

describe('docs/report.md and docs/cli.md', () => {
  it('documents every report field and every device field', () => {
    const doc = read('docs/report.md');
    const report = simulate(parseScenario(read('scenarios/small-gpt.yaml'), 'x.yaml')).report;
    const missing = [...Object.keys(report), ...Object.keys(report.devices[0]).map((k) => k)].filter((k) => !doc.includes(k));
    expect(missing).toEqual([]);
  });

  it('lists the exit codes the error classes carry', () => {
    const doc = read('docs/cli.md');
    for (const [code, error] of [
      [2, new UsageError('x')],
      [3, new ScenarioError([])],
      [4, new SimulationError('x')],
    ] as const) {
      expect(error.exitCode).toBe(code);
      expect(doc).toMatch(new RegExp(`\\| ${code} \\|`));
    }
  });
});
