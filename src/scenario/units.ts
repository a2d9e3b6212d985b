/**
 * Quantities with units, as scenario files write them. A bare number is in the
 * base unit: bytes, bytes per second, seconds, FLOP/s.
 */

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  PB: 1e15,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
  PiB: 2 ** 50,
};
const TIME_UNITS: Record<string, number> = { ns: 1e-9, us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, min: 60 };
const RATE_PREFIX: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const FLOPS_PREFIX: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 };

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
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
  let m: RegExpMatchArray | null;
  switch (kind) {
    case 'size':
      m = text.match(new RegExp(`^${NUMBER}\\s*([KMGTP]i?B|B)$`));
      return m ? Number(m[1]) * SIZE_UNITS[m[2]] : undefined;
    case 'time':
      m = text.match(new RegExp(`^${NUMBER}\\s*(ns|us|µs|ms|s|min)$`));
      return m ? Number(m[1]) * TIME_UNITS[m[2]] : undefined;
    case 'bandwidth':
      m = text.match(new RegExp(`^${NUMBER}\\s*(|K|M|G|T|P|Ki|Mi|Gi|Ti)(B|b)(?:/s|ps)$`));
      return m ? (Number(m[1]) * RATE_PREFIX[m[2]]) / (m[3] === 'b' ? 8 : 1) : undefined;
    case 'flops':
      m = text.match(new RegExp(`^${NUMBER}\\s*(|K|M|G|T|P)FLOP(?:S|/s)$`));
      return m ? Number(m[1]) * FLOPS_PREFIX[m[2]] : undefined;
  }
}
