import { describe, expect, it } from 'vitest';
import { execute } from '../../src/engine/executor.js';
import { EventKernel } from '../../src/engine/kernel.js';
import { MemoryTracker } from '../../src/engine/memory.js';
import { buildTopology } from '../../src/hardware/topology.js';
import { lowerStep } from '../../src/lower/lower.js';
import { CATEGORIES, KIND } from '../../src/lower/resources.js';
import { DeviceMesh } from '../../src/strategies/mesh.js';
import { withLayout } from '../../src/strategies/program.js';
import { buildProgram } from '../../src/strategies/registry.js';
import { shards } from '../../src/strategies/sharding.js';
import { MODEL_PARALLEL_AXES } from '../../src/strategies/tensor/megatron-tp.js';
import type { Simulation } from '../../src/simulate.js';
import { buildWorkload } from '../../src/workload/registry.js';
import { scenario } from '../support/scenarios.js';
import { checkStepLaws } from '../support/step-laws.js';

describe('sharding over any mesh axis', () => {
  it('a tensor axis shorter than the mesh axis is split into its own length and replicated beyond it (key/value heads when tp exceeds them)', () => {
    const mesh = new DeviceMesh({ tp: 8 });
    const tp = { tp: MODEL_PARALLEL_AXES };
    expect(shards({ hidden: 4096, kvHeads: 2, headDim: 128 }, tp, mesh)).toBe(2);
    expect(shards({ hidden: 4096, heads: 32, headDim: 128 }, tp, mesh)).toBe(8);
    expect(shards({ hidden: 4096 }, tp, mesh)).toBe(1);
  });

  // A hand-made program on a mesh with a second axis, `cp`, whose ranks are tp apart: the sequence split over `cp`
  // around attention, the heads split over it inside (as DeepSpeed-Ulysses does). No pass defines `cp` yet; the
  // lowering must still place each collective on the right group.
  it('lowers collectives over an axis whose groups are not consecutive ranks onto those groups, and the step obeys the laws', () => {
    const sc = scenario({ cluster: { nodes: 1, gpusPerNode: 4 }, model: { preset: 'gpt-tiny', layers: 2 }, training: { globalBatch: 2 }, parallel: { tp: 4, pp: 1, dp: 1 } });
    const workload = buildWorkload(sc.model, { microBatch: 1, attention: 'standard' });
    const base = buildProgram(workload, { ...sc.parallel, tp: 1 });
    const mesh = new DeviceMesh({ tp: 2, cp: 2 });
    let program = { ...base, mesh };
    program = withLayout(program, () => true, { tp: MODEL_PARALLEL_AXES, cp: ['seq'] });
    program = withLayout(program, (op) => op.class === 'attention', { tp: MODEL_PARALLEL_AXES, cp: ['heads'] });
    const topology = buildTopology(sc.cluster);
    const plan = lowerStep(sc, program, topology);
    const memory = new MemoryTracker(plan.resources.locationCount, CATEGORIES.length, plan.capacities);
    for (const b of plan.baseline) memory.change(b.location, b.category, b.bytes, 0);
    const execution = execute({ graph: plan.graph, links: topology, router: topology, memory }, new EventKernel());
    checkStepLaws({ scenario: sc, topology, plan, execution, memory } as unknown as Simulation);

    const g = plan.graph;
    const groupsOf = (kind: number) => {
      const seen = new Set<string>();
      for (let op = 0; op < g.count; op++) {
        if (plan.labels.kind[g.label[op]] !== kind) continue;
        const devices: number[] = [];
        for (let i = g.lanesOf.start[op]; i < g.lanesOf.start[op + 1]; i++) devices.push(Math.floor(g.lanesOf.items[i] / (g.laneCount / 4)));
        seen.add(devices.join(','));
      }
      return [...seen].sort();
    };
    // All-to-alls into and out of attention over cp (ranks 0 and 2, 1 and 3); the tensor-parallel all-reduces over tp.
    expect(groupsOf(KIND.allToAll)).toEqual(['0,2', '1,3']);
    expect(groupsOf(KIND.allReduce)).toEqual(['0,1', '2,3']);
  });
});
