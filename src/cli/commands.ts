import type { Logger } from 'pino';
import { ResourceLimitError, truncate, UsageError } from '../errors.js';
import { GPU_PRESETS, NODE_PRESETS } from '../hardware/presets.js';
import { buildTopology } from '../hardware/topology.js';
import { summarizeTopology } from '../hardware/topology-summary.js';
import { checkWritable, writeFileAtomic } from '../report/atomic.js';
import { compareVariants, fieldVariants, scheduleVariants } from '../compare.js';
import { formatBytes, formatMesh, formatRate, formatSeconds, percent, table } from '../report/format.js';
import { meshOf } from '../strategies/registry.js';
import { renderTimeline } from '../report/timeline.js';
import { renderSummary } from '../report/summary.js';
import { writeTraceInterruptibly } from '../report/trace.js';
import { loadScenarioFile, parseScenario, readScenarioSource, sourceWith } from '../scenario/load.js';
import { pipelineRanks, simulate } from '../simulate.js';
import { SCHEDULES } from '../strategies/pipeline/registry.js';
import { loadSweep, mergeLines, readLines, shardFrom, formatLines, type SweepLine } from '../sweep.js';
import { runSweep } from '../sweep-run.js';
import { plan as planStrategies, scenarioWith, type PlanCandidate } from '../plan.js';
import { MODEL_PRESETS } from '../workload/presets.js';
import { modelParameters, type ModelSpec } from '../workload/registry.js';
import { memoryWhatIf } from '../whatif.js';
import type { Scenario } from '../scenario/resolve.js';
import type { Io } from './app.js';
import type { StatusLine } from './status-line.js';

interface ScenarioArgs {
  scenario: string;
  set?: string[];
  seed?: number;
  json?: boolean;
}

/** What runs after each phase of simulate(), for the progress line. */
const NEXT_PHASE: Record<string, string> = { topology: 'building the step\'s operations', step: 'executing the step', execute: 'writing the report' };

/** GPUs `dtsim topology` builds a graph for: a million, in a few minutes. */
const MAX_TOPOLOGY_DEVICES = 1_000_000;

const load = (args: ScenarioArgs) => loadScenarioFile(args.scenario, { set: args.set ?? [], seed: args.seed });
const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export async function run(
  args: ScenarioArgs & { output?: string; html?: string; trace?: string; 'trace-ranks'?: string; 'trace-pipeline'?: number; timeline?: boolean; 'page-warmer'?: boolean; symmetry?: boolean; 'max-operations'?: number },
  io: Io,
  log: Logger,
  status: StatusLine,
): Promise<number> {
  // A trace, an HTML page or a timeline draws every device; the symmetry simulates only some.
  const drawn = [args.trace !== undefined && '--trace', args.html !== undefined && '--html', args.timeline === true && '--timeline'].filter(Boolean);
  if (args.symmetry === true && drawn.length > 0) throw new UsageError(`--symmetry simulates only some data-parallel replicas, and ${drawn.join(', ')} draws every device: drop one`);
  const scenario = load(args);
  log.info({ scenario: scenario.name, file: args.scenario }, 'scenario loaded');
  // Before simulating: a path that cannot be written is a usage error now, not after the whole step.
  if (args.output !== undefined) checkWritable(args.output, '--output');
  if (args.trace !== undefined) checkWritable(args.trace, '--trace');
  if (args.html !== undefined) checkWritable(args.html, '--html');
  const ranks = traceRanks(args, scenario);
  const started = process.hrtime.bigint();
  let lap = started;
  const progress = status.show;
  progress(`building the topology of ${scenario.cluster.nodes * scenario.cluster.gpusPerNode} GPUs`);
  const onPhase = (phase: string) => {
    const now = process.hrtime.bigint();
    log.debug({ phase, wallMs: Number(now - lap) / 1e6 }, 'phase done');
    lap = now;
    progress(NEXT_PHASE[phase] ?? '');
  };
  const sim = simulate(scenario, { recordMemory: memoryToRecord(args, scenario, ranks), onPhase, pageWarmer: args['page-warmer'] === true, maxOperations: args['max-operations'], symmetry: args.symmetry === true });
  log.info({ operations: sim.report.simulation.operations, events: sim.report.simulation.events, wallMs: Number(process.hrtime.bigint() - started) / 1e6 }, 'step simulated');
  if (args.output) writeFileAtomic(args.output, json(sim.report));
  if (args.html) {
    progress(`writing the HTML report to ${args.html}`);
    // Loaded here: Vega-Lite is needed only for the page.
    const { renderHtmlReport } = await import('../report/html.js');
    writeFileAtomic(args.html, renderHtmlReport(sim));
    log.info({ file: args.html }, 'HTML report written');
  }
  if (args.trace) {
    progress(`writing the trace to ${args.trace}`);
    const { events } = await writeTraceInterruptibly(sim, args.trace, { ranks });
    log.info({ file: args.trace, events }, 'trace written');
  }
  progress('');
  if (args.json) io.stdout(json(sim.report));
  else io.stdout(renderSummary(sim.report) + (args.timeline ? `\n${renderTimeline(sim)}` : ''));
  return 0;
}

