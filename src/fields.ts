import { z } from 'zod';
import { parseQuantity, UNIT_HELP, type Quantity } from './units.js';

/**
 * Field schemas shared by the scenario file and the parallelism passes that own fields of it: each with a message
 * that says what is allowed, as scenario errors print it.
 */

/** A quantity with a unit (`80GiB`, `300GB/s`, `5us`) or a bare number in the base unit. */
export const quantity = (kind: Quantity, { allowZero = false } = {}) =>
  z.union([z.number(), z.string()]).transform((value, ctx) => {
    const parsed = parseQuantity(kind, value);
    if (parsed === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected ${UNIT_HELP[kind]}` });
      return z.NEVER;
    }
    if (allowZero ? parsed < 0 : parsed <= 0) {
      ctx.addIssue({ code: 'custom', message: `must be ${allowZero ? 'zero or more' : 'greater than zero'}` });
      return z.NEVER;
    }
    if (parsed > 0 && parsed < QUANTITY_MIN[kind].value) {
      ctx.addIssue({ code: 'custom', message: `must be ${allowZero ? 'zero or ' : ''}at least ${QUANTITY_MIN[kind].text}` });
      return z.NEVER;
    }
    if (parsed > QUANTITY_MAX[kind].value) {
      ctx.addIssue({ code: 'custom', message: `must be at most ${QUANTITY_MAX[kind].text}` });
      return z.NEVER;
    }
    return parsed;
  });

/**
 * The largest quantity of each kind a scenario may give: far beyond any hardware, and small enough that every
 * product the simulation forms (times in nanoseconds, bytes over bandwidths) stays finite.
 */
const QUANTITY_MAX: Record<Quantity, { value: number; text: string }> = {
  time: { value: 1e6, text: '1e6 s (11 days)' },
  size: { value: 1e21, text: '1e21 bytes (1 ZB)' },
  bandwidth: { value: 1e18, text: '1e18 bytes/s (1 EB/s)' },
  flops: { value: 1e21, text: '1e21 FLOP/s' },
};

/**
 * The smallest non-zero quantity of each kind: far below any hardware, and large enough that the largest amount of
 * work or bytes over it stays finite (1e21 bytes at 1 B/s is 1e21 s, not Infinity).
 */
const QUANTITY_MIN: Record<Quantity, { value: number; text: string }> = {
  time: { value: 1e-12, text: '1e-12 s (1 ps)' },
  size: { value: 1, text: '1 byte' },
  bandwidth: { value: 1, text: '1 byte/s' },
  flops: { value: 1, text: '1 FLOP/s' },
};

/** The largest count a scenario may give (layers, GPUs, sequences, degrees): a billion. */
export const MAX_COUNT = 1e9;

export const count = (what = 'a whole number of at least 1') =>
  z
    .number({ error: `expected ${what}` })
    .int({ error: `expected ${what}` })
    .min(1, { error: `expected ${what}` })
    .max(MAX_COUNT, { error: `expected ${what}, at most ${MAX_COUNT.toExponential()}` });

/** An efficiency: from one in a million (a smaller one would turn finite work into infinite time) to 1. */
export const fraction = (what: string) => z.number({ error: `expected ${what}` }).gte(1e-6, { error: `expected ${what}` }).lte(1, { error: `expected ${what}` });

export const choice = <const T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: `expected one of ${values.join(', ')}` });
