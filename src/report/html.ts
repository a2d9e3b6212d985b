import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { compile, type TopLevelSpec } from 'vega-lite';
import { CATEGORIES, OP_KINDS } from '../lower/resources.js';
import { VERSION } from '../version.js';
import { formatBytes, formatMesh, formatSeconds, percent } from './format.js';
import { htmlData, type HtmlData } from './html-data.js';
import type { Report, SimulatedStep } from './report.js';
import { modelShape, throughputText } from './summary.js';

/**
 * The visual report (`dtsim run --html`, `dtsim compare --html`): one self-contained HTML page. Charts are
 * Vega-Lite specifications compiled to Vega here, and drawn in the browser by Vega's runtime, inlined with the
 * data, so the page needs no network. The report's JSON is embedded as it is (`<script id="report">`), and every
 * figure on the page is read from it or from the simulated step. docs/report.md shows the page.
 */

/** One colour per operation kind, the same on every chart and in docs/report.md. */
export const KIND_COLOURS: Record<(typeof OP_KINDS)[number], string> = {
  forward: '#4c78a8',
  backward: '#f58518',
  inputGrad: '#e45756',
  weightGrad: '#72b7b2',
  recompute: '#a0cbe8',
  optimizer: '#54a24b',
  p2p: '#eeca3b',
  allReduce: '#b279a2',
  reduceScatter: '#ff9da6',
  allGather: '#9d755d',
  allToAll: '#bab0ac',
  broadcast: '#8cd17d',
  offload: '#79706e',
  ring: '#d67195',
};
const CATEGORY_COLOURS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#b279a2'];

/**
 * Rows as CSV text with a parse rule per column, for Vega-Lite's inline data: a tenth of the size of the same rows
 * as JSON objects, which is what keeps the page small at 16,384 GPUs. Numbers keep 8 significant digits.
 */
function csv<T extends object>(rows: readonly T[], columns: readonly (keyof T & string)[]) {
  const cell = (v: unknown) => (typeof v === 'number' ? String(Number(v.toPrecision(8))) : `"${String(v).replace(/"/g, '""')}"`);
  const text = [columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c])).join(','))].join('\n');
  const parse = Object.fromEntries(columns.map((c) => [c, typeof rows[0]?.[c] === 'number' ? 'number' : 'string']));
  return { values: text, format: { type: 'csv' as const, parse } };
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** JSON safe inside a <script> element. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');

let vegaRuntime: string | undefined;
/** Vega's browser build, read once from the installed package. */
function vegaScript(): string {
  if (vegaRuntime === undefined) {
    const entry = createRequire(import.meta.url).resolve('vega');
    vegaRuntime = readFileSync(join(dirname(entry), 'vega.min.js'), 'utf8');
  }
  return vegaRuntime;
}

/** The colour scale of the kinds present, so the legend lists only those. */
const kindScale = (present: Set<string>) => {
  const kinds = Object.keys(KIND_COLOURS).filter((k) => present.has(k)) as (keyof typeof KIND_COLOURS)[];
  return { domain: kinds, range: kinds.map((k) => KIND_COLOURS[k]) };
};

function timelineSpec(data: HtmlData, stepTime: number): TopLevelSpec {
  const rows = [...new Set(data.timeline.map((b) => b.row))];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 900,
    height: Math.max(60, rows.length * 18),
    data: csv(data.timeline, ['row', 'start', 'end', 'kind', 'microBatch']),
    transform: [{ calculate: 'datum.end - datum.start', as: 'duration' }, { calculate: "datum.microBatch >= 0 ? '' + datum.microBatch : '-'", as: 'mb' }],
    params: [{ name: 'zoom', select: { type: 'interval', encodings: ['x'] }, bind: 'scales' }],
    mark: { type: 'bar', height: { band: 0.8 }, opacity: 0.85 },
    encoding: {
      x: { field: 'start', type: 'quantitative', title: 'seconds into the step', scale: { domain: [0, stepTime], nice: false } },
      x2: { field: 'end' },
      y: { field: 'row', type: 'nominal', sort: rows, title: null },
      color: { field: 'kind', type: 'nominal', scale: kindScale(new Set(data.timeline.map((b) => b.kind))), title: 'operation' },
      tooltip: [
        { field: 'kind', title: 'operation' },
        { field: 'mb', title: 'micro-batch' },
        { field: 'start', title: 'start (s)', format: '.6f' },
        { field: 'duration', title: 'duration (s)', format: '.6f' },
      ],
    },
  };
}

