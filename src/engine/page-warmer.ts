import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { AllocationHook, ColumnConstructor } from './allocation.js';

/**
 * Faults in the pages of large arrays on a helper thread, ahead of the thread that writes them.
 *
 * Simulating a big step writes ~100 MiB of fresh memory, and every fresh 4 KiB page costs the writing thread a
 * page fault. On the virtual machines dtsim is benchmarked on a fault costs ~12 µs (about 3 ms per MiB, mostly in
 * the host), so on GPT-3 over 1,024 GPUs the faults cost more than the computing. Faults of two threads proceed in
 * parallel there (measured: 2 × 128 MiB take 0.9 s on one thread, 0.48 s on two), and the second core is
 * otherwise idle; so a helper thread touches the pages first and the writer finds them mapped.
 *
 * Two ways to follow an array:
 * - `follow`: an array filled from its start (a graph column): the helper touches a window ahead of the fill the
 *   writer reports with `filled`, so that no time goes into pages a generous reservation never uses;
 * - `prepare`: an array the writer will use all of (per-operation state of the executor): touched from its start
 *   whenever the followed arrays leave the helper nothing to do.
 *
 * Touching must not change a value the writer may be writing at that moment: the helper writes with
 * `Atomics.compareExchange(a, i, 0, 0)`, which stores only where it reads zero and stores zero there, so every
 * value is the same with and without the helper; results stay byte-identical. The helper only speeds things up:
 * if it falls behind it skips to the writer's position, and if it cannot start, nothing changes.
 */

/** Arrays one warmer can hold. */
const MAX_ARRAYS = 64;
/**
 * Shared Int32 slots: a stop flag, a generation the writer bumps when it reports, whether the helper sleeps (waking
 * it costs an interrupt between virtual CPUs, so only a sleeping helper is woken), then per array its fill and its
 * window (bytes).
 */
const STOP = 0;
const GENERATION = 1;
const SLEEPING = 2;
const FILL = 3;
const WINDOW = FILL + MAX_ARRAYS;
/** A window that covers any array: touch it all. */
const WHOLE = 0x7fffffff;
/** Pages of prepared arrays the helper touches between two looks at the followed ones. */
const PREPARE_BATCH = 256;

