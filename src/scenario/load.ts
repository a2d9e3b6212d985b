import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, parse as parseYaml, visit, type Document, type Node as YamlNode } from 'yaml';
import { closest, ScenarioError, truncate, UsageError, type ScenarioIssue } from '../errors.js';
import type { z } from 'zod';
import { allowedKeys, scenarioSchema } from './schema.js';
import type { PathIssue } from '../errors.js';
import { resolveScenario, type Scenario } from './resolve.js';

/**
 * Loads a scenario: YAML or JSON text, `--set path=value` overrides, schema
 * validation, preset resolution and cross-field checks. Every problem is reported
 * with file, line, column and field path, all at once, as a ScenarioError.
 */
export interface LoadOptions {
  /** `path=value` overrides, applied before validation; values are YAML (`4`, `bf16`, `[10, 14]`). */
  set?: readonly string[];
  /** Overrides the scenario's seed. */
  seed?: number;
  /** Dotted paths of fields to remove before the overrides, so that they are derived (`parallel.dp`). */
  unset?: readonly string[];
}

/** How standard input is named, as a scenario file and in messages. */
export const STDIN = '<stdin>';

export function loadScenarioFile(file: string, options: LoadOptions = {}): Scenario {
  const source = readScenarioSource(file);
  return parseScenario(source.text, source.file, options);
}

/** A scenario file's text, and its name for messages; `-` (or <stdin>) reads standard input, which can be read once. */
export function readScenarioSource(file: string): { file: string; text: string } {
  // `-` is standard input, as command lines expect (`dtsim run - < my.yaml`); the CLI passes it as <stdin>.
  if (file === '-' || file === STDIN) {
    try {
      return { file: STDIN, text: readFileSync(0, 'utf8') };
    } catch (error) {
      throw new UsageError(`cannot read the scenario from standard input: ${(error as Error).message}`);
    }
  }
  try {
    return { file, text: readFileSync(file, 'utf8') };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `scenario file not found: ${file}` : `cannot read scenario file ${file}: ${(error as Error).message}`);
  }
}

/** A scenario as a plain object, typed as a file's fields: quantities as strings with units or numbers in base units. */
export type ScenarioInput = z.input<typeof scenarioSchema>;

/**
 * A scenario given as an object, checked exactly as a file is, with the same messages; their positions are those
 * of the object written as JSON, and `name` stands for the file.
 */
export function scenarioFromObject(input: ScenarioInput, name = '<object>', options: LoadOptions = {}): Scenario {
  return parseScenario(JSON.stringify(input, null, 2), name, options);
}

/**
 * The scenario's text with its global batch written out and its gradient accumulation left out: variants that change
 * the micro-batch or the data-parallel degree (dtsim memory, dtsim plan) then compare the same work per step, where
 * `training.accumulation` would scale the batch with them.
 */
export function batchPinned(source: { file: string; text: string }, globalBatch: number): { file: string; text: string } {
  const doc = parseDocument(source.text);
  if (!doc.hasIn(['training', 'accumulation'])) return source;
  doc.deleteIn(['training', 'accumulation']);
  doc.setIn(['training', 'globalBatch'], globalBatch);
  return { file: source.file, text: doc.toString() };
}

/**
 * The scenario's text with --set and --seed written into it, for commands that vary a scenario further (dtsim plan):
 * checked first, so that a bad override is reported as one. Comments and the rest of the file are kept.
 */
export function sourceWith(source: { file: string; text: string }, options: LoadOptions): { file: string; text: string } {
  if ((options.set ?? []).length === 0 && options.seed === undefined) return source;
  parseScenario(source.text, source.file, options);
  const doc = parseDocument(source.text);
  applyOverrides(doc, options.set ?? []);
  if (options.seed !== undefined) doc.setIn(['seed'], options.seed);
  return { file: source.file, text: doc.toString() };
}

