import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderSummary } from '../../src/report/summary.js';
import { checkTrace } from '../support/trace-checker.js';
import { cli } from '../support/cli.js';

const SMALL = 'scenarios/small-gpt.yaml';
const tmp = () => mkdtempSync(join(tmpdir(), 'dtsim-cli-'));

describe('dtsim run', () => {
  it('prints a human summary', async () => {
    const r = await cli('run', SMALL);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/step time\s+\d/);
    expect(r.stdout).toMatch(/bubble\s+[\d.]+% of the step/);
    expect(r.stdout).toMatch(/by link type\s+nvlink/);
    expect(r.stdout).toMatch(/memory\s+fits/);
    expect(r.stderr).toBe('');
  });

  it('--json prints exactly one JSON document with the contracted fields', async () => {
    const r = await cli('run', SMALL, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(Object.keys(report)).toEqual(expect.arrayContaining(['name', 'seed', 'stepTime', 'bubbleFraction', 'throughput', 'model', 'memory', 'communication', 'devices']));
    expect(Object.keys(report.throughput)).toEqual(expect.arrayContaining(['tokensPerSecond', 'tflopsPerDevice', 'mfu']));
    expect(Object.keys(report.memory.peak)).toEqual(['hbm', 'cpu', 'nvme']);
    expect(Object.keys(report.communication.byKind)).toEqual(['p2p', 'allReduce', 'reduceScatter', 'allGather', 'allToAll', 'broadcast', 'offload', 'ring']);
    expect(Object.keys(report.communication.byLinkType)).toEqual(['nvlink', 'pcie', 'infiniband', 'nvme']);
    const d = report.devices[0];
    expect(Object.keys(d)).toEqual(expect.arrayContaining(['rank', 'node', 'coordinates', 'busyTime', 'idleTime', 'bubbleFraction', 'peakMemory', 'memoryBreakdown', 'sentBytes']));
    expect(report.devices.map((x: { coordinates: object }) => x.coordinates).slice(0, 3)).toEqual([{ tp: 0, dp: 0, pp: 0 }, { tp: 1, dp: 0, pp: 0 }, { tp: 0, dp: 1, pp: 0 }]);
    expect(report.parallel.mesh).toEqual({ tp: 2, dp: 4, pp: 2 });
    expect(Object.keys(d.memoryBreakdown)).toEqual(['params', 'grads', 'optimizer', 'activations', 'buffers']);
    expect(report.devices).toHaveLength(16);
  });

  it('the summary renders from a saved JSON report alone, as run prints it', async () => {
    const [json, text] = await Promise.all([cli('run', SMALL, '--json'), cli('run', SMALL)]);
    expect(renderSummary(JSON.parse(json.stdout))).toBe(text.stdout);
  });

  it('--seed and --set change the run', async () => {
    const r = await cli('run', SMALL, '--json', '--seed', '42', '--set', 'parallel.schedule=gpipe');
    const report = JSON.parse(r.stdout);
    expect(report.seed).toBe(42);
    expect(report.parallel.schedule).toBe('gpipe');
  });

  it('--trace writes a valid Chrome trace atomically, --output the JSON report', async () => {
    const dir = tmp();
    const trace = join(dir, 'step.trace.json');
    const output = join(dir, 'report.json');
    const r = await cli('run', SMALL, '--trace', trace, '--output', output);
    expect(r.code).toBe(0);
    expect(checkTrace(JSON.parse(readFileSync(trace, 'utf8')))).toEqual([]);
    expect(JSON.parse(readFileSync(output, 'utf8')).name).toBe('small-gpt-2node');
    expect(readdirSync(dir).sort()).toEqual(['report.json', 'step.trace.json']);
  });

  it('--trace-ranks keeps only the named GPUs', async () => {
    const dir = tmp();
    const trace = join(dir, 't.json');
    await cli('run', SMALL, '--trace', trace, '--trace-ranks', '0-1,8');
    const t = JSON.parse(readFileSync(trace, 'utf8'));
    const gpuPids = new Set(t.traceEvents.filter((e: { ph: string; name: string; args: { name: string } }) => e.ph === 'M' && e.name === 'process_name' && e.args.name.startsWith('GPU')).map((e: { pid: number }) => e.pid));
    expect([...gpuPids].sort()).toEqual([1, 2, 9]);
    expect(checkTrace(t)).toEqual([]);
  });

  it('--trace-pipeline keeps one data-parallel replica: every stage and tensor-parallel rank, with their memory counters only', async () => {
    const dir = tmp();
    const trace = join(dir, 't.json');
    // small-gpt: TP 2 x PP 2 x DP 4 on 2 nodes; replica 1 is ranks 2-3 (stage 0) and 10-11 (stage 1).
    await cli('run', SMALL, '--trace', trace, '--trace-pipeline', '1');
    const t = JSON.parse(readFileSync(trace, 'utf8'));
    type Event = { ph: string; name: string; pid: number; args: { name: string } };
    const gpuPids = new Set(t.traceEvents.filter((e: Event) => e.ph === 'M' && e.name === 'process_name' && e.args.name.startsWith('GPU')).map((e: Event) => e.pid));
    expect([...gpuPids].sort((a, b) => a - b)).toEqual([3, 4, 11, 12]);
    const counterPids = new Set(t.traceEvents.filter((e: Event) => e.ph === 'C' && e.name === 'HBM bytes').map((e: Event) => e.pid));
    expect([...counterPids].sort((a, b) => a - b)).toEqual([3, 4, 11, 12]);
    expect(checkTrace(t)).toEqual([]);
  });

  it('writes nothing when the scenario is invalid', async () => {
    const dir = tmp();
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, readFileSync(SMALL, 'utf8').replace('tp: 2', 'tp: 3'));
    const r = await cli('run', bad, '--trace', join(dir, 't.json'), '--output', join(dir, 'r.json'));
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/bad\.yaml:\d+:\d+: parallel\.tp: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(readdirSync(dir)).toEqual(['bad.yaml']);
  });
});

