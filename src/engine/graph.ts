import { buildCsr, type Csr, FloatList, IntList } from './growable.js';

/**
 * The operation graph of one training step, stored as columns of typed arrays so
 * that a step of a 16,384-GPU cluster (millions of operations) stays compact.
 *
 * An operation declares everything the executor needs, and the executor never
 * asks what kind of operation it is:
 * - `durationNs`: time it occupies its lanes when it moves no bytes (compute);
 * - `latencyNs`: a fixed delay before its flows start (link and algorithm latency);
 * - flows: (source vertex, destination vertex, bytes) moved over the network;
 *   the operation ends when its last flow ends (and not before `durationNs`);
 * - lanes: serial resources it holds from start to end; on each lane, operations
 *   run in the order they were assigned to it (a CUDA stream's program order);
 * - dependencies: operations that must end before it starts;
 * - memory effects: bytes allocated (positive) or freed (negative) in a category
 *   of a memory location, at its start or at its end.
 *
 * The remaining columns (`kind`, `device`, `stage`, ...) are labels for reports and
 * traces; their meaning belongs to the layer that built the graph.
 */
export interface OperationGraph {
  readonly count: number;
  readonly laneCount: number;
  readonly durationNs: Float64Array;
  readonly latencyNs: Float64Array;
  readonly kind: Uint8Array;
  readonly device: Int32Array;
  readonly stage: Int16Array;
  readonly microBatch: Int32Array;
  readonly chunk: Int16Array;
  readonly layers: Int32Array;
  readonly flops: Float64Array;
  readonly bytes: Float64Array;
  /** Operations each operation waits for. */
  readonly deps: Csr;
  /** Operations that wait for each operation. */
  readonly dependents: Csr;
  /** Lanes each operation holds. */
  readonly lanesOf: Csr;
  /** Each lane's operations in program order. */
  readonly program: Csr;
  /** Flows per operation: index ranges into the flow columns. */
  readonly flowStart: Int32Array;
  readonly flowSource: Int32Array;
  readonly flowTarget: Int32Array;
  readonly flowBytes: Float64Array;
  /** 1: the flow moves over the network and the operation waits for it; 0: counted only (its time is in the duration). */
  readonly flowTimed: Uint8Array;
  /** Memory effects per operation: index ranges into the memory columns. */
  readonly memoryStart: Int32Array;
  readonly memoryLocation: Int32Array;
  readonly memoryCategory: Uint8Array;
  readonly memoryBytes: Float64Array;
  /** 0: applied when the operation starts; 1: when it ends. */
  readonly memoryAtEnd: Uint8Array;
}

export interface OperationLabels {
  kind: number;
  device: number;
  stage?: number;
  microBatch?: number;
  chunk?: number;
  layers?: number;
  flops?: number;
  bytes?: number;
}

export const AT_START = 0;
export const AT_END = 1;

/** Collects operations in any order and freezes them into an `OperationGraph`. */
export class OperationGraphBuilder {
  private readonly durations = new FloatList();
  private readonly latencies = new FloatList();
  private readonly kinds = new IntList();
  private readonly devices = new IntList();
  private readonly stages = new IntList();
  private readonly microBatches = new IntList();
  private readonly chunks = new IntList();
  private readonly layerCounts = new IntList();
  private readonly flopCounts = new FloatList();
  private readonly byteCounts = new FloatList();
  private readonly depFrom = new IntList();
  private readonly depTo = new IntList();
  private readonly laneOp = new IntList();
  private readonly laneId = new IntList();
  private readonly flowOp = new IntList();
  private readonly flowSrc = new IntList();
  private readonly flowDst = new IntList();
  private readonly flowSize = new FloatList();
  private readonly flowIsTimed = new IntList();
  private readonly memOp = new IntList();
  private readonly memLoc = new IntList();
  private readonly memCat = new IntList();
  private readonly memSize = new FloatList();
  private readonly memWhen = new IntList();

  constructor(readonly laneCount: number) {}

  get count(): number {
    return this.durations.length;
  }

