import { describe, expect, it } from 'vitest';
import { opStates, transition, type AxisState, type OpLayout } from '../../src/strategies/sharding.js';
import { MODEL_PARALLEL_AXES } from '../../src/strategies/tensor/megatron-tp.js';
import { buildGpt } from '../../src/workload/gpt.js';
import { MODEL_PRESETS } from '../../src/workload/presets.js';
import type { WorkloadOp } from '../../src/workload/types.js';

describe('the sharding rule', () => {
  it('turns each change of sharding into its collective', () => {
    const cases: [AxisState, AxisState, string | undefined][] = [
      ['P', 'R', 'allReduce'],
      ['P', 'S:seq', 'reduceScatter'],
      ['S:seq', 'R', 'allGather'],
      ['S:seq', 'S:heads', 'allToAll'],
      ['R', 'S:seq', undefined],
      ['R', 'R', undefined],
      ['S:heads', 'S:heads', undefined],
    ];
    for (const [from, to, kind] of cases) expect(transition(from, to), `${from} -> ${to}`).toBe(kind);
  });

  // The collectives along `tp` between consecutive operations of a few GPT layers, forward and backward.
  const collectives = (layout: (op: WorkloadOp) => OpLayout) => {
    const w = buildGpt({ ...MODEL_PRESETS['gpt-tiny'], name: 'tiny', layers: 3 }, { microBatch: 1, attention: 'standard' });
    const ops = w.blocks.flatMap((b) => b.ops);
    const states = ops.map((op) => opStates(op, layout(op), 'tp'));
    const forward: string[] = [];
    const backward: string[] = [];
    for (let i = 0; i + 1 < ops.length; i++) {
      const f = transition(states[i].output, states[i + 1].input);
      if (f) forward.push(`${ops[i].name}>${ops[i + 1].name}:${f}`);
      const b = transition(states[i + 1].inputGrad, states[i].outputGrad);
      if (b) backward.push(`${ops[i + 1].name}>${ops[i].name}:${b}`);
    }
    return { forward, backward };
  };
  const tp: OpLayout = { tp: MODEL_PARALLEL_AXES };

  it("gives Megatron's tensor parallelism two all-reduces per layer each way, one for the embedding and one for the logits", () => {
    const { forward, backward } = collectives(() => tp);
    expect(forward).toEqual(['embedding>ln1:allReduce', ...Array(3).fill(['out-proj>dropout1:allReduce', 'fc2>dropout2:allReduce']).flat()]);
    expect(backward).toEqual([...Array(3).fill(['qkv>ln1:allReduce', 'fc1>ln2:allReduce']).flat(), 'logits>dropout2:allReduce']);
  });

  it('gives sequence parallelism a reduce-scatter into and an all-gather out of each sequence-split region, in both directions', () => {
    const split = (op: WorkloadOp): OpLayout => ((op.class === 'norm' || op.class === 'elementwise') && op.input.shape.hidden !== undefined ? { tp: ['seq'] } : tp);
    const { forward, backward } = collectives(split);
    const layer = ['ln1>qkv:allGather', 'out-proj>dropout1:reduceScatter', 'ln2>fc1:allGather', 'fc2>dropout2:reduceScatter'];
    expect(forward).toEqual(['embedding>ln1:reduceScatter', ...layer, ...layer, ...layer, 'dropout2>logits:allGather']);
    const back = ['qkv>ln1:reduceScatter', 'dropout1>out-proj:allGather', 'fc1>ln2:reduceScatter', 'dropout2>fc2:allGather'];
    expect(backward).toEqual(['ln1>embedding:allGather', ...back, ...back, ...back, 'logits>dropout2:reduceScatter']);
  });
});
