import { describe, expect, it } from 'vitest';
import { MODEL_PRESETS } from '../../src/workload/presets.js';
import { modelParameters } from '../../src/workload/registry.js';
import { cli } from '../support/cli.js';

/**
 * Published sizes: the papers' and model cards' parameter counts (ESM-2, Lin et al. 2023; xTrimoPGLM, Chen et al.
 * 2024; BioGPT, Luo et al. 2022; ChemGPT, Frey et al. 2023; Galactica 30B, Taylor et al. 2022, which GeoGalactica
 * continues; K2, Deng et al. 2024, on LLaMA 7B; BERT-base, Devlin et al. 2019, as PharmBERT and ChemBERT use it;
 * Llama 2, Touvron et al. 2023, which Meditron continues; Llama 3, Meta 2024; MT-NLG, Smith et al. 2022; PaLM,
 * Chowdhery et al. 2022, which Med-PaLM fine-tunes; GPT-3, Brown et al. 2020; AlphaFold 2 as OpenFold counts it).
 * The weather models are one model each: Pangu-Weather's 256M are four models of 64M (Bi et al. 2023); FuXi's 4.5B
 * three cascaded models of 1.5B (Chen et al. 2023); Aurora's "1.3B" configuration builds 1,259,150,992 parameters in
 * microsoft/aurora (counted by building it at commit 7fa85ff).
 */
const PUBLISHED: Record<string, number> = {
  'esm2-15b': 15e9,
  'xtrimopglm-100b': 100e9,
  'biogpt-347m': 347e6,
  'chemgpt-1.2b': 1.2e9,
  'geogalactica-30b': 30e9,
  'k2-7b': 6.7e9,
  'bert-base': 110e6,
  'llama2-7b': 6.74e9,
  'llama2-13b': 13.02e9,
  'llama2-70b': 68.98e9,
  'meditron-7b': 6.74e9,
  'meditron-70b': 68.98e9,
  'llama3-8b': 8.03e9,
  'llama3-70b': 70.6e9,
  'llama3-405b': 405e9,
  'mt-nlg-530b': 530e9,
  'med-palm-540b': 540.35e9,
  'gpt3-175b': 175e9,
  alphafold2: 93.2e6,
  'pangu-weather': 256e6 / 4,
  fuxi: 4.5e9 / 3,
  aurora: 1_259_150_992,
};

describe('model presets', () => {
  it.each(Object.entries(PUBLISHED))("%s's parameters are within 2% of its published size", (name, published) => {
    const psi = modelParameters({ name, ...MODEL_PRESETS[name] });
    expect(Math.abs(psi / published - 1)).toBeLessThan(0.02);
  });

  it('dtsim presets lists every model with its parameters and the 16 bytes a parameter of mixed-precision Adam', async () => {
    const { stdout, code } = await cli('presets', '--json');
    expect(code).toBe(0);
    const models = JSON.parse(stdout).models as Record<string, { parameters: number; modelStateBytes: number }>;
    expect(Object.keys(models).sort()).toEqual(Object.keys(MODEL_PRESETS).sort());
    for (const m of Object.values(models)) expect(m.modelStateBytes).toBe(16 * m.parameters);
  });
});
