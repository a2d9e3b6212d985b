import { pino, type Logger } from 'pino';

/** Logs go to stderr, so stdout carries only data (a report, a JSON document). */
export function createLogger(level: string): Logger {
  return pino({ level, base: undefined }, pino.destination({ dest: 2, sync: true }));
}
