import { AT_END, AT_START } from '../engine/graph.js';
import type { DeviceMesh } from '../strategies/mesh.js';
import type { ContextAttention } from '../strategies/program.js';
import type { StepEmitter } from './emitter.js';
import { CATEGORY, KIND, LANE } from './resources.js';
import type { Segment } from './segments.js';
import type { Variability } from './variability.js';

/** What the lowering tracks per device, which a phase reads and advances (lower.ts owns the arrays). */
export interface DeviceCursor {
  /** Each stage rank's latest compute (or the collective that completes it), by place in the stage. */
  lastOps: Int32Array;
  /** By device: an operation its next compute must wait for, or -1. */
  lastBlocking: Int32Array;
  /** By device: its latest operation, which the optimizer step waits for. */
  lastOpOf: Int32Array;
}

/**
 * Context parallelism's attention as steps: each rank's work in each step as the split loads it (program
 * `contextAttention.work`); with a ring, each step's key/value block goes on to the next rank of the ring while the
 * attention of the one held runs, and the next step waits for its arrival. A backward passes each block with the
 * gradient of the block before (one step behind, as Transformer Engine sends it), and after the last step hands the
 * last gradient to its owner, which that owner's next compute, collective or pipeline send waits for. The ring runs
 * over a whole segment's layers at once (docs/design.md, decision 16).
 */
export class AttentionPhases {
  /** Whether segments' attention runs as phases at all: a ring, or ranks with unequal work. */
  readonly active: boolean;
  private readonly perStage: number;
  private readonly ringSize: number;
  private readonly ringStride: number;
  private readonly stepLast: Int32Array;
  private readonly thisStep: Int32Array;
  private readonly previousStep: Int32Array;
  private arrived: Int32Array;
  private arriving: Int32Array;

  constructor(
    private readonly context: ContextAttention | undefined,
    private readonly mesh: DeviceMesh,
    private readonly emit: StepEmitter,
    private readonly variability: Variability,
    private readonly cursor: DeviceCursor,
  ) {
    this.active = context !== undefined && (context.steps > 1 || context.work.some((w) => w.some((x) => x !== 1)));
    this.perStage = mesh.ranksPerStage;
    this.ringSize = context ? mesh.sizeOf(context.axis) : 1;
    this.ringStride = context ? mesh.rank({ [context.axis]: 1 }) : 0;
    const n = this.perStage;
    this.stepLast = new Int32Array(n);
    this.thisStep = new Int32Array(n);
    this.previousStep = new Int32Array(n);
    this.arrived = new Int32Array(n);
    this.arriving = new Int32Array(n);
  }

  /** The next rank of `device` around the ring. */
  private next(device: number): number {
    const c = this.mesh.coordinate(device, this.context!.axis);
    return device + (((c + 1) % this.ringSize) - c) * this.ringStride;
  }

  /**
   * The attention phase of a segment on every rank of the stage whose first rank is `first`, after the rest of the
   * segment's compute; returns each rank's last compute, by place in the stage.
   */
  run(segment: Segment, passNs: number, kind: number, at: { stage: number; microBatch: number; chunk: number }, forward: boolean, first: number): Int32Array {
    const { steps, work, axis } = this.context!;
    const { emit, mesh, variability, perStage, stepLast, thisStep, previousStep } = this;
    const { lastOps, lastBlocking, lastOpOf } = this.cursor;
    const g = emit.graph;
    const resources = emit.resources;
    const stepNs = (passNs * segment.attention) / steps;
    const bytes = segment.ringBytes * (forward ? 1 : 2);
    const buffers = steps > 1 ? (2 * bytes) / Math.max(1, segment.layers) : 0;
    const transferLabel = steps > 1 ? emit.label({ kind: KIND.ring, stage: at.stage, microBatch: at.microBatch, chunk: at.chunk }) : -1;
    for (let j = 0; j < steps; j++) {
      const label = emit.label({ kind, stage: at.stage, microBatch: at.microBatch, chunk: at.chunk, ringStep: steps > 1 ? j : -1, flops: 0 });
      previousStep.set(thisStep);
      for (let local = 0; local < perStage; local++) {
        const device = first + local;
        const ns = Math.round(stepNs * work[mesh.coordinate(device, axis)][j]);
        const op = g.operation(label, device, variability.vary(ns, device));
        g.lane(resources.lane(device, LANE.compute));
        if (j === 0) {
          if (lastBlocking[device] >= 0) g.dependOn(op, lastBlocking[device]);
          if (buffers > 0) g.memory(op, resources.hbm(device), CATEGORY.buffers, buffers, AT_START);
        } else g.dependOn(op, this.arrived[local]);
        if (j === steps - 1 && buffers > 0) g.memory(op, resources.hbm(device), CATEGORY.buffers, -buffers, AT_END);
        // The block this rank holds in step j: its own after the compute before the phase, else the one received.
        if (j < steps - 1) stepLast[local] = j === 0 ? lastOps[local] : this.arrived[local];
        thisStep[local] = op;
        lastOps[local] = op;
        lastBlocking[device] = -1;
        lastOpOf[device] = op;
      }
      if (j === steps - 1) break;
      for (let local = 0; local < perStage; local++) {
        const device = first + local;
        const to = this.next(device);
        const sent = emit.transfer(device, to, bytes, LANE.ringSend, LANE.ringReceive, transferLabel);
        g.dependOn(sent, stepLast[local]);
        // In a backward the block travels with the gradient of the one before, computed in the step before.
        if (!forward && j > 0) g.dependOn(sent, previousStep[local]);
        this.arriving[to - first] = sent;
      }
      [this.arrived, this.arriving] = [this.arriving, this.arrived];
    }
    const last = lastOps.slice();
    if (!forward && steps > 1) {
      for (let local = 0; local < perStage; local++) {
        const device = first + local;
        const to = this.next(device);
        const sent = emit.transfer(device, to, segment.ringBytes, LANE.ringSend, LANE.ringReceive, transferLabel);
        g.dependOn(sent, last[local]);
        lastBlocking[to] = sent;
        lastOpOf[to] = sent;
      }
    }
    return last;
  }
}
