import type { PassCosts, PassMemory, ScheduledPass } from './schedule.js';

/**
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

export function greedyOrder(pipe: GreedyPipeline): ScheduledPass[][] {
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

  // Each device's preferred pass (kind 0 B, 1 F, 2 W; -1 none) and when it would start, in scalars: this runs 3 x
  // micro-batches x virtual stages times, and a search orders thousands of pipelines. A pass changes only its own
  // device's choice and those of the devices holding the virtual stages on either side (whose inputs it provides),
  // so only those are chosen again.
  const B = 0;
  const F = 1;
  const W = 2;
  const pickStart = new Float64Array(p);
  const pickKind = new Int8Array(p);
  const pickVs = new Int32Array(p);
  const choose = (d: number) => {
    let start = Infinity;
    let kind = -1;
    let chosen = -1;
    for (const vs of onDevice[d]) {
      for (let k = B; k <= F; k++) {
        const ready = k === B ? backwardReady(vs) : forwardReady(vs);
        if (ready < 0) continue;
        const at = Math.max(ready, free[d]);
        // B before F (B is on the critical path), then the later virtual stage.
        if (kind < 0 || at < start || (at === start && (k < kind || (k === kind && vs > chosen)))) {
          start = at;
          kind = k;
          chosen = vs;
        }
      }
    }
    if (awaitingW[d].length > 0) {
      const vs = awaitingW[d][0][0];
      if (kind < 0 || start - free[d] >= costs.weightGrad[vs]) {
        start = free[d];
        kind = W;
        chosen = vs;
      }
    }
    pickStart[d] = start;
    pickKind[d] = kind;
    pickVs[d] = chosen;
  };
  for (let d = 0; d < p; d++) choose(d);
  for (let left = 3 * m * V; left > 0; left--) {
    // The earliest start over the devices; on a tie, the lowest device.
    let device = -1;
    for (let d = 0; d < p; d++) if (pickKind[d] >= 0 && (device < 0 || pickStart[d] < pickStart[device])) device = d;
    if (device < 0) throw new Error('greedy pipeline scheduler is stuck: its budgets leave no pass able to start');
    const start = pickStart[device];
    const kind = pickKind[device];
    let vs = pickVs[device];
    if (kind === W) {
      const [wvs, mb] = awaitingW[device].shift()!;
      vs = wvs;
      free[device] = start + costs.weightGrad[vs];
      held[device] -= memory.weightGrad[vs];
      order[device].push({ pass: 'W', microBatch: mb, chunk: chunkOf[vs] });
    } else if (kind === B) {
      const mb = nextB[vs]++;
      free[device] = start + costs.inputGrad[vs];
      endB[vs * m + mb] = free[device];
      held[device] -= memory.activation[vs] - memory.weightGrad[vs];
      awaitingW[device].push([vs, mb]);
      order[device].push({ pass: 'B', microBatch: mb, chunk: chunkOf[vs] });
    } else {
      const mb = nextF[vs]++;
      free[device] = start + costs.forward[vs];
      endF[vs * m + mb] = free[device];
      held[device] += memory.activation[vs];
      order[device].push({ pass: 'F', microBatch: mb, chunk: chunkOf[vs] });
    }
    choose(device);
    if (vs > 0 && deviceOf[vs - 1] !== device) choose(deviceOf[vs - 1]);
    if (vs < V - 1 && deviceOf[vs + 1] !== device) choose(deviceOf[vs + 1]);
  }
  return order;
}

/** Equal unit costs, for when a schedule is asked for its order without costs. */
export function unitCosts(virtualStages: number): PassCosts {
  const ones = Array.from({ length: virtualStages }, () => 1);
  return { forward: ones, inputGrad: ones, weightGrad: ones, p2p: 0 };
}

/** Equal activation per virtual stage, with W keeping 40% of it, for when no model is given. */
export function unitMemory(virtualStages: number, chunks: number): PassMemory {
  return { activation: Array.from({ length: virtualStages }, () => 1 / chunks), weightGrad: Array.from({ length: virtualStages }, () => 0.4 / chunks) };
}
