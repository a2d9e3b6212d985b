import { z } from 'zod';
import { count } from '../../fields.js';
import type { ParallelismPass } from '../pass.js';
import type { ProgramBlock, VirtualStage } from '../program.js';
import { SCHEDULES, getSchedule } from './registry.js';

/**
 * Pipeline parallelism: the model's blocks cut into pp x chunks virtual stages of whole layers, placed on the
 * devices of the `pp` axis as the schedule says (pipeline/registry.ts), the embedding with the first layers and the
 * output head with the last. With tied embeddings on two devices, the last stage keeps a copy of the word
 * embedding and the two sum their gradients (Megatron).
 */
const fields = {
  pp: count().default(1),
  schedule: z.string().default('1f1b'),
  chunks: count().default(1),
  layersPerStage: z.array(count('a whole number of layers, at least 1')).optional(),
};

export interface PipelineConfig {
  pp: number;
  schedule: string;
  /** Model chunks per device (interleaved and ZB-V schedules). */
  chunks: number;
  /** Transformer layers on each pipeline stage. */
  layersPerStage: number[];
}

export const pipelineParallel: ParallelismPass<typeof fields, PipelineConfig> = {
  name: 'pipeline',
  fields,
  resolve({ pp, schedule, chunks, layersPerStage: given }, { model, fail }) {
    if (!(schedule in SCHEDULES)) fail(['parallel', 'schedule'], `unknown schedule ${JSON.stringify(schedule)}; registered schedules: ${Object.keys(SCHEDULES).join(', ')}`);
    let layersPerStage: number[];
    if (given) {
      layersPerStage = given;
      if (given.length !== pp) fail(['parallel', 'layersPerStage'], `lists ${given.length} stages but parallel.pp is ${pp}`);
      const sum = given.reduce((a, b) => a + b, 0);
      if (sum !== model.layers) fail(['parallel', 'layersPerStage'], `adds up to ${sum} layers but the model has ${model.layers}`);
    } else {
      if (model.layers < pp) fail(['parallel', 'pp'], `pp = ${pp} is more stages than the model's ${model.layers} layers`);
      layersPerStage = splitEvenly(model.layers, pp);
    }
    return { pp, schedule, chunks, layersPerStage };
  },
  axes: ({ pp }) => ({ pp }),
  check({ pp, schedule, chunks, layersPerStage }, { microBatches, model }) {
    // The schedule judges only a configuration that is otherwise whole.
    const whole = Number.isInteger(microBatches) && layersPerStage.length === pp && layersPerStage.reduce((a, b) => a + b, 0) === model.layers;
    if (!(schedule in SCHEDULES) || !whole) return [];
    return getSchedule(schedule).check({ pp, chunks, microBatches, layersPerStage });
  },
  apply(program, { pp, schedule, chunks, layersPerStage }) {
    const placement = getSchedule(schedule);
    const count = pp * chunks;
    const stageOf = new Int32Array(count);
    const chunkOf = new Int32Array(count);
    for (let device = 0; device < pp; device++) {
      for (let chunk = 0; chunk < chunks; chunk++) {
        const vs = placement.virtualStage(device, chunk, pp, chunks);
        stageOf[vs] = device;
        chunkOf[vs] = chunk;
      }
    }
    // Layers fill the virtual stages in order; blocks before the first layer join the first, those after the last the last.
    const blocks = program.stages.flatMap((s) => s.blocks);
    const members: ProgramBlock[][] = Array.from({ length: count }, () => []);
    const stageOfBlock: number[] = [];
    const layersOf = (vs: number) => layersPerStage[stageOf[vs]] / chunks;
    let vs = 0;
    let filled = 0;
    for (const block of blocks) {
      if (block.kind === 'layer') {
        while (filled === layersOf(vs) && vs < count - 1) {
          vs++;
          filled = 0;
        }
        filled++;
      }
      stageOfBlock.push(vs);
      members[vs].push(block);
    }
    // Tied parameters whose two blocks land on different devices: the second keeps a copy.
    const tied = program.workload.tied;
    const [owner, copy] = tied ? [stageOfBlock[tied.from], stageOfBlock[tied.to]] : [0, 0];
    const copied = tied !== undefined && stageOf[owner] !== stageOf[copy];
    if (copied) {
      const at = members[copy].indexOf(blocks[tied.to]);
      members[copy][at] = { ...blocks[tied.to], tiedCopies: [...blocks[tied.to].tiedCopies, tied.tensor] };
    }
    const stages: VirtualStage[] = members.map((b, v) => ({ virtualStage: v, stage: stageOf[v], chunk: chunkOf[v], layers: layersOf(v), blocks: b }));
    return { ...program, stages, schedule, ...(copied ? { tied: { tensor: tied.tensor, owner, copy } } : {}) };
  },
};

/** Megatron's default split: equal layers per stage, the remainder on the first stages. */
export function splitEvenly(layers: number, stages: number): number[] {
  const base = Math.floor(layers / stages);
  const extra = layers % stages;
  return Array.from({ length: stages }, (_, i) => base + (i < extra ? 1 : 0));
}
