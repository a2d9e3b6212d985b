import { checkChunks, roundRobin, type PassCosts, type PipelineSchedule, type ScheduledPass } from './schedule.js';

/**
 * Interleaved 1F1B (Megatron's virtual pipeline, Narayanan et al. SC21): each
 * device holds v chunks, round-robin (device i holds virtual stages i, i+p, ...).
 * Micro-batches go through the chunks in groups of N consecutive ones, N = p as
 * Megatron runs it by default; Llama 3 (Dubey et al., 2024, §3.3.2) tunes N to
 * trade memory for bubble. Device i warms up with (p-i-1)·2 + (v-1)·N forwards,
 * then alternates, then drains, as Megatron does; with N < p that fixed order
 * can deadlock, and the order is played out instead (playedOrder below). The
 * bubble shrinks by v, for v times the pipeline communication.
 */
export const interleaved: PipelineSchedule = {
  name: 'interleaved',
  description: 'Megatron virtual pipeline: v chunks per device, bubble divided by v, v times the p2p traffic',
  splitBackward: false,
  preferredChunks: 2,
  check(shape) {
    const chunks = checkChunks('interleaved', shape, (c) => c >= 2, 'at least 2 model chunks per device (chunks: 2 or more)');
    if (chunks.length > 0) return chunks;
    const group = shape.microBatchGroup;
    if (shape.microBatches % group !== 0) {
      const what = group === shape.pp ? `pp = ${shape.pp} (as Megatron implements it; parallel.microBatchGroup sets another group)` : `parallel.microBatchGroup = ${group}`;
      return [
        {
          path: ['training', 'globalBatch'],
          message: `the interleaved schedule runs micro-batches in groups of ${what}, but each replica has ${shape.microBatches}; make globalBatch / (microBatch x dp) a multiple of ${group}`,
        },
      ];
    }
    return [];
  },
  virtualStage: roundRobin,
  order({ stages: p, microBatches: m, chunks: v, microBatchGroup, costs }) {
    const n = microBatchGroup ?? p;
    const total = m * v;
    // The k-th forward (backward) of a device: which chunk and which micro-batch.
    const chunkOf = (k: number, forward: boolean) => {
      const c = Math.floor((k % (n * v)) / n);
      return forward ? c : v - 1 - c;
    };
    const microBatchOf = (k: number) => Math.floor(k / (n * v)) * n + (k % n);
    if (n < p && m !== n) return playedOrder(p, m, v, n, chunkOf, microBatchOf, costs);
    return Array.from({ length: p }, (_, device) => {
      const warmup = m === n ? total : Math.min(total, (p - device - 1) * 2 + (v - 1) * n);
      const order: ScheduledPass[] = [];
      const forward = (k: number) => order.push({ pass: 'F', microBatch: microBatchOf(k), chunk: chunkOf(k, true) });
      const backward = (k: number) => order.push({ pass: 'BW', microBatch: microBatchOf(k), chunk: chunkOf(k, false) });
      for (let k = 0; k < warmup; k++) forward(k);
      for (let k = 0; k < total - warmup; k++) {
        forward(warmup + k);
        backward(k);
      }
      for (let k = total - warmup; k < total; k++) backward(k);
      return order;
    });
  },
};


/**
 * Groups smaller than pp (Llama 3): Megatron's fixed warm-up can deadlock, since a chunk's forward then waits on a
 * micro-batch that has not come round the pipeline. Instead the pipeline is played forward in time with the pass
 * costs (equal ones when none are given): each device runs its forwards and its backwards each in the interleaved
 * order, a backward as soon as it can, a forward while it holds fewer than Megatron's warm-up bound of chunk
 * passes. The order is feasible by construction: the run itself is one execution of it.
 */
function playedOrder(p: number, m: number, v: number, n: number, chunkOf: (k: number, forward: boolean) => number, microBatchOf: (k: number) => number, costs?: PassCosts): ScheduledPass[][] {
  const V = p * v;
  const forwardCost = (vs: number) => costs?.forward[vs] ?? 1;
  const backwardCost = (vs: number) => (costs ? costs.inputGrad[vs] + costs.weightGrad[vs] : 2);
  const hop = costs?.p2p ?? 0;
  const endF = new Float64Array(V * m).fill(-1);
  const endB = new Float64Array(V * m).fill(-1);
  const nextF = new Int32Array(p);
  const nextB = new Int32Array(p);
  const free = new Float64Array(p);
  const order: ScheduledPass[][] = Array.from({ length: p }, () => []);
  const total = m * v;
  for (let placed = 0; placed < 2 * total * p; placed++) {
    let best = { start: Infinity, device: -1, backward: false };
    for (let d = 0; d < p; d++) {
      const consider = (ready: number, backward: boolean) => {
        const start = Math.max(ready, free[d]);
        if (start < best.start || (start === best.start && backward && !best.backward)) best = { start, device: d, backward };
      };
      if (nextB[d] < total) {
        const k = nextB[d];
        const vs = chunkOf(k, false) * p + d;
        const mb = microBatchOf(k);
        const after = vs === V - 1 ? endF[vs * m + mb] : endB[(vs + 1) * m + mb];
        if (after >= 0 && endF[vs * m + mb] >= 0) consider(vs === V - 1 ? after : after + hop, true);
      }
      const bound = Math.min(total, (p - d - 1) * 2 + (v - 1) * n + 1);
      if (nextF[d] < total && nextF[d] - nextB[d] < bound) {
        const k = nextF[d];
        const vs = chunkOf(k, true) * p + d;
        const mb = microBatchOf(k);
        const after = vs === 0 ? 0 : endF[(vs - 1) * m + mb];
        if (after >= 0) consider(vs === 0 ? 0 : after + hop, false);
      }
    }
    if (best.device < 0) break;
    const d = best.device;
    const k = best.backward ? nextB[d]++ : nextF[d]++;
    const chunk = chunkOf(k, !best.backward);
    const vs = chunk * p + d;
    const mb = microBatchOf(k);
    free[d] = best.start + (best.backward ? backwardCost(vs) : forwardCost(vs));
    (best.backward ? endB : endF)[vs * m + mb] = free[d];
    order[d].push({ pass: best.backward ? 'BW' : 'F', microBatch: mb, chunk });
  }
  if (order.some((o) => o.length !== 2 * total)) throw new Error(`interleaved schedule with groups of ${n}: no pass can start (a bug in its bound)`);
  return order;
}
