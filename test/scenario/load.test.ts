import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ScenarioError, UsageError } from '../../src/errors.js';
import { loadScenarioFile, parseScenario, plainScalar } from '../../src/scenario/load.js';
import { overrideString } from '../../src/sweep.js';

const GOOD = `name: ok
cluster:
  nodes: 2
  gpusPerNode: 8
  node: dgx-a100
model:
  preset: gpt3-1.3b
training:
  globalBatch: 64
  microBatch: 2
parallel:
  tp: 2
  pp: 2
  dp: 4
`;

const parse = (text: string, set?: string[]) => parseScenario(text, 'bad.yaml', { set });

/** The one ScenarioError message a text produces. */
function errorOf(text: string, set?: string[]): ScenarioError {
  try {
    parse(text, set);
  } catch (error) {
    expect(error).toBeInstanceOf(ScenarioError);
    return error as ScenarioError;
  }
  throw new Error('expected a ScenarioError');
}

describe('parseScenario', () => {
  it('resolves presets, units and defaults into plain data', () => {
    const s = parse(GOOD);
    expect(s.cluster.gpu.name).toBe('a100-80gb');
    expect(s.cluster.gpu.memoryBytes).toBe(80 * 2 ** 30);
    expect(s.model.layers).toBe(24);
    expect(s.parallel.layersPerStage).toEqual([12, 12]);
    expect(s.training.precision).toBe('bf16');
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });

  it('reads JSON as well as YAML', () => {
    const json = JSON.stringify({ name: 'j', cluster: { nodes: 1, gpusPerNode: 2 }, model: { preset: 'gpt-tiny' }, training: { globalBatch: 2 }, parallel: { pp: 2 } });
    expect(parse(json).parallel.dp).toBe(1);
  });

  it('derives dp from the GPU count when it is left out', () => {
    expect(parse(GOOD.replace('  dp: 4\n', '')).parallel.dp).toBe(4);
  });

  it('accepts unit strings and overrides of presets', () => {
    const s = parse(GOOD.replace('  node: dgx-a100\n', '  node: dgx-a100\n  gpu: { preset: a100-40gb, memory: 38GiB, nvlinkBandwidth: 250GB/s }\n'));
    expect(s.cluster.gpu.memoryBytes).toBe(38 * 2 ** 30);
    expect(s.cluster.gpu.nvlinkBandwidthBytesPerSecond).toBe(250e9);
    expect(s.cluster.gpu.memoryBandwidthBytesPerSecond).toBe(1.555e12);
  });

  it('--set overrides any field, with YAML values', () => {
    const s = parse(GOOD, ['parallel.tp=4', 'parallel.dp=2', 'training.precision=fp16', 'parallel.layersPerStage=[10, 14]', 'cluster.gpu.memory=40GiB']);
    expect(s.parallel.tp).toBe(4);
    expect(s.training.precision).toBe('fp16');
    expect(s.parallel.layersPerStage).toEqual([10, 14]);
    expect(s.cluster.gpu.memoryBytes).toBe(40 * 2 ** 30);
  });

  it('profiled costs: one time for all stages or one per stage', () => {
    const s = parse(`${GOOD}costs:\n  forward: 18.5ms\n  backward: [18ms, 19ms]\n  weightGrad: 9.3ms\n  p2p: 0.6ms\n`);
    expect(JSON.parse(JSON.stringify(s.costs))).toEqual({ forwardSeconds: [0.0185, 0.0185], backwardSeconds: [0.018, 0.019], weightGradSeconds: [0.0093, 0.0093], p2pSeconds: 0.0006 });
  });
});

