/**
 * What every layer logs through: a sentence for people, and, for the events an operator acts on
 * (a take-over, a fence, a bootstrap, a lease lapse, a dropped connection), the event's name and
 * fields for machines. The layers take a `LogFn` from their driver; `takeover node` writes it
 * with pino (src/cli/log.ts: `--log-format pretty|json`), the simulator keeps it in memory.
 */
export interface LogEvent {
  /** The event's name (kebab-case: `takeover`, `fence`, `standby-lost`, …). */
  event: string;
  /** Default `info`; `warn` for what degrades service, `error` for what stops it. */
  level?: 'info' | 'warn' | 'error';
  [field: string]: unknown;
}

export type LogFn = (line: string, fields?: LogEvent) => void;
