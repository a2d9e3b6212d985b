import yargs, { type Argv } from 'yargs';
import { closest, DtsimError, truncate, UsageError } from '../errors.js';
import { VERSION } from '../version.js';

/**
 * The command line: parse with yargs, call the library, render. Data goes to
 * stdout, logs and errors to stderr. Library modules are imported lazily so that
 * `dtsim --help` starts fast.
 *
 * Exit codes: 0 success, 1 internal error, 2 usage error, 3 invalid scenario,
 * 4 the step could not complete.
 */
export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /**
   * stderr is a terminal: long runs show a progress line there (never when piped, nor with --json), and logs are
   * human-readable lines rather than JSON.
   */
  terminal?: boolean;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

interface CommonArgs {
  scenario: string;
  set?: string[];
  seed?: number;
  json?: boolean;
  'log-level': (typeof LOG_LEVELS)[number];
}

function scenarioCommand(y: Argv) {
  return y
    .positional('scenario', { type: 'string', describe: 'scenario file (YAML or JSON)', demandOption: true })
    .option('set', { type: 'string', array: true, describe: 'override a field: --set parallel.tp=4 (repeatable; values are YAML)' })
    .option('seed', { type: 'number', describe: 'override the scenario seed' });
}

const maxOperations = { type: 'number', describe: 'refuse a step estimated to need more operations than this (default 30,000,000, about 8 GiB)' } as const;
/** The replica symmetry (docs/design.md): on by default where only summaries are kept, asked for where a whole report is. */
const symmetry = (on: boolean) =>
  ({
    type: 'boolean',
    default: on,
    describe: `simulate only the data-parallel replicas the step's symmetry needs and mirror the rest, where that is exact: the same figures, a fraction of the work${on ? ' (--no-symmetry: every device)' : ''}`,
  }) as const;

/** Options that take one value: given twice, yargs makes them an array, which is a usage error. */
const SINGLE_VALUED = ['seed', 'output', 'html', 'shard', 'shards', 'workers', 'gpus', 'objective', 'top', 'scenario-out', 'trace', 'trace-ranks', 'trace-pipeline', 'schedules', 'log-level', 'max-operations', 'json', 'timeline', 'page-warmer', 'symmetry'];

