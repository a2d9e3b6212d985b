import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareVariants } from '../../src/compare.js';
import { CATEGORIES } from '../../src/lower/resources.js';
import { renderCompareHtml, renderHtmlReport, EMBEDDED_DEVICES } from '../../src/report/html.js';
import { htmlData } from '../../src/report/html-data.js';
import { loadScenarioFile, readScenarioSource } from '../../src/scenario/load.js';
import { pipelineRanks, simulate } from '../../src/simulate.js';
import { cli } from '../support/cli.js';
import { BASE, merge, scenario } from '../support/scenarios.js';

/**
 * The visual report (issue 15): every bundled scenario's page opens in headless Chromium (Debian's package, which
 * .ci/run installs) without errors, every chart draws marks, the page stays under a few MB, and the numbers it
 * embeds are the JSON report's. Screenshots go to test-results/html/.
 */
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = 'test-results/html';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const files = readdirSync('scenarios').filter((f) => f.endsWith('.yaml')).sort();

let browser: Browser;
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium), as .ci/run does`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  mkdirSync(SHOTS, { recursive: true });
}, 60_000);
afterAll(async () => browser?.close());

/** Opens a page in Chromium and returns its console errors and the marks each chart drew. */
async function open(html: string, name: string) {
  const file = join(SHOTS, `${name}.html`);
  writeFileSync(file, html);
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  // No request may leave the page: it must be self-contained.
  const requests: string[] = [];
  page.on('request', (r) => !r.url().startsWith('file:') && requests.push(r.url()));
  await page.goto(`file://${join(process.cwd(), file)}`);
  await page.waitForFunction(() => document.body.dataset.drawn !== undefined, null, { timeout: 60_000 });
  const drawn = await page.evaluate(() => document.body.dataset.drawn);
  const marks = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll<HTMLElement>('div.chart')].map((c) => [c.dataset.spec, c.querySelectorAll('.role-mark > path, .role-mark > line, .role-mark > text').length])));
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  await page.close();
  return { errors, drawn, marks, requests };
}

const embedded = (html: string, id: string) => JSON.parse(html.match(new RegExp(`<script type="application/json" id="${id}">(.*?)</script>`, 's'))![1]);

describe('HTML report of every bundled scenario', () => {
  it.each(files)('%s: opens in headless Chromium without errors or requests, every chart has marks, under 4 MB, and embeds the JSON report', async (file) => {
    const s = loadScenarioFile(join('scenarios', file));
    const sim = simulate(s, { recordMemory: new Set(pipelineRanks(s, 0)) });
    const html = renderHtmlReport(sim);
    expect(html.length).toBeLessThan(4 * 2 ** 20);
    const report = embedded(html, 'report');
    if (sim.report.devices.length <= EMBEDDED_DEVICES) expect(report).toEqual(JSON.parse(JSON.stringify(sim.report)));
    else expect({ ...report, devicesOmitted: undefined }).toEqual(JSON.parse(JSON.stringify({ ...sim.report, devices: [] })));
    const result = await open(html, file.replace(/\.yaml$/, ''));
    expect(result.errors).toEqual([]);
    expect(result.requests).toEqual([]);
    expect(result.drawn).toBe('yes');
    for (const chart of ['timeline', 'memory', 'communication', 'exposed']) expect(result.marks[chart], chart).toBeGreaterThan(0);
  }, 120_000);
});

