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
 * (FIFO), so every run is deterministic.
 *
 * The queue is a ladder queue (Tang, Goh and Thng, ACM TOMACS 15(3), 2005): its
 * cost per event does not grow with the number of events pending, where a heap's
 * does (log n). Events live in three tiers, each holding only times later than
 * the tier below:
 * - the top: far-future events in one unsorted list;
 * - the ladder: rungs of time buckets, each an unsorted list; a rung covers one
 *   bucket of the rung above it, in finer buckets;
 * - the bottom: the nearest events, in one sorted list, from which events run.
 * When the bottom runs dry, the lowest rung's next bucket is sorted into it, or,
 * when it holds too many events to sort, spread over a new, finer rung; when the
 * ladder runs dry, the top is spread over a new first rung. Every list keeps
 * scheduling order among equal times (appends, stable sorts), which is what
 * makes ties run in FIFO order.
 */

import { grown } from './growable.js';

export type EventHandler = (a: number, b: number) => void;

/** The latest time the clock counts exactly: 2^53 - 1 ns, about 104 days. */
export const MAX_TIME = Number.MAX_SAFE_INTEGER;

/** An event was scheduled past MAX_TIME, where whole nanoseconds no longer add exactly. */
export class ClockRangeError extends RangeError {
  constructor(readonly at: number) {
    super(`event scheduled at ${at} ns, past the exact clock's ${MAX_TIME} ns`);
  }
}

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

/** A bucket with more events than this is spread over a finer rung rather than sorted (the paper's THRES). */
const SORT_THRESHOLD = 50;
/** Rungs at most; a bucket that cannot be split further is sorted whatever its size. */
const MAX_RUNGS = 8;
/** Events per bucket a new rung aims at: a few per bucket make fewer, fuller buckets to step over than one. */
const EVENTS_PER_BUCKET = 4;
const NONE = -1;

export class EventKernel {
  /** Current simulated time, whole nanoseconds. */
  now = 0;
  /** Events run so far. */
  eventsProcessed = 0;

  private readonly handlers: EventHandler[] = [];
  private count = 0;

  // Events live in slots, recycled through a free list; `next` chains a slot into the list of its tier or bucket.
  private time: Float64Array;
  private next: Int32Array;
  private type: Int32Array;
  private argA: Int32Array;
  private argB: Int32Array;
  private freeSlots: Int32Array;
  private freeCount = 0;
  private slotsUsed = 0;

  // Top: events at or after `topStart`, in scheduling order.
  private topStart = 0;
  private topHead = NONE;
  private topTail = NONE;
  private topCount = 0;
  private topMax = -Infinity;

  // Rungs, 0 the coarsest. Rung r's bucket b covers [start + b·width, start + (b+1)·width), and its last bucket
  // every later time too; buckets before `current` have been taken, and the rung holds the events at or after
  // `currentStart` and before the tier above (Infinity once its last bucket is taken: it takes no more).
  private rungs = 0;
  private readonly rungStart = new Float64Array(MAX_RUNGS);
  private readonly rungWidth = new Float64Array(MAX_RUNGS);
  private readonly rungBuckets = new Int32Array(MAX_RUNGS);
  private readonly rungCurrent = new Int32Array(MAX_RUNGS);
  private readonly rungCurrentStart = new Float64Array(MAX_RUNGS);
  private readonly rungCount = new Int32Array(MAX_RUNGS);
  private readonly bucketHead: Int32Array[] = [];
  private readonly bucketTail: Int32Array[] = [];
  private readonly bucketCount: Int32Array[] = [];

  // Bottom: the earliest events, sorted by time, equal times in scheduling order.
  private bottomHead = NONE;
  private bottomTail = NONE;
  private bottomCount = 0;

  constructor(initialCapacity = 1024) {
    const n = Math.max(16, initialCapacity);
    this.time = new Float64Array(n);
    this.next = new Int32Array(n);
    this.type = new Int32Array(n);
    this.argA = new Int32Array(n);
    this.argB = new Int32Array(n);
    this.freeSlots = new Int32Array(n);
    for (let r = 0; r < MAX_RUNGS; r++) {
      this.bucketHead.push(new Int32Array(0));
      this.bucketTail.push(new Int32Array(0));
      this.bucketCount.push(new Int32Array(0));
    }
  }

  /** Registers the handler for an event type; returns the type's number. */
  on(handler: EventHandler): number {
    this.handlers.push(handler);
    return this.handlers.length - 1;
  }

  /** Pending events. */
  get pending(): number {
    return this.count;
  }

