import { grown } from './growable.js';
import { EventKernel, NANOSECONDS_PER_SECOND } from './kernel.js';

/**
 * Flows over capacity-limited links, sharing bandwidth by max-min fairness.
 *
 * Each link is one direction of a physical link with a capacity in bytes per
 * second. A flow crosses a path of links and moves a number of bytes. Whenever a
 * flow starts or ends, the rates of the flows that share links with it
 * (transitively: the connected component) are recomputed by progressive filling:
 * the most contended link fixes the rate of its flows at its fair share, those
 * flows are frozen, and the rest continue on what capacity remains. A flow is
 * therefore limited by its bottleneck link, and no flow can gain without a slower
 * one losing.
 *
 * A link marked non-binding (its capacity is at least the sum of the capacities
 * that can feed it, such as a non-blocking switch fabric) can never be the
 * bottleneck, so leaving it out of the sharing gives exactly the same rates while
 * keeping components small.
 *
 * Rates are recomputed once per instant, after every flow that starts or ends at that instant: a ring's flows end
 * together, and recomputing after each one would cost the component's size squared for one answer (max-min rates
 * depend only on the set of flows, not on the order they came and went in).
 */
export interface LinkSet {
  readonly count: number;
  readonly capacityBytesPerSecond: Float64Array;
  /** 1 where the link can limit a flow; 0 where it provably never can. */
  readonly binding: Uint8Array;
}

export type FlowDoneListener = (owner: number) => void;

/** Links one flow may cross at the most (a rail-aligned path across a spine crosses 8). */
export const MAX_HOPS = 16;

/**
 * Flows live in a pool of typed arrays; each keeps its path in a slot of `MAX_HOPS` links. A flow's membership
 * in a link's list of flows is an entry `flow * MAX_HOPS + hop`, chained both ways, so a flow joins and leaves a
 * link in constant time and nothing is allocated while the network runs.
 */
export class FlowNetwork {
  /** Bytes delivered over each link (every link of a path counts the bytes it carried). */
  readonly linkBytes: Float64Array;

  // Flows on each binding link, in the order they joined: a doubly linked list of entries.
  private readonly linkHead: Int32Array;
  private readonly linkTail: Int32Array;
  private readonly linkFlows: Int32Array;
  private entryNext = new Int32Array(64 * MAX_HOPS);
  private entryPrev = new Int32Array(64 * MAX_HOPS);

  private readonly linkStamp: Int32Array;
  private readonly residual: Float64Array;
  private readonly unfrozen: Int32Array;
  /** Each link's index in the component being rebalanced. */
  private readonly linkPosition: Int32Array;
  private epoch = 0;

  // Flow pool.
  private pathLinks = new Int32Array(64 * MAX_HOPS);
  private hops = new Uint8Array(64);
  private remaining = new Float64Array(64);
  private rate = new Float64Array(64);
  private lastUpdate = new Float64Array(64);
  private total = new Float64Array(64);
  private owner = new Int32Array(64);
  private version = new Int32Array(64);
  private flowStamp = new Int32Array(64);
  private frozen = new Uint8Array(64);
  private freeFlows = new Int32Array(64);
  private freeCount = 0;
  private flowsUsed = 0;
  private active = 0;

  // Scratch lists reused by every rebalance.
  private compFlows = new Int32Array(64);
  private compLinks: Int32Array;
  private stack: Int32Array;
  private seeds = new Int32Array(64);
  private seedCount = 0;

  private readonly completeType: number;
  private readonly rebalanceType: number;
  private rebalancePending = false;
  private readonly binding: Uint8Array;
  private readonly capacity: Float64Array;

  constructor(
    private readonly kernel: EventKernel,
    links: LinkSet,
    private readonly onFlowDone: FlowDoneListener,
  ) {
    this.binding = links.binding;
    this.capacity = links.capacityBytesPerSecond;
    this.linkBytes = new Float64Array(links.count);
    this.linkHead = new Int32Array(links.count).fill(-1);
    this.linkTail = new Int32Array(links.count).fill(-1);
    this.linkFlows = new Int32Array(links.count);
    this.linkStamp = new Int32Array(links.count);
    this.residual = new Float64Array(links.count);
    this.unfrozen = new Int32Array(links.count);
    this.linkPosition = new Int32Array(links.count);
    this.compLinks = new Int32Array(links.count);
    this.stack = new Int32Array(links.count);
    this.completeType = kernel.on((flow, version) => this.complete(flow, version));
    this.rebalanceType = kernel.on(() => {
      this.rebalancePending = false;
      this.rebalance();
    });
  }

  /** Flows currently moving bytes. */
  get activeFlows(): number {
    return this.active;
  }

