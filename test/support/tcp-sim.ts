/**
 * Two TCP engines on the simulated network: each a SimNode that frames segments as
 * Ethernet/IPv4 (through the real codecs, checksums included), runs one connection and a small
 * application that streams a deterministic byte pattern and checks every byte it reads.
 *
 * Used by the engine's property tests, the snapshot-equivalence tests and `bench tcp`.
 */
import type { PcapWriter } from '../../src/link/pcap.ts';
import { type LinkOptions, Network, type NodeHandle, type SimNode } from '../../src/link/sim/index.ts';
import type { TcpConfig } from '../../src/tcp/config.ts';
import { TcpConnection } from '../../src/tcp/connection.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { pseudoHeaderSumV4 } from '../../src/wire/checksum.ts';
import { isWireError } from '../../src/wire/error.ts';
import { ETHERTYPE_IPV4, emitEthernetHeader, NO_VLANS } from '../../src/wire/ethernet.ts';
import { emitIpv4Header, IPPROTO_TCP, parseIpv4 } from '../../src/wire/ipv4.ts';
import {
  emitTcp,
  parseTcp,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  type TcpSegment,
  tcpHeaderLength,
} from '../../src/wire/tcp.ts';

const READ_TURN_US = 1000;

import { checkPattern, fillPattern } from '../../src/link/sim/pattern.ts';

export { checkPattern, fillPattern, patternByte } from '../../src/link/sim/pattern.ts';

export interface EndpointPlan {
  /** Bytes this side sends before closing (it closes when done). */
  send: number;
  /** Largest write per call (the app writes in chunks, as a real one would). */
  chunk: number;
  /** Read at most this many bytes per turn (models a slow reader); Infinity: read all. */
  readPerTurn: number;
  /** Close after sending (FIN); else keep the connection open. */
  close: boolean;
}

export class TcpEndpoint implements SimNode {
  handle!: NodeHandle;
  conn: TcpConnection | undefined;
  sent = 0;
  received = 0;
  corrupt = -1;
  resets = 0;
  eof = false;
  closedAt = -1;
  segmentsIn = 0;
  /** Payload bytes of valid segments that arrived (duplicates included). */
  payloadIn = 0;
  segmentsOut = 0;
  readonly frame = new Uint8Array(14 + 20 + 60 + 65536);
  private readonly scratch: Uint8Array;
  onSegmentOut?: (seg: TcpSegment, now: number) => void;
  /** Initial sequence number to use instead of a random one. */
  iss: number | undefined;

  constructor(
    readonly name: string,
    readonly mac: number,
    readonly ip: number,
    readonly peerMac: number,
    readonly peerIp: number,
    readonly plan: EndpointPlan,
    readonly stream: number,
    readonly peerStream: number,
    readonly config: Partial<TcpConfig>,
    readonly port: number,
    readonly peerPort: number,
  ) {
    this.scratch = new Uint8Array(Math.max(1, Math.min(plan.chunk, 1 << 20)));
  }

  attach(h: NodeHandle): void {
    this.handle = h;
  }

  connect(now: number): void {
    this.conn = TcpConnection.connect({
      localPort: this.port,
      remotePort: this.peerPort,
      now,
      rng: this.handle.rng,
      config: this.config,
      iss: this.iss,
    });
    this.app(now);
    this.flush(now);
    this.handle.wake();
  }

