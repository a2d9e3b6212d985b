import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { plan, planCandidates, scenarioWith } from '../../src/plan.js';
import { LayoutCache, planBounds, statesLowerBound } from '../../src/plan-assess.js';
import { buildTopology } from '../../src/hardware/topology.js';
import { parseScenario, readScenarioSource } from '../../src/scenario/load.js';
import { simulate } from '../../src/simulate.js';
import { stageCosts } from '../../src/lower/stage-costs.js';
import { stageCostsKey } from '../../src/lower/shared-stage-costs.js';
import { buildProgram } from '../../src/strategies/registry.js';
import { buildWorkload } from '../../src/workload/registry.js';
import { cli } from '../support/cli.js';
import { BASE, merge } from '../support/scenarios.js';

/** A plan candidate's scenario: the source with the candidate's overrides set, as the planner sets them. */
const candidate = (source: { text: string; file: string }, overrides: Record<string, unknown>) => parseScenario(source.text, source.file, { set: Object.entries(overrides).map(([p, v]) => `${p}=${JSON.stringify(v)}`) });

/** The candidates of a plan over `gpus` GPUs that the checks accept, as scenarios. */
function* validCandidates(source: { text: string; file: string }, gpus: number) {
  for (const overrides of planCandidates(parseScenario(source.text, source.file), gpus)) {
    try {
      yield candidate(source, overrides);
    } catch {
      // refused by a check: not a candidate to bound
    }
  }
}

/** `dtsim plan` (issue 14, points 1 and 2), on problems small enough to simulate every candidate by hand. */
const dir = mkdtempSync(join(tmpdir(), 'dtsim-plan-'));
const scenarioFile = (name: string, patch: Record<string, unknown> = {}) => {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(merge(BASE, patch)));
  return file;
};