describe('bad input: one clear message with file:line:column and field path', () => {
  const cases: [string, string, RegExp][] = [
    ['malformed YAML', GOOD.replace('  tp: 2', '  tp: [2'), /^bad\.yaml:\d+:\d+: malformed YAML\/JSON/],
    ['unknown key', GOOD.replace('  tp: 2', '  tpp: 2'), /^bad\.yaml:12:3: parallel\.tpp: unknown field "tpp" \(did you mean "tp"\?\); allowed here: tp, .*\bpp, .*\bdp\b/],
    ['wrong type', GOOD.replace('  tp: 2', '  tp: two'), /^bad\.yaml:12:7: parallel\.tp: expected a whole number of at least 1, got "two"/],
    ['zero size', GOOD.replace('  node: dgx-a100', '  node: dgx-a100\n  gpu: { memory: 0GiB }'), /^bad\.yaml:6:\d+: cluster\.gpu\.memory: must be greater than zero/],
    ['negative count', GOOD.replace('  nodes: 2', '  nodes: -2'), /^bad\.yaml:3:10: cluster\.nodes: expected a whole number of at least 1/],
    ['bad unit', GOOD.replace('  node: dgx-a100', '  node: { nic: { bandwidth: 200 gigabits } }'), /cluster\.node\.nic\.bandwidth: expected a bandwidth, such as 300GB\/s/],
    ['missing field', GOOD.replace('  globalBatch: 64\n', ''), /^bad\.yaml:9:3: training\.globalBatch: missing required field/],
    ['missing name', GOOD.replace('name: ok\n', ''), /^bad\.yaml:1:1: name: missing required field/],
    ['degrees vs GPUs', GOOD.replace('  dp: 4', '  dp: 2'), /^bad\.yaml:14:7: parallel\.dp: tp x pp x dp = 2 x 2 x 2 = 8 must equal the GPU count, cluster\.nodes x gpusPerNode = 2 x 8 = 16/],
    ['heads vs tp', GOOD.replace('  tp: 2', '  tp: 3').replace('  dp: 4', '  dp: 1').replace('nodes: 2', 'nodes: 1').replace('gpusPerNode: 8', 'gpusPerNode: 6'), /parallel\.tp: tp = 3 must divide the attention heads \(16\); divisors that work: 1, 2, 4/],
    ['batch vs micro-batch x dp', GOOD.replace('globalBatch: 64', 'globalBatch: 12'), /^bad\.yaml:9:16: training\.globalBatch: globalBatch 12 must be divisible by microBatch x dp = 2 x 4 = 8/],
    ['unknown GPU preset', GOOD.replace('  node: dgx-a100', '  node: dgx-a100\n  gpu: a100'), /^bad\.yaml:6:8: cluster\.gpu: unknown GPU preset; known presets: v100-32gb, a100-40gb, a100-80gb, h100-sxm, h200, got "a100"/],
    ['unknown model preset', GOOD.replace('gpt3-1.3b', 'gpt5'), /^bad\.yaml:7:11: model\.preset: unknown model preset; known presets: .*, got "gpt5"/],
    ['unknown schedule', `${GOOD}  schedule: zigzag\n`, /parallel\.schedule: unknown schedule "zigzag"; registered schedules: gpipe, 1f1b/],
    ['enum value', GOOD.replace('  microBatch: 2', '  microBatch: 2\n  precision: fp4'), /training\.precision: expected one of fp32, fp16, bf16, fp8, got "fp4"$/],
    ['layers per stage', `${GOOD}  layersPerStage: [10, 10]\n`, /parallel\.layersPerStage: adds up to 20 layers but the model has 24/],
    ['chunks for 1f1b', `${GOOD}  chunks: 2\n`, /parallel\.chunks: the 1f1b schedule needs one model chunk per device \(chunks: 1\), got chunks: 2/],
    ['interleaved needs a layer per chunk', `${GOOD}  schedule: interleaved\n  chunks: 13\n`, /parallel\.chunks: chunks: 13 needs at least one layer per chunk, but stage 0 has 12; use at most 12 chunks, or set parallel\.layersPerStage/],
    ['interleaved needs chunks >= 2', `${GOOD}  schedule: interleaved\n`, /parallel\.chunks: the interleaved schedule needs at least 2 model chunks per device/],
    ['interleaved needs m a multiple of pp', GOOD.replace('globalBatch: 64', 'globalBatch: 24').replace('  dp: 4', '  dp: 4\n  schedule: interleaved\n  chunks: 2'), /training\.globalBatch: the interleaved schedule runs micro-batches in groups of pp = 2 \(as Megatron implements it; parallel\.microBatchGroup sets another group\), but each replica has 3/],
    ['zb-v needs exactly 2 chunks', `${GOOD}  schedule: zb-v\n  chunks: 3\n`, /parallel\.chunks: the zb-v schedule needs exactly 2 model chunks per device \(chunks: 2\), got chunks: 3/],
    ['zb-h1 needs m >= pp', GOOD.replace('globalBatch: 64', 'globalBatch: 8').replace('  dp: 4', '  dp: 4\n  schedule: zb-h1'), /training\.globalBatch: the zb-h1 schedule needs at least 2 micro-batches per replica .* gives 1/],
    ['zb-h2 needs m >= 2pp-1', GOOD.replace('globalBatch: 64', 'globalBatch: 16').replace('  dp: 4', '  dp: 4\n  schedule: zb-h2'), /training\.globalBatch: the zb-h2 schedule needs at least 3 micro-batches per replica \(its first stage warms up with 2·pp - 1 forwards\), but .* gives 2/],
    ['costs without backward', `${GOOD}costs:\n  forward: 1ms\n`, /costs\.backward: profiled costs need both costs\.forward and costs\.backward/],
    ['not a mapping', '- just\n- a list\n', /^bad\.yaml:1:1: a scenario must be a mapping/],
    ['duplicate key', GOOD.replace('  tp: 2', '  tp: 2\n  tp: 4'), /malformed YAML\/JSON: Map keys must be unique/],
  ];

  it.each(cases)('%s', (_label, text, pattern) => {
    const error = errorOf(text);
    expect(error.exitCode).toBe(3);
    expect(error.message).toMatch(pattern);
    expect(error.message).not.toMatch(/\n\s+at /); // no stack trace in the message
  });

  it('names the --set override that caused a problem', () => {
    expect(errorOf(GOOD, ['parallel.tp=5']).message).toMatch(/parallel\.tp: tp = 5 must divide .*\(from --set parallel\.tp=5\)/);
  });

  it('reports every problem at once', () => {
    const error = errorOf(GOOD.replace('  tp: 2', '  tpp: 2').replace('globalBatch: 64', 'globalBatch: zero'));
    expect(error.issues.map((i) => i.path).sort()).toEqual(['parallel.tpp', 'training.globalBatch']);
  });

  it('a missing file is a usage error', () => {
    expect(() => loadScenarioFile('/nonexistent/x.yaml')).toThrow(UsageError);
  });

  it('malformed --set is a usage error', () => {
    expect(() => parse(GOOD, ['parallel.tp'])).toThrow(UsageError);
  });
});