export function parseScenario(text: string, file: string, options: LoadOptions = {}): Scenario {
  const lineCounter = new LineCounter();
  if (text.length > MAX_FILE_CHARACTERS) {
    throw new ScenarioError([{ file, line: 0, column: 0, path: '', message: `${text.length} characters is far more than a scenario needs; scenario files are limited to ${MAX_FILE_CHARACTERS}` }]);
  }
  // Duplicate keys are found below in one pass: the YAML library's own check compares every pair of keys.
  const doc = parseDocument(text.replace(/^\uFEFF/, ''), { lineCounter, prettyErrors: false, uniqueKeys: false });
  const malformed = doc.errors.map((e) => ({ offset: e.pos[0], message: firstLine(e.message) }));
  if (malformed.length === 0) malformed.push(...duplicateKeys(doc));
  if (malformed.length > 0) {
    throw new ScenarioError(
      malformed.map((e) => {
        const pos = lineCounter.linePos(e.offset);
        return { file, line: pos.line, column: pos.col, path: '', message: `malformed YAML/JSON: ${truncate(e.message)}` };
      }),
    );
  }
  if (doc.contents === null || !isMap(doc.contents)) {
    throw new ScenarioError([{ file, line: 1, column: 1, path: '', message: 'a scenario must be a mapping of fields (name, cluster, model, training, parallel, ...)' }]);
  }
  for (const path of options.unset ?? []) doc.deleteIn(path.split('.'));
  const overridden = applyOverrides(doc, options.set ?? []);
  if (options.seed !== undefined) doc.setIn(['seed'], options.seed);

  let placed = 0;
  const place = (path: readonly (string | number)[], message: string, atKey = false): ScenarioIssue => {
    const dotted = truncate(path.join('.'));
    // Only the issues a message shows are located in the file: locating thousands would take minutes.
    if (placed++ >= 50) return { file, line: 0, column: 0, path: dotted, message };
    const override = overridden.find((o) => dotted === o.path || dotted.startsWith(`${o.path}.`));
    if (override) return { file, line: 0, column: 0, path: dotted, message: `${message} (from --set ${truncate(override.text)})` };
    const { line, col } = locate(doc, path, lineCounter, atKey);
    return { file, line, column: col, path: dotted, message };
  };

  let raw: unknown;
  try {
    // Each alias is expanded where it is used: at most MAX_ALIASES expansions, so that a "billion laughs" cannot
    // exhaust memory, and an alias to a missing anchor is a scenario error at its position.
    raw = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (error) {
    const { line, col } = lineCounter.linePos(firstAliasOffset(doc));
    const message = (error as Error).message;
    const reason = /Excessive alias count/.test(message)
      ? `YAML aliases (*name) expand to more than ${MAX_ALIASES} copies; write the values out instead`
      : /alias/i.test(message)
        ? `YAML alias: ${truncate(firstLine(message))}`
        : error instanceof RangeError
          ? 'values nested too deeply to read'
          : `cannot read the scenario: ${truncate(firstLine(message))}`;
    throw new ScenarioError([{ file, line, column: col, path: '', message: reason }]);
  }
  const parsed = scenarioSchema.safeParse(raw);
  if (!parsed.success) {
    const issues: ScenarioIssue[] = [];
    for (const issue of parsed.error.issues) {
      let path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
      // `gpu: a100` is read as `gpu: { preset: a100 }`: report it where the user wrote it.
      if (path[path.length - 1] === 'preset' && typeof valueAt(raw, path.slice(0, -1)) === 'string') path = path.slice(0, -1);
      const value = valueAt(raw, path);
      if (issue.code === 'unrecognized_keys') {
        const allowed = allowedKeys(path);
        for (const key of issue.keys) {
          const hint = closest(key, allowed);
          issues.push(place([...path, key], `unknown field ${truncate(JSON.stringify(key))}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; allowed here: ${allowed.join(', ')}`, true));
        }
      } else if (value === undefined) {
        issues.push(place(path, 'missing required field'));
      } else {
        issues.push(place(path, `${issue.message}, got ${truncate(JSON.stringify(value) ?? String(value))}`));
      }
    }
    throw new ScenarioError(dedupe(issues));
  }
  const { scenario, issues } = resolveScenario(parsed.data);
  if (!scenario) throw new ScenarioError(issues.map((i: PathIssue) => place(i.path, i.message)));
  return scenario;
}

const MAX_SET_INDEX = 10_000;
const MAX_SET_VALUE = 10_000;
const MAX_SET_NESTING = 32;

/** How deep brackets and braces nest in a text. */
function nesting(text: string): number {
  let depth = 0;
  let most = 0;
  for (const c of text) {
    if (c === '[' || c === '{') most = Math.max(most, ++depth);
    else if (c === ']' || c === '}') depth = Math.max(0, depth - 1);
  }
  return most;
}
/** Scenario files are a few kilobytes; a megabyte is room for any list of stages a cluster could have. */
export const MAX_FILE_CHARACTERS = 1 << 20;

/** Keys given twice in one mapping, where the second one is. */
function duplicateKeys(doc: Document): { offset: number; message: string }[] {
  const found: { offset: number; message: string }[] = [];
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<unknown>();
      for (const item of map.items) {
        const key = isScalar(item.key) ? item.key.value : item.key;
        if (seen.has(key)) found.push({ offset: (item.key as YamlNode | null)?.range?.[0] ?? 0, message: `Map keys must be unique; ${truncate(String(key))} is given twice` });
        seen.add(key);
      }
    },
  });
  return found;
}

/** Alias expansions a scenario may have in all. */
const MAX_ALIASES = 100;

/** Where the first alias of the document starts (the start of the file when there is none). */
function firstAliasOffset(doc: Document): number {
  let offset = 0;
  visit(doc, {
    Alias(_key, node) {
      offset = node.range?.[0] ?? 0;
      return visit.BREAK;
    },
  });
  return offset;
}

