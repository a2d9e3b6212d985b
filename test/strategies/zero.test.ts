import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScenarioError } from '../../src/errors.js';
import { KIND } from '../../src/lower/resources.js';
import { simulate } from '../../src/simulate.js';
import { scenario } from '../support/scenarios.js';

// Oracles from the ZeRO paper (Rajbhandari et al., SC20), as REFERENCE.md collects them.
const base = (n: number, zero: number, extra: Record<string, unknown> = {}) => ({
  cluster: { nodes: 1, gpusPerNode: n, node: 'dgx-a100' },
  model: { preset: 'gpt-tiny', layers: 4, tiedEmbeddings: false },
  training: { globalBatch: n, microBatch: 1 },
  parallel: { tp: 1, pp: 1, dp: n, zero, ...extra },
});

/** Model-state bytes of device 0 on every tier; host and NVMe are its node's, shared by its GPUs. */
function modelStates(sim: ReturnType<typeof simulate>) {
  const tiers = { hbm: 0, cpu: 0, nvme: 0 };
  const gpus = sim.scenario.cluster.gpusPerNode;
  for (const b of sim.plan.baseline) {
    if (b.category > 2) continue; // params, grads, optimizer
    const tier = sim.plan.resources.tierOf(b.location);
    if (tier === 'hbm' && b.location !== 0) continue;
    if (tier !== 'hbm' && b.location !== sim.plan.resources.cpu(0) && b.location !== sim.plan.resources.nvme(0)) continue;
    tiers[tier] += tier === 'hbm' ? b.bytes : b.bytes / gpus;
  }
  return tiers;
}

describe('ZeRO model states', () => {
  it('law: per device 16Ψ, 4Ψ + 12Ψ/N, 2Ψ + 14Ψ/N, 16Ψ/N for stages 0-3 (mixed-precision Adam), never more with a higher stage', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), (n) => {
        const psi = simulate(scenario(base(n, 0))).plan.stages[0].parametersPerDevice;
        const expected = [16 * psi, 4 * psi + (12 * psi) / n, 2 * psi + (14 * psi) / n, (16 * psi) / n];
        let previous = Infinity;
        for (const zero of [0, 1, 2, 3]) {
          const hbm = modelStates(simulate(scenario(base(n, zero)))).hbm;
          expect(hbm / expected[zero]).toBeCloseTo(1, 9);
          expect(hbm).toBeLessThanOrEqual(previous);
          previous = hbm;
        }
      }),
      { numRuns: 7 },
    );
  });

  it('law: offloading moves model-state bytes between tiers without changing their total', () => {
    const variants: [number, string, string][] = [
      [1, 'cpu', 'none'],
      [2, 'cpu', 'none'],
      [3, 'cpu', 'none'],
      [3, 'cpu', 'cpu'],
      [3, 'nvme', 'nvme'],
      [3, 'cpu', 'nvme'],
    ];
    for (const [zero, optimizer, params] of variants) {
      const plain = modelStates(simulate(scenario(base(4, zero))));
      const moved = modelStates(simulate(scenario(base(4, zero, { offload: { optimizer, params } }))));
      expect(moved.hbm + moved.cpu + moved.nvme).toBeCloseTo(plain.hbm + plain.cpu + plain.nvme, 0);
      expect(moved.hbm).toBeLessThan(plain.hbm);
      if (optimizer === 'nvme' || params === 'nvme') expect(moved.nvme).toBeGreaterThan(0);
    }
  });

  it('placement: ZeRO-Offload keeps only the 16-bit parameters on the GPU, the gradient and optimizer shards in host memory', () => {
    const sim = simulate(scenario(base(1, 2, { offload: { optimizer: 'cpu' } })));
    const psi = sim.plan.stages[0].parametersPerDevice;
    expect(modelStates(sim)).toEqual({ hbm: 2 * psi, cpu: 14 * psi, nvme: 0 });
    const { states } = sim.plan.program;
    expect([states.params.tier, states.grads.tier, states.optimizer.tier]).toEqual(['hbm', 'cpu', 'cpu']);
  });
});

