/**
 * The application surface: node:net's shape over our stack.
 *
 *   const rt = await openTapRuntime({ tap: 'tk0', mac: '02:00:00:00:00:01', addresses: ['198.18.0.2/24'] });
 *   const net = netApi(rt);                         // { createServer, connect, createConnection, Socket, Server }
 *   net.createServer((s) => s.pipe(s)).listen(7);   // an echo server, as with node:net
 *
 * For node:http: `http.createServer(handler)` and `server.emit('connection', socket)` for each
 * socket from our Server (see examples in the README).
 *
 * Isolation (isolation.ts): an exception of the application for one connection, or an 'error'
 * nobody listens for, resets that connection and is counted in `runtime.isolation`; a host
 * process installs `installProcessGuard` for what escapes asynchronously.
 */
import { TapDevice } from '../link/tap/index.ts';
import { cidrFromString } from '../stack/ip.ts';
import type { StackConfig } from '../stack/stack.ts';
import { macFromString } from '../wire/address.ts';
import { type Clock, Runtime } from './runtime.ts';
import { Server, type ServerOptions } from './server.ts';
import { Socket, type SocketConnectOptions } from './socket.ts';

export { Isolation, type IsolationCounters, installProcessGuard } from './isolation.ts';
export { type Clock, type ClockTimer, CryptoRandom, monotonicUs, Runtime, realClock } from './runtime.ts';
export { type ListenOptions, Server, type ServerOptions } from './server.ts';
export { netError, Socket, type SocketConnectOptions } from './socket.ts';

export interface NetApi {
  createServer(options?: ServerOptions | ((s: Socket) => void), listener?: (s: Socket) => void): Server;
  connect(port: number | SocketConnectOptions, host?: string | (() => void), cb?: () => void): Socket;
  createConnection(
    port: number | SocketConnectOptions,
    host?: string | (() => void),
    cb?: () => void,
  ): Socket;
  Socket: new () => Socket;
  Server: new (options?: ServerOptions, listener?: (s: Socket) => void) => Server;
  /**
   * Connections a take-over restored that no server of ours listens for: the ones the
   * application opened itself (`connect`), as sockets (half-open allowed); see `restoreTag`.
   */
  onRestored(listener: (s: Socket) => void): void;
  /**
   * The runtime's time and timers: Node's own in a process, virtual ones on the simulator. An
   * application that takes its timers from here runs unchanged on both (the relay does).
   */
  readonly clock: Clock;
}

/** node:net's functions bound to one runtime (stack + device). */
export function netApi(rt: Runtime): NetApi {
  const createServer = (options?: ServerOptions | ((s: Socket) => void), listener?: (s: Socket) => void) =>
    typeof options === 'function' ? new Server(rt, {}, options) : new Server(rt, options ?? {}, listener);
  const connect = (port: number | SocketConnectOptions, host?: string | (() => void), cb?: () => void) =>
    new Socket(rt).connect(port, host, cb);
  return {
    createServer,
    connect,
    createConnection: connect,
    Socket: class extends Socket {
      constructor() {
        super(rt);
      }
    },
    Server: class extends Server {
      constructor(options?: ServerOptions, listener?: (s: Socket) => void) {
        super(rt, options, listener);
      }
    },
    onRestored(listener) {
      rt.restoredOutbound = (c) => listener(new Socket(rt, c, { allowHalfOpen: true }));
    },
    clock: rt.clock,
  };
}

export interface TapRuntimeOptions {
  /** TAP interface name. */
  tap: string;
  /** Our MAC, e.g. 02:00:00:00:00:01. */
  mac: string;
  /** Our addresses with prefixes, e.g. ['198.18.0.2/24', 'fd00::2/64']. */
  addresses: string[];
  mtu?: number;
  netns?: string;
  tcp?: StackConfig['tcp'];
}

/** Opens a TAP device and a stack on it; a bad option is named in one sentence. */
export async function openTapRuntime(o: TapRuntimeOptions): Promise<Runtime> {
  const mac = macFromString(o.mac);
  if (mac === undefined)
    throw new Error(`mac: '${o.mac}' is not a MAC address; write it as 02:00:00:00:00:01.`);
  const addresses = o.addresses.map((a) => {
    const c = cidrFromString(a);
    if (!c)
      throw new Error(
        `addresses: '${a}' is not an address with a prefix; write it as 198.18.0.2/24 or fd00::2/64.`,
      );
    return c;
  });
  const device = await TapDevice.open({ name: o.tap, mtu: o.mtu, netns: o.netns });
  const rt = new Runtime(device, { mac, addresses, mtu: device.mtu, tcp: o.tcp });
  rt.announce();
  return rt;
}