export async function compare(args: ScenarioArgs & { schedules?: string; vary?: string[]; html?: string; symmetry?: boolean; 'max-operations'?: number }, io: Io, status: StatusLine): Promise<number> {
  if (!args.schedules && !args.vary?.length) throw new UsageError('compare needs --schedules a,b,... or --vary path=v1,v2 (or both)');
  if (args.html !== undefined) checkWritable(args.html, '--html');
  const source = readScenarioSource(args.scenario);
  const base = parseScenario(source.text, source.file, { set: args.set ?? [], seed: args.seed });
  const bySchedule = args.schedules ? scheduleVariants(args.schedules.split(',').map((s) => s.trim()).filter(Boolean), base.parallel.chunks) : [{ label: '', set: [] }];
  const byField = fieldVariants(args.vary ?? []);
  const variants = bySchedule.flatMap((s) => byField.map((f) => ({ label: [s.label, f.label].filter(Boolean).join(' '), set: [...s.set, ...f.set] })));
  const onVariant = (index: number, total: number, label: string) => status.show(`variant ${index + 1} of ${total}${label ? `: ${truncate(label, 60)}` : ''}`);
  const { results, rederived } = compareVariants(source, variants, { set: args.set, seed: args.seed, maxOperations: args['max-operations'], symmetry: args.symmetry === true, onVariant });
  status.show('');
  if (args.html) {
    const { renderCompareHtml } = await import('../report/html.js');
    writeFileAtomic(args.html, renderCompareHtml(base.name, results));
  }
  if (args.json) {
    io.stdout(json(results));
    return 0;
  }
  const header = ['variant', 'chunks', 'step time', 'MFU', 'bubble', 'in-span bubble', 'exposed comm', 'communication', 'pipeline bytes', 'peak activations (worst stage)', 'peak HBM', 'fits'];
  // Why a variant cannot run goes below the table, numbered, where a long message widens no column.
  const reasons: string[] = [];
  const rows = results.map((r) => {
    if (!r.report) {
      reasons.push(`[${reasons.length + 1}] ${r.variant}: ${r.error ?? ''}`);
      return [r.variant, ...header.slice(1, -1).map(() => '-'), `cannot run [${reasons.length}]`];
    }
    const x = r.report;
    const worst = x.stages.reduce((a, s) => (s.peakActivations > a.peakActivations ? s : a), x.stages[0]);
    return [
      r.variant,
      String(x.parallel.chunks),
      formatSeconds(x.stepTime),
      percent(x.throughput.mfu),
      percent(x.bubbleFraction),
      percent(x.pipelineBubbleRate),
      formatSeconds(x.exposedCommunicationTime),
      formatBytes(x.communication.bytes),
      formatBytes(x.communication.byKind.p2p),
      `${formatBytes(worst.peakActivations)} (stage ${worst.stage})`,
      formatBytes(x.memory.peak.hbm),
      x.memory.fits ? 'yes' : 'NO',
    ];
  });
  io.stdout(
    `${base.name}: ${base.cluster.nodes * base.cluster.gpusPerNode} GPUs, ${formatMesh(meshOf(base.parallel).sizes(), base.parallel)}, ${base.training.globalBatch / (base.training.microBatch * base.parallel.dp)} micro-batches per replica\n\n` +
      table(rows, header) +
      '\n' +
      (reasons.length > 0 ? `\n${reasons.join('\n')}\n` : '') +
      (rederived.length > 0 ? `\n${rederived.join(', ')}: given with the value ${rederived.length > 1 ? 'they derive' : 'it derives'}, so derived anew for each variant\n` : ''),
  );
  return 0;
}

