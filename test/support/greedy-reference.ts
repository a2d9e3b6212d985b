import type { PassCosts, PassMemory, ScheduledPass } from '../../src/strategies/pipeline/schedule.js';

/**
 * The greedy pipeline scheduler as first written (re-choosing every device's pass each round), kept as the oracle
 * for the incremental one in src/strategies/pipeline/greedy.ts.
 *
 * A cost-aware list scheduler for pipelines whose backward is split into B and
 * W. ZB-V uses it: its V-shaped placement has no simple closed-form order.
 *
 * It plays the pipeline forward in time with the given pass costs. Each time a
 * device is free it picks, in this order of preference:
 *   1. a B whose gradient has arrived (B is on the critical path);
 *   2. an F whose input has arrived, if its virtual stage holds fewer than its
 *      budget of micro-batches between F and B, and the device's activation
 *      bytes (W's still pending included) stay within its memory budget. While
 *      the device's last chunk holds nothing, room for one of its micro-batches
 *      is kept free, so earlier chunks can never crowd it out;
 *   3. a pending W, if nothing else can start before that W would end, or
 *      nothing else can start at all.
 * Ties go to the later virtual stage, which is nearer the loss, then to the
 * lower device. The result is a valid order whatever the real costs turn out to
 * be: the greedy run itself is one feasible execution of it.
 */
export interface GreedyPipeline {
  stages: number;
  microBatches: number;
  /** Device of each virtual stage. */
  deviceOf: number[];
  /** Chunk index of each virtual stage on its device. */
  chunkOf: number[];
  /** Most micro-batches each virtual stage may hold between its F and its B. */
  budget: number[];
  /** Most activation bytes (same unit as memory.activation) each device may hold. */
  memoryBudget: number[];
  costs: PassCosts;
  memory: PassMemory;
}

interface Candidate {
  start: number;
  kind: 'F' | 'B' | 'W';
  vs: number;
}

export function referenceGreedyOrder(pipe: GreedyPipeline): ScheduledPass[][] {
  const { stages: p, microBatches: m, deviceOf, chunkOf, budget, memoryBudget, costs, memory } = pipe;
  const V = deviceOf.length;
  const onDevice: number[][] = Array.from({ length: p }, () => []);
  deviceOf.forEach((d, vs) => onDevice[d].push(vs));
  const lastChunk = onDevice.map((list) => Math.max(...list));
  const free = new Float64Array(p);
  const held = new Float64Array(p);
  const nextF = new Int32Array(V);
  const nextB = new Int32Array(V);
  const endF = new Float64Array(V * m).fill(-1);
  const endB = new Float64Array(V * m).fill(-1);
  const awaitingW: [number, number][][] = Array.from({ length: p }, () => []);
  const order: ScheduledPass[][] = Array.from({ length: p }, () => []);
  const hop = (from: number, to: number) => (deviceOf[from] === deviceOf[to] ? 0 : costs.p2p);
  // Tolerance for comparing sums of byte counts.
  const slack = 1e-9 * Math.max(1, ...memoryBudget);

  const forwardReady = (vs: number): number => {
    const mb = nextF[vs];
    if (mb >= m || mb - nextB[vs] >= budget[vs]) return -1;
    const d = deviceOf[vs];
    const tail = lastChunk[d];
    const reserve = vs !== tail && nextF[tail] === nextB[tail] && nextF[tail] < m ? memory.activation[tail] : 0;
    if (held[d] + memory.activation[vs] + reserve > memoryBudget[d] + slack) return -1;
    if (vs === 0) return 0;
    const e = endF[(vs - 1) * m + mb];
    return e < 0 ? -1 : e + hop(vs - 1, vs);
  };
  const backwardReady = (vs: number): number => {
    const mb = nextB[vs];
    if (mb >= nextF[vs]) return -1;
    if (vs === V - 1) return endF[vs * m + mb];
    const e = endB[(vs + 1) * m + mb];
    return e < 0 ? -1 : e + hop(vs + 1, vs);
  };

  for (let left = 3 * m * V; left > 0; left--) {
    let best: (Candidate & { device: number }) | undefined;
    for (let d = 0; d < p; d++) {
      let pick: (Candidate & { rank: number }) | undefined;
      for (const vs of onDevice[d]) {
        for (const kind of ['B', 'F'] as const) {
          const ready = kind === 'B' ? backwardReady(vs) : forwardReady(vs);
          if (ready < 0) continue;
          const start = Math.max(ready, free[d]);
          const rank = kind === 'B' ? 0 : 1;
          if (!pick || start < pick.start || (start === pick.start && (rank < pick.rank || (rank === pick.rank && vs > pick.vs)))) pick = { start, rank, kind, vs };
        }
      }
      let candidate: Candidate | undefined = pick;
      if (awaitingW[d].length > 0) {
        const vs = awaitingW[d][0][0];
        if (!pick || pick.start - free[d] >= costs.weightGrad[vs]) candidate = { start: free[d], kind: 'W', vs };
      }
      if (candidate && (!best || candidate.start < best.start)) best = { ...candidate, device: d };
    }
    if (!best) throw new Error('greedy pipeline scheduler is stuck: its budgets leave no pass able to start');
    const { device, kind, start } = best;
    if (kind === 'W') {
      const [vs, mb] = awaitingW[device].shift()!;
      free[device] = start + costs.weightGrad[vs];
      held[device] -= memory.weightGrad[vs];
      order[device].push({ pass: 'W', microBatch: mb, chunk: chunkOf[vs] });
    } else if (kind === 'B') {
      const vs = best.vs;
      const mb = nextB[vs]++;
      free[device] = start + costs.inputGrad[vs];
      endB[vs * m + mb] = free[device];
      held[device] -= memory.activation[vs] - memory.weightGrad[vs];
      awaitingW[device].push([vs, mb]);
      order[device].push({ pass: 'B', microBatch: mb, chunk: chunkOf[vs] });
    } else {
      const vs = best.vs;
      const mb = nextF[vs]++;
      free[device] = start + costs.forward[vs];
      endF[vs * m + mb] = free[device];
      held[device] += memory.activation[vs];
      order[device].push({ pass: 'F', microBatch: mb, chunk: chunkOf[vs] });
    }
  }
  return order;
}

