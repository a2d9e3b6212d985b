import { CATEGORIES, KIND, LANE, LANES, OP_KINDS, isCommunication } from '../lower/resources.js';
import { VERSION } from '../version.js';
import { AtomicFileWriter } from './atomic.js';
import type { SimulatedStep } from './report.js';

/**
 * Chrome trace (JSON Object format, opens in ui.perfetto.dev and chrome://tracing).
 *
 * One process per GPU, named with its node and (tp, pp, dp) coordinates; one
 * thread per lane (compute, tp, dp, pipeline send/receive); every operation an
 * `X` slice on each lane it held, in microseconds; pipeline transfers joined by
 * flow arrows from sender to receiver; memory per tier as counters stacked by
 * category; one process per node for host memory and NVMe. docs/trace.md tells
 * how to read it.
 */
export interface TraceOptions {
  /** Only these GPU ranks (all when absent). */
  ranks?: ReadonlySet<number>;
}

const COUNTER_NAMES = { hbm: 'HBM bytes', cpu: 'host memory bytes', nvme: 'NVMe bytes' } as const;

export function writeTrace(sim: SimulatedStep, path: string, options: TraceOptions = {}): { events: number } {
  const writer = new AtomicFileWriter(path);
  try {
    const events = emitTrace(sim, (text) => writer.write(text), options);
    writer.commit();
    return { events };
  } catch (error) {
    writer.abort();
    throw error;
  }
}

/** Trace events written between two returns to the event loop, where a Ctrl-C or SIGTERM can act. */
const PAUSE_EVENTS = 50_000;

/**
 * writeTrace, returning to the event loop every few tens of thousands of events, so that a signal during a write of
 * hundreds of megabytes takes effect at once (removing the temporary file) rather than after the write.
 */
export async function writeTraceInterruptibly(sim: SimulatedStep, path: string, options: TraceOptions = {}): Promise<{ events: number }> {
  const writer = new AtomicFileWriter(path);
  try {
    const writing = traceWriting(sim, (text) => writer.write(text), options);
    let step = writing.next();
    for (; !step.done; step = writing.next()) await new Promise((resolve) => setImmediate(resolve));
    writer.commit();
    return { events: step.value };
  } catch (error) {
    writer.abort();
    throw error;
  }
}

/** Streams the trace as text chunks; returns the number of trace events. */
export function emitTrace(sim: SimulatedStep, write: (text: string) => void, options: TraceOptions = {}): number {
  const writing = traceWriting(sim, write, options);
  for (let step = writing.next(); ; step = writing.next()) if (step.done) return step.value;
}

