import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, stringify } from 'yaml';
import { z } from 'zod';
import { compareVariants, type ScenarioSource } from './compare.js';
import { ScenarioError, UsageError } from './errors.js';
import { parseScenario, plainScalar, readScenarioSource } from './scenario/load.js';
import type { Report } from './report/report.js';

/**
 * Sweeps: a grid (or list) of overrides over a base scenario, each entry simulated in full, one JSON line per
 * entry. An entry is numbered by its place in the grid, so shards of a job array (entries whose number modulo N
 * is K) can run apart and be merged into exactly the file one run gives. docs/sweeps.md shows it end to end.
 */
export interface GridFile {
  /** The base scenario, relative to the grid file. */
  base: string;
  /** Overrides applied to every entry, as `--set` takes them. */
  set?: string[];
  /** Every combination of these fields' values (the last field varies fastest). */
  grid?: Record<string, unknown[]>;
  /** Explicit entries; with a grid, each is combined with every combination of it. */
  list?: Record<string, unknown>[];
}

export interface SweepEntry {
  index: number;
  /** Field path to value, in the grid file's order. */
  overrides: Record<string, unknown>;
}

/** What one line of a sweep's output holds of a report (seconds, bytes, fractions). */
export interface EntrySummary {
  stepTime: number;
  /** Samples (sequences or proteins) per second. */
  samplesPerSecond: number;
  /** For a model of tokens. */
  tokensPerSecond?: number;
  mfu: number;
  bubbleFraction: number;
  exposedCommunicationTime: number;
  communicationBytes: number;
  peakHbm: number;
  fits: boolean;
}

/** One line of the output: a summary, or why the entry cannot run. */
export interface SweepLine {
  /** The sweep's identity: a hash of the base scenario, the overrides and the entries. */
  sweep: string;
  index: number;
  overrides: Record<string, unknown>;
  result?: EntrySummary;
  error?: string;
}

export interface Sweep {
  id: string;
  file: string;
  source: ScenarioSource;
  set: string[];
  entries: SweepEntry[];
  /**
   * Simulate each entry with its replica symmetry where it has an exact one (simulate's `symmetry`): the same
   * results, faster. On unless false; not part of the sweep's identity, since results do not depend on it.
   */
  symmetry?: boolean;
}

const value = z.unknown();
const gridSchema = z
  .object({
    base: z.string({ error: 'expected the path of the base scenario' }).min(1),
    set: z.array(z.string()).optional(),
    grid: z.record(z.string(), z.array(value).min(1, { error: 'expected a non-empty list of values' }), { error: 'expected a map of field paths to lists of values' }).optional(),
    list: z.array(z.record(z.string(), value), { error: 'expected a list of maps of field paths to values' }).min(1, { error: 'expected at least one entry' }).optional(),
  })
  .strict();

/** Entries a sweep may have: far beyond what a job array runs, small enough to list. */
export const MAX_ENTRIES = 1_000_000;

/** Reads and checks a grid file; bad input is a ScenarioError naming the grid file, its line and the field. */
export function loadSweep(file: string): Sweep {
  if (!existsSync(file)) throw new UsageError(`the grid file ${file} does not exist`);
  const text = readFileSync(file, 'utf8');
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const fail = (path: (string | number)[], message: string): never => {
    const node = doc.getIn(path, true) as { range?: [number, number] } | undefined;
    const pos = node?.range ? lineCounter.linePos(node.range[0]) : { line: 0, col: 0 };
    throw new ScenarioError([{ file, line: pos.line, column: pos.col, path: path.join('.'), message }]);
  };
  if (doc.errors.length > 0) fail([], doc.errors[0].message.split('\n')[0]);
  const parsed = gridSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(issue.path as (string | number)[], issue.code === 'unrecognized_keys' ? `unknown field ${issue.keys.map((k) => `"${k}"`).join(', ')}; allowed: base, set, grid, list` : issue.message);
  }
  const grid = parsed.data!;
  if (!grid.grid && !grid.list) fail([], 'a sweep needs a grid (fields and their values) or a list of entries, or both');
  const source = readScenarioSource(resolve(dirname(file), grid.base));
  const set = grid.set ?? [];

  // Every combination of the grid, the last field fastest; then each list entry with each combination.
  const fields = Object.entries(grid.grid ?? {});
  const total = fields.reduce((n, [, values]) => n * values.length, 1) * (grid.list?.length ?? 1);
  if (total > MAX_ENTRIES) fail(['grid'], `${total} entries is more than the ${MAX_ENTRIES} a sweep may have; split it into several grid files`);
  let combinations: Record<string, unknown>[] = [{}];
  for (const [field, values] of fields) combinations = combinations.flatMap((c) => values.map((v) => ({ ...c, [field]: v })));
  const rows = grid.list ? grid.list.flatMap((entry) => combinations.map((c) => ({ ...c, ...entry }))) : combinations;
  const entries = rows.map((overrides, index) => ({ index, overrides }));

  // A field the scenario does not have is bad input, not an entry that cannot run.
  const paths = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  for (const path of paths) {
    const first = rows.find((r) => path in r)!;
    try {
      parseScenario(source.text, source.file, { set: [...set, overrideString(path, first[path])] });
    } catch (error) {
      const unknown = error instanceof ScenarioError && error.issues.find((i) => i.path === path && i.message.startsWith('unknown field'));
      if (unknown) fail(grid.grid && path in grid.grid ? ['grid', path] : ['list'], unknown.message);
    }
  }
  const id = createHash('sha256').update(JSON.stringify([source.text, set, rows])).digest('hex').slice(0, 16);
  return { id, file, source, set, entries };
}

