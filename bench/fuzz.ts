import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { runCli } from '../src/cli/app.js';
import { classify, fuzzCase } from './fuzz-cases.js';

/**
 * The long fuzz run: `npm run fuzz -- --cases 10000 [--seed S] [--process-every K] [--last-case FILE]` (FILE holds
 * the case running, to replay one that brought the process down). Each case runs in process
 * (fast), and every K-th (default 20) also as its own `node` process with a 30 s timeout, which is where a crash of
 * V8 itself, or a hang, would show. Prints the outcomes and every problem; exits 1 if there is any.
 */
const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const cases = option('--cases', 1000);
const seed = option('--seed', 1);
const every = option('--process-every', 20);
const LIMIT = ['--max-operations', '200000'];
const dir = mkdtempSync(join(tmpdir(), 'dtsim-fuzz-'));
const traceAt = args.indexOf('--last-case');
const traceFile = traceAt >= 0 ? args[traceAt + 1] : undefined;

const outcomes = new Map<string, number>();
const problems: string[] = [];
const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
let processes = 0;
let slowest = 0;
const samples = fc.sample(fuzzCase, { seed, numRuns: cases });
for (let i = 0; i < samples.length; i++) {
  const c = samples[i];
  const file = join(dir, `case-${i}.yaml`);
  writeFileSync(file, c.text);
  const flags = c.command === 'run' && !c.flags.includes('--max-operations') ? [...c.flags, ...LIMIT] : c.flags;
  const json = flags.includes('--json');
  // The case about to run, so that one that brings the process down can be found and replayed.
  if (traceFile) writeFileSync(traceFile, `case ${i}\n${c.what}\n${c.text}`);
  let stdout = '';
  let stderr = '';
  let code: number;
  try {
    code = await runCli([c.command, file, ...flags], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  } catch (error) {
    code = -1;
    stderr = `threw ${(error as Error).stack}`;
  }
  const outcome = classify({ code, stdout, stderr }, json);
  if (outcome === 'result' || outcome === 'clean error') count(outcome === 'result' ? 'result (exit 0)' : `clean error (exit ${code})`);
  else problems.push(`case ${i} in process: ${outcome}\n  ${c.what}`);
  if (i % every === 0) {
    processes++;
    const started = Date.now();
    const r = spawnSync(process.execPath, ['dist/src/cli/main.js', c.command, file, ...flags], { encoding: 'utf8', timeout: 30_000 });
    slowest = Math.max(slowest, Date.now() - started);
    if (r.signal) problems.push(`case ${i} as a process: ended by ${r.signal}${r.error ? ' (timeout)' : ''}\n  ${c.what}`);
    else {
      const p = classify({ code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }, json);
      if (p !== 'result' && p !== 'clean error') problems.push(`case ${i} as a process: ${p}\n  ${c.what}`);
    }
  }
  rmSync(file, { force: true });
}
console.log(`dtsim fuzz: ${cases} cases (seed ${seed}), in process; ${processes} of them also as processes (slowest ${(slowest / 1000).toFixed(1)} s)`);
for (const [outcome, n] of [...outcomes].sort()) console.log(`  ${outcome.padEnd(24)} ${n}`);
console.log(`  problems                 ${problems.length}`);
for (const p of problems.slice(0, 20)) console.log(p);
process.exitCode = problems.length > 0 ? 1 : 0;
