import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { SCHEDULES } from '../../src/strategies/pipeline/registry.js';
import { checkOrderLaws, checkStepLaws, inFlightPerStage, SCHEDULE_EXPECTATIONS } from '../support/schedule-laws.js';
import { pipelineScenario } from '../support/scenarios.js';

const names = Object.keys(SCHEDULES);

describe('every registered schedule', () => {
  it('declares its expected laws', () => {
    for (const name of names) expect(SCHEDULE_EXPECTATIONS[name], `add ${name} to SCHEDULE_EXPECTATIONS`).toBeDefined();
  });

  describe.each(names)('%s', (name) => {
    const schedule = SCHEDULES[name];
    const expectation = SCHEDULE_EXPECTATIONS[name];

    it('law: each pass of every (stage, micro-batch) exactly once, forward before backward', () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 64 }), (stages, microBatches) => {
          checkOrderLaws(schedule, { stages, microBatches, chunks: 1 });
        }),
        { numRuns: 300 },
      );
    });

    it('law: the simulated step runs every pass once, respects dependencies and lanes, and returns memory to baseline', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 1, max: 16 }),
          fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 6, maxLength: 6 }),
          fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 6, maxLength: 6 }),
          fc.integer({ min: 0, max: 20 }),
          (p, m, fs, bs, p2p) => {
            const sim = simulate(pipelineScenario({ p, m, schedule: name, forward: fs.slice(0, p).map((x) => `${x}us`) as never, backward: bs.slice(0, p).map((x) => `${x}us`) as never, p2p: p2p * 1e-6 }));
            checkStepLaws(sim);
            const inFlight = inFlightPerStage(sim);
            inFlight.forEach((n, stage) => expect(n, `stage ${stage}`).toBeLessThanOrEqual(expectation.maxInFlight(p, m, stage)));
          },
        ),
        { numRuns: 60 },
      );
    });

    it('law: with equal costs and free communication the bubble is exact', () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 80 }), (p, m, f, b) => {
          const sim = simulate(pipelineScenario({ p, m, schedule: name, forward: f * 1e-6, backward: b * 1e-6 }));
          expect(sim.report.bubbleFraction).toBeCloseTo(expectation.bubble(p, m, 1), 12);
          expect(sim.report.stepTime).toBeCloseTo(((m + p - 1) * (f + b)) * 1e-6, 12);
        }),
        { numRuns: 80 },
      );
    });

    it('law: stage i holds exactly its bound of micro-batches in flight when m is large', () => {
      const p = 4;
      const m = 12;
      const sim = simulate(pipelineScenario({ p, m, schedule: name, forward: 1e-3, backward: 2e-3 }));
      expect(inFlightPerStage(sim)).toEqual([0, 1, 2, 3].map((i) => expectation.maxInFlight(p, m, i)));
    });
  });
});

describe('schedules against each other', () => {
  it("law: GPipe's activation peak exceeds 1F1B's whenever m > p, and matches it otherwise", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }), fc.integer({ min: 1, max: 16 }), (p, m) => {
        const run = (schedule: string) => simulate(pipelineScenario({ p, m, schedule, forward: 1e-3, backward: 2e-3 })).report.stages[0].peakActivations;
        if (m > p) expect(run('gpipe')).toBeGreaterThan(run('1f1b'));
        else expect(run('gpipe')).toBe(run('1f1b'));
      }),
      { numRuns: 30 },
    );
  });
});
