/**
 * The typed error family. Each kind carries its process exit code, so the CLI
 * never branches on messages, and tests can assert on the kind.
 *
 * Exit codes: 0 success; 1 internal error (a bug); 2 usage error; 3 invalid
 * scenario; 4 the step could not complete (a deadlocked operation graph).
 */
export class DtsimError extends Error {
  readonly exitCode: number = 1;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The command line was wrong: unknown flag, missing file, bad --set syntax. */
export class UsageError extends DtsimError {
  override readonly exitCode = 2;
}

/** A problem with a configuration, at a field path (`['parallel', 'tp']`), before it is placed in a file. */
export interface PathIssue {
  path: (string | number)[];
  message: string;
}

/** One problem in a scenario, with where it is. */
export interface ScenarioIssue {
  file: string;
  /** 1-based; 0 when the problem has no place in the file (a --set override, a missing field of an empty file). */
  line: number;
  column: number;
  /** Field path such as `parallel.tp`; empty for the whole document. */
  path: string;
  message: string;
}

/** A value as messages quote it: whole when short, its start and its length when long. */
export function truncate(text: string, limit = 200): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}... (${text.length} characters)`;
}

/** The allowed name nearest to a typo, if it is near enough to be a likely typo. */
export function closest(word: string, candidates: string[]): string | undefined {
  // A long word is no typo of a field name (and would cost its length times every candidate's).
  if (word.length > 64) return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** Edits (insert, delete, substitute, swap two neighbours) from a to b: optimal string alignment distance. */
function editDistance(a: string, b: string): number {
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      // "1fb1" for "1f1b": two neighbours swapped is one slip of the fingers, not two.
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], before[j - 2] + 1);
    }
    before = previous;
    previous = row;
  }
  return previous[b.length];
}

export function formatIssue(issue: ScenarioIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file;
  return issue.path ? `${where}: ${issue.path}: ${issue.message}` : `${where}: ${issue.message}`;
}

const MAX_ISSUES_SHOWN = 20;

/** The scenario is malformed or describes an impossible configuration. */
export class ScenarioError extends DtsimError {
  override readonly exitCode = 3;
  constructor(readonly issues: ScenarioIssue[]) {
    // A file with thousands of problems gets the first ones and a count, not megabytes of message.
    const shown = issues.slice(0, MAX_ISSUES_SHOWN).map(formatIssue);
    if (issues.length > MAX_ISSUES_SHOWN) shown.push(`... and ${issues.length - MAX_ISSUES_SHOWN} more problems`);
    super(shown.join('\n'));
  }
}

/** The scenario is valid but too large to simulate within the limits set (exit 3, like an invalid scenario). */
export class ResourceLimitError extends DtsimError {
  override readonly exitCode = 3;
}

/** The step's operations could not all run: a dependency cycle or a lane waiting forever. */
export class SimulationError extends DtsimError {
  override readonly exitCode = 4;
}
