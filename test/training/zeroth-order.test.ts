import { describe, expect, it } from 'vitest';
import { KIND } from '../../src/lower/resources.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';

// Oracle: MeZO (Malladi et al., NeurIPS 2023): two forwards per micro-batch, no backward, no gradients, no optimizer
// state; it trains in the memory of inference.
describe('MeZO (zeroth-order optimizer)', () => {
  const run = (optimizer: string, extra: Record<string, unknown> = {}, parallel: Record<string, unknown> = { tp: 1, pp: 2, dp: 2 }) =>
    simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'gpt3-1.3b', layers: 8, seqLength: 1024 }, training: { globalBatch: 8, optimizer, ...extra }, parallel }));

  it('runs each micro-batch forward twice and nothing else but the optimizer step, and obeys the step laws', () => {
    const sim = run('mezo');
    checkStepLaws(sim);
    const { graph: g, labels } = sim.plan;
    const kinds = new Map<number, number>();
    for (let op = 0; op < g.count; op++) kinds.set(labels.kind[g.label[op]], (kinds.get(labels.kind[g.label[op]]) ?? 0) + 1);
    // 4 devices x 4 micro-batches per replica (8 / dp 2) x 2 forwards.
    expect(kinds.get(KIND.forward)).toBe(4 * 4 * 2);
    for (const k of [KIND.backward, KIND.inputGrad, KIND.weightGrad, KIND.recompute, KIND.allReduce, KIND.reduceScatter]) expect(kinds.get(k) ?? 0).toBe(0);
    // Model FLOPs: two forwards per sample, against Adam's forward and backward (three forwards' worth).
    const adam = run('adam');
    expect(sim.plan.modelFlops / adam.plan.modelFlops).toBeCloseTo(2 / 3, 2);
  });

  it('keeps no gradients, optimizer states or master copy, and holds one block of activations while a forward runs', () => {
    const [mezo, adam] = [run('mezo'), run('adam')];
    const device = mezo.report.devices[0];
    expect(device.memoryBreakdown.grads).toBe(0);
    expect(device.memoryBreakdown.optimizer).toBe(0);
    expect(device.memoryBreakdown.params).toBe(adam.report.devices[0].memoryBreakdown.params);
    // The largest block's activations (a layer's, or the head's logits), not a micro-batch's whole stage.
    const v = mezo.plan.virtualStages[0];
    expect(v.activationBytes).toBe(0);
    expect(mezo.report.stages[0].peakActivations).toBe(v.forwardWorkingBytes);
    const layer = adam.plan.virtualStages[0].blocks.find((b) => b.kind === 'layer')!;
    expect(v.forwardWorkingBytes).toBeGreaterThanOrEqual(layer.activationBytes);
    expect(mezo.report.stages[0].peakActivations).toBeLessThan(adam.report.stages[0].peakActivations / 4);
  });

  it('is refused with recomputation, ZeRO-1 or 2, or an offloaded optimizer, each saying there is nothing to do', () => {
    expect(() => run('mezo', { recompute: 'full' })).toThrow(/training\.recompute: mezo runs two forward passes and no backward/);
    expect(() => run('mezo', {}, { tp: 1, pp: 1, dp: 4, zero: 1 })).toThrow(/parallel\.zero: mezo keeps no gradients and no optimizer states, so ZeRO-1 has nothing to shard/);
    expect(() => run('mezo', {}, { tp: 1, pp: 1, dp: 4, zero: 2, offload: { optimizer: 'cpu' } })).toThrow(/parallel\.offload\.optimizer: mezo keeps no optimizer states to offload/);
    // ZeRO-3 shards the parameters it does keep.
    const sharded = run('mezo', {}, { tp: 1, pp: 1, dp: 4, zero: 3 });
    checkStepLaws(sharded);
    expect(sharded.report.devices[0].memoryBreakdown.params).toBeCloseTo(run('mezo', {}, { tp: 1, pp: 1, dp: 4 }).report.devices[0].memoryBreakdown.params / 4, 0);
  });
});
