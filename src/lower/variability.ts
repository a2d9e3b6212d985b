import seedrandom from 'seedrandom';
import type { VariabilityConfig } from './config.js';

/**
 * Seeded variability: straggler devices, chosen by a seeded shuffle, run their compute slower by a factor; with
 * jitter, every compute operation's duration is drawn around its nominal value (a Gaussian of relative standard
 * deviation `jitter`, at least 5% of it), one draw per operation in creation order. With variability off no random
 * number is drawn, so results are exact and independent of the seed.
 */
export class Variability {
  private readonly rng: () => number;
  private readonly slowdown: Float64Array;
  private readonly jitter: number;

  constructor(seed: number, devices: number, config: VariabilityConfig) {
    this.rng = seedrandom(String(seed));
    this.jitter = config.jitter;
    this.slowdown = new Float64Array(devices).fill(1);
    if (config.stragglers > 0) {
      const ranks = Array.from({ length: devices }, (_, i) => i);
      for (let i = ranks.length - 1; i > 0; i--) {
        const j = Math.floor(this.rng() * (i + 1));
        [ranks[i], ranks[j]] = [ranks[j], ranks[i]];
      }
      for (let i = 0; i < config.stragglers; i++) this.slowdown[ranks[i]] = config.stragglerSlowdown;
    }
  }

  /** The duration of an operation of nominal `ns` on `device`, whole nanoseconds. */
  vary(ns: number, device: number): number {
    let factor = this.slowdown[device];
    if (this.jitter > 0) {
      const u = 1 - this.rng();
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.rng());
      factor *= Math.max(0.05, 1 + this.jitter * z);
    }
    return factor === 1 ? ns : Math.round(ns * factor);
  }
}