function buildParser(argv: string[]) {
  return yargs(argv)
    .scriptName('dtsim')
    .usage('$0 <command> [options]\n\nDiscrete-event simulator of one training step of a distributed transformer.')
    .command('run <scenario>', 'simulate one training step and report time, bubbles, communication and memory', (y) =>
      scenarioCommand(y)
        .option('json', { type: 'boolean', describe: 'print the report as one JSON document' })
        .option('output', { type: 'string', describe: 'also write the JSON report to this file (atomically)' })
        .option('html', { type: 'string', describe: 'write a self-contained HTML report to this file: timeline, memory over time, communication' })
        .option('trace', { type: 'string', describe: 'write a Chrome trace JSON to this file (open in ui.perfetto.dev)' })
        .option('trace-ranks', { type: 'string', describe: 'keep only these GPU ranks in the trace, such as 0-7,64' })
        .option('trace-pipeline', { type: 'number', describe: 'keep only one pipeline in the trace: every stage and tensor-, context- and sequence-parallel rank of this data-parallel replica' })
        .option('timeline', { type: 'boolean', describe: 'also print a text timeline of one pipeline\'s compute lanes' })
        .option('page-warmer', { type: 'boolean', describe: 'fault the step\'s memory in on a second thread ahead of the writes: same results, sooner on large steps' })
        .option('symmetry', symmetry(false))
        .option('max-operations', maxOperations)
        .example('$0 run scenarios/small-gpt.yaml', 'print the summary of a bundled scenario')
        .example('$0 run my.yaml --set parallel.tp=4', 'override a field (values are YAML)')
        .example('$0 run my.yaml --trace step.json', 'write a trace for ui.perfetto.dev')
        .example('$0 run my.yaml --html step.html', 'write the visual report (opens offline in any browser)')
        .example('$0 run - < my.yaml --json', 'read stdin, print the JSON report'),
    )
    .command('compare <scenario>', 'run a scenario under several schedules or field values and print one table', (y) =>
      scenarioCommand(y)
        .option('schedules', { type: 'string', describe: 'comma-separated schedules, such as gpipe,1f1b,interleaved,zb-h1,zb-h2,zb-v' })
        .option('vary', { type: 'string', array: true, describe: 'a field and its values, such as --vary parallel.tp=2,4,8 (repeatable: every combination)' })
        .option('json', { type: 'boolean', describe: 'print the results as one JSON array of reports' })
        .option('html', { type: 'string', describe: 'also write an HTML page of the variants: table, and step time against peak memory' })
        .option('symmetry', symmetry(false))
        .option('max-operations', maxOperations)
        .example('$0 compare my.yaml --schedules 1f1b,zb-h1,zb-v', 'three schedules')
        .example('$0 compare my.yaml --vary parallel.tp=2,4 --html tp.html', 'the same as a page')
        .example('$0 compare my.yaml --vary parallel.tp=2,4', 'two values (--vary again: every combination)')
        .example("$0 compare my.yaml --vary 'parallel.layersPerStage=[10,14],[12,12]'", 'values that are lists'),
    )
    .command('memory <scenario>', 'what-if memory report: the peak by category, then each memory technique switched on or off, ranked by memory saved per second lost', (y) =>
      scenarioCommand(y)
        .option('json', { type: 'boolean', describe: 'print the what-if report as JSON' })
        .option('max-operations', maxOperations)
        .example('$0 memory scenarios/esm2-15b-zero3-4node.yaml', 'which technique saves the most memory for the least time')
        .example('$0 memory my.yaml --set training.microBatch=4', 'the same for a variant'),
    )
    .command('plan <scenario>', 'search the parallel layout and techniques for the fastest configuration that fits', (y) =>
      scenarioCommand(y)
        .option('gpus', { type: 'number', describe: 'plan for this many GPUs (a multiple of the GPUs per node) instead of the scenario\'s' })
        .option('objective', { choices: ['time', 'memory'] as const, default: 'time' as const, describe: 'what best means: least step time, or least peak HBM' })
        .option('top', { type: 'number', default: 10, describe: 'how many of the best candidates to list (and to rank exactly)' })
        .option('within', { type: 'number', default: 0.1, describe: 'simulate every candidate that could come within this fraction of the best; those that provably cannot are skipped' })
        .option('exhaustive', { type: 'boolean', describe: 'simulate every candidate the checks accept, skipping none by its bound' })
        .option('scenario-out', { type: 'string', describe: 'write the best candidate as a scenario file that dtsim run reproduces' })
        .option('html', { type: 'string', describe: 'also write an HTML page: the best, and every candidate by step time against peak memory' })
        .option('workers', { type: 'number', describe: 'worker threads (default: one per core)' })
        .option('symmetry', symmetry(true))
        .option('json', { type: 'boolean', describe: 'print the whole plan as one JSON document' })
        .example('$0 plan scenarios/small-gpt.yaml', 'the fastest layout that fits, and why the others lost')
        .example('$0 plan my.yaml --gpus 64 --scenario-out best.yaml', 'for 64 GPUs; then dtsim run best.yaml'),
    )
    .command('sweep <grid>', 'simulate every entry of a grid of overrides, in worker threads, into a resumable JSON Lines file', (y) =>
      y
        .positional('grid', { type: 'string', describe: 'the grid file (docs/sweeps.md)' })
        .option('output', { type: 'string', describe: 'the JSON Lines file: entries already in it are skipped', demandOption: 'give --output FILE, the JSON Lines file the results go to' })
        .option('shard', { type: 'string', describe: 'run only shard K of N (K from 0), such as 3/8; read from Slurm or a Kubernetes Indexed Job when absent' })
        .option('shards', { type: 'number', describe: 'the shard count of a Kubernetes Indexed Job (its completions), whose index comes from JOB_COMPLETION_INDEX' })
        .option('workers', { type: 'number', describe: 'worker threads (default: one per core)' })
        .option('symmetry', symmetry(true))
        .option('json', { type: 'boolean', describe: 'print the lines instead of the table' })
        .example('$0 sweep grid.yaml --output sweep.jsonl', 'every entry, on every core')
        .example('$0 sweep grid.yaml --output out-3.jsonl --shard 3/8', 'shard 3 of 8, as a job array task')
        .example('$0 merge out-*.jsonl --output sweep.jsonl', 'the shards merged into what one run gives'),
    )
    .command('merge <files..>', 'merge the output files of a sweep\'s shards into the file and table one run gives', (y) =>
      y
        .positional('files', { type: 'string', array: true, describe: 'JSON Lines files of one sweep' })
        .option('output', { type: 'string', describe: 'write the merged lines to this file (atomically)' })
        .option('json', { type: 'boolean', describe: 'print the merged lines instead of the table' })
        .example('$0 merge out-*.jsonl --output sweep.jsonl', 'one file, in entry order'),
    )
    .command('validate <scenario>', 'check a scenario file and print what it resolves to', (y) =>
      scenarioCommand(y)
        .option('json', { type: 'boolean', describe: 'print the resolved scenario as JSON' })
        .example('$0 validate my.yaml', 'check a scenario, or say where it is wrong')
        .example('$0 validate my.yaml --set parallel.tp=8 --json', 'what an override resolves to'),
    )
    .command('topology <scenario>', 'summarise the cluster topology a scenario builds', (y) =>
      scenarioCommand(y)
        .option('json', { type: 'boolean', describe: 'print the summary as JSON' })
        .example('$0 topology my.yaml', 'links, bandwidths and example routes'),
    )
    .command('presets', 'list GPU, node and model presets and pipeline schedules', (y) =>
      y.option('json', { type: 'boolean', describe: 'print as JSON' }).example('$0 presets --json', 'full definitions of every preset'),
    )
    .command('schema', 'print the JSON Schema of scenario files, for editors that complete and check fields', (y) =>
      y.example('$0 schema > dtsim.schema.json', 'for an editor (docs/scenario.md)'),
    )
    .option('log-level', { choices: LOG_LEVELS, default: 'warn' as const, describe: 'log level (logs go to stderr)' })
    .example('$0 run scenarios/small-gpt.yaml', 'simulate a bundled scenario and print the summary')
    .example('$0 run scenarios/small-gpt.yaml --set parallel.tp=4 --set parallel.dp=2 --trace step.json', 'override fields and write a Perfetto trace')
    .example('$0 run - < my.yaml --json', 'read the scenario from stdin, print the JSON report')
    .example('$0 compare scenarios/small-gpt.yaml --schedules 1f1b,zb-h1 --vary training.microBatch=1,2', 'one table over schedules and values')
    .example('$0 validate my.yaml', 'check a scenario and print what it resolves to')
    .example('$0 completion >> ~/.bashrc', 'tab completion of commands and options in bash (zsh: ~/.zshrc)')
    .completion('completion', 'print a shell completion script (bash or zsh)')
    .recommendCommands()
    .demandCommand(1, 'name a command: run, compare, memory, plan, sweep, merge, validate, topology, presets or schema')
    .strict()
    .version(VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false);
}

