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
 */
export interface LinkSet {
  readonly count: number;
  readonly capacityBytesPerSecond: Float64Array;
  /** 1 where the link can limit a flow; 0 where it provably never can. */
  readonly binding: Uint8Array;
}

export type FlowDoneListener = (owner: number) => void;

export class FlowNetwork {
  /** Bytes delivered over each link (every link of a path counts the bytes it carried). */
  readonly linkBytes: Float64Array;

  private readonly flowsOnLink: number[][];
  private readonly linkStamp: Int32Array;
  private readonly residual: Float64Array;
  private readonly unfrozen: Int32Array;
  private epoch = 0;

  // Flow pool.
  private path: Int32Array[] = [];
  private remaining = new Float64Array(64);
  private rate = new Float64Array(64);
  private lastUpdate = new Float64Array(64);
  private total = new Float64Array(64);
  private owner = new Int32Array(64);
  private version = new Int32Array(64);
  private flowStamp = new Int32Array(64);
  private frozen = new Uint8Array(64);
  private freeFlows: number[] = [];
  private flowsUsed = 0;
  private active = 0;

  // Scratch lists reused by every rebalance.
  private readonly compFlows: number[] = [];
  private readonly compLinks: number[] = [];
  private readonly stack: number[] = [];
  private readonly seeds: number[] = [];

  private readonly completeType: number;

  constructor(
    private readonly kernel: EventKernel,
    private readonly links: LinkSet,
    private readonly onFlowDone: FlowDoneListener,
  ) {
    this.linkBytes = new Float64Array(links.count);
    this.flowsOnLink = Array.from({ length: links.count }, () => []);
    this.linkStamp = new Int32Array(links.count);
    this.residual = new Float64Array(links.count);
    this.unfrozen = new Int32Array(links.count);
    this.completeType = kernel.on((flow, version) => this.complete(flow, version));
  }

  /** Flows currently moving bytes. */
  get activeFlows(): number {
    return this.active;
  }

  /**
   * Starts a flow of `bytes` over `path` (link ids) for `owner`. Rates are not
   * recomputed until `rebalance()`, so an operation can start many flows at once.
   */
  start(path: Int32Array, bytes: number, owner: number): void {
    const f = this.freeFlows.length > 0 ? this.freeFlows.pop()! : this.newFlow();
    this.path[f] = path;
    this.remaining[f] = bytes;
    this.total[f] = bytes;
    this.rate[f] = 0;
    this.lastUpdate[f] = this.kernel.now;
    this.owner[f] = owner;
    this.version[f]++;
    this.active++;
    let bound = false;
    for (let i = 0; i < path.length; i++) {
      const link = path[i];
      if (this.links.binding[link] === 0) continue;
      this.flowsOnLink[link].push(f);
      this.seeds.push(link);
      bound = true;
    }
    // A path with no binding link (zero-length, or only non-binding fabric) delivers at once.
    if (!bound) this.kernel.schedule(this.kernel.now, this.completeType, f, this.version[f]);
  }

  /** Recomputes rates of every component touched since the last call. */
  rebalance(): void {
    if (this.seeds.length === 0) return;
    this.epoch++;
    const comp = this.compFlows;
    const compLinks = this.compLinks;
    comp.length = 0;
    compLinks.length = 0;
    const stack = this.stack;
    for (const link of this.seeds) {
      if (this.linkStamp[link] === this.epoch) continue;
      this.linkStamp[link] = this.epoch;
      stack.push(link);
    }
    this.seeds.length = 0;
    // Collect the connected component of links and flows.
    while (stack.length > 0) {
      const link = stack.pop()!;
      compLinks.push(link);
      const flows = this.flowsOnLink[link];
      for (let i = 0; i < flows.length; i++) {
        const f = flows[i];
        if (this.flowStamp[f] === this.epoch) continue;
        this.flowStamp[f] = this.epoch;
        comp.push(f);
        const p = this.path[f];
        for (let j = 0; j < p.length; j++) {
          const l = p[j];
          if (this.links.binding[l] === 0 || this.linkStamp[l] === this.epoch) continue;
          this.linkStamp[l] = this.epoch;
          stack.push(l);
        }
      }
    }
    const now = this.kernel.now;
    for (const f of comp) {
      this.settle(f, now);
      this.frozen[f] = 0;
    }
    for (const link of compLinks) {
      this.residual[link] = this.links.capacityBytesPerSecond[link];
      this.unfrozen[link] = this.flowsOnLink[link].length;
    }
    // Progressive filling.
    let left = comp.length;
    while (left > 0) {
      let bottleneck = -1;
      let share = Infinity;
      for (const link of compLinks) {
        const n = this.unfrozen[link];
        if (n === 0) continue;
        const s = this.residual[link] / n;
        if (s < share) {
          share = s;
          bottleneck = link;
        }
      }
      if (bottleneck < 0) break;
      for (const f of this.flowsOnLink[bottleneck]) {
        if (this.frozen[f] === 1) continue;
        this.frozen[f] = 1;
        left--;
        this.setRate(f, Math.max(share, 0), now);
        const p = this.path[f];
        for (let j = 0; j < p.length; j++) {
          const l = p[j];
          if (this.links.binding[l] === 0) continue;
          this.residual[l] -= share;
          this.unfrozen[l]--;
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
    const p = this.path[f];
    const bytes = this.total[f];
    for (let j = 0; j < p.length; j++) {
      const link = p[j];
      this.linkBytes[link] += bytes;
      if (this.links.binding[link] === 0) continue;
      const list = this.flowsOnLink[link];
      const at = list.indexOf(f);
      list[at] = list[list.length - 1];
      list.pop();
      this.seeds.push(link);
    }
    this.remaining[f] = 0;
    this.version[f]++;
    this.active--;
    this.freeFlows.push(f);
    const owner = this.owner[f];
    this.rebalance();
    this.onFlowDone(owner);
  }

  private newFlow(): number {
    const f = this.flowsUsed++;
    if (f === this.remaining.length) {
      const n = f * 2;
      this.remaining = grown(this.remaining, n);
      this.rate = grown(this.rate, n);
      this.lastUpdate = grown(this.lastUpdate, n);
      this.total = grown(this.total, n);
      this.owner = grown(this.owner, n);
      this.version = grown(this.version, n);
      this.flowStamp = grown(this.flowStamp, n);
      this.frozen = grown(this.frozen, n);
    }
    return f;
  }
}