/** Writes the trace through `write`, pausing (yielding) every PAUSE_EVENTS events; returns the number of events. */
function* traceWriting(sim: SimulatedStep, write: (text: string) => void, options: TraceOptions): Generator<void, number> {
  const { plan, execution, memory, scenario } = sim;
  const { resources: layout, graph, mesh } = plan;
  const included = (device: number) => !options.ranks || options.ranks.has(device);
  const hostPid = (node: number) => layout.devices + 1 + node;
  const us = (ns: number) => ns / 1000;
  let count = 0;
  const emit = (event: object) => write(`${count++ === 0 ? '\n' : ',\n'}${JSON.stringify(event)}`);
  // The loops pause every PAUSE_EVENTS events, where an asynchronous caller may return to the event loop.
  let pauseAt = PAUSE_EVENTS;
  const pause = () => {
    if (count < pauseAt) return false;
    pauseAt = count + PAUSE_EVENTS;
    return true;
  };

  write(
    `{"displayTimeUnit":"ms","otherData":${JSON.stringify({
      simulator: 'dtsim',
      version: VERSION,
      scenario: scenario.name,
      seed: scenario.seed,
      stepTimeSeconds: sim.report.stepTime,
      timeUnit: 'ts and dur in microseconds; counters in bytes',
    })},"traceEvents":[`,
  );

  // The model-parallel lane carries the blocking collectives of every axis but pp and dp: named after those in use.
  const modelAxes = mesh.axes.filter((a) => a !== 'pp' && a !== 'dp' && mesh.sizeOf(a) > 1);
  const modelLane = modelAxes.length > 0 ? modelAxes.join('/') : 'tp';
  const prefixes: Record<number, string> = { [LANE.tp]: `${modelLane.toUpperCase()} `, [LANE.dp]: 'DP ' };
  const nodes = new Set<number>();
  // tp first, then the other axes in use, then pp and dp, as process names have always read.
  const placeAxes = ['tp' as const, ...mesh.axes.filter((a) => a !== 'tp' && a !== 'pp' && a !== 'dp'), 'pp' as const, 'dp' as const];
  for (let d = 0; d < layout.devices; d++) {
    if (!included(d)) continue;
    const node = layout.nodeOf(d);
    nodes.add(node);
    const place = placeAxes.map((axis) => `${axis} ${mesh.coordinate(d, axis)}`).join(', ');
    emit({ ph: 'M', name: 'process_name', pid: d + 1, args: { name: `GPU ${d} (node ${node}, ${place})` } });
    emit({ ph: 'M', name: 'process_sort_index', pid: d + 1, args: { sort_index: d } });
    for (const [i, lane] of LANES.entries()) {
      emit({ ph: 'M', name: 'thread_name', pid: d + 1, tid: i + 1, args: { name: i === LANE.tp ? modelLane : lane } });
      emit({ ph: 'M', name: 'thread_sort_index', pid: d + 1, tid: i + 1, args: { sort_index: i } });
    }
    if (pause()) yield;
  }
  for (const node of [...nodes].sort((a, b) => a - b)) {
    emit({ ph: 'M', name: 'process_name', pid: hostPid(node), args: { name: `node ${node} host memory and NVMe` } });
    emit({ ph: 'M', name: 'process_sort_index', pid: hostPid(node), args: { sort_index: layout.devices + node } });
  }

  const lanesPerDevice = LANES.length;
  // The hot loop's body is a plain function: V8 optimises it better than code inside a generator.
  const operationEvents = (op: number) => {
    const start = execution.startNs[op];
    const end = execution.endNs[op];
    const { labels } = plan;
    const label = graph.label[op];
    const kind = labels.kind[label];
    const microBatch = labels.microBatch[label];
    const args: Record<string, unknown> = { op, kind: OP_KINDS[kind] };
    if (labels.stage[label] >= 0) args.stage = labels.stage[label];
    if (microBatch >= 0) args.microBatch = microBatch;
    if (labels.chunk[label] >= 0) args.chunk = labels.chunk[label];
    if (labels.layers[label] > 0) args.layers = labels.layers[label];
    if (labels.flops[label] > 0) args.flops = labels.flops[label];
    const ringStep = labels.ringStep[label];
    if (ringStep >= 0) args.ringStep = ringStep;
    let bytes = 0;
    for (let i = graph.flowStart[op]; i < graph.flowStart[op + 1]; i++) bytes += graph.flowSizes.bytes[graph.flowSize[i]];
    if (bytes > 0) args.bytes = bytes;
    const lanes: number[] = [];
    for (let i = graph.lanesOf.start[op]; i < graph.lanesOf.start[op + 1]; i++) lanes.push(graph.lanesOf.items[i]);
    if (lanes.length > 1) args.devices = lanes.map((l) => Math.floor(l / lanesPerDevice));
    const cat = isCommunication(kind) ? 'communication' : 'compute';
    for (const lane of lanes) {
      const device = Math.floor(lane / lanesPerDevice);
      if (!included(device)) continue;
      const laneKind = lane % lanesPerDevice;
      emit({ name: sliceName(kind, microBatch, laneKind, prefixes) + (ringStep >= 0 ? ` attention ${ringStep + 1}` : ''), cat, ph: 'X', pid: device + 1, tid: laneKind + 1, ts: us(start), dur: us(end - start), args });
    }
    if ((kind === KIND.p2p || kind === KIND.ring) && lanes.length === 2) {
      const [from, to] = lanes.map((l) => Math.floor(l / lanesPerDevice));
      if (included(from) && included(to)) {
        const name = OP_KINDS[kind];
        emit({ name, cat: 'flow', ph: 's', id: op, pid: from + 1, tid: (lanes[0] % lanesPerDevice) + 1, ts: us(start) });
        emit({ name, cat: 'flow', ph: 'f', bp: 'e', id: op, pid: to + 1, tid: (lanes[1] % lanesPerDevice) + 1, ts: us(start) });
      }
    }
  };
  for (let op = 0; op < graph.count; op++) {
    operationEvents(op);
    if (pause()) yield;
  }

  // Memory counters, stacked by category.
  const categories = CATEGORIES.length;
  const times = memory.sampleTimeNs;
  const locations = memory.sampleLocation;
  const values = memory.sampleValues;
  for (let i = 0; i < memory.sampleTimeNs.length; i++) {
    const location = locations.get(i);
    const tier = layout.tierOf(location);
    let pid: number;
    if (tier === 'hbm') {
      if (!included(location)) continue;
      pid = location + 1;
    } else {
      const node = layout.nodeOfLocation(location);
      if (!nodes.has(node)) continue;
      pid = hostPid(node);
    }
    const args: Record<string, number> = {};
    for (let c = 0; c < categories; c++) args[CATEGORIES[c]] = Math.max(0, values.get(i * categories + c));
    emit({ name: COUNTER_NAMES[tier], ph: 'C', pid, ts: us(times.get(i)), args });
    if (pause()) yield;
  }

  write('\n]}\n');
  return count;
  return count;
}

function sliceName(kind: number, microBatch: number, lane: number, prefixes: Record<number, string>): string {
  const mb = microBatch >= 0 ? ` mb${microBatch}` : '';
  switch (OP_KINDS[kind]) {
    case 'forward':
      return `F${mb}`;
    case 'backward':
      return `B${mb}`;
    case 'inputGrad':
      return `B (input grad)${mb}`;
    case 'weightGrad':
      return `W${mb}`;
    case 'recompute':
      return `R (recomputed forward)${mb}`;
    case 'optimizer':
      return 'optimizer step';
    case 'p2p':
      return `p2p${mb}`;
    case 'offload':
      return `offload${mb}`;
    default:
      return `${prefixes[lane] ?? ''}${OP_KINDS[kind]}${mb}`;
  }
}
