import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SimulationError } from '../../src/errors.js';
import { loadScenarioFile } from '../../src/scenario/load.js';
import { simulate } from '../../src/simulate.js';

const files = readdirSync('scenarios').filter((f) => /\.(ya?ml|json)$/.test(f)).sort();

/**
 * Hardware at the edges of what the scenario schema accepts. Each value is valid, so each run must end in a
 * report, and no figure in it may be Infinity or NaN (JSON would print them as null).
 */
const SLOWEST = [
  'cluster.gpu.flops=1',
  'cluster.gpu.fp32Flops=1',
  'cluster.gpu.memoryBandwidth=1',
  'cluster.gpu.nvlinkBandwidth=1',
  'cluster.gpu.computeEfficiency=1e-6',
  'cluster.gpu.memoryEfficiency=1e-6',
  'cluster.gpu.memory=1',
  'cluster.node.nvlinkLatency=1e6',
  'cluster.node.nic.bandwidth=1',
  'cluster.node.nic.latency=1e6',
  'cluster.node.pcie.bandwidth=1',
  'cluster.node.nvme.readBandwidth=1',
  'cluster.node.nvme.writeBandwidth=1',
  'cluster.node.hostOptimizerRate=1',
  'cluster.linkEfficiency=1e-6',
  'cluster.collectiveStepLatency=1e6',
  'cluster.fabric.oversubscription=1e6',
];

const EXTREMES: Record<string, string[]> = {
  'hardware ten thousand times too slow (100 GFLOP/s, 10-100 MB/s links, 1 s latencies, 1 byte of HBM)': [
    'cluster.gpu.flops=1e11',
    'cluster.gpu.fp32Flops=1e10',
    'cluster.gpu.memoryBandwidth=1e7',
    'cluster.gpu.nvlinkBandwidth=1e7',
    'cluster.gpu.memory=1',
    'cluster.node.nvlinkLatency=1',
    'cluster.node.nic.bandwidth=1e7',
    'cluster.node.nic.latency=1',
    'cluster.node.pcie.bandwidth=1e8',
    'cluster.node.nvme.readBandwidth=1e8',
    'cluster.node.nvme.writeBandwidth=1e8',
    'cluster.node.hostOptimizerRate=1e7',
    'cluster.collectiveStepLatency=1',
    'cluster.fabric.oversubscription=1e6',
  ],
  'the fastest hardware allowed (1e21 FLOP/s, 1 EB/s links, no latency, 1 ZB of memory)': [
    'cluster.gpu.flops=1e21',
    'cluster.gpu.fp32Flops=1e21',
    'cluster.gpu.memoryBandwidth=1e18',
    'cluster.gpu.nvlinkBandwidth=1e18',
    'cluster.gpu.memory=1e21',
    'cluster.node.nvlinkLatency=0',
    'cluster.node.nic.bandwidth=1e18',
    'cluster.node.nic.latency=0',
    'cluster.node.pcie.bandwidth=1e18',
    'cluster.node.hostMemory=1e21',
    'cluster.node.hostOptimizerRate=1e18',
    'cluster.collectiveStepLatency=0',
    'cluster.fabric.switchLatency=0',
  ],
};

/** Paths in `value` that hold a number that is not finite. */
function nonFinite(value: unknown, path = ''): string[] {
  if (typeof value === 'number') return Number.isFinite(value) ? [] : [path];
  if (Array.isArray(value)) return value.flatMap((v, i) => nonFinite(v, `${path}[${i}]`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => nonFinite(v, path ? `${path}.${k}` : k));
  return [];
}

describe('extreme but valid values', () => {
  // Small scenarios are enough to reach every cost formula; the large ones repeat them at scale (and take seconds).
  const small = files.filter((file) => {
    const s = loadScenarioFile(`scenarios/${file}`);
    return s.cluster.nodes * s.cluster.gpusPerNode <= 256;
  });

  it('include most of the bundled scenarios', () => {
    expect(small.length).toBeGreaterThanOrEqual(files.length - 5);
  });

  for (const [label, set] of Object.entries(EXTREMES)) {
    it.each(small)(`%s on ${label} gives a report whose every figure is finite`, (file) => {
      const report = simulate(loadScenarioFile(`scenarios/${file}`, { set })).report;
      expect(nonFinite(report)).toEqual([]);
      expect(report.stepTime).toBeGreaterThan(0);
    });
  }

  // A step past the engine's exact clock (2^53 ns, 104 days) is refused, not simulated with rounding times.
  it.each(small)('%s on the slowest hardware allowed ends in a finite report or the clock-range error (exit 4)', (file) => {
    try {
      const report = simulate(loadScenarioFile(`scenarios/${file}`, { set: SLOWEST })).report;
      expect(nonFinite(report)).toEqual([]);
    } catch (error) {
      expect(error).toBeInstanceOf(SimulationError);
      expect((error as SimulationError).exitCode).toBe(4);
      expect((error as Error).message).toMatch(/past 104 days of simulated time/);
    }
  });
});