export function memory(args: ScenarioArgs & { 'max-operations'?: number }, io: Io, status: StatusLine): number {
  const onVariant = (index: number, total: number, label: string) => status.show(`technique ${index + 1} of ${total}: ${truncate(label, 60)}`);
  const result = memoryWhatIf(readScenarioSource(args.scenario), { set: args.set, seed: args.seed, maxOperations: args['max-operations'], onVariant });
  status.show('');
  if (args.json) {
    io.stdout(json(result));
    return 0;
  }
  const b = result.baseline;
  const hbm = b.breakdown.hbm;
  const fit = b.fits ? 'fits' : `does not fit: ${formatBytes(b.peak.hbm - b.capacity.hbm)} over`;
  const rows = result.techniques.map((t) => [
    t.name,
    t.set.join(' '),
    formatBytes(t.peakHbm),
    t.savedBytes >= 0 ? formatBytes(t.savedBytes) : `-${formatBytes(-t.savedBytes)}`,
    formatSeconds(t.stepTime),
    t.lostSeconds >= 0 ? `+${formatSeconds(t.lostSeconds)}` : `-${formatSeconds(-t.lostSeconds)}`,
    t.savedBytes > 0 ? (t.lostSeconds > 0 ? `${formatBytes(t.savedBytes / t.lostSeconds)}/s` : 'free') : '-',
    formatBytes(t.peakHost),
    t.makesItFit ? 'yes: makes it fit' : t.fits ? 'yes' : 'NO',
  ]);
  const lines = [
    `${result.scenario}: the worst GPU (${b.worstDevice}) peaks at ${formatBytes(b.peak.hbm)} of ${formatBytes(b.capacity.hbm)} HBM and ${fit}; step time ${formatSeconds(b.stepTime)}`,
    `  at its peak: params ${formatBytes(hbm.params)}, grads ${formatBytes(hbm.grads)}, optimizer ${formatBytes(hbm.optimizer)}, activations ${formatBytes(hbm.activations)}, buffers ${formatBytes(hbm.buffers)}`,
    `  host memory ${formatBytes(b.peak.cpu)} of ${formatBytes(b.capacity.cpu)} per node, NVMe ${formatBytes(b.peak.nvme)} of ${formatBytes(b.capacity.nvme)}`,
    '',
    'each technique alone, memory savers first by memory saved per second of step time lost:',
    '',
    table(rows, ['technique', 'sets', 'peak HBM', 'saves', 'step time', 'time', 'saved per s lost', 'host peak', 'fits']),
  ];
  if (result.refused.length > 0) lines.push('', 'not applicable here:', ...result.refused.map((r) => `  ${r.name} (${r.set.join(' ')}): ${r.reason}`));
  // Of the techniques that alone make it fit, the fastest.
  const fitting = result.techniques.filter((t) => t.makesItFit).sort((x, y) => x.stepTime - y.stepTime);
  const alone = fitting[0];
  if (alone) lines.push('', `${alone.name} alone makes it fit${fitting.length > 1 ? `, the fastest of ${fitting.length} that do` : ''}: ${formatBytes(alone.peakHbm)} peak HBM, step time ${formatSeconds(alone.stepTime)}`);
  const c = result.combination;
  if (c) {
    lines.push(
      '',
      c.fits
        ? c.names.length === 1
          ? `combining techniques does no better than ${c.names[0]} alone`
          : `combined in that order, ${c.names.join(' + ')} make it fit: ${formatBytes(c.peakHbm)} peak HBM, step time ${formatSeconds(c.stepTime)} (${c.set.join(' ')})`
        : `no combination of these techniques makes it fit: the closest, ${c.names.join(' + ')}, still peaks at ${formatBytes(c.peakHbm)}; more GPUs, or a layout from dtsim plan`,
    );
  }
  io.stdout(lines.join('\n') + '\n');
  return 0;
}

