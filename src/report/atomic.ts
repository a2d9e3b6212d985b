import { accessSync, closeSync, constants, fsyncSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * Writes a file so that readers see either the old file or the whole new one, never half of it: write a
 * temporary file in the destination's directory, flush it to disk, then rename it over the destination.
 *
 * A temporary file never outlives its process: it is removed on failure, on Ctrl-C and SIGTERM (the handlers are
 * installed while one is open, then the signal is raised again so the exit status says what happened), and one
 * left by a process that was killed outright (SIGKILL) is removed by the next write to the same destination.
 */
export class AtomicFileWriter {
  private readonly temporary: string;
  private fd: number;
  private buffer: string[] = [];
  private buffered = 0;

  constructor(private readonly path: string) {
    removeStale(path);
    this.temporary = temporaryName(path, process.pid, nextSerial++);
    this.fd = openSync(this.temporary, 'w');
    track(this.temporary);
  }

  write(text: string): void {
    this.buffer.push(text);
    this.buffered += text.length;
    if (this.buffered >= 1 << 20) this.flush();
  }

  private flush(): void {
    if (this.buffer.length === 0) return;
    writeSync(this.fd, this.buffer.join(''));
    this.buffer = [];
    this.buffered = 0;
  }

  /** Finishes the file and moves it into place. */
  commit(): void {
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(this.temporary, this.path);
    untrack(this.temporary);
  }

  /** Abandons the file, leaving any previous one untouched. */
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    rmSync(this.temporary, { force: true });
    untrack(this.temporary);
  }
}

/** Writes `text` atomically; on failure nothing is left behind. */
export function writeFileAtomic(path: string, text: string): void {
  const writer = new AtomicFileWriter(path);
  try {
    writer.write(text);
    writer.commit();
  } catch (error) {
    writer.abort();
    throw error;
  }
}

/**
 * Checks, before any work, that `path` can be written: its directory exists and is writable, and it is not a
 * directory itself. A usage error names the flag that gave it.
 */
export function checkWritable(path: string, flag: string): void {
  const directory = dirname(path);
  const fail = (why: string) => {
    throw new UsageError(`${flag} ${path}: ${why}`);
  };
  let directoryStat;
  try {
    directoryStat = statSync(directory);
  } catch {
    fail(`the directory ${directory} does not exist`);
  }
  if (!directoryStat!.isDirectory()) fail(`${directory} is not a directory`);
  try {
    if (statSync(path).isDirectory()) fail('is a directory; give a file name');
  } catch (error) {
    if (error instanceof UsageError) throw error;
    // does not exist yet: fine
  }
  try {
    accessSync(directory, constants.W_OK);
  } catch {
    fail(`the directory ${directory} is not writable`);
  }
}

let nextSerial = 0;
const PREFIX = (path: string) => `.${basename(path)}.tmp-`;
const temporaryName = (path: string, pid: number, serial: number) => join(dirname(path), `${PREFIX(path)}${pid}-${serial}`);

/** Removes temporary files for `path` whose process is gone (killed before it could clean up). */
function removeStale(path: string): void {
  const prefix = PREFIX(path);
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && !alive(pid)) rmSync(join(dirname(path), name), { force: true });
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but is someone else's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const open = new Set<string>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function removeAll(): void {
  for (const file of open) rmSync(file, { force: true });
  open.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removeAll();
  uninstall();
  // Raised again with no handler left: the process ends as the signal says (exit 130 for Ctrl-C, 143 for SIGTERM).
  process.kill(process.pid, signal);
}

function install(): void {
  for (const signal of SIGNALS) process.on(signal, onSignal);
  process.on('exit', removeAll);
}

function uninstall(): void {
  for (const signal of SIGNALS) process.off(signal, onSignal);
  process.off('exit', removeAll);
}

function track(file: string): void {
  if (open.size === 0) install();
  open.add(file);
}

function untrack(file: string): void {
  open.delete(file);
  if (open.size === 0) uninstall();
}
