import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../support/cli.js';

// The cases a fuzzer found (issue 17): each ends in a result or a clean error, never a crash, a hang or a stack.
const SMALL = 'scenarios/small-gpt.yaml';
const bin = 'dist/src/cli/main.js';
const dir = mkdtempSync(join(tmpdir(), 'dtsim-robust-'));
const base = readFileSync(SMALL, 'utf8');
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
/** A clean error: the documented exit code, one short message naming where, no stack trace. */
const clean = (r: { code: number; stdout: string; stderr: string }, code: number, pattern: RegExp) => {
  expect(r.code).toBe(code);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.stderr.length).toBeLessThan(10_000);
};

describe('scenario files that once crashed or hung', () => {
  it('YAML aliases: a "billion laughs" and an alias to a missing anchor are scenario errors with a position', async () => {
    let bomb = `${base}a0: &a0 [x, x, x, x, x, x, x, x, x]\n`;
    for (let i = 1; i < 9; i++) bomb += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
    clean(await cli('validate', file('bomb.yaml', bomb)), 3, /bomb\.yaml:\d+:\d+: YAML aliases \(\*name\) expand to more than 100 copies/);
    clean(await cli('validate', file('alias.yaml', base.replace('seed: 1', 'seed: *nope'))), 3, /alias\.yaml:4:7: YAML alias: Unresolved alias .*nope/);
  });

  it('quantities that overflow and counts beyond any machine are refused with what is allowed', async () => {
    const node = (nic: string) => file('nic.yaml', base.replace(/node: dgx-a100.*/, `node: { preset: dgx-a100, nic: { ${nic} } }`));
    clean(await cli('validate', node('latency: 1e306min')), 3, /nic\.yaml:8:\d+: cluster\.node\.nic\.latency: must be at most 1e6 s/);
    clean(await cli('validate', node('bandwidth: 1e300PiB/s')), 3, /cluster\.node\.nic\.bandwidth: expected a bandwidth/);
    clean(await cli('validate', SMALL, '--set', 'model.hidden=1e300'), 3, /model\.hidden: expected a whole number of at least 1, at most 1e\+9/);
  });

  it('quantities so small that work over them is infinite are refused; a step past the exact clock is exit 4', async () => {
    // 1e-300 FLOP/s once reached the engine as an Infinity duration: "event scheduled in the past: NaN".
    clean(await cli('run', SMALL, '--set', 'cluster.gpu.flops=1e-300'), 3, /cluster\.gpu\.flops: must be at least 1 FLOP\/s/);
    clean(await cli('run', SMALL, '--set', 'cluster.gpu.computeEfficiency=1e-300'), 3, /cluster\.gpu\.computeEfficiency: expected a fraction from 1e-6 to 1/);
    clean(await cli('run', SMALL, '--set', 'cluster.node.hostOptimizerRate=1e-300'), 3, /hostOptimizerRate: expected parameters per second, at least 1/);
    // Valid, but 1 FLOP/s makes the step last past 2^53 ns, where the ladder queue once spun forever.
    clean(await cli('run', SMALL, '--set', 'cluster.gpu.flops=1'), 4, /the step runs past 104 days of simulated time/);
  });

  it('--set below a preset name (node: dgx-a100) sets a field of that preset', async () => {
    const r = await cli('validate', SMALL, '--set', 'cluster.node.nic.bandwidth=1GB/s', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).cluster.node).toMatchObject({ name: 'dgx-a100', nic: { bandwidthBytesPerSecond: 1e9 } });
  });

  it('a step too large to simulate is refused before anything is built, with the estimate and the flag that raises the limit', async () => {
    for (const set of [['model.layers=1000000000'], ['training.globalBatch=1000000000'], ['cluster.nodes=1000000', 'parallel.dp=2000000', 'training.globalBatch=4000000']]) {
      clean(await cli('run', SMALL, ...set.flatMap((s) => ['--set', s])), 3, /this step would need about [\d.]+[KMBT]? operations \(about .* of memory to simulate\), over the limit of 30\.00M; .*--max-operations/);
    }
    clean(await cli('run', SMALL, '--max-operations', '100'), 3, /over the limit of 100;/);
    expect((await cli('run', SMALL, '--max-operations', '100000')).code).toBe(0);
    clean(await cli('run', SMALL, '--max-operations', '0'), 2, /--max-operations takes a whole number of operations, at least 1/);
  });

  it('validate counts a billion layers\' parameters without building them (the long fuzz run found it exhausting memory)', async () => {
    const r = await cli('validate', SMALL, '--set', 'model.layers=1000000000');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/1000000000 layers, hidden 2048, 16 heads, 50358272\.11B parameters/);
  });

  it('validate answers at once for huge degrees and heads (no loop over them)', async () => {
    clean(await cli('validate', SMALL, '--set', 'parallel.pp=1000000000'), 3, /parallel\.pp: pp = 1000000000 is more stages than the model's 24 layers/);
    clean(await cli('validate', SMALL, '--set', 'model.heads=1000000000', '--set', 'parallel.tp=3', '--set', 'parallel.dp=1'), 3, /parallel\.tp: tp = 3 must divide the attention heads \(1000000000\); divisors that work: 1, 2, 4, 5, 8, 10, 16/);
  });

  it('tens of thousands of unknown fields: a bounded message with a count (each located in one pass); a file over 1 MiB is refused whole', async () => {
    const junk = (n: number) => base.replace('training:\n', `training:\n${Array.from({ length: n }, (_, i) => `  junk${i}: 1`).join('\n')}\n`);
    clean(await cli('validate', file('junk.yaml', junk(60_000))), 3, /training\.junk0: unknown field "junk0"[\s\S]*\.\.\. and 59980 more problems/);
    clean(await cli('validate', file('huge.yaml', junk(100_000))), 3, /huge\.yaml: \d+ characters is far more than a scenario needs; scenario files are limited to 1048576/);
    clean(await cli('validate', file('dup.yaml', `${base}seed: 2\n`)), 3, /dup\.yaml:\d+:1: malformed YAML\/JSON: Map keys must be unique; seed is given twice/);
  });

  it('values echoed in messages are truncated', async () => {
    const r = await cli('validate', file('long.yaml', base.replace('precision: bf16', `precision: ${'x'.repeat(100_000)}`)));
    clean(r, 3, /training\.precision: expected one of fp32, fp16, bf16, fp8, got "x{50,}\.\.\. \(100002 characters\)/);
    // Through --set, a value that long is refused before it is read.
    clean(await cli('validate', SMALL, '--set', `training.precision=${'x'.repeat(100_000)}`), 2, /--set training\.precision: the value is 100000 characters/);
  });
});

