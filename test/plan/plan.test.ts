import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { plan, planCandidates, scenarioWith, statesLowerBound } from '../../src/plan.js';
import { parseScenario, readScenarioSource } from '../../src/scenario/load.js';
import { simulate } from '../../src/simulate.js';
import { cli } from '../support/cli.js';
import { BASE, merge } from '../support/scenarios.js';

/** `dtsim plan` (issue 14, points 1 and 2), on problems small enough to simulate every candidate by hand. */
const dir = mkdtempSync(join(tmpdir(), 'dtsim-plan-'));
const scenarioFile = (name: string, patch: Record<string, unknown> = {}) => {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(merge(BASE, patch)));
  return file;
};

describe('dtsim plan', () => {
  const file = scenarioFile('tiny', { training: { globalBatch: 16 } });

  it("the planner's best is the best of an exhaustive simulation of the same space, and every refusal is counted", async () => {
    const source = readScenarioSource(file);
    const result = await plan(source, { workers: 1 });
    const base = parseScenario(source.text, source.file);
    const space = planCandidates(base, 4);
    expect(result.candidates).toBe(space.length);
    let best = Infinity;
    let ran = 0;
    for (const overrides of space) {
      let scenario;
      try {
        scenario = parseScenario(source.text, source.file, { set: Object.entries(overrides).map(([p, v]) => `${p}=${JSON.stringify(v)}`) });
      } catch {
        continue;
      }
      let report;
      try {
        report = simulate(scenario).report;
      } catch {
        continue;
      }
      ran++;
      if (report.memory.fits) best = Math.min(best, report.stepTime);
    }
    expect(result.simulated + result.pruned).toBe(ran);
    expect(result.simulated + result.pruned + Object.values(result.refused).reduce((a, b) => a + b, 0)).toBe(result.candidates);
    expect(result.ranked[0].result!.stepTime).toBe(best);
    // The Pareto front: sorted by peak HBM with step time falling, and the fastest on it.
    const front = result.pareto.map((c) => c.result!);
    for (let i = 1; i < front.length; i++) {
      expect(front[i].peakHbm).toBeGreaterThanOrEqual(front[i - 1].peakHbm);
      expect(front[i].stepTime).toBeLessThan(front[i - 1].stepTime);
    }
    expect(front[front.length - 1].stepTime).toBe(best);
  }, 120_000);

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
      const scenario = parseScenario(source.text, source.file, { set: Object.entries(overrides).map(([p, v]) => `${p}=${JSON.stringify(v)}`) });
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
