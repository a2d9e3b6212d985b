import { isMap, isScalar, parseDocument, visit } from 'yaml';
import { MAX_FILE_CHARACTERS, parseScenario, PRESET_SHORTHANDS, readOverride, type LoadOptions } from './load.js';
import { resolveScenario, type Scenario } from './resolve.js';
import { scenarioSchema } from './schema.js';
import { Recent } from '../recent.js';

/**
 * Variants of one scenario text, as a search reads them (dtsim plan, sweeps, compare): thousands of `--set`
 * overrides on the same file. Parsing the YAML again for each cost a third of a plan's checks, so the text's values
 * are read once, and a variant's overrides are applied to a copy of them. The answer is parseScenario's: where an
 * override is anything but a scalar set on named fields (a list index, a value that is a list or a mapping, a
 * field under a scalar), or the file has aliases, keys that are not text or tagged values that are neither, or the variant is refused by the
 * checks, the variant goes through parseScenario itself, which locates the problems in the file as ever.
 */
export function parseVariant(text: string, file: string, options: LoadOptions = {}): Scenario {
  const values = parsedValues(text, file);
  const copy = values === undefined ? undefined : withOverrides(structuredClone(values), options);
  if (copy !== undefined) {
    const parsed = scenarioSchema.safeParse(copy);
    const scenario = parsed.success ? resolveScenario(parsed.data).scenario : undefined;
    if (scenario !== undefined) return scenario;
  }
  return parseScenario(text, file, options);
}

type Values = Record<string, unknown>;

/** Texts read lately (a search alternates between two or three), by file and text. */
const recentTexts = new Recent<Values | undefined>(4);

/** The text's values as YAML reads them, when overrides on a copy of them are exactly overrides on the document. */
const parsedValues = (text: string, file: string) => recentTexts.get(`${file}\0${text}`, () => readValues(text));

function readValues(text: string): Values | undefined {
  if (text.length > MAX_FILE_CHARACTERS) return undefined;
  const doc = parseDocument(text.replace(/^\uFEFF/, ''), { uniqueKeys: false });
  if (doc.errors.length > 0 || !isMap(doc.contents)) return undefined;
  // Aliases share one value between places, and keys other than text (or given twice) read differently from
  // what the document's own setIn finds: such files take parseScenario's way.
  let plain = true;
  visit(doc, {
    Alias() {
      plain = false;
      return visit.BREAK;
    },
    Map(_key, map) {
      const seen = new Set<unknown>();
      for (const item of map.items) {
        const key = isScalar(item.key) ? item.key.value : item.key;
        if (typeof key !== 'string' || key === PROTO || seen.has(key)) {
          plain = false;
          return visit.BREAK;
        }
        seen.add(key);
      }
      return undefined;
    },
  });
  if (!plain) return undefined;
  const values = doc.toJS() as Values;
  // Tags (!!timestamp, !!binary, !!set, !!omap, or YAML 1.1's dates) make values other than mappings, lists and
  // scalars, which the document and a plain copy would set into differently.
  return plainData(values) ? values : undefined;
}

/** Whether a value holds only plain mappings, lists and scalars. */
function plainData(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  const prototype = Object.getPrototypeOf(value);
  if (prototype === Array.prototype) return (value as unknown[]).every(plainData);
  return prototype === Object.prototype && Object.values(value).every(plainData);
}

/** A field named so is an own field of the document's values, but an assignment sets a plain object's prototype. */
const PROTO = '__proto__';
const isRecord = (v: unknown): v is Values => typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
const has = (o: Values, key: string) => Object.prototype.hasOwnProperty.call(o, key);

/**
 * The overrides applied to the values as parseScenario applies them to the document (unset, then set, then the
 * seed); undefined where they would not be the same.
 */
function withOverrides(values: Values, options: LoadOptions): Values | undefined {
  for (const path of options.unset ?? []) {
    const segments = path.split('.');
    if (segments.includes(PROTO)) return undefined;
    const parent = walk(values, segments.slice(0, -1), false);
    if (parent === undefined) return undefined;
    delete parent[segments[segments.length - 1]];
  }
  for (const text of options.set ?? []) {
    // A malformed override throws here as it does there.
    const { segments, value } = readOverride(text);
    if (typeof value === 'object' && value !== null) return undefined;
    if (!segments.every((s): s is string => typeof s === 'string' && s !== PROTO)) return undefined;
    // `--set cluster.node.nics=4` on `node: dgx-a100` first writes `node: { preset: dgx-a100 }`.
    for (let i = 1; i < segments.length - 1; i++) {
      if (!PRESET_SHORTHANDS.includes(segments.slice(0, i + 1).join('.'))) continue;
      const parent = walk(values, segments.slice(0, i), false);
      const name = parent?.[segments[i]];
      if (parent !== undefined && typeof name === 'string') parent[segments[i]] = { preset: name };
    }
    const parent = walk(values, segments.slice(0, -1), true);
    if (parent === undefined) return undefined;
    parent[segments[segments.length - 1]] = value;
  }
  if (options.seed !== undefined) values.seed = options.seed;
  return values;
}

/**
 * The mapping at `path`, creating missing ones when `create` (as the document's setIn does); undefined where a
 * field on the way is missing (without `create`) or is not a mapping.
 */
function walk(values: Values, path: readonly string[], create: boolean): Values | undefined {
  let node = values;
  for (const segment of path) {
    if (!has(node, segment)) {
      if (!create) return undefined;
      node[segment] = {};
    }
    const next = node[segment];
    if (!isRecord(next)) return undefined;
    node = next;
  }
  return node;
}
