import type { AllocationHook, ColumnConstructor, TypedArray } from './allocation.js';
import { buildCsr, grown, transposeCsr, TypedList, type Csr } from './growable.js';

/** How far ahead of the builder an allocation hook may prepare, in operations' worth of each column. */
const PREPARE_AHEAD_OPERATIONS = 1 << 15;
/** The builder reports its progress to an allocation hook every this many operations (a power of two). */
const REPORT_EVERY = 1 << 12;

/**
 * The operation graph of one training step, stored as columns of typed arrays so
 * that a step of a 16,384-GPU cluster (millions of operations) stays compact.
 *
 * An operation declares everything the executor needs, and the executor never
 * asks what kind of operation it is:
 * - a duration: time it occupies its lanes when it moves no bytes (compute);
 * - a latency: a fixed delay before its flows start (link and algorithm latency);
 * - flows: (source vertex, destination vertex, bytes) moved over the network;
 *   the operation ends when its last flow ends (and not before `durationNs`);
 * - lanes: serial resources it holds from start to end; on each lane, operations
 *   run in the order they were assigned to it (a CUDA stream's program order);
 * - dependencies: operations that must end before it starts;
 * - memory effects: bytes allocated (positive) or freed (negative) in a category
 *   of a memory location, at its start or at its end.
 *
 * Each operation also has its `device` and a `label`: a number whose meaning belongs
 * to the layer that built the graph (a row of its own label table, say), never read
 * here. Durations and latencies, flow sizes and memory amounts are rows of small
 * tables that equal values share, found again as they are added (see `RowCache`).
 */
export interface OperationGraph {
  readonly count: number;
  readonly laneCount: number;
  /** Each operation's row in `timings`. */
  readonly timing: Int32Array;
  readonly timings: { readonly count: number; readonly durationNs: Float64Array; readonly latencyNs: Float64Array };
  readonly device: Int32Array;
  /** Each operation's label: opaque here, meaningful to the graph's builder. */
  readonly label: Int32Array;
  /** Operations each operation waits for (built on first use: the executor counts them from the dependents). */
  readonly deps: Csr;
  /**
   * Operations that wait for each operation, chained as they were added: the first entry of each operation (-1 for
   * none) and the next after each entry (-1 after the last); entry e's waiting operation is `dependentOp[e]`.
   */
  readonly dependentFirst: Int32Array;
  readonly dependentNext: Int32Array;
  readonly dependentOp: Int32Array;
  /** Lanes each operation holds. */
  readonly lanesOf: Csr;
  /**
   * Lane programs as chains, for running: each lane's first operation (-1 for none), and for each entry of
   * `lanesOf.items` the operation after it on that lane (-1 after the last). Written as operations are added.
   */
  readonly laneFirst: Int32Array;
  readonly laneNext: Int32Array;
  /** Each lane's operations in program order (built on first use from the chains' source, `lanesOf`). */
  readonly program: Csr;
  /** Flows per operation: index ranges into the flow columns. */
  readonly flowStart: Int32Array;
  readonly flowSource: Int32Array;
  readonly flowTarget: Int32Array;
  /** Each flow's row in `flowSizes`. */
  readonly flowSize: Int32Array;
  /** Bytes; timed 1: the flow moves over the network and the operation waits for it; 0: counted only (its time is in the duration). */
  readonly flowSizes: { readonly count: number; readonly bytes: Float64Array; readonly timed: Uint8Array };
  /**
   * Memory effects per operation, in the order they were added: the first effect of each operation (-1 for none)
   * and the next effect of the same operation after each effect (-1 after the last), indices into the memory columns.
   */
  readonly memoryFirst: Int32Array;
  readonly memoryNext: Int32Array;
  readonly memoryLocation: Int32Array;
  /** Each effect's row in `memoryAmounts`. */
  readonly memoryAmount: Int32Array;
  /** Category, bytes (negative: freed), and atEnd 0: applied when the operation starts; 1: when it ends. */
  readonly memoryAmounts: { readonly count: number; readonly category: Uint8Array; readonly bytes: Float64Array; readonly atEnd: Uint8Array };
}

export const AT_START = 0;
export const AT_END = 1;

