import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/scenario/load.js';

// The scenario keys that scripts and later issues rely on, exactly as the foundation issue fixes them.
const CONTRACT = `name: gpt3-175b-1024-a100
seed: 1
cluster:
  nodes: 128
  gpusPerNode: 8
  gpu: a100-80gb        # preset name, or an object of overrides
  node: dgx-a100        # node preset: links, NICs, host memory, NVMe
model:
  preset: gpt3-175b     # or explicit fields:
  layers: 96
  hidden: 12288
  heads: 96
  ffnHidden: 49152
  vocab: 51200
  seqLength: 2048
training:
  globalBatch: 1536     # sequences per optimizer step
  microBatch: 1         # sequences per micro-batch
  precision: bf16       # fp32 | fp16 | bf16
  optimizer: adam
  recompute: none       # none | selective | full
parallel:
  tp: 8
  pp: 16
  dp: 8
  schedule: 1f1b        # gpipe | 1f1b  (more schedules follow)
  chunks: 1             # model chunks per device
costs:                  # optional profiled times, replace derived ones
  forward: 18.5ms
  backward: 18.1ms      # input gradients (B)
  weightGrad: 9.3ms     # weight gradients (W); schedules without a B/W split run B then W as one operation
  p2p: 0.6ms            # each stage-to-stage transfer
`;

describe('the scenario contract', () => {
  it('accepts the contract example as written and resolves every key', () => {
    const s = parseScenario(CONTRACT, 'contract.yaml');
    expect(s.cluster.nodes * s.cluster.gpusPerNode).toBe(1024);
    expect(s.cluster.gpu.name).toBe('a100-80gb');
    expect(s.model).toMatchObject({ layers: 96, hidden: 12288, heads: 96, ffnHidden: 49152, vocab: 51200, seqLength: 2048 });
    expect(s.training).toMatchObject({ globalBatch: 1536, microBatch: 1, precision: 'bf16', optimizer: 'adam', recompute: 'none' });
    expect(s.parallel).toMatchObject({ tp: 8, pp: 16, dp: 8, schedule: '1f1b', chunks: 1 });
    expect(s.costs!.forwardSeconds![0]).toBe(0.0185);
    expect(s.costs!.backwardSeconds![15]).toBe(0.0181);
    expect(s.costs!.weightGradSeconds![3]).toBe(0.0093);
    expect(s.costs!.p2pSeconds).toBe(0.0006);
  });
});
