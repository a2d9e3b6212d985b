import { TypedList } from '../engine/growable.js';

/**
 * What each operation of a step is, for reports and traces: the graph stores a label number per operation, a row
 * of this table. The operations of one pass share a row across every replica and rank, so the table holds a few
 * rows per pass where columns per operation would hold one per operation.
 */
export interface LabelTable {
  readonly count: number;
  /** The operation kind (see OP_KINDS in resources.ts). */
  readonly kind: Uint8Array;
  /** Pipeline stage; -1 where it does not apply, as for microBatch and chunk. */
  readonly stage: Int16Array;
  readonly microBatch: Int32Array;
  readonly chunk: Int16Array;
  /** Transformer layers a compute operation covers. */
  readonly layers: Int16Array;
  /** FLOPs of each operation with the label (not of all of them together). */
  readonly flops: Float64Array;
  /** Of a compute operation, the Ring Attention step it runs; -1 for none. */
  readonly ringStep: Int16Array;
}

export interface OperationLabels {
  kind: number;
  stage?: number;
  microBatch?: number;
  chunk?: number;
  layers?: number;
  flops?: number;
  ringStep?: number;
}

export class LabelTableBuilder {
  private readonly kind = new TypedList(Uint8Array, 256);
  private readonly stage = new TypedList(Int16Array, 256);
  private readonly microBatch = new TypedList(Int32Array, 256);
  private readonly chunk = new TypedList(Int16Array, 256);
  private readonly layers = new TypedList(Int16Array, 256);
  private readonly flops = new TypedList(Float64Array, 256);
  private readonly ringStep = new TypedList(Int16Array, 256);

  /** Adds a row and returns it, for any number of operations to share. */
  add(labels: OperationLabels): number {
    this.kind.push(labels.kind);
    this.stage.push(labels.stage ?? -1);
    this.microBatch.push(labels.microBatch ?? -1);
    this.chunk.push(labels.chunk ?? -1);
    this.layers.push(labels.layers ?? 0);
    this.ringStep.push(labels.ringStep ?? -1);
    return this.flops.push(labels.flops ?? 0);
  }

  build(): LabelTable {
    return {
      count: this.kind.length,
      kind: this.kind.view(),
      stage: this.stage.view(),
      microBatch: this.microBatch.view(),
      chunk: this.chunk.view(),
      layers: this.layers.view(),
      flops: this.flops.view(),
      ringStep: this.ringStep.view(),
    };
  }
}
