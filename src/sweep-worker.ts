import { parentPort, workerData } from 'node:worker_threads';
import { runEntry, type Sweep, type SweepEntry } from './sweep.js';

/** A sweep's worker thread: simulates the entries it is sent, one at a time, and posts each line back. */
const sweep = workerData as Pick<Sweep, 'id' | 'source' | 'set'>;
parentPort!.on('message', (entry: SweepEntry) => parentPort!.postMessage(runEntry(sweep, entry)));
