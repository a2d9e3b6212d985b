import { CATEGORIES, LANE, LANES, OP_KINDS, isCommunication } from '../lower/resources.js';
import type { SimulatedStep } from './report.js';

/**
 * What the HTML report draws, drawn from a simulated step as plain data (seconds and bytes): one data-parallel
 * replica's pipeline as bars, one device per stage; each stage's fullest device's memory over time by category; and
 * exposed communication per device, or per stage where there are too many devices to show one bar each. Large steps
 * are aggregated here, so that the page stays small at any scale.
 */
export interface TimelineBar {
  /** Row: `stage s` (compute lane) or `stage s comm, host` (every other lane of the device). */
  row: string;
  start: number;
  end: number;
  kind: string;
  /** -1 when the operation belongs to no micro-batch (the optimizer step, gradient reductions). */
  microBatch: number;
}

export interface MemoryPoint {
  /** Which chart: 0 to stages - 1 for each stage's HBM, then host memory and NVMe of its node where they are used. */
  series: number;
  where: string;
  /** Capacity of the location, bytes. */
  capacity: number;
  time: number;
  /** Bytes by category at `time`. */
  params: number;
  grads: number;
  optimizer: number;
  activations: number;
  buffers: number;
}

export interface ExposedBar {
  /** `GPU r` or `stage s`. */
  label: string;
  /** Seconds; per stage, the mean over its devices, with the least and the most. */
  exposed: number;
  min: number;
  max: number;
}

export interface HtmlData {
  timeline: TimelineBar[];
  /** The rank drawn for each stage on the timeline. */
  timelineDevices: number[];
  memory: MemoryPoint[];
  /** The device each stage's memory chart shows (its fullest HBM among the recorded ranks). */
  memoryDevices: number[];
  exposed: ExposedBar[];
  /** Whether exposed communication is per device (false: per stage). */
  exposedPerDevice: boolean;
}

/** Most memory samples kept per device; more are merged, each bucket keeping its fullest sample, so peaks stay. */
export const MEMORY_POINTS = 400;
/** Most devices shown one bar each for exposed communication; more are summarised per stage. */
export const EXPOSED_DEVICES = 64;