  /**
   * Starts a flow of `bytes` over the first `hops` links of `path` for `owner`. The path is copied, so the caller
   * may reuse its buffer. Rates are not recomputed until `rebalance()` or `rebalanceThisInstant()`, so an operation
   * can start many flows at once.
   */
  start(path: Int32Array, bytes: number, owner: number, hops = path.length): void {
    if (hops > MAX_HOPS) throw new RangeError(`a path of ${hops} links is longer than the ${MAX_HOPS} a flow can cross`);
    const f = this.freeCount > 0 ? this.freeFlows[--this.freeCount] : this.newFlow();
    this.hops[f] = hops;
    this.remaining[f] = bytes;
    this.total[f] = bytes;
    this.rate[f] = 0;
    this.lastUpdate[f] = this.kernel.now;
    this.owner[f] = owner;
    this.version[f]++;
    this.active++;
    let bound = false;
    let alone = true;
    let bottleneck = Infinity;
    const base = f * MAX_HOPS;
    for (let i = 0; i < hops; i++) {
      const link = path[i];
      this.pathLinks[base + i] = link;
      if (this.binding[link] === 0) continue;
      this.join(base + i, link);
      bound = true;
      if (this.linkFlows[link] > 1) alone = false;
      if (this.capacity[link] < bottleneck) bottleneck = this.capacity[link];
    }
    // A path with no binding link (zero-length, or only non-binding fabric) delivers at once.
    if (!bound) this.kernel.schedule(this.kernel.now, this.completeType, f, this.version[f]);
    // Alone on every link it crosses, the flow is its own component: max-min gives it its bottleneck's capacity,
    // which is what progressive filling would compute, without the search. Otherwise its links seed a rebalance.
    else if (alone) this.setRate(f, bottleneck, this.kernel.now);
    else for (let i = 0; i < hops; i++) if (this.binding[path[i]] === 1) this.pushSeed(path[i]);
  }

  /**
   * Recomputes rates once every event of this instant has run: events already queued for now run first (the
   * kernel's ties are first in, first out), so flows that end together, and operations that start together, share
   * one recomputation. That order only saves work: no time passes before the recomputation, so no flow moves a byte
   * at a stale rate, and a change after it asks for another.
   */
  rebalanceThisInstant(): void {
    if (this.rebalancePending || this.seedCount === 0) return;
    this.rebalancePending = true;
    this.kernel.schedule(this.kernel.now, this.rebalanceType, 0, 0);
  }

  /** Recomputes rates of every component touched since the last call. */
  rebalance(): void {
    if (this.seedCount === 0) return;
    const epoch = ++this.epoch;
    const { linkStamp, flowStamp, pathLinks, hops, binding, entryNext, linkHead, stack } = this;
    let compCount = 0;
    let compLinkCount = 0;
    let top = 0;
    for (let i = 0; i < this.seedCount; i++) {
      const link = this.seeds[i];
      if (linkStamp[link] === epoch) continue;
      linkStamp[link] = epoch;
      stack[top++] = link;
    }
    this.seedCount = 0;
    // Collect the connected component of links and flows.
    while (top > 0) {
      const link = stack[--top];
      this.compLinks[compLinkCount++] = link;
      for (let e = linkHead[link]; e >= 0; e = entryNext[e]) {
        const f = (e / MAX_HOPS) | 0;
        if (flowStamp[f] === epoch) continue;
        flowStamp[f] = epoch;
        if (compCount === this.compFlows.length) this.compFlows = grown(this.compFlows, compCount * 2);
        this.compFlows[compCount++] = f;
        const base = f * MAX_HOPS;
        for (let j = 0; j < hops[f]; j++) {
          const l = pathLinks[base + j];
          if (binding[l] === 0 || linkStamp[l] === epoch) continue;
          linkStamp[l] = epoch;
          stack[top++] = l;
        }
      }
    }
    const now = this.kernel.now;
    const comp = this.compFlows;
    const compLinks = this.compLinks;
    for (let i = 0; i < compCount; i++) {
      const f = comp[i];
      this.settle(f, now);
      this.frozen[f] = 0;
    }
    const { residual, unfrozen, linkPosition } = this;
    for (let i = 0; i < compLinkCount; i++) {
      const link = compLinks[i];
      residual[link] = this.capacity[link];
      unfrozen[link] = this.linkFlows[link];
      linkPosition[link] = i;
    }
    // Progressive filling: the link with the least fair share (the first in component order among equals) fixes
    // its flows' rates at that share, and so on. On a symmetric cluster many links tie, so after freezing one, the
    // next pick is looked for among the later links at the same share before scanning the whole component again.
    // That finds exactly the link a full scan would: freezing flows at the least share never lowers another link's
    // share, except by rounding, and any touched link that rounds to the share or below, ahead of the scan, forces
    // the full scan.
    let left = compCount;
    while (left > 0) {
      let bottleneck = -1;
      let share = Infinity;
      for (let i = 0; i < compLinkCount; i++) {
        const link = compLinks[i];
        const n = unfrozen[link];
        if (n === 0) continue;
        const s = residual[link] / n;
        if (s < share) {
          share = s;
          bottleneck = i;
        }
      }
      if (bottleneck < 0) break;
      while (bottleneck >= 0) {
        let rescan = false;
        for (let e = linkHead[compLinks[bottleneck]]; e >= 0; e = entryNext[e]) {
          const f = (e / MAX_HOPS) | 0;
          if (this.frozen[f] === 1) continue;
          this.frozen[f] = 1;
          left--;
          this.setRate(f, Math.max(share, 0), now);
          const base = f * MAX_HOPS;
          for (let j = 0; j < hops[f]; j++) {
            const l = pathLinks[base + j];
            if (binding[l] === 0) continue;
            residual[l] -= share;
            const n = --unfrozen[l];
            if (n > 0 && !rescan) {
              const s = residual[l] / n;
              rescan = s < share || (s === share && linkPosition[l] < bottleneck);
            }
          }
        }
        if (rescan) break;
        const from = bottleneck;
        bottleneck = -1;
        for (let i = from + 1; i < compLinkCount; i++) {
          const link = compLinks[i];
          const n = unfrozen[link];
          if (n > 0 && residual[link] / n === share) {
            bottleneck = i;
            break;
          }
        }
      }
    }
  }

