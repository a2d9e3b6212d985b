/**
 * `npm run bench`: how fast dtsim is on this machine (docs/performance.md).
 *
 *   npm run bench                     kernel throughput and the three benchmark scenarios, against the targets
 *   npm run bench -- --runs 3         runs per scenario (default 5; the 16,384-GPU scenario runs at most 3)
 *   npm run bench -- --growth         also: how the cost grows with GPUs, micro-batches and layers
 *   npm run bench -- --json           one JSON document instead of tables
 *   npm run bench -- --plan           only dtsim plan's search of a 13B model on 64 A100: candidates simulated per second
 *   npm run bench -- --against DIR    only scenario (b) without the page warmer, this build against the build in DIR
 *                                     (another checkout, built), in alternating fresh processes: old and new compared
 *
 * Every figure is the median of several runs, with the spread (min-max). Each scenario run is a fresh process,
 * so its peak resident memory is its own. Wall time counts loading the scenario and every phase of simulate().
 */
import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventKernel } from '../src/engine/kernel.js';
import { formatBytes, table } from '../src/report/format.js';
import type { ScenarioMeasurement } from './run-scenario.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const runs = option('--runs', 5);
const asJson = flag('--json');
const say = (text: string) => {
  if (!asJson) console.log(text);
};

interface Spread {
  median: number;
  min: number;
  max: number;
}
const spread = (values: number[]): Spread => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
};
const seconds = () => Number(process.hrtime.bigint()) / 1e9;

/**
 * The kernel alone, in the hold model: `pending` events wait in the queue; each event run schedules one more at a
 * pseudo-random delay, so every event is one schedule plus one pop at a constant queue size.
 */
function kernelEventsPerSecond(pending: number, events: number): number {
  const kernel = new EventKernel(pending + 16);
  let state = 12345;
  // A linear congruential generator: deterministic delays of 1 ns to 1 ms without allocating.
  const delay = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return 1 + (state % 1_000_000);
  };
  let left = events;
  const type = kernel.on(() => {
    if (left-- > 0) kernel.schedule(kernel.now + delay(), type);
  });
  for (let i = 0; i < pending; i++) kernel.schedule(delay(), type);
  const started = seconds();
  kernel.run();
  return kernel.eventsProcessed / (seconds() - started);
}

const runner = fileURLToPath(new URL('./run-scenario.js', import.meta.url));
function measure(file: string, set: string[] = [], extra: { noPageWarmer?: boolean; root?: string } = {}): ScenarioMeasurement {
  const script = extra.root === undefined ? runner : join(extra.root, 'dist', 'bench', 'run-scenario.js');
  const argv = [script, file, ...set.flatMap((s) => ['--set', s]), ...(extra.noPageWarmer ? ['--no-page-warmer'] : [])];
  const out = spawnSync(process.execPath, argv, { encoding: 'utf8', maxBuffer: 1 << 20, cwd: extra.root });
  if (out.status !== 0) throw new Error(`benchmark run of ${file} failed:\n${out.stderr}`);
  return JSON.parse(out.stdout) as ScenarioMeasurement;
}
function measureMany(file: string, count: number, set: string[] = []) {
  return summarise(file, set, Array.from({ length: count }, () => measure(file, set)));
}
/** Medians and spreads of one scenario's runs. */
function summarise(file: string, set: string[], samples: ScenarioMeasurement[]) {
  const count = samples.length;
  const phases = Object.fromEntries(Object.keys(samples[0].phaseSeconds).map((p) => [p, spread(samples.map((s) => s.phaseSeconds[p as keyof ScenarioMeasurement['phaseSeconds']])).median]));
  return {
    file,
    set,
    runs: count,
    devices: samples[0].devices,
    operations: samples[0].operations,
    events: samples[0].events,
    wallSeconds: spread(samples.map((s) => s.wallSeconds)),
    peakResidentBytes: spread(samples.map((s) => s.peakResidentBytes)),
    phaseSeconds: phases,
  };
}
type Measured = ReturnType<typeof measureMany>;

const fmtSpread = (s: Spread, unit: (x: number) => string) => `${unit(s.median)} (${unit(s.min)}-${unit(s.max)})`;
const sec = (x: number) => `${x.toFixed(x < 1 ? 3 : 2)} s`;
const mev = (x: number) => `${(x / 1e6).toFixed(1)}M`;

/**
 * What this machine charges for writing fresh memory (page faults): on virtual machines it dominates large steps,
 * and it varies from one machine, or one hour, to another, so the benchmark prints it beside its figures.
 */
function freshMemoryMsPer100MiB(): number {
  const started = seconds();
  const block = new Int32Array(25 * 2 ** 20);
  for (let i = 0; i < block.length; i += 1024) block[i] = i;
  return (seconds() - started) * 1000;
}

