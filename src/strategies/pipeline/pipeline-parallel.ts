import { z } from 'zod';
import { count } from '../../fields.js';
import type { ParallelismPass } from '../pass.js';
import type { ProgramBlock, VirtualStage } from '../program.js';
import { getSchedule, SCHEDULES, unknownSchedule } from './registry.js';

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
  microBatchGroup: count().optional(),
  scatterGather: z.boolean({ error: 'expected true or false' }).default(true),
};

export interface PipelineConfig {
  pp: number;
  schedule: string;
  /** Model chunks per device (interleaved and ZB-V schedules). */
  chunks: number;
  /** Transformer layers on each pipeline stage. */
  layersPerStage: number[];
  /** Interleaved schedule: consecutive micro-batches each chunk runs before the next chunk's (default pp). */
  microBatchGroup: number;
  /**
   * Megatron's scatter/gather of pipeline transfers (Narayanan et al., SC21, section 4.1): a tensor the
   * tensor-parallel ranks all hold is sent as 1/t from each and all-gathered over NVLink on arrival.
   */
  scatterGather: boolean;
}

export const pipelineParallel: ParallelismPass<typeof fields, PipelineConfig> = {
  name: 'pipeline',
  fields,
  resolve({ pp, schedule, chunks, layersPerStage: given, microBatchGroup, scatterGather }, { model, fail }) {
    if (!(schedule in SCHEDULES)) fail(['parallel', 'schedule'], unknownSchedule(schedule));
    let layersPerStage: number[];
    if (given) {
      layersPerStage = given;
      if (given.length !== pp) fail(['parallel', 'layersPerStage'], `lists ${given.length} stages but parallel.pp is ${pp}`);
      const sum = given.reduce((a, b) => a + b, 0);
      if (sum !== model.layers) fail(['parallel', 'layersPerStage'], `adds up to ${sum} layers but the model has ${model.layers}`);
    } else {
      if (model.layers < pp) fail(['parallel', 'pp'], `pp = ${pp} is more stages than the model's ${model.layers} layers`);
      layersPerStage = model.layers < pp ? [] : splitEvenly(model.layers, pp);
    }
    if (microBatchGroup !== undefined && schedule !== 'interleaved') fail(['parallel', 'microBatchGroup'], `groups micro-batches for the interleaved schedule only, but the schedule is ${schedule}; remove it or use schedule: interleaved`);
    return { pp, schedule, chunks, layersPerStage, microBatchGroup: microBatchGroup ?? pp, scatterGather };
  },
  axes: ({ pp }) => ({ pp }),
  check({ pp, schedule, chunks, layersPerStage, microBatchGroup }, { microBatches, model }) {
    // The schedule judges only a configuration that is otherwise whole.
    const whole = Number.isInteger(microBatches) && layersPerStage.length === pp && layersPerStage.reduce((a, b) => a + b, 0) === model.layers;
    if (!(schedule in SCHEDULES) || !whole) return [];
    return getSchedule(schedule).check({ pp, chunks, microBatches, layersPerStage, microBatchGroup });
  },
  apply(program, { pp, schedule, chunks, layersPerStage, microBatchGroup }) {
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
    const chunkLayers = layersOfChunks(layersPerStage, chunks, (device, chunk) => placement.virtualStage(device, chunk, pp, chunks), count);
    const layersOf = (vs: number) => chunkLayers[stageOf[vs]][chunkOf[vs]];
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
      // By place, not by identity: the layers of a program may be one object.
      const at = tied.to - stageOfBlock.indexOf(copy);
      members[copy][at] = { ...blocks[tied.to], tiedCopies: [...blocks[tied.to].tiedCopies, tied.tensor] };
    }
    // The layers each holds, as placed: an Evoformer's extra-MSA blocks are layers its model.layers does not count.
    const stages: VirtualStage[] = members.map((b, v) => ({ virtualStage: v, stage: stageOf[v], chunk: chunkOf[v], layers: b.filter((block) => block.kind === 'layer').length, blocks: b }));
    return { ...program, stages, schedule, microBatchGroup, ...(copied ? { tied: { tensor: tied.tensor, owner, copy } } : {}) };
  },
};

/**
 * Each device's layers over its chunks: evenly, and where the chunks do not divide them, the chunks holding the
 * embedding (virtual stage 0) or the output head (the last) take the shortfall, as Llama 3 gives its first and last
 * stage one layer fewer for them. When one device holds both ends (ZB-V's first device), the embedding's chunk,
 * first by index, gets the extra layer.
 */
export function layersOfChunks(layersPerStage: readonly number[], chunks: number, virtualStage: (device: number, chunk: number) => number, count: number): number[][] {
  return layersPerStage.map((layers, device) => {
    const base = Math.floor(layers / chunks);
    let extra = layers % chunks;
    const atEnd = (chunk: number) => {
      const vs = virtualStage(device, chunk);
      return vs === 0 || vs === count - 1;
    };
    const order = Array.from({ length: chunks }, (_, chunk) => chunk).sort((a, b) => Number(atEnd(a)) - Number(atEnd(b)) || a - b);
    const out = new Array<number>(chunks).fill(base);
    for (const chunk of order) if (extra-- > 0) out[chunk]++;
    return out;
  });
}

/** Megatron's default split: equal layers per stage, the remainder on the first stages. */
export function splitEvenly(layers: number, stages: number): number[] {
  const base = Math.floor(layers / stages);
  const extra = layers % stages;
  return Array.from({ length: stages }, (_, i) => base + (i < extra ? 1 : 0));
}
