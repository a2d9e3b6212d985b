import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';

/**
 * Fuzz cases for the command line: a bundled scenario mutated (a field deleted, a value replaced by one of the
 * wrong type or of an extreme size, an unknown field added, the text cut short or given YAML aliases), run with
 * `validate` or `run`, sometimes with odd flags. Shared by the suite's fuzz test (test/cli/fuzz.test.ts) and
 * `npm run fuzz` (bench/fuzz.ts). Every case must end in a result or a clean error (`classify`).
 */
export const FUZZ_BASES = ['scenarios/small-gpt.yaml', 'scenarios/pipeline-4x8.yaml', 'scenarios/profiled-costs.yaml', 'scenarios/gpt-7b-ring-16k-a100.yaml'];

export interface FuzzCase {
  /** The scenario text to write to a file. */
  text: string;
  /** Arguments after the file. */
  command: 'validate' | 'run';
  flags: string[];
  /** What was done, for a failure's message. */
  what: string;
}

const ODD_VALUES: unknown[] = [0, -1, 0.5, 1e12, 1e300, -1e300, 2 ** 53, 'x', '', '1e306min', '1e300PiB', '0B', '-5us', '80GiB', true, null, [], {}, [1, 2, 3], { preset: 'x' }, 'NaN', '1e-320s', 1e-300, 1e-9, '1B/s', '1e-300TFLOP/s'];
const ODD_FLAGS: string[][] = [[], [], [], ['--json'], ['--seed', '-1'], ['--seed', '1e300'], ['--set', 'parallel.tp=0'], ['--set', 'model.layers=1e9'], ['--set', 'parallel.pp=[1,2]'], ['--set', 'x.y.z=1'], ['--set', 'parallel='], ['--trace-ranks', '0-999999'], ['--trace-pipeline', '-3'], ['--max-operations', '5'], ['--timeline'], ['--set', 'cluster.gpu.flops=1e-300'], ['--set', 'cluster.gpu.flops=1'], ['--set', 'cluster.node.nic.bandwidth=1'], ['--set', 'cluster.gpu.computeEfficiency=1e-300']];

type Tree = Record<string, unknown>;

/** Every path to a value of the tree, leaves and inner nodes. */
function paths(node: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (node === null || typeof node !== 'object') return [prefix];
  const entries = Array.isArray(node) ? node.map((v, i) => [i, v] as const) : Object.entries(node as Tree);
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))];
}

function valueAt(tree: Tree, path: (string | number)[]): unknown {
  let node: unknown = tree;
  for (const key of path) node = (node as Record<string | number, unknown>)[key];
  return node;
}

function setAt(tree: Tree, path: (string | number)[], value: unknown, remove = false): void {
  let node = tree as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (remove) {
    if (Array.isArray(node)) node.splice(Number(last), 1);
    else delete node[last];
  } else node[last] = value;
}

const bases = FUZZ_BASES.map((file) => ({ file, tree: parse(readFileSync(file, 'utf8')) as Tree }));

/** The arbitrary of fuzz cases, for fast-check. */
export const fuzzCase: fc.Arbitrary<FuzzCase> = fc
  .record({
    base: fc.nat(bases.length - 1),
    // Scaling a number mostly keeps a scenario valid, so that cases reach the simulation, not only the checks.
    mutations: fc.array(fc.record({ kind: fc.constantFrom('delete', 'replace', 'unknown', 'nest', 'scale', 'scale', 'scale', 'scale'), at: fc.nat(), value: fc.constantFrom(...ODD_VALUES), factor: fc.constantFrom(2, 4, 10, 0.5) }), {
      minLength: 0,
      maxLength: 3,
    }),
    text: fc.constantFrom('none', 'none', 'none', 'cut', 'alias', 'garbage'),
    cut: fc.double({ min: 0, max: 1, noNaN: true }),
    command: fc.constantFrom('validate' as const, 'run' as const, 'run' as const),
    flags: fc.constantFrom(...ODD_FLAGS),
  })
  .map((c) => {
    const { file, tree: original } = bases[c.base];
    const tree = structuredClone(original);
    const done: string[] = [];
    for (const m of c.mutations) {
      const all = paths(tree).filter((p) => p.length > 0);
      if (all.length === 0) break;
      const path = all[m.at % all.length];
      const where = path.join('.');
      if (m.kind === 'delete') setAt(tree, path, undefined, true);
      else if (m.kind === 'replace') setAt(tree, path, structuredClone(m.value));
      else if (m.kind === 'unknown') setAt(tree, [...path.slice(0, -1), 'unknownField'], m.value);
      else if (m.kind === 'scale') {
        const numbers = all.filter((p) => typeof valueAt(tree, p) === 'number');
        if (numbers.length === 0) continue;
        const at = numbers[m.at % numbers.length];
        const value = valueAt(tree, at) as number;
        setAt(tree, at, Number.isInteger(value) ? Math.max(1, Math.round(value * m.factor)) : value * m.factor);
        done.push(`scale ${at.join('.')} by ${m.factor}`);
        continue;
      }
      else setAt(tree, path, JSON.parse('['.repeat(200) + ']'.repeat(200)));
      done.push(`${m.kind} ${where}${m.kind === 'replace' ? ` = ${JSON.stringify(m.value)}` : ''}`);
    }
    let text = stringify(tree);
    if (c.text === 'cut') text = text.slice(0, Math.floor(text.length * c.cut));
    if (c.text === 'alias') text = `${text}anchor: &a [1, 2, 3]\nmore: [*a, *a, *missing]\n`;
    if (c.text === 'garbage') text = `${text}\n\t: - [ { ] }\n`;
    return { text, command: c.command, flags: c.flags, what: `${file}: ${done.join('; ')}${c.text !== 'none' ? `; text ${c.text}` : ''}; ${c.command} ${c.flags.join(' ')}` };
  });

/**
 * A case's outcome: a result (exit 0; with --json, one JSON document with no null, which is how JSON writes a
 * non-finite number) or a clean error (exit 2, 3 or 4 and a message on stderr: no stack trace, no "internal
 * error", bounded length). Anything else is a problem, described.
 */
export function classify(r: { code: number; stdout: string; stderr: string }, json: boolean): 'result' | 'clean error' | string {
  if (r.code === 0) {
    if (!json) return 'result';
    try {
      const text = r.stdout;
      JSON.parse(text);
      return /:\s*null\b/.test(text) ? 'a report with a null (non-finite) value' : 'result';
    } catch {
      return 'exit 0 without one JSON document on stdout';
    }
  }
  if (![2, 3, 4].includes(r.code)) return `exit ${r.code}: ${r.stderr.slice(0, 300)}`;
  if (/internal error|\n\s+at \S+ \(/.test(r.stderr)) return `a stack trace or internal error: ${r.stderr.slice(0, 300)}`;
  if (r.stderr.length === 0) return `exit ${r.code} without a message`;
  if (r.stderr.length > 10_000) return `a message of ${r.stderr.length} characters`;
  return 'clean error';
}