export function validate(args: ScenarioArgs, io: Io): number {
  const scenario = load(args);
  if (args.json) {
    io.stdout(json(scenario));
    return 0;
  }
  const { cluster, model, parallel, training } = scenario;
  io.stdout(
    `${args.scenario}: valid scenario "${scenario.name}"\n` +
      `  ${cluster.nodes * cluster.gpusPerNode} GPUs: ${cluster.nodes} x ${cluster.gpusPerNode} ${cluster.gpu.name} (${cluster.node.name})\n` +
      `  model ${model.name}: ${describeModel(model)} parameters\n` +
      `  ${formatMesh(meshOf(parallel).sizes(), parallel)}${model.kind === 'evoformer' || model.kind === 'vit' ? '' : `, ${parallel.schedule}, layers per stage ${parallel.layersPerStage.join(',')}`}\n` +
      `  ${training.globalBatch / (training.microBatch * parallel.dp)} micro-batches of ${training.microBatch} per replica, ${training.precision}, recompute ${training.recompute}\n`,
  );
  return 0;
}

export function topology(args: ScenarioArgs, io: Io): number {
  const scenario = load(args);
  const devices = scenario.cluster.nodes * scenario.cluster.gpusPerNode;
  if (devices > MAX_TOPOLOGY_DEVICES) throw new ResourceLimitError(`${scenario.name}: a topology of ${devices} GPUs is beyond the ${MAX_TOPOLOGY_DEVICES} this command draws`);
  const summary = summarizeTopology(buildTopology(scenario.cluster));
  if (args.json) {
    io.stdout(json(summary));
    return 0;
  }
  const lines = [
    `${summary.devices} GPUs on ${summary.nodes} nodes of ${summary.gpusPerNode}`,
    `vertices: ${Object.entries(summary.vertices).map(([k, v]) => `${v} ${k}`).join(', ')}`,
    '',
    table(
      Object.entries(summary.links).map(([type, l]) => [type, String(l.count), l.bandwidthBytesPerSecond.map(formatRate).join(', '), l.latencySeconds.map(formatSeconds).join(', ')]),
      ['link type', 'directed links', 'bandwidth per direction', 'latency per hop'],
    ),
    '',
    'example routes:',
    ...summary.examplePaths.map((p) => `  ${p.from} -> ${p.to}: ${p.hops.join(' > ')} (${p.type}, bottleneck ${formatRate(p.bottleneckBytesPerSecond)} after link efficiency, latency ${formatSeconds(p.latencySeconds)})`),
  ];
  io.stdout(lines.join('\n') + '\n');
  return 0;
}

/** The scenario file's JSON Schema, for editors. */
export async function schema(io: Io): Promise<number> {
  const { scenarioJsonSchema } = await import('../scenario/schema.js');
  io.stdout(json(scenarioJsonSchema()));
  return 0;
}

