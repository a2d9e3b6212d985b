import { describe, expect, it } from 'vitest';
import { parseQuantity } from '../src/units.js';

describe('parseQuantity', () => {
  it.each([
    ['size', '80GiB', 80 * 2 ** 30],
    ['size', '80GB', 80e9],
    ['size', '512 MiB', 512 * 2 ** 20],
    ['size', '1.5TB', 1.5e12],
    ['size', 1024, 1024],
    ['size', '2048', 2048],
    ['bandwidth', '300GB/s', 300e9],
    ['bandwidth', '200Gb/s', 25e9],
    ['bandwidth', '25GiB/s', 25 * 2 ** 30],
    ['bandwidth', '100Gbps', 12.5e9],
    ['time', '5us', 5e-6],
    ['time', '5µs', 5e-6],
    ['time', '18.5ms', 0.0185],
    ['time', '2s', 2],
    ['time', '250ns', 250e-9],
    ['time', 0.001, 0.001],
    ['flops', '312TFLOPS', 312e12],
    ['flops', '1.2PFLOP/s', 1.2e15],
  ] as const)('%s %s', (kind, text, expected) => {
    expect(parseQuantity(kind, text)).toBeCloseTo(expected, 6);
  });

  it.each([
    ['size', '80 gigs'],
    ['size', '80Gb'],
    ['time', '5 fortnights'],
    ['bandwidth', '300GB'],
    ['time', true],
    ['size', 'NaN'],
  ] as const)('rejects %s %s', (kind, text) => {
    expect(parseQuantity(kind, text)).toBeUndefined();
  });
});
