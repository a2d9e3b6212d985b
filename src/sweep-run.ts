import { appendFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { UsageError } from './errors.js';
import { writeFileAtomic } from './report/atomic.js';
import { formatLines, mergeLines, readLines, runEntry, type Shard, type Sweep, type SweepEntry, type SweepLine } from './sweep.js';

const WORKER = new URL('./sweep-worker.js', import.meta.url);

export interface SweepRunOptions {
  /** The JSON Lines file: entries already in it are skipped (a resumed run), new ones appended as they end. */
  output: string;
  shard?: Shard;
  /** Worker threads (default: the machine's parallelism; 1 runs in this thread). */
  workers?: number;
  /** Stops the run between entries; completed lines stay in the file. */
  signal?: AbortSignal;
  /** After each entry: entries done and to do in this shard (skipped ones count as done). */
  onProgress?: (done: number, total: number) => void;
}

export interface SweepRun {
  /** This shard's lines in entry order, those of earlier runs included. */
  lines: SweepLine[];
  /** Every entry of the shard is done; the file is then rewritten in entry order. */
  completed: boolean;
  ran: number;
  skipped: number;
}

/**
 * Runs a shard of a sweep. Each line is appended as its entry ends, so a stopped or killed run keeps its work; when
 * the whole shard is done the file is rewritten atomically in entry order, which is the file a single
 * uninterrupted run writes, whatever the order the workers finished in.
 */
export async function runSweep(sweep: Sweep, options: SweepRunOptions): Promise<SweepRun> {
  const shard = options.shard ?? { index: 0, count: 1 };
  const mine = sweep.entries.filter((e) => e.index % shard.count === shard.index);
  const previous = readLines(options.output);
  const other = previous.find((l) => l.sweep !== sweep.id);
  if (other) throw new UsageError(`${options.output} holds the output of another sweep (${other.sweep}, not ${sweep.id}): give another --output, or remove it`);
  const done = new Map(previous.filter((l) => l.index % shard.count === shard.index).map((l) => [l.index, l]));
  // Start from the complete lines only: a torn last line of a killed run goes.
  writeFileAtomic(options.output, formatLines(mergeLines([...done.values()], options.output)));
  const todo = mine.filter((e) => !done.has(e.index));
  const skipped = mine.length - todo.length;
  const finish = (line: SweepLine) => {
    appendFileSync(options.output, formatLines([line]));
    done.set(line.index, line);
    options.onProgress?.(done.size, mine.length);
  };
  options.onProgress?.(done.size, mine.length);
  await simulateEntries(sweep, todo, { workers: options.workers, signal: options.signal, onLine: finish });
  const completed = done.size === mine.length;
  const lines = mergeLines([...done.values()], options.output);
  if (completed) writeFileAtomic(options.output, formatLines(lines));
  return { lines, completed, ran: done.size - skipped, skipped };
}

/**
 * Simulates entries on worker threads (one per core unless `workers` says), calling `onLine` as each ends, in the
 * order they end; `signal` stops between entries. Worker threads run the compiled worker: from TypeScript sources
 * (a test runner), entries run in this thread.
 */
export async function simulateEntries(sweep: Pick<Sweep, 'id' | 'source' | 'set'>, entries: SweepEntry[], options: { workers?: number; signal?: AbortSignal; onLine: (line: SweepLine) => void }): Promise<void> {
  const threaded = existsSync(fileURLToPath(WORKER));
  const workers = threaded ? Math.max(1, Math.min(options.workers ?? availableParallelism(), entries.length)) : 1;
  if (workers > 1) return runInWorkers(sweep, entries, workers, options.onLine, options.signal);
  for (const entry of entries) {
    if (options.signal?.aborted) break;
    options.onLine(runEntry(sweep, entry));
    // Lets a signal handler run between entries.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Entries over a pool of worker threads, each given the next entry when it posts a line. */
function runInWorkers(sweep: Pick<Sweep, 'id' | 'source' | 'set'>, todo: SweepEntry[], count: number, finish: (line: SweepLine) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0;
    let running = 0;
    const pool: Worker[] = [];
    const stop = () => {
      for (const w of pool) void w.terminate();
      resolve();
    };
    signal?.addEventListener('abort', stop, { once: true });
    const feed = (worker: Worker) => {
      if (signal?.aborted || next >= todo.length) {
        void worker.terminate();
        if (--running === 0) {
          signal?.removeEventListener('abort', stop);
          resolve();
        }
        return;
      }
      worker.postMessage(todo[next++]);
    };
    for (let i = 0; i < count; i++) {
      const worker = new Worker(WORKER, { workerData: { id: sweep.id, source: sweep.source, set: sweep.set } });
      pool.push(worker);
      running++;
      worker.on('message', (line: SweepLine) => {
        if (signal?.aborted) return;
        finish(line);
        feed(worker);
      });
      worker.on('error', (error) => {
        for (const w of pool) void w.terminate();
        reject(error);
      });
      feed(worker);
    }
  });
}
