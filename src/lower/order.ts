import { planCollective } from '../collectives/collectives.js';
import { estimateCollectiveNs, estimateTransferNs } from '../collectives/estimate.js';
import { toNanoseconds } from '../engine/kernel.js';
import type { Topology } from '../hardware/topology.js';
import { getSchedule } from '../strategies/pipeline/registry.js';
import { forwardOnlyOrder, type PassCosts, type ScheduledPass } from '../strategies/pipeline/schedule.js';
import type { StepProgram } from '../strategies/program.js';
import { takesGradients } from '../training/optimizer.js';
import { microBatchesOf, type StepConfig } from './config.js';
import { passCollectives, type CollectiveGroup, type PassCollectives } from './segments.js';
import type { VirtualStageModel } from './stage-model.js';

/**
 * The order in which each pipeline device runs its passes: the schedule's, given the costs of each pass so that
 * cost-aware schedules can plan with them (a pass plus the blocking collectives after it, and a stage-to-stage
 * transfer, on an idle network); or, for a zeroth-order optimizer, every forward twice and no backward.
 */
export function passOrder(config: StepConfig, program: StepProgram, topology: Topology, virtualStages: VirtualStageModel[], collectives: PassCollectives = passCollectives(virtualStages)): ScheduledPass[][] {
  const { mesh } = program;
  const pp = mesh.sizeOf('pp');
  const chunks = program.stages.length / pp;
  const microBatches = microBatchesOf(config, mesh);
  if (!takesGradients(config.training.optimizer)) return forwardOnlyOrder(pp, microBatches * 2, chunks);
  const stepLatency = config.cluster.collectiveStepLatencySeconds;
  const costs = config.costs;
  const perStage = mesh.ranksPerStage;
  const p2pNs = costs?.p2pSeconds !== undefined ? toNanoseconds(costs.p2pSeconds) : pp > 1 ? estimateTransferNs(topology, 0, perStage, virtualStages[0].sendForwardBytes, stepLatency) : 0;
  const blockingNs = (groups: CollectiveGroup[]) =>
    groups.reduce((sum, c) => sum + estimateCollectiveNs(topology, planCollective(c.kind, mesh.group(0, [c.axis]), c.bytes, c.repeat), stepLatency), 0);
  const passCosts: PassCosts = {
    forward: virtualStages.map((v, vs) => v.forwardNs + blockingNs(collectives.forward[vs])),
    inputGrad: virtualStages.map((v, vs) => v.inputGradNs + blockingNs(collectives.backward[vs])),
    weightGrad: virtualStages.map((v) => v.weightGradNs),
    p2p: p2pNs,
  };
  const passMemory = { activation: virtualStages.map((v) => v.activationBytes), weightGrad: virtualStages.map((v) => v.weightGradBytes) };
  return getSchedule(program.schedule).order({ stages: pp, microBatches, chunks, costs: passCosts, memory: passMemory, microBatchGroup: program.microBatchGroup });
}
