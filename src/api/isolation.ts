/**
 * Isolation (docs/ARCHITECTURE.md §8): nothing a client does, and no exception of the
 * application on one connection, takes a node down. That connection is reset and counted; a
 * connection restored by a take-over that fails again is dropped the same way, so a request
 * that crashes the application (a poison pill) costs one connection, not every node in turn.
 *
 * Three boundaries:
 * - **Synchronous.** The runtime calls into the application for a connection (the accept
 *   handler, 'connect', 'data' and what a pipe does with it) through `run`, which catches.
 * - **Unhandled 'error'.** A socket that emits 'error' with no listener would throw out of
 *   node's event machinery and kill the process (node:net does exactly that). Our Socket
 *   hands it here instead: that connection is closed and counted (`socketErrors`). A
 *   deliberate deviation from node:net, for a process that holds every client's connection.
 * - **Asynchronous.** Callbacks the stream machinery defers ('end', 'close', 'drain', write
 *   callbacks), timers and promises started from a connection's handler run later, outside any
 *   try. `run` enters an AsyncLocalStorage scope, and node carries it into every tick, timer,
 *   immediate and promise created inside. On Node 20 the store is still the throwing
 *   callback's in a process 'uncaughtException' listener (the async hooks' `after` runs once
 *   the listener returns) and the rejected promise's (captured at its creation) in an
 *   'unhandledRejection' listener; `installProcessGuard`'s listeners use it to reset the right
 *   connection. What carries no scope (`queueMicrotask` callbacks, code started at the app's
 *   top level) is counted as `unattributed`, logged, and the node stays up.
 *
 * Exceptions of the runtime's own turn (stack, replication) are not the application's: the
 * runtime marks them (`markInternal`) and the guard lets such a node exit, so its standby takes
 * over instead of a node whose state nobody knows carrying on.
 *
 * Why a reset and not a FIN: after an exception the application's state for that connection is
 * unknown and its output may stop mid-response. A FIN says "that was all": a client reading to
 * EOF (a download, an HTTP/1.0 body, an echo) would take a truncated answer for a complete one.
 * A RST says "failed", as a client would see from a crashed server whose kernel dropped the
 * connection with data unread, and it leaves no FIN-WAIT/TIME-WAIT state for a broken
 * connection. Replicated like any abort, it also closes the standby's mirror of it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { LogEvent, LogFn } from '../log.ts';
import { ipToString, isV4 } from '../stack/ip.ts';
import type { StackConnection } from '../stack/stack.ts';

/** What the application's failures cost, for `takeover status`. */
export interface IsolationCounters {
  /** Connections reset because the application threw (or rejected) for them. */
  appErrors: number;
  /** Connections whose socket emitted 'error' with no listener (node:net would have crashed). */
  socketErrors: number;
  /** Of those two, connections restored by a take-over: dropped, never retried (a poison pill). */
  restoredDropped: number;
  /** Exceptions and rejections of the application tied to no connection: logged, node kept up. */
  unattributed: number;
}

/** A connection's isolation state, the AsyncLocalStorage store of its callbacks. */
interface Scope {
  readonly isolation: Isolation;
  readonly conn: StackConnection;
  /** Resets the connection and tears down its socket, without telling the application. */
  close: (() => void) | undefined;
  failed: boolean;
}

/** Shared by every runtime of the process, so a process guard finds any connection's scope. */
const connectionScope = new AsyncLocalStorage<Scope>();

const internalErrors = new WeakSet<object>();

/** Marks an exception of the runtime's own code (not the application's); returns it. */
export function markInternal(e: unknown): unknown {
  if (typeof e === 'object' && e !== null) internalErrors.add(e);
  return e;
}

export function isInternal(e: unknown): boolean {
  return typeof e === 'object' && e !== null && internalErrors.has(e);
}

/** At most this many lines per second reach the log; the rest are counted and said later. */
const LOG_LINES_PER_S = 20;

export class Isolation {
  readonly counters: IsolationCounters = {
    appErrors: 0,
    socketErrors: 0,
    restoredDropped: 0,
    unattributed: 0,
  };
  /** The latest failure, one line, with its wall time. */
  last: string | undefined;
  /** Where failures are logged (`takeover node` sets its own). */
  log: LogFn = (line) => process.stderr.write(`takeover isolation: ${line}\n`);
  private readonly scopes = new WeakMap<StackConnection, Scope>();
  private windowStart = 0;
  private windowLines = 0;
  private suppressed = 0;

  /** `abort(c)`: resets a connection that has no socket (the runtime's). */
  constructor(private readonly abort: (c: StackConnection) => void) {}

  private scope(c: StackConnection): Scope {
    let s = this.scopes.get(c);
    if (!s) {
      s = { isolation: this, conn: c, close: undefined, failed: false };
      this.scopes.set(c, s);
    }
    return s;
  }

  /** Tells how to tear a connection's socket down when it fails (the Socket registers itself). */
  bind(c: StackConnection, close: () => void): void {
    this.scope(c).close = close;
  }

