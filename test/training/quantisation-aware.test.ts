import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { quantisedWeightBytes, stateBytes, WEIGHT_BITS } from '../../src/training/states.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';

// Oracle: LLM-QAT and BitNet b1.58 keep full-precision master weights and train quantised working weights.
describe('quantisation-aware training (training.weightBits)', () => {
  const run = (weightBits: number | undefined, parallel: Record<string, unknown> = { tp: 1, pp: 1, dp: 4 }, training: Record<string, unknown> = {}) =>
    simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'gpt3-1.3b', layers: 4, seqLength: 1024 }, training: { globalBatch: 8, ...(weightBits !== undefined ? { weightBits } : {}), ...training }, parallel }));

  it('stores the working weights at their bits (ternary five to a byte) and leaves gradients and optimizer states alone', () => {
    const full = run(undefined).report.devices[0].memoryBreakdown;
    for (const bits of WEIGHT_BITS) {
      const q = run(bits).report.devices[0].memoryBreakdown;
      expect(q.params / full.params).toBeCloseTo(quantisedWeightBytes(bits) / 2, 9);
      expect(q.grads).toBe(full.grads);
      expect(q.optimizer).toBe(full.optimizer);
    }
    expect(quantisedWeightBytes(1.58)).toBe(0.2);
    // Mixed-precision Adam: 16 bytes per parameter become 14 + bits / 8.
    const bytes = stateBytes({ precision: 'bf16', gradAccumulation: 'precision', optimizer: 'adam', weightBits: 4 }, () => []);
    expect(bytes.parameter + bytes.gradient + bytes.optimizer).toBe(14.5);
  });

  it('gathers quantised weights under ZeRO-3: the all-gather traffic shrinks with the bits, and the step laws hold', () => {
    const gathered = (bits?: number) => {
      const sim = run(bits, { tp: 1, pp: 1, dp: 4, zero: 3 });
      checkStepLaws(sim);
      return sim.report.communication.byKind.allGather;
    };
    expect(gathered(8) / gathered()).toBeCloseTo(0.5, 9);
    expect(gathered(4) / gathered()).toBeCloseTo(0.25, 9);
  });

  it('is refused in fp32 and for bits it does not support, naming the allowed ones', () => {
    expect(() => run(4, undefined, { precision: 'fp32' })).toThrow(/training\.weightBits: quantisation-aware training .* use precision bf16 or fp16/);
    expect(() => run(3)).toThrow(/training\.weightBits: expected the bits of a quantised weight: 8, 4, 2, 1\.58/);
  });
});
