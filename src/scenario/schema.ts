import { z } from 'zod';
import { COLLECTIVE_PROTOCOLS } from '../collectives/protocols.js';
import { closest } from '../errors.js';
import { COLLECTIVE_STEP_LATENCY, GPU_PRESETS, NODE_PRESETS } from '../hardware/presets.js';
import { MODEL_PRESETS } from '../workload/presets.js';
import { choice, count, fraction, quantity } from '../fields.js';
import { parallelFields } from '../strategies/registry.js';
import { OPTIMIZERS } from '../training/optimizer.js';
import { GRADIENT_ACCUMULATIONS, PRECISIONS } from '../training/precision.js';
import { RECOMPUTE_POLICIES } from '../training/recompute.js';
import { WEIGHT_BITS } from '../training/states.js';

/**
 * The scenario file's schema: strict (unknown keys are errors), with units parsed
 * and defaults filled. docs/scenario.md documents every field; keep them in step.
 */

const presetName = (kind: string, presets: Record<string, unknown>) =>
  z.string({ error: 'expected a preset name' }).superRefine((name, ctx) => {
    if (name in presets) return;
    const near = closest(name, Object.keys(presets));
    ctx.addIssue({ code: 'custom', message: `unknown ${kind} preset${near ? ` (did you mean ${near}?)` : ''}; known presets: ${Object.keys(presets).join(', ')}` });
  });

/** A preset name, or an object of overrides with an optional `preset`: both become the object form. */
const presetOrOverrides = <T extends z.ZodType>(overrides: T) =>
  z.preprocess((value) => (typeof value === 'string' ? { preset: value } : value), overrides);

const gpuOverrides = z
  .object({
    preset: presetName('GPU', GPU_PRESETS).optional(),
    flops: quantity('flops').optional(),
    fp32Flops: quantity('flops').optional(),
    fp8Flops: quantity('flops').optional(),
    memory: quantity('size').optional(),
    memoryBandwidth: quantity('bandwidth').optional(),
    nvlinkBandwidth: quantity('bandwidth').optional(),
    computeEfficiency: fraction('a fraction from 1e-6 to 1').optional(),
    memoryEfficiency: fraction('a fraction from 1e-6 to 1').optional(),
    flashAttentionEfficiency: fraction('a fraction from 1e-6 to 1').optional(),
    efficiencyHalfSize: z.number({ error: 'expected a number of FLOPs, 0 or more' }).min(0, { error: 'expected a number of FLOPs, 0 or more' }).max(1e21, { error: 'expected a number of FLOPs, at most 1e21' }).optional(),
  })
  .strict();

const linkOverrides = z.object({ bandwidth: quantity('bandwidth').optional(), latency: quantity('time', { allowZero: true }).optional() }).strict();

