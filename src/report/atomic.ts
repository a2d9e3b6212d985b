import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * Writes a file so that readers see either the old file or the whole new one,
 * never half of it: write a temporary file beside it, then rename.
 */
export class AtomicFileWriter {
  private readonly temporary: string;
  private fd: number;
  private buffer: string[] = [];
  private buffered = 0;

  constructor(private readonly path: string) {
    this.temporary = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.temporary, 'w');
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
    closeSync(this.fd);
    renameSync(this.temporary, this.path);
  }

  /** Abandons the file, leaving any previous one untouched. */
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    rmSync(this.temporary, { force: true });
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