// --against DIR: this build and another, alternating fresh processes (their order swapped every round, so neither
// always runs second), scenario (b) without the page warmer. Noise on these machines comes in bursts, so two builds
// are compared only in the same minutes, never one figure against another day's.
const againstAt = args.indexOf('--against');
if (againstAt >= 0) {
  const other = resolve(args[againstAt + 1] ?? '.');
  const file = 'scenarios/gpt3-175b-1024-a100.yaml';
  const rounds = option('--runs', 9);
  const ours: ScenarioMeasurement[] = [];
  const theirs: ScenarioMeasurement[] = [];
  if (!asJson) process.stderr.write(`measuring ${file} without the page warmer, ${rounds} rounds, this build and ${other} alternating...\n`);
  for (let round = 0; round < rounds; round++) {
    const pair = [() => ours.push(measure(file, [], { noPageWarmer: true })), () => theirs.push(measure(resolve(other, file), [], { noPageWarmer: true, root: other }))];
    if (round % 2 === 1) pair.reverse();
    for (const run of pair) run();
  }
  const rows = [
    { build: other, m: summarise(file, [], theirs) },
    { build: 'this build', m: summarise(file, [], ours) },
  ];
  const ratio = rows[1].m.wallSeconds.median / rows[0].m.wallSeconds.median;
  if (asJson) console.log(JSON.stringify({ file, rounds, other: rows[0].m, ours: rows[1].m, ratio }, null, 2));
  else {
    console.log(table(rows.map(({ build, m }) => [build, fmtSpread(m.wallSeconds, sec), ['load', 'topology', 'step', 'execute', 'report'].map((p) => sec(m.phaseSeconds[p])).join(' / ')]), ['build', 'wall time (median, min-max)', 'phases (medians)']));
    console.log(`this build / other: ${ratio.toFixed(3)} (median wall time)`);
  }
  process.exit(0);
}

// --plan: how fast dtsim plan searches the issue's problems, a 13B and a 70B model on 64 A100 (8 DGX A100 nodes).
if (flag('--plan')) {
  const { plan } = await import('../src/plan.js');
  const problems = [
    { name: 'GPT-3 13B', text: 'name: gpt3-13b-64-a100\ncluster: { nodes: 8, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: gpt3-13b }\ntraining: { globalBatch: 512, microBatch: 1, precision: bf16 }\nparallel: { tp: 8, pp: 1, dp: 8 }\n' },
    { name: 'Llama 2 70B', text: 'name: llama2-70b-64-a100\ncluster: { nodes: 8, gpusPerNode: 8, gpu: a100-80gb, node: dgx-a100 }\nmodel: { preset: llama2-70b }\ntraining: { globalBatch: 512, microBatch: 1, precision: bf16, flashAttention: true }\nparallel: { tp: 8, pp: 8, dp: 1 }\n' },
  ];
  const all = [];
  for (const problem of problems) {
    const started = seconds();
    let assessed = 0;
    const result = await plan({ file: `${problem.text.slice(6, problem.text.indexOf('\n'))}.yaml`, text: problem.text }, { onProgress: (done) => void (done === 0 && assessed === 0 && (assessed = seconds() - started)) });
    const wall = seconds() - started;
    const refused = Object.values(result.refused).reduce((a, b) => a + b, 0);
    const simulating = wall - assessed;
    all.push({
      problem: problem.name,
      candidates: result.candidates,
      refused,
      pruned: result.pruned,
      skipped: result.skipped,
      simulated: result.simulated,
      seconds: wall,
      checkingSeconds: assessed,
      simulatedPerSecond: result.simulated / simulating,
      // Every candidate answered: refused by a check, pruned or skipped by a bound, or simulated.
      candidatesPerSecond: result.candidates / wall,
      prunedPerSecond: result.pruned / assessed,
      evaluated: result.evaluated.map((c) => c.overrides),
      best: result.ranked[0]?.overrides,
      bestStepTime: result.ranked[0]?.result?.stepTime,
    });
  }
  // The same simulations again, four times, on worker threads of their own: the first passes warm them (the JIT
  // compiles the simulator's code in each thread, and keeps optimizing through the second and third), the last shows
  // the rate the simulator sustains once compiled. A plan's own rate above includes that warm-up, which at 128
  // simulations is most of its simulating time.
  const sustained = await (async () => {
    const { entryRunner } = await import('../src/sweep-run.js');
    const [thirteen] = all;
    const source = { file: 'gpt3-13b-64-a100.yaml', text: problems[0].text };
    const entries = (thirteen.evaluated ?? []).map((overrides, index) => ({ index, overrides }));
    const runner = entryRunner();
    try {
      const timed = async () => {
        const started = seconds();
        await runner.run({ id: 'bench', source, set: [] }, entries, { onLine: () => {} });
        return entries.length / (seconds() - started);
      };
      const passes: number[] = [];
      for (let pass = 0; pass < 4; pass++) passes.push(await timed());
      return { passes, warm: passes[passes.length - 1] };
    } finally {
      runner.close();
    }
  })();
  if (asJson) console.log(JSON.stringify({ problems: all.map(({ evaluated, ...rest }) => (void evaluated, rest)), sustained }, null, 2));
  else {
    console.log(`dtsim plan on 64 A100 (8 DGX A100), ${cpus().length} cores, --within 0.1 (the default)\n`);
    console.log(
      table(
        all.map((f) => [f.problem, String(f.candidates), String(f.refused), String(f.pruned), String(f.skipped), String(f.simulated), sec(f.checkingSeconds), sec(f.seconds), f.candidatesPerSecond.toFixed(0), f.simulatedPerSecond.toFixed(1), f.prunedPerSecond.toFixed(0), sec(f.bestStepTime ?? 0)]),
        ['problem', 'candidates', 'refused', 'pruned', 'skipped', 'simulated', 'checks and bounds', 'planning time', 'candidates/s', 'simulated/s', 'pruned/s', 'best step'],
      ),
    );
    for (const f of all) console.log(`${f.problem}: best ${JSON.stringify(f.best)}`);
    console.log(
      `\nGPT-3 13B's ${all[0].simulated} simulated candidates again, four times on two fresh worker threads: ${sustained.passes.map((r) => `${r.toFixed(0)}/s`).join(', ')} ` +
        `(the JIT warming up, then the rate once compiled)`,
    );
    const seventy = all[1];
    console.log(`\ntargets\n${table(
      [
        ['70B on 64 GPUs planned in <= 60 s', sec(seventy.seconds), seventy.seconds <= 60 ? 'met' : 'missed'],
        ['>= 200 candidates simulated/s (13B)', all[0].simulatedPerSecond.toFixed(1), all[0].simulatedPerSecond >= 200 ? 'met' : 'missed'],
        ['>= 200 simulated/s (13B), workers warm (4th pass)', sustained.warm.toFixed(1), sustained.warm >= 200 ? 'met' : 'missed'],
      ],
      ['target', 'measured', ''],
    )}`);
  }
  process.exit(0);
}