const nodeOverrides = z
  .object({
    preset: presetName('node', NODE_PRESETS).optional(),
    nvswitch: z.boolean().optional(),
    nvlinkLatency: quantity('time', { allowZero: true }).optional(),
    pcie: linkOverrides.optional(),
    gpusPerPcieSwitch: count().optional(),
    nics: count().optional(),
    nic: linkOverrides.optional(),
    hostMemory: quantity('size').optional(),
    hostOptimizerRate: z.number({ error: 'expected parameters per second' }).min(1, { error: 'expected parameters per second, at least 1' }).max(1e18, { error: 'expected parameters per second, at most 1e18' }).optional(),
    nvme: z
      .object({
        capacity: quantity('size').optional(),
        readBandwidth: quantity('bandwidth').optional(),
        writeBandwidth: quantity('bandwidth').optional(),
        latency: quantity('time', { allowZero: true }).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const perStageTime = z.union([quantity('time', { allowZero: true }), z.array(quantity('time', { allowZero: true })).min(1)]);

export const scenarioSchema = z
  .object({
    name: z.string({ error: 'expected a string' }).min(1, { error: 'must not be empty' }),
    description: z.string().optional(),
    seed: z.number().int({ error: 'expected a whole number' }).min(0, { error: 'expected a whole number of 0 or more' }).max(Number.MAX_SAFE_INTEGER, { error: 'expected a whole number, at most 2^53 - 1' }).default(1),
    cluster: z
      .object({
        nodes: count(),
        gpusPerNode: count().optional(),
        gpu: presetOrOverrides(gpuOverrides).optional(),
        node: presetOrOverrides(nodeOverrides).default({ preset: 'dgx-a100' }),
        fabric: z
          .object({
            nodesPerLeaf: count().default(32),
            oversubscription: z.number().min(1, { error: 'expected a ratio of 1 or more (1 is non-blocking)' }).max(1e6, { error: 'expected a ratio from 1 to 1e6' }).default(1),
            switchLatency: quantity('time', { allowZero: true }).default(0.5e-6),
          })
          .strict()
          .default({ nodesPerLeaf: 32, oversubscription: 1, switchLatency: 0.5e-6 }),
        linkEfficiency: fraction('a fraction from 1e-6 to 1').default(0.85),
        collectiveStepLatency: quantity('time', { allowZero: true }).default(COLLECTIVE_STEP_LATENCY),
        collectiveProtocol: choice(COLLECTIVE_PROTOCOLS).default('fitted'),
      })
      .strict(),
    model: z
      .object({
        preset: presetName('model', MODEL_PRESETS).optional(),
        kind: choice(['gpt', 'evoformer', 'vit']).optional(),
        layers: count().optional(),
        hidden: count().optional(),
        heads: count().optional(),
        kvHeads: count().optional(),
        headDim: count().optional(),
        ffnHidden: count().optional(),
        vocab: count().optional(),
        seqLength: count().optional(),
        mlp: choice(['gelu', 'swiglu']).optional(),
        tiedEmbeddings: z.boolean().optional(),
        positionEmbedding: choice(['learned', 'rope']).optional(),
        causal: z.boolean({ error: 'expected true or false' }).optional(),
        dropout: z.boolean({ error: 'expected true or false' }).optional(),
        attention: choice(['standard', 'linformer', 'performer']).optional(),
        attentionRank: count().optional(),
        // An Evoformer's (kind evoformer): workload/evoformer.ts.
        extraLayers: z.number({ error: 'expected a whole number' }).int({ error: 'expected a whole number' }).min(0, { error: 'expected a whole number of blocks, 0 or more' }).max(1e6, { error: 'expected at most 1e6 blocks' }).optional(),
        residues: count().optional(),
        msaRows: count().optional(),
        extraMsaRows: count().optional(),
        msaChannels: count().optional(),
        pairChannels: count().optional(),
        extraMsaChannels: count().optional(),
        singleChannels: count().optional(),
        // A weather vision transformer's (kind vit): workload/vit.ts.
        inputChannels: count().optional(),
        outputChannels: count().optional(),
        patch: count().optional(),
        grid: z.array(count(), { error: 'expected a list of token counts' }).min(2, { error: 'expected [latitude, longitude] or [levels, latitude, longitude]' }).max(3, { error: 'expected [latitude, longitude] or [levels, latitude, longitude]' }).optional(),
        window: z.array(count(), { error: 'expected a list of token counts' }).min(2, { error: 'expected one size per grid axis' }).max(3, { error: 'expected one size per grid axis' }).optional(),
        stages: z.array(z.object({ depth: count(), channels: count(), heads: count() }).strict(), { error: 'expected a list of stages, each { depth, channels, heads }' }).min(1, { error: 'expected at least one stage' }).optional(),
        mlpRatio: count().optional(),
        positionBias: choice(['earth', 'relative', 'none']).optional(),
        norm: choice(['layer', 'adaptive']).optional(),
        resample: choice(['merge', 'conv']).optional(),
      })
      .strict(),
    training: z
      .object({
        globalBatch: count().optional(),
        accumulation: count().optional(),
        microBatch: count().default(1),
        precision: choice(PRECISIONS).optional(),
        gradAccumulation: choice(GRADIENT_ACCUMULATIONS).default('precision'),
        optimizer: choice(OPTIMIZERS).default('adam'),
        weightBits: z.union([z.literal(8), z.literal(4), z.literal(2), z.literal(1.58)], { error: `expected the bits of a quantised weight: ${WEIGHT_BITS.join(', ')}` }).optional(),
        recompute: choice(RECOMPUTE_POLICIES).default('none'),
        recomputeLayers: count().optional(),
        flashAttention: z.boolean().default(false),
        recycles: z.number({ error: 'expected a whole number' }).int({ error: 'expected a whole number' }).min(0, { error: 'expected a whole number of iterations, 0 or more' }).max(100, { error: 'expected at most 100 recycling iterations' }).optional(),
        hostOverheadPerLayer: quantity('time', { allowZero: true }).optional(),
        transferOverhead: quantity('time', { allowZero: true }).optional(),
      })
      .strict(),
    // Each parallelism pass owns its fields (src/strategies/registry.ts).
    parallel: z.object(parallelFields).strict().prefault({}),
    costs: z
      .object({
        forward: perStageTime.optional(),
        backward: perStageTime.optional(),
        weightGrad: perStageTime.optional(),
        p2p: quantity('time', { allowZero: true }).optional(),
        optimizer: quantity('time', { allowZero: true }).optional(),
      })
      .strict()
      .optional(),
    variability: z
      .object({
        jitter: z.number().min(0, { error: 'expected a relative standard deviation in [0, 0.5]' }).max(0.5, { error: 'expected a relative standard deviation in [0, 0.5]' }).default(0),
        stragglers: z.number().int().min(0, { error: 'expected a whole number of devices, 0 or more' }).default(0),
        stragglerSlowdown: z.number().min(1, { error: 'expected a factor of 1 or more' }).max(1e6, { error: 'expected a factor from 1 to 1e6' }).default(1.5),
      })
      .strict()
      .default({ jitter: 0, stragglers: 0, stragglerSlowdown: 1.5 }),
  })
  .strict();

export type ScenarioInput = z.output<typeof scenarioSchema>;

/** The field names a strict object at `path` allows, for "unknown field" messages. */
export function allowedKeys(path: readonly PropertyKey[]): string[] {
  let schema: z.ZodType = scenarioSchema;
  for (const segment of path) {
    const obj = objectIn(schema);
    if (!obj || typeof segment !== 'string' || !(segment in obj.shape)) return [];
    schema = obj.shape[segment] as z.ZodType;
  }
  const obj = objectIn(schema);
  return obj ? Object.keys(obj.shape) : [];
}

function objectIn(schema: z.ZodType): z.ZodObject | undefined {
  for (let i = 0; i < 8; i++) {
    if (schema instanceof z.ZodObject) return schema;
    if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) schema = schema.unwrap() as z.ZodType;
    else if (schema instanceof z.ZodPipe) schema = schema.out as z.ZodType;
    else if (schema instanceof z.ZodUnion) {
      const found = (schema.options as z.ZodType[]).map(objectIn).find(Boolean);
      return found;
    } else return undefined;
  }
  return undefined;
}

/**
 * The scenario file's JSON Schema, generated from the zod schema above so that the two cannot disagree: editors
 * that read it (VS Code's YAML extension, JetBrains IDEs) complete and check fields. Quantities accept a number in
 * base units or a string with a unit; `docs/scenario.schema.json` is this, kept current by the docs test.
 */
export function scenarioJsonSchema(): Record<string, unknown> {
  type Node = { properties: Record<string, Node> } & Record<string, unknown>;
  const schema = z.toJSONSchema(scenarioSchema, { io: 'input', unrepresentable: 'any' }) as unknown as Node;
  // A preset may be named by itself (`gpu: a100-80gb`), which the loader turns into `{ preset: ... }`.
  const cluster = schema.properties.cluster.properties;
  for (const [key, presets] of [['gpu', GPU_PRESETS], ['node', NODE_PRESETS]] as const) {
    const names = Object.keys(presets);
    cluster[key].properties.preset = { type: 'string', enum: names } as unknown as Node;
    cluster[key] = { anyOf: [{ type: 'string', enum: names }, cluster[key]] } as unknown as Node;
  }
  schema.properties.model.properties.preset = { type: 'string', enum: Object.keys(MODEL_PRESETS) } as unknown as Node;
  return { ...schema, $id: 'https://github.com/dtsim/dtsim/docs/scenario.schema.json', title: 'dtsim scenario', description: 'A dtsim scenario file: cluster, model, training and parallel strategy (docs/scenario.md).' };
}
