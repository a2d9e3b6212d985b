import type { AllocationHook } from './allocation.js';
import { type OperationGraph, AT_END, AT_START } from './graph.js';
import { EventKernel } from './kernel.js';
import { MemoryTracker } from './memory.js';
import { grown } from './growable.js';
import { FlowNetwork, MAX_HOPS, type LinkSet } from './network.js';

/** Finds the links a flow crosses between two vertices. */
export interface Router {
  /** Writes the links from source to target into `out` (room for `MAX_HOPS`) and returns how many there are. */
  route(sourceVertex: number, targetVertex: number, out: Int32Array): number;
}

export interface ExecutionInput {
  graph: OperationGraph;
  links: LinkSet;
  router: Router;
  memory: MemoryTracker;
  /** Where the per-operation arrays come from (see allocation.ts); plain typed arrays without one. */
  allocation?: AllocationHook;
  /** Groups of lanes whose exposed time to measure while running (see `LaneExposure`). */
  exposure?: LaneExposure;
}

/**
 * Groups of lanes (a device's, say) whose exposed time the executor measures: per group, the time during which
 * some counted lane holds an operation while no covering lane does (communication not hidden behind compute).
 * Measured as lanes are taken and released, in whole nanoseconds, so it is exact.
 */
export interface LaneExposure {
  groups: number;
  /** Each lane's group, or -1 for none. */
  group: Int32Array;
  /** Each lane's role in its group: COUNTED or COVERING. */
  role: Uint8Array;
}

export const COUNTED = 1;
export const COVERING = 2;

/** An operation that never started, and what it was waiting for. */
export interface BlockedOperation {
  op: number;
  /** Dependencies that never ended. */
  waitingFor: number[];
  /** Lanes whose current head is another operation. */
  laneHeads: { lane: number; head: number }[];
}

export interface ExecutionResult {
  startNs: Float64Array;
  endNs: Float64Array;
  /** When the last operation ended, ns. */
  makespanNs: number;
  completed: number;
  /** Time each lane held operations, ns. */
  laneBusyNs: Float64Array;
  /** Bytes carried per link. */
  linkBytes: Float64Array;
  /** Per group of `exposure`, ns during which a counted lane was busy and no covering lane was (empty without one). */
  exposedNs: Float64Array;
  eventsProcessed: number;
  /** Empty when every operation ran. */
  blocked: BlockedOperation[];
}

const NOT_STARTED = -1;

/**
 * Runs an operation graph on the kernel: an operation starts as soon as its
 * dependencies have ended and it is at the head of every lane it holds.
 */
