import { NANOSECONDS_PER_SECOND } from '../engine/kernel.js';
import type { Topology } from '../hardware/topology.js';
import type { StatePlacement, StepProgram } from '../strategies/program.js';
import { takesGradients } from '../training/optimizer.js';
import { stateBytes } from '../training/states.js';
import { parameterTensors } from '../workload/registry.js';
import { microBatchesOf, type StepConfig } from './config.js';
import { passOrder } from './order.js';
import { passCollectives, type CollectiveGroup } from './segments.js';
import { planCollective } from '../collectives/collectives.js';
import { collectiveFloorNs } from '../collectives/estimate.js';
import { stageCosts } from './stage-costs.js';
import type { VirtualStageModel } from './stage-model.js';
import type { ScheduledPass } from '../strategies/pipeline/schedule.js';

/**
 * Lower bounds on a step's time and peak HBM from the pass costs and the schedule's order alone: no graph is built
 * and nothing runs. They exist so that `dtsim plan` can skip candidates that cannot come near the best or cannot
 * fit; the step's figures themselves only ever come from executing it.
 */
export interface StepBounds {
  /** Seconds; undefined with jitter, which can shorten an operation. */
  stepTime?: number;
  /** Bytes, on the fullest GPU. */
  peakHbm: number;
}


/** Operations round their share of a pass to whole nanoseconds, memory is summed in floating point: a 0.1% margin covers both. */
const MARGIN = 1 - 1e-3;

/**
 * Time: each device's compute lane runs its passes one at a time in the schedule's order, and a pass starts only
 * when its input is there: a forward after the previous virtual stage's forward of the micro-batch, B (or a whole
 * backward) after the next virtual stage's B and its own forward, W after its B. Playing that out with the pass
 * times, and the blocking collectives after each pass (what comes next waits for them) at their idle-network floor
 * (collectiveFloorNs), gives a length the step cannot beat: it has every one of those passes (segments split a pass
 * by fractions of it, a recomputed forward is part of its B) and collectives, with the same orders and waits, and
 * only more (transfers, contention, gathers, the optimizer). The pipeline's bubbles are in it; transfers and the
 * data-parallel traffic are not.
 *
 * Memory: a device holds its model states on HBM from the start (as the placement shards them), and its compute
 * lane runs its passes in the schedule's order, each forward taking its activations when it starts and each
 * backward freeing them when it ends. Right after a forward starts, or while a backward rebuilds a layer, the device
 * holds at least the activations its order has taken and not yet freed. Buffers, gathers and transfers only add.
 */
export function stepBounds(config: StepConfig, program: StepProgram, topology: Topology, layout: LayoutBounds = layoutBounds(config, program, topology)): StepBounds {
  const { mesh, states } = program;
  // Model states on HBM, per parameter a device holds.
  const bytes = stateBytes(config.training, () => parameterTensors(program.workload));
  const onHbm = (placement: StatePlacement, perParameter: number) => (placement.tier === 'hbm' ? perParameter / placement.shardAxes.reduce((n, axis) => n * mesh.sizeOf(axis), 1) : 0);
  const statesPerParameter = onHbm(states.params, bytes.parameter) + onHbm(states.grads, bytes.gradient) + onHbm(states.optimizer, bytes.optimizer);
  let peak = 0;
  for (let stage = 0; stage < layout.parameters.length; stage++) peak = Math.max(peak, layout.parameters[stage] * statesPerParameter + layout.activations[stage]);
  return {
    ...(layout.timeNs === undefined ? {} : { stepTime: (layout.timeNs * MARGIN) / NANOSECONDS_PER_SECOND }),
    peakHbm: peak * MARGIN,
  };
}

/**
 * What the bounds take from a layout, whatever ZeRO and offloading make of its model states (they move states and
 * nothing else: see stageCostsKey), so that a search computes it once for all of them.
 */
export interface LayoutBounds {
  /** The compute-only length of the step, ns; undefined under jitter, or if the order deadlocks. */
  timeNs?: number;
  /** Per pipeline position: the parameters each device holds, and the most activation bytes its order holds at once. */
  parameters: Float64Array;
  activations: Float64Array;
}