export function presets(args: { json?: boolean }, io: Io): number {
  const schedules = Object.values(SCHEDULES).map((s) => ({ name: s.name, description: s.description }));
  if (args.json) {
    const models = Object.fromEntries(Object.entries(MODEL_PRESETS).map(([name, m]) => [name, { ...m, parameters: modelParameters({ name, ...m }), modelStateBytes: 16 * modelParameters({ name, ...m }) }]));
    io.stdout(json({ gpus: GPU_PRESETS, nodes: NODE_PRESETS, models, schedules }));
    return 0;
  }
  const lines = [
    'GPUs (cluster.gpu):',
    table(Object.values(GPU_PRESETS).map((g) => ['  ' + g.name, `${(g.flopsPerSecond / 1e12).toFixed(0)} TFLOP/s`, formatBytes(g.memoryBytes), `HBM ${formatRate(g.memoryBandwidthBytesPerSecond)}`, `NVLink ${formatRate(g.nvlinkBandwidthBytesPerSecond)}`])),
    '',
    'nodes (cluster.node):',
    table(Object.values(NODE_PRESETS).map((n) => ['  ' + n.name, `${n.gpusPerNode} x ${n.gpu}`, `${n.nics} x ${formatRate(n.nic.bandwidthBytesPerSecond)} IB`, `PCIe ${formatRate(n.pcie.bandwidthBytesPerSecond)}`, `host ${formatBytes(n.hostMemoryBytes)}`, `NVMe ${formatBytes(n.nvmeBytes)}`])),
    '',
    'models (model.preset):',
    table(
      Object.entries(MODEL_PRESETS).map(([name, m]) => {
        const psi = modelParameters({ name, ...m });
        // Parameters, and the model states of mixed-precision Adam: 16 bytes a parameter (the ZeRO paper's 2 + 2 + 12).
        const size = [psi >= 1e9 ? `${(psi / 1e9).toFixed(2)}B` : `${(psi / 1e6).toFixed(1)}M`, `states ${formatBytes(16 * psi)}`];
        if (m.kind === 'vit') return ['  ' + name, ...size, `${m.layers} blocks`, `channels ${[...new Set(m.stages.map((s) => s.channels))].join('/')}`, `tokens ${m.grid.join('x')}`, `window ${m.window.join('x')}`];
        return m.kind === 'evoformer'
          ? ['  ' + name, ...size, `${m.layers}+${m.extraLayers} blocks`, `c_m ${m.msaChannels}, c_z ${m.pairChannels}`, `${m.residues} residues`, `${m.msaRows} MSA rows`]
          : ['  ' + name, ...size, `${m.layers} layers`, `hidden ${m.hidden}`, `${m.heads} heads`, `seq ${m.seqLength}`];
      }),
    ),
    '',
    'schedules (parallel.schedule):',
    table(schedules.map((s) => ['  ' + s.name, s.description])),
  ];
  io.stdout(lines.join('\n') + '\n');
  return 0;
}

