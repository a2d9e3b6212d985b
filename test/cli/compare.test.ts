import { describe, expect, it } from 'vitest';
import { cli } from '../support/cli.js';

describe('dtsim compare', () => {
  it('shows all six schedules on the bundled GPT scenario in one table', async () => {
    const r = await cli('compare', 'scenarios/small-gpt.yaml', '--schedules', 'gpipe,1f1b,interleaved,zb-h1,zb-h2,zb-v');
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split('\n').slice(3);
    expect(rows.map((row) => row.split(/\s+/)[0])).toEqual(['gpipe', '1f1b', 'interleaved', 'zb-h1', 'zb-h2', 'zb-v']);
    for (const row of rows) expect(row).toMatch(/\d+(\.\d+)? ms\s+\d+\.\d%\s+\d+\.\d%\s+.*(yes|NO)$/);
    expect(r.stdout).toMatch(/variant\s+chunks\s+step time\s+MFU\s+bubble\s+in-span bubble\s+exposed comm\s+communication\s+pipeline bytes\s+peak activations \(worst stage\)\s+peak HBM\s+fits/);
  });

  it('--json gives one array of reports, and --vary runs every combination', async () => {
    const r = await cli('compare', 'scenarios/pipeline-4x8.yaml', '--schedules', '1f1b,zb-h1', '--vary', 'training.globalBatch=8,16', '--json');
    const results = JSON.parse(r.stdout);
    expect(results.map((x: { variant: string }) => x.variant)).toEqual([
      '1f1b training.globalBatch=8',
      '1f1b training.globalBatch=16',
      'zb-h1 training.globalBatch=8',
      'zb-h1 training.globalBatch=16',
    ]);
    for (const x of results) expect(x.report.stepTime).toBeGreaterThan(0);
    // With 1 ms passes and free transfers: 1F1B (m+p-1)·3 ms, ZB-H1 (3m+p-1) ms.
    expect(results.map((x: { report: { stepTime: number } }) => Math.round(x.report.stepTime * 1e4) / 10)).toEqual([33, 57, 27, 51]);
  });

  it('a variant that cannot run is a row with its reason, not a failure', async () => {
    const r = await cli('compare', 'scenarios/pipeline-4x8.yaml', '--vary', 'parallel.schedule=1f1b,zb-h2', '--set', 'training.globalBatch=4', '--json');
    expect(r.code).toBe(0);
    const [ok, bad] = JSON.parse(r.stdout);
    expect(ok.report).toBeDefined();
    expect(bad.error).toMatch(/zb-h2 schedule needs at least 7 micro-batches per replica/);
    const table = await cli('compare', 'scenarios/pipeline-4x8.yaml', '--vary', 'parallel.schedule=1f1b,zb-h2', '--set', 'training.globalBatch=4');
    // The reason comes last, so the columns before it keep the width of the figures.
    expect(table.stdout).toMatch(/parallel.schedule=zb-h2(\s+-){10}\s+cannot run: training\.globalBatch: the zb-h2 schedule needs/);
    const [header, ok1] = table.stdout.split('\n').slice(2);
    expect(ok1.indexOf('yes')).toBe(header.indexOf('fits'));
  });

  it('usage errors: no variants, unknown schedule', async () => {
    expect((await cli('compare', 'scenarios/small-gpt.yaml')).code).toBe(2);
    const r = await cli('compare', 'scenarios/small-gpt.yaml', '--schedules', 'zigzag');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown schedule "zigzag"/);
  });
});

describe('dtsim compare --vary values', () => {
  it('are the items of a YAML flow list, so that a value may be a list itself', async () => {
    const r = await cli('compare', 'scenarios/small-gpt.yaml', '--vary', 'parallel.layersPerStage=[10,14],[12,12]', '--json');
    expect(r.code).toBe(0);
    const results = JSON.parse(r.stdout);
    expect(results.map((x: { variant: string }) => x.variant)).toEqual(['parallel.layersPerStage=[10,14]', 'parallel.layersPerStage=[12,12]']);
    expect(results.map((x: { report: { stages: { layers: number }[] } }) => x.report.stages.map((s) => s.layers))).toEqual([[10, 14], [12, 12]]);
    const bad = await cli('compare', 'scenarios/small-gpt.yaml', '--vary', 'parallel.tp=[1,2');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--vary parallel\.tp: cannot read the values/);
  });
});