export function htmlData(sim: SimulatedStep): HtmlData {
  const { plan, execution, report, memory } = sim;
  const { graph, resources, mesh } = plan;
  const ns = (t: number) => t / 1e9;
  const timelineDevices = plan.stages.map((s) => mesh.rank({ pp: s.stage }));

  const timeline: TimelineBar[] = [];
  for (const device of timelineDevices) {
    const stage = mesh.coordinate(device, 'pp');
    for (let laneKind = 0; laneKind < LANES.length; laneKind++) {
      const lane = resources.lane(device, laneKind);
      const row = laneKind === LANE.compute ? `stage ${stage}` : `stage ${stage} comm, host`;
      for (let i = graph.program.start[lane]; i < graph.program.start[lane + 1]; i++) {
        const op = graph.program.items[i];
        const label = graph.label[op];
        const kind = plan.labels.kind[label];
        // A compute lane also carries the host's share of some passes; only the device's own work is drawn on it.
        if (laneKind === LANE.compute && isCommunication(kind)) continue;
        timeline.push({ row, start: ns(execution.startNs[op]), end: ns(execution.endNs[op]), kind: OP_KINDS[kind], microBatch: plan.labels.microBatch[label] });
      }
    }
  }

  // Each stage's fullest device of data-parallel replica 0 (simulate records those: pipelineRanks), and its HBM timeline.
  const memoryDevices: number[] = [];
  for (const s of plan.stages) {
    let best = -1;
    for (const d of report.devices) {
      if (d.coordinates.dp !== 0 || d.coordinates.pp !== s.stage) continue;
      if (best < 0 || d.peakMemory.hbm > report.devices[best].peakMemory.hbm) best = d.rank;
    }
    memoryDevices.push(best);
  }
  // The charts: each stage's HBM, then the host memory and NVMe of the first stage's node when the step uses them.
  const series = memoryDevices.map((device, stage) => ({ where: `stage ${stage} (GPU ${device})`, location: resources.hbm(device), capacity: report.memory.capacity.hbm }));
  const node = resources.nodeOf(memoryDevices[0]);
  if (report.memory.peak.cpu > 0) series.push({ where: `host memory (node ${node})`, location: resources.cpu(node), capacity: report.memory.capacity.cpu });
  if (report.memory.peak.nvme > 0) series.push({ where: `NVMe (node ${node})`, location: resources.nvme(node), capacity: report.memory.capacity.nvme });
  const samples = new Map<number, number[]>();
  const wanted = new Set(series.map((x) => x.location));
  for (let i = 0; i < memory.sampleTimeNs.length; i++) {
    const location = memory.sampleLocation.get(i);
    if (!wanted.has(location)) continue;
    let list = samples.get(location);
    if (!list) samples.set(location, (list = []));
    list.push(i);
  }
  const categories = CATEGORIES.length;
  const point = (index: number, i: number, time: number): MemoryPoint => {
    const v = (c: number) => Math.max(0, memory.sampleValues.get(i * categories + c));
    const { where, capacity } = series[index];
    return { series: index, where, capacity, time, params: v(0), grads: v(1), optimizer: v(2), activations: v(3), buffers: v(4) };
  };
  const total = (i: number) => {
    let sum = 0;
    for (let c = 0; c < categories; c++) sum += memory.sampleValues.get(i * categories + c);
    return sum;
  };
  const memoryPoints: MemoryPoint[] = [];
  // Several changes at one instant: the fullest state is drawn at that instant (the report's peak counts it), and
  // the last, which holds until the next change, a millionth of the step later when there is room before it.
  const nudge = execution.makespanNs * 1e-6;
  series.forEach(({ location }, index) => {
    const list = samples.get(location) ?? [];
    const instants: { i: number; ns: number }[] = [];
    for (let k = 0; k < list.length; ) {
      const ns0 = memory.sampleTimeNs.get(list[k]);
      let fullest = list[k];
      let end = k;
      while (end < list.length && memory.sampleTimeNs.get(list[end]) === ns0) {
        if (total(list[end]) > total(fullest)) fullest = list[end];
        end++;
      }
      const last = list[end - 1];
      instants.push({ i: fullest, ns: ns0 });
      const next = end < list.length ? memory.sampleTimeNs.get(list[end]) : Infinity;
      if (last !== fullest && ns0 + nudge < next) instants.push({ i: last, ns: ns0 + nudge });
      k = end;
    }
    if (instants.length <= MEMORY_POINTS) {
      for (const { i, ns: at } of instants) memoryPoints.push(point(index, i, ns(at)));
    } else {
      // Buckets of equal time; each keeps its fullest state, drawn at the bucket's first instant, so peaks stay.
      const width = execution.makespanNs / MEMORY_POINTS;
      let bucket = -1;
      let best = -1;
      let at = 0;
      const flush = () => best >= 0 && memoryPoints.push(point(index, best, ns(at)));
      for (const { i, ns: t } of instants) {
        const b = Math.min(MEMORY_POINTS - 1, Math.floor(t / width));
        if (b !== bucket) {
          flush();
          bucket = b;
          best = i;
          at = t;
        } else if (total(i) > total(best)) best = i;
      }
      flush();
    }
    // The last value holds to the end of the step.
    const last = memoryPoints[memoryPoints.length - 1];
    if (last && last.series === index) memoryPoints.push({ ...last, time: ns(execution.makespanNs) });
  });

  const exposedPerDevice = report.devices.length <= EXPOSED_DEVICES;
  const exposed: ExposedBar[] = exposedPerDevice
    ? report.devices.map((d) => ({ label: `GPU ${d.rank}`, exposed: d.exposedCommunicationTime, min: d.exposedCommunicationTime, max: d.exposedCommunicationTime }))
    : plan.stages.map((s) => {
        const times = report.devices.filter((d) => d.coordinates.pp === s.stage).map((d) => d.exposedCommunicationTime);
        return { label: `stage ${s.stage}`, exposed: times.reduce((a, b) => a + b, 0) / times.length, min: Math.min(...times), max: Math.max(...times) };
      });
  return { timeline, timelineDevices, memory: memoryPoints, memoryDevices, exposed, exposedPerDevice };
}
