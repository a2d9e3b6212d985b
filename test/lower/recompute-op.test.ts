import { describe, expect, it } from 'vitest';
import { CATEGORY, KIND } from '../../src/lower/resources.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';

// The recomputed forward is an operation of its own: before the backward it serves, after that backward's input.
describe('the recomputed forward on the timeline', () => {
  const run = (recompute: string, parallel: Record<string, unknown> = { tp: 1, pp: 2, dp: 1 }) =>
    simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 2 }, model: { preset: 'gpt3-1.3b', layers: 4, seqLength: 1024 }, training: { globalBatch: 4, recompute }, parallel, variability: { jitter: 0 } }));

  it.each(['full', 'selective'])('%s: each R runs right before the backward of its micro-batch, does the recomputed FLOPs, and R + B take the unsplit backward time', (recompute) => {
    const sim = run(recompute);
    checkStepLaws(sim);
    const { graph: g, labels, resources, virtualStages } = sim.plan;
    const { startNs, endNs } = sim.execution;
    let reruns = 0;
    for (let device = 0; device < resources.devices; device++) {
      const lane = resources.lane(device, 0);
      const items = g.program.items.slice(g.program.start[lane], g.program.start[lane + 1]);
      items.forEach((op, i) => {
        const at = g.label[op];
        if (labels.kind[at] !== KIND.recompute) return;
        reruns++;
        const next = items[i + 1];
        const nextAt = g.label[next];
        expect(labels.kind[nextAt]).toBe(KIND.backward);
        expect(labels.microBatch[nextAt]).toBe(labels.microBatch[at]);
        expect(startNs[next]).toBe(endNs[op]);
        const v = virtualStages[device];
        expect(labels.flops[at] / v.recomputeFlops).toBeCloseTo(1, 9);
        expect(Math.abs(endNs[op] - startNs[op] + endNs[next] - startNs[next] - v.backwardNs)).toBeLessThanOrEqual(1);
      });
    }
    expect(reruns).toBe(2 * 4);
  });

  it("on a stage that receives its backward's input, R starts only once the input gradient has arrived (Megatron reruns inside the backward)", () => {
    const sim = run('full');
    const { graph: g, labels } = sim.plan;
    let checked = 0;
    for (let op = 0; op < g.count; op++) {
      if (labels.kind[g.label[op]] !== KIND.recompute || g.device[op] !== 0) continue;
      const deps = Array.from(g.deps.items.slice(g.deps.start[op], g.deps.start[op + 1]));
      expect(deps.some((d) => labels.kind[g.label[d]] === KIND.p2p && labels.microBatch[g.label[d]] === labels.microBatch[g.label[op]])).toBe(true);
      checked++;
    }
    expect(checked).toBe(4);
  });

  it('there is none without recomputation', () => {
    const { graph: g, labels } = run('none').plan;
    for (let op = 0; op < g.count; op++) expect(labels.kind[g.label[op]]).not.toBe(KIND.recompute);
  });
});

describe('the recomputed forward in a pass cut into segments', () => {
  it('under ZeRO-3 with the first 2 of 4 layers recomputed, recomputed forwards precede only those layers, each about one layer forward', () => {
    const sim = simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 2 }, model: { preset: 'gpt3-1.3b', layers: 4, seqLength: 1024 }, training: { globalBatch: 4, recompute: 'full', recomputeLayers: 2 }, parallel: { tp: 1, pp: 1, dp: 2, zero: 3 }, variability: { jitter: 0 } }));
    checkStepLaws(sim);
    const { graph: g, labels, virtualStages } = sim.plan;
    const v = virtualStages[0];
    const layer = v.blocks.find((b) => b.kind === 'layer')!;
    let reruns = 0;
    for (let op = 0; op < g.count; op++) {
      const at = g.label[op];
      if (labels.kind[at] !== KIND.recompute || g.device[op] !== 0) continue;
      reruns++;
      expect(labels.layers[at]).toBe(1);
      expect(labels.flops[at] / layer.recomputeFlops).toBeCloseTo(1, 9);
    }
    // 2 micro-batches per replica, 2 recomputed layers each.
    expect(reruns).toBe(2 * 2);
  });

  it('a received input gradient is freed when the backward that reads it ends, not when its recomputed forward does', () => {
    const sim = simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 2 }, model: { preset: 'gpt3-1.3b', layers: 4, seqLength: 1024 }, training: { globalBatch: 4, recompute: 'full' }, parallel: { tp: 1, pp: 2, dp: 1 }, variability: { jitter: 0 } }));
    const { graph: g, labels, resources } = sim.plan;
    let frees = 0;
    for (let op = 0; op < g.count; op++) {
      for (let e = g.memoryFirst[op]; e >= 0; e = g.memoryNext[e]) {
        const amount = g.memoryAmount[e];
        if (g.memoryAmounts.category[amount] !== CATEGORY.buffers || g.memoryAmounts.bytes[amount] >= 0 || g.memoryLocation[e] !== resources.hbm(0)) continue;
        expect(labels.kind[g.label[op]]).not.toBe(KIND.recompute);
        frees++;
      }
    }
    expect(frees).toBeGreaterThan(0);
  });
});