/** An override as `--set` takes it: the value in YAML's flow style. */
export function overrideString(path: string, value: unknown): string {
  // What YAML writes for a plain scalar is its text (plainScalar reads it back): a plan writes thousands.
  const text = typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string' ? String(value) : undefined;
  if (text !== undefined && Object.is(plainScalar(text), value)) return `${path}=${text}`;
  return `${path}=${stringify(value, { collectionStyle: 'flow', lineWidth: 0 }).trim()}`;
}

/** Simulates one entry: its summary, or why it cannot run (an invalid configuration is an answer). */
export function runEntry(sweep: Pick<Sweep, 'id' | 'source' | 'set' | 'symmetry'>, entry: SweepEntry): SweepLine {
  const set = [...sweep.set, ...Object.entries(entry.overrides).map(([path, v]) => overrideString(path, v))];
  const { results } = compareVariants(sweep.source, [{ label: String(entry.index), set }], { symmetry: sweep.symmetry !== false });
  const [r] = results;
  const line: SweepLine = { sweep: sweep.id, index: entry.index, overrides: entry.overrides };
  if (r.report) line.result = summarize(r.report);
  else line.error = r.error;
  return line;
}

function summarize(report: Report): EntrySummary {
  return {
    stepTime: report.stepTime,
    samplesPerSecond: report.throughput.samplesPerSecond,
    ...(report.throughput.tokensPerSecond !== undefined ? { tokensPerSecond: report.throughput.tokensPerSecond } : {}),
    mfu: report.throughput.mfu,
    bubbleFraction: report.bubbleFraction,
    exposedCommunicationTime: report.exposedCommunicationTime,
    communicationBytes: report.communication.bytes,
    peakHbm: report.memory.peak.hbm,
    fits: report.memory.fits,
  };
}

/** Shard `index` of `count`: the entries whose number is `index` modulo `count`. */
export interface Shard {
  index: number;
  count: number;
}

/**
 * The shard to run: `--shard K/N` when given; else a Slurm job array's (SLURM_ARRAY_TASK_ID from
 * SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT tasks); else a Kubernetes Indexed Job's JOB_COMPLETION_INDEX, of
 * `--shards N`; else the whole sweep.
 */
export function shardFrom(flag: string | undefined, shards: number | undefined, env: NodeJS.ProcessEnv): Shard {
  const integer = (text: string | undefined, name: string): number => {
    if (text === undefined || !/^\d+$/.test(text.trim())) throw new UsageError(`${name} must be a whole number; got ${JSON.stringify(text)}`);
    return Number(text.trim());
  };
  const checked = (index: number, count: number, from: string): Shard => {
    if (count < 1) throw new UsageError(`${from}: the shard count must be at least 1; got ${count}`);
    if (index >= count) throw new UsageError(`${from}: shard ${index} is out of range; shards are 0 to ${count - 1}`);
    return { index, count };
  };
  if (flag !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(flag.trim());
    if (!m) throw new UsageError(`--shard expects K/N, such as 0/4 (shard K of N, K from 0); got ${JSON.stringify(flag)}`);
    return checked(Number(m[1]), Number(m[2]), '--shard');
  }
  if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    const id = integer(env.SLURM_ARRAY_TASK_ID, 'SLURM_ARRAY_TASK_ID');
    const min = env.SLURM_ARRAY_TASK_MIN === undefined ? 0 : integer(env.SLURM_ARRAY_TASK_MIN, 'SLURM_ARRAY_TASK_MIN');
    const count = integer(env.SLURM_ARRAY_TASK_COUNT, 'SLURM_ARRAY_TASK_COUNT');
    return checked(id - min, count, 'SLURM_ARRAY_TASK_ID');
  }
  if (env.JOB_COMPLETION_INDEX !== undefined) {
    if (shards === undefined) throw new UsageError('JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give --shards N, the Job\'s completions');
    return checked(integer(env.JOB_COMPLETION_INDEX, 'JOB_COMPLETION_INDEX'), shards, 'JOB_COMPLETION_INDEX');
  }
  return { index: 0, count: shards ?? 1 };
}

/** Reads the complete lines of a sweep's output file (a torn last line from a killed run is left out). */
export function readLines(file: string): SweepLine[] {
  if (!existsSync(file)) return [];
  const lines: SweepLine[] = [];
  const text = readFileSync(file, 'utf8');
  const raws = text.split('\n');
  for (const [n, raw] of raws.entries()) {
    if (raw.trim() === '') continue;
    try {
      const line = JSON.parse(raw) as SweepLine;
      if (typeof line.sweep !== 'string' || !Number.isInteger(line.index)) throw new Error('not a sweep line');
      lines.push(line);
    } catch {
      // Only the last line may be torn; anything else is not a sweep's output.
      if (n < raws.length - 1 && text.endsWith('\n')) throw new UsageError(`${file}:${n + 1}: not a line of a dtsim sweep's output`);
    }
  }
  return lines;
}

/** Lines of one sweep in entry order, one per entry: the file a single run writes. */
export function mergeLines(lines: SweepLine[], where: string): SweepLine[] {
  const byIndex = new Map<number, SweepLine>();
  for (const line of lines) {
    if (line.sweep !== lines[0].sweep) throw new UsageError(`${where}: lines of two different sweeps (${lines[0].sweep} and ${line.sweep}); merge the shards of one grid file`);
    const seen = byIndex.get(line.index);
    if (seen && JSON.stringify(seen) !== JSON.stringify(line)) throw new UsageError(`${where}: entry ${line.index} appears twice with different results`);
    byIndex.set(line.index, line);
  }
  return [...byIndex.values()].sort((a, b) => a.index - b.index);
}

export const formatLines = (lines: SweepLine[]) => lines.map((l) => `${JSON.stringify(l)}\n`).join('');