/** Collects operations in any order and freezes them into an `OperationGraph`. */
export class OperationGraphBuilder {
  // Per operation, written directly under one capacity check: the hot path of building a step.
  private ops = 0;
  private timingOf: Int32Array;
  private devices: Int32Array;
  private labelOf: Int32Array;
  /** Where each operation's lanes and flows start: they are added right after it, so already grouped. */
  private laneStart: Int32Array;
  private flowStart: Int32Array;
  // Tables of values many operations share, and the caches that find their rows again.
  private readonly timingDuration = new TypedList(Float64Array, 256);
  private readonly timingLatency = new TypedList(Float64Array, 256);
  private readonly timingRows = new RowCache();
  private readonly sizeBytes = new TypedList(Float64Array, 256);
  private readonly sizeTimed = new TypedList(Uint8Array, 256);
  private readonly sizeRows = new RowCache();
  private readonly amountCategory = new TypedList(Uint8Array, 256);
  private readonly amountBytes = new TypedList(Float64Array, 256);
  private readonly amountAtEnd = new TypedList(Uint8Array, 256);
  private readonly amountRows = new RowCache();
  private dependentFirst: Int32Array;
  private memoryFirst: Int32Array;
  private readonly dependentNext: TypedList<Int32Array>;
  private readonly dependentOp: TypedList<Int32Array>;
  private readonly laneId: TypedList<Int32Array>;
  private readonly laneNextOp: TypedList<Int32Array>;
  private readonly laneFirstOp: Int32Array;
  /** Each lane's last entry so far, whose successor the next operation on the lane becomes. */
  private readonly laneLastEntry: Int32Array;
  private readonly flowSrc: TypedList<Int32Array>;
  private readonly flowDst: TypedList<Int32Array>;
  private readonly flowSizeRow: TypedList<Int32Array>;
  private readonly memNext: TypedList<Int32Array>;
  private readonly memLoc: TypedList<Int32Array>;
  private readonly memAmountRow: TypedList<Int32Array>;

  /** Where the columns come from when not plain arrays (see allocation.ts), told of the builder's progress. */
  private readonly allocation: AllocationHook | undefined;
  /** The lists the hook follows, with their slots; the per-operation columns are followed by the operation count. */
  private readonly followedLists: { list: TypedList<TypedArray>; slot: number }[] = [];
  private readonly followedColumns: number[] = [];

  /**
   * `expectedOperations` reserves room (see growable.ts: reserved memory that is never written costs nothing, so
   * a generous estimate is cheap and a low one costs a copy); the other columns are reserved in proportion. With an
   * `allocation` hook, the columns come from it and it is told how far they are written.
   */
  constructor(
    readonly laneCount: number,
    expectedOperations = 1024,
    options: { allocation?: AllocationHook } = {},
  ) {
    const ops = Math.max(16, Math.ceil(expectedOperations));
    const allocation = (this.allocation = options.allocation);
    allocation?.reserved?.(ops);
    const column = <T extends TypedArray>(make: ColumnConstructor<T>, length: number): T => {
      if (allocation === undefined) return new make(length);
      const { array, slot } = allocation.follow(make, length, PREPARE_AHEAD_OPERATIONS);
      this.followedColumns.push(slot);
      return array;
    };
    const list = <T extends TypedArray>(make: ColumnConstructor<T>, perOperation: number): TypedList<T> => {
      if (allocation === undefined) return new TypedList(make, perOperation * ops);
      const { array, slot } = allocation.follow(make, perOperation * ops, perOperation * PREPARE_AHEAD_OPERATIONS);
      const typed = new TypedList(make, perOperation * ops, array);
      this.followedLists.push({ list: typed, slot });
      return typed;
    };
    this.timingOf = column(Int32Array, ops);
    this.devices = column(Int32Array, ops);
    this.labelOf = column(Int32Array, ops);
    this.laneStart = column(Int32Array, ops + 1);
    this.flowStart = column(Int32Array, ops + 1);
    this.dependentFirst = column(Int32Array, ops);
    this.memoryFirst = column(Int32Array, ops);
    this.dependentNext = list(Int32Array, 3);
    this.dependentOp = list(Int32Array, 3);
    this.laneId = list(Int32Array, 3);
    this.laneNextOp = list(Int32Array, 3);
    this.laneFirstOp = new Int32Array(laneCount).fill(-1);
    this.laneLastEntry = new Int32Array(laneCount).fill(-1);
    this.flowSrc = list(Int32Array, 2);
    this.flowDst = list(Int32Array, 2);
    this.flowSizeRow = list(Int32Array, 2);
    this.memNext = list(Int32Array, 2);
    this.memLoc = list(Int32Array, 2);
    this.memAmountRow = list(Int32Array, 2);
  }

  /** Tells the allocation hook how far each column is written. */
  private reportProgress(): void {
    const allocation = this.allocation!;
    for (const slot of this.followedColumns) allocation.filled(slot, this.ops);
    for (const { list, slot } of this.followedLists) allocation.filled(slot, list.length);
    allocation.publish();
  }

  get count(): number {
    return this.ops;
  }

