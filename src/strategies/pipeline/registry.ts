import { closest } from '../../errors.js';
import { gpipe } from './gpipe.js';
import { interleaved } from './interleaved.js';
import { oneFOneB } from './one-f-one-b.js';
import type { PipelineSchedule } from './schedule.js';
import { zbH1 } from './zb-h1.js';
import { zbH2 } from './zb-h2.js';
import { zbV } from './zb-v.js';

/** Every pipeline schedule by name. Adding one is a new file and one line here. */
export const SCHEDULES: Record<string, PipelineSchedule> = {
  gpipe,
  '1f1b': oneFOneB,
  interleaved,
  'zb-h1': zbH1,
  'zb-h2': zbH2,
  'zb-v': zbV,
};

export function getSchedule(name: string): PipelineSchedule {
  const schedule = SCHEDULES[name];
  if (!schedule) throw new Error(`unknown schedule ${name}`);
  return schedule;
}

/** Why a schedule name is not one: the nearest registered name, if it is a likely typo, and every registered one. */
export function unknownSchedule(name: string): string {
  const near = closest(name, Object.keys(SCHEDULES));
  return `unknown schedule ${JSON.stringify(name)}${near ? ` (did you mean ${near}?)` : ''}; registered schedules: ${Object.keys(SCHEDULES).join(', ')}`;
}