describe('dtsim plan', () => {
  const file = scenarioFile('tiny', { training: { globalBatch: 16 } });

  /** Every candidate of the space simulated by hand: its report, or undefined where a check refuses it. */
  const exhaustive = (() => {
    let memo: { overrides: Record<string, unknown>; stepTime: number; peakHbm: number; fits: boolean }[] | undefined;
    return () => {
      if (memo) return memo;
      const source = readScenarioSource(file);
      memo = [];
      for (const overrides of planCandidates(parseScenario(source.text, source.file), 4)) {
        let report;
        try {
          report = simulate(candidate(source, overrides)).report;
        } catch {
          continue;
        }
        memo.push({ overrides, stepTime: report.stepTime, peakHbm: report.memory.peak.hbm, fits: report.memory.fits });
      }
      return memo;
    };
  })();
  const key = (o: Record<string, unknown>) => JSON.stringify(o);

  it("with every candidate simulated (within Infinity), the planner's best is the best of an exhaustive simulation of the same space, and every refusal is counted", async () => {
    const source = readScenarioSource(file);
    const result = await plan(source, { workers: 1, within: Infinity });
    const space = planCandidates(parseScenario(source.text, source.file), 4);
    expect(result.candidates).toBe(space.length);
    const all = exhaustive();
    const best = Math.min(...all.filter((r) => r.fits).map((r) => r.stepTime));
    expect(result.skipped).toBe(0);
    expect(result.within).toBeNull();
    expect(result.simulated + result.pruned).toBe(all.length);
    expect(result.simulated + result.pruned + Object.values(result.refused).reduce((a, b) => a + b, 0)).toBe(result.candidates);
    expect(result.ranked[0].result!.stepTime).toBe(best);
    // The Pareto front: sorted by peak HBM with step time falling, and the fastest on it.
    const front = result.pareto.map((c) => c.result!);
    for (let i = 1; i < front.length; i++) {
      expect(front[i].peakHbm).toBeGreaterThanOrEqual(front[i - 1].peakHbm);
      expect(front[i].stepTime).toBeLessThan(front[i - 1].stepTime);
    }
    expect(front[front.length - 1].stepTime).toBe(best);
  }, 180_000);

  it('skipping by the step-time bound keeps the answer exact: the top K, every candidate within the margin of the best, and the Pareto front below the cut-off are those of simulating every candidate', async () => {
    const source = readScenarioSource(file);
    const within = 0.05;
    const top = 3;
    const result = await plan(source, { workers: 1, within, top });
    // Not vacuous: the bound skipped candidates.
    expect(result.skipped).toBeGreaterThan(0);
    expect(result.simulated + result.pruned + result.skipped + Object.values(result.refused).reduce((a, b) => a + b, 0)).toBe(result.candidates);
    const fitting = exhaustive()
      .filter((r) => r.fits)
      .sort((a, b) => a.stepTime - b.stepTime || a.peakHbm - b.peakHbm);
    const best = fitting[0].stepTime;
    expect(result.ranked.slice(0, top).map((c) => c.result!.stepTime)).toEqual(fitting.slice(0, top).map((r) => r.stepTime));
    const simulated = new Set(result.evaluated.map((c) => key(c.overrides)));
    for (const r of fitting.filter((r) => r.stepTime <= best * (1 + within))) expect(simulated.has(key(r.overrides))).toBe(true);
    // The front of every candidate, cut where the plan's ends, is the plan's.
    const cutoff = result.cutoff!;
    expect(cutoff).toBeGreaterThanOrEqual(best * (1 + within));
    const front: typeof fitting = [];
    for (const r of [...fitting].sort((a, b) => a.peakHbm - b.peakHbm || a.stepTime - b.stepTime)) if (r.stepTime < cutoff && (front.length === 0 || r.stepTime < front[front.length - 1].stepTime)) front.push(r);
    expect(result.pareto.map((c) => [c.result!.stepTime, c.result!.peakHbm])).toEqual(front.map((r) => [r.stepTime, r.peakHbm]));
    // A skipped candidate's bound is below its simulated step time, and at or past the cut-off.
    const byKey = new Map(exhaustive().map((r) => [key(r.overrides), r]));
    for (const c of result.skippedCandidates) {
      expect(c.bound!).toBeGreaterThanOrEqual(cutoff);
      const r = byKey.get(key(c.overrides));
      if (r) expect(c.bound!).toBeLessThanOrEqual(r.stepTime);
    }
    // A value whose candidates were skipped says how far behind it is at least, and that is no more than its true best's.
    for (const d of result.dimensions.filter((d) => d.behindAtLeast !== undefined)) {
      const its = fitting.filter((r) => key(r.overrides[d.field]) === key(d.value));
      if (its.length > 0) expect(best * (1 + d.behindAtLeast!)).toBeLessThanOrEqual(its[0].stepTime * (1 + 1e-12));
    }
  }, 180_000);

  it('an aborted plan stops between simulations and answers with what it simulated, skipping nothing it did not prove', async () => {
    const controller = new AbortController();
    const result = await plan(readScenarioSource(file), {
      workers: 1,
      within: Infinity,
      signal: controller.signal,
      onProgress: (done) => {
        if (done >= 3) controller.abort();
      },
    });
    // Three lines came back (a refusal only the lowering makes counts as one), then nothing more ran.
    expect(result.simulated).toBeGreaterThan(0);
    expect(result.simulated).toBeLessThanOrEqual(3);
    expect(result.skipped).toBe(0);
    expect(result.ranked.length).toBeGreaterThan(0);
  });

  it('--scenario-out writes a scenario that dtsim run reproduces exactly', async () => {
    const out = join(dir, 'best.yaml');
    const r = await cli('plan', file, '--scenario-out', out, '--workers', '1', '--json');
    expect(r.code).toBe(0);
    const planned = JSON.parse(r.stdout);
    const run = await cli('run', out, '--json');
    expect(JSON.parse(run.stdout).stepTime).toBe(planned.ranked[0].result.stepTime);
  }, 120_000);

  it('--set varies the planned scenario, and the scenario written keeps it', async () => {
    const out = join(dir, 'best-set.yaml');
    const r = await cli('plan', file, '--set', 'training.optimizer=adam8bit', '--set', 'model.hidden=256', '--scenario-out', out, '--workers', '1', '--json');
    expect(r.code).toBe(0);
    const planned = JSON.parse(r.stdout);
    const written = parseScenario(readScenarioSource(out).text, out);
    expect(written.training.optimizer).toBe('adam8bit');
    expect((written.model as { hidden: number }).hidden).toBe(256);
    const run = await cli('run', out, '--json');
    expect(JSON.parse(run.stdout).stepTime).toBe(planned.ranked[0].result.stepTime);
  }, 120_000);

  it('tries ZeRO-Infinity when nothing else fits, and with no candidate that fits even then, says so and lists the closest, least memory first', async () => {
    // 64 MiB fits the tiny model with parameters and optimizer on NVMe; 16 MiB does not.
    const small = scenarioFile('small-gpu', { cluster: { gpu: { preset: 'a100-80gb', memory: '16MiB' } }, training: { globalBatch: 8 } });
    const r = await cli('plan', small, '--workers', '1');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('no candidate fits. The closest:');
    const result = await plan(readScenarioSource(small), { workers: 1 });
    expect(result.ranked).toEqual([]);
    const base = parseScenario(readScenarioSource(small).text, small);
    expect(result.candidates).toBe(planCandidates(base, 4).length + planCandidates(base, 4, 'infinity').length);
    expect(result.closest.length).toBeGreaterThan(0);
    const peaks = result.closest.map((c) => c.result?.peakHbm ?? c.statesBound!);
    expect([...peaks].sort((a, b) => a - b)).toEqual(peaks);
    expect(peaks[0]).toBeGreaterThan(16 * 2 ** 20);
  }, 120_000);

  it('searches ZeRO-Offload on a single GPU, and no candidate inherits the scenario\'s offload or partial recomputation', async () => {
    // One GPU whose HBM holds the tiny model's 16-bit weights and activations but not its fp32 optimizer states.
    const one = scenarioFile('one-gpu', { cluster: { nodes: 1, gpusPerNode: 1, gpu: { preset: 'a100-80gb', memory: '200MiB' } }, training: { globalBatch: 2, recompute: 'full', recomputeLayers: 1 }, parallel: { tp: 1, pp: 1, dp: 1, zero: 3, offload: { optimizer: 'nvme', params: 'nvme' } } });
    const result = await plan(readScenarioSource(one), { workers: 1 });
    expect(Object.keys(result.refused)).toEqual([]);
    expect(result.ranked.length).toBeGreaterThan(0);
    expect(result.ranked[0].overrides['parallel.offload.optimizer']).not.toBe('none');
    const scenario = parseScenario(readScenarioSource(one).text, one);
    const searched = (phase: 'main' | 'infinity') => [...new Set(planCandidates(scenario, 1, phase).map((c) => `${c['parallel.zero']}/${c['parallel.offload.optimizer']}/${c['parallel.offload.params']}`))].sort();
    expect(searched('main')).toEqual(['0/none/none', '2/cpu/none']);
    // ZeRO-Infinity only when nothing of the main search fits: here ZeRO-Offload does.
    expect(searched('infinity')).toEqual(['3/nvme/nvme']);
    expect(result.candidates).toBe(planCandidates(scenario, 1).length);
  }, 120_000);

  it('scenarioWith keeps the rest of the file and sets each field', () => {
    const source = readScenarioSource(file);
    const text = scenarioWith(source, { 'parallel.tp': 2, 'parallel.dp': 2, 'parallel.pp': 1 });
    const s = parseScenario(text, 'x.yaml');
    expect([s.parallel.tp, s.parallel.pp, s.parallel.dp]).toEqual([2, 1, 2]);
    expect(s.model).toEqual(parseScenario(source.text, source.file).model);
  });
});

