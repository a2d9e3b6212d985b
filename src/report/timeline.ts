import { KIND, LANE } from '../lower/resources.js';
import type { SimulatedStep } from './report.js';

/**
 * A text rendering of the compute lanes of one pipeline (tensor- and
 * data-parallel rank 0), one row per stage: what each GPU computes over the
 * step, for terminals and docs.
 *
 * Each pass is drawn from its start to its end: a letter for its kind (F
 * forward, B backward or input gradients, W weight gradients, O optimizer step;
 * lower case for a device's second and later chunks), then its micro-batch
 * number as far as it fits, then dashes; `.` is idle.
 */
export interface TimelineOptions {
  /** Most characters per row; the time per character grows to fit. */
  maxWidth?: number;
}

export function renderTimeline(sim: SimulatedStep, options: TimelineOptions = {}): string {
  const { plan, execution } = sim;
  const { graph, resources } = plan;
  const maxWidth = options.maxWidth ?? 120;
  const step = execution.makespanNs;
  const devices = plan.stages.map((s) => plan.mesh.rank({ pp: s.stage }));

  // One character per quantum: half the shortest compute pass, so that labels fit, or coarser when the row would be too wide.
  let shortest = Infinity;
  for (const device of devices) {
    const lane = resources.lane(device, LANE.compute);
    for (let i = graph.program.start[lane]; i < graph.program.start[lane + 1]; i++) {
      const op = graph.program.items[i];
      const d = execution.endNs[op] - execution.startNs[op];
      if (d > 0) shortest = Math.min(shortest, d);
    }
  }
  const quantum = Math.max(shortest / 2, step / maxWidth, 1);
  const width = Math.ceil(step / quantum);

  const rows = devices.map((device, stage) => {
    const row = Array.from({ length: width }, () => '.');
    const lane = resources.lane(device, LANE.compute);
    for (let i = graph.program.start[lane]; i < graph.program.start[lane + 1]; i++) {
      const op = graph.program.items[i];
      const from = Math.round(execution.startNs[op] / quantum);
      const to = Math.max(from + 1, Math.round(execution.endNs[op] / quantum));
      const { kind, chunk, microBatch } = plan.labels;
      const at = graph.label[op];
      let letter = kind[at] === KIND.forward ? 'F' : kind[at] === KIND.weightGrad ? 'W' : kind[at] === KIND.recompute ? 'R' : kind[at] === KIND.optimizer ? 'O' : 'B';
      if (chunk[at] > 0) letter = letter.toLowerCase();
      const label = kind[at] === KIND.optimizer ? letter : `${letter}${microBatch[at]}`;
      for (let c = from; c < Math.min(to, width); c++) row[c] = c - from < label.length && to - from >= label.length ? label[c - from] : c === from ? letter : '-';
    }
    return `stage ${String(stage).padStart(2)} |${row.join('')}|`;
  });
  const scale = quantum >= 1e6 ? `${+(quantum / 1e6).toFixed(3)} ms` : `${+(quantum / 1e3).toFixed(3)} us`;
  return `${rows.join('\n')}\none character = ${scale}; F forward, R recomputed forward, B backward (input gradients when split), W weight gradients, O optimizer; lower case: second chunk\n`;
}
