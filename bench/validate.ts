/**
 * `npm run validate`: dtsim's step times against measured ones (docs/validation.md).
 *   --fit     grid-search the calibration on the even rows, report it on the odd (held-out) rows too
 *   --write   also put the results into docs/validation.md (between its markers)
 *   --collectives P   time collectives with cluster.collectiveProtocol P (nccl, LL, LL128, Simple) instead of fitted
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../src/report/atomic.js';
import { loadScenarioFile } from '../src/scenario/load.js';
import { simulate } from '../src/simulate.js';
import { KORTHIKANTI_TABLE_5, LLAMA3_TABLE_4, MEGATRON_TABLE_1, predictKorthikanti, predictMegatron } from '../src/validation/published.js';
import { predictRows, readMeasuredRows, summarize, summarizePicks, type Calibration, type MeasuredRow } from '../src/validation/vtrain.js';

const file = 'test/fixtures/vtrain/vtrain-single-node.csv';

// --write: the printed results also replace the block between the markers in docs/validation.md.
const DOC = 'docs/validation.md';
const printed: string[] = [];
const log = console.log;
console.log = (...parts: unknown[]) => {
  printed.push(parts.join(' '));
  log(...parts);
};
function writeDoc() {
  const [begin, end] = ['<!-- npm run validate: begin -->\n```\n', '```\n<!-- npm run validate: end -->'];
  const text = readFileSync(DOC, 'utf8');
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${DOC} has no block between ${begin.trim()} and ${end.trim()}`);
  writeFileAtomic(DOC, text.slice(0, a + begin.length) + printed.join('\n') + '\n' + text.slice(b));
  log(`wrote the results into ${DOC}`);
}
const rows = readMeasuredRows(file);
const collectivesAt = process.argv.indexOf('--collectives');
/** The defaults, or with --collectives another way to time collectives. */
const defaults: Calibration = collectivesAt > 0 ? { collectiveProtocol: process.argv[collectivesAt + 1] } : {};
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function show(label: string, subset: MeasuredRow[], calibration: Calibration = {}) {
  const s = summarize(predictRows(subset, calibration));
  console.log(`${label}: ${s.rows} rows, MAPE ${pct(s.mape)}, mean signed ${pct(s.bias)}, median ${pct(s.median)}, p90 ${pct(s.p90)}`);
  return s;
}

/**
 * A published table against dtsim: each row's line with its relative error (`line` is given the prediction and the
 * error), then the worst row against the target.
 */
function publishedTable<R>(title: string, rows: R[], predict: (row: R) => number, published: (row: R) => number, line: (row: R, predicted: number, error: string) => string, target: string) {
  console.log(title);
  let worst = 0;
  for (const row of rows) {
    const predicted = predict(row);
    const error = (predicted - published(row)) / published(row);
    worst = Math.max(worst, Math.abs(error));
    console.log(`  ${line(row, predicted, pct(error))}`);
  }
  console.log(`  worst row ${pct(worst)} (target: ${target})`);
}

function megatron(calibration: Calibration = {}) {
  publishedTable(
    'Megatron-LM SC21 Table 1 (TFLOP/s per GPU; assumed: micro-batch 4 without a pipeline, 1 with one, chunks as shown):',
    MEGATRON_TABLE_1,
    (row) => predictMegatron(row, calibration),
    (row) => row.tflops,
    (row, predicted, error) => {
      const layout = `TP ${row.tp} x PP ${String(row.pp).padEnd(2)}${row.pp > 1 ? ` interleaved x ${row.chunks}` : '                 '}`;
      return `${row.parameters.padEnd(7)} ${layout} on ${String(row.gpus).padStart(4)} GPUs: published ${row.tflops}, dtsim ${predicted.toFixed(0)} (${error})`;
    },
    'each within 10%',
  );
}

/** Korthikanti et al., Table 5: iteration times with full recomputation and with sequence parallelism and selective recomputation. */
function korthikanti(calibration: Calibration = {}) {
  publishedTable(
    'Korthikanti et al. (MLSys 2023) Table 5 (iteration time; TP 8, no data parallelism, 1F1B assumed):',
    KORTHIKANTI_TABLE_5,
    (row) => predictKorthikanti(row, calibration),
    (row) => row.seconds,
    (row, predicted, error) => {
      const layout = `PP ${String(row.pp).padEnd(2)} on ${String(row.gpus).padStart(3)} GPUs, micro-batch ${row.microBatch}`;
      const technique = (row.technique === 'full' ? 'full recomputation:' : 'sequence parallel+selective:').padEnd(29);
      return `${row.parameters.padEnd(4)} ${layout}, ${technique}published ${row.seconds.toFixed(2)} s, dtsim ${predicted.toFixed(2)} s (${error})`;
    },
    'each within 5%',
  );
}