  /**
   * Adds an operation on `device` with a label (opaque to the graph) and returns its id. The lanes it holds and the
   * flows it moves are added next, with `lane()` and `flow()`.
   */
  operation(label: number, device: number, durationNs: number, latencyNs = 0): number {
    const id = this.ops;
    if (id === this.devices.length) this.growOperations();
    if ((id & (REPORT_EVERY - 1)) === 0 && this.allocation !== undefined) this.reportProgress();
    let timing = this.timingRows.lookup(durationNs, latencyNs);
    if (timing < 0) {
      timing = this.timingDuration.push(durationNs);
      this.timingLatency.push(latencyNs);
      this.timingRows.remember(durationNs, latencyNs, timing);
    }
    this.timingOf[id] = timing;
    this.devices[id] = device;
    this.labelOf[id] = label;
    this.dependentFirst[id] = -1;
    this.memoryFirst[id] = -1;
    this.laneStart[id] = this.laneId.length;
    this.flowStart[id] = this.flowSrc.length;
    this.ops = id + 1;
    return id;
  }

  /** The operation added last holds `lane` (and is appended to the lane's program). */
  lane(lane: number): void {
    if (lane < 0 || lane >= this.laneCount) throw new RangeError(`lane ${lane} out of range`);
    if (this.ops === 0) throw new Error('a lane belongs to the operation added last, and none has been added');
    const op = this.ops - 1;
    const entry = this.laneId.push(lane);
    this.laneNextOp.push(-1);
    const last = this.laneLastEntry[lane];
    if (last >= 0) this.laneNextOp.set(last, op);
    else this.laneFirstOp[lane] = op;
    this.laneLastEntry[lane] = entry;
  }

  /** An operation holding `lanes`, in one call: for small graphs built by hand. */
  add(device: number, durationNs: number, lanes: readonly number[], latencyNs = 0, label = 0): number {
    const op = this.operation(label, device, durationNs, latencyNs);
    for (const lane of lanes) this.lane(lane);
    return op;
  }

  /** `op` may not start before `dependency` has ended. */
  dependOn(op: number, dependency: number): void {
    if (!(op >= 0 && op < this.ops && dependency >= 0 && dependency < this.ops)) throw new RangeError(`dependency ${dependency} -> ${op} names an operation not added`);
    // Chained onto the dependency's list as it comes: no pairs to group afterwards.
    this.dependentNext.push(this.dependentFirst[dependency]);
    this.dependentFirst[dependency] = this.dependentOp.push(op);
  }

  /**
   * Moves `bytes` from one vertex to another as part of `op`, the operation added last; untimed flows are only
   * counted. An operation's bytes are the sum of its flows.
   */
  flow(op: number, sourceVertex: number, targetVertex: number, bytes: number, timed = true): void {
    if (op !== this.ops - 1) throw new Error(`flows belong to the operation added last (${this.ops - 1}), not ${op}`);
    if (bytes <= 0 || sourceVertex === targetVertex) return;
    const isTimed = timed ? 1 : 0;
    let size = this.sizeRows.lookup(bytes, isTimed);
    if (size < 0) {
      size = this.sizeBytes.push(bytes);
      this.sizeTimed.push(isTimed);
      this.sizeRows.remember(bytes, isTimed, size);
    }
    this.flowSrc.push(sourceVertex);
    this.flowDst.push(targetVertex);
    this.flowSizeRow.push(size);
  }

  /** Allocates (bytes > 0) or frees (bytes < 0) memory when `op` starts or ends. */
  memory(op: number, location: number, category: number, bytes: number, when: typeof AT_START | typeof AT_END): void {
    if (bytes === 0) return;
    // Chained onto the operation's list (newest first until build() puts each list back in the order added).
    this.memNext.push(this.memoryFirst[op]);
    this.memoryFirst[op] = this.memLoc.length;
    const kind = category * 2 + when;
    let amount = this.amountRows.lookup(bytes, kind);
    if (amount < 0) {
      amount = this.amountBytes.push(bytes);
      this.amountCategory.push(category);
      this.amountAtEnd.push(when);
      this.amountRows.remember(bytes, kind, amount);
    }
    this.memLoc.push(location);
    this.memAmountRow.push(amount);
  }

  private growOperations(): void {
    const n = this.devices.length * 2;
    this.timingOf = grown(this.timingOf, n);
    this.devices = grown(this.devices, n);
    this.labelOf = grown(this.labelOf, n);
    this.dependentFirst = grown(this.dependentFirst, n);
    this.memoryFirst = grown(this.memoryFirst, n);
    this.laneStart = grown(this.laneStart, n + 1);
    this.flowStart = grown(this.flowStart, n + 1);
  }

