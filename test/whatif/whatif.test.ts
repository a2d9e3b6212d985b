import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/scenario/load.js';
import { simulate } from '../../src/simulate.js';
import { memoryWhatIf, rank, type TechniqueResult } from '../../src/whatif.js';
import { cli } from '../support/cli.js';
import { BASE, merge } from '../support/scenarios.js';

/** `dtsim memory` (issue 13, point 8): each technique alone, simulated, ranked; combined until the step fits. */
const source = (patch: Record<string, unknown>) => ({ file: 'w.yaml', text: stringify(merge(BASE, patch)) });
const small = source({ cluster: { nodes: 1, gpusPerNode: 4 }, training: { globalBatch: 8, microBatch: 2 }, parallel: { tp: 2, pp: 1, dp: 2 } });

describe('the what-if memory report', () => {
  it("every technique's figures are those of simulating the scenario with its fields set", () => {
    const result = memoryWhatIf(small);
    expect(result.techniques.length).toBeGreaterThan(6);
    for (const t of result.techniques) {
      const report = simulate(parseScenario(small.text, small.file, { set: t.set })).report;
      expect(t.peakHbm).toBe(report.memory.peak.hbm);
      expect(t.stepTime).toBe(report.stepTime);
      expect(t.savedBytes).toBe(result.baseline.peak.hbm - report.memory.peak.hbm);
    }
  });

  it('offers the techniques the model and layout allow: sequence parallelism with tp > 1, ZeRO stages with replicas, DAP only for an Evoformer', () => {
    const fields = new Set(memoryWhatIf(small).techniques.map((t) => t.field));
    expect(fields.has('parallel.sequenceParallel')).toBe(true);
    expect(fields.has('parallel.zero')).toBe(true);
    expect(fields.has('parallel.dap')).toBe(false);
    const evoformer = source({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'alphafold2', layers: 2, residues: 32, msaRows: 16, extraMsaRows: 32 }, training: { globalBatch: 4, recycles: 0 }, parallel: { tp: 1, pp: 1, dp: 4 } });
    const evo = memoryWhatIf(evoformer).techniques;
    expect(evo.some((t) => t.field === 'parallel.dap')).toBe(true);
    expect(evo.some((t) => t.set.includes('training.recompute=selective'))).toBe(false);
  });

  it('law: the ranking puts every memory saver before every spender, savers that lose no time first (most saved first), then by bytes saved per second lost', () => {
    const result = fc.record({ savedBytes: fc.integer({ min: -1e6, max: 1e6 }), lostSeconds: fc.double({ min: -10, max: 10, noNaN: true }) });
    fc.assert(
      fc.property(fc.array(result, { maxLength: 12 }), (rows) => {
        const ranked = rank(rows.map((r, i) => ({ ...r, name: String(i), set: [], field: String(i), peakHbm: 0, stepTime: 0, peakHost: 0, fits: true, makesItFit: false }) as TechniqueResult));
        expect(ranked.length).toBe(rows.length);
        const firstSpender = ranked.findIndex((t) => t.savedBytes <= 0);
        if (firstSpender >= 0) expect(ranked.slice(firstSpender).every((t) => t.savedBytes <= 0)).toBe(true);
        const savers = firstSpender >= 0 ? ranked.slice(0, firstSpender) : ranked;
        const firstCostly = savers.findIndex((t) => t.lostSeconds > 0);
        const free = firstCostly >= 0 ? savers.slice(0, firstCostly) : savers;
        const costly = firstCostly >= 0 ? savers.slice(firstCostly) : [];
        expect(costly.every((t) => t.lostSeconds > 0)).toBe(true);
        for (let i = 1; i < free.length; i++) expect(free[i].savedBytes).toBeLessThanOrEqual(free[i - 1].savedBytes);
        for (let i = 1; i < costly.length; i++) expect(costly[i].savedBytes / costly[i].lostSeconds).toBeLessThanOrEqual(costly[i - 1].savedBytes / costly[i - 1].lostSeconds);
      }),
    );
  });

  it('for a step that does not fit: marks the techniques that alone make it fit, and a combination that fits is one a simulation confirms', () => {
    const tight = source({ cluster: { nodes: 1, gpusPerNode: 4, gpu: { preset: 'a100-80gb', memory: '320MiB' } }, training: { globalBatch: 8, microBatch: 2 }, parallel: { tp: 2, pp: 1, dp: 2 } });
    const result = memoryWhatIf(tight);
    expect(result.baseline.fits).toBe(false);
    for (const t of result.techniques) expect(t.makesItFit).toBe(t.fits);
    const c = result.combination!;
    expect(c.fits).toBe(true);
    const confirmed = simulate(parseScenario(tight.text, tight.file, { set: c.set })).report;
    expect(confirmed.memory.peak.hbm).toBe(c.peakHbm);
    expect(confirmed.memory.fits).toBe(c.fits);
  });

  it('keeps the global batch when the scenario gives gradient accumulation instead, and drops recomputeLayers where a variant changes the policy', () => {
    const accumulated = source({ cluster: { nodes: 1, gpusPerNode: 4 }, training: { globalBatch: undefined, microBatch: 2, accumulation: 2, recompute: 'full', recomputeLayers: 1 }, parallel: { tp: 2, pp: 1, dp: 2 } });
    const result = memoryWhatIf(accumulated);
    expect(result.refused).toEqual([]);
    const halved = result.techniques.find((t) => t.field === 'training.microBatch')!;
    const direct = simulate(parseScenario(small.text, small.file, { set: ['training.microBatch=1', 'training.recompute=full', 'training.recomputeLayers=1'] }));
    expect(direct.scenario.training.globalBatch).toBe(8);
    expect(halved.stepTime).toBe(direct.report.stepTime);
    expect(result.techniques.some((t) => t.set.includes('training.recompute=none'))).toBe(true);
  });

  it('dtsim memory prints the breakdown and the ranked table; --json gives the same; a bad scenario exits 3', async () => {
    const text = await cli('memory', 'scenarios/esm2-15b-zero3-4node.yaml');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/peaks at .* HBM and fits/);
    expect(text.stdout).toMatch(/^technique +sets +peak HBM +saves/m);
    const asJson = await cli('memory', 'scenarios/esm2-15b-zero3-4node.yaml', '--json');
    const parsed = JSON.parse(asJson.stdout);
    expect(parsed.techniques.length).toBeGreaterThan(3);
    expect(parsed.baseline.breakdown.hbm.activations).toBeGreaterThan(0);
    const bad = await cli('memory', 'scenarios/esm2-15b-zero3-4node.yaml', '--set', 'parallel.tp=3');
    expect(bad.code).toBe(3);
  });
});