  private setRate(f: number, rate: number, now: number): void {
    if (rate === this.rate[f] && this.version[f] > 0 && this.rate[f] > 0) return;
    this.rate[f] = rate;
    this.version[f]++;
    if (rate <= 0) return; // Starved: rescheduled when capacity frees up.
    const ns = Math.ceil((this.remaining[f] / rate) * NANOSECONDS_PER_SECOND);
    this.kernel.schedule(now + ns, this.completeType, f, this.version[f]);
  }

  private settle(f: number, now: number): void {
    const dt = now - this.lastUpdate[f];
    if (dt > 0) {
      const left = this.remaining[f] - (this.rate[f] * dt) / NANOSECONDS_PER_SECOND;
      this.remaining[f] = left > 0 ? left : 0;
    }
    this.lastUpdate[f] = now;
  }

  private complete(f: number, version: number): void {
    if (version !== this.version[f]) return; // superseded by a later rate change
    const bytes = this.total[f];
    const base = f * MAX_HOPS;
    for (let j = 0; j < this.hops[f]; j++) {
      const link = this.pathLinks[base + j];
      this.linkBytes[link] += bytes;
      if (this.binding[link] === 0) continue;
      this.leave(base + j, link);
      // Only links that still carry flows have rates to recompute.
      if (this.linkFlows[link] > 0) this.pushSeed(link);
    }
    this.remaining[f] = 0;
    this.version[f]++;
    this.active--;
    this.freeFlows[this.freeCount++] = f;
    const owner = this.owner[f];
    this.rebalanceThisInstant();
    this.onFlowDone(owner);
  }

  /** Appends entry `e` to the list of flows on `link`. */
  private join(e: number, link: number): void {
    const tail = this.linkTail[link];
    this.entryPrev[e] = tail;
    this.entryNext[e] = -1;
    if (tail >= 0) this.entryNext[tail] = e;
    else this.linkHead[link] = e;
    this.linkTail[link] = e;
    this.linkFlows[link]++;
  }

  private leave(e: number, link: number): void {
    const prev = this.entryPrev[e];
    const next = this.entryNext[e];
    if (prev >= 0) this.entryNext[prev] = next;
    else this.linkHead[link] = next;
    if (next >= 0) this.entryPrev[next] = prev;
    else this.linkTail[link] = prev;
    this.linkFlows[link]--;
  }

  private pushSeed(link: number): void {
    if (this.seedCount === this.seeds.length) this.seeds = grown(this.seeds, this.seedCount * 2);
    this.seeds[this.seedCount++] = link;
  }

  private newFlow(): number {
    const f = this.flowsUsed++;
    if (f === this.remaining.length) {
      const n = f * 2;
      this.pathLinks = grown(this.pathLinks, n * MAX_HOPS);
      this.entryNext = grown(this.entryNext, n * MAX_HOPS);
      this.entryPrev = grown(this.entryPrev, n * MAX_HOPS);
      this.hops = grown(this.hops, n);
      this.remaining = grown(this.remaining, n);
      this.rate = grown(this.rate, n);
      this.lastUpdate = grown(this.lastUpdate, n);
      this.total = grown(this.total, n);
      this.owner = grown(this.owner, n);
      this.version = grown(this.version, n);
      this.flowStamp = grown(this.flowStamp, n);
      this.frozen = grown(this.frozen, n);
      this.freeFlows = grown(this.freeFlows, n);
    }
    return f;
  }
}
