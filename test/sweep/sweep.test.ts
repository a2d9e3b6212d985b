import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScenarioError, UsageError } from '../../src/errors.js';
import { loadSweep, shardFrom } from '../../src/sweep.js';
import { cli } from '../support/cli.js';

/** `dtsim sweep` and `dtsim merge` (issue 14, point 4). */
const dir = mkdtempSync(join(tmpdir(), 'dtsim-sweep-'));
const base = resolve('scenarios/small-gpt.yaml');
const MAIN = resolve('dist/src/cli/main.js');
const write = (name: string, text: string) => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};
const GRID = write('grid.yaml', `base: ${base}\ngrid:\n  parallel.tp: [1, 2, 3]\n  parallel.schedule: [1f1b, zb-h1]\n  training.microBatch: [1, 2]\n`);

describe('dtsim sweep', () => {
  it('4 shards run as separate processes, merged, give byte for byte the file and table of a single run', async () => {
    const single = join(dir, 'single.jsonl');
    // As a process, on worker threads (the compiled build's).
    const one = spawnSync(process.execPath, [MAIN, 'sweep', GRID, '--output', single, '--workers', '2'], { encoding: 'utf8' });
    expect(one.status).toBe(0);
    const lines = readFileSync(single, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(12);
    expect(lines.map((l) => JSON.parse(l).index)).toEqual([...Array(12).keys()]);
    // tp 3 divides neither the heads nor the GPUs: an answer, not a failure.
    expect(lines.filter((l) => JSON.parse(l).error).length).toBe(4);

    const shards = [0, 1, 2, 3].map((k) => join(dir, `out-${k}.jsonl`));
    const codes = await Promise.all(
      shards.map((file, k) => new Promise<number>((done) => spawn(process.execPath, [MAIN, 'sweep', GRID, '--output', file, '--shard', `${k}/4`, '--workers', '1'], { stdio: 'ignore' }).on('exit', (code) => done(code ?? -1)))),
    );
    expect(codes).toEqual([0, 0, 0, 0]);
    const merged = join(dir, 'merged.jsonl');
    const m = await cli('merge', ...shards, '--output', merged);
    expect(m.code).toBe(0);
    expect(readFileSync(merged, 'utf8')).toBe(readFileSync(single, 'utf8'));
    // The table is the single run's, without its last line (what was simulated).
    expect(one.stdout.startsWith(m.stdout)).toBe(true);
  }, 120_000);

  it('resumes: entries already in the file are skipped, a torn last line is dropped, and the file ends as one run writes it', async () => {
    const full = join(dir, 'full.jsonl');
    await cli('sweep', GRID, '--output', full);
    const partial = join(dir, 'partial.jsonl');
    const lines = readFileSync(full, 'utf8').split('\n');
    writeFileSync(partial, `${lines[3]}\n${lines[0]}\n${lines[5].slice(0, 40)}`);
    const r = await cli('sweep', GRID, '--output', partial);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('10 entries simulated, 2 already in');
    expect(readFileSync(partial, 'utf8')).toBe(readFileSync(full, 'utf8'));
  }, 60_000);

  it('Ctrl-C stops between entries with exit 130, keeping whole lines, and the same command then finishes the file', async () => {
    const many = write('many.yaml', `base: ${base}\ngrid:\n  training.globalBatch: [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384]\n`);
    const out = join(dir, 'stopped.jsonl');
    const child = spawn(process.execPath, [MAIN, 'sweep', many, '--output', out, '--workers', '1'], { stdio: 'ignore' });
    // Stop once the first entry is in the file.
    await new Promise<void>((done) => {
      const poll = setInterval(() => {
        let text = '';
        try {
          text = readFileSync(out, 'utf8');
        } catch {}
        if (text.includes('\n')) {
          clearInterval(poll);
          child.kill('SIGINT');
          done();
        }
      }, 20);
    });
    const code = await new Promise<number>((done) => child.on('exit', (c) => done(c ?? -1)));
    expect(code).toBe(130);
    const kept = readFileSync(out, 'utf8');
    expect(kept.endsWith('\n')).toBe(true);
    const n = kept.trim().split('\n').length;
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(12);
    const again = spawnSync(process.execPath, [MAIN, 'sweep', many, '--output', out], { encoding: 'utf8' });
    expect(again.status).toBe(0);
    expect(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l).index)).toEqual([...Array(12).keys()]);
  }, 60_000);
});

