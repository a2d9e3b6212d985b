import type { ScheduledPass } from './schedule.js';

/**
 * The order shared by the handcrafted zero-bubble schedules (ZB-H1, ZB-H2): a
 * 1F1B-like order of F and B on one chunk per device, with each stage's W
 * passes deferred by a number of B's so that they fill the bubbles, and the
 * rest of the W's at the end.
 *
 * - `warmup(i)`: forwards stage i runs before its first B;
 * - `backwardFirst`: in the steady state, B then F (otherwise F then B);
 * - `defer(i)`: B's stage i runs before it catches up with a W.
 */
export interface DeferredWeightShape {
  warmup(stage: number): number;
  backwardFirst: boolean;
  defer(stage: number): number;
}

export function deferredWeightOrder(stages: number, microBatches: number, shape: DeferredWeightShape): ScheduledPass[][] {
  return Array.from({ length: stages }, (_, stage) => {
    const warmup = Math.min(shape.warmup(stage), microBatches);
    const order: ScheduledPass[] = [];
    const awaitingW: number[] = [];
    const forward = (mb: number) => order.push({ pass: 'F', microBatch: mb, chunk: 0 });
    const backward = (mb: number) => {
      order.push({ pass: 'B', microBatch: mb, chunk: 0 });
      awaitingW.push(mb);
      if (awaitingW.length > shape.defer(stage)) order.push({ pass: 'W', microBatch: awaitingW.shift()!, chunk: 0 });
    };
    for (let mb = 0; mb < warmup; mb++) forward(mb);
    for (let k = 0; k < microBatches - warmup; k++) {
      if (shape.backwardFirst) {
        backward(k);
        forward(warmup + k);
      } else {
        forward(warmup + k);
        backward(k);
      }
    }
    for (let mb = microBatches - warmup; mb < microBatches; mb++) backward(mb);
    for (const mb of awaitingW) order.push({ pass: 'W', microBatch: mb, chunk: 0 });
    return order;
  });
}