describe('what the page draws', () => {
  const sim = (patch = {}) => {
    const s = scenario(patch);
    return simulate(s, { recordMemory: new Set(pipelineRanks(s, 0)) });
  };

  it("each stage's memory chart peaks at its GPU's reported HBM peak, with or without merging samples, and never draws two states at one instant", () => {
    for (const microBatches of [8, 400]) {
      const step = sim({ training: { globalBatch: microBatches } });
      const data = htmlData(step);
      const merged = data.memory.filter((p) => p.series === 0).length;
      if (microBatches === 400) expect(merged).toBeLessThanOrEqual(401);
      data.memoryDevices.forEach((device, stage) => {
        const highest = Math.max(...data.memory.filter((p) => p.series === stage).map((p) => CATEGORIES.reduce((sum, c) => sum + p[c], 0)));
        expect(highest).toBeCloseTo(step.report.devices[device].peakMemory.hbm, -3);
        const times = data.memory.filter((p) => p.series === stage).map((p) => p.time);
        for (let i = 1; i < times.length - 1; i++) expect(times[i]).toBeGreaterThan(times[i - 1]);
      });
    }
  });

  it('the timeline has every compute pass of one GPU per stage, inside the step', () => {
    const step = sim();
    const data = htmlData(step);
    expect(data.timelineDevices).toEqual([0, 1, 2, 3]);
    for (const stage of [0, 1, 2, 3]) {
      const passes = data.timeline.filter((b) => b.row === `stage ${stage}` && (b.kind === 'forward' || b.kind === 'backward'));
      // 8 micro-batches: a forward and a backward each.
      expect(passes).toHaveLength(16);
    }
    expect(Math.max(...data.timeline.map((b) => b.end))).toBeLessThanOrEqual(step.report.stepTime + 1e-12);
  });

  it('in the browser, hovering a timeline bar names its kind, micro-batch and duration, and scrolling zooms the time axis', async () => {
    const s = loadScenarioFile('scenarios/small-gpt.yaml');
    const file = join(SHOTS, 'interaction-small-gpt.html');
    writeFileSync(file, renderHtmlReport(simulate(s, { recordMemory: new Set(pipelineRanks(s, 0)) })));
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(`file://${join(process.cwd(), file)}`);
    await page.waitForFunction(() => document.body.dataset.drawn !== undefined);
    const chart = page.locator('div.chart[data-spec="timeline"]');
    await chart.locator('.role-mark > path').nth(3).hover();
    await expect.poll(() => chart.getAttribute('title')).toMatch(/operation: forward\nmicro-batch: \d+\nstart \(s\): [\d.]+\nduration \(s\): [\d.]+/);
    const ticks = () => chart.locator('.role-axis-label text').allTextContents();
    const before = await ticks();
    const box = (await chart.locator('svg').boundingBox())!;
    await page.mouse.move(box.x + 400, box.y + 40);
    await page.mouse.wheel(0, -400);
    await expect.poll(ticks).not.toEqual(before);
    await page.close();
  }, 60_000);

  it('plan --html: the best candidates, and a mark for every simulated candidate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dtsim-plan-html-'));
    const file = join(dir, 'tiny.yaml');
    writeFileSync(file, stringify(merge(BASE, { training: { globalBatch: 16 } })));
    const page = join(dir, 'plan.html');
    const r = await cli('plan', file, '--html', page, '--workers', '1');
    expect(r.code).toBe(0);
    const html = readFileSync(page, 'utf8');
    const planned = embedded(html, 'plan');
    const result = await open(html, 'plan-tiny');
    expect(result.errors).toEqual([]);
    expect(result.drawn).toBe('yes');
    // One point per simulated candidate, the front's line, and two labels.
    expect(result.marks.plan).toBe(planned.simulated + 1 + 2);
  }, 120_000);

  it('compare --html: the variants table and a point per variant that runs, fitting or not told apart', async () => {
    const source = readScenarioSource('scenarios/small-gpt.yaml');
    const { results } = compareVariants(source, [
      { label: '1f1b', set: ['parallel.schedule=1f1b'] },
      { label: 'gpipe', set: ['parallel.schedule=gpipe'] },
      { label: 'tp 3', set: ['parallel.tp=3'] },
    ]);
    const html = renderCompareHtml('small-gpt', results);
    expect(html).toContain('cannot run');
    const result = await open(html, 'compare-small-gpt');
    expect(result.errors).toEqual([]);
    expect(result.drawn).toBe('yes');
    // Two points and their two labels.
    expect(result.marks.compare).toBe(4);
  }, 60_000);
});
