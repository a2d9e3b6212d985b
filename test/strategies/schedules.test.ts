import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { SCHEDULES } from '../../src/strategies/pipeline/registry.js';
import { checkOrderLaws, checkStepLaws, inFlightPerStage, SCHEDULE_EXPECTATIONS } from '../support/schedule-laws.js';
import { pipelineScenario, scenario } from '../support/scenarios.js';

const names = Object.keys(SCHEDULES);
const us = (xs: number[]) => xs.map((x) => `${x}us`);

describe('every registered schedule', () => {
  it('declares its expected laws', () => {
    for (const name of names) expect(SCHEDULE_EXPECTATIONS[name], `add ${name} to SCHEDULE_EXPECTATIONS`).toBeDefined();
  });

  describe.each(names)('%s', (name) => {
    const schedule = SCHEDULES[name];
    const expectation = SCHEDULE_EXPECTATIONS[name];
    const arbShape = fc.tuple(fc.integer({ min: 1, max: 8 }), fc.double({ min: 0, max: 0.999, noNaN: true }), fc.double({ min: 0, max: 0.999, noNaN: true })).map(([p, r1, r2]) => ({ p, ...expectation.shape(p, r1, r2) }));

    it('law: each pass of every (stage, chunk, micro-batch) exactly once, forward before backward (thousands of cases)', () => {
      fc.assert(
        fc.property(arbShape, ({ p, chunks, m }) => {
          checkOrderLaws(schedule, { stages: p, microBatches: m, chunks });
        }),
        { numRuns: 2000 },
      );
    });

    it('law: the simulated step runs every pass once, respects dependencies and lanes, and returns memory to baseline', () => {
      fc.assert(
        fc.property(
          arbShape,
          fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 8, maxLength: 8 }),
          fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 8, maxLength: 8 }),
          fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 8, maxLength: 8 }),
          fc.integer({ min: 0, max: 20 }),
          ({ p, chunks, m }, fs, bs, ws, p2p) => {
            const sim = simulate(pipelineScenario({ p, m, chunks, schedule: name, forward: us(fs.slice(0, p)), backward: us(bs.slice(0, p)), weightGrad: us(ws.slice(0, p)), p2p: p2p * 1e-6 }));
            checkStepLaws(sim);
            if (expectation.maxInFlight) {
              inFlightPerStage(sim).forEach((n, stage) => expect(n, `stage ${stage}`).toBeLessThanOrEqual(expectation.maxInFlight!(p, m, chunks, stage) + 1e-9));
            }
          },
        ),
        { numRuns: 150 },
      );
    });

    if (expectation.bubble) {
      it('law: with equal costs and free communication the bubble is exact', () => {
        fc.assert(
          fc.property(arbShape, fc.integer({ min: 1, max: 40 }), ({ p, chunks, m }, t) => {
            const split = schedule.splitBackward;
            // Equal F, B and W; schedules without a split run B and W as one backward of 2t.
            const sim = simulate(pipelineScenario({ p, m, chunks, schedule: name, forward: t * 1e-6, backward: t * 1e-6, weightGrad: t * 1e-6 }));
            expect(sim.report.bubbleFraction).toBeCloseTo(expectation.bubble!(p, m, chunks), 12);
            void split;
          }),
          { numRuns: 150 },
        );
      });
    }

    if (expectation.maxInFlight) {
      it('law: each stage holds exactly its bound of micro-batches in flight', () => {
        const { chunks, m } = expectation.shape(4, 0.9, 0.9);
        const sim = simulate(pipelineScenario({ p: 4, m, chunks, schedule: name, forward: 1e-3, backward: 2e-3 }));
        const measured = inFlightPerStage(sim);
        measured.forEach((n, stage) => expect(n).toBeCloseTo(expectation.maxInFlight!(4, m, chunks, stage), 9));
      });
    }
  });
});

