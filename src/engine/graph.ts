import { buildCsr, transposeCsr, TypedList, type Csr } from './growable.js';

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
  readonly layers: Int16Array;
  readonly flops: Float64Array;
  /** Operations each operation waits for (built on first use: the executor counts them from `dependents`). */
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
  /**
   * Memory effects per operation, in the order they were added: the first effect of each operation (-1 for none)
   * and the next effect of the same operation after each effect (-1 after the last), indices into the memory columns.
   */
  readonly memoryFirst: Int32Array;
  readonly memoryNext: Int32Array;
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
}

export const AT_START = 0;
export const AT_END = 1;

/** Collects operations in any order and freezes them into an `OperationGraph`. */
export class OperationGraphBuilder {
  private readonly durations: TypedList<Float64Array>;
  private readonly latencies: TypedList<Float64Array>;
  private readonly kinds: TypedList<Uint8Array>;
  private readonly devices: TypedList<Int32Array>;
  private readonly stages: TypedList<Int16Array>;
  private readonly microBatches: TypedList<Int32Array>;
  private readonly chunks: TypedList<Int16Array>;
  private readonly layerCounts: TypedList<Int16Array>;
  private readonly flopCounts: TypedList<Float64Array>;
  private readonly depFrom: TypedList<Int32Array>;
  private readonly depTo: TypedList<Int32Array>;
  /** Where each operation's lanes and flows start: they are added with the operation, so already grouped. */
  private readonly laneStart: TypedList<Int32Array>;
  private readonly laneId: TypedList<Int32Array>;
  private readonly flowStart: TypedList<Int32Array>;
  private readonly flowSrc: TypedList<Int32Array>;
  private readonly flowDst: TypedList<Int32Array>;
  private readonly flowSize: TypedList<Float64Array>;
  private readonly flowIsTimed: TypedList<Uint8Array>;
  private readonly memOp: TypedList<Int32Array>;
  private readonly memLoc: TypedList<Int32Array>;
  private readonly memCat: TypedList<Uint8Array>;
  private readonly memSize: TypedList<Float64Array>;
  private readonly memWhen: TypedList<Uint8Array>;

  /**
   * `expectedOperations` reserves room (see growable.ts: reserved memory that is never written costs nothing, so
   * a generous estimate is cheap and a low one costs a copy); the other columns are reserved in proportion.
   */
  constructor(
    readonly laneCount: number,
    expectedOperations = 1024,
  ) {
    const ops = expectedOperations;
    this.durations = new TypedList(Float64Array, ops);
    this.latencies = new TypedList(Float64Array, ops);
    this.kinds = new TypedList(Uint8Array, ops);
    this.devices = new TypedList(Int32Array, ops);
    this.stages = new TypedList(Int16Array, ops);
    this.microBatches = new TypedList(Int32Array, ops);
    this.chunks = new TypedList(Int16Array, ops);
    this.layerCounts = new TypedList(Int16Array, ops);
    this.flopCounts = new TypedList(Float64Array, ops);
    this.depFrom = new TypedList(Int32Array, 3 * ops);
    this.depTo = new TypedList(Int32Array, 3 * ops);
    this.laneStart = new TypedList(Int32Array, ops + 1);
    this.laneId = new TypedList(Int32Array, 3 * ops);
    this.flowStart = new TypedList(Int32Array, ops + 1);
    this.flowSrc = new TypedList(Int32Array, 2 * ops);
    this.flowDst = new TypedList(Int32Array, 2 * ops);
    this.flowSize = new TypedList(Float64Array, 2 * ops);
    this.flowIsTimed = new TypedList(Uint8Array, 2 * ops);
    this.memOp = new TypedList(Int32Array, 2 * ops);
    this.memLoc = new TypedList(Int32Array, 2 * ops);
    this.memCat = new TypedList(Uint8Array, 2 * ops);
    this.memSize = new TypedList(Float64Array, 2 * ops);
    this.memWhen = new TypedList(Uint8Array, 2 * ops);
  }

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
    this.laneStart.push(this.laneId.length);
    this.flowStart.push(this.flowSrc.length);
    for (const lane of lanes) {
      if (lane < 0 || lane >= this.laneCount) throw new RangeError(`lane ${lane} out of range`);
      this.laneId.push(lane);
    }
    return id;
  }

  /** `op` may not start before `dependency` has ended. */
  dependOn(op: number, dependency: number): void {
    this.depFrom.push(dependency);
    this.depTo.push(op);
  }

  /**
   * Moves `bytes` from one vertex to another as part of `op`, the operation added last; untimed flows are only
   * counted. An operation's bytes are the sum of its flows.
   */
  flow(op: number, sourceVertex: number, targetVertex: number, bytes: number, timed = true): void {
    if (op !== this.count - 1) throw new Error(`flows belong to the operation added last (${this.count - 1}), not ${op}`);
    if (bytes <= 0 || sourceVertex === targetVertex) return;
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

  /** Row starts of a per-operation list, closed with its total: `count + 1` entries. */
  private frozenStarts(starts: TypedList<Int32Array>, total: number): Int32Array {
    if (starts.length === this.count) starts.push(total);
    return starts.view();
  }

  build(): OperationGraph {
    const n = this.count;
    const depFrom = this.depFrom.view();
    const depTo = this.depTo.view();
    // Columns are views of the builder's lists: nothing is copied that need not be. Lanes and flows are added with
    // their operation, so their row starts are already known.
    const laneId = this.laneId.view();
    const lanesOf: Csr = { start: this.frozenStarts(this.laneStart, laneId.length), items: laneId };
    const flowStart = this.frozenStarts(this.flowStart, this.flowSrc.length);
    // Memory effects are often added after later operations (a buffer freed by its consumer): chaining them per
    // operation costs two index arrays where grouping would copy every column.
    const memOp = this.memOp.view();
    const memoryFirst = new Int32Array(n).fill(-1);
    const memoryNext = new Int32Array(memOp.length);
    for (let i = memOp.length - 1; i >= 0; i--) {
      memoryNext[i] = memoryFirst[memOp[i]];
      memoryFirst[memOp[i]] = i;
    }
    let deps: Csr | undefined;
    return {
      count: n,
      laneCount: this.laneCount,
      durationNs: this.durations.view(),
      latencyNs: this.latencies.view(),
      kind: this.kinds.view(),
      device: this.devices.view(),
      stage: this.stages.view(),
      microBatch: this.microBatches.view(),
      chunk: this.chunks.view(),
      layers: this.layerCounts.view(),
      flops: this.flopCounts.view(),
      get deps() {
        return (deps ??= buildCsr(n, depTo, depFrom, depFrom.length));
      },
      dependents: buildCsr(n, depFrom, depTo, depFrom.length),
      lanesOf,
      program: transposeCsr(lanesOf, this.laneCount),
      flowStart,
      flowSource: this.flowSrc.view(),
      flowTarget: this.flowDst.view(),
      flowBytes: this.flowSize.view(),
      flowTimed: this.flowIsTimed.view(),
      memoryFirst,
      memoryNext,
      memoryLocation: this.memLoc.view(),
      memoryCategory: this.memCat.view(),
      memoryBytes: this.memSize.view(),
      memoryAtEnd: this.memWhen.view(),
    };
  }
}
