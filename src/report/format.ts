/** Human-readable quantities for summaries (reports themselves stay in base units). */

export function formatBytes(bytes: number): string {
  const abs = Math.abs(bytes);
  if (abs < 1024) return `${bytes.toFixed(0)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes / 1024;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[i]}`;
}

export function formatSeconds(seconds: number): string {
  const abs = Math.abs(seconds);
  if (abs === 0) return '0 s';
  if (abs < 1e-6) return `${(seconds * 1e9).toFixed(0)} ns`;
  if (abs < 1e-3) return `${(seconds * 1e6).toFixed(1)} us`;
  if (abs < 1) return `${(seconds * 1e3).toFixed(abs < 0.01 ? 3 : 1)} ms`;
  return `${seconds.toFixed(3)} s`;
}

/** Rates in decimal units, as vendors quote link bandwidth (300 GB/s, not 279 GiB/s). */
export function formatRate(bytesPerSecond: number): string {
  const units = ['B/s', 'KB/s', 'MB/s', 'GB/s', 'TB/s', 'PB/s'];
  let value = bytesPerSecond;
  let i = 0;
  while (Math.abs(value) >= 1000 && i < units.length - 1) {
    value /= 1000;
    i++;
  }
  return `${Number(value.toPrecision(3))} ${units[i]}`;
}

export function formatCount(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e12) return `${(n / 1e12).toFixed(2)}T`;
  if (abs >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(0);
}

export const percent = (x: number) => `${(x * 100).toFixed(1)}%`;

/** Left-aligned text table. */
export function table(rows: string[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows;
  const widths = all[0].map((_, c) => Math.max(...all.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd();
  return all.map(line).join('\n');
}

/** Names of mesh axes in summaries, in the order they are shown. */
const AXIS_NAMES: [string, string][] = [
  ['tp', 'TP'],
  ['sp', 'Ulysses'],
  ['cp', 'CP'],
  ['dap', 'DAP'],
  ['ep', 'EP'],
  ['pp', 'PP'],
  ['dp', 'DP'],
];

/** "TP 2 (sequence parallel) x Ulysses 4 x PP 2 x DP 4 (ZeRO-1)": the degrees of a device mesh, and what rides on them. */
export function formatMesh(mesh: Readonly<Record<string, number | undefined>>, notes: { sequenceParallel?: boolean; zero?: number } = {}): string {
  return AXIS_NAMES.filter(([axis]) => mesh[axis] !== undefined && (mesh[axis]! > 1 || axis === 'tp' || axis === 'pp' || axis === 'dp'))
    .map(([axis, name]) => {
      const note = axis === 'tp' && notes.sequenceParallel ? ' (sequence parallel)' : axis === 'dp' && notes.zero ? ` (ZeRO-${notes.zero})` : '';
      return `${name} ${mesh[axis]}${note}`;
    })
    .join(' x ');
}
