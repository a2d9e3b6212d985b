import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HOST_GPU_SMOOTHNESS, passSeconds, type ComputeModel } from '../../src/hardware/compute.js';

// A pass of 1 GFLOP on a 100 TFLOP/s GPU at full efficiency: 10 us of GPU time; the host time is what varies.
const model = (hostOverheadPerLayerSeconds: number): ComputeModel => ({ peakFlopsPerSecond: 100e12, computeEfficiency: 1, efficiencyHalfSize: 0, memoryBytesPerSecond: 1e12, hostOverheadPerLayerSeconds });
const work = { flops: 1e9, bytes: 0, layers: 1, issues: 1 };
const gpu = 10e-6;

describe('the host/GPU transition of a pass', () => {
  it('is smooth: no kink where host and GPU time meet, up to 2^(1/k) above the larger where they are equal', () => {
    const at = (host: number) => passSeconds(model(host), work);
    expect(at(gpu) / gpu).toBeCloseTo(2 ** (1 / HOST_GPU_SMOOTHNESS), 12);
    // The slope in host time runs from 0 to 1 without a jump: across the meeting point it moves by a small step.
    const slope = (host: number, h = gpu * 1e-4) => (at(host + h) - at(host - h)) / (2 * h);
    expect(slope(gpu * 0.99) - slope(gpu * 1.01)).toBeLessThan(0.05);
    expect(slope(gpu)).toBeCloseTo(2 ** (1 / HOST_GPU_SMOOTHNESS - 1), 6);
    expect(slope(gpu * 0.2)).toBeLessThan(1e-3);
    expect(slope(gpu * 5)).toBeGreaterThan(0.999);
  });

  it('law: never below either time, never above their sum, and far apart the larger of the two within 0.1%', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-9, max: 1, noNaN: true }), (host) => {
        const t = passSeconds(model(host), work);
        expect(t).toBeGreaterThanOrEqual(Math.max(host, gpu) * (1 - 1e-12));
        expect(t).toBeLessThanOrEqual((host + gpu) * (1 + 1e-12));
        if (host > 4 * gpu || host < gpu / 4) expect(t / Math.max(host, gpu)).toBeLessThan(1.001);
      }),
    );
  });
});