say(`dtsim benchmark on ${cpus().length} x ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${formatBytes(totalmem())}, Node ${process.version}`);
const freshMemory = spread(Array.from({ length: 3 }, freshMemoryMsPer100MiB));
say(`writing fresh memory costs ${freshMemory.median.toFixed(0)} ms per 100 MiB here (${freshMemory.min.toFixed(0)}-${freshMemory.max.toFixed(0)}): page faults, paid once per page`);
say(`median of the runs, spread (min-max) in brackets\n`);

// Kernel: one run untimed first, so that the measured runs see the kernel compiled (steady state).
kernelEventsPerSecond(10_000, 1_000_000);
const kernelRuns = Array.from({ length: 5 }, () => kernelEventsPerSecond(10_000, 5_000_000));
const kernelLarge = Array.from({ length: 3 }, () => kernelEventsPerSecond(1_000_000, 5_000_000));
const kernel = { pending10k: spread(kernelRuns), pending1M: spread(kernelLarge) };
say('event kernel (schedule + pop, hold model, 5M events per run)');
say(
  table(
    [
      ['10,000', fmtSpread(kernel.pending10k, mev), '5'],
      ['1,000,000', fmtSpread(kernel.pending1M, mev), '3'],
    ],
    ['events pending', 'events per second', 'runs'],
  ),
);