  /** Schedules an event at absolute time `at` (ns, not before now). */
  schedule(at: number, type: number, a = 0, b = 0): void {
    if (!(at >= this.now)) throw new Error(`event scheduled in the past: ${at} < ${this.now}`);
    if (at > MAX_TIME) throw new ClockRangeError(at);
    let slot: number;
    if (this.freeCount > 0) slot = this.freeSlots[--this.freeCount];
    else {
      if (this.slotsUsed === this.type.length) this.grow();
      slot = this.slotsUsed++;
    }
    this.time[slot] = at;
    this.type[slot] = type;
    this.argA[slot] = a;
    this.argB[slot] = b;
    this.count++;
    this.insert(slot, at);
  }

  /** Files an event in the tier that holds its time. */
  private insert(slot: number, at: number): void {
    const next = this.next;
    next[slot] = NONE;
    if (at >= this.topStart) {
      if (this.topTail === NONE) this.topHead = slot;
      else next[this.topTail] = slot;
      this.topTail = slot;
      this.topCount++;
      if (at > this.topMax) this.topMax = at;
      return;
    }
    for (let r = 0; r < this.rungs; r++) {
      if (at >= this.rungCurrentStart[r]) {
        this.appendToBucket(r, slot, at);
        return;
      }
    }
    this.insertIntoBottom(slot, at);
  }

  private appendToBucket(r: number, slot: number, at: number): void {
    let b = Math.floor((at - this.rungStart[r]) / this.rungWidth[r]);
    const last = this.rungBuckets[r] - 1;
    if (b > last) b = last;
    const head = this.bucketHead[r];
    const tail = this.bucketTail[r];
    if (head[b] === NONE) head[b] = slot;
    else this.next[tail[b]] = slot;
    tail[b] = slot;
    this.bucketCount[r][b]++;
    this.rungCount[r]++;
  }

  /** Sorted insertion, after every event of the same or an earlier time. */
  private insertIntoBottom(slot: number, at: number): void {
    const time = this.time;
    const next = this.next;
    if (this.bottomHead === NONE) {
      this.bottomHead = this.bottomTail = slot;
    } else if (time[this.bottomTail] <= at) {
      next[this.bottomTail] = slot;
      this.bottomTail = slot;
    } else if (at < time[this.bottomHead]) {
      next[slot] = this.bottomHead;
      this.bottomHead = slot;
    } else if (this.bottomCount > 4 * SORT_THRESHOLD && this.rungs < MAX_RUNGS) {
      // A long bottom would make every insertion a long walk: spread it over a finer rung instead.
      this.bottomToRung();
      this.insert(slot, at);
      return;
    } else {
      let before = this.bottomHead;
      while (time[next[before]] <= at) before = next[before];
      next[slot] = next[before];
      next[before] = slot;
    }
    this.bottomCount++;
  }

  /** Runs the earliest event; returns false when none is left. */
  step(): boolean {
    if (this.bottomHead === NONE && !this.refill()) return false;
    const slot = this.bottomHead;
    this.bottomHead = this.next[slot];
    if (this.bottomHead === NONE) this.bottomTail = NONE;
    this.bottomCount--;
    this.count--;
    this.now = this.time[slot];
    this.freeSlots[this.freeCount++] = slot;
    this.eventsProcessed++;
    this.handlers[this.type[slot]](this.argA[slot], this.argB[slot]);
    return true;
  }

  /** Runs events until none is left or the next one lies after `until` (ns). */
  run(until = Infinity): void {
    while ((this.bottomHead !== NONE || this.refill()) && this.time[this.bottomHead] <= until) this.step();
    if (until !== Infinity && until > this.now) this.now = until;
  }

  /** Fills the empty bottom from the ladder, or the ladder from the top; false when no event is pending. */
  private refill(): boolean {
    while (this.bottomHead === NONE) {
      if (this.rungs === 0) {
        if (this.topCount === 0) return false;
        this.topToRung();
        continue;
      }
      const r = this.rungs - 1;
      if (this.rungCount[r] === 0) {
        // The rung is used up: the range it had left now belongs to the rung above (or to the bottom).
        this.rungs--;
        continue;
      }
      const head = this.bucketHead[r];
      let b = this.rungCurrent[r];
      while (head[b] === NONE) b++;
      const list = head[b];
      const n = this.bucketCount[r][b];
      head[b] = NONE;
      this.bucketCount[r][b] = 0;
      this.rungCount[r] -= n;
      const width = this.rungWidth[r];
      const bucketStart = this.rungStart[r] + b * width;
      this.rungCurrent[r] = b + 1;
      // The last bucket also held every later time below the tier above: once it is taken, the rung takes no more.
      this.rungCurrentStart[r] = b === this.rungBuckets[r] - 1 ? Infinity : bucketStart + width;
      this.lower(list, n);
    }
    return true;
  }

