import { parse as parseYaml } from 'yaml';
import { DtsimError, ScenarioError, truncate } from './errors.js';
import type { Report } from './report/report.js';
import { parseScenario, readScenarioSource } from './scenario/load.js';
import type { Scenario } from './scenario/resolve.js';
import { parseVariant } from './scenario/variants.js';
import { simulate } from './simulate.js';
import { SCHEDULES, unknownSchedule } from './strategies/pipeline/registry.js';
import { UsageError } from './errors.js';

/**
 * Runs one scenario under several variants (schedules, or any field values)
 * and returns one result per variant. A variant that is not a valid
 * configuration is a result too, with its reason: comparing is how a user
 * finds out what works.
 */
export interface Variant {
  label: string;
  /** `path=value` overrides on top of the base ones. */
  set: string[];
  /** Fields of the file left out for this variant (a setting that another one would contradict). */
  unset?: string[];
}

export interface VariantResult {
  variant: string;
  set: string[];
  report?: Report;
  /** Why the variant could not run. */
  error?: string;
}

/** Variants for `--schedules a,b,c`: each schedule, with its preferred chunk count where the scenario's does not suit it. */
export function scheduleVariants(names: string[], scenarioChunks: number): Variant[] {
  return names.map((name) => {
    const schedule = SCHEDULES[name];
    if (!schedule) throw new UsageError(`--schedules: ${unknownSchedule(name)}`);
    const single = schedule.preferredChunks === 1;
    const chunks = single ? 1 : scenarioChunks > 1 ? scenarioChunks : schedule.preferredChunks;
    return { label: name, set: [`parallel.schedule=${name}`, `parallel.chunks=${chunks}`] };
  });
}

/**
 * The values of `--vary path=...`, read as the items of a YAML flow sequence, so that a value may itself be a
 * list: `2,4,8`, `ring,allgather`, `[10, 14],[12, 12]`. Each is handed to `--set` as YAML.
 */
function varyValues(path: string, text: string): string[] {
  const trimmed = text.trim();
  let parsed: unknown;
  try {
    parsed = parseYaml(`[${trimmed}]`);
  } catch (error) {
    throw new UsageError(`--vary ${path}: cannot read the values ${truncate(JSON.stringify(text))} as a comma-separated list: ${truncate((error as Error).message.split('\n')[0])}`);
  }
  if (!Array.isArray(parsed)) throw new UsageError(`--vary ${path}: expected a comma-separated list of values`);
  // JSON is YAML: a list value reads back as written.
  return parsed.filter((v) => v !== null && v !== '').map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
}

/** Variants for `--vary path=a,b --vary other=x,y`: every combination. */
export function fieldVariants(varies: string[]): Variant[] {
  let variants: Variant[] = [{ label: '', set: [] }];
  for (const vary of varies) {
    const eq = vary.indexOf('=');
    if (eq <= 0) throw new UsageError(`--vary expects path=value1,value2 such as --vary parallel.tp=2,4,8; got ${JSON.stringify(vary)}`);
    const path = vary.slice(0, eq);
    const values = varyValues(path, vary.slice(eq + 1));
    if (values.length === 0) throw new UsageError(`--vary ${path}: give at least one value`);
    variants = variants.flatMap((v) => values.map((value) => ({ label: [v.label, `${path}=${value}`].filter(Boolean).join(' '), set: [...v.set, `${path}=${value}`] })));
  }
  return variants;
}

export interface CompareOptions {
  /** Overrides under every variant's. */
  set?: string[];
  seed?: number;
  maxOperations?: number;
  /** Simulate with each variant's replica symmetry where exact (simulate's `symmetry`): reports alike but for `simulation`. */
  symmetry?: boolean;
  /** Called before each variant runs, for a progress line. */
  onVariant?: (index: number, total: number, label: string) => void;
}