export interface Override {
  path: string;
  text: string;
}

/** A `--set` text read: its dotted path, as segments (list indices as numbers), and its value. */
export interface ReadOverride extends Override {
  segments: (string | number)[];
  value: unknown;
}

/** Reads a `--set path=value` text; a UsageError says what is wrong with it. */
export function readOverride(text: string): ReadOverride {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set expects path=value, such as --set parallel.tp=4; got ${JSON.stringify(text)}`);
  const path = text.slice(0, eq).trim();
  if (!/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/.test(path)) throw new UsageError(`--set path ${JSON.stringify(path)} is not a dotted field path such as parallel.tp`);
  const valueText = text.slice(eq + 1);
  // Parsing a value thousands of brackets deep exhausts the YAML library's stack and then V8's memory.
  if (valueText.length > MAX_SET_VALUE || nesting(valueText) > MAX_SET_NESTING) {
    throw new UsageError(`--set ${truncate(path)}: the value is ${valueText.length} characters, nested ${nesting(valueText)} deep; at most ${MAX_SET_VALUE} characters and ${MAX_SET_NESTING} levels`);
  }
  let value = plainScalar(valueText);
  if (value === undefined) {
    try {
      value = parseYaml(valueText);
    } catch {
      value = text.slice(eq + 1);
    }
  }
  const segments = path.split('.').map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  // A list index far past any list would make the YAML library fill millions of empty entries.
  const index = segments.find((s) => typeof s === 'number' && s > MAX_SET_INDEX);
  if (index !== undefined) throw new UsageError(`--set ${truncate(text)}: list index ${index} is beyond any scenario list (at most ${MAX_SET_INDEX})`);
  return { path, text, segments, value };
}

function applyOverrides(doc: Document, sets: readonly string[]): Override[] {
  const applied: Override[] = [];
  for (const text of sets) {
    const { path, segments, value } = readOverride(text);
    expandPresetShorthand(doc, segments);
    try {
      doc.setIn(segments, value);
    } catch (error) {
      throw new UsageError(`--set ${text}: cannot set ${path}: ${firstLine((error as Error).message)}`);
    }
    applied.push({ path, text });
  }
  return applied;
}

/**
 * The value of a `--set` text that is a whole number, true or false, or a lower-case word (`zb-h1`, `selective`),
 * as YAML reads it; undefined for anything else. A search sets thousands of such values, and YAML's parser costs
 * some microseconds each (a property test checks that this agrees with it).
 */
export function plainScalar(text: string): number | boolean | string | undefined {
  if (/^-?(0|[1-9][0-9]{0,14})$/.test(text)) return Number(text);
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (text !== 'null' && /^[a-z][a-z0-9-]{0,63}$/.test(text)) return text;
  return undefined;
}

/** Fields that take a preset name as shorthand for `{ preset: name }`. */
export const PRESET_SHORTHANDS = ['cluster.gpu', 'cluster.node'];

/** `--set cluster.node.nics=4` on `node: dgx-a100` rewrites the shorthand to `node: { preset: dgx-a100 }` first. */
function expandPresetShorthand(doc: Document, segments: readonly (string | number)[]): void {
  for (let i = 1; i < segments.length - 1; i++) {
    const prefix = segments.slice(0, i + 1);
    if (!PRESET_SHORTHANDS.includes(prefix.join('.'))) continue;
    const name = doc.getIn(prefix);
    if (typeof name === 'string') doc.setIn(prefix, doc.createNode({ preset: name }));
  }
}

/** The position of the node at `path`, or of its nearest existing ancestor. */
function locate(doc: Document, path: readonly (string | number)[], lineCounter: LineCounter, atKey: boolean): { line: number; col: number } {
  let node: unknown = doc.contents;
  let range: [number, number, number] | undefined = (doc.contents as YamlNode | null)?.range ?? undefined;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i];
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === segment || p.key === segment);
      if (!pair) break;
      const last = i === path.length - 1;
      next = last && atKey ? pair.key : pair.value;
      const r = ((next as YamlNode | null)?.range ?? (pair.key as YamlNode | null)?.range) as [number, number, number] | undefined;
      if (r) range = r;
    } else if (isSeq(node) && typeof segment === 'number') {
      next = node.items[segment];
      const r = (next as YamlNode | undefined)?.range as [number, number, number] | undefined;
      if (r) range = r;
    } else break;
    node = next;
  }
  if (!range) return { line: 0, col: 0 };
  return lineCounter.linePos(range[0]);
}

function valueAt(root: unknown, path: readonly (string | number)[]): unknown {
  let node = root;
  for (const segment of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[segment];
  }
  return node;
}

function dedupe(issues: ScenarioIssue[]): ScenarioIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.line}:${i.column}:${i.path}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function firstLine(text: string): string {
  return text.split('\n')[0];
}