export function execute(input: ExecutionInput, kernel = new EventKernel(4096)): ExecutionResult {
  const { graph, router, memory } = input;
  const n = graph.count;
  // Zero until written: an operation that never starts is told apart at the end (it still waits, its end untouched).
  const allocation = input.allocation;
  const fresh = allocation?.perOperation === undefined;
  const startNs = fresh ? new Float64Array(n) : allocation!.perOperation!(Float64Array, n);
  const endNs = fresh ? new Float64Array(n) : allocation!.perOperation!(Float64Array, n);
  // Per operation, before it starts: dependencies not yet ended plus lanes where it is not yet the head, so it is
  // ready when this reaches zero; once started (when it is zero and no longer needed): flows not yet done.
  const waiting = fresh ? new Int32Array(n) : allocation!.perOperation!(Int32Array, n);
  const flowsLeft = waiting;
  // While an operation runs, `endNs` holds the earliest time it may end (start plus duration), encoded below
  // NOT_STARTED so that "has it ended?" stays `endNs >= 0`.
  const setEarliestEnd = (op: number, ns: number) => (endNs[op] = NOT_STARTED - 1 - ns);
  const earliestEnd = (op: number) => NOT_STARTED - 1 - endNs[op];
  // The operation at the head of each lane (the next to run on it), -1 once the lane has run its program.
  const laneHead = new Int32Array(graph.laneFirst);
  const laneBusyNs = new Float64Array(graph.laneCount);
  let completed = 0;
  let makespanNs = 0;
  // Exposure: per group, counted and covering lanes busy now, since when, and the exposed time so far.
  const exposure = input.exposure;
  const groups = exposure?.groups ?? 0;
  const exposedNs = new Float64Array(groups);
  const countedBusy = new Int32Array(groups);
  const coveringBusy = new Int32Array(groups);
  const busySince = new Float64Array(groups);
  const laneGroup = exposure?.group;
  const laneRole = exposure?.role;
  /** A lane of a group is taken (+1) or released (-1) now: the time since the last change is exposed or not. */
  const exposureChange = (lane: number, delta: number, now: number) => {
    const group = laneGroup![lane];
    if (group < 0) return;
    if (countedBusy[group] > 0 && coveringBusy[group] === 0) exposedNs[group] += now - busySince[group];
    busySince[group] = now;
    if (laneRole![lane] === COVERING) coveringBusy[group] += delta;
    else countedBusy[group] += delta;
  };

  const { dependentFirst, dependentNext, dependentOp, lanesOf, laneNext } = graph;
  for (let e = 0; e < dependentOp.length; e++) waiting[dependentOp[e]]++;
  for (let op = 0; op < n; op++) waiting[op] += lanesOf.start[op + 1] - lanesOf.start[op];

  // Operations that became ready together, started in id order.
  let ready = new Int32Array(256);
  let readyCount = 0;
  const makeReady = (op: number) => {
    if (readyCount === ready.length) ready = grown(ready, readyCount * 2);
    ready[readyCount++] = op;
  };
  const path = new Int32Array(MAX_HOPS);
  const network = new FlowNetwork(kernel, input.links, (op) => flowDone(op));
  const flowsStart = kernel.on((op) => startFlows(op));
  const finish = kernel.on((op) => end(op));

  const { timing, flowSize } = graph;
  const { durationNs, latencyNs } = graph.timings;
  const { bytes: flowBytes, timed: flowTimed } = graph.flowSizes;
  const { memoryFirst, memoryNext, memoryLocation, memoryAmount } = graph;
  const { category: amountCategory, bytes: amountBytes, atEnd: amountAtEnd } = graph.memoryAmounts;

  function applyMemory(op: number, when: number): void {
    for (let i = memoryFirst[op]; i >= 0; i = memoryNext[i]) {
      const amount = memoryAmount[i];
      if (amountAtEnd[amount] !== when) continue;
      memory.change(memoryLocation[i], amountCategory[amount], amountBytes[amount], kernel.now);
    }
  }

  function start(op: number): void {
    startNs[op] = kernel.now;
    if (laneGroup !== undefined) for (let i = lanesOf.start[op]; i < lanesOf.start[op + 1]; i++) exposureChange(lanesOf.items[i], 1, kernel.now);
    applyMemory(op, AT_START);
    // Without a latency, flows (or the compute's clock) start at once: no event needed.
    const latency = latencyNs[timing[op]];
    if (latency > 0) kernel.schedule(kernel.now + latency, flowsStart, op);
    else startFlows(op);
  }

  function startFlows(op: number): void {
    const first = graph.flowStart[op];
    const last = graph.flowStart[op + 1];
    setEarliestEnd(op, kernel.now + durationNs[timing[op]]);
    let timed = 0;
    for (let i = first; i < last; i++) timed += flowTimed[flowSize[i]];
    if (timed === 0) {
      kernel.schedule(earliestEnd(op), finish, op);
      return;
    }
    flowsLeft[op] = timed;
    for (let i = first; i < last; i++) {
      const size = flowSize[i];
      if (flowTimed[size] === 0) continue;
      const hops = router.route(graph.flowSource[i], graph.flowTarget[i], path);
      network.start(path, flowBytes[size], op, hops);
    }
    network.rebalanceThisInstant();
  }

  function flowDone(op: number): void {
    if (--flowsLeft[op] > 0) return;
    const at = earliestEnd(op);
    if (at <= kernel.now) end(op);
    else kernel.schedule(at, finish, op);
  }

  function end(op: number): void {
    const now = kernel.now;
    endNs[op] = now;
    if (now > makespanNs) makespanNs = now;
    completed++;
    applyMemory(op, AT_END);
    for (let i = lanesOf.start[op]; i < lanesOf.start[op + 1]; i++) {
      const lane = lanesOf.items[i];
      laneBusyNs[lane] += now - startNs[op];
      if (laneGroup !== undefined) exposureChange(lane, -1, now);
      const next = laneNext[i];
      laneHead[lane] = next;
      if (next >= 0 && --waiting[next] === 0) makeReady(next);
    }
    for (let e = dependentFirst[op]; e >= 0; e = dependentNext[e]) {
      const d = dependentOp[e];
      if (--waiting[d] === 0) makeReady(d);
    }
    drain();
  }

  function drain(): void {
    // Start in id order among those that became ready together, for determinism independent of discovery order.
    // Starting may not make others ready (that happens only when operations end), so the list is stable here.
    if (readyCount > 1) sortIds(ready, readyCount);
    for (let i = 0; i < readyCount; i++) start(ready[i]);
    readyCount = 0;
  }

  // Lane heads at time zero.
  for (let lane = 0; lane < graph.laneCount; lane++) {
    if (laneHead[lane] >= 0) waiting[laneHead[lane]]--;
  }
  memory.snapshot(0);
  for (let op = 0; op < n; op++) if (waiting[op] === 0) makeReady(op);
  drain();
  kernel.run();

  // What did not end still waits (for dependencies or lanes, or for a flow starved forever). Of those, what never
  // started reads as not started, what started as not ended.
  if (completed !== n) {
    for (let op = 0; op < n; op++) {
      if (waiting[op] === 0 && endNs[op] >= 0) continue;
      if (endNs[op] === 0) startNs[op] = NOT_STARTED;
      endNs[op] = NOT_STARTED;
    }
  }
  return {
    startNs,
    endNs,
    makespanNs,
    completed,
    laneBusyNs,
    linkBytes: network.linkBytes,
    exposedNs,
    eventsProcessed: kernel.eventsProcessed,
    blocked: completed === n ? [] : describeBlocked(graph, startNs, endNs, laneHead),
  };
}

