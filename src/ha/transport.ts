/**
 * The replication link over kernel TCP (docs/ARCHITECTURE.md §4: an ordinary kernel TCP
 * connection on a separate address), each connection wrapped in a SecureChannel (PSK-authenticated
 * handshake, per-session AES-256-GCM keys per direction, counters, key updates). This is a driver
 * edge: it does I/O and reads the clock.
 *
 * Both nodes listen, and a node with no link dials its peer every `redialMs`. When two links are
 * up at once (both dialled together), both ends keep the one dialled by the smaller node id, so
 * they agree without talking; a node that dials again (after a restart) replaces its old link.
 *
 * Key rotation without a restart: `setKeys` swaps the pre-shared keys that new links offer and
 * accept (the current key first); the link that is up keeps its session keys, which move on by
 * themselves (the channel's key update, and here at least every `keyUpdateMs`).
 */
import net from 'node:net';
import type { RandomSource } from '../tcp/connection.ts';
import type { PeerLink } from './node.ts';
import { checkKeys, keyId, SecureChannel } from './protocol.ts';

export interface TransportOptions {
  nodeId: string;
  /** The pre-shared key; or `keys`, the current one first, and older ones still accepted. */
  key?: Uint8Array;
  keys?: readonly Uint8Array[];
  listen: { host: string; port: number };
  peer: { host: string; port: number };
  rng: RandomSource;
  redialMs?: number;
  /** Session key update bounds (SecureChannel's), and a time bound (default one hour). */
  keyUpdateMessages?: number;
  keyUpdateBytes?: number;
  keyUpdateMs?: number;
  onOpen(link: PeerLink): void;
  onMessage(link: PeerLink, type: number, epoch: number, payload: Uint8Array): void;
  onClose(link: PeerLink): void;
  log(line: string): void;
}

class TcpLink implements PeerLink {
  ready = false;
  closed = false;
  peerId: string | undefined;
  /** When our sending key last moved (or the session began), and the update count seen then. */
  sendKeySince = 0;
  updatesSeen = 0;
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
  private lastRefusal = '';
  private keys: Uint8Array[];

  /** Throws RangeError for a bad key list (see protocol.ts `checkKeys`). */
  constructor(private readonly o: TransportOptions) {
    const keys = o.keys ?? (o.key === undefined ? [] : [o.key]);
    checkKeys(keys);
    this.keys = keys.map((k) => Uint8Array.from(k));
  }

  /**
   * Replaces the pre-shared keys for links made from now on (the current key first, then keys
   * still accepted); the link that is up keeps its session. Throws RangeError for a bad list and
   * then keeps the old keys. Returns the new keys' ids, for the log.
   */
  setKeys(keys: readonly Uint8Array[]): string[] {
    checkKeys(keys);
    const old = this.keys;
    this.keys = keys.map((k) => Uint8Array.from(k));
    for (const k of old) k.fill(0);
    return this.keys.map(keyId);
  }

  /** The ids of the keys new links use, the current one first. */
  get keyIds(): string[] {
    return this.keys.map(keyId);
  }

  /** The link that is up: the peer, the agreed key's id, and its channel's counters. */
  get session(): { peerId: string; keyId: string; counters: SecureChannel['counters'] } | undefined {
    const l = this.current;
    if (!l || l.closed) return undefined;
    return { peerId: l.peerId ?? '', keyId: l.channel.keyId ?? '', counters: l.channel.counters };
  }

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

  /** The port the listener is bound to (the configured one, or the kernel's pick for port 0). */
  get port(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  get linked(): boolean {
    return this.current !== undefined;
  }

  private tick(): void {
    if (this.stopped) return;
    if (!this.current && !this.dialing) this.dial();
    const l = this.current;
    if (l?.ready && !l.closed) {
      const now = Date.now();
      const updates = l.channel.counters.keyUpdatesOut;
      if (updates !== l.updatesSeen) {
        l.updatesSeen = updates;
        l.sendKeySince = now;
      } else if (now - l.sendKeySince >= (this.o.keyUpdateMs ?? 3_600_000)) {
        l.channel.requestKeyUpdate();
        l.sendKeySince = now;
      }
    }
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
      keys: this.keys,
      nodeId: this.o.nodeId,
      initiator: dialledBy === 'us',
      rng: this.o.rng,
      keyUpdateMessages: this.o.keyUpdateMessages,
      keyUpdateBytes: this.o.keyUpdateBytes,
    });
    const link = new TcpLink(s, channel, dialledBy);
    const sendHello = () => s.write(channel.hello());
    if (dialledBy === 'us') s.once('connect', sendHello);
    else sendHello();
    s.on('data', (chunk: Buffer) => {
      if (link.closed) return;
      for (const ev of channel.feed(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))) {
        if (ev.kind === 'error') {
          // Both nodes redial every redialMs: say a lasting refusal (a key mismatch) once.
          if (ev.reason !== this.lastRefusal)
            this.o.log(`replication: refused the peer's stream: ${ev.reason}`);
          this.lastRefusal = ev.reason;
          link.close();
          return;
        }
        if (ev.kind === 'ready') {
          link.ready = true;
          link.peerId = ev.peerId;
          link.sendKeySince = Date.now();
          const current = channel.keyIds[0];
          if (ev.keyId !== current)
            this.o.log(
              `replication: the link with ${ev.peerId} uses key ${ev.keyId}, not this node's current key ` +
                `${current}: the dialling node's first key that both hold (a key rotation is under way).`,
            );
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
    this.lastRefusal = '';
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
