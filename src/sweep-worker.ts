import { parentPort } from 'node:worker_threads';
import { assessCandidates } from './plan-assess.js';
import { runEntry } from './sweep.js';
import type { WorkerJob } from './sweep-run.js';

/** The worker thread of sweeps and plans: runs the jobs it is sent, one at a time, and posts each reply back. */
parentPort!.on('message', (job: WorkerJob) => parentPort!.postMessage(job.kind === 'entry' ? runEntry(job.sweep, job.entry) : assessCandidates(job.request)));
