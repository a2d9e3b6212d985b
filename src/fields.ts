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
    return parsed;
  });

export const count = (what = 'a whole number of at least 1') => z.number({ error: `expected ${what}` }).int({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });

export const fraction = (what: string) => z.number({ error: `expected ${what}` }).gt(0, { error: `expected ${what}` }).lte(1, { error: `expected ${what}` });

export const choice = <const T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: `expected one of ${values.join(', ')}` });
