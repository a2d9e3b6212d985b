import { formatBytes, formatCount, formatMesh, formatSeconds, percent, table } from './format.js';
import type { Report } from './report.js';

const KIND_NAMES: Record<string, string> = { p2p: 'p2p', allReduce: 'all-reduce', reduceScatter: 'reduce-scatter', allGather: 'all-gather', allToAll: 'all-to-all', broadcast: 'broadcast', offload: 'offload', ring: 'ring' };

/** The human summary `dtsim run` prints: from the report alone. */
export function renderSummary(report: Report): string {
  const { cluster, model } = report;
  const p = report.parallel;
  const nonZero = (record: Record<string, number>, names: Record<string, string> = {}) =>
    Object.entries(record)
      .filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${names[k] ?? k} ${formatBytes(v)}`)
      .join(', ') || 'none';
  const worst = report.devices[report.memory.worstDevice];
  // The group ZeRO shards over: every rank of a stage that holds the same weights (data, sequence and context parallel).
  const replicas = Object.entries(p.mesh).reduce((n, [axis, size]) => (axis === 'tp' || axis === 'pp' ? n : n * (size ?? 1)), 1);
  const b = worst.memoryBreakdown;
  const lines = [
    `dtsim ${report.version}: ${report.name} (seed ${report.seed})`,
    `${cluster.devices} GPUs: ${cluster.nodes} x ${cluster.gpusPerNode} ${cluster.gpu} (${cluster.node}); ${model.name}, ${formatCount(model.parameters)} parameters, ${modelShape(model)}`,
    `parallel: ${formatMesh(p.mesh, p)}, ${p.schedule}, ${p.microBatches} micro-batches of ${p.microBatch} per replica, global batch ${p.globalBatch}`,
    '',
    table([
      ['step time', formatSeconds(report.stepTime)],
      ['throughput', throughputText(report, formatCount)],
      // Without a pipeline, compute waits on collectives, not on other stages: no pipeline bubble to speak of.
      [p.pp > 1 ? 'bubble' : 'idle compute', `${percent(report.bubbleFraction)} of the step idle on compute (mean over GPUs)`],
      ['communication', `${formatBytes(report.communication.bytes)} sent`],
      ['  by kind', byKindAndLink(report)],
      ['  by link type', nonZero(report.communication.byLinkType)],
      ['  exposed', `${formatSeconds(report.exposedCommunicationTime)} per GPU of communication and offloading not hidden behind compute (mean)`],
      ['memory', report.memory.fits ? 'fits' : `DOES NOT FIT: ${report.memory.overflows.length} location(s) over capacity`],
      ['  worst HBM', `GPU ${worst.rank} (stage ${worst.coordinates.pp}): ${formatBytes(worst.peakMemory.hbm)} of ${formatBytes(report.memory.capacity.hbm)}`],
      ['  at its peak', `params ${formatBytes(b.params)}, grads ${formatBytes(b.grads)}, optimizer ${formatBytes(b.optimizer)}, activations ${formatBytes(b.activations)}, buffers ${formatBytes(b.buffers)}`],
      ['  host / NVMe', `${formatBytes(report.memory.peak.cpu)} of ${formatBytes(report.memory.capacity.cpu)} / ${formatBytes(report.memory.peak.nvme)} of ${formatBytes(report.memory.capacity.nvme)} per node`],
      ...(['cpu', 'nvme'] as const)
        .filter((tier) => report.memory.peak[tier] > 0)
        .map((tier) => {
          const t = report.memory.breakdown[tier];
          return [`  on ${tier === 'cpu' ? 'host' : 'NVMe'}`, `params ${formatBytes(t.params)}, grads ${formatBytes(t.grads)}, optimizer ${formatBytes(t.optimizer)}, buffers ${formatBytes(t.buffers)}`];
        }),
    ]),
  ];
  for (const o of report.memory.overflows.slice(0, 5)) {
    const where = o.tier === 'hbm' ? `GPU ${o.device} HBM` : `node ${o.node} ${o.tier}`;
    lines.push(`  over capacity: ${where} by ${formatBytes(o.excess)} (capacity ${formatBytes(o.capacity)}), first at ${formatSeconds(o.firstAt)}`);
  }
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  const mirrored = report.simulation.replicas;
  if (mirrored) lines.push(`simulated ${mirrored.simulated} of ${mirrored.of} data-parallel replicas; the others mirror them exactly (the replica symmetry)`);
  lines.push('');
  lines.push(
    table(
      report.stages.map((s) => [
        String(s.stage),
        String(s.layers),
        // ZeRO-3 keeps a shard of each stage's parameters on a GPU between the gathers.
        p.zero === 3 ? `${formatCount(s.parametersPerDevice)} (${formatCount(s.parametersPerDevice / replicas)} held)` : formatCount(s.parametersPerDevice),
        formatBytes(s.peakActivations),
        formatBytes(s.peakHbm),
        percent(s.bubbleFraction),
      ]),
      ['stage', 'layers', 'params/GPU', 'peak activations', 'peak HBM', p.pp > 1 ? 'bubble' : 'idle'],
    ),
  );
  return lines.join('\n') + '\n';
}

/** Each kind of communication by bytes, with the link types it crossed: "ring 320 GiB over infiniband". */
function byKindAndLink(report: Report): string {
  const { byKind, byKindAndLinkType } = report.communication;
  const kinds = Object.entries(byKind)
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]);
  if (kinds.length === 0) return 'none';
  return kinds
    .map(([kind, bytes]) => {
      const links = Object.entries(byKindAndLinkType[kind as keyof typeof byKind])
        .filter(([, v]) => v > 0)
        .sort((a, b) => b[1] - a[1]);
      const over = links.length === 1 ? ` over ${links[0][0]}` : ` (${links.map(([link, v]) => `${link} ${formatBytes(v)}`).join(', ')})`;
      return `${KIND_NAMES[kind] ?? kind} ${formatBytes(bytes)}${links.length === 0 ? '' : over}`;
    })
    .join(', ');
}

/** The model's size in the words of its kind: a sequence length, or an Evoformer's residues, MSA rows and recycles. */
export function modelShape(model: Report['model']): string {
  if (model.kind === 'vit') return `${model.grid.join(' x ')} tokens, windows of ${model.window.join(' x ')}`;
  return model.kind === 'evoformer' ? `${model.residues} residues, ${model.msaRows} MSA rows, ${model.recycles} recycles` : `sequence ${model.seqLength}`;
}

/** Throughput as a line: tokens per second for a model of tokens, proteins per second for an Evoformer, samples (states of the globe) for a vision transformer. */
export function throughputText(report: Report, count: (n: number) => string): string {
  const t = report.throughput;
  const rate = t.tokensPerSecond !== undefined ? `${count(t.tokensPerSecond)} tokens/s` : `${t.samplesPerSecond.toPrecision(3)} ${report.model.kind === 'vit' ? 'samples' : 'proteins'}/s`;
  return `${rate}, ${t.tflopsPerDevice.toFixed(1)} TFLOP/s per GPU, MFU ${percent(t.mfu)} (HFU ${percent(t.hfu)})`;
}
