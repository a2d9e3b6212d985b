import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classify, fuzzCase } from '../../bench/fuzz-cases.js';
import { cli } from '../support/cli.js';

// Mutated bundled scenarios and odd flags (bench/fuzz-cases.ts): every case ends in a result or a clean error.
// `npm run fuzz -- --cases 10000` runs the long version; docs/reliability.md has its figures.
const dir = mkdtempSync(join(tmpdir(), 'dtsim-fuzz-'));
// Small enough that any step a mutation makes simulates in well under a second.
const LIMIT = ['--max-operations', '200000'];

describe('fuzzed command lines', () => {
  it('law: 300 mutated scenarios, in process, each end in a result or a clean error', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        const file = join(dir, `case-${n++}.yaml`);
        writeFileSync(file, c.text);
        const flags = c.command === 'run' && !c.flags.includes('--max-operations') ? [...c.flags, ...LIMIT] : c.flags;
        const r = await cli(c.command, file, ...flags);
        expect(classify(r, flags.includes('--json')), c.what).toMatch(/^(result|clean error)$/);
      }),
      { seed: 20261202, numRuns: 300 },
    );
  });

  it('law: a sample of 12 cases through the real process ends within 20 s in a result or a clean error', () => {
    const cases = fc.sample(fuzzCase, { seed: 7, numRuns: 12 });
    cases.forEach((c, i) => {
      const file = join(dir, `process-${i}.yaml`);
      writeFileSync(file, c.text);
      const flags = c.command === 'run' && !c.flags.includes('--max-operations') ? [...c.flags, ...LIMIT] : c.flags;
      const r = spawnSync(process.execPath, ['dist/src/cli/main.js', c.command, file, ...flags], { encoding: 'utf8', timeout: 20_000 });
      expect(r.signal, c.what).toBeNull();
      expect(classify({ code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }, flags.includes('--json')), c.what).toMatch(/^(result|clean error)$/);
    });
  });
});