describe('schedules against each other', () => {
  const peak = (schedule: string, p: number, m: number, chunks = 1, w = 1e-3) =>
    simulate(pipelineScenario({ p, m, chunks, schedule, forward: 1e-3, backward: 1e-3, weightGrad: w })).report;
  const worstActivations = (r: ReturnType<typeof peak>) => Math.max(...r.stages.map((s) => s.peakActivations));

  it("law: GPipe's activation peak exceeds 1F1B's whenever m > p, and matches it otherwise", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }), fc.integer({ min: 1, max: 16 }), (p, m) => {
        const first = (schedule: string) => peak(schedule, p, m).stages[0].peakActivations;
        if (m > p) expect(first('gpipe')).toBeGreaterThan(first('1f1b'));
        else expect(first('gpipe')).toBe(first('1f1b'));
      }),
      { numRuns: 40 },
    );
  });

  it("law: ZB-H1's activation peak never exceeds 1F1B's, and its step is never longer", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 24 }), fc.integer({ min: 1, max: 3 }), (p, extra, wScale) => {
        const m = p + extra;
        const h1 = peak('zb-h1', p, m, 1, wScale * 1e-3);
        const ofob = peak('1f1b', p, m, 1, wScale * 1e-3);
        expect(worstActivations(h1)).toBeLessThanOrEqual(worstActivations(ofob));
        expect(h1.stepTime).toBeLessThanOrEqual(ofob.stepTime + 1e-12);
      }),
      { numRuns: 60 },
    );
  });

  it('law: ZB-H2 has no bubble within any stage’s span with equal costs, in about (2p-1)/p of 1F1B’s memory', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 24 }), (p, extra) => {
        const m = 2 * p - 1 + extra;
        const h2 = peak('zb-h2', p, m);
        expect(h2.pipelineBubbleRate).toBeCloseTo(0, 12);
        expect(h2.stepTime).toBeCloseTo(peak('zb-h1', p, m).stepTime, 12);
        expect(h2.stages[0].peakActivations).toBeLessThanOrEqual((2 * p - 1) * (peak('1f1b', p, m).stages[0].peakActivations / p) + 1);
      }),
      { numRuns: 60 },
    );
  });

  it('law: ZB-V fills the pipeline in half the time: with equal costs its step is 3m + (p-1)/2 passes when m >= 2p, within 1F1B-like memory', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 16 }), (p, extra) => {
        const m = 2 * p + extra;
        const v = peak('zb-v', p, m, 2);
        expect(v.stepTime).toBeCloseTo((3 * m + (p - 1) / 2) * 1e-3, 9);
        // Each device holds at most p micro-batches through both its chunks: 1F1B's first-stage peak (the first
        // device also keeps the loss's logits, which 1F1B keeps on its last stage).
        const ofob = peak('1f1b', p, m);
        for (const s of v.stages) expect(s.peakActivations).toBeLessThanOrEqual(ofob.stages[0].peakActivations * 1.01);
      }),
      { numRuns: 60 },
    );
  });
});

describe('pipelines as Llama 3 lays them out', () => {
  it('law: the interleaved schedule with any group of consecutive micro-batches (below pp too, as Llama 3 runs it) runs every pass once, without deadlock, and memory returns to baseline', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 2, max: 3 }), (p, group, groups, chunks) => {
        const m = group * groups;
        checkOrderLaws(SCHEDULES.interleaved, { stages: p, microBatches: m, chunks, microBatchGroup: group });
        const sim = simulate(pipelineScenario({ p, m, chunks, schedule: 'interleaved', forward: '10us', backward: '20us', p2p: 2e-6, microBatchGroup: group }));
        checkStepLaws(sim);
      }),
      { numRuns: 80 },
    );
  });

  it('with the default group of pp it is Megatron\'s order; a larger group holds more micro-batches in flight on the first stage, a smaller one fewer', () => {
    const run = (microBatchGroup?: number) => simulate(pipelineScenario({ p: 4, m: 16, chunks: 2, schedule: 'interleaved', forward: '10us', backward: '20us', microBatchGroup }));
    expect(run(4).plan.order).toEqual(run().plan.order);
    expect(inFlightPerStage(run(8))[0]).toBeGreaterThan(inFlightPerStage(run(4))[0]);
    // Below pp, Megatron's warm-up bound with the smaller group: fewer micro-batches in flight still.
    expect(inFlightPerStage(run(2))[0]).toBeLessThan(inFlightPerStage(run(4))[0]);
  });

  it('a stage whose layers the chunks do not divide gives the chunks holding the embedding and the output layer one fewer', () => {
    const base = pipelineScenario({ p: 4, m: 8, chunks: 2, schedule: 'interleaved', forward: '10us', backward: '20us' });
    const sim = simulate({ ...base, model: { ...base.model, layers: 46 }, parallel: { ...base.parallel, layersPerStage: [11, 12, 12, 11] } });
    const layers = sim.plan.virtualStages.map((v) => [v.stage, v.chunk, v.layers]);
    // Virtual stage 0 (device 0, chunk 0) holds the embedding, the last (device 3, chunk 1) the output layer.
    expect(layers).toEqual([[0, 0, 5], [1, 0, 6], [2, 0, 6], [3, 0, 6], [0, 1, 6], [1, 1, 6], [2, 1, 6], [3, 1, 5]]);
    checkStepLaws(sim);
  });

  it('bad input: a micro-batch group on another schedule, or one that does not divide the micro-batches, exits 3', () => {
    expect(() => scenario({ parallel: { microBatchGroup: 2 } })).toThrow(/parallel\.microBatchGroup: groups micro-batches for the interleaved schedule only, but the schedule is 1f1b/);
    expect(() => scenario({ model: { layers: 8 }, parallel: { schedule: 'interleaved', chunks: 2, microBatchGroup: 5 } })).toThrow(/training\.globalBatch: the interleaved schedule runs micro-batches in groups of parallel\.microBatchGroup = 5, but each replica has 8; make globalBatch \/ \(microBatch x dp\) a multiple of 5/);
  });
});
