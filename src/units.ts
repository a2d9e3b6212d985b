/**
 * Quantities with units, as scenario files write them. A bare number is in the
 * base unit: bytes, bytes per second, seconds, FLOP/s.
 */

// Decimal prefixes as powers of ten, binary ones as factors.
const DECIMAL: Record<string, number> = { '': 0, K: 3, M: 6, G: 9, T: 12, P: 15 };
const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50 };
const TIME_EXPONENT: Record<string, number> = { ns: -9, us: -6, 'µs': -6, ms: -3, s: 0 };

/**
 * A decimal number times 10^exponent, shifted in the text so the result is the
 * double nearest the exact decimal (9.3ms is exactly 0.0093, not 0.009300000000000001).
 */
function shifted(number: string, exponent: number): number {
  const [mantissa, power = '0'] = number.split(/[eE]/);
  return Number(`${mantissa}e${Number(power) + exponent}`);
}

/** `number` with a decimal (K, M, ...) or binary (Ki, Mi, ...) prefix applied. */
function prefixed(number: string, prefix: string): number {
  return prefix in BINARY ? Number(number) * BINARY[prefix] : shifted(number, DECIMAL[prefix]);
}

const NUMBER = '([0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?)';

export type Quantity = 'size' | 'bandwidth' | 'time' | 'flops';

export const UNIT_HELP: Record<Quantity, string> = {
  size: 'a size in bytes, such as 80GiB, 512MB or 1024 (units B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)',
  bandwidth: 'a bandwidth, such as 300GB/s, 200Gb/s or 25GiB/s (bytes B or bits b per second, prefixes K M G T P Ki Mi Gi Ti); a bare number is bytes/s',
  time: 'a time, such as 5us, 18.5ms or 2s (units ns, us, ms, s, min); a bare number is seconds',
  flops: 'a rate of floating-point operations, such as 312TFLOPS or 312e12 (FLOP/s)',
};

/** Parses a quantity; returns undefined when the text is not one. */
export function parseQuantity(kind: Quantity, value: unknown): number | undefined {
  const parsed = parseQuantityText(kind, value);
  // 1e306min or 1e300PiB overflow to Infinity: no quantity a simulation can use.
  return parsed !== undefined && Number.isFinite(parsed) ? parsed : undefined;
}

function parseQuantityText(kind: Quantity, value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
  let m: RegExpMatchArray | null;
  switch (kind) {
    case 'size':
      m = text.match(new RegExp(`^${NUMBER}\\s*(|K|M|G|T|P|Ki|Mi|Gi|Ti|Pi)B$`));
      return m ? prefixed(m[1], m[2]) : undefined;
    case 'time':
      m = text.match(new RegExp(`^${NUMBER}\\s*(ns|us|µs|ms|s|min)$`));
      if (!m) return undefined;
      return m[2] === 'min' ? Number(m[1]) * 60 : shifted(m[1], TIME_EXPONENT[m[2]]);
    case 'bandwidth':
      m = text.match(new RegExp(`^${NUMBER}\\s*(|K|M|G|T|P|Ki|Mi|Gi|Ti)(B|b)(?:/s|ps)$`));
      return m ? prefixed(m[1], m[2]) / (m[3] === 'b' ? 8 : 1) : undefined;
    case 'flops':
      m = text.match(new RegExp(`^${NUMBER}\\s*(|K|M|G|T|P)FLOP(?:S|/s)$`));
      return m ? prefixed(m[1], m[2]) : undefined;
  }
}
