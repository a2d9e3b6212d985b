import { parse as parseYaml } from 'yaml';
import { DtsimError, ScenarioError, truncate } from './errors.js';
import type { Report } from './report/report.js';
import { loadScenarioFile } from './scenario/load.js';
import { simulate } from './simulate.js';
import { SCHEDULES } from './strategies/pipeline/registry.js';
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
    if (!schedule) throw new UsageError(`--schedules: unknown schedule ${JSON.stringify(name)}; registered: ${Object.keys(SCHEDULES).join(', ')}`);
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

export function compareVariants(file: string, variants: Variant[], base: { set?: string[]; seed?: number; maxOperations?: number } = {}): VariantResult[] {
  return variants.map((variant) => {
    const set = [...(base.set ?? []), ...variant.set];
    try {
      const scenario = loadScenarioFile(file, { set, seed: base.seed });
      return { variant: variant.label, set: variant.set, report: simulate(scenario, { maxOperations: base.maxOperations }).report };
    } catch (error) {
      if (error instanceof ScenarioError) return { variant: variant.label, set: variant.set, error: error.issues.map((i) => `${i.path}: ${i.message}`).join('; ') };
      if (error instanceof DtsimError && !(error instanceof UsageError)) return { variant: variant.label, set: variant.set, error: error.message };
      throw error;
    }
  });
}
