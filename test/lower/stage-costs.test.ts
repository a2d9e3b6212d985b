import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScenarioError } from '../../src/errors.js';
import { stageCosts } from '../../src/lower/stage-costs.js';
import type { Scenario } from '../../src/scenario/resolve.js';
import type { StepProgram } from '../../src/strategies/program.js';
import { buildProgram } from '../../src/strategies/registry.js';
import { buildWorkload } from '../../src/workload/registry.js';
import { scenario, tryScenario } from '../support/scenarios.js';

// The program keeps a model's repeated layer one object through every pass, and stageCosts copies the costs of a
// layer that repeats the one before it in the same surroundings instead of adding them up again. The law: the
// costs are the same, bit for bit, as for the same program with every block its own object.

const programOf = (s: Scenario) => buildProgram(buildWorkload(s.model, { microBatch: s.training.microBatch, attention: s.training.flashAttention ? 'flash' : 'standard', recycles: s.training.recycles }), s.parallel);

/** The same program with each block and operation a separate object (copies share nothing by identity). */
const unshared = (program: StepProgram): StepProgram => ({
  ...program,
  stages: program.stages.map((stage) => ({ ...stage, blocks: stage.blocks.map((block) => ({ ...block, ops: block.ops.map((p) => ({ op: p.op, layout: { ...p.layout } })) })) })),
});

describe('stageCosts', () => {
  it('gives the same costs, bit for bit, whether the layers of a program are one object or each its own', () => {
    let checked = 0;
    let shared = 0;
    fc.assert(
      fc.property(
        fc.record({
          layers: fc.integer({ min: 1, max: 12 }),
          tp: fc.constantFrom(1, 2, 4),
          pp: fc.constantFrom(1, 2, 4),
          schedule: fc.constantFrom(['1f1b', 1], ['interleaved', 2], ['zb-h1', 1], ['zb-v', 2]),
          recompute: fc.constantFrom('none', 'selective', 'full'),
          recomputeLayers: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
          sequenceParallel: fc.boolean(),
          cp: fc.constantFrom(1, 2),
          flash: fc.boolean(),
          tied: fc.boolean(),
        }),
        (c) => {
          const [schedule, chunks] = c.schedule as [string, number];
          const s = tryScenario({
            cluster: { nodes: 2, gpusPerNode: 8, node: 'dgx-a100' },
            model: { preset: 'gpt-tiny', layers: c.layers, seqLength: 1024, tiedEmbeddings: c.tied },
            training: { globalBatch: 16, microBatch: 1, recompute: c.recompute, flashAttention: c.flash || c.cp > 1, ...(c.recompute === 'full' && c.recomputeLayers !== undefined ? { recomputeLayers: c.recomputeLayers } : {}) },
            parallel: { tp: c.tp, pp: c.pp, dp: 16 / (c.tp * c.pp * c.cp), cp: c.cp, schedule, chunks, sequenceParallel: c.sequenceParallel && c.tp > 1 },
          });
          if (s === undefined) return;
          let program: StepProgram;
          try {
            program = programOf(s);
          } catch (error) {
            if (error instanceof ScenarioError) return;
            throw error;
          }
          checked++;
          if (program.stages.some((stage) => stage.blocks.some((b, j) => j >= 2 && stage.blocks[j - 2] === b && stage.blocks[j + 1] === b))) shared++;
          expect(JSON.stringify(stageCosts(s, program))).toBe(JSON.stringify(stageCosts(s, unshared(program))));
        },
      ),
      { numRuns: 150, seed: 3 },
    );
    expect(checked).toBeGreaterThan(60);
    // The shortcut had layers to copy in a good share of them.
    expect(shared).toBeGreaterThan(checked / 4);
  });

  it('the same for Evoformers (extra-MSA and main stacks, recycling, DAP), whose operations read inputs from further back', () => {
    for (const layers of [1, 3, 6])
      for (const extraLayers of [0, 1, 4])
        for (const dap of [1, 2])
          for (const recompute of ['none', 'full']) {
            const s = scenario({
              cluster: { nodes: 1, gpusPerNode: 4 },
              model: { preset: 'alphafold2', layers, extraLayers, residues: 32, msaRows: 16, extraMsaRows: 32 },
              training: { globalBatch: 4, microBatch: 1, recycles: 1, recompute },
              parallel: { tp: 1, pp: 1, dp: 4 / dap, dap },
            });
            const program = programOf(s);
            expect(JSON.stringify(stageCosts(s, program))).toBe(JSON.stringify(stageCosts(s, unshared(program))));
          }
  });
});