function memorySpec(data: HtmlData, stepTime: number): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: csv(data.memory, ['series', 'where', 'capacity', 'time', ...CATEGORIES]),
    transform: [{ fold: [...CATEGORIES], as: ['category', 'bytes'] }],
    facet: { row: { field: 'where', type: 'nominal', title: null, sort: { field: 'series' } } },
    spec: {
      width: 900,
      height: 90,
      layer: [
        {
          mark: { type: 'area', interpolate: 'step-after' },
          encoding: {
            x: { field: 'time', type: 'quantitative', title: 'seconds into the step', scale: { domain: [0, stepTime], nice: false } },
            y: { field: 'bytes', type: 'quantitative', stack: 'zero', title: 'bytes', axis: { format: '~s' } },
            color: { field: 'category', type: 'nominal', scale: { domain: [...CATEGORIES], range: CATEGORY_COLOURS }, title: 'memory' },
            order: { field: 'category', sort: 'ascending' },
            tooltip: [{ field: 'category' }, { field: 'time', title: 'time (s)', format: '.6f' }, { field: 'bytes', format: ',.0f' }],
          },
        },
        { mark: { type: 'rule', color: 'black', strokeDash: [4, 3] }, encoding: { y: { field: 'capacity', type: 'quantitative', aggregate: 'max' } } },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  };
}

function communicationSpec(report: Report): TopLevelSpec {
  const values = Object.entries(report.communication.byKindAndLinkType).flatMap(([kind, byLink]) =>
    Object.entries(byLink)
      .filter(([, bytes]) => bytes > 0)
      .map(([link, bytes]) => ({ kind, link, bytes })),
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 420,
    height: { step: 22 },
    data: { values },
    mark: 'bar',
    encoding: {
      y: { field: 'kind', type: 'nominal', title: null },
      x: { field: 'bytes', type: 'quantitative', title: 'bytes sent in the step', axis: { format: '~s' } },
      color: { field: 'link', type: 'nominal', title: 'link type' },
      tooltip: [{ field: 'kind' }, { field: 'link' }, { field: 'bytes', format: ',.0f' }],
    },
  };
}

function exposedSpec(data: HtmlData): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 420,
    height: { step: data.exposed.length > 32 ? 8 : 16 },
    data: { values: data.exposed },
    layer: [
      {
        mark: 'bar',
        encoding: {
          y: { field: 'label', type: 'nominal', sort: null, title: null },
          x: { field: 'exposed', type: 'quantitative', title: data.exposedPerDevice ? 'seconds, per GPU' : 'seconds, mean over the stage (line: least to most)' },
          tooltip: [{ field: 'label' }, { field: 'exposed', format: '.6f' }, { field: 'min', format: '.6f' }, { field: 'max', format: '.6f' }],
        },
      },
      { mark: { type: 'rule', color: 'black' }, encoding: { y: { field: 'label', type: 'nominal', sort: null }, x: { field: 'min', type: 'quantitative' }, x2: { field: 'max' } } },
    ],
  };
}

/** A variant of `dtsim compare` as the page shows it. */
export interface CompareEntry {
  variant: string;
  report?: Report;
  error?: string;
}

/** A point of a step-time against peak-memory chart: a compare variant or a planned candidate. */
export interface TradeoffPoint {
  label: string;
  stepTime: number;
  peakHbm: number;
  fits: boolean;
  /** On the Pareto front: drawn joined. */
  pareto?: boolean;
  /** Its label drawn beside it (else in its tooltip only). */
  labelled?: boolean;
}