  /** Adds an operation holding `lanes` (appended to each lane's program) and returns its id. */
  add(labels: OperationLabels, durationNs: number, lanes: readonly number[], latencyNs = 0): number {
    const id = this.durations.push(durationNs);
    this.latencies.push(latencyNs);
    this.kinds.push(labels.kind);
    this.devices.push(labels.device);
    this.stages.push(labels.stage ?? -1);
    this.microBatches.push(labels.microBatch ?? -1);
    this.chunks.push(labels.chunk ?? -1);
    this.layerCounts.push(labels.layers ?? 0);
    this.flopCounts.push(labels.flops ?? 0);
    this.byteCounts.push(labels.bytes ?? 0);
    for (const lane of lanes) {
      if (lane < 0 || lane >= this.laneCount) throw new RangeError(`lane ${lane} out of range`);
      this.laneOp.push(id);
      this.laneId.push(lane);
    }
    return id;
  }

  /** `op` may not start before `dependency` has ended. */
  dependOn(op: number, dependency: number): void {
    this.depFrom.push(dependency);
    this.depTo.push(op);
  }

  /** Moves `bytes` from one vertex to another as part of `op`; untimed flows are only counted. */
  flow(op: number, sourceVertex: number, targetVertex: number, bytes: number, timed = true): void {
    if (bytes <= 0 || sourceVertex === targetVertex) return;
    this.flowOp.push(op);
    this.flowSrc.push(sourceVertex);
    this.flowDst.push(targetVertex);
    this.flowSize.push(bytes);
    this.flowIsTimed.push(timed ? 1 : 0);
  }

  /** Allocates (bytes > 0) or frees (bytes < 0) memory when `op` starts or ends. */
  memory(op: number, location: number, category: number, bytes: number, when: typeof AT_START | typeof AT_END): void {
    if (bytes === 0) return;
    this.memOp.push(op);
    this.memLoc.push(location);
    this.memCat.push(category);
    this.memSize.push(bytes);
    this.memWhen.push(when);
  }

  build(): OperationGraph {
    const n = this.count;
    const depFrom = this.depFrom.toArray();
    const depTo = this.depTo.toArray();
    const laneOp = this.laneOp.toArray();
    const laneId = this.laneId.toArray();
    const deps = buildCsr(n, depTo, depFrom, depFrom.length);
    const dependents = buildCsr(n, depFrom, depTo, depFrom.length);
    const lanesOf = buildCsr(n, laneOp, laneId, laneOp.length);
    const program = buildCsr(this.laneCount, laneId, laneOp, laneOp.length);

    // Flows and memory effects were added in any order; group them by operation.
    const flows = buildCsr(n, this.flowOp.toArray(), rangeArray(this.flowOp.length), this.flowOp.length);
    const memory = buildCsr(n, this.memOp.toArray(), rangeArray(this.memOp.length), this.memOp.length);
    const pick = <T extends Int32Array | Float64Array | Uint8Array>(list: IntList | FloatList, order: Int32Array, out: T): T => {
      for (let i = 0; i < order.length; i++) out[i] = list.get(order[i]);
      return out;
    };
    const flowCount = flows.items.length;
    const memoryCount = memory.items.length;

    return {
      count: n,
      laneCount: this.laneCount,
      durationNs: this.durations.toArray(),
      latencyNs: this.latencies.toArray(),
      kind: this.kinds.toArray(Uint8Array),
      device: this.devices.toArray(),
      stage: this.stages.toArray(Int16Array),
      microBatch: this.microBatches.toArray(),
      chunk: this.chunks.toArray(Int16Array),
      layers: this.layerCounts.toArray(),
      flops: this.flopCounts.toArray(),
      bytes: this.byteCounts.toArray(),
      deps,
      dependents,
      lanesOf,
      program,
      flowStart: flows.start,
      flowSource: pick(this.flowSrc, flows.items, new Int32Array(flowCount)),
      flowTarget: pick(this.flowDst, flows.items, new Int32Array(flowCount)),
      flowBytes: pick(this.flowSize, flows.items, new Float64Array(flowCount)),
      flowTimed: pick(this.flowIsTimed, flows.items, new Uint8Array(flowCount)),
      memoryStart: memory.start,
      memoryLocation: pick(this.memLoc, memory.items, new Int32Array(memoryCount)),
      memoryCategory: pick(this.memCat, memory.items, new Uint8Array(memoryCount)),
      memoryBytes: pick(this.memSize, memory.items, new Float64Array(memoryCount)),
      memoryAtEnd: pick(this.memWhen, memory.items, new Uint8Array(memoryCount)),
    };
  }
}

function rangeArray(n: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}
