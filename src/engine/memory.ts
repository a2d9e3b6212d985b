import { TypedList } from './growable.js';

/**
 * Bytes in use per memory location (a device's HBM, a node's host memory or
 * NVMe, ...) and per category, over simulated time.
 *
 * Going over a location's capacity is recorded, not thrown: "does not fit" is a
 * result. Going below zero is a bug in whoever built the operations, and is
 * recorded too so the caller can fail loudly.
 */
export interface Overflow {
  location: number;
  /** First time usage exceeded capacity, ns. */
  firstAtNs: number;
  /** Largest excess over capacity, bytes. */
  maxExcessBytes: number;
  /** When the largest excess happened, ns. */
  maxAtNs: number;
}

/** Bytes below zero a location may show from rounding changes to whole bytes before that counts as a fault. */
const ROUNDING_DUST = 64;

export class MemoryTracker {
  readonly used: Float64Array;
  readonly peak: Float64Array;
  readonly peakAtNs: Float64Array;
  /** Bytes per (location, category) in use now. */
  readonly byCategory: Float64Array;
  /** Bytes per (location, category) at the location's peak. */
  readonly peakByCategory: Float64Array;
  /** Highest bytes each (location, category) reached on its own, whenever that was. */
  readonly categoryPeak: Float64Array;
  // Overflow per location, in typed arrays: on a cluster that does not fit, every change checks one.
  private readonly overflowFirstAtNs: Float64Array;
  private readonly overflowMaxExcess: Float64Array;
  private readonly overflowMaxAtNs: Float64Array;
  /** Locations that went below zero (a bug in the operation graph). */
  readonly negative = new Set<number>();

  // Optional timeline: (time, location, category bytes...) samples for counters in traces.
  /** Per location, 1 where its timeline is kept; undefined when none is. */
  private readonly recording: Uint8Array | undefined;
  readonly sampleTimeNs: TypedList<Float64Array>;
  readonly sampleLocation: TypedList<Int32Array>;
  readonly sampleValues: TypedList<Float64Array>;

  constructor(
    readonly locations: number,
    readonly categories: number,
    readonly capacity: Float64Array,
    options: { record?: boolean | Uint8Array } = {},
  ) {
    this.used = new Float64Array(locations);
    this.peak = new Float64Array(locations);
    this.peakAtNs = new Float64Array(locations);
    this.byCategory = new Float64Array(locations * categories);
    this.peakByCategory = new Float64Array(locations * categories);
    this.categoryPeak = new Float64Array(locations * categories);
    const record = options.record ?? false;
    this.overflowFirstAtNs = new Float64Array(locations).fill(-1);
    this.overflowMaxExcess = new Float64Array(locations);
    this.overflowMaxAtNs = new Float64Array(locations);
    this.recording = record === false ? undefined : record === true ? new Uint8Array(locations).fill(1) : record;
    // Room for a timeline only when one is kept: a search makes thousands of trackers that record nothing.
    const room = this.recording ? 1 << 16 : 16;
    this.sampleTimeNs = new TypedList(Float64Array, room);
    this.sampleLocation = new TypedList(Int32Array, room);
    this.sampleValues = new TypedList(Float64Array, room);
  }

  /**
   * Adds `bytes` (negative to free) to `category` of `location` at time `nowNs`. Memory is counted in whole bytes: a
   * fraction (a shard of a tensor its group does not divide evenly) is rounded, half away from zero so that an
   * allocation and its release cancel. Sums of whole bytes are exact, so a location's use does not depend on the
   * order of changes that fall at the same instant.
   */
  change(location: number, category: number, fractionalBytes: number, nowNs: number): void {
    const bytes = fractionalBytes < 0 ? -Math.round(-fractionalBytes) : Math.round(fractionalBytes);
    const used = this.used[location] + bytes;
    this.used[location] = used;
    const k = location * this.categories + category;
    this.byCategory[k] += bytes;
    if (this.byCategory[k] > this.categoryPeak[k]) this.categoryPeak[k] = this.byCategory[k];
    if (used > this.peak[location]) {
      this.peak[location] = used;
      this.peakAtNs[location] = nowNs;
      const base = location * this.categories;
      for (let c = 0; c < this.categories; c++) this.peakByCategory[base + c] = this.byCategory[base + c];
    }
    // Tolerate the rounding of fractional changes: an amount freed in other pieces than it was allocated in may
    // round a byte or so differently. A bug in the graph frees far more.
    const dust = ROUNDING_DUST + 1e-6 * Math.abs(bytes);
    if (used < -dust || this.byCategory[k] < -dust) {
      this.negative.add(location);
    }
    const excess = used - this.capacity[location];
    if (excess > 0) {
      if (this.overflowFirstAtNs[location] < 0) this.overflowFirstAtNs[location] = nowNs;
      if (excess > this.overflowMaxExcess[location]) {
        this.overflowMaxExcess[location] = excess;
        this.overflowMaxAtNs[location] = nowNs;
      }
    }
    if (this.recording?.[location] === 1) this.sample(location, nowNs);
  }

  private sample(location: number, nowNs: number): void {
    this.sampleTimeNs.push(nowNs);
    this.sampleLocation.push(location);
    const base = location * this.categories;
    for (let c = 0; c < this.categories; c++) this.sampleValues.push(this.byCategory[base + c]);
  }

  /** Every location that went over capacity, in location order. */
  get overflows(): Overflow[] {
    const out: Overflow[] = [];
    for (let l = 0; l < this.locations; l++) {
      if (this.overflowFirstAtNs[l] >= 0) out.push({ location: l, firstAtNs: this.overflowFirstAtNs[l], maxExcessBytes: this.overflowMaxExcess[l], maxAtNs: this.overflowMaxAtNs[l] });
    }
    return out;
  }

  /**
   * Makes location `to`'s record (use, peaks, overflow) a copy of location `from`'s: for a location known to have
   * gone through the same changes at the same times, without replaying them.
   */
  copyLocation(to: number, from: number): void {
    for (const column of [this.used, this.peak, this.peakAtNs, this.overflowFirstAtNs, this.overflowMaxExcess, this.overflowMaxAtNs]) column[to] = column[from];
    const c = this.categories;
    for (const column of [this.byCategory, this.peakByCategory, this.categoryPeak]) column.copyWithin(to * c, from * c, (from + 1) * c);
  }

  /** Records the current state of every location with memory in use (the start of the timeline). */
  snapshot(nowNs: number): void {
    if (!this.recording) return;
    for (let l = 0; l < this.locations; l++) if (this.used[l] !== 0 && this.recording[l] === 1) this.sample(l, nowNs);
  }
}