export async function plan(args: { scenario: string; set?: string[]; seed?: number; gpus?: number; objective?: 'time' | 'memory'; top?: number; within?: number; exhaustive?: boolean; 'scenario-out'?: string; html?: string; workers?: number; symmetry?: boolean; json?: boolean }, io: Io, status: StatusLine): Promise<number> {
  if (args['scenario-out'] !== undefined) checkWritable(args['scenario-out'], '--scenario-out');
  if (args.html !== undefined) checkWritable(args.html, '--html');
  checkWorkers(args.workers);
  // --set and --seed vary the scenario that is planned, and the scenario --scenario-out writes.
  const source = sourceWith(readScenarioSource(args.scenario), { set: args.set, seed: args.seed });
  const { result, stopped } = await interruptibly(status, 'plan: candidates simulated', (signal, onProgress) => planStrategies(source, { gpus: args.gpus, objective: args.objective, workers: args.workers, top: args.top, within: args.exhaustive ? Infinity : args.within, symmetry: args.symmetry !== false, signal, onProgress }));
  // Stopped by Ctrl-C: what was simulated so far is still an answer, printed as such, with exit 130.
  if (stopped) io.stderr(`dtsim: plan stopped by Ctrl-C after ${result.simulated} of the candidates; the results below cover those only\n`);
  const code = stopped ? 130 : 0;
  const best = result.ranked[0];
  if (best && args['scenario-out']) writeFileAtomic(args['scenario-out'], scenarioWith(source, best.overrides));
  if (args.json) {
    io.stdout(json(result));
    return code;
  }
  const layout = (c: PlanCandidate) => {
    const o = c.overrides;
    const offloaded = (field: string, what: string) => (o[field] !== undefined && o[field] !== 'none' ? `${what} on ${o[field]}` : '');
    const extras = [o['parallel.sequenceParallel'] ? 'SP' : '', o['parallel.zero'] ? `ZeRO-${o['parallel.zero']}` : '', offloaded('parallel.offload.optimizer', 'optimizer'), offloaded('parallel.offload.params', 'params')].filter(Boolean).join(' ');
    const degree = (axis: string) => Number(o[`parallel.${axis}`] ?? 1);
    const mesh = formatMesh({ tp: degree('tp'), cp: degree('cp'), sp: degree('ulysses'), dap: degree('dap'), pp: degree('pp'), dp: degree('dp') });
    const schedule = o['parallel.schedule'] === undefined ? '-' : `${o['parallel.schedule']}${Number(o['parallel.chunks']) > 1 ? ` x ${o['parallel.chunks']}` : ''}`;
    return [mesh, schedule, String(o['training.microBatch']), String(o['training.recompute']), extras || '-'];
  };
  const header = ['layout', 'schedule', 'micro-batch', 'recompute', 'also', 'step time', 'MFU', 'peak HBM'];
  const rows = (list: PlanCandidate[]) => list.map((c) => [...layout(c), formatSeconds(c.result!.stepTime), percent(c.result!.mfu), formatBytes(c.result!.peakHbm)]);
  const refused = Object.entries(result.refused).sort((a, b) => b[1] - a[1]).map(([field, n]) => `${n} by ${field}`).join(', ');
  const measure = (x: number) => (result.objective === 'time' ? formatSeconds(x) : formatBytes(x));
  const skipped = result.cutoff !== undefined ? `; ${result.skipped} skipped (bound at or past ${measure(result.cutoff)})` : '';
  const summary = `${result.scenario}: ${result.gpus} GPUs, ${result.candidates} candidates; ${Object.values(result.refused).reduce((a, b) => a + b, 0)} refused by the checks${refused ? ` (${refused})` : ''}; ${result.pruned} pruned (states and activations exceed HBM)${skipped}; ${result.simulated} simulated, ${result.fitting} fit in ${formatBytes(result.capacity)}`;
  if (args.html) {
    const { renderPlanHtml } = await import('../report/html.js');
    const front = new Set(result.pareto);
    const label = (c: PlanCandidate) => layout(c).filter((x) => x !== '-').join(', ');
    const labelled = new Set([best, result.pareto[0]]);
    const points = result.evaluated.map((c) => ({ label: label(c), stepTime: c.result!.stepTime, peakHbm: c.result!.peakHbm, fits: c.result!.fits, pareto: front.has(c), labelled: labelled.has(c) }));
    writeFileAtomic(args.html, renderPlanHtml({ title: `dtsim plan: ${result.scenario}`, summary, header, rows: rows(result.ranked.slice(0, args.top ?? 10)), points, plan: result }));
  }
  let text = `${summary}\n\n`;
  if (!best) {
    const near = result.closest.map((c) => [...layout(c), c.result ? formatSeconds(c.result.stepTime) : '-', c.result ? percent(c.result.mfu) : '-', c.result ? formatBytes(c.result.peakHbm) : `>= ${formatBytes(c.statesBound!)} (bound)`]);
    text += 'no candidate fits. The closest:\n\n' + table(near, header) + `\nEach needs more than the ${formatBytes(result.capacity)} of HBM a GPU has: add GPUs (--gpus), or memory-saving techniques the search does not vary (a lighter optimizer, quantised weights, a smaller model: dtsim memory shows what each saves).\n`;
    io.stdout(text);
    return code;
  }
  text += `best by ${result.objective === 'time' ? 'step time' : 'peak HBM'}:\n\n${table(rows(result.ranked.slice(0, args.top ?? 10)), header)}\n\n`;
  const below = result.cutoff !== undefined ? `, below the cut-off of ${measure(result.cutoff)}` : '';
  text += `Pareto front (no other candidate is both faster and smaller${below}):\n\n${table(rows(result.pareto), header)}\n\n`;
  // A value whose candidates were skipped by their bound is at least that far behind; its best simulated, if any, at most.
  const verdict = (d: (typeof result.dimensions)[number]) => {
    const atLeast = d.behindAtLeast !== undefined ? `at least ${percent(Math.max(0, d.behindAtLeast))} behind` : '';
    if (d.best) return d.behind! === 0 ? 'best' : atLeast ? `${atLeast} (${percent(d.behind!)} simulated)` : `${percent(d.behind!)} behind`;
    if (atLeast) return `${atLeast} (skipped)`;
    return d.closestPeakHbm !== undefined ? `none fits (needs at least ${formatBytes(d.closestPeakHbm)})` : 'none simulated';
  };
  const verdicts = result.dimensions.map((d) => [d.field, JSON.stringify(d.value), verdict(d)]);
  text += `each choice's best, against the best:\n\n${table(verdicts, ['field', 'value', 'its best'])}`;
  if (args['scenario-out']) text += `\nthe best written to ${args['scenario-out']}: dtsim run ${args['scenario-out']}\n`;
  io.stdout(text);
  return code;
}

