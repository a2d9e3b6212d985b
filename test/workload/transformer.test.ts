import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gpt as gptShape, MODEL_PRESETS } from '../../src/workload/presets.js';
import { layerActivationBytes, layerFlops, layerParameters, totalParameters, type ModelSpec } from '../support/closed-forms.js';

const gpt = (layers: number, hidden: number, heads: number, seqLength: number): ModelSpec => ({ name: 'gpt', ...gptShape(layers, hidden, heads, seqLength) });

const arbGpt = fc.record({ heads: fc.integer({ min: 1, max: 64 }), headDim: fc.constantFrom(32, 64, 128), layers: fc.integer({ min: 1, max: 96 }), s: fc.constantFrom(512, 1024, 2048, 4096) }).map(({ heads, headDim, layers, s }) => gpt(layers, heads * headDim, heads, s));

describe('transformer costs (reference formulas)', () => {
  it('law: a GPT layer has 12h² + 13h parameters', () => {
    fc.assert(
      fc.property(arbGpt, (m) => {
        expect(layerParameters(m)).toBe(12 * m.hidden ** 2 + 13 * m.hidden);
      }),
    );
  });

  it('law: forward 24bsh² + 4bs²h; B = F + 4bs²h; W = 24bsh² (Qi et al.)', () => {
    fc.assert(
      fc.property(arbGpt, fc.integer({ min: 1, max: 8 }), (m, b) => {
        const { hidden: h, seqLength: s } = m;
        const f = layerFlops(m, b);
        expect(f.forward).toBe(24 * b * s * h * h + 4 * b * s * s * h);
        expect(f.inputGrad).toBe(24 * b * s * h * h + 8 * b * s * s * h);
        expect(f.weightGrad).toBe(24 * b * s * h * h);
        expect(f.inputGrad + f.weightGrad).toBe(2 * f.forward);
      }),
    );
  });

  it('law: activations per layer match Korthikanti Table 2 for every t, recompute and flash setting', () => {
    fc.assert(
      fc.property(arbGpt, fc.integer({ min: 1, max: 4 }), fc.constantFrom(1, 2, 4, 8), (m, b, t) => {
        const { hidden: h, seqLength: s, heads: a } = m;
        const sbh = s * b * h;
        const bytes = (recompute: 'none' | 'selective' | 'full', flashAttention = false) => layerActivationBytes(m, { microBatch: b, tp: t, recompute, flashAttention, bytesPerElement: 2 });
        expect(bytes('none')).toBeCloseTo(sbh * (10 + 24 / t + (5 * a * s) / (h * t)), 3);
        expect(bytes('selective')).toBeCloseTo(sbh * (10 + 24 / t), 3);
        expect(bytes('none', true)).toBeCloseTo(sbh * (10 + 24 / t), 3);
        expect(bytes('full')).toBe(2 * sbh);
        if (t === 1) expect(bytes('none')).toBeCloseTo(sbh * (34 + (5 * a * s) / h), 3);
      }),
    );
  });

  it('presets have their published sizes', () => {
    const billions = (name: string) => totalParameters({ name, ...MODEL_PRESETS[name] }) / 1e9;
    expect(billions('gpt3-175b')).toBeCloseTo(174.6, 1);
    expect(billions('gpt3-1.3b')).toBeCloseTo(1.32, 2);
    expect(billions('megatron-1t')).toBeCloseTo(1008, 0);
    expect(billions('megatron-145.6b')).toBeCloseTo(145.6, 0);
    expect(billions('llama3-405b')).toBeGreaterThan(400);
    expect(billions('llama3-405b')).toBeLessThan(410);
    expect(billions('llama3-8b')).toBeCloseTo(8.0, 0);
  });

  it('grouped-query attention and SwiGLU change parameters and FLOPs as expected', () => {
    const base = gpt(1, 4096, 32, 2048);
    const gqa = { ...base, kvHeads: 8 };
    // K and V projections shrink from h² each to h²/4 each.
    expect(layerParameters(base) - layerParameters(gqa)).toBe(2 * 4096 * 4096 * (1 - 8 / 32) + 2 * 4096 * (1 - 8 / 32));
    const swiglu = { ...base, mlp: 'swiglu' as const };
    expect(layerFlops(swiglu, 1).weightGrad - layerFlops(base, 1).weightGrad).toBe(2 * 2048 * 4096 * base.ffnHidden);
  });
});