/** Step time against peak HBM, fitting and non-fitting apart, the Pareto front joined, some points labelled. */
function tradeoffSpec(points: TradeoffPoint[]): TopLevelSpec {
  const values = points.map((p) => ({ ...p, fits: p.fits ? 'fits' : 'does not fit', pareto: p.pareto ? 1 : 0, labelled: p.labelled ? 1 : 0 }));
  const x = { field: 'peakHbm', type: 'quantitative' as const, title: 'peak HBM (bytes)', axis: { format: '~s' }, scale: { zero: false } };
  const y = { field: 'stepTime', type: 'quantitative' as const, title: 'step time (s)', scale: { zero: false } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 600,
    height: 320,
    data: csv(values, ['label', 'stepTime', 'peakHbm', 'fits', 'pareto', 'labelled']),
    layer: [
      { transform: [{ filter: 'datum.pareto == 1' }], mark: { type: 'line', color: '#888', strokeDash: [3, 2] }, encoding: { x, y, order: { field: 'peakHbm' } } },
      {
        mark: { type: 'point', filled: true, size: points.length > 200 ? 30 : 90, opacity: 0.8 },
        encoding: {
          x,
          y,
          color: { field: 'fits', type: 'nominal', scale: { domain: ['fits', 'does not fit'], range: ['#54a24b', '#e45756'] }, title: null },
          shape: { field: 'fits', type: 'nominal', scale: { domain: ['fits', 'does not fit'], range: ['circle', 'cross'] }, title: null },
          tooltip: [{ field: 'label' }, { field: 'stepTime', format: '.4f' }, { field: 'peakHbm', format: ',.0f' }, { field: 'fits' }],
        },
      },
      { transform: [{ filter: 'datum.labelled == 1' }], mark: { type: 'text', dx: 8, align: 'left', fontSize: 10 }, encoding: { x, y, text: { field: 'label' } } },
    ],
  };
}

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.sub{color:#666}table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.no{color:#b00;font-weight:600}.chart{overflow-x:auto}
.note{color:#666;font-size:12px}`;

/** The script that draws every chart: each `<div class="chart" data-spec="name">` gets the Vega spec of that name. */
const DRAW = `(async () => {
  const specs = JSON.parse(document.getElementById('specs').textContent);
  for (const el of document.querySelectorAll('div.chart[data-spec]')) {
    const view = new vega.View(vega.parse(specs[el.dataset.spec]), { renderer: 'svg', container: el, hover: true });
    await view.runAsync();
    el.dataset.drawn = 'yes';
  }
  document.body.dataset.drawn = 'yes';
})().catch((e) => { document.body.dataset.drawn = 'error'; console.error(e); });`;

function page(title: string, subtitle: string, body: string, specs: Record<string, TopLevelSpec>, embedded: Record<string, unknown>): string {
  const compiled = Object.fromEntries(Object.entries(specs).map(([name, spec]) => [name, compile(spec).spec]));
  const scripts = Object.entries(embedded)
    .map(([id, value]) => `<script type="application/json" id="${id}">${scriptJson(value)}</script>`)
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="generator" content="dtsim ${VERSION}"><style>${STYLE}</style></head>
<body><h1>${escapeHtml(title)}</h1><div class="sub">${escapeHtml(subtitle)}</div>
${body}
<script type="application/json" id="specs">${scriptJson(compiled)}</script>
${scripts}
<script>${vegaScript()}</script>
<script>${DRAW}</script>
</body></html>
`;
}

/** Most GPUs whose entries of the report the page embeds. */
export const EMBEDDED_DEVICES = 1024;

const row = (name: string, value: string) => `<tr><th>${escapeHtml(name)}</th><td>${value}</td></tr>`;

/** The page of one simulated step. Its memory charts need the memory timelines of pipelineRanks(scenario, 0) (simulate's recordMemory). */
export function renderHtmlReport(sim: SimulatedStep): string {
  const { report } = sim;
  const data = htmlData(sim);
  const worst = report.devices[report.memory.worstDevice];
  const p = report.parallel;
  const summary = `<table>
${row('step time', formatSeconds(report.stepTime))}
${row('throughput', throughputText(report, (n) => Math.round(n).toLocaleString('en-US')))}
${row('bubble', `${percent(report.bubbleFraction)} of the step idle on compute (mean over GPUs); pipeline bubble rate ${percent(report.pipelineBubbleRate)}`)}
${row('exposed communication', `${formatSeconds(report.exposedCommunicationTime)} per GPU (mean)`)}
${row('communication', `${formatBytes(report.communication.bytes)} sent`)}
${row('memory', report.memory.fits ? 'fits' : '<span class="no">does not fit</span>')}
${row('worst device', `GPU ${report.memory.worstDevice} (stage ${worst.coordinates.pp}): ${formatBytes(report.memory.peak.hbm)} of ${formatBytes(report.memory.capacity.hbm)} HBM`)}
${row('simulated', `${report.simulation.operations.toLocaleString('en-US')} operations, ${report.simulation.events.toLocaleString('en-US')} events`)}
</table>`;
  const body = `<h2>Summary</h2>${summary}
<h2>Pipeline timeline</h2><p class="note">Data-parallel replica 0, one GPU per stage (GPU ${data.timelineDevices.join(', ')}): its compute lane, and below it every communication lane. Drag to pan, scroll to zoom; hover a bar for its micro-batch and duration.</p>
<div class="chart" data-spec="timeline"></div>
<h2>Memory over time</h2><p class="note">Each stage's fullest GPU of replica 0, HBM by category${report.memory.peak.cpu > 0 || report.memory.peak.nvme > 0 ? ', then the host memory and NVMe of its node' : ''}; the dashed line is the capacity (HBM ${formatBytes(report.memory.capacity.hbm)}).</p>
<div class="chart" data-spec="memory"></div>
<h2>Where the bytes go</h2><div class="chart" data-spec="communication"></div>
<h2>Exposed communication</h2><p class="note">Time a GPU's communication or offload lanes ran while its compute lane was idle${data.exposedPerDevice ? '' : `; ${report.devices.length.toLocaleString('en-US')} GPUs, so per stage`}.</p>
<div class="chart" data-spec="exposed"></div>`;
  const subtitle = `${report.cluster.devices.toLocaleString('en-US')} GPU${report.cluster.devices === 1 ? '' : 's'} (${report.cluster.nodes} x ${report.cluster.gpusPerNode} ${report.cluster.gpu}, ${report.cluster.node}); ${report.model.name} (${modelShape(report.model)}); ${formatMesh(p.mesh, p)}, ${p.schedule}, ${p.microBatches} micro-batches of ${p.microBatch}; seed ${report.seed}; dtsim ${report.version}`;
  // The report as --output writes it; past EMBEDDED_DEVICES GPUs without its per-GPU entries (6 MB at 16,384 GPUs).
  const embedded = report.devices.length <= EMBEDDED_DEVICES ? report : { ...report, devices: [], devicesOmitted: report.devices.length };
  return page(`dtsim: ${report.name}`, subtitle, body, { timeline: timelineSpec(data, report.stepTime), memory: memorySpec(data, report.stepTime), communication: communicationSpec(report), exposed: exposedSpec(data) }, { report: embedded });
}

/** The page of `dtsim compare`: the variants' table and step time against peak memory. */
export function renderCompareHtml(name: string, entries: CompareEntry[]): string {
  const rows = entries
    .map((e) => {
      const r = e.report;
      if (!r) return `<tr><td>${escapeHtml(e.variant)}</td><td colspan="5" class="no">cannot run: ${escapeHtml(e.error ?? '')}</td></tr>`;
      return `<tr><td>${escapeHtml(e.variant)}</td><td class="n">${formatSeconds(r.stepTime)}</td><td class="n">${percent(r.throughput.mfu)}</td><td class="n">${percent(r.bubbleFraction)}</td><td class="n">${formatBytes(r.memory.peak.hbm)}</td><td>${r.memory.fits ? 'yes' : '<span class="no">NO</span>'}</td></tr>`;
    })
    .join('\n');
  const body = `<h2>Variants</h2><table><tr><th>variant</th><th>step time</th><th>MFU</th><th>bubble</th><th>peak HBM</th><th>fits</th></tr>
${rows}</table>
<h2>Step time against peak memory</h2><div class="chart" data-spec="compare"></div>`;
  const points = entries.filter((e) => e.report).map((e) => ({ label: e.variant, stepTime: e.report!.stepTime, peakHbm: e.report!.memory.peak.hbm, fits: e.report!.memory.fits, labelled: true }));
  return page(`dtsim compare: ${name}`, `${entries.length} variants; dtsim ${VERSION}`, body, { compare: tradeoffSpec(points) }, { results: entries });
}

/** What the plan page shows: built by the caller from a plan (the report layer knows no planner). */
export interface PlanPage {
  title: string;
  summary: string;
  header: string[];
  /** The best candidates, as the command's table shows them. */
  rows: string[][];
  /** Every simulated candidate. */
  points: TradeoffPoint[];
  /** The plan as --json prints it. */
  plan: unknown;
}

/** The page of `dtsim plan`: the best candidates, and every simulated one by step time against peak HBM. */
export function renderPlanHtml(p: PlanPage): string {
  const table = `<table><tr>${p.header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>
${p.rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n')}</table>`;
  const body = `<h2>Search</h2><p>${escapeHtml(p.summary)}</p><h2>Best candidates</h2>${table}
<h2>Step time against peak memory</h2><p class="note">Every simulated candidate (hover one for its layout); the dashed line joins the Pareto front, where no candidate is both faster and smaller. The labelled points are the best and the front's smallest.</p><div class="chart" data-spec="plan"></div>`;
  return page(p.title, `dtsim ${VERSION}`, body, { plan: tradeoffSpec(p.points) }, { plan: p.plan });
}