/** Sorts the first `count` ids ascending: by insertion for the usual handful, natively beyond. */
function sortIds(ids: Int32Array, count: number): void {
  if (count > 16) {
    ids.subarray(0, count).sort();
    return;
  }
  for (let i = 1; i < count; i++) {
    const id = ids[i];
    let j = i;
    while (j > 0 && ids[j - 1] > id) {
      ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = id;
  }
}

function describeBlocked(
  graph: OperationGraph,
  startNs: Float64Array,
  endNs: Float64Array,
  laneHead: Int32Array,
): BlockedOperation[] {
  const blocked: BlockedOperation[] = [];
  for (let op = 0; op < graph.count; op++) {
    if (startNs[op] !== NOT_STARTED) continue;
    const waitingFor: number[] = [];
    for (let i = graph.deps.start[op]; i < graph.deps.start[op + 1]; i++) {
      const d = graph.deps.items[i];
      if (endNs[d] === NOT_STARTED) waitingFor.push(d);
    }
    const laneHeads: { lane: number; head: number }[] = [];
    for (let i = graph.lanesOf.start[op]; i < graph.lanesOf.start[op + 1]; i++) {
      const lane = graph.lanesOf.items[i];
      const head = laneHead[lane];
      if (head !== op) laneHeads.push({ lane, head });
    }
    blocked.push({ op, waitingFor, laneHeads });
  }
  return blocked;
}
