/**
 * A one-line progress indicator on a terminal's stderr, rewritten in place; building and executing a 16,384-GPU
 * step takes seconds. Anything else written to stderr (a log line, a warning) clears the line first and draws it
 * again after, so the two never share a line. Disabled (when stderr is piped, or with --json), it only passes
 * other text through.
 */
export class StatusLine {
  private text = '';

  constructor(
    private readonly write: (text: string) => void,
    private readonly enabled: boolean,
  ) {}

  /** Shows `text` (as "dtsim: text..."); an empty text clears the line. */
  readonly show = (text: string): void => {
    if (!this.enabled) return;
    this.text = text;
    this.write(text ? `\r\x1b[Kdtsim: ${text}...` : '\r\x1b[K');
  };

  /** Writes other text to stderr around the status line. */
  readonly print = (text: string): void => {
    if (!this.enabled || !this.text) return this.write(text);
    this.write(`\r\x1b[K${text}${text.endsWith('\n') ? '' : '\n'}\r\x1b[Kdtsim: ${this.text}...`);
  };
}