describe('ZeRO communication', () => {
  it('law: bytes sent per device per step are 2(N-1)/N of the gradient bytes for stages 0-2 and 3(N-1)/N for stage 3', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), (n) => {
        for (const zero of [0, 1, 2, 3]) {
          const sim = simulate(scenario(base(n, zero)));
          const gradBytes = 2 * sim.plan.stages[0].parametersPerDevice;
          const factor = zero === 3 ? 3 : 2;
          for (const d of sim.report.devices) expect(d.sentBytes / gradBytes).toBeCloseTo((factor * (n - 1)) / n, 9);
        }
      }),
      { numRuns: 7 },
    );
  });

  it('parameter all-gathers are reported apart from gradient reduce-scatters', () => {
    const byKind = simulate(scenario(base(4, 3))).report.communication.byKind;
    expect(byKind.allGather).toBeCloseTo(2 * byKind.reduceScatter, -2);
    expect(byKind.allReduce).toBe(0);
  });

  it('ZeRO-Offload moves 4Ψ bytes over PCIe per step with one micro-batch (gradients down, parameters up)', () => {
    const sim = simulate(scenario(base(1, 2, { offload: { optimizer: 'cpu' } })));
    const psi = sim.plan.stages[0].parametersPerDevice;
    expect(sim.report.communication.byLinkType.pcie).toBeCloseTo(4 * psi, -2);
    expect(sim.report.memory.breakdown.cpu.optimizer).toBeCloseTo(12 * psi, -2);
  });

  it('gradient buffers stay bounded when their offload is slow: the backward stalls instead', () => {
    const slow = (nvme: string) =>
      simulate(scenario({ ...base(4, 3, { offload: { optimizer: 'nvme', params: 'nvme' }, prefetchLayers: 1 }), model: { preset: 'gpt-tiny', layers: 12, tiedEmbeddings: false }, cluster: { nodes: 1, gpusPerNode: 4, node: { preset: 'dgx-a100', nvme: { readBandwidth: nvme, writeBandwidth: nvme } } } }));
    const fast = slow('24GB/s');
    const crawl = slow('10MB/s');
    const layerBytes = 2 * 4 * (12 * 512 * 512 + 13 * 512); // gathered params plus a full gradient, per layer
    expect(crawl.report.devices[0].memoryBreakdown.buffers).toBeLessThanOrEqual(fast.report.devices[0].memoryBreakdown.buffers + 2 * layerBytes);
    expect(crawl.report.stepTime).toBeGreaterThan(fast.report.stepTime);
  });

  it('law: a slower PCIe or NVMe never makes a step faster', () => {
    fc.assert(
      fc.property(fc.constantFrom<[string, string]>(['cpu', 'none'], ['nvme', 'nvme'], ['cpu', 'cpu']), fc.double({ min: 0.1, max: 0.95, noNaN: true }), ([optimizer, params], slower) => {
        const run = (pcie: number, nvme: number) =>
          simulate(
            scenario({
              ...base(4, 3, { offload: { optimizer, params } }),
              cluster: { nodes: 1, gpusPerNode: 4, node: { preset: 'dgx-a100', pcie: { bandwidth: pcie }, nvme: { readBandwidth: nvme, writeBandwidth: nvme / 2 } } },
            }),
          ).report.stepTime;
        const fast = run(32e9, 24e9);
        expect(run(32e9 * slower, 24e9)).toBeGreaterThanOrEqual(fast);
        expect(run(32e9, 24e9 * slower)).toBeGreaterThanOrEqual(fast);
      }),
      { numRuns: 12 },
    );
  });
});