/** Runs in the helper thread (CommonJS, evaluated): kept as source so it needs no file of its own at run time. */
const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { port, progress } = workerData;
const PAGE = 4096;
const p = new Int32Array(progress);
const views = [];
const next = [];
let idleRounds = 0;
for (;;) {
  if (Atomics.load(p, ${STOP}) === 1) break;
  const generation = Atomics.load(p, ${GENERATION});
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    views.push(new Int32Array(m.message));
    next.push(0);
  }
  let touched = 0;
  // Followed arrays first, up to their window past the fill; then a batch of a prepared one.
  for (let i = 0; i < views.length; i++) {
    const window = Atomics.load(p, ${WINDOW} + i);
    if (window === ${WHOLE}) continue;
    const filled = Atomics.load(p, ${FILL} + i);
    // The writer's pages behind its position are mapped already: start from there.
    if (next[i] < filled) next[i] = filled - (filled % PAGE);
    const target = Math.min(views[i].byteLength, filled + window);
    for (; next[i] < target; next[i] += PAGE) {
      Atomics.compareExchange(views[i], next[i] >> 2, 0, 0);
      touched++;
    }
  }
  if (touched === 0) {
    for (let i = 0; i < views.length; i++) {
      if (Atomics.load(p, ${WINDOW} + i) !== ${WHOLE} || next[i] >= views[i].byteLength) continue;
      const target = Math.min(views[i].byteLength, next[i] + ${PREPARE_BATCH} * PAGE);
      for (; next[i] < target; next[i] += PAGE) {
        Atomics.compareExchange(views[i], next[i] >> 2, 0, 0);
        touched++;
      }
      break;
    }
  }
  if (touched > 0) idleRounds = 0;
  // Abandoned without stop(): give up after ~2 s with nothing to do rather than keep a thread.
  else {
    Atomics.store(p, ${SLEEPING}, 1);
    const woke = Atomics.wait(p, ${GENERATION}, generation, 20);
    Atomics.store(p, ${SLEEPING}, 0);
    if (woke === 'timed-out' && ++idleRounds === 100) break;
  }
}
port.close();
`;

type SharedArrayConstructor<T> = (new (buffer: SharedArrayBuffer) => T) & { BYTES_PER_ELEMENT: number };

export class PageWarmer {
  private readonly progress = new Int32Array(new SharedArrayBuffer((WINDOW + MAX_ARRAYS) * 4));
  private readonly buffers: SharedArrayBuffer[] = [];
  private readonly bytesPerElement: number[] = [];
  private readonly port: MessagePort;
  private worker: Worker | undefined;
  /** Resolves once the helper thread runs: lets a test make the helper race the writer for real. */
  readonly online: Promise<void>;

  /** Starts the helper thread; `undefined` where threads are unavailable (then callers allocate as usual). */
  static start(): PageWarmer | undefined {
    try {
      return new PageWarmer();
    } catch {
      return undefined;
    }
  }

  private constructor() {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(HELPER_SOURCE, { eval: true, workerData: { port: port2, progress: this.progress.buffer }, transferList: [port2] });
    this.worker = worker;
    this.port = port1;
    this.online = new Promise((resolve) => worker.once('online', () => resolve()));
    // A helper that fails only costs the speed-up; it must never fail the simulation or keep the process alive.
    worker.on('error', () => {});
    worker.unref();
    port1.unref();
  }

  /**
   * A zeroed array of `length` elements filled from its start: the helper touches its pages up to `aheadElements`
   * past the fill last reported with `filled`. Returns the array and its slot.
   */
  follow<T>(make: SharedArrayConstructor<T>, length: number, aheadElements: number): { array: T; slot: number } {
    const slot = this.add(make, length, Math.min(WHOLE - 1, aheadElements * make.BYTES_PER_ELEMENT));
    return { array: new make(this.buffers[slot]), slot };
  }

  /** A zeroed array of `length` elements whose pages the helper touches whole, when the followed arrays allow. */
  prepare<T>(make: SharedArrayConstructor<T>, length: number): T {
    return new make(this.buffers[this.add(make, length, WHOLE)]);
  }

  /** Records that the array in `slot` is filled up to `elements`; seen by the helper at the next `publish()`. */
  filled(slot: number, elements: number): void {
    this.progress[FILL + slot] = Math.min(WHOLE - 1, elements * this.bytesPerElement[slot]);
  }

  /** The array in `slot` is complete: the helper stops touching ahead of it. */
  finished(slot: number): void {
    this.progress[WINDOW + slot] = 0;
  }

  /** Wakes the helper to read what was recorded since the last call. */
  publish(): void {
    Atomics.add(this.progress, GENERATION, 1);
    if (Atomics.load(this.progress, SLEEPING) === 1) Atomics.notify(this.progress, GENERATION);
  }

  /** Stops the helper: nothing more to prepare. */
  stop(): void {
    if (this.worker === undefined) return;
    Atomics.store(this.progress, STOP, 1);
    Atomics.notify(this.progress, GENERATION);
    this.worker = undefined;
    this.port.close();
  }

  private add(make: { BYTES_PER_ELEMENT: number }, length: number, windowBytes: number): number {
    if (this.buffers.length === MAX_ARRAYS) throw new Error(`a page warmer holds at most ${MAX_ARRAYS} arrays`);
    // Rounded up to whole Int32 words: the helper touches through an Int32Array view.
    const buffer = new SharedArrayBuffer(Math.max(4, Math.ceil((length * make.BYTES_PER_ELEMENT) / 4) * 4));
    const slot = this.buffers.length;
    this.buffers.push(buffer);
    this.bytesPerElement.push(make.BYTES_PER_ELEMENT);
    this.progress[WINDOW + slot] = windowBytes;
    this.port.postMessage(buffer);
    this.publish();
    return slot;
  }
}

/**
 * An allocation hook on a page warmer: the graph's columns are followed as they fill, and the executor's
 * per-operation arrays are prepared whole as soon as the graph builder says how many operations it reserved room
 * for, so that their pages are mapped while the step is still being built.
 */
export function pageWarmedAllocation(warmer: PageWarmer): AllocationHook {
  const prepared: (Float64Array | Int32Array)[] = [];
  return {
    follow: (make, length, aheadElements) => warmer.follow(make, length, aheadElements),
    filled: (slot, elements) => warmer.filled(slot, elements),
    finished: (slot) => warmer.finished(slot),
    publish: () => warmer.publish(),
    reserved(operations) {
      prepared.push(warmer.prepare(Float64Array, operations), warmer.prepare(Float64Array, operations), warmer.prepare(Int32Array, operations));
    },
    perOperation<T extends Float64Array | Int32Array>(make: ColumnConstructor<T>, length: number): T {
      const at = prepared.findIndex((array) => array instanceof make && array.length >= length);
      if (at < 0) return new make(length);
      return prepared.splice(at, 1)[0].subarray(0, length) as T;
    },
  };
}
