/**
 * `Socket`: a TCP connection of the stack as a `stream.Duplex`, shaped like node:net's Socket
 * (events, error codes, address accessors, setNoDelay/setKeepAlive/setTimeout), so code written
 * for node:net runs with only its import changed.
 *
 * One deliberate difference: an 'error' with no listener does not throw (node:net's would, and
 * the process would die with every other client's connection). The connection is reset and
 * counted (`Runtime.isolation.counters.socketErrors`; see isolation.ts). Code written for node:net
 * listens for 'error' anyway.
 */
import { errorMonitor } from 'node:events';
import { Duplex } from 'node:stream';
import { type IpAddr, ipFromString, ipToString, isV4 } from '../stack/ip.ts';
import type { StackConnection } from '../stack/stack.ts';
import { isSynchronized, type TcpErrorCode, TcpState } from '../tcp/state.ts';
import type { ClockTimer, Runtime } from './runtime.ts';

const MESSAGES: Record<TcpErrorCode, string> = {
  ECONNRESET: 'connection reset by peer',
  ECONNREFUSED: 'connection refused',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNABORTED: 'connection aborted',
};

const ERRNO: Record<TcpErrorCode, number> = {
  ECONNRESET: -104,
  ECONNREFUSED: -111,
  ETIMEDOUT: -110,
  EHOSTUNREACH: -113,
  ENETUNREACH: -101,
  ECONNABORTED: -103,
};

/** An Error shaped like node's system errors (code, errno, syscall, address, port). */
export function netError(
  code: TcpErrorCode | string,
  syscall: string,
  address?: string,
  port?: number,
): NodeJS.ErrnoException {
  const msg = MESSAGES[code as TcpErrorCode] ?? code.toLowerCase();
  const e = new Error(
    `${syscall} ${code}${address ? ` ${address}${port !== undefined ? `:${port}` : ''}` : ''} (${msg})`,
  ) as NodeJS.ErrnoException & {
    address?: string;
    port?: number;
  };
  e.code = code;
  e.errno = ERRNO[code as TcpErrorCode];
  e.syscall = syscall;
  if (address !== undefined) e.address = address;
  if (port !== undefined) e.port = port;
  return e;
}

export interface SocketConnectOptions {
  port: number;
  host?: string;
  localAddress?: string;
  localPort?: number;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
}

export class Socket extends Duplex {
  private conn: StackConnection | undefined;
  connecting = false;
  private reading = false;
  private ended = false;
  private finSent = false;
  private pendingWrite: { data: Uint8Array; cb: (e?: Error | null) => void } | undefined;
  private idleMs = 0;
  private idleTimer: ClockTimer | undefined;
  bytesRead = 0;
  private written = 0;
  /** Bytes of output to drop: a restored application writing again what was already sent. */
  private skip = 0;

  constructor(
    private readonly runtime: Runtime,
    conn?: StackConnection,
    opts: { allowHalfOpen?: boolean } = {},
  ) {
    super({ allowHalfOpen: opts.allowHalfOpen ?? false, decodeStrings: true, emitClose: true });
    if (conn) this.attach(conn);
  }

  /** @internal Binds a stack connection (accepted, or being opened by `connect`). */
  attach(conn: StackConnection): void {
    this.conn = conn;
    conn.onChange = () => this.update();
    this.runtime.isolation.bind(conn, () => this.resetAndDestroy());
    conn.app = {
      consumed: () => conn.tcp.readPosition - this.readableLength,
      unsent: () => this.unsentChunks(),
    };
    if (conn.restored) {
      this.skip = conn.restored.skipWrite;
      this.written = conn.tcp.writePosition - this.skip;
      // An open still under way at the take-over: 'connect' comes when it completes here.
      if (conn.tcp.state === TcpState.SynSent) this.connecting = true;
      // Closed for writing before the take-over (its FIN queued or sent): it stays closed.
      if (conn.tcp.sendClosed) this.finSent = true;
    }
  }