  /** Moves the top onto a new first rung (the ladder is empty), or straight into the bottom when it is small. */
  private topToRung(): void {
    const list = this.topHead;
    const n = this.topCount;
    const max = this.topMax;
    this.topHead = this.topTail = NONE;
    this.topCount = 0;
    this.topMax = -Infinity;
    this.topStart = max + 1;
    this.lower(list, n);
  }

  /** Moves a list taken from a bucket or the top one tier down: sorted into the bottom when short, else spread. */
  private lower(list: number, n: number): void {
    if (n <= SORT_THRESHOLD) this.sortIntoBottom(list, n);
    else this.spreadOrSort(list, n);
  }

  /**
   * A list too long to sort by insertion: when all its events share one instant it is already in order and becomes
   * the bottom as it is (a symmetric cluster has thousands of such events); otherwise it is spread over a new
   * rung fitted to the times it holds, or sorted when the ladder is as deep as it may grow.
   */
  private spreadOrSort(list: number, n: number): void {
    const time = this.time;
    const next = this.next;
    let min = time[list];
    let max = min;
    let last = list;
    for (let slot = next[list]; slot !== NONE; slot = next[slot]) {
      const t = time[slot];
      if (t < min) min = t;
      else if (t > max) max = t;
      last = slot;
    }
    if (min === max) {
      this.bottomHead = list;
      this.bottomTail = last;
      this.bottomCount = n;
    } else if (this.rungs < MAX_RUNGS) this.spread(list, n, min, max + 1);
    else this.sortIntoBottom(list, n);
  }

  /**
   * Spreads a list of `n` events with times in [from, to) over a new lowest rung of about n / 4 buckets starting at
   * `from`, keeping their order within each bucket. The last bucket also takes every later time below the tier
   * above (the range the rung's parent bucket had left), so the rung need not reach that far.
   */
  private spread(list: number, n: number, from: number, to: number): void {
    const r = this.rungs++;
    const width = Math.max(1, Math.ceil((EVENTS_PER_BUCKET * (to - from)) / n));
    const buckets = Math.ceil((to - from) / width);
    if (this.bucketHead[r].length < buckets) {
      const size = Math.max(buckets, 2 * this.bucketHead[r].length);
      this.bucketHead[r] = new Int32Array(size);
      this.bucketTail[r] = new Int32Array(size);
      this.bucketCount[r] = new Int32Array(size);
    }
    this.bucketHead[r].fill(NONE, 0, buckets);
    this.bucketCount[r].fill(0, 0, buckets);
    this.rungStart[r] = from;
    this.rungWidth[r] = width;
    this.rungBuckets[r] = buckets;
    this.rungCurrent[r] = 0;
    this.rungCurrentStart[r] = from;
    this.rungCount[r] = 0;
    const next = this.next;
    for (let slot = list; slot !== NONE; ) {
      const following = next[slot];
      next[slot] = NONE;
      this.appendToBucket(r, slot, this.time[slot]);
      slot = following;
    }
  }

  /** The bottom grew long: it becomes a new lowest rung. */
  private bottomToRung(): void {
    const list = this.bottomHead;
    const n = this.bottomCount;
    const to = this.time[this.bottomTail] + 1;
    this.bottomHead = this.bottomTail = NONE;
    this.bottomCount = 0;
    this.spread(list, n, this.time[list], to);
  }

  /** Sorts a list (in scheduling order among equal times) into the empty bottom, stably by time. */
  private sortIntoBottom(list: number, n: number): void {
    const time = this.time;
    const next = this.next;
    if (n > 4 * SORT_THRESHOLD) {
      // Rare (a bucket no rung can split): a stable native sort rather than a long insertion.
      const slots: number[] = [];
      for (let slot = list; slot !== NONE; slot = next[slot]) slots.push(slot);
      slots.sort((x, y) => time[x] - time[y]);
      for (let i = 0; i < n - 1; i++) next[slots[i]] = slots[i + 1];
      next[slots[n - 1]] = NONE;
      this.bottomHead = slots[0];
      this.bottomTail = slots[n - 1];
      this.bottomCount = n;
      return;
    }
    for (let slot = list; slot !== NONE; ) {
      const following = next[slot];
      next[slot] = NONE;
      this.insertIntoBottom(slot, time[slot]);
      slot = following;
    }
  }

  private grow(): void {
    const n = this.type.length * 2;
    this.time = grown(this.time, n);
    this.next = grown(this.next, n);
    this.type = grown(this.type, n);
    this.argA = grown(this.argA, n);
    this.argB = grown(this.argB, n);
    this.freeSlots = grown(this.freeSlots, n);
  }
}