  /** Row starts of a per-operation list, closed with its total: `count + 1` entries, without copying. */
  private frozenStarts(starts: Int32Array, total: number): Int32Array {
    starts[this.ops] = total;
    return starts.subarray(0, this.ops + 1);
  }

  build(): OperationGraph {
    const allocation = this.allocation;
    if (allocation !== undefined) {
      for (const slot of this.followedColumns) allocation.finished(slot);
      for (const { slot } of this.followedLists) allocation.finished(slot);
      allocation.publish();
    }
    const n = this.count;
    // Columns are views of the builder's lists: nothing is copied that need not be. Lanes and flows are added with
    // their operation, so their row starts are already known.
    const laneId = this.laneId.view();
    const lanesOf: Csr = { start: this.frozenStarts(this.laneStart, laneId.length), items: laneId };
    const flowStart = this.frozenStarts(this.flowStart, this.flowSrc.length);
    // Memory effects are often added after later operations (a buffer freed by its consumer), so they are chained per
    // operation as they come, newest first; each chain is reversed here, in place, to the order they were added.
    const memoryFirst = this.memoryFirst.subarray(0, n);
    const memoryNext = this.memNext.view();
    for (let op = 0; op < n; op++) {
      let previous = -1;
      for (let e = memoryFirst[op]; e >= 0; ) {
        const next = memoryNext[e];
        memoryNext[e] = previous;
        previous = e;
        e = next;
      }
      memoryFirst[op] = previous;
    }
    const dependentFirst = this.dependentFirst.subarray(0, n);
    const dependentNext = this.dependentNext.view();
    const dependentOp = this.dependentOp.view();
    let deps: Csr | undefined;
    let program: Csr | undefined;
    const laneCount = this.laneCount;
    return {
      count: n,
      laneCount: this.laneCount,
      timing: this.timingOf.subarray(0, n),
      timings: { count: this.timingDuration.length, durationNs: this.timingDuration.view(), latencyNs: this.timingLatency.view() },
      device: this.devices.subarray(0, n),
      label: this.labelOf.subarray(0, n),
      get deps() {
        return (deps ??= dependenciesOf(n, dependentFirst, dependentNext, dependentOp));
      },
      dependentFirst,
      dependentNext,
      dependentOp,
      lanesOf,
      laneFirst: this.laneFirstOp,
      laneNext: this.laneNextOp.view(),
      get program() {
        return (program ??= transposeCsr(lanesOf, laneCount));
      },
      flowStart,
      flowSource: this.flowSrc.view(),
      flowTarget: this.flowDst.view(),
      flowSize: this.flowSizeRow.view(),
      flowSizes: { count: this.sizeBytes.length, bytes: this.sizeBytes.view(), timed: this.sizeTimed.view() },
      memoryFirst,
      memoryNext,
      memoryLocation: this.memLoc.view(),
      memoryAmount: this.memAmountRow.view(),
      memoryAmounts: { count: this.amountBytes.length, category: this.amountCategory.view(), bytes: this.amountBytes.view(), atEnd: this.amountAtEnd.view() },
    };
  }
}

/** Slots of a row cache: a power of two. */
const CACHE_SLOTS = 1024;

/**
 * Finds again the row of a small table that holds a pair of values (a duration and a latency; bytes and a flag):
 * a direct-mapped cache of recent rows. Equal values nearly always share a row, since a step repeats the same few
 * values in every pass; a value the cache has forgotten only adds a duplicate row, never a wrong one.
 */
class RowCache {
  private readonly first = new Float64Array(CACHE_SLOTS).fill(NaN);
  private readonly second = new Float64Array(CACHE_SLOTS);
  private readonly rows = new Int32Array(CACHE_SLOTS);
  private slot = 0;

  /** The row remembered for (x, y), or -1; a miss leaves the slot for `remember`. */
  lookup(x: number, y: number): number {
    const slot = (this.slot = (Math.imul(x | 0, 0x9e3779b1) ^ Math.imul(y | 0, 0x85ebca6b)) >>> 22);
    return this.first[slot] === x && this.second[slot] === y ? this.rows[slot] : -1;
  }

  remember(x: number, y: number, row: number): void {
    this.first[this.slot] = x;
    this.second[this.slot] = y;
    this.rows[this.slot] = row;
  }
}

/** Each operation's dependencies, in CSR form, from the chains of dependents. */
function dependenciesOf(n: number, first: Int32Array, next: Int32Array, waiting: Int32Array): Csr {
  const from = new Int32Array(waiting.length);
  for (let op = 0; op < n; op++) for (let e = first[op]; e >= 0; e = next[e]) from[e] = op;
  return buildCsr(n, waiting, from, waiting.length);
}