  /**
   * Runs an application callback for connection `c`: whatever it throws resets `c` and is
   * counted, never the caller's problem; what it starts (ticks, timers, promises) runs in `c`'s
   * scope, so what those throw later is `c`'s too.
   */
  run(c: StackConnection, fn: () => void): void {
    const s = this.scope(c);
    try {
      connectionScope.run(s, fn);
    } catch (e) {
      this.fail(s, e, 'threw');
    }
  }

  /** Runs `fn` outside any connection's scope: what the runtime schedules belongs to no connection. */
  outside<T>(fn: () => T): T {
    // Not `exit`: in Node 20 it disables the storage and enables it again, which turns the
    // promise hooks off and on at every call (measured: a tenth of a simulated relay's time).
    return connectionScope.run(undefined as unknown as Scope, fn);
  }

  /**
   * A socket emitted 'error' and nobody listened: close that connection, count it. (A socket
   * with no connection, one whose connect() was refused before it had one, is only counted.)
   */
  unhandledError(c: StackConnection | undefined, err: unknown): void {
    if (c) {
      this.fail(this.scope(c), err, 'error');
      return;
    }
    this.counters.socketErrors++;
    this.note(`a socket with no connection: 'error' with no listener: ${message(err)}`);
  }

  /**
   * An exception or rejection that reached the process (`origin`): resets the connection whose
   * scope it ran in and returns true, or counts it as unattributed and returns false.
   */
  uncaught(err: unknown, origin: string): boolean {
    const s = connectionScope.getStore();
    if (s) {
      s.isolation.fail(s, err, 'threw');
      return true;
    }
    this.counters.unattributed++;
    this.note(
      `the application threw outside any connection (${origin}); the node carries on: ${detail(err)}`,
    );
    return false;
  }

  private fail(s: Scope, err: unknown, how: 'threw' | 'error'): void {
    if (s.failed) return;
    s.failed = true;
    const restored = s.conn.restored !== undefined;
    if (how === 'threw') this.counters.appErrors++;
    else this.counters.socketErrors++;
    if (restored) this.counters.restoredDropped++;
    this.note(
      `${tuple(s.conn)}: ${how === 'threw' ? 'the application threw' : "'error' with no listener"}: ${
        how === 'threw' ? detail(err) : message(err)
      }; connection reset${restored ? ' (restored by a take-over: dropped, not retried)' : ''}`,
      {
        event: 'connection-dropped',
        level: 'warn',
        connection: tuple(s.conn),
        why: how === 'threw' ? 'application threw' : 'socket error without listener',
        error: message(err),
        restored,
      },
    );
    try {
      // Tearing the socket down can call the application back at once (a pending write's
      // callback gets its error): in the connection's scope, and what it throws is moot now.
      if (s.close) connectionScope.run(s, s.close);
    } catch {
      // this connection has failed already
    }
    this.abort(s.conn);
  }

  private note(line: string, fields?: LogEvent): void {
    const at = new Date();
    this.last = `${at.toISOString()} ${line}`;
    const now = performance.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowLines = 0;
    }
    if (this.windowLines >= LOG_LINES_PER_S) {
      this.suppressed++;
      return;
    }
    this.windowLines++;
    const more = this.suppressed > 0 ? ` (and ${this.suppressed} more not logged)` : '';
    this.suppressed = 0;
    this.log(`${line}${more}`, fields);
  }
}

/**
 * Installs the process-level guard of a node (`takeover node`): exceptions and rejections the
 * application leaves uncaught reset their connection or are counted, and the node stays up; an
 * exception of the runtime itself (`isInternal`) is logged and the process exits with `exitCode`,
 * so the standby takes over. Returns a function that removes the guard.
 */
export function installProcessGuard(
  isolation: Isolation,
  opts: { log?: (line: string) => void; exit?: (code: number) => void; exitCode?: number } = {},
): () => void {
  const log = opts.log ?? isolation.log;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const handle = (err: unknown, origin: string) => {
    if (isInternal(err)) {
      log(`internal error (${origin}); exiting so that the standby takes over: ${detail(err, 20)}`);
      exit(opts.exitCode ?? 70);
      return;
    }
    isolation.uncaught(err, origin);
  };
  const onException = (err: unknown, origin: string) => handle(err, origin);
  const onRejection = (reason: unknown) => handle(reason, 'unhandledRejection');
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
  };
}

function tuple(c: StackConnection): string {
  const r = isV4(c.remote) ? ipToString(c.remote) : `[${ipToString(c.remote)}]`;
  const l = isV4(c.local) ? ipToString(c.local) : `[${ipToString(c.local)}]`;
  return `${r}:${c.remotePort} -> ${l}:${c.localPort}`;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The message and the first `frames` lines of the stack: where the application threw. */
function detail(e: unknown, frames = 3): string {
  if (!(e instanceof Error) || !e.stack) return message(e);
  const at = e.stack
    .split('\n')
    .filter((l) => /^\s+at /.test(l))
    .slice(0, frames)
    .map((l) => l.trim());
  return at.length > 0 ? `${e.message} (${at.join(' < ')})` : e.message;
}