describe('arguments that once crashed or hung', () => {
  it('an option given twice, ranks beyond the GPUs and a huge --set index are usage errors', async () => {
    clean(await cli('run', SMALL, '--trace', join(dir, 'a.json'), '--trace', join(dir, 'b.json')), 2, /--trace was given more than once/);
    clean(await cli('run', SMALL, '--trace', join(dir, 'c.json'), '--trace-ranks', '0-4294967295'), 2, /--trace-ranks: rank 4294967295 is beyond the scenario's 16 GPUs/);
    clean(await cli('validate', SMALL, '--set', 'parallel.layersPerStage.100000000=1'), 2, /list index 100000000 is beyond any scenario list/);
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    clean(await cli('validate', SMALL, '--set', `x=${deep}`, '--set', `y=${deep}`), 2, /--set x: the value is 40000 characters, nested 20000 deep; at most 10000 characters and 32 levels/);
  });

  it('an output path that cannot be written is a usage error before simulating, naming the flag', async () => {
    clean(await cli('run', SMALL, '--trace', join(dir, 'missing', 'x.json')), 2, /--trace .*missing\/x\.json: the directory .*missing does not exist/);
    clean(await cli('run', SMALL, '--output', dir), 2, /--output .*: is a directory; give a file name/);
  });
});

describe('processes', () => {
  it('a reader that closes the pipe early ends the run quietly (EPIPE)', async () => {
    const child = spawn(process.execPath, [bin, 'run', 'scenarios/gpt3-175b-1024-a100.yaml', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('SIGTERM while a trace is written ends the write at once and leaves no temporary file, and one a killed process left is removed by the next write', async () => {
    const out = mkdtempSync(join(dir, 'sig-'));
    const trace = join(out, 'step.trace.json');
    // A stale temporary file of a process that no longer exists (pid 2^22 + 1 is beyond Linux's default pid_max).
    writeFileSync(join(out, '.step.trace.json.tmp-4194305-0'), 'half a trace');
    const child = spawn(process.execPath, [bin, 'run', 'scenarios/gpt3-175b-1024-a100.yaml', '--trace', trace, '--trace-ranks', '0-255'], { stdio: 'ignore' });
    // Signal as soon as the temporary file appears, while the trace is being written.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (readdirSync(out).some((n) => n.startsWith(`.step.trace.json.tmp-${child.pid}`)) || child.exitCode !== null) {
          clearInterval(poll);
          child.kill('SIGTERM');
          resolve();
        }
      }, 5);
    });
    const signal = await new Promise((resolve) => child.on('close', (_code, signal) => resolve(signal)));
    expect(readdirSync(out).filter((n) => n.includes('.tmp-'))).toEqual([]);
    // The write returns to the event loop every 50,000 events, so the signal ends it there: no trace, killed by it.
    expect(signal).toBe('SIGTERM');
    expect(existsSync(trace)).toBe(false);
  });

  it('the full process exits 3 on a too-large step without a stack trace', () => {
    const r = spawnSync(process.execPath, [bin, 'run', SMALL, '--set', 'model.layers=1000000000'], { encoding: 'utf8' });
    expect(r.status).toBe(3);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('honest warnings', () => {
  it('warns, without refusing, when tensor parallelism spans nodes or exceeds the key/value heads', async () => {
    const spans = JSON.parse((await cli('run', SMALL, '--json', '--set', 'parallel.tp=16', '--set', 'parallel.pp=1', '--set', 'parallel.dp=1')).stdout);
    expect(spans.warnings).toEqual([expect.stringMatching(/tensor parallelism over 16 GPUs spans nodes of 8/)]);
    const kv = JSON.parse((await cli('run', SMALL, '--json', '--set', 'parallel.tp=8', '--set', 'parallel.dp=1', '--set', 'model.kvHeads=4')).stdout);
    expect(kv.warnings).toEqual([expect.stringMatching(/tp = 8 exceeds the 4 key\/value heads: each is replicated on 2 GPUs/)]);
    expect(JSON.parse((await cli('run', SMALL, '--json')).stdout).warnings).toEqual([]);
  });
});

describe('conventions', () => {
  it('did-you-mean for a mistyped command, option, preset or schedule (two swapped letters count as one slip)', async () => {
    clean(await cli('rn', SMALL), 2, /Unknown arguments: rn, .* \(did you mean run\?\)/);
    clean(await cli('run', SMALL, '--jsn'), 2, /Unknown argument: jsn \(did you mean --json\?\)/);
    clean(await cli('validate', SMALL, '--set', 'cluster.node=dgx-a10'), 3, /cluster\.node: unknown node preset \(did you mean dgx-a100\?\)/);
    clean(await cli('validate', SMALL, '--set', 'model.preset=gpt3-13'), 3, /model\.preset: unknown model preset \(did you mean gpt3-13b\?\)/);
    clean(await cli('validate', SMALL, '--set', 'parallel.schedule=1fb1'), 3, /unknown schedule "1fb1" \(did you mean 1f1b\?\)/);
    clean(await cli('compare', SMALL, '--schedules', 'zbv'), 2, /--schedules: unknown schedule "zbv" \(did you mean zb-v\?\)/);
  });

  it('every command\'s help has examples', async () => {
    for (const command of ['run', 'compare', 'validate', 'topology', 'presets', 'schema']) {
      const r = await cli(command, '--help');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`Examples:\\n  dtsim ${command} `));
    }
  });

  it('with --json an error is one JSON document on stderr with its kind, exit code and issues', async () => {
    const r = await cli('run', SMALL, '--json', '--set', 'parallel.tp=3');
    expect(r.code).toBe(3);
    const { error } = JSON.parse(r.stderr);
    expect(error).toMatchObject({ kind: 'ScenarioError', exitCode: 3 });
    expect(error.issues[0]).toMatchObject({ path: 'parallel.dp', line: 20 });
  });

  it('`-` reads the scenario from standard input (compare too, once for every variant); help has examples; completion prints a script', () => {
    const r = spawnSync(process.execPath, [bin, 'run', '-', '--json'], { input: readFileSync(SMALL, 'utf8'), encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).name).toBe('small-gpt-2node');
    // compare reads standard input once, for all of its variants.
    const compared = spawnSync(process.execPath, [bin, 'compare', '-', '--vary', 'parallel.tp=1,2', '--json'], { input: readFileSync(SMALL, 'utf8'), encoding: 'utf8' });
    expect(compared.status).toBe(0);
    expect(JSON.parse(compared.stdout).map((v: { report?: unknown }) => v.report !== undefined)).toEqual([true, true]);
    const bad = spawnSync(process.execPath, [bin, 'validate', '-'], { input: 'name: x\n', encoding: 'utf8' });
    expect(bad.status).toBe(3);
    expect(bad.stderr).toMatch(/^dtsim: <stdin>:1:1: cluster: missing required field/);
    expect(spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' }).stdout).toMatch(/Examples:[\s\S]*dtsim run - < my\.yaml --json/);
    expect(spawnSync(process.execPath, [bin, 'completion'], { encoding: 'utf8' }).stdout).toMatch(/dtsim completion >> ~\/\.bashrc/);
  });
});

describe('honest labels', () => {
  it('without a pipeline the summary says idle compute, not bubble; with ZeRO-3 the stage table shows the parameters a GPU holds', async () => {
    const zero3 = (await cli('run', 'scenarios/esm2-15b-zero3-4node.yaml')).stdout;
    expect(zero3).toMatch(/^idle compute {4}[\d.]+% of the step idle on compute/m);
    expect(zero3).not.toMatch(/^bubble /m);
    expect(zero3).toMatch(/stage {2}layers {2}params\/GPU +peak activations {2}peak HBM {2}idle\n0 +48 +15\.10B \(471\.96M held\)/);
    expect((await cli('run', SMALL)).stdout).toMatch(/^bubble {10}[\d.]+% of the step idle on compute/m);
  });
});

describe('progress', () => {
  it('a terminal gets a progress line on stderr, rewritten in place and cleared; a pipe or --json none', async () => {
    const { runCli } = await import('../../src/cli/app.js');
    const capture = async (terminal: boolean, ...argv: string[]) => {
      let stderr = '';
      const code = await runCli(argv, { stdout: () => {}, stderr: (t) => (stderr += t), terminal });
      return { code, stderr };
    };
    const terminal = await capture(true, 'run', SMALL);
    expect(terminal.code).toBe(0);
    expect(terminal.stderr).toMatch(/\r\x1b\[Kdtsim: building the topology of 16 GPUs\.\.\.[\s\S]*executing the step\.\.\.[\s\S]*\r\x1b\[K$/);
    expect((await capture(true, 'run', SMALL, '--json')).stderr).toBe('');
    expect((await capture(false, 'run', SMALL)).stderr).toBe('');
  });

  it('compare names the variant running on a terminal', async () => {
    const { runCli } = await import('../../src/cli/app.js');
    let stderr = '';
    expect(await runCli(['compare', SMALL, '--vary', 'parallel.tp=1,2'], { stdout: () => {}, stderr: (t) => (stderr += t), terminal: true })).toBe(0);
    expect(stderr).toMatch(/dtsim: variant 1 of 2: parallel\.tp=1\.\.\.[\s\S]*variant 2 of 2: parallel\.tp=2\.\.\.\r\x1b\[K$/);
  });

  it('logs are human-readable lines on a terminal, JSON lines through a pipe, and never share the progress line', async () => {
    const { runCli } = await import('../../src/cli/app.js');
    const capture = async (terminal: boolean) => {
      let stderr = '';
      await runCli(['run', SMALL, '--log-level', 'debug'], { stdout: () => {}, stderr: (t) => (stderr += t), terminal });
      return stderr;
    };
    const piped = (await capture(false)).trim().split('\n').map((line) => JSON.parse(line));
    expect(piped.map((l: { msg: string }) => l.msg)).toEqual(expect.arrayContaining(['scenario loaded', 'phase done', 'step simulated']));
    const terminal = await capture(true);
    expect(terminal).toMatch(/\[\d\d:\d\d:\d\d\.\d{3}\] .*INFO.*: .*step simulated/);
    expect(terminal).not.toMatch(/"msg":/);
    // Each log line starts on a cleared line, and the progress text comes back after it.
    expect(terminal).toMatch(/\r\x1b\[K\[\d\d:\d\d[^\r]*phase done[^\r]*\n\r\x1b\[Kdtsim: /);
  });
});
