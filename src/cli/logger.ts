import { pino, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

/**
 * Logs go to stderr (through `write`), so stdout carries only data (a report, a JSON document): one JSON object a
 * line when stderr is piped, for programs; human-readable lines on a terminal, for people.
 */
export function createLogger(level: string, write: (text: string) => void, { pretty = false } = {}): Logger {
  const format = pretty ? prettyFactory({ colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l', singleLine: true }) : undefined;
  return pino({ level, base: undefined }, { write: format ? (line: string) => write(format(line)) : write });
}