describe('--set values', () => {
  it('law: a value read without the YAML parser (whole numbers, true/false, lower-case words) is what YAML reads, and anything else is left to YAML', () => {
    const text = fc.oneof(
      fc.integer({ min: -1e15, max: 1e15 }).map(String),
      fc.constantFrom('true', 'false', 'null', 'True', 'NULL', '~', '-0', '007', '0x1f', '0o17', '.inf', '-.inf', '.nan', '1e3', '1f1b', 'zb-h1', 'selective', 'a100-80gb', '-x', 'x:', 'x #y', ''),
      fc.stringMatching(/^[a-z0-9.:#-]{1,12}$/),
    );
    fc.assert(
      fc.property(text, (t) => {
        const fast = plainScalar(t);
        if (fast !== undefined) expect(Object.is(fast, parseYaml(t))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('law: a plan or sweep override written as path=value reads back as the same value, for scalars, lists and objects', () => {
    const value = fc.oneof(fc.integer(), fc.double({ noNaN: true }), fc.boolean(), fc.string(), fc.constantFrom('zb-h1', 'none', 'cpu', '12', 'true', 'null'), fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'b'), fc.integer()));
    fc.assert(
      fc.property(value, (v) => {
        const written = overrideString('parallel.tp', v).slice('parallel.tp='.length);
        const read = plainScalar(written) ?? parseYaml(written);
        expect(read).toEqual(v);
      }),
      { numRuns: 1000 },
    );
  });
});
