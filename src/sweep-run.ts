import { appendFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { UsageError } from './errors.js';
import { writeFileAtomic } from './report/atomic.js';
import { assessCandidates, type Assessment, type AssessRequest } from './plan-assess.js';
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
export async function simulateEntries(sweep: SweepSource, entries: SweepEntry[], options: { workers?: number; signal?: AbortSignal; onLine: (line: SweepLine) => void }): Promise<void> {
  const runner = entryRunner(Math.min(options.workers ?? availableParallelism(), entries.length));
  try {
    await runner.run(sweep, entries, options);
  } finally {
    runner.close();
  }
}

type SweepSource = Pick<Sweep, 'id' | 'source' | 'set' | 'symmetry'>;

/** What a worker thread is asked to do: simulate a sweep entry, or assess a batch of plan candidates. */
export type WorkerJob = { kind: 'entry'; sweep: SweepSource; entry: SweepEntry } | { kind: 'assess'; request: AssessRequest };

/** Runs batches of entries, one after another, on the same threads: a search that decides between batches. */
export interface EntryRunner {
  run(sweep: SweepSource, entries: SweepEntry[], options: { signal?: AbortSignal; onLine: (line: SweepLine) => void }): Promise<void>;
  /** Plan candidates checked and bounded (plan.ts's assessCandidates), spread over the threads, in the order given. */
  assess(request: AssessRequest, signal?: AbortSignal): Promise<Assessment[]>;
  close(): void;
}

/** Candidates per assessment job: enough to outweigh posting them, few enough to share out evenly. */
const ASSESS_BATCH = 128;

/** A runner on `workers` threads (kept between batches, since starting one costs about as much as a simulation), or in this thread. */
export function entryRunner(workers = availableParallelism()): EntryRunner {
  const threaded = existsSync(fileURLToPath(WORKER)) && workers > 1;
  const batches = (request: AssessRequest) => {
    const out: AssessRequest[] = [];
    for (let i = 0; i < request.items.length; i += ASSESS_BATCH) out.push({ ...request, items: request.items.slice(i, i + ASSESS_BATCH) });
    return out;
  };
  if (!threaded) {
    return {
      async run(sweep, entries, { signal, onLine }) {
        for (const entry of entries) {
          if (signal?.aborted) break;
          onLine(runEntry(sweep, entry));
          // Lets a signal handler run between entries.
          await new Promise((resolve) => setImmediate(resolve));
        }
      },
      async assess(request, signal) {
        const out: Assessment[] = [];
        for (const batch of batches(request)) {
          if (signal?.aborted) break;
          out.push(...assessCandidates(batch));
          // Lets a signal handler run between batches.
          await new Promise((resolve) => setImmediate(resolve));
        }
        return out;
      },
      close() {},
    };
  }
  const pool = Array.from({ length: Math.max(1, workers) }, () => new Worker(WORKER));
  // Workers are unref'd between batches, so that an idle pool never holds the process open.
  const idle = () => pool.forEach((w) => w.unref());
  idle();
  let closing = false;
  /** Why the pool broke (a worker's error or exit), for every batch asked of it after. */
  let broken: Error | undefined;
  /** The batch in progress: how to end it with an error. */
  let failCurrent: ((error: Error) => void) | undefined;
  // Listeners for the pool's whole life, so that an error or an exit between batches, or a second one within a
  // batch, is never left without a handler.
  const fail = (error: Error) => {
    if (closing) return;
    closing = true;
    broken = error;
    for (const w of pool) void w.terminate();
    failCurrent?.(error);
  };
  for (const worker of pool) {
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`a worker thread stopped (exit code ${code}) before its work was done`)));
  }
  /** Each job to the next free worker; `onReply` with each reply, in the order they come. */
  const dispatch = <R>(jobs: WorkerJob[], onReply: (reply: R) => void, signal?: AbortSignal): Promise<void> =>
    new Promise((resolve, reject) => {
      if (broken) return reject(broken);
      if (signal?.aborted || closing) return resolve();
      let next = 0;
      let running = 0;
      let settled = false;
      const listeners: [Worker, (reply: R) => void][] = [];
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        failCurrent = undefined;
        for (const [w, onMessage] of listeners) w.off('message', onMessage);
        signal?.removeEventListener('abort', stop);
        idle();
        if (error) reject(error);
        else resolve();
      };
      const stop = () => {
        closing = true;
        for (const w of pool) void w.terminate();
        finish();
      };
      failCurrent = finish;
      signal?.addEventListener('abort', stop, { once: true });
      const feed = (worker: Worker) => {
        if (next < jobs.length) {
          running++;
          worker.postMessage(jobs[next++]);
        } else if (running === 0) finish();
      };
      for (const worker of pool) {
        worker.ref();
        const onMessage = (reply: R) => {
          if (settled || signal?.aborted) return;
          running--;
          try {
            onReply(reply);
          } catch (error) {
            fail(error as Error);
            return;
          }
          feed(worker);
        };
        worker.on('message', onMessage);
        listeners.push([worker, onMessage]);
      }
      for (const worker of pool) feed(worker);
    });
  return {
    run: (sweep, entries, { signal, onLine }) => dispatch<SweepLine>(entries.map((entry) => ({ kind: 'entry', sweep, entry })), onLine, signal),
    async assess(request, signal) {
      const out: Assessment[] = [];
      await dispatch<Assessment[]>(batches(request).map((r) => ({ kind: 'assess', request: r })), (reply) => out.push(...reply), signal);
      const at = new Map(request.items.map((item, i) => [item.index, i]));
      return out.sort((x, y) => at.get(x.index)! - at.get(y.index)!);
    },
    close: () => {
      closing = true;
      for (const w of pool) void w.terminate();
    },
  };
}