export async function runCli(given: string[], io: Io): Promise<number> {
  // yargs reads a lone `-` as an empty string: pass standard input by its name (scenario/load.ts reads it).
  const argv = given.map((a) => (a === '-' ? '<stdin>' : a));
  let parsed: Record<string, unknown> | undefined;
  let helpOutput = '';
  let parseError: Error | undefined;
  try {
    await new Promise<void>((resolve) => {
      buildParser(argv).parse(argv, {}, (error, args, output) => {
        parseError = error ?? undefined;
        parsed = args as Record<string, unknown>;
        helpOutput = output;
        resolve();
      });
    });
  } catch (error) {
    parseError = error as Error;
  }
  if (parseError) {
    io.stderr(`dtsim: ${parseError.message}${didYouMean(parseError.message)}\nRun 'dtsim --help' for usage.\n`);
    return 2;
  }
  if (helpOutput) {
    io.stdout(helpOutput.endsWith('\n') ? helpOutput : `${helpOutput}\n`);
    return 0;
  }
  const args = parsed as unknown as CommonArgs & Record<string, unknown>;
  const repeated = SINGLE_VALUED.find((option) => Array.isArray(args[option]));
  if (repeated) {
    io.stderr(`dtsim: --${repeated} was given more than once; give it once\nRun 'dtsim --help' for usage.\n`);
    return 2;
  }
  const limit = args['max-operations'];
  if (limit !== undefined && !(typeof limit === 'number' && Number.isInteger(limit) && limit > 0)) {
    io.stderr(`dtsim: --max-operations takes a whole number of operations, at least 1; got ${truncate(String(limit))}\nRun 'dtsim --help' for usage.\n`);
    return 2;
  }
  const command = String((args._ as unknown[])[0]);
  const [{ createLogger }, { StatusLine }] = await Promise.all([import('./logger.js'), import('./status-line.js')]);
  const status = new StatusLine(io.stderr, io.terminal === true && !args.json);
  // Every other line on stderr goes around the status line.
  const shell: Io = { ...io, stderr: status.print };
  const log = createLogger(args['log-level'], shell.stderr, { pretty: io.terminal === true });
  try {
    const commands = await import('./commands.js');
    switch (command) {
      case 'run':
        return await commands.run(args as Parameters<typeof commands.run>[0], shell, log, status);
      case 'compare':
        return await commands.compare(args as Parameters<typeof commands.compare>[0], shell, status);
      case 'memory':
        return commands.memory(args as Parameters<typeof commands.memory>[0], shell, status);
      case 'plan':
        return await commands.plan(args as unknown as Parameters<typeof commands.plan>[0], shell, status);
      case 'sweep':
        return await commands.sweep(args as unknown as Parameters<typeof commands.sweep>[0], shell, status);
      case 'merge':
        return commands.merge(args as unknown as Parameters<typeof commands.merge>[0], shell);
      case 'validate':
        return commands.validate(args, io);
      case 'topology':
        return commands.topology(args, io);
      case 'presets':
        return commands.presets(args, io);
      case 'schema':
        return await commands.schema(io);
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (error) {
    status.show('');
    if (error instanceof DtsimError) {
      // With --json, errors are one JSON document too, for programs that read them.
      if (args.json) io.stderr(`${JSON.stringify({ error: { kind: error.name, exitCode: error.exitCode, message: error.message, ...('issues' in error ? { issues: error.issues } : {}) } })}\n`);
      else io.stderr(`dtsim: ${error.message}\n`);
      return error.exitCode;
    }
    const e = error as Error;
    log.debug({ stack: e.stack }, 'internal error');
    io.stderr(`dtsim: internal error: ${e.message}\nThis is a bug in dtsim; rerun with --log-level debug for the stack trace.\n`);
    return 1;
  }
}

const OPTIONS = ['set', 'seed', 'json', 'output', 'html', 'shard', 'shards', 'workers', 'gpus', 'objective', 'top', 'scenario-out', 'trace', 'trace-ranks', 'trace-pipeline', 'timeline', 'page-warmer', 'symmetry', 'max-operations', 'schedules', 'vary', 'log-level', 'help', 'version'];
const COMMANDS = ['run', 'compare', 'memory', 'plan', 'sweep', 'merge', 'validate', 'topology', 'presets', 'schema', 'completion'];

/** " (did you mean --json?)" for an unknown option or command yargs names, when one is near enough. */
function didYouMean(message: string): string {
  const unknown = message.match(/^Unknown arguments?: (.*)$/);
  if (!unknown) return '';
  const hints = unknown[1].split(', ').flatMap((word) => {
    const option = closest(word, OPTIONS);
    if (option) return [`--${option}`];
    const command = closest(word, COMMANDS);
    return command ? [command] : [];
  });
  return hints.length > 0 ? ` (did you mean ${hints.join(', ')}?)` : '';
}
