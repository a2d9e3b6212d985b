/**
 * Checks a Chrome trace (JSON Object format) for everything dtsim promises:
 * structure, named processes and threads, non-overlapping slices per lane,
 * matched flow arrows, non-negative counters, and simulator metadata.
 * Returns the problems found (empty when the trace is sound).
 */
interface TraceEvent {
  ph: string;
  name?: string;
  pid?: number;
  tid?: number;
  ts?: number;
  dur?: number;
  id?: number | string;
  args?: Record<string, unknown>;
  bp?: string;
}

export function checkTrace(trace: unknown): string[] {
  const problems: string[] = [];
  if (!trace || typeof trace !== 'object' || Array.isArray(trace)) return ['trace must be a JSON object (Object format)'];
  const t = trace as { traceEvents?: unknown; otherData?: Record<string, unknown>; displayTimeUnit?: unknown };
  if (!Array.isArray(t.traceEvents)) return ['traceEvents must be an array'];
  for (const key of ['version', 'seed', 'scenario']) if (t.otherData?.[key] === undefined) problems.push(`otherData.${key} missing`);
  const events = t.traceEvents as TraceEvent[];

  const processNames = new Map<number, string>();
  const threadNames = new Set<string>();
  const processSort = new Set<number>();
  const threadSort = new Set<string>();
  for (const e of events) {
    if (e.ph !== 'M') continue;
    if (e.name === 'process_name') processNames.set(e.pid!, String(e.args?.name));
    if (e.name === 'thread_name') threadNames.add(`${e.pid}:${e.tid}`);
    if (e.name === 'process_sort_index') processSort.add(e.pid!);
    if (e.name === 'thread_sort_index') threadSort.add(`${e.pid}:${e.tid}`);
  }

  const lanes = new Map<string, [number, number][]>();
  const flows = new Map<string, { s: number; f: number }>();
  let slices = 0;
  for (const [i, e] of events.entries()) {
    if (typeof e.ph !== 'string') {
      problems.push(`event ${i}: no ph`);
      continue;
    }
    if (e.ph === 'M') continue;
    if (typeof e.pid !== 'number' || !processNames.has(e.pid)) problems.push(`event ${i} (${e.ph} ${e.name}): pid ${e.pid} has no process_name`);
    else if (!processSort.has(e.pid)) problems.push(`event ${i}: pid ${e.pid} has no process_sort_index`);
    if (typeof e.ts !== 'number' || !Number.isFinite(e.ts) || e.ts < 0) problems.push(`event ${i}: bad ts ${e.ts}`);
    if (e.ph === 'X') {
      slices++;
      if (typeof e.dur !== 'number' || e.dur < 0) problems.push(`event ${i}: bad dur ${e.dur}`);
      const lane = `${e.pid}:${e.tid}`;
      if (!threadNames.has(lane)) problems.push(`event ${i}: thread ${lane} has no thread_name`);
      if (!threadSort.has(lane)) problems.push(`event ${i}: thread ${lane} has no thread_sort_index`);
      // Compare in whole nanoseconds: ts and dur are microseconds with nanosecond decimals.
      const start = Math.round(e.ts! * 1000);
      const end = start + Math.round(e.dur! * 1000);
      let list = lanes.get(lane);
      if (!list) lanes.set(lane, (list = []));
      list.push([start, end]);
      for (const key of ['kind']) if (e.args?.[key] === undefined) problems.push(`event ${i}: args.${key} missing`);
    } else if (e.ph === 's' || e.ph === 'f') {
      const key = String(e.id);
      const entry = flows.get(key) ?? { s: 0, f: 0 };
      entry[e.ph]++;
      flows.set(key, entry);
    } else if (e.ph === 'C') {
      for (const [k, v] of Object.entries(e.args ?? {})) if (typeof v !== 'number' || v < 0) problems.push(`event ${i}: counter ${e.name}.${k} = ${v}`);
    } else {
      problems.push(`event ${i}: unexpected phase ${e.ph}`);
    }
  }
  for (const [lane, list] of lanes) {
    list.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let i = 1; i < list.length; i++) {
      if (list[i][0] < list[i - 1][1]) {
        problems.push(`lane ${lane}: slice at ${list[i][0]} ns overlaps the previous one ending at ${list[i - 1][1]} ns`);
        break;
      }
    }
  }
  for (const [id, entry] of flows) if (entry.s !== 1 || entry.f !== 1) problems.push(`flow ${id}: ${entry.s} starts and ${entry.f} finishes`);
  if (slices === 0) problems.push('no slices');
  return problems;
}
