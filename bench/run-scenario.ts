/**
 * One measured simulation, in a process of its own so that its peak resident memory is its own:
 *   node dist/bench/run-scenario.js <scenario> [--set path=value]... [--repeat N] [--no-page-warmer]
 * Prints one JSON line: wall seconds in total and per phase, operations, events and peak resident bytes. With
 * --repeat, simulate() runs N more times in the same process and `repeatSeconds` lists their wall times.
 */
import { loadScenarioFile } from '../src/scenario/load.js';
import { SIMULATION_PHASES, simulate, type SimulationPhase } from '../src/simulate.js';

export interface ScenarioMeasurement {
  wallSeconds: number;
  phaseSeconds: Record<SimulationPhase | 'load', number>;
  operations: number;
  events: number;
  devices: number;
  peakResidentBytes: number;
  /** Wall seconds of each further simulate() in the same process (--repeat). */
  repeatSeconds: number[];
}

const [file, ...rest] = process.argv.slice(2);
const set: string[] = [];
let repeat = 0;
let pageWarmer = true;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--set') set.push(rest[++i]);
  else if (rest[i] === '--repeat') repeat = Number(rest[++i]);
  else if (rest[i] === '--no-page-warmer') pageWarmer = false;
}

const seconds = () => Number(process.hrtime.bigint()) / 1e9;
const started = seconds();
let last = started;
const phaseSeconds = Object.fromEntries(['load', ...SIMULATION_PHASES].map((p) => [p, 0])) as ScenarioMeasurement['phaseSeconds'];
const lap = (phase: SimulationPhase | 'load') => {
  const now = seconds();
  phaseSeconds[phase] = now - last;
  last = now;
};
const scenario = loadScenarioFile(file, { set });
lap('load');
const { report } = simulate(scenario, { onPhase: lap, pageWarmer });
const wallSeconds = seconds() - started;
// maxRSS is in kibibytes; taken before any repetition.
const peakResidentBytes = process.resourceUsage().maxRSS * 1024;
const repeatSeconds: number[] = [];
for (let i = 0; i < repeat; i++) {
  const again = seconds();
  simulate(scenario, { pageWarmer });
  repeatSeconds.push(seconds() - again);
}
const measurement: ScenarioMeasurement = {
  wallSeconds,
  phaseSeconds,
  operations: report.simulation.operations,
  events: report.simulation.events,
  devices: report.simulation.devices,
  peakResidentBytes,
  repeatSeconds,
};
process.stdout.write(`${JSON.stringify(measurement)}\n`);