/** A layout's part of the bounds: its passes played out in the schedule's order, and the activations they hold. */
export function layoutBounds(config: StepConfig, program: StepProgram, topology: Topology, virtualStages: VirtualStageModel[] = stageCosts(config, program)): LayoutBounds {
  const { mesh } = program;
  const pp = mesh.sizeOf('pp');
  const chunks = virtualStages.length / pp;
  const zerothOrder = !takesGradients(config.training.optimizer);
  // MeZO runs each micro-batch forward twice and no backward.
  const runs = microBatchesOf(config, mesh) * (zerothOrder ? 2 : 1);
  const collectives = passCollectives(virtualStages);
  const order = passOrder(config, program, topology, virtualStages, collectives);
  const vsAt = new Int32Array(pp * chunks);
  for (const v of virtualStages) vsAt[v.stage * chunks + v.chunk] = v.virtualStage;
  // The blocking collectives after each pass (Megatron's synchronous ones: what comes next waits for them), at no
  // less than their idle-network time; none where the program runs them alongside the compute.
  const stepLatency = config.cluster.collectiveProtocol === undefined || config.cluster.collectiveProtocol === 'fitted' ? config.cluster.collectiveStepLatencySeconds : 0;
  // Rank 0's group stands for every group of its axis only when each lies inside a node: a group is `size` ranks
  // `stride` apart, and the blocks of size x stride consecutive ranks that hold whole groups must divide a node.
  const floorOf = (c: CollectiveGroup) => {
    const members = mesh.group(0, [c.axis]);
    const stride = members.length > 1 ? members[1] - members[0] : 1;
    if (config.cluster.gpusPerNode % (stride * members.length) !== 0) return 0;
    return collectiveFloorNs(topology, planCollective(c.kind, members, c.bytes, c.repeat), stepLatency);
  };
  const blocking = (groups: CollectiveGroup[]) => ((program.overlappedAxes ?? []).length > 0 ? 0 : groups.reduce((sum, c) => sum + floorOf(c), 0));
  const forwardBlocking = collectives.forward.map(blocking);
  const backwardBlocking = collectives.backward.map(blocking);
  const timeNs = config.variability.jitter > 0 ? undefined : computeOnlyNs(order, virtualStages, vsAt, chunks, runs, forwardBlocking, backwardBlocking);

  const parameters = new Float64Array(pp);
  for (const v of virtualStages) parameters[v.stage] += v.parametersPerDevice;
  // Activations along each device's order: the most it holds at once.
  const activations = new Float64Array(pp);
  for (let stage = 0; stage < pp; stage++) {
    let held = 0;
    let most = 0;
    for (const entry of order[stage]) {
      const v = virtualStages[vsAt[stage * chunks + entry.chunk]];
      if (entry.pass === 'F') {
        held += v.activationBytes;
        most = Math.max(most, held + v.forwardWorkingBytes);
      } else if (entry.pass === 'W') held -= v.weightGradBytes;
      else {
        most = Math.max(most, held + v.recomputeBytes);
        held -= entry.pass === 'B' ? v.activationBytes - v.weightGradBytes : v.activationBytes;
      }
    }
    activations[stage] = most;
  }
  return { ...(timeNs === undefined ? {} : { timeNs }), parameters, activations };
}

/**
 * The compute-only length of the step, nanoseconds: every device's passes in order, each as soon as its device is
 * free and its inputs are done. Undefined if the order deadlocks (the lowering then says so).
 */
function computeOnlyNs(order: ScheduledPass[][], virtualStages: VirtualStageModel[], vsAt: Int32Array, chunks: number, runs: number, forwardBlocking: number[], backwardBlocking: number[]): number | undefined {
  const V = virtualStages.length;
  const pp = order.length;
  const endF = new Float64Array(V * runs).fill(-1);
  const endB = new Float64Array(V * runs).fill(-1);
  const next = new Int32Array(pp);
  const free = new Float64Array(pp);
  let left = order.reduce((n, o) => n + o.length, 0);
  while (left > 0) {
    let progressed = false;
    for (let stage = 0; stage < pp; stage++) {
      const mine = order[stage];
      for (; next[stage] < mine.length; next[stage]++) {
        const { pass, microBatch: mb, chunk } = mine[next[stage]];
        const vs = vsAt[stage * chunks + chunk];
        const v = virtualStages[vs];
        const at = vs * runs + mb;
        let ready: number;
        let duration: number;
        if (pass === 'F') {
          ready = vs === 0 ? 0 : endF[at - runs];
          duration = v.forwardNs + forwardBlocking[vs];
        } else if (pass === 'W') {
          ready = endB[at];
          duration = v.weightGradNs;
        } else {
          const gradient = vs === V - 1 ? endF[at] : endB[at + runs];
          ready = gradient < 0 || endF[at] < 0 ? -1 : Math.max(gradient, endF[at]);
          duration = (pass === 'B' ? v.inputGradNs : v.backwardNs) + backwardBlocking[vs];
        }
        if (ready < 0) break;
        const end = Math.max(ready, free[stage]) + duration;
        free[stage] = end;
        if (pass === 'F') endF[at] = end;
        else if (pass !== 'W') endB[at] = end;
        left--;
        progressed = true;
      }
    }
    if (!progressed) return undefined;
  }
  return Math.max(...free);
}