export interface Comparison {
  results: VariantResult[];
  /**
   * Fields the scenario gives with the very value it would derive from the others (`dp: 4` on 16 GPUs with
   * TP 2 x PP 2), which each variant derives anew, so that `--vary parallel.tp=1,2,4` keeps the GPU count: those
   * whose value some variant changed.
   */
  rederived: string[];
}

/** Fields a scenario may give or leave to be derived from other fields. */
const DERIVED_FIELDS = ['parallel.dp', 'parallel.layersPerStage', 'parallel.microBatchGroup', 'model.kvHeads', 'model.ffnHidden'];

/** A scenario file's name and text, read once: standard input cannot be read again for the next variant. */
export type ScenarioSource = ReturnType<typeof readScenarioSource>;

export function compareVariants(scenario: string | ScenarioSource, variants: Variant[], options: CompareOptions = {}): Comparison {
  const source = typeof scenario === 'string' ? readScenarioSource(scenario) : scenario;
  const { fields: unset, base } = fieldsToRederive(source, options);
  const rederived = new Set<string>();
  const results = variants.map((variant, index) => {
    options.onVariant?.(index, variants.length, variant.label);
    // A field the variant unsets is unset after the base's --set too: drop the base's overrides of it.
    const dropped = (text: string) => (variant.unset ?? []).some((path) => {
      const field = text.slice(0, Math.max(0, text.indexOf('='))).trim();
      return field === path || field.startsWith(`${path}.`);
    });
    const set = [...(options.set ?? []).filter((text) => !dropped(text)), ...variant.set];
    try {
      const scenario = parseVariant(source.text, source.file, { set, seed: options.seed, unset: [...unset, ...(variant.unset ?? [])] });
      for (const field of unset) if (JSON.stringify(valueAt(scenario, field)) !== JSON.stringify(valueAt(base, field))) rederived.add(field);
      return { variant: variant.label, set: variant.set, report: simulate(scenario, { maxOperations: options.maxOperations, symmetry: options.symmetry }).report };
    } catch (error) {
      if (error instanceof ScenarioError) return { variant: variant.label, set: variant.set, error: error.issues.map((i) => `${i.path}: ${i.message}`).join('; ') };
      if (error instanceof DtsimError && !(error instanceof UsageError)) return { variant: variant.label, set: variant.set, error: error.message };
      throw error;
    }
  });
  return { results, rederived: unset.filter((field) => rederived.has(field)) };
}

/**
 * The last scenario's derivable fields: a sweep or a plan compares thousands of single variants of one scenario, and
 * finding them parses the scenario as often as there are fields.
 */
let rederivable: { key: string; found: { fields: string[]; base?: Scenario } } | undefined;

/** The derivable fields the scenario gives (and --set does not) whose value is the one derivation gives. */
function fieldsToRederive(source: ScenarioSource, options: CompareOptions): { fields: string[]; base?: Scenario } {
  const key = JSON.stringify([source.file, source.text, options.set ?? [], options.seed ?? null]);
  if (rederivable?.key !== key) rederivable = { key, found: findFieldsToRederive(source, options) };
  return rederivable.found;
}

function findFieldsToRederive(source: ScenarioSource, options: CompareOptions): { fields: string[]; base?: Scenario } {
  const load = (unset: string[]) => parseScenario(source.text, source.file, { set: options.set, seed: options.seed, unset });
  let base: Scenario;
  try {
    base = load([]);
  } catch {
    return { fields: [] }; // an invalid base is each variant's to report
  }
  const written = parseYaml(source.text) as unknown;
  const overridden = (field: string) => (options.set ?? []).some((s) => s.startsWith(`${field}=`) || s.startsWith(`${field}.`));
  const fields = DERIVED_FIELDS.filter((field) => {
    if (valueAt(written, field) === undefined || overridden(field)) return false;
    try {
      return JSON.stringify(valueAt(load([field]), field)) === JSON.stringify(valueAt(base, field));
    } catch {
      return false;
    }
  });
  return { fields, base };
}

function valueAt(value: unknown, dotted: string): unknown {
  let node = value;
  for (const key of dotted.split('.')) node = node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  return node;
}
