import { Worker } from 'node:worker_threads';

/**
 * Faults in the pages of large arrays on a helper thread, just ahead of the thread that fills them.
 *
 * Building a big operation graph writes tens of MiB of fresh memory, and every fresh 4 KiB page costs the writing
 * thread a page fault. On the virtual machines dtsim is benchmarked on a fault costs ~12 µs (about 3 ms per MiB,
 * mostly in the host), so on GPT-3 over 1,024 GPUs the faults cost more than the building itself. Faults of two
 * threads proceed in parallel there (measured: 2 × 128 MiB take 0.9 s on one thread, 0.48 s on two), and the
 * second core is otherwise idle while the graph is built; so a helper thread touches each array's pages a little
 * ahead of where the builder writes, and the builder finds them already mapped.
 *
 * Touching must not change a value the builder may be writing at that moment: the helper writes with
 * `Atomics.compareExchange(a, i, 0, 0)`, which stores only where it reads zero (fresh memory) and stores zero
 * there, so every value is the same with and without the helper; results stay byte-identical. The helper only
 * speeds things up: if it falls behind, it skips to the builder's position; if it cannot start, nothing changes.
 */

/** Arrays one warmer can follow. */
const MAX_ARRAYS = 48;
/** Slots of the shared progress array before the per-array fill counts. */
const STOP = 0;
const GENERATION = 1;
const FIRST_FILL = 2;

/** Runs in the helper thread (CommonJS, evaluated): kept as source so it needs no file of its own at run time. */
const HELPER_SOURCE = `
const { parentPort } = require('node:worker_threads');
parentPort.once('message', ({ progress, arrays, aheadBytes }) => {
  const PAGE = 4096;
  const p = new Int32Array(progress);
  const views = arrays.map((a) => new Int32Array(a.buffer));
  const next = arrays.map(() => 0);
  let idleRounds = 0;
  for (;;) {
    if (Atomics.load(p, ${STOP}) === 1) break;
    const generation = Atomics.load(p, ${GENERATION});
    let touched = 0;
    for (let i = 0; i < views.length; i++) {
      const view = views[i];
      const filled = Atomics.load(p, ${FIRST_FILL} + i) * arrays[i].bytesPerElement;
      // The builder's pages behind its position are mapped already: start from there.
      if (next[i] < filled) next[i] = filled - (filled % PAGE);
      const target = Math.min(view.byteLength, filled + aheadBytes[i]);
      for (let at = next[i]; at < target; at += PAGE) {
        Atomics.compareExchange(view, at >> 2, 0, 0);
        touched++;
      }
      if (target > next[i]) next[i] = target;
    }
    if (touched > 0) idleRounds = 0;
    // A builder that stops reporting (abandoned without build()) must not keep a thread: give up after ~2 s idle.
    else if (Atomics.wait(p, ${GENERATION}, generation, 20) === 'timed-out' && ++idleRounds === 100) break;
  }
  parentPort.close();
});
`;

type SharedArrayConstructor<T> = new (buffer: SharedArrayBuffer) => T;

export class PageWarmer {
  private readonly progress = new Int32Array(new SharedArrayBuffer((FIRST_FILL + MAX_ARRAYS) * 4));
  private readonly arrays: { buffer: SharedArrayBuffer; bytesPerElement: number }[] = [];
  private readonly aheadBytes: number[] = [];
  private worker: Worker | undefined;
  /** Resolves once the helper thread runs: lets a test make the helper race the writer for real. */
  readonly online: Promise<void>;

  /** Starts the helper thread; `undefined` where threads are unavailable (then callers allocate as usual). */
  static start(): PageWarmer | undefined {
    try {
      return new PageWarmer(new Worker(HELPER_SOURCE, { eval: true }));
    } catch {
      return undefined;
    }
  }

  private constructor(worker: Worker) {
    this.worker = worker;
    this.online = new Promise((resolve) => worker.once('online', () => resolve()));
    // A helper that fails only costs the speed-up; it must never fail the simulation.
    worker.on('error', () => {});
    worker.unref();
  }

  /**
   * A zeroed array of `length` elements on shared memory, followed by the helper; its pages are touched up to
   * `aheadElements` past what `filled` last reported. Returns the array and its slot for `filled`.
   */
  allocate<T extends { readonly byteLength: number }>(make: SharedArrayConstructor<T> & { BYTES_PER_ELEMENT: number }, length: number, aheadElements: number): { array: T; slot: number } {
    if (this.arrays.length === MAX_ARRAYS) throw new Error(`a page warmer follows at most ${MAX_ARRAYS} arrays`);
    // Rounded up to whole Int32 words: the helper touches through an Int32Array view.
    const buffer = new SharedArrayBuffer(Math.ceil((length * make.BYTES_PER_ELEMENT) / 4) * 4);
    this.arrays.push({ buffer, bytesPerElement: make.BYTES_PER_ELEMENT });
    this.aheadBytes.push(aheadElements * make.BYTES_PER_ELEMENT);
    return { array: new make(buffer), slot: this.arrays.length - 1 };
  }

  /** Hands the arrays allocated so far to the helper, which then starts touching. */
  begin(): void {
    this.worker?.postMessage({ progress: this.progress.buffer, arrays: this.arrays, aheadBytes: this.aheadBytes });
  }

  /** Records that the array in `slot` is filled up to `elements`; seen by the helper at the next `publish()`. */
  filled(slot: number, elements: number): void {
    this.progress[FIRST_FILL + slot] = elements;
  }

  /** Wakes the helper to read the fills recorded since the last call. */
  publish(): void {
    Atomics.add(this.progress, GENERATION, 1);
    Atomics.notify(this.progress, GENERATION);
  }

  /** Stops the helper: the arrays are filled. */
  stop(): void {
    if (this.worker === undefined) return;
    Atomics.store(this.progress, STOP, 1);
    Atomics.notify(this.progress, GENERATION);
    this.worker = undefined;
  }
}
