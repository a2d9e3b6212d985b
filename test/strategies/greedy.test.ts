import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { greedyOrder, type GreedyPipeline } from '../../src/strategies/pipeline/greedy.js';
import { referenceGreedyOrder } from '../support/greedy-reference.js';

/**
 * The greedy pipeline scheduler re-chooses only the devices a pass affects (its own and those holding the virtual
 * stages on either side); the reference re-chooses every device every round. They must agree pass for pass.
 */
describe('the incremental greedy pipeline scheduler', () => {
  it('gives the same order as re-choosing every device each round, for V-shaped and looped placements, any costs and budgets (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 12 }),
        fc.constantFrom('v', 'loop'),
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 3 * 12 + 1, maxLength: 3 * 12 + 1 }),
        fc.integer({ min: 0, max: 3 }),
        fc.boolean(),
        (stages, extra, shape, draws, p2p, tightMemory) => {
          const microBatches = stages + extra - 1;
          const virtualStages = 2 * stages;
          const deviceOf: number[] = [];
          const chunkOf: number[] = [];
          for (let vs = 0; vs < virtualStages; vs++) {
            // ZB-V's V, or a loop that visits every device twice (interleaved placement).
            deviceOf.push(shape === 'v' ? (vs < stages ? vs : virtualStages - 1 - vs) : vs % stages);
            chunkOf.push(vs < stages ? 0 : 1);
          }
          const at = (i: number) => draws[i % draws.length];
          const activation = Array.from({ length: virtualStages }, (_, vs) => at(vs));
          const pipe: GreedyPipeline = {
            stages,
            microBatches,
            deviceOf,
            chunkOf,
            budget: Array.from({ length: virtualStages }, (_, vs) => virtualStages - vs),
            memoryBudget: Array.from({ length: stages }, (_, d) => (tightMemory ? 2 : stages) * (activation[d] + activation[virtualStages - 1 - d])),
            costs: { forward: activation.map((_, vs) => at(vs + 3)), inputGrad: activation.map((_, vs) => at(vs + 7)), weightGrad: activation.map((_, vs) => at(vs + 11)), p2p },
            memory: { activation, weightGrad: activation.map((a) => a * 0.4) },
          };
          let expected: unknown;
          try {
            expected = referenceGreedyOrder(pipe);
          } catch (error) {
            // Budgets that leave no pass able to start: both must say so.
            expect(() => greedyOrder(pipe)).toThrow((error as Error).message);
            return;
          }
          expect(greedyOrder(pipe)).toEqual(expected);
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
});
