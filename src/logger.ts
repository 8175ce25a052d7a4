/**
 * The process logger: JSON lines for machines, pretty lines when a person watches a terminal.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

/** Creates the logger every component receives. */
export function createLogger(level: LogLevel, options: { pretty?: boolean } = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    ...(options.pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid' } } } : {}),
  });
}
