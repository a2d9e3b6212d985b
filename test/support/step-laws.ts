import { expect } from 'vitest';
import { AT_START } from '../../src/engine/graph.js';
import { CATEGORY, KIND, OP_KINDS } from '../../src/lower/resources.js';
import type { Simulation } from '../../src/simulate.js';
import { takesGradients } from '../../src/training/optimizer.js';

/**
 * Laws every simulated step must obey, whatever composition of parallelisms and techniques built it:
 * - every operation ran, after every dependency ended;
 * - no two operations overlap on a lane, and each lane runs in program order;
 * - each (device, chunk, micro-batch) runs its forward's FLOPs once and its backward's once (B and W, or BW, with
 *   any recomputed forward before it), in one operation or cut into segments; without gradients, no backward;
 * - every byte sent is received: a transfer's bytes are what its receiver allocates, and a collective's flows
 *   stay among the members whose lanes it holds;
 * - memory never goes below zero, and every location is back to its baseline after the step.
 * Problems are collected and compared once, so that a failure prints the first few and a pass costs little.
 */
export function checkStepLaws(sim: Simulation): void {
  const { plan, execution, memory } = sim;
  const { graph: g, labels, resources } = plan;
  const problems: string[] = [];
  const say = (problem: string) => {
    if (problems.length < 10) problems.push(problem);
  };
  const name = (op: number) => `#${op} ${OP_KINDS[labels.kind[g.label[op]]]} on ${g.device[op]}`;

  if (execution.completed !== g.count) say(`${g.count - execution.completed} of ${g.count} operations never ran`);
  for (let op = 0; op < g.count; op++) {
    for (let i = g.deps.start[op]; i < g.deps.start[op + 1]; i++) {
      const d = g.deps.items[i];
      if (execution.startNs[op] < execution.endNs[d]) say(`${name(op)} started before its dependency ${name(d)} ended`);
    }
  }
  for (let lane = 0; lane < g.laneCount; lane++) {
    for (let i = g.program.start[lane] + 1; i < g.program.start[lane + 1]; i++) {
      const [a, b] = [g.program.items[i - 1], g.program.items[i]];
      if (execution.startNs[b] < execution.endNs[a]) say(`${name(b)} overlaps ${name(a)} on lane ${lane}`);
    }
  }

  const forwardFlops = new Map<string, number>();
  const backwardFlops = new Map<string, number>();
  // A recomputed forward belongs to the backward it serves (B's FLOPs count it).
  const backwardKinds = new Set([KIND.backward, KIND.inputGrad, KIND.weightGrad, KIND.recompute]);
  for (let op = 0; op < g.count; op++) {
    const label = g.label[op];
    const key = `${g.device[op]}:${labels.chunk[label]}:${labels.microBatch[label]}`;
    if (labels.kind[label] === KIND.forward) forwardFlops.set(key, (forwardFlops.get(key) ?? 0) + labels.flops[label]);
    if (backwardKinds.has(labels.kind[label])) backwardFlops.set(key, (backwardFlops.get(key) ?? 0) + labels.flops[label]);
  }
  const expectedPasses = resources.devices * plan.microBatches * plan.config.parallel.chunks;
  // A zeroth-order optimizer runs each micro-batch forward twice (the second as micro-batch m + i), and no backward.
  const gradients = takesGradients(plan.config.training.optimizer);
  const forwards = gradients ? expectedPasses : 2 * expectedPasses;
  if (forwardFlops.size !== forwards) say(`${forwardFlops.size} (device, chunk, micro-batch) forwards for ${forwards}`);
  const backwards = gradients ? expectedPasses : 0;
  if (backwardFlops.size !== backwards) say(`${backwardFlops.size} (device, chunk, micro-batch) backwards for ${backwards}`);
  const once = (pass: string, done: Map<string, number>, expected: (v: (typeof plan.virtualStages)[number]) => number) => {
    for (const [key, flops] of done) {
      const [device, chunk] = key.split(':').map(Number);
      const stage = plan.mesh.coordinate(device, 'pp');
      const v = plan.virtualStages.find((x) => x.stage === stage && x.chunk === chunk)!;
      if (Math.abs(flops / expected(v) - 1) > 1e-9) say(`${pass} ${key} did ${flops} of ${expected(v)} FLOPs`);
    }
  };
  once('forward', forwardFlops, (v) => v.forwardFlops);
  once('backward', backwardFlops, (v) => v.inputGradFlops + v.weightGradFlops);

  // Every byte sent is received.
  const { flowStart, flowSource, flowTarget, flowSize, lanesOf } = g;
  for (let op = 0; op < g.count; op++) {
    const kind = labels.kind[g.label[op]];
    if (kind === KIND.offload || kind === KIND.optimizer || flowStart[op] === flowStart[op + 1]) continue;
    const members = new Set<number>();
    for (let i = lanesOf.start[op]; i < lanesOf.start[op + 1]; i++) members.add(Math.floor(lanesOf.items[i] / (g.laneCount / resources.devices)));
    let bytes = 0;
    for (let i = flowStart[op]; i < flowStart[op + 1]; i++) {
      // A flow striped over a rail names its target through Topology.viaRail: the target is the rest of the division.
      const target = flowTarget[i] % sim.topology.vertexCount;
      if (!members.has(flowSource[i]) || !members.has(target)) say(`${name(op)} moves bytes from ${flowSource[i]} to ${target}, outside the devices whose lanes it holds`);
      bytes += g.flowSizes.bytes[flowSize[i]];
    }
    if (kind === KIND.p2p) {
      const receiver = flowTarget[flowStart[op]];
      let allocated = 0;
      for (let e = g.memoryFirst[op]; e >= 0; e = g.memoryNext[e]) {
        const amount = g.memoryAmount[e];
        if (g.memoryLocation[e] === resources.hbm(receiver) && g.memoryAmounts.category[amount] === CATEGORY.buffers && g.memoryAmounts.atEnd[amount] === AT_START) allocated += g.memoryAmounts.bytes[amount];
      }
      if (allocated !== bytes) say(`${name(op)} sends ${bytes} bytes but its receiver ${receiver} allocates ${allocated}`);
    }
  }

  if (memory.negative.size > 0) say(`memory below zero at locations ${[...memory.negative].join(', ')}`);
  const baseline = new Float64Array(resources.locationCount);
  for (const b of plan.baseline) baseline[b.location] += b.bytes;
  for (let loc = 0; loc < resources.locationCount; loc++) {
    if (Math.abs(memory.used[loc] - baseline[loc]) > 1e-6 * Math.max(1, baseline[loc])) say(`location ${loc} ends at ${memory.used[loc]} bytes, not its baseline ${baseline[loc]}`);
  }
  expect(problems).toEqual([]);
}