/** Llama 3 405B, Table 4: the bundled scenarios of its three runs, MFU against the published. */
function llama3(calibration: Calibration = {}) {
  console.log('Llama 3 405B, Table 4 (MFU; the bundled scenarios, docs/sequence.md):');
  for (const [file, published] of LLAMA3_TABLE_4) {
    const scenario = loadScenarioFile(file);
    if (calibration.collectiveProtocol) scenario.cluster.collectiveProtocol = calibration.collectiveProtocol as typeof scenario.cluster.collectiveProtocol;
    const mfu = simulate(scenario).report.throughput.mfu;
    const points = (mfu - published) * 100;
    console.log(`  ${file.padEnd(41)} published ${pct(published)}, dtsim ${pct(mfu)} (${points >= 0 ? '+' : ''}${points.toFixed(1)} points; target: within 5; tested within 6)`);
  }
}

if (process.argv.includes('--fit')) {
  const train = rows.filter((_, i) => i % 2 === 0);
  const test = rows.filter((_, i) => i % 2 === 1);
  let best: { mape: number; calibration: Calibration } | undefined;
  for (const computeEfficiency of [0.7, 0.75, 0.8])
    for (const efficiencyHalfSize of [1e10, 2e10, 4e10, 8e10])
      for (const hostOverheadPerLayer of [0.6e-3, 0.8e-3, 1e-3, 1.2e-3])
        for (const collectiveStepLatency of [0.5e-6, 5e-6]) {
          const calibration = { computeEfficiency, efficiencyHalfSize, hostOverheadPerLayer, collectiveStepLatency };
          const { mape } = summarize(predictRows(train, calibration));
          if (!best || mape < best.mape) best = { mape, calibration };
        }
  console.log('best calibration on the even rows:', JSON.stringify(best!.calibration));
  // The pipeline transfer's software time of the measured stack, fitted alone on the even rows with the defaults.
  for (const transferOverhead of [0, 0.5e-3, 1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3]) {
    const fitted = summarize(predictRows(train, { transferOverhead })).mape;
    const heldOut = summarize(predictRows(test, { transferOverhead })).mape;
    console.log(`  transfer overhead ${(transferOverhead * 1e3).toFixed(1)} ms: even rows ${pct(fitted)}, odd rows ${pct(heldOut)}`);
  }
  show('fitted, even rows (calibration set)', train, best!.calibration);
  show('fitted, odd rows (held out)', test, best!.calibration);
  megatron(best!.calibration);
} else {
  const s = show(defaults.collectiveProtocol ? `collectives on ${defaults.collectiveProtocol}, all rows` : 'defaults, all rows', rows, defaults);
  console.log('worst rows (gpus, global batch, micro batch, hidden, heads, layers, seq, tp, dp, pp):');
  for (const w of s.worst) {
    const r = w.row;
    console.log(`  ${[r.gpus, r.globalBatch, r.microBatch, r.hidden, r.heads, r.layers, r.seqLength, r.tp, r.dp, r.pp].join(',')}: measured ${(r.seconds * 1e3).toFixed(1)} ms, predicted ${(w.predictedSeconds * 1e3).toFixed(1)} ms (${pct(w.error)})`);
  }
  for (const key of ['tp', 'pp', 'hidden'] as const) {
    const groups = new Map<number, MeasuredRow[]>();
    for (const r of rows) groups.set(r[key], [...(groups.get(r[key]) ?? []), r]);
    const parts = [...groups].sort((a, b) => a[0] - b[0]).map(([k, g]) => `${k}: ${pct(summarize(predictRows(g, defaults)).mape)}`);
    console.log(`  MAPE by ${key}: ${parts.join(', ')}`);
  }
  const picks = summarizePicks(predictRows(rows, defaults));
  console.log(
    `picking a configuration: in ${picks.exact} of ${picks.groups} groups of one model and job (GPUs, global batch, shape) dtsim's fastest is the measured fastest; ` +
      `its pick is measured ${pct(picks.meanRegret)} slower than the best on average, ${pct(picks.worstRegret)} at worst`,
  );
  megatron(defaults);
  korthikanti(defaults);
  llama3(defaults);
  if (process.argv.includes('--write')) writeDoc();
}
