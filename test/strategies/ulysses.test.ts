import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScenarioError } from '../../src/errors.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';

// Oracles from Jacobs et al. (DeepSpeed-Ulysses, 2023) as ../shared/REFERENCE.md collects them: all-to-all of Q, K and
// V before attention and of the output after it, 4·N·h elements a layer split over P ranks.
const model = { preset: 'gpt3-1.3b', seqLength: 1024, tiedEmbeddings: false };
const run = (ulysses: number, extra: { tp?: number; sequenceParallel?: boolean; kvHeads?: number; recompute?: string } = {}) => {
  const tp = extra.tp ?? 1;
  return simulate(
    scenario({
      cluster: { nodes: 1, gpusPerNode: tp * ulysses },
      model: { ...model, ...(extra.kvHeads ? { kvHeads: extra.kvHeads } : {}) },
      training: { globalBatch: 2, microBatch: 2, recompute: extra.recompute ?? 'none' },
      parallel: { tp, pp: 1, dp: 1, ulysses, sequenceParallel: extra.sequenceParallel ?? false },
    }),
  );
};

describe('DeepSpeed-Ulysses', () => {
  it('law: each device sends 4·N·h·(P-1)/P² elements all-to-all per layer and pass, falling as P grows, where Megatron-SP sends a constant 4·N·h·(t-1)/t', () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 4, 8), (P) => {
        const sim = run(P);
        const { layers, hidden: h, seqLength: s } = sim.scenario.model;
        const N = 2 * s; // tokens per micro-batch
        const perDevice = sim.report.communication.byKind.allToAll / P;
        // Inside one node: all of it over NVLink.
        expect(sim.report.communication.byKindAndLinkType.allToAll.nvlink).toBe(sim.report.communication.byKind.allToAll);
        // Forward and backward, 2 bytes an element.
        expect(perDevice / (2 * layers * 4 * N * h * 2 * ((P - 1) / P ** 2))).toBeCloseTo(1, 9);
        const megatron = run(1, { tp: P, sequenceParallel: true }).report.communication.byKind;
        const megatronPerDevice = (megatron.reduceScatter + megatron.allGather) / P;
        expect(perDevice).toBeLessThan(megatronPerDevice);
      }),
      { numRuns: 3 },
    );
  });

  it('with grouped-query attention the all-to-all before attention carries Q and the smaller K and V', () => {
    const mha = run(4).report.communication.byKind.allToAll;
    const gqa = run(4, { kvHeads: 4 }).report.communication.byKind.allToAll;
    // Per layer and pass: (a + 2kv)/a of the hidden size before attention, one hidden size after.
    const a = 16;
    expect(gqa / mha).toBeCloseTo((a + 2 * 4 + a) / (3 * a + a), 9);
  });

  it('law: the activation peak per device divides by the degree', () => {
    const one = run(1).report.stages[0].peakActivations;
    for (const P of [2, 4, 8]) expect((run(P).report.stages[0].peakActivations * P) / one).toBeCloseTo(1, 9);
  });

  it('sums the gradients of the weights every rank holds over the group, and ZeRO shards over the data x sequence group', () => {
    const plain = run(4);
    const psi = plain.plan.stages[0].parametersPerDevice;
    expect(plain.report.communication.byKind.allReduce / 4).toBeCloseTo(2 * ((2 * 3) / 4) * psi, -3);
    const zero3 = simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, model, training: { globalBatch: 2, microBatch: 2 }, parallel: { tp: 1, pp: 1, dp: 1, ulysses: 4, zero: 3 } }));
    const b = zero3.report.devices[0].memoryBreakdown;
    expect((b.params + b.grads + b.optimizer) / ((16 * psi) / 4)).toBeCloseTo(1, 9);
    expect(zero3.plan.program.states.params.shardAxes).toEqual(['sp', 'dp']);
  });

  it.each([
    ['heads not divisible by the degree', { ulysses: 3 }, 3, /parallel\.ulysses: ulysses = 3 must divide the attention heads each tensor-parallel rank holds \(16 \/ tp 1 = 16\)/],
    ['tp x ulysses beyond the heads', { tp: 4, ulysses: 8 }, 32, /parallel\.ulysses: ulysses = 8 must divide .*tp x ulysses must divide 16/],
    ['key/value heads not divisible', { ulysses: 4, kvHeads: 2 }, 4, /parallel\.ulysses: ulysses = 4 must divide the key\/value heads each tensor-parallel rank holds \(2 of 2\)/],
    ['a sequence not divisible', { ulysses: 4, seqLength: 1022 }, 4, /parallel\.ulysses: .*model\.seqLength 1022 is not divisible by 4/],
  ])('bad input: %s exits 3 naming parallel.ulysses', (_label, p, gpus, pattern) => {
    const { kvHeads, seqLength, ...parallel } = p as Record<string, number>;
    let error: unknown;
    try {
      scenario({ cluster: { nodes: 1, gpusPerNode: gpus }, model: { ...model, ...(kvHeads ? { kvHeads } : {}), ...(seqLength ? { seqLength } : {}) }, training: { globalBatch: 2 }, parallel: { tp: 1, pp: 1, dp: 1, ...parallel } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ScenarioError);
    expect((error as ScenarioError).exitCode).toBe(3);
    expect((error as ScenarioError).message).toMatch(pattern);
  });
});