describe('the step-time and peak-HBM bounds', () => {
  it('law: the bounds never exceed the simulated step time and HBM peak, for every schedule, split, ZeRO stage, offload, recomputation and optimizer (property, against full simulation)', () => {
    let bounded = 0;
    fc.assert(
      fc.property(
        fc.record({
          tp: fc.constantFrom(1, 2, 4),
          pp: fc.constantFrom(1, 2, 4),
          protocol: fc.constantFrom('fitted', 'nccl'),
          schedule: fc.constantFrom(['gpipe', 1], ['1f1b', 1], ['interleaved', 2], ['zb-h1', 1], ['zb-h2', 1], ['zb-v', 2]),
          split: fc.constantFrom('none', 'ring', 'allgather', 'ulysses'),
          zero: fc.constantFrom(0, 1, 2, 3),
          offload: fc.boolean(),
          recompute: fc.constantFrom('none', 'selective', 'full'),
          optimizer: fc.constantFrom('adam', 'mezo'),
          microBatch: fc.constantFrom(1, 2),
          flashAttention: fc.boolean(),
        }),
        (c) => {
          let scenario;
          const [schedule, chunks] = c.schedule as [string, number];
          const split = c.split === 'none' ? {} : c.split === 'ulysses' ? { ulysses: 2 } : { cp: 2, cpAttention: c.split };
          try {
            scenario = parseScenario(
              stringify(
                merge(BASE, {
                  cluster: { nodes: 2, gpusPerNode: 4, collectiveProtocol: c.protocol },
                  training: { globalBatch: 16, microBatch: c.microBatch, recompute: c.recompute, optimizer: c.optimizer, flashAttention: c.flashAttention },
                  parallel: { tp: c.tp, pp: c.pp, dp: (c.split === 'none' ? 8 : 4) / (c.tp * c.pp), schedule, chunks, zero: c.zero, ...split, ...(c.offload ? { offload: { optimizer: 'cpu' } } : {}) },
                }),
              ),
              'b.yaml',
            );
          } catch {
            return; // a layout the checks refuse is not the bound's business
          }
          let report;
          try {
            report = simulate(scenario).report;
          } catch {
            return; // nor one the lowering refuses
          }
          bounded++;
          const bounds = planBounds(scenario);
          expect(bounds.stepTime).toBeGreaterThan(0);
          expect(bounds.stepTime).toBeLessThanOrEqual(report.stepTime);
          // So pruning by memory never discards a candidate that fits.
          expect(bounds.peakHbm).toBeGreaterThan(0);
          expect(bounds.peakHbm).toBeLessThanOrEqual(report.memory.peak.hbm);
        },
      ),
      { numRuns: 300, seed: 21 },
    );
    expect(bounded).toBeGreaterThan(80);
  }, 180_000);

  it('law: the bounds stay below the simulated step time and HBM peak on an Evoformer with DAP and on a vision transformer', () => {
    for (const patch of [
      { cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'alphafold2', layers: 2, extraLayers: 1, residues: 32, msaRows: 16, extraMsaRows: 32 }, training: { globalBatch: 4, microBatch: 1, recycles: 1 }, parallel: { tp: 1, pp: 1, dp: 2, dap: 2 } },
      { cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'pangu-weather' }, training: { globalBatch: 4, microBatch: 1, recompute: 'full' }, parallel: { tp: 1, pp: 1, dp: 4, zero: 2 } },
    ]) {
      const scenario = parseScenario(stringify(merge(BASE, patch)), 'k.yaml');
      const bounds = planBounds(scenario);
      const report = simulate(scenario).report;
      expect(bounds.stepTime).toBeGreaterThan(0);
      expect(bounds.stepTime).toBeLessThanOrEqual(report.stepTime);
      expect(bounds.peakHbm).toBeLessThanOrEqual(report.memory.peak.hbm);
    }
  }, 120_000);

  it('bounds through the layout cache, which candidates differing only in ZeRO and offloading share, equal bounds computed afresh', () => {
    const source = readScenarioSource(scenarioFile('cached', { training: { globalBatch: 16 } }));
    const cache = new LayoutCache();
    let compared = 0;
    for (const s of validCandidates(source, 4)) {
      const topology = buildTopology(s.cluster);
      expect(planBounds(s, topology, cache)).toEqual(planBounds(s, topology));
      compared++;
    }
    expect(compared).toBeGreaterThan(50);
  });

  it('layouts that share a stage-costs key (all but ZeRO and offloading) have the same stage costs, so the planner may reuse them and the bounds built on them', () => {
    const source = readScenarioSource(scenarioFile('keyed', { training: { globalBatch: 16 } }));
    const byKey = new Map<string, string>();
    let shared = 0;
    for (const s of validCandidates(source, 4)) {
      const costs = JSON.stringify(stageCosts(s, buildProgram(buildWorkload(s.model, { microBatch: s.training.microBatch, attention: s.training.flashAttention ? 'flash' : 'standard', recycles: s.training.recycles }), s.parallel)));
      const key = stageCostsKey(s);
      if (byKey.has(key)) {
        shared++;
        expect(costs).toBe(byKey.get(key));
      } else byKey.set(key, costs);
    }
    expect(shared).toBeGreaterThan(50);
  });

  it('claims nothing under jitter, which can shorten an operation', () => {
    const scenario = parseScenario(stringify(merge(BASE, { variability: { jitter: 0.1 } })), 'j.yaml');
    expect(planBounds(scenario).stepTime).toBe(0);
  });
});

