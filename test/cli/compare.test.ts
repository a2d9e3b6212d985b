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
    // The reason goes below the table, numbered, so the columns keep the width of the figures.
    expect(table.stdout).toMatch(/parallel.schedule=zb-h2(\s+-){10}\s+cannot run \[1\]\n/);
    expect(table.stdout).toMatch(/\n\[1\] parallel\.schedule=zb-h2: training\.globalBatch: the zb-h2 schedule needs/);
    const [header, ok1, bad1] = table.stdout.split('\n').slice(2);
    expect(ok1.indexOf('yes')).toBe(header.indexOf('fits'));
    expect(bad1.indexOf('cannot run')).toBe(header.indexOf('fits'));
  });

  it('a field given with the value it would derive (dp) is derived anew per variant, and says so', async () => {
    const r = await cli('compare', 'scenarios/small-gpt.yaml', '--vary', 'parallel.tp=1,2,4');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/cannot run/);
    expect(r.stdout).toMatch(/parallel\.dp: given with the value it derives, so derived anew for each variant/);
    const json = JSON.parse((await cli('compare', 'scenarios/small-gpt.yaml', '--vary', 'parallel.tp=1,2,4', '--json')).stdout);
    expect(json.map((x: { report: { parallel: { dp: number } } }) => x.report.parallel.dp)).toEqual([8, 4, 2]);
    // Set explicitly on the command line, dp stays what was asked for, and a variant that contradicts it says why.
    const fixed = JSON.parse((await cli('compare', 'scenarios/small-gpt.yaml', '--vary', 'parallel.tp=1,2', '--set', 'parallel.dp=4', '--json')).stdout);
    expect(fixed[0].error).toMatch(/must equal the GPU count/);
    expect(fixed[1].report.parallel.dp).toBe(4);
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
