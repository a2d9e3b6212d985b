import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/simulate.js';
import { SCHEDULES } from '../../src/strategies/pipeline/registry.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';

/**
 * Random compositions of every parallelism and technique dtsim models: tensor, sequence, pipeline (every schedule)
 * and data parallelism, ZeRO stages, offloading, recomputation, FlashAttention and variability. Each draw is made
 * valid by construction (the scenario checks are tested elsewhere), and every one must obey the step laws.
 */
const composition = fc
  .record({
    tp: fc.constantFrom(1, 2, 4),
    dp: fc.constantFrom(1, 2),
    pp: fc.constantFrom(1, 2, 4),
    schedule: fc.constantFrom(...Object.keys(SCHEDULES)),
    zero: fc.constantFrom(0, 1, 2, 3),
    offloadOptimizer: fc.constantFrom('none', 'cpu', 'nvme'),
    offloadParams: fc.constantFrom('none', 'cpu', 'nvme'),
    recompute: fc.constantFrom('none', 'selective', 'full'),
    sequenceParallel: fc.boolean(),
    ulysses: fc.constantFrom(1, 1, 2),
    flashAttention: fc.boolean(),
    tiedEmbeddings: fc.boolean(),
    microBatchesPerStage: fc.constantFrom(2, 3),
    nodes: fc.constantFrom(1, 2),
    jitter: fc.constantFrom(0, 0.05),
    seed: fc.nat(1000),
  })
  .map((c) => {
    // Keep what the scenario checks allow: ZeRO-2 and 3 only without pipelines, ZeRO-3 without a split backward,
    // ZeRO with one replica only when offloading, offloaded parameters only with ZeRO-3, NVMe optimizer states too.
    let zero = c.pp > 1 ? Math.min(c.zero, 1) : c.zero;
    const schedule = zero === 3 && SCHEDULES[c.schedule].splitBackward ? '1f1b' : c.schedule;
    const optimizer = zero === 0 ? 'none' : c.offloadOptimizer === 'nvme' && zero !== 3 ? 'cpu' : c.offloadOptimizer;
    const params = zero === 3 ? c.offloadParams : 'none';
    // gpt-tiny has 8 heads and key/value heads: tp x ulysses must divide them.
    const sp = c.tp * c.ulysses <= 8 ? c.ulysses : 1;
    if (zero > 0 && c.dp * sp === 1 && optimizer === 'none' && params === 'none') zero = 0;
    const gpus = c.tp * sp * c.dp * c.pp;
    const nodes = gpus % c.nodes === 0 ? c.nodes : 1;
    return {
      label: `tp ${c.tp} sp ${sp} dp ${c.dp} pp ${c.pp} ${schedule} zero ${zero} offload ${optimizer}/${params} ${c.recompute}${c.sequenceParallel && c.tp > 1 ? ' megatron-sp' : ''}${c.flashAttention ? ' flash' : ''}`,
      patch: {
        seed: c.seed,
        cluster: { nodes, gpusPerNode: gpus / nodes },
        model: { preset: 'gpt-tiny', layers: 4 * c.pp, vocab: 512, tiedEmbeddings: c.tiedEmbeddings },
        training: { globalBatch: c.dp * c.pp * c.microBatchesPerStage, microBatch: 1, recompute: c.recompute, flashAttention: c.flashAttention },
        parallel: {
          tp: c.tp,
          dp: c.dp,
          pp: c.pp,
          schedule,
          chunks: SCHEDULES[schedule].preferredChunks,
          sequenceParallel: c.sequenceParallel && c.tp > 1,
          ulysses: sp,
          zero,
          offload: { optimizer, params },
          gradientBucket: '1MiB',
        },
        variability: { jitter: c.jitter },
      },
    };
  });

describe('random compositions of parallelisms and techniques', () => {
  it('law: every composition respects dependencies and lanes, runs every pass once, receives every byte sent, and returns memory to baseline', () => {
    fc.assert(
      fc.property(composition, ({ label, patch }) => {
        const sim = simulate(scenario(patch));
        expect(sim.report.stepTime, label).toBeGreaterThan(0);
        checkStepLaws(sim);
      }),
      { numRuns: 150 },
    );
  });

  it('law: the same scenario and seed give a byte-identical report', () => {
    fc.assert(
      fc.property(composition, ({ patch }) => {
        const sc = scenario(patch);
        expect(JSON.stringify(simulate(sc).report)).toBe(JSON.stringify(simulate(sc).report));
      }),
      { numRuns: 15 },
    );
  });
});
