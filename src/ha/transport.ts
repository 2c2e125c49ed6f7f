/**
 * The replication link over kernel TCP (DESIGN.md "Replication": an ordinary kernel TCP
 * connection on a separate address), each connection wrapped in a SecureChannel (PSK, per-session
 * keys, counters). This is a driver edge: it does I/O and reads the clock.
 *
 * Both nodes listen, and a node with no link dials its peer every `redialMs`. When two links are
 * up at once (both dialled together), both ends keep the one dialled by the smaller node id, so
 * they agree without talking; a node that dials again (after a restart) replaces its old link.
 */
import net from 'node:net';
import type { RandomSource } from '../tcp/connection.ts';
import type { PeerLink } from './node.ts';
import { SecureChannel } from './protocol.ts';

export interface TransportOptions {
  nodeId: string;
  key: Uint8Array;
  listen: { host: string; port: number };
  peer: { host: string; port: number };
  rng: RandomSource;
  redialMs?: number;
  onOpen(link: PeerLink): void;
  onMessage(link: PeerLink, type: number, epoch: number, payload: Uint8Array): void;
  onClose(link: PeerLink): void;
  log(line: string): void;
}

class TcpLink implements PeerLink {
  ready = false;
  closed = false;
  peerId: string | undefined;
  constructor(
    readonly socket: net.Socket,
    readonly channel: SecureChannel,
    readonly dialledBy: 'us' | 'peer',
  ) {}

  send(type: number, epoch: number, payload: Uint8Array): void {
    if (this.closed || !this.ready) return;
    this.socket.write(this.channel.seal(type, epoch, payload));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }
}

export class ReplicationTransport {
  private server: net.Server | undefined;
  private current: TcpLink | undefined;
  private dialing: TcpLink | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastDialError = '';

  constructor(private readonly o: TransportOptions) {}

  /** Listens and starts dialling; rejects when the listen address cannot be bound. */
  async start(): Promise<void> {
    const server = net.createServer((s) => this.adopt(s, 'peer'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `replication.listen ${this.o.listen.host}:${this.o.listen.port}: ${e.code ?? e.message}; use an address of this host and a free port.`,
          ),
        ),
      );
      server.listen(this.o.listen.port, this.o.listen.host, () => resolve());
    });
    server.on('error', (e) => this.o.log(`replication listener: ${e.message}`));
    this.server = server;
    this.tick();
  }

  get linked(): boolean {
    return this.current !== undefined;
  }

  private tick(): void {
    if (this.stopped) return;
    if (!this.current && !this.dialing) this.dial();
    this.timer = setTimeout(() => this.tick(), this.o.redialMs ?? 200);
    this.timer.unref();
  }

  private dial(): void {
    const s = net.connect({ host: this.o.peer.host, port: this.o.peer.port });
    s.once('error', (e: NodeJS.ErrnoException) => {
      const msg = e.code ?? e.message;
      if (msg !== this.lastDialError) this.o.log(`replication: dialling the peer: ${msg}`);
      this.lastDialError = msg;
    });
    this.dialing = this.adopt(s, 'us');
  }

  private adopt(s: net.Socket, dialledBy: 'us' | 'peer'): TcpLink {
    s.setNoDelay(true);
    const channel = new SecureChannel({
      key: this.o.key,
      nodeId: this.o.nodeId,
      initiator: dialledBy === 'us',
      rng: this.o.rng,
    });
    const link = new TcpLink(s, channel, dialledBy);
    const sendHello = () => s.write(channel.hello());
    if (dialledBy === 'us') s.once('connect', sendHello);
    else sendHello();
    s.on('data', (chunk: Buffer) => {
      if (link.closed) return;
      for (const ev of channel.feed(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))) {
        if (ev.kind === 'error') {
          this.o.log(`replication: refused the peer's stream: ${ev.reason}`);
          link.close();
          return;
        }
        if (ev.kind === 'ready') {
          link.ready = true;
          link.peerId = ev.peerId;
          this.promote(link);
        } else if (link === this.current) {
          this.o.onMessage(link, ev.type, ev.epoch, ev.payload);
        }
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      link.closed = true;
      if (this.dialing === link) this.dialing = undefined;
      if (this.current === link) {
        this.current = undefined;
        this.o.onClose(link);
      }
    });
    return link;
  }

  /** A link finished its handshake: it becomes the link unless the current one wins the tie. */
  private promote(link: TcpLink): void {
    if (this.dialing === link) this.dialing = undefined;
    const cur = this.current;
    if (cur && !cur.closed) {
      const dialler = (l: TcpLink) => (l.dialledBy === 'us' ? this.o.nodeId : (l.peerId ?? ''));
      // Same dialler: the newer replaces the older (a restart). Else the smaller dialler's wins.
      if (dialler(cur) !== dialler(link) && dialler(cur) < dialler(link)) {
        link.close();
        return;
      }
      this.current = undefined;
      cur.close();
      this.o.onClose(cur);
    }
    this.lastDialError = '';
    this.current = link;
    this.o.onOpen(link);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.current?.close();
    this.dialing?.close();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