describe('pruning by model states', () => {
  it('the bound never exceeds the simulated HBM peak, so pruning never discards a candidate that fits (property, against full simulation)', () => {
    let simulated = 0;
    fc.assert(
      fc.property(
        fc.record({
          tp: fc.constantFrom(1, 2, 4),
          pp: fc.constantFrom(1, 2, 4),
          // A sequence split (context parallel or Ulysses) holds the weights whole too, so ZeRO shards over it.
          split: fc.constantFrom('none', 'cp', 'ulysses'),
          zero: fc.constantFrom(0, 1, 2, 3),
          precision: fc.constantFrom('fp32', 'fp16', 'bf16'),
          optimizer: fc.constantFrom('adam', 'sgd', 'adafactor', 'mezo'),
          weightBits: fc.constantFrom(undefined, 4),
          recompute: fc.constantFrom('none', 'full'),
          memoryMiB: fc.integer({ min: 16, max: 4096 }),
        }),
        (c) => {
          let scenario;
          try {
            scenario = parseScenario(
              stringify(merge(BASE, { cluster: { nodes: 2, gpusPerNode: 4, gpu: { preset: 'a100-80gb', memory: `${c.memoryMiB}MiB` } }, training: { globalBatch: 16, precision: c.precision, optimizer: c.optimizer, recompute: c.recompute, flashAttention: true, ...(c.weightBits ? { weightBits: c.weightBits } : {}) }, parallel: { tp: c.tp, pp: c.pp, dp: (c.split === 'none' ? 8 : 4) / (c.tp * c.pp), zero: c.zero, ...(c.split === 'cp' ? { cp: 2 } : c.split === 'ulysses' ? { ulysses: 2 } : {}) } })),
              'p.yaml',
            );
          } catch {
            return; // a layout the checks refuse is not the bound's business
          }
          const bound = statesLowerBound(scenario)!;
          const report = simulate(scenario).report;
          simulated++;
          expect(bound).toBeLessThanOrEqual(report.memory.peak.hbm * (1 + 1e-9));
          if (bound > scenario.cluster.gpu.memoryBytes) expect(report.memory.fits).toBe(false);
        },
      ),
      { numRuns: 80, seed: 14 },
    );
    // Most layouts run: the property is not vacuous.
    expect(simulated).toBeGreaterThan(30);
  }, 120_000);
});


