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
 * Events scheduled for the same instant run in the order they were scheduled
 * (FIFO), so every run is deterministic. The heap orders by time alone, which
 * keeps its comparisons to one number; when the earliest time is shared by
 * several events, they are taken out together and run in order of their
 * sequence numbers. Events scheduled for that same instant meanwhile were
 * scheduled later than all of them, and form the next such batch.
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

/** Slot numbers fit below this, so (sequence, slot) packs exactly into one float64 while sequence < 2^31. */
const SLOTS = 2 ** 22;
const MAX_SEQUENCE = 2 ** 31;

export class EventKernel {
  /** Current simulated time, whole nanoseconds. */
  now = 0;
  /** Events run so far. */
  eventsProcessed = 0;

  private readonly handlers: EventHandler[] = [];
  // A binary heap of (time, slot); payloads and sequence numbers live in slots, recycled through a free list.
  private heapTime: Float64Array;
  private heapSlot: Int32Array;
  private seq: Float64Array;
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
  /** Events of one instant taken out of the heap together, in sequence order, and how many of them have run. */
  private batch = new Int32Array(16);
  private batchKeys = new Float64Array(16);
  private batchCount = 0;
  private batchNext = 0;

  constructor(initialCapacity = 1024) {
    const n = Math.max(16, initialCapacity);
    this.heapTime = new Float64Array(n);
    this.heapSlot = new Int32Array(n);
    this.seq = new Float64Array(n);
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
    return (this.rootConsumed ? this.size - 1 : this.size) + this.batchCount - this.batchNext;
  }

  /** Schedules an event at absolute time `at` (ns, not before now). */
  schedule(at: number, type: number, a = 0, b = 0): void {
    if (at < this.now) throw new Error(`event scheduled in the past: ${at} < ${this.now}`);
    let slot: number;
    if (this.freeCount > 0) slot = this.freeSlots[--this.freeCount];
    else {
      if (this.slotsUsed === SLOTS) throw new RangeError(`more than ${SLOTS} events pending at once`);
      if (this.slotsUsed === this.type.length) this.grow();
      slot = this.slotsUsed++;
    }
    this.type[slot] = type;
    this.argA[slot] = a;
    this.argB[slot] = b;
    if (this.nextSeq === MAX_SEQUENCE) throw new RangeError(`more than ${MAX_SEQUENCE} events in one run`);
    this.seq[slot] = this.nextSeq++;
    if (this.rootConsumed) {
      // The running event's entry is still at the root: the new one takes its place and sifts down, one pass
      // instead of a pop and a push. Most handlers schedule one event, so this halves the heap's work.
      this.rootConsumed = false;
      this.siftDown(at, slot, this.size);
      return;
    }
    const time = this.heapTime;
    const heapSlot = this.heapSlot;
    let pos = this.size++;
    while (pos > 0) {
      const parent = (pos - 1) >> 1;
      const pt = time[parent];
      if (pt <= at) break;
      time[pos] = pt;
      heapSlot[pos] = heapSlot[parent];
      pos = parent;
    }
    time[pos] = at;
    heapSlot[pos] = slot;
  }

  /** Runs the earliest event; returns false when none is left. */
  step(): boolean {
    let slot: number;
    if (this.batchNext < this.batchCount) slot = this.batch[this.batchNext++];
    else {
      if (this.size === 0) return false;
      const time = this.heapTime;
      const first = time[0];
      // Another event at the same instant sits at a child of the root, if anywhere.
      if ((this.size > 1 && time[1] === first) || (this.size > 2 && time[2] === first)) {
        this.takeBatch(first);
        slot = this.batch[this.batchNext++];
      } else {
        slot = this.heapSlot[0];
        // The root is removed lazily: the handler's first schedule() overwrites it.
        this.rootConsumed = true;
      }
      this.now = first;
    }
    this.freeSlots[this.freeCount++] = slot;
    this.eventsProcessed++;
    this.handlers[this.type[slot]](this.argA[slot], this.argB[slot]);
    if (this.rootConsumed) {
      this.rootConsumed = false;
      this.removeRoot();
    }
    return true;
  }

  /** Moves every event at time `at` (the earliest) from the heap into the batch, in sequence order. */
  private takeBatch(at: number): void {
    let count = 0;
    while (this.size > 0 && this.heapTime[0] === at) {
      if (count === this.batch.length) {
        this.batch = grown(this.batch, count * 2);
        this.batchKeys = grown(this.batchKeys, count * 2);
      }
      this.batch[count++] = this.heapSlot[0];
      this.removeRoot();
    }
    const batch = this.batch;
    if (count <= 16) {
      // Insertion sort by sequence for the usual handful.
      for (let i = 1; i < count; i++) {
        const slot = batch[i];
        let j = i;
        while (j > 0 && this.seq[batch[j - 1]] > this.seq[slot]) {
          batch[j] = batch[j - 1];
          j--;
        }
        batch[j] = slot;
      }
    } else {
      // Thousands of events can share an instant on a symmetric cluster: sort (sequence, slot) packed into one
      // number, natively. Sequence numbers stay below 2^31 and slots below 2^22, so the packed key is exact.
      const keys = this.batchKeys.subarray(0, count);
      for (let i = 0; i < count; i++) keys[i] = this.seq[batch[i]] * SLOTS + batch[i];
      keys.sort();
      for (let i = 0; i < count; i++) batch[i] = keys[i] % SLOTS;
    }
    this.batchCount = count;
    this.batchNext = 0;
  }


  private removeRoot(): void {
    const n = --this.size;
    if (n > 0) this.siftDown(this.heapTime[n], this.heapSlot[n], n);
  }

  /** Places the entry (t, slot) at the root of a heap of `n` entries and sifts it down to its place. */
  private siftDown(t: number, sl: number, n: number): void {
    const time = this.heapTime;
    const heapSlot = this.heapSlot;
    let pos = 0;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      let ct = time[child];
      const right = child + 1;
      if (right < n) {
        const rt = time[right];
        if (rt < ct) {
          child = right;
          ct = rt;
        }
      }
      if (t <= ct) break;
      time[pos] = ct;
      heapSlot[pos] = heapSlot[child];
      pos = child;
    }
    time[pos] = t;
    heapSlot[pos] = sl;
  }

  /** Runs events until none is left or the next one lies after `until` (ns). */
  run(until = Infinity): void {
    while ((this.batchNext < this.batchCount || (this.size > 0 && this.heapTime[0] <= until)) && this.step());
    if (until !== Infinity && until > this.now) this.now = until;
  }

  private grow(): void {
    const n = this.type.length * 2;
    this.heapTime = grown(this.heapTime, n);
    this.heapSlot = grown(this.heapSlot, n);
    this.seq = grown(this.seq, n);
    this.type = grown(this.type, n);
    this.argA = grown(this.argA, n);
    this.argB = grown(this.argB, n);
    this.freeSlots = grown(this.freeSlots, n);
  }
}
