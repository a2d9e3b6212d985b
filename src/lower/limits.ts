import { meshOf } from '../strategies/registry.js';
import { getSchedule } from '../strategies/pipeline/registry.js';
import type { ScheduledPass } from '../strategies/pipeline/schedule.js';
import type { DeviceMesh } from '../strategies/mesh.js';
import type { StepConfig } from './config.js';
import type { VirtualStageModel } from './stage-model.js';
import type { ReplicaSymmetry } from './symmetry.js';

/**
 * What a step would cost to simulate, estimated from its configuration alone, before anything is built: so that a
 * scenario too large for the machine (a billion layers, a trillion sequences per batch) is refused with the estimate
 * rather than exhausting memory for minutes. It is a guard, not a count: for the bundled scenarios it lies between
 * 0.4 and 3 times the operations the lowering builds, and 60 times for OpenFold's few large Evoformer blocks
 * (test/golden/scenarios.test.ts holds it between a quarter and a hundred times).
 */
export const DEFAULT_MAX_OPERATIONS = 30_000_000;
/** Resident bytes per operation of a whole step, graph, execution and report together (4.3M operations in 1.11 GiB, docs/performance.md). */
export const BYTES_PER_OPERATION = 280;

/**
 * `simulatedShare`: the share of the data-parallel replicas simulated (a replica symmetry's k / dp), which scales
 * every device's operations; the per-layer and per-device terms (a report's arrays cover every device) stay.
 */
export function estimateOperations(config: StepConfig, simulatedShare = 1): number {
  const { parallel, model, training } = config;
  const mesh = meshOf(parallel);
  const microBatches = training.globalBatch / (training.microBatch * mesh.sizeOf('dp'));
  const passes = getSchedule(parallel.schedule).splitBackward ? 3 : 2;
  // Passes are cut at every block (ZeRO-3) or gradient bucket (ZeRO-2, every micro-batch); a ring runs cp steps.
  const segments = parallel.zero >= 2 ? model.layers / (parallel.pp * parallel.chunks) + 2 : 1;
  const ring = parallel.cp > 1 && parallel.cpAttention === 'ring' ? 2 * parallel.cp : 1;
  // Each compute operation comes with about as many collectives, transfers and reductions.
  return simulatedShare * 2 * mesh.size * microBatches * parallel.chunks * passes * segments * ring + 12 * model.layers + 8 * mesh.size;
}

/**
 * Room for the lowering's graph, in operations: per pass of a device position, each simulated rank's compute, a
 * blocking collective per tensor-parallel group and a transfer per rank, for every segment; a quarter more for
 * everything else. Capped, so that an enormous estimate reserves no more than 32M operations' worth; past that,
 * lists double.
 */
export function graphReservation(order: ScheduledPass[][], virtualStages: VirtualStageModel[], mesh: DeviceMesh, paramsSharded: boolean, devices: number, symmetry?: ReplicaSymmetry): number {
  const perStage = mesh.ranksPerStage;
  const tp = mesh.sizeOf('tp');
  const passesPerReplica = order.reduce((sum, stageOrder) => sum + stageOrder.length, 0);
  const segmentsPerPass = paramsSharded ? Math.max(...virtualStages.map((v) => v.blocks.length)) : 1;
  const simulatedShare = symmetry ? symmetry.replicas / symmetry.of : 1;
  return Math.min(2 ** 25, 1.25 * simulatedShare * (passesPerReplica * (2 * perStage + perStage / tp) * segmentsPerPass + 4 * devices));
}