describe('dtsim plan on an Evoformer', () => {
  const evoformer = { cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'alphafold2', layers: 2, extraLayers: 1, residues: 32, msaRows: 16, extraMsaRows: 32 }, training: { globalBatch: 4, microBatch: 1, recycles: 0 }, parallel: { tp: 1, pp: 1, dp: 4 } };

  it('searches DAP x data parallelism, micro-batch, checkpointing and ZeRO, and its best is the best of simulating them all', async () => {
    const file = scenarioFile('evoformer', evoformer);
    const source = readScenarioSource(file);
    const base = parseScenario(source.text, source.file);
    const space = planCandidates(base, 4);
    expect(new Set(space.map((c) => c['parallel.dap']))).toEqual(new Set([1, 2, 4]));
    expect(space.every((c) => c['parallel.tp'] === undefined && c['parallel.pp'] === undefined)).toBe(true);
    const result = await plan(source, { workers: 1 });
    let best = Infinity;
    for (const overrides of space) {
      const scenario = candidate(source, overrides);
      const report = simulate(scenario).report;
      if (report.memory.fits) best = Math.min(best, report.stepTime);
    }
    expect(result.ranked[0].result!.stepTime).toBe(best);
  }, 60_000);

  it('law: the model-state bound stays below the simulated peak with DAP and ZeRO sharding over data x DAP', () => {
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 4), fc.constantFrom(0, 1, 2, 3), (dap, zero) => {
        const scenario = parseScenario(stringify(merge(BASE, merge(evoformer, { parallel: { dap, dp: 4 / dap, zero } }))), 'e.yaml');
        expect(statesLowerBound(scenario)!).toBeLessThanOrEqual(simulate(scenario).report.memory.peak.hbm * (1 + 1e-9));
      }),
      { numRuns: 12, seed: 12 },
    );
  });
});
