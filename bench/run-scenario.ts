/**
 * One measured simulation, in a process of its own so that its peak resident memory is its own:
 *   node dist/bench/run-scenario.js <scenario> [--set path=value]...
 * Prints one JSON line: wall seconds in total and per phase, operations, events and peak resident bytes.
 */
import { loadScenarioFile } from '../src/scenario/load.js';
import { SIMULATION_PHASES, simulate, type SimulationPhase } from '../src/simulate.js';
import { scheduleContext } from '../src/strategies/pipeline/registry.js';

export interface ScenarioMeasurement {
  wallSeconds: number;
  phaseSeconds: Record<SimulationPhase | 'load', number>;
  operations: number;
  events: number;
  devices: number;
  peakResidentBytes: number;
}

const [file, ...rest] = process.argv.slice(2);
const set: string[] = [];
for (let i = 0; i < rest.length; i++) if (rest[i] === '--set') set.push(rest[++i]);

const seconds = () => Number(process.hrtime.bigint()) / 1e9;
const started = seconds();
let last = started;
const phaseSeconds = Object.fromEntries(['load', ...SIMULATION_PHASES].map((p) => [p, 0])) as ScenarioMeasurement['phaseSeconds'];
const lap = (phase: SimulationPhase | 'load') => {
  const now = seconds();
  phaseSeconds[phase] = now - last;
  last = now;
};
const scenario = loadScenarioFile(file, scheduleContext, { set });
lap('load');
const { report } = simulate(scenario, { onPhase: lap });
const measurement: ScenarioMeasurement = {
  wallSeconds: seconds() - started,
  phaseSeconds,
  operations: report.simulation.operations,
  events: report.simulation.events,
  devices: report.simulation.devices,
  // maxRSS is in kibibytes.
  peakResidentBytes: process.resourceUsage().maxRSS * 1024,
};
process.stdout.write(`${JSON.stringify(measurement)}\n`);
