import { describe, expect, it } from 'vitest';
import { LabelTableBuilder } from '../../src/lower/labels.js';

describe('label table', () => {
  it('keeps every column of each row, with -1 for what does not apply and 0 layers and FLOPs by default', () => {
    const table = new LabelTableBuilder();
    const forward = table.add({ kind: 0, stage: 1, microBatch: 7, chunk: 0, layers: 3, flops: 1e9 });
    const other = table.add({ kind: 5 });
    for (let i = 0; i < 300; i++) table.add({ kind: 2, microBatch: i });
    const labels = table.build();
    expect(labels.count).toBe(302);
    expect([labels.kind[forward], labels.stage[forward], labels.microBatch[forward], labels.chunk[forward], labels.layers[forward], labels.flops[forward]]).toEqual([0, 1, 7, 0, 3, 1e9]);
    expect([labels.kind[other], labels.stage[other], labels.microBatch[other], labels.chunk[other], labels.layers[other], labels.flops[other]]).toEqual([5, -1, -1, -1, 0, 0]);
    expect(labels.microBatch[301]).toBe(299);
  });
});
