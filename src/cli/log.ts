/**
 * A node's log (pino): one record per line on stderr, with a level, the node's id and pid, the
 * time, the sentence, and an event's fields (src/log.ts). `pretty` (the default) prints the
 * sentence as `<ISO time> <node>: <sentence>` (` [warn]`, ` [error]` after it when so); `json`
 * prints pino's record as it is, for a log shipper.
 */
import pino from 'pino';
import type { LogEvent, LogFn } from '../log.ts';

export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The record pino writes (with `formatters.level` giving the label). */
interface LogRecord {
  time: string;
  level: string;
  node: string;
  msg: string;
  [field: string]: unknown;
}

/** One pretty line of a record pino wrote. */
export function prettyLine(json: string): string {
  const r = JSON.parse(json) as LogRecord;
  return `${r.time} ${r.node}: ${r.msg}${r.level === 'info' ? '' : ` [${r.level}]`}\n`;
}

/** A node's `LogFn`, writing to `write` (stderr by default) in `format`. */
export function nodeLogger(
  nodeId: string,
  format: LogFormat,
  write: (s: string) => void = (s) => process.stderr.write(s),
): LogFn {
  const logger = pino(
    {
      base: { node: nodeId, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    { write: format === 'json' ? write : (s: string) => write(prettyLine(s)) },
  );
  return (line: string, fields?: LogEvent) => {
    if (!fields) {
      logger.info(line);
      return;
    }
    const { level = 'info', ...rest } = fields;
    logger[level](rest, line);
  };
}