describe('ZeRO composition and bad input', () => {
  it('ZeRO-1 composes with tensor and pipeline parallelism', () => {
    const sim = simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 8 }, model: { preset: 'gpt-tiny', layers: 4 }, training: { globalBatch: 8 }, parallel: { tp: 2, pp: 2, dp: 2, zero: 1 } }));
    const b = sim.report.devices[0].memoryBreakdown;
    expect(b.optimizer / b.params).toBeCloseTo(6 / 2, 9);
    expect(sim.report.communication.byKind.reduceScatter).toBeGreaterThan(0);
    expect(sim.report.communication.byKind.allGather).toBeGreaterThan(0);
  });

  it('law: ZeRO-2 with a pipeline keeps 2Ψ + 14Ψ/N per device of each stage and reduce-scatters every micro-batch\'s gradients over the stage\'s group', () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 4), fc.integer({ min: 2, max: 6 }), (N, m) => {
        const sim = simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 2 * N }, model: { preset: 'gpt-tiny', layers: 4, tiedEmbeddings: false }, training: { globalBatch: m * N }, parallel: { tp: 1, pp: 2, dp: N, zero: 2 } }));
        sim.plan.stages.forEach((stage, s) => {
          const psi = stage.parametersPerDevice;
          const b = sim.report.devices[sim.plan.mesh.rank({ pp: s })].memoryBreakdown;
          expect((b.params + b.grads + b.optimizer) / (2 * psi + (14 * psi) / N)).toBeCloseTo(1, 9);
        });
        // Per micro-batch, each stage's gradients once, reduce-scattered: (N-1)/N of them sent per rank.
        const psiAll = sim.plan.stages.reduce((a, s) => a + s.parametersPerDevice, 0);
        expect(sim.report.communication.byKind.reduceScatter / (m * N * 2 * psiAll * ((N - 1) / N))).toBeCloseTo(1, 6);
      }),
      { numRuns: 6 },
    );
  });

  it('law: fp32 gradient accumulation holds 4 bytes a gradient and doubles the bf16 reductions', () => {
    const run = (gradAccumulation: string, zero: number) => simulate(scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'gpt-tiny', layers: 4 }, training: { globalBatch: 8, gradAccumulation }, parallel: { tp: 1, pp: 2, dp: 2, zero } }));
    for (const zero of [0, 1, 2]) {
      const half = run('precision', zero).report;
      const full = run('fp32', zero).report;
      expect(full.devices[0].memoryBreakdown.grads / half.devices[0].memoryBreakdown.grads).toBeCloseTo(2, 9);
      const reduced = (r: typeof half) => r.communication.byKind.allReduce + r.communication.byKind.reduceScatter;
      // The tied-embedding sum between the first and last stage is a gradient reduction too.
      expect(reduced(full) / reduced(half)).toBeCloseTo(2, 9);
    }
  });

  const bad = (patch: Record<string, unknown>, message: RegExp) => {
    try {
      scenario(patch);
    } catch (error) {
      expect(error).toBeInstanceOf(ScenarioError);
      expect((error as ScenarioError).message).toMatch(message);
      return;
    }
    throw new Error('expected a ScenarioError');
  };

  it('refuses what cannot run, naming the field', () => {
    bad(base(1, 2), /parallel\.zero: zero: 2 shards model states over the data-parallel group, but dp is 1/);
    bad(base(4, 2, { offload: { params: 'nvme' } }), /parallel\.offload\.params: offloading parameters \(nvme\) needs ZeRO-3/);
    bad(base(4, 2, { offload: { optimizer: 'nvme' } }), /parallel\.offload\.optimizer: optimizer states on NVMe are ZeRO-Infinity, which needs ZeRO-3/);
    bad(base(4, 0, { offload: { optimizer: 'cpu' } }), /parallel\.offload\.optimizer: offloading the optimizer \(cpu\) builds on ZeRO/);
    bad(base(4, 3, { offload: { optimizer: 'disk' } }), /parallel\.offload\.optimizer: expected one of none, cpu, nvme, got "disk"/);
    bad({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'gpt-tiny' }, training: { globalBatch: 4 }, parallel: { tp: 1, pp: 2, dp: 2, zero: 3 } }, /zero: 3 with pipeline parallelism \(pp = 2\) .* is not modelled.*use zero: 2/);
    bad({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'gpt-tiny' }, training: { globalBatch: 4, gradAccumulation: 'fp16' }, parallel: { dp: 4 } }, /training\.gradAccumulation: expected one of precision, fp32, got "fp16"/);
  });

  it('NVMe too small is an answer: does not fit, naming the tier and shortfall', () => {
    const sim = simulate(scenario({ ...base(4, 3, { offload: { optimizer: 'nvme', params: 'nvme' } }), cluster: { nodes: 1, gpusPerNode: 4, node: { preset: 'dgx-a100', nvme: { capacity: '100MB' } } } }));
    expect(sim.report.memory.fits).toBe(false);
    expect(sim.report.memory.overflows.find((o) => o.tier === 'nvme')).toMatchObject({ tier: 'nvme', node: 0, capacity: 100e6 });
  });
});

describe('parameters kept off the GPU', () => {
  it('with the optimizer on the GPU and the parameter shard in host memory, each device writes its updated shard back after its optimizer step', () => {
    const sim = simulate(scenario(base(4, 3, { offload: { params: 'cpu' } })));
    const { graph: g, labels, resources } = sim.plan;
    const shardBytes = (2 * sim.plan.stages[0].parametersPerDevice) / 4;
    const writtenBack = new Set<number>();
    for (let op = 0; op < g.count; op++) {
      if (labels.kind[g.label[op]] !== KIND.optimizer) continue;
      for (let e = g.dependentFirst[op]; e >= 0; e = g.dependentNext[e]) {
        const next = g.dependentOp[e];
        if (labels.kind[g.label[next]] !== KIND.offload) continue;
        const f = g.flowStart[next];
        expect([g.flowSource[f], g.flowSizes.bytes[g.flowSize[f]]]).toEqual([g.device[op], shardBytes]);
        expect(g.flowTarget[f]).toBe(sim.topology.cpuVertex(resources.nodeOf(g.device[op])));
        writtenBack.add(g.device[op]);
      }
    }
    expect(writtenBack.size).toBe(4);
  });
});