// Whole steps.
const scenarios = [
  { label: '(a) small GPT, 16 GPUs', file: 'scenarios/small-gpt.yaml', runs },
  { label: '(b) GPT-3 175B, 1,024 A100', file: 'scenarios/gpt3-175b-1024-a100.yaml', runs },
  { label: '(c) Llama 3 405B, 16,384 H100', file: 'scenarios/llama3-405b-16k-h100.yaml', runs: Math.min(runs, 3) },
];
// Runs of the scenarios alternate (a, b, c, b without the page warmer, a, b, ...), so that each scenario's runs
// spread over the whole measurement: this machine's noise comes in bursts of a minute or so, which would otherwise
// take all the runs of one scenario.
if (!asJson) process.stderr.write(`measuring ${scenarios.map((s) => `${s.file} (${s.runs} runs)`).join(', ')} and ${scenarios[1].file} without the page warmer (3 runs), alternating...\n`);
const unwarmedSpec = { file: scenarios[1].file, runs: 3, noPageWarmer: true };
const specs = [...scenarios.map((s) => ({ file: s.file, runs: s.runs, noPageWarmer: false })), unwarmedSpec];
const samples: ScenarioMeasurement[][] = specs.map(() => []);
for (let round = 0; round < Math.max(...specs.map((s) => s.runs)); round++) {
  specs.forEach((spec, i) => {
    if (round < spec.runs) samples[i].push(measure(spec.file, [], { noPageWarmer: spec.noPageWarmer }));
  });
}
const steps: (Measured & { label: string })[] = scenarios.map((s, i) => ({ label: s.label, ...summarise(s.file, [], samples[i]) }));
const phaseCell = (m: Measured) => ['load', 'topology', 'step', 'execute', 'report'].map((p) => sec(m.phaseSeconds[p])).join(' / ');
say('\nwhole-step simulations (wall time includes loading the scenario)');
say(
  table(
    steps.map((m) => [m.label, m.operations.toLocaleString('en-US'), m.events.toLocaleString('en-US'), fmtSpread(m.wallSeconds, sec), fmtSpread(m.peakResidentBytes, formatBytes), String(m.runs)]),
    ['scenario', 'operations', 'events', 'wall time', 'peak resident', 'runs'],
  ),
);
say('\nmedian time per phase: load / topology / step building / execution / report');
say(table(steps.map((m) => [m.label, phaseCell(m)]), ['scenario', 'phases']));

// What the page warmer buys: (b) with the main thread faulting in all its memory itself. Not a target figure.
const unwarmed = spread(samples[specs.length - 1].map((m) => m.wallSeconds));
say(`\n(b) without the page warmer (every page fault on the main thread): ${fmtSpread(unwarmed, sec)}, 3 runs; not a target figure`);

// Targets (issue 5), on a 2-core machine with 24 GiB.
const [, gpt3, llama] = steps;
const targets = [
  { target: 'kernel >= 10M events/s (10k pending)', value: mev(kernel.pending10k.median), met: kernel.pending10k.median >= 10e6 },
  { target: '(b) <= 1 s', value: sec(gpt3.wallSeconds.median), met: gpt3.wallSeconds.median <= 1 },
  { target: '(c) <= 10 s', value: sec(llama.wallSeconds.median), met: llama.wallSeconds.median <= 10 },
  { target: '(c) <= 4 GB resident', value: formatBytes(llama.peakResidentBytes.median), met: llama.peakResidentBytes.median <= 4e9 },
];
say('\ntargets');
say(table(targets.map((t) => [t.target, t.value, t.met ? 'met' : 'NOT MET']), ['target', 'measured', '']));

// Growth.
let growth: { axis: string; rows: (Measured & { value: number })[] }[] = [];
if (flag('--growth')) {
  const base = 'scenarios/gpt3-175b-1024-a100.yaml';
  const axes = [
    { axis: 'GPUs (data-parallel degree 4 to 32, 512 to 4,096 GPUs)', values: [4, 8, 16, 32], set: (dp: number) => [`parallel.dp=${dp}`, `cluster.nodes=${dp * 16}`, `training.globalBatch=${dp * 192}`] },
    { axis: 'micro-batches per replica', values: [48, 96, 192, 384], set: (m: number) => [`training.globalBatch=${m * 8}`] },
    { axis: 'layers (6 to 48 per stage)', values: [96, 192, 384, 768], set: (l: number) => [`model.layers=${l}`] },
  ];
  growth = axes.map(({ axis, values, set }) => {
    if (!asJson) process.stderr.write(`measuring growth with ${axis}...\n`);
    return { axis, rows: values.map((value) => ({ value, ...measureMany(base, 3, set(value)) })) };
  });
  for (const g of growth) {
    say(`\ngrowth with ${g.axis}, from ${base}`);
    const first = g.rows[0];
    say(
      table(
        g.rows.map((r) => [String(r.value), r.devices.toLocaleString('en-US'), r.operations.toLocaleString('en-US'), r.events.toLocaleString('en-US'), sec(r.wallSeconds.median), `${(r.wallSeconds.median / first.wallSeconds.median).toFixed(2)}x`, `${((r.wallSeconds.median / r.events) * 1e9).toFixed(0)} ns`, formatBytes(r.peakResidentBytes.median)]),
        ['value', 'GPUs', 'operations', 'events', 'wall time', 'vs first', 'per event', 'peak resident'],
      ),
    );
  }
}

if (asJson) console.log(JSON.stringify({ machine: { cpus: cpus().length, model: cpus()[0]?.model, totalMemoryBytes: totalmem(), node: process.version, freshMemoryMsPer100MiB: freshMemory }, kernel, steps, withoutPageWarmerSeconds: { scenario: steps[1].file, ...unwarmed }, targets, growth }, null, 2));