describe('exit codes and usage errors', () => {
  it('missing scenario file: 2', async () => {
    const r = await cli('run', 'no/such/file.yaml');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/scenario file not found: no\/such\/file\.yaml/);
  });

  it('unknown flag: 2', async () => {
    const r = await cli('run', SMALL, '--jsn');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown argument: jsn/);
  });

  it('no command: 2', async () => {
    expect((await cli()).code).toBe(2);
  });

  it('bad --set syntax and bad --trace-ranks: 2', async () => {
    expect((await cli('run', SMALL, '--set', 'parallel.tp')).code).toBe(2);
    expect((await cli('run', SMALL, '--trace', '/tmp/x.json', '--trace-ranks', 'a-b')).code).toBe(2);
    const outside = await cli('run', SMALL, '--trace', '/tmp/x.json', '--trace-pipeline', '4');
    expect(outside.code).toBe(2);
    expect(outside.stderr).toMatch(/--trace-pipeline takes a data-parallel replica from 0 to 3; got 4/);
  });

  it('--help and --version: 0', async () => {
    const help = await cli('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/dtsim run <scenario>/);
    const version = await cli('--version');
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

describe('other commands', () => {
  it('validate prints what the scenario resolves to', async () => {
    const r = await cli('validate', SMALL);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/valid scenario "small-gpt-2node"/);
    const json = await cli('validate', SMALL, '--json');
    expect(JSON.parse(json.stdout).parallel.layersPerStage).toEqual([12, 12]);
  });

  it('presets lists GPUs, nodes, models and schedules', async () => {
    const r = await cli('presets');
    for (const name of ['a100-80gb', 'h100-sxm', 'dgx-2', 'dgx-h100', 'gpt3-175b', 'llama3-405b', '1f1b', 'gpipe']) expect(r.stdout).toContain(name);
    expect(Object.keys(JSON.parse((await cli('presets', '--json')).stdout))).toEqual(['gpus', 'nodes', 'models', 'schedules']);
  });

  it('topology summarises vertices, links and example routes', async () => {
    const r = await cli('topology', SMALL, '--json');
    const t = JSON.parse(r.stdout);
    expect(t.devices).toBe(16);
    expect(t.vertices).toMatchObject({ gpu: 16, nvswitch: 2, nic: 16, cpu: 2 });
    const crossNode = t.examplePaths.find((p: { to: string }) => p.to === 'n1.gpu0');
    expect(crossNode.type).toBe('infiniband');
    expect(crossNode.hops).toEqual(['n0.gpu0', 'n0.pcie0', 'n0.nic0', 'leaf0', 'n1.nic0', 'n1.pcie0', 'n1.gpu0']);
    expect((await cli('topology', SMALL)).stdout).toMatch(/example routes:/);
  });
});

describe('the installed executable', () => {
  const bin = 'dist/src/cli/main.js';
  it('is built (npm test builds it before running tests)', () => {
    expect(existsSync(bin)).toBe(true);
  });

  it('runs as a process with the documented exit codes, data on stdout and errors on stderr', () => {
    const ok = spawnSync(process.execPath, [bin, 'run', SMALL, '--json'], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout).name).toBe('small-gpt-2node');
    const usage = spawnSync(process.execPath, [bin, 'run', 'missing.yaml'], { encoding: 'utf8' });
    expect(usage.status).toBe(2);
    expect(usage.stdout).toBe('');
    expect(usage.stderr).toMatch(/not found/);
    const invalid = spawnSync(process.execPath, [bin, 'run', SMALL, '--set', 'parallel.dp=3'], { encoding: 'utf8' });
    expect(invalid.status).toBe(3);
    expect(execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' })).toMatch(/Commands:/);
  });

  it('logs go to stderr as JSON lines, never to stdout', () => {
    const r = spawnSync(process.execPath, [bin, 'run', SMALL, '--json', '--log-level', 'info'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    JSON.parse(r.stdout);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(JSON.parse(line).msg).toBeTypeOf('string');
  });

  it('--log-level debug adds the wall time of each phase', () => {
    const r = spawnSync(process.execPath, [bin, 'run', SMALL, '--json', '--log-level', 'debug'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const phases = r.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .filter((entry) => entry.msg === 'phase done');
    expect(phases.map((p) => p.phase)).toEqual(['topology', 'step', 'execute', 'report']);
    for (const p of phases) expect(p.wallMs).toBeGreaterThanOrEqual(0);
  });
});