  /** Written by the application and not yet taken by the engine, in order. */
  private unsentChunks(): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.pendingWrite) out.push(this.pendingWrite.data);
    const st = (this as unknown as { _writableState?: { getBuffer?: () => { chunk: unknown }[] } })
      ._writableState;
    // Bytes a restored socket will skip (already in the engine before the take-over) are not
    // unsent: counting them would shift every later byte of the replicated stream.
    let skip = this.skip;
    for (const e of st?.getBuffer?.() ?? []) {
      const raw = e.chunk;
      let ch = raw instanceof Uint8Array ? raw : typeof raw === 'string' ? Buffer.from(raw) : undefined;
      if (!ch) continue;
      if (skip > 0) {
        const n = Math.min(skip, ch.length);
        skip -= n;
        ch = ch.subarray(n);
        if (ch.length === 0) continue;
      }
      out.push(ch);
    }
    return out;
  }

  /** Restored by a take-over (docs/ARCHITECTURE.md §8): see `lastCheckpoint`. */
  get restored(): boolean {
    return this.conn?.restored !== undefined;
  }

  /** The value of the last `checkpoint()` before the take-over (undefined if none). */
  get lastCheckpoint(): unknown {
    return this.conn?.restored?.checkpoint;
  }

  /** The value of the last `setRestoreTag()` before the take-over (undefined if none). */
  get restoreTag(): unknown {
    return this.conn?.restored?.tag;
  }

  /**
   * Replicates `value` (JSON) as this connection's tag, atomically with this turn, and to every
   * standby that joins later: after a take-over the restored socket has it as `restoreTag`.
   * Unlike a checkpoint it rewinds nothing (what a relay uses to pair its two legs again).
   */
  setRestoreTag(value: unknown): void {
    if (this.conn) this.runtime.checkpointSink?.(this.conn, value, true);
  }

  /**
   * Replicates `value` (JSON) with the current read and write offsets, atomically with this turn.
   * After a take-over the restored socket has it as `lastCheckpoint`, bytes read after it are
   * delivered again, and output written again for them is not sent twice.
   */
  checkpoint(value: unknown): void {
    if (this.conn) this.runtime.checkpointSink?.(this.conn, value);
  }

  // -------------------------------------------------------------------------------------------
  // node:net surface

  connect(port: number | SocketConnectOptions, host?: string | (() => void), cb?: () => void): this {
    const o: SocketConnectOptions =
      typeof port === 'object' ? port : { port, host: typeof host === 'string' ? host : undefined };
    const done = typeof host === 'function' ? host : cb;
    if (done) this.once('connect', done);
    const hostName = o.host ?? '127.0.0.1';
    const remote = ipFromString(hostName === 'localhost' ? '127.0.0.1' : hostName);
    if (remote === undefined || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535) {
      const e = new TypeError(
        `connect: host must be an IP address literal and port 1-65535 (got ${hostName}:${o.port}); this stack does no DNS.`,
      );
      process.nextTick(() => this.destroy(e));
      return this;
    }
    try {
      const local = o.localAddress === undefined ? undefined : ipFromString(o.localAddress);
      const conn = this.runtime.stack.connect(remote, o.port, this.runtime.now(), {
        local,
        localPort: o.localPort,
      });
      this.attach(conn);
      this.connecting = true;
      if (o.noDelay) this.setNoDelay(true);
      if (o.keepAlive) this.setKeepAlive(true, o.keepAliveInitialDelay);
      this.runtime.kick();
    } catch (e) {
      process.nextTick(() => this.destroy(e as Error));
    }
    return this;
  }

  get pending(): boolean {
    return !this.conn || this.connecting;
  }

  get readyState(): 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.connecting) return 'opening';
    if (!this.conn || this.destroyed) return 'closed';
    const r = this.readable;
    const w = this.writable && !this.finSent;
    return r && w ? 'open' : r ? 'readOnly' : w ? 'writeOnly' : 'closed';
  }

  get bytesWritten(): number {
    return this.written;
  }

  get remoteAddress(): string | undefined {
    return this.conn ? ipToString(this.conn.remote) : undefined;
  }

  get remotePort(): number | undefined {
    return this.conn?.remotePort;
  }

  get remoteFamily(): string | undefined {
    return this.conn ? family(this.conn.remote) : undefined;
  }

  get localAddress(): string | undefined {
    return this.conn ? ipToString(this.conn.local) : undefined;
  }

  get localPort(): number | undefined {
    return this.conn?.localPort;
  }

  address(): { address: string; family: string; port: number } | Record<string, never> {
    if (!this.conn) return {};
    return {
      address: ipToString(this.conn.local),
      family: family(this.conn.local),
      port: this.conn.localPort,
    };
  }

  setNoDelay(noDelay = true): this {
    this.conn?.tcp.setNoDelay(noDelay);
    this.poke();
    return this;
  }

  setKeepAlive(enable = false, initialDelayMs = 0): this {
    if (!this.conn) return this;
    // Linux's defaults for what node:net does not expose: 75 s between probes, 9 probes.
    const idleUs = (initialDelayMs > 0 ? initialDelayMs : 7_200_000) * 1000;
    this.conn.tcp.setKeepAlive(
      enable ? { idleUs, intervalUs: 75_000_000, count: 9 } : undefined,
      this.runtime.now(),
    );
    this.poke();
    return this;
  }

  /** node:net semantics: 'timeout' after `ms` without activity; the socket stays open. */
  setTimeout(ms: number, cb?: () => void): this {
    this.idleMs = ms;
    if (cb) {
      if (ms === 0) this.removeListener('timeout', cb);
      else this.once('timeout', cb);
    }
    this.touchIdle();
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  destroySoon(): void {
    this.end();
  }

  resetAndDestroy(): this {
    this.conn?.tcp.abort();
    this.poke();
    return this.destroy();
  }

  /**
   * node's EventEmitter throws an 'error' nobody listens for, out of whatever tick emitted it.
   * Here it resets this connection and is counted instead (the deviation from node:net above).
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error' && this.listenerCount('error') === 0) {
      if (this.listenerCount(errorMonitor) > 0) super.emit(errorMonitor, ...args);
      this.runtime.isolation.unhandledError(this.conn, args[0]);
      if (!this.destroyed) this.destroy();
      return false;
    }
    return super.emit(event, ...args);
  }

  // -------------------------------------------------------------------------------------------
  // Duplex internals

  override _read(): void {
    this.reading = true;
    this.pump();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    let data = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    if (this.skip > 0) {
      const n = Math.min(this.skip, data.length);
      this.skip -= n;
      this.written += n;
      data = data.subarray(n);
      if (data.length === 0) {
        cb();
        return;
      }
    }
    this.pendingWrite = { data, cb };
    this.flushWrites();
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.finSent = true;
    if (this.conn) {
      this.conn.tcp.close();
      this.poke();
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    if (this.idleTimer) this.runtime.clock.clearTimeout(this.idleTimer);
    const c = this.conn;
    if (c && c.tcp.state !== TcpState.Closed) {
      // As a kernel closing the descriptor: graceful when all was read, a RST when data was lost.
      if (err || c.tcp.readable > 0 || this.pendingWrite) c.tcp.abort();
      else c.tcp.close();
      this.poke();
    }
    if (c) c.onChange = undefined;
    if (this.pendingWrite) {
      const p = this.pendingWrite;
      this.pendingWrite = undefined;
      p.cb(err ?? netError('ECONNRESET', 'write'));
    }
    cb(err);
  }

  // -------------------------------------------------------------------------------------------

  private poke(): void {
    if (this.conn) {
      this.runtime.stack.touch(this.conn);
      this.runtime.kick();
    }
  }

  private touchIdle(): void {
    if (this.idleTimer) this.runtime.clock.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.idleMs > 0 && !this.destroyed) {
      this.idleTimer = this.runtime.clock.setTimeout(() => this.emit('timeout'), this.idleMs);
      this.idleTimer.unref?.();
    }
  }

  private flushWrites(): void {
    const p = this.pendingWrite;
    const c = this.conn;
    if (!p || !c || this.connecting) return;
    const tcp = c.tcp;
    if (tcp.state === TcpState.Closed) return;
    const n = tcp.write(p.data);
    if (n > 0) {
      this.written += n;
      this.touchIdle();
      this.poke();
    }
    if (n === p.data.length) {
      this.pendingWrite = undefined;
      p.cb();
    } else {
      p.data = p.data.subarray(n);
    }
  }

  private pump(): void {
    const c = this.conn;
    if (!c || !this.reading) return;
    const tcp = c.tcp;
    let got = false;
    while (this.reading) {
      const d = tcp.read();
      if (!d) break;
      got = true;
      this.bytesRead += d.length;
      this.reading = this.push(Buffer.from(d.buffer, d.byteOffset, d.length));
    }
    if (got) {
      this.touchIdle();
      this.poke(); // reading opens the window: the stack may owe a window update
    }
    if (tcp.eof && !this.ended && tcp.readable === 0) {
      this.ended = true;
      this.push(null);
    }
  }

  /**
   * Both directions are done: 'close' follows 'end' in a later turn, as node:net's does (its
   * handle closes in the next loop iteration), so code awaiting 'end' then 'close' sees both.
   */
  private closeSoon(): void {
    if (this.closing) return;
    this.closing = true;
    this.runtime.clock.setImmediate(() => this.destroy());
  }

  private closing = false;

  /** The stack says the connection changed. */
  private update(): void {
    const c = this.conn;
    if (!c || this.destroyed) return;
    const tcp = c.tcp;
    if (this.connecting && isSynchronized(tcp.state)) {
      this.connecting = false;
      this.emit('connect');
      this.emit('ready');
    }
    this.pump();
    this.flushWrites();
    // Both directions finished (our FIN acknowledged: TIME-WAIT is the stack's business): 'close'.
    if (tcp.state === TcpState.TimeWait && this.ended && this.finSent) {
      this.closeSoon();
      return;
    }
    if (tcp.state === TcpState.Closed) {
      if (tcp.error) {
        const syscall = this.connecting ? 'connect' : 'read';
        this.destroy(netError(tcp.error, syscall, this.remoteAddress, this.remotePort));
      } else if (this.ended && this.finSent) {
        this.closeSoon();
      } else if (!this.ended && tcp.readable === 0) {
        this.ended = true;
        this.push(null);
      }
    }
  }
}

function family(a: IpAddr): string {
  return isV4(a) ? 'IPv4' : 'IPv6';
}
