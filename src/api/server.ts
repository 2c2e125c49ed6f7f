/**
 * `Server`: a listener of the stack shaped like node:net's Server ('listening', 'connection',
 * 'close', 'error'; listen/close/address/getConnections).
 */
import { EventEmitter } from 'node:events';
import { type IpAddr, ipFromString, ipToString, isV4 } from '../stack/ip.ts';
import type { Listener } from '../stack/stack.ts';
import type { Runtime } from './runtime.ts';
import { Socket } from './socket.ts';

export interface ServerOptions {
  allowHalfOpen?: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
}

export interface ListenOptions {
  port?: number;
  host?: string;
  backlog?: number;
}

export class Server extends EventEmitter {
  private listener: Listener | undefined;
  private readonly sockets = new Set<Socket>();
  private closing = false;

  constructor(
    private readonly runtime: Runtime,
    private readonly options: ServerOptions = {},
    onConnection?: (s: Socket) => void,
  ) {
    super();
    if (onConnection) this.on('connection', onConnection);
  }

  get listening(): boolean {
    return this.listener !== undefined;
  }

  listen(...args: unknown[]): this {
    let o: ListenOptions = {};
    let cb: (() => void) | undefined;
    for (const a of args) {
      if (typeof a === 'function') cb = a as () => void;
      else if (typeof a === 'number') {
        if (o.port === undefined) o.port = a;
        else o.backlog = a;
      } else if (typeof a === 'string') o.host = a;
      else if (a && typeof a === 'object') o = { ...o, ...(a as ListenOptions) };
    }
    if (cb) this.once('listening', cb);
    const port = o.port ?? 0;
    let address: IpAddr | undefined;
    if (o.host !== undefined && o.host !== '0.0.0.0' && o.host !== '::') {
      address = ipFromString(o.host);
      if (address === undefined) {
        process.nextTick(() =>
          this.emit('error', new TypeError(`listen: host must be an IP address literal (got ${o.host}).`)),
        );
        return this;
      }
    }
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      process.nextTick(() =>
        this.emit(
          'error',
          new RangeError(
            `listen: port must be 1-65535 (got ${String(o.port)}); this stack has no port 0 binding yet.`,
          ),
        ),
      );
      return this;
    }
    try {
      this.listener = this.runtime.listen(port, address, o.backlog ?? 511, (c) => {
        const s = new Socket(this.runtime, c, { allowHalfOpen: this.options.allowHalfOpen });
        this.sockets.add(s);
        s.once('close', () => {
          this.sockets.delete(s);
          this.maybeClosed();
        });
        if (this.options.noDelay) s.setNoDelay(true);
        if (this.options.keepAlive) s.setKeepAlive(true, this.options.keepAliveInitialDelay);
        this.emit('connection', s);
      });
    } catch (e) {
      process.nextTick(() => this.emit('error', e));
      return this;
    }
    process.nextTick(() => this.emit('listening'));
    return this;
  }

  address(): { address: string; family: string; port: number } | null {
    const l = this.listener;
    if (!l) return null;
    const a = l.address;
    return {
      address: a === undefined ? '0.0.0.0' : ipToString(a),
      family: a === undefined || isV4(a) ? 'IPv4' : 'IPv6',
      port: l.port,
    };
  }

  /** Stops accepting; 'close' once every connection has closed (node:net semantics). */
  close(cb?: (err?: Error) => void): this {
    if (!this.listener) {
      if (cb)
        process.nextTick(() =>
          cb(Object.assign(new Error('Server is not running.'), { code: 'ERR_SERVER_NOT_RUNNING' })),
        );
      return this;
    }
    if (cb) this.once('close', () => cb());
    this.runtime.unlisten(this.listener);
    this.listener = undefined;
    this.closing = true;
    this.maybeClosed();
    return this;
  }

  getConnections(cb: (err: Error | null, count: number) => void): this {
    process.nextTick(() => cb(null, this.sockets.size));
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  private maybeClosed(): void {
    if (this.closing && this.sockets.size === 0) {
      this.closing = false;
      process.nextTick(() => this.emit('close'));
    }
  }
}