  receive(_port: number, bytes: Uint8Array, now: number): void {
    if (bytes.length < 14 + 20) return;
    const ip = parseIpv4(bytes.subarray(14));
    if (isWireError(ip) || ip.dst !== this.ip || ip.protocol !== IPPROTO_TCP || ip.isFragment) return;
    const seg = parseTcp(ip.payload, pseudoHeaderSumV4(ip.src, ip.dst, IPPROTO_TCP, ip.payload.length));
    if (isWireError(seg)) return; // corrupted on the link: counted by the link, dropped here
    this.segmentsIn++;
    this.payloadIn += seg.payload.length;
    if (seg.flags & TCP_RST) this.resets++;
    if (!this.conn) {
      if ((seg.flags & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN || seg.dstPort !== this.port) return;
      this.conn = TcpConnection.accept(seg, {
        localPort: this.port,
        remotePort: seg.srcPort,
        now,
        rng: this.handle.rng,
        config: this.config,
        iss: this.iss,
      });
    } else {
      this.conn.input(seg, now);
    }
    this.app(now);
    this.flush(now);
  }

  poll(now: number): void {
    if (!this.conn) return;
    this.flush(now);
    this.app(now);
    this.flush(now);
  }

  pollAt(): number | undefined {
    const c = this.conn;
    if (!c) return undefined;
    const t = c.pollAt();
    // A slow reader takes another bite every millisecond while bytes wait.
    if (c.readable > 0 && this.plan.readPerTurn !== Number.POSITIVE_INFINITY) {
      const next = this.lastTurn + READ_TURN_US;
      return t === undefined || next < t ? next : t;
    }
    return t;
  }

  private lastTurn = 0;

  /** The application: write the plan's bytes, read and check the peer's, close when done. */
  app(now: number): void {
    const c = this.conn;
    if (!c) return;
    this.lastTurn = now;
    while (this.sent < this.plan.send) {
      const n = Math.min(this.plan.send - this.sent, this.plan.chunk, c.writable);
      if (n <= 0) break;
      const buf = this.scratch.subarray(0, n);
      fillPattern(this.stream, this.sent, buf);
      const took = c.write(buf);
      this.sent += took;
      if (took < n) break;
    }
    if (this.sent === this.plan.send && this.plan.close) c.close();
    let budget = this.plan.readPerTurn;
    while (budget > 0) {
      const d = c.read(budget);
      if (!d) break;
      budget -= d.length;
      const bad = checkPattern(this.peerStream, this.received, d);
      if (bad >= 0 && this.corrupt < 0) this.corrupt = this.received + bad;
      this.received += d.length;
    }
    if (c.eof && !this.eof) this.eof = true;
    if (c.state === TcpState.Closed && this.closedAt < 0) this.closedAt = now;
  }

  flush(now: number): void {
    this.conn?.poll(now, (seg) => this.transmit(seg, now));
  }

  private transmit(seg: TcpSegment, now: number): void {
    this.segmentsOut++;
    this.onSegmentOut?.(seg, now);
    const f = this.frame;
    emitEthernetHeader(
      { dst: this.peerMac, src: this.mac, vlans: NO_VLANS, etherType: ETHERTYPE_IPV4 },
      f,
      0,
    );
    const tcpLen = tcpHeaderLength(seg) + seg.payload.length;
    emitIpv4Header(
      {
        dscp: 0,
        ecn: 0,
        ident: 0,
        dontFragment: true,
        moreFragments: false,
        fragmentOffset: 0,
        ttl: 64,
        protocol: IPPROTO_TCP,
        src: this.ip,
        dst: this.peerIp,
      },
      tcpLen,
      f,
      14,
    );
    emitTcp(seg, f, 34, pseudoHeaderSumV4(this.ip, this.peerIp, IPPROTO_TCP, tcpLen));
    this.handle.send(0, f.subarray(0, 34 + tcpLen));
  }
}

export interface PairOptions {
  seed: number;
  link?: LinkOptions;
  client: EndpointPlan;
  server: EndpointPlan;
  clientConfig?: Partial<TcpConfig>;
  serverConfig?: Partial<TcpConfig>;
  capture?: PcapWriter;
  /** Fixed initial sequence numbers (e.g. near 2^32 to exercise the wrap). */
  clientIss?: number;
  serverIss?: number;
}

export interface Pair {
  net: Network;
  client: TcpEndpoint;
  server: TcpEndpoint;
}

const A_MAC = 0x02_00_00_00_00_0a;
const B_MAC = 0x02_00_00_00_00_0b;
const A_IP = 0xc6_12_00_01;
const B_IP = 0xc6_12_00_02;

/** A client and a server joined by one link; the client connects at time 0. */
export function tcpPair(o: PairOptions): Pair {
  const net = new Network({ seed: o.seed });
  const client = new TcpEndpoint(
    'client',
    A_MAC,
    A_IP,
    B_MAC,
    B_IP,
    o.client,
    1,
    2,
    o.clientConfig ?? {},
    40000,
    80,
  );
  const server = new TcpEndpoint(
    'server',
    B_MAC,
    B_IP,
    A_MAC,
    A_IP,
    o.server,
    2,
    1,
    o.serverConfig ?? {},
    80,
    40000,
  );
  client.iss = o.clientIss;
  server.iss = o.serverIss;
  const ha = net.attach(client, 'client');
  const hb = net.attach(server, 'server');
  net.connect(ha, 0, hb, 0, { latencyUs: 1000, ...o.link, ...(o.capture ? { capture: o.capture } : {}) });
  net.at(0, (now) => client.connect(now));
  return { net, client, server };
}

/** True when both sides have delivered and verified everything and closed as planned. */
export function pairDone(p: Pair): boolean {
  const { client: c, server: s } = p;
  return (
    c.received === s.plan.send &&
    s.received === c.plan.send &&
    (!c.plan.close || s.eof) &&
    (!s.plan.close || c.eof)
  );
}