describe('grid files', () => {
  it('a grid with a list: each entry with every combination, the last grid field fastest, in file order', () => {
    const file = write('both.yaml', `base: ${base}\ngrid:\n  parallel.tp: [1, 2]\n  training.microBatch: [1, 2]\nlist:\n  - { parallel.schedule: gpipe }\n  - { parallel.schedule: zb-v, parallel.chunks: 2 }\n`);
    const sweep = loadSweep(file);
    expect(sweep.entries).toHaveLength(8);
    expect(sweep.entries[0].overrides).toEqual({ 'parallel.tp': 1, 'training.microBatch': 1, 'parallel.schedule': 'gpipe' });
    expect(sweep.entries[1].overrides).toEqual({ 'parallel.tp': 1, 'training.microBatch': 2, 'parallel.schedule': 'gpipe' });
    expect(sweep.entries[7].overrides).toEqual({ 'parallel.tp': 2, 'training.microBatch': 2, 'parallel.schedule': 'zb-v', 'parallel.chunks': 2 });
  });

  it.each([
    ['an unknown field', 'grid:\n  parallel.tpp: [1, 2]\n', /grid\.parallel\.tpp: unknown field "tpp" \(did you mean "tp"\?\)/, 3],
    ['an empty list', 'grid:\n  parallel.tp: []\n', /grid\.parallel\.tp: expected a non-empty list of values/, 3],
    ['neither grid nor list', 'set: []\n', /a sweep needs a grid/, 1],
    ['an unknown key', 'grids:\n  parallel.tp: [1]\n', /unknown field "grids"; allowed: base, set, grid, list/, 1],
  ])('%s is bad input: the grid file, its line and the field', (_name, body, message, line) => {
    const file = write('bad.yaml', `base: ${base}\n${body}`);
    let error: unknown;
    try {
      loadSweep(file);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ScenarioError);
    expect((error as ScenarioError).message).toMatch(message);
    expect((error as ScenarioError).issues[0].line).toBeGreaterThanOrEqual(line);
  });
});

describe('shards', () => {
  it('--shard K/N wins; else a Slurm array task counted from its minimum; else a Kubernetes Indexed Job with --shards', () => {
    expect(shardFrom('2/4', undefined, { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '8' })).toEqual({ index: 2, count: 4 });
    expect(shardFrom(undefined, undefined, { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_MIN: '4', SLURM_ARRAY_TASK_COUNT: '4' })).toEqual({ index: 1, count: 4 });
    expect(shardFrom(undefined, 8, { JOB_COMPLETION_INDEX: '7' })).toEqual({ index: 7, count: 8 });
    expect(shardFrom(undefined, undefined, {})).toEqual({ index: 0, count: 1 });
  });

  it.each([
    ['4/4', undefined, {}, /shard 4 is out of range; shards are 0 to 3/],
    ['1-4', undefined, {}, /--shard expects K\/N/],
    [undefined, undefined, { SLURM_ARRAY_TASK_ID: 'x', SLURM_ARRAY_TASK_COUNT: '4' }, /SLURM_ARRAY_TASK_ID must be a whole number; got "x"/],
    [undefined, undefined, { SLURM_ARRAY_TASK_ID: '1' }, /SLURM_ARRAY_TASK_COUNT must be a whole number/],
    [undefined, undefined, { JOB_COMPLETION_INDEX: '0' }, /give --shards N/],
  ])('shard %s, --shards %s, env %j: a usage error', (flag, shards, env, message) => {
    expect(() => shardFrom(flag, shards, env)).toThrow(UsageError);
    expect(() => shardFrom(flag, shards, env)).toThrow(message);
  });
});