/** --workers: a whole number of threads, 1 or more. */
function checkWorkers(workers: number | undefined): void {
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1)) throw new UsageError(`--workers takes a whole number of threads, 1 or more; got ${workers}`);
}

/**
 * Runs a long search with Ctrl-C and SIGTERM turned into an abort (the work stops between simulations and keeps
 * what it has) and a progress line with the rate and the time left, counted from the first report of progress.
 */
async function interruptibly<T>(status: StatusLine, what: string, work: (signal: AbortSignal, onProgress: (done: number, total: number) => void) => Promise<T>): Promise<{ result: T; stopped: boolean }> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let started = 0n;
  let first = -1;
  const onProgress = (done: number, total: number) => {
    if (first < 0) [first, started] = [done, process.hrtime.bigint()];
    const rate = (done - first) / Math.max(Number(process.hrtime.bigint() - started) / 1e9, 1e-9);
    status.show(`${what} ${done} of ${total}${rate > 0 ? `, ${rate.toFixed(1)}/s, ${formatSeconds((total - done) / rate)} left` : ''}`);
  };
  try {
    const result = await work(controller.signal, onProgress);
    return { result, stopped: controller.signal.aborted };
  } finally {
    status.show('');
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

export async function sweep(args: { grid: string; output: string; shard?: string; shards?: number; workers?: number; symmetry?: boolean; json?: boolean }, io: Io, status: StatusLine): Promise<number> {
  const grid = { ...loadSweep(args.grid), symmetry: args.symmetry !== false };
  const shard = shardFrom(args.shard, args.shards, process.env);
  checkWritable(args.output, '--output');
  checkWorkers(args.workers);
  // Ctrl-C (or SIGTERM) stops between entries: completed lines stay in the file, and a second run resumes.
  const { result: run } = await interruptibly(status, 'sweep: entries done', (signal, onProgress) => runSweep(grid, { output: args.output, shard, workers: args.workers, signal, onProgress }));
  if (!run.completed) {
    io.stderr(`dtsim: stopped: ${run.lines.length} of ${grid.entries.filter((e) => e.index % shard.count === shard.index).length} entries are in ${args.output}; run the same command again to resume\n`);
    return 130;
  }
  io.stdout(args.json ? formatLines(run.lines) : sweepTable(run.lines) + `\n${run.ran} entries simulated, ${run.skipped} already in ${args.output}${shard.count > 1 ? ` (shard ${shard.index} of ${shard.count})` : ''}\n`);
  return 0;
}

export function merge(args: { files: string[]; output?: string; json?: boolean }, io: Io): number {
  if (args.output !== undefined) checkWritable(args.output, '--output');
  const lines = mergeLines(args.files.flatMap((file) => readLines(file)), args.files.join(', '));
  if (lines.length === 0) throw new UsageError(`no sweep lines in ${args.files.join(', ')}`);
  if (args.output) writeFileAtomic(args.output, formatLines(lines));
  io.stdout(args.json ? formatLines(lines) : sweepTable(lines));
  return 0;
}

/** A sweep's lines as a table: the entry, its overrides, and what it gave; why an entry cannot run goes below. */
function sweepTable(lines: SweepLine[]): string {
  const fields = [...new Set(lines.flatMap((l) => Object.keys(l.overrides)))];
  const header = ['entry', ...fields, 'step time', 'MFU', 'bubble', 'exposed comm', 'peak HBM', 'fits'];
  const reasons: string[] = [];
  const rows = lines.map((l) => {
    const values = fields.map((f) => (f in l.overrides ? truncate(JSON.stringify(l.overrides[f]), 30) : ''));
    const r = l.result;
    if (!r) {
      reasons.push(`[${reasons.length + 1}] entry ${l.index}: ${l.error ?? ''}`);
      return [String(l.index), ...values, '-', '-', '-', '-', '-', `cannot run [${reasons.length}]`];
    }
    return [String(l.index), ...values, formatSeconds(r.stepTime), percent(r.mfu), percent(r.bubbleFraction), formatSeconds(r.exposedCommunicationTime), formatBytes(r.peakHbm), r.fits ? 'yes' : 'NO'];
  });
  return table(rows, header) + (reasons.length > 0 ? `\n${reasons.join('\n')}\n` : '');
}

/** The memory timelines to keep: every location for a whole trace, else the traced ranks and those the HTML page draws. */
function memoryToRecord(args: { trace?: string; html?: string }, scenario: Scenario, traced: Set<number> | undefined): boolean | Set<number> {
  if (args.trace !== undefined && traced === undefined) return true;
  const ranks = new Set<number>(args.trace !== undefined ? traced : []);
  if (args.html !== undefined) for (const rank of pipelineRanks(scenario, 0)) ranks.add(rank);
  return ranks.size > 0 ? ranks : false;
}

/** The GPU ranks a trace keeps: --trace-ranks, --trace-pipeline (both: the ranks in both), or all (undefined). */
function traceRanks(args: { 'trace-ranks'?: string; 'trace-pipeline'?: number }, scenario: Scenario): Set<number> | undefined {
  let ranks = args['trace-ranks'] !== undefined ? parseRanks(args['trace-ranks'], scenario.cluster.nodes * scenario.cluster.gpusPerNode) : undefined;
  const replica = args['trace-pipeline'];
  if (replica !== undefined) {
    const { dp } = scenario.parallel;
    if (!Number.isInteger(replica) || replica < 0 || replica >= dp) throw new UsageError(`--trace-pipeline takes a data-parallel replica from 0 to ${dp - 1}; got ${replica}`);
    const pipeline = new Set(pipelineRanks(scenario, replica));
    ranks = ranks ? new Set([...ranks].filter((r) => pipeline.has(r))) : pipeline;
  }
  return ranks;
}

/** Parses "0-7,16,20-23" into a set of ranks. */
export function parseRanks(text: string, devices = Infinity): Set<number> {
  const ranks = new Set<number>();
  for (const part of text.split(',')) {
    const m = part.trim().match(/^(\d+)(?:-(\d+))?$/);
    if (!m) throw new UsageError(`--trace-ranks expects ranks and ranges such as 0-7,16; got ${truncate(JSON.stringify(text))}`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new UsageError(`--trace-ranks: range ${truncate(part)} runs backwards`);
    if (to >= devices) throw new UsageError(`--trace-ranks: rank ${to} is beyond the scenario's ${devices} GPUs (ranks 0 to ${devices - 1})`);
    for (let r = from; r <= to; r++) ranks.add(r);
  }
  return ranks;
}

/** A model's size in the words of its kind, with its parameter count. */
function describeModel(model: ModelSpec): string {
  const psi = modelParameters(model);
  if (model.kind === 'evoformer') return `${model.layers} Evoformer blocks and ${model.extraLayers} extra-MSA blocks, ${model.residues} residues, ${model.msaRows} MSA rows, ${(psi / 1e6).toFixed(1)}M`;
  if (model.kind === 'vit') return `${model.layers} windowed blocks in ${model.stages.length} stages, ${model.grid.join(' x ')} tokens, windows of ${model.window.join(' x ')}, ${(psi / 1e6).toFixed(1)}M`;
  return `${model.layers} layers, hidden ${model.hidden}, ${model.heads} heads, ${(psi / 1e9).toFixed(2)}B`;
}
