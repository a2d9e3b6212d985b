/** The library API: everything the CLI does is available here. */
export { simulate, pipelineRanks, type Simulation, type SimulateOptions } from './simulate.js';
export { loadScenarioFile, parseScenario, scenarioFromObject, type LoadOptions, type ScenarioInput } from './scenario/load.js';
export type { Scenario } from './scenario/resolve.js';
export { SCHEDULES } from './strategies/pipeline/registry.js';
export { PASSES, type ParallelConfig } from './strategies/registry.js';
export type { PipelineSchedule, ScheduledPass } from './strategies/pipeline/schedule.js';
export type { Report, DeviceReport, StageReport } from './report/report.js';
export { renderSummary } from './report/summary.js';
export { writeTrace, emitTrace, type TraceOptions } from './report/trace.js';
export { renderHtmlReport, renderCompareHtml, type CompareEntry } from './report/html.js';
export { loadSweep, runEntry, mergeLines, readLines, shardFrom, type Sweep, type SweepEntry, type SweepLine } from './sweep.js';
export { runSweep, type SweepRunOptions } from './sweep-run.js';
export { memoryWhatIf, techniques, type MemoryWhatIf, type Technique, type TechniqueResult } from './whatif.js';
export { buildTopology, summarizeTopology } from './hardware/topology.js';
export { GPU_PRESETS, NODE_PRESETS } from './hardware/presets.js';
export { MODEL_PRESETS } from './workload/presets.js';
export { DtsimError, UsageError, ScenarioError, SimulationError, ResourceLimitError } from './errors.js';
export { VERSION } from './version.js';
