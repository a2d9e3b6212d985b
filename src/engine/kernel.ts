/**
 * The event kernel: a clock and a priority queue of events, nothing else.
 *
 * It knows nothing of GPUs, links or pipelines. Clients register one handler per
 * event type up front and schedule events as (time, type, a, b) with two integer
 * payloads, so running an event allocates nothing and creates no closure.
 *
 * Time is an integer count of nanoseconds held in a float64. Integers are exact in
 * a float64 up to 2^53 ns, about 104 days of simulated time, so sums and
 * comparisons of times never round, however many events a step has. Callers round
 * durations to whole nanoseconds (see `toNanoseconds`).
 *
 * Ties in time are broken by a sequence number, so events scheduled for the same
 * instant run in the order they were scheduled (FIFO) and every run is
 * deterministic.
 */

import { grown } from './growable.js';

export type EventHandler = (a: number, b: number) => void;

/** Nanoseconds per second: times in the kernel are whole nanoseconds. */
export const NANOSECONDS_PER_SECOND = 1e9;

/** Rounds a duration in seconds up to whole nanoseconds (never to zero unless it is zero). */
export function toNanoseconds(seconds: number): number {
  if (!(seconds > 0)) return 0;
  const ns = seconds * NANOSECONDS_PER_SECOND;
  const nearest = Math.round(ns);
  // 18.5ms is 18500000.000000004 ns in binary floating point: snap such near-integers instead of rounding up.
  if (Math.abs(ns - nearest) <= 1e-6 + ns * 1e-12) return Math.max(nearest, 1);
  return Math.ceil(ns);
}

export class EventKernel {
  /** Current simulated time, whole nanoseconds. */
  now = 0;
  /** Events run so far. */
  eventsProcessed = 0;

  private readonly handlers: EventHandler[] = [];
  // A binary heap whose entries keep their (time, seq) key inline and interleaved, keys[2i] and keys[2i+1], so a
  // comparison reads one cache line; payloads live in slots, recycled through a free list.
  private keys: Float64Array;
  private heapSlot: Int32Array;
  private type: Int32Array;
  private argA: Int32Array;
  private argB: Int32Array;
  private freeSlots: Int32Array;
  private freeCount = 0;
  private size = 0;
  private slotsUsed = 0;
  private nextSeq = 0;
  /** The running event's entry is still at the root, to be replaced or removed. */
  private rootConsumed = false;

  constructor(initialCapacity = 1024) {
    const n = Math.max(16, initialCapacity);
    this.keys = new Float64Array(2 * n);
    this.heapSlot = new Int32Array(n);
    this.type = new Int32Array(n);
    this.argA = new Int32Array(n);
    this.argB = new Int32Array(n);
    this.freeSlots = new Int32Array(n);
  }

  /** Registers the handler for an event type; returns the type's number. */
  on(handler: EventHandler): number {
    this.handlers.push(handler);
    return this.handlers.length - 1;
  }

  /** Pending events. */
  get pending(): number {
    return this.rootConsumed ? this.size - 1 : this.size;
  }

  /** Schedules an event at absolute time `at` (ns, not before now). */
  schedule(at: number, type: number, a = 0, b = 0): void {
    if (at < this.now) throw new Error(`event scheduled in the past: ${at} < ${this.now}`);
    let slot: number;
    if (this.freeCount > 0) slot = this.freeSlots[--this.freeCount];
    else {
      if (this.slotsUsed === this.type.length) this.grow();
      slot = this.slotsUsed++;
    }
    this.type[slot] = type;
    this.argA[slot] = a;
    this.argB[slot] = b;
    const seq = this.nextSeq++;
    if (this.rootConsumed) {
      // The running event's entry is still at the root: the new one takes its place and sifts down, one pass
      // instead of a pop and a push. Most handlers schedule one event, so this halves the heap's work.
      this.rootConsumed = false;
      this.siftDown(at, seq, slot, this.size);
      return;
    }
    const keys = this.keys;
    const heapSlot = this.heapSlot;
    let pos = this.size++;
    while (pos > 0) {
      const parent = (pos - 1) >> 1;
      const pt = keys[2 * parent];
      if (pt < at || (pt === at && keys[2 * parent + 1] < seq)) break;
      keys[2 * pos] = pt;
      keys[2 * pos + 1] = keys[2 * parent + 1];
      heapSlot[pos] = heapSlot[parent];
      pos = parent;
    }
    keys[2 * pos] = at;
    keys[2 * pos + 1] = seq;
    heapSlot[pos] = slot;
  }

  /** Runs the earliest event; returns false when none is left. */
  step(): boolean {
    if (this.size === 0) return false;
    const slot = this.heapSlot[0];
    this.now = this.keys[0];
    const type = this.type[slot];
    const a = this.argA[slot];
    const b = this.argB[slot];
    this.freeSlots[this.freeCount++] = slot;
    this.eventsProcessed++;
    // The root is removed lazily: the handler's first schedule() overwrites it.
    this.rootConsumed = true;
    this.handlers[type](a, b);
    if (this.rootConsumed) {
      this.rootConsumed = false;
      const n = --this.size;
      if (n > 0) this.siftDown(this.keys[2 * n], this.keys[2 * n + 1], this.heapSlot[n], n);
    }
    return true;
  }

  /** Places the entry (t, q, slot) at the root of a heap of `n` entries and sifts it down to its place. */
  private siftDown(t: number, q: number, sl: number, n: number): void {
    const keys = this.keys;
    const heapSlot = this.heapSlot;
    let pos = 0;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      let ct = keys[2 * child];
      const right = child + 1;
      if (right < n) {
        const rt = keys[2 * right];
        if (rt < ct || (rt === ct && keys[2 * right + 1] < keys[2 * child + 1])) {
          child = right;
          ct = rt;
        }
      }
      if (t < ct || (t === ct && q < keys[2 * child + 1])) break;
      keys[2 * pos] = ct;
      keys[2 * pos + 1] = keys[2 * child + 1];
      heapSlot[pos] = heapSlot[child];
      pos = child;
    }
    keys[2 * pos] = t;
    keys[2 * pos + 1] = q;
    heapSlot[pos] = sl;
  }

  /** Runs events until none is left or the next one lies after `until` (ns). */
  run(until = Infinity): void {
    while (this.size > 0 && this.keys[0] <= until) this.step();
    if (until !== Infinity && until > this.now) this.now = until;
  }

  private grow(): void {
    const n = this.type.length * 2;
    this.keys = grown(this.keys, 2 * n);
    this.heapSlot = grown(this.heapSlot, n);
    this.type = grown(this.type, n);
    this.argA = grown(this.argA, n);
    this.argB = grown(this.argB, n);
    this.freeSlots = grown(this.freeSlots, n);
  }
}
