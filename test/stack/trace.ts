/**
 * Packet traces against one stack (smoltcp's `send!`/`recv!` style): a peer on the same link
 * hands frames in at chosen instants and reads back what the stack sent. Builders for the frames
 * a hostile or fragmenting peer sends: IP packets from raw parts, IPv4 and IPv6 fragments, IPv6
 * extension headers, ICMP errors quoting a segment.
 *
 * Peer: 02:00:00:00:00:01, 198.18.0.1 and fd00::1. Stack: 02:00:00:00:00:02, .2 and ::2.
 */
import assert from 'node:assert/strict';
import { Rng } from '../../src/link/sim/rng.ts';
import { cidrFromString, type IpAddr, ipFromString, isV4 } from '../../src/stack/ip.ts';
import { NetStack, type StackConfig, type StackConnection } from '../../src/stack/stack.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { type Ipv6Addr, macFromString, writeIpv6 } from '../../src/wire/address.ts';
import { writeU16, writeU32 } from '../../src/wire/bytes.ts';
import { finishChecksum, onesSum, pseudoHeaderSumV4, pseudoHeaderSumV6 } from '../../src/wire/checksum.ts';
import { isWireError } from '../../src/wire/error.ts';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, emitEthernetHeader, NO_VLANS } from '../../src/wire/ethernet.ts';
import { type Frame, parseFrame } from '../../src/wire/frame.ts';
import { emitIcmpv4, type Icmpv4Message } from '../../src/wire/icmpv4.ts';
import { emitIcmpv6, type Icmpv6Message, icmpv6Length } from '../../src/wire/icmpv6.ts';
import { emitIpv4Header, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP } from '../../src/wire/ipv4.ts';
import { IPPROTO_FRAGMENT } from '../../src/wire/ipv6.ts';
import {
  emitTcp,
  TCP_ACK,
  TCP_SYN,
  type TcpSegment,
  tcpHeaderLength,
  tcpSegment,
} from '../../src/wire/tcp.ts';

export const PEER_MAC = macFromString('02:00:00:00:00:01')!;
export const STACK_MAC = macFromString('02:00:00:00:00:02')!;
export const PEER4 = ipFromString('198.18.0.1') as number;
export const STACK4 = ipFromString('198.18.0.2') as number;
export const PEER6 = ipFromString('fd00::1') as Ipv6Addr;
export const STACK6 = ipFromString('fd00::2') as Ipv6Addr;

/** One stack, a clock, and what it sent. */
export class Trace {
  readonly stack: NetStack;
  now = 1_000_000;
  private sent: Uint8Array[] = [];

  constructor(cfg: Partial<StackConfig> = {}) {
    this.stack = new NetStack(
      {
        mac: STACK_MAC,
        addresses: [cidrFromString('198.18.0.2/24')!, cidrFromString('fd00::2/64')!],
        ...cfg,
      },
      new Rng(7),
      (f) => this.sent.push(f.slice()),
      this.now,
    );
    // The peer is known: no ARP or NDP in the traces.
    this.stack.seedNeighbor(PEER4, PEER_MAC, this.now);
    this.stack.seedNeighbor(PEER6, PEER_MAC, this.now);
  }

  /** Hands `frames` in at the current instant (plus `afterUs`), then lets the stack run. */
  send(frames: Uint8Array | Uint8Array[], afterUs = 0): void {
    this.now += afterUs;
    for (const f of Array.isArray(frames) ? frames : [frames]) this.stack.receive(f, this.now);
    this.stack.poll(this.now);
  }

  /** Moves the clock on by `us` and polls. */
  advance(us: number): void {
    this.now += us;
    this.stack.poll(this.now);
  }

  /** Everything the stack sent since the last call, parsed. */
  recv(): Frame[] {
    const out = this.sent.map((b) => {
      const f = parseFrame(b);
      if (isWireError(f)) assert.fail(`the stack sent a frame that does not parse: ${f}`);
      return f;
    });
    this.sent = [];
    return out;
  }

  /** The TCP segments the stack sent since the last call. */
  recvTcp(): TcpSegment[] {
    return this.recv()
      .map((f) => f.tcp)
      .filter((t) => t !== undefined);
  }

  recvNothing(what = 'nothing'): void {
    const got = this.recv();
    assert.equal(got.length, 0, `expected ${what}, the stack sent ${got.length} frame(s)`);
  }
}

/** An Ethernet frame from the peer to the stack around an IP packet. */
export function eth(l3: Uint8Array, dstMac = STACK_MAC): Uint8Array {
  const b = new Uint8Array(14 + l3.length);
  emitEthernetHeader(
    {
      dst: dstMac,
      src: PEER_MAC,
      vlans: NO_VLANS,
      etherType: l3[0] >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6,
    },
    b,
    0,
  );
  b.set(l3, 14);
  return b;
}

/** The bytes of a TCP segment from `src` to `dst` (checksum over the pseudo-header). */
export function tcpBytes(seg: TcpSegment, src: IpAddr, dst: IpAddr): Uint8Array {
  const n = tcpHeaderLength(seg) + seg.payload.length;
  const b = new Uint8Array(n);
  const sum = isV4(src)
    ? pseudoHeaderSumV4(src, dst as number, IPPROTO_TCP, n)
    : pseudoHeaderSumV6(src, dst as Ipv6Addr, IPPROTO_TCP, n);
  emitTcp(seg, b, 0, sum);
  return b;
}

export interface V4Fields {
  src?: number;
  dst?: number;
  protocol?: number;
  ident?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  fragmentOffset?: number;
  ecn?: number;
  /** Option bytes (a multiple of 4) after the 20-byte header. */
  options?: Uint8Array;
}

/** An IPv4 packet from the peer to the stack carrying `payload` (checksum computed). */
export function ipv4Packet(payload: Uint8Array, f: V4Fields = {}): Uint8Array {
  const opts = f.options ?? new Uint8Array(0);
  const hl = 20 + opts.length;
  const b = new Uint8Array(hl + payload.length);
  emitIpv4Header(
    {
      dscp: 0,
      ecn: f.ecn ?? 0,
      ident: f.ident ?? 1,
      dontFragment: f.dontFragment ?? false,
      moreFragments: f.moreFragments ?? false,
      fragmentOffset: f.fragmentOffset ?? 0,
      ttl: 64,
      protocol: f.protocol ?? IPPROTO_TCP,
      src: f.src ?? PEER4,
      dst: f.dst ?? STACK4,
    },
    payload.length + opts.length,
    b,
    0,
  );
  if (opts.length > 0) {
    b.set(opts, 20);
    b[0] = 0x40 | (hl / 4);
    b[10] = 0;
    b[11] = 0;
    writeU16(b, 10, finishChecksum(onesSum(b, 0, hl)));
  }
  b.set(payload, hl);
  return b;
}

/**
 * Cuts the payload of an unfragmented IPv4 packet built with `f` into fragments of at most `size`
 * data bytes (a multiple of 8), as a router would: every fragment carries the header.
 */
export function fragmentV4(payload: Uint8Array, size: number, f: V4Fields = {}): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < payload.length; at += size) {
    const end = Math.min(payload.length, at + size);
    out.push(
      ipv4Packet(payload.subarray(at, end), {
        ...f,
        fragmentOffset: at,
        moreFragments: end < payload.length,
      }),
    );
  }
  return out;
}

export interface V6Fields {
  src?: Ipv6Addr;
  dst?: Ipv6Addr;
  trafficClass?: number;
}

/**
 * An IPv6 packet: fixed header, then `headers` (each [type, bytes]: an extension header whose
 * Next Header byte is filled in here), then the upper layer `payload` of protocol `upper`.
 */
export function ipv6Packet(
  upper: number,
  payload: Uint8Array,
  headers: [number, Uint8Array][] = [],
  f: V6Fields = {},
): Uint8Array {
  const extLen = headers.reduce((n, [, h]) => n + h.length, 0);
  const b = new Uint8Array(40 + extLen + payload.length);
  const tc = f.trafficClass ?? 0;
  b[0] = 0x60 | (tc >> 4);
  b[1] = (tc & 0x0f) << 4;
  writeU16(b, 4, extLen + payload.length);
  b[6] = headers.length > 0 ? headers[0][0] : upper;
  b[7] = 64;
  writeIpv6(b, 8, f.src ?? PEER6);
  writeIpv6(b, 24, f.dst ?? STACK6);
  let at = 40;
  headers.forEach(([, h], i) => {
    b.set(h, at);
    b[at] = i + 1 < headers.length ? headers[i + 1][0] : upper;
    at += h.length;
  });
  b.set(payload, at);
  return b;
}

/** A Hop-by-Hop or Destination Options header body holding `options` (padded to 8 with PadN). */
export function optionsHeader(options: number[]): Uint8Array {
  const raw = [0, 0, ...options];
  const pad = (8 - (raw.length % 8)) % 8;
  if (pad === 1) raw.push(0);
  else if (pad > 1) raw.push(1, pad - 2, ...new Array(pad - 2).fill(0));
  const b = Uint8Array.from(raw);
  b[1] = b.length / 8 - 1;
  return b;
}

/**
 * Fragments of `fragmentable` (the bytes after the unfragmentable part: the upper layer with any
 * headers that follow the Fragment header, whose first type is `first`) in pieces of at most
 * `size` bytes (a multiple of 8), each behind the fixed header, the `unfragmentable` headers and
 * a Fragment header with identification `ident`.
 */
export function fragmentV6(
  first: number,
  fragmentable: Uint8Array,
  size: number,
  ident: number,
  unfragmentable: [number, Uint8Array][] = [],
  f: V6Fields = {},
): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < fragmentable.length; at += size) {
    const end = Math.min(fragmentable.length, at + size);
    const fh = new Uint8Array(8);
    writeU16(fh, 2, at | (end < fragmentable.length ? 1 : 0));
    writeU32(fh, 4, ident);
    const p = ipv6Packet(
      first,
      fragmentable.subarray(at, end),
      [...unfragmentable, [IPPROTO_FRAGMENT, fh]],
      f,
    );
    out.push(p);
  }
  return out;
}

/** An ICMPv4 message from `src` to the stack. */
export function icmpv4Packet(m: Partial<Icmpv4Message> & { type: number }, src = PEER4): Uint8Array {
  const full: Icmpv4Message = {
    code: 0,
    checksum: 0,
    ident: 0,
    seqNo: 0,
    mtu: 0,
    rest: 0,
    data: new Uint8Array(0),
    ...m,
  };
  const b = new Uint8Array(8 + full.data.length);
  emitIcmpv4(full, b, 0);
  return ipv4Packet(b, { protocol: IPPROTO_ICMP, src });
}

/** An ICMPv6 message from `src` to the stack. */
export function icmpv6Packet(m: Icmpv6Message, src = PEER6, dst = STACK6): Uint8Array {
  const n = icmpv6Length(m);
  const b = new Uint8Array(n);
  emitIcmpv6(m, b, 0, pseudoHeaderSumV6(src, dst, IPPROTO_ICMPV6, n));
  return ipv6Packet(IPPROTO_ICMPV6, b, [], { src, dst });
}

/**
 * What a router quotes of a segment the stack sent to the peer: its IP header and the first
 * `tcpBytes` of TCP (8 is RFC 792's minimum: ports and sequence number).
 */
export function quoteOf(
  seg: Pick<TcpSegment, 'srcPort' | 'dstPort' | 'seq'>,
  v4: boolean,
  length = 1500,
  tcpBytesQuoted = 8,
): Uint8Array {
  const hl = v4 ? 20 : 40;
  const q = new Uint8Array(hl + tcpBytesQuoted);
  if (v4) {
    q[0] = 0x45;
    writeU16(q, 2, length);
    q[8] = 64;
    q[9] = IPPROTO_TCP;
    writeU32(q, 12, STACK4);
    writeU32(q, 16, PEER4);
  } else {
    q[0] = 0x60;
    writeU16(q, 4, length - 40);
    q[6] = IPPROTO_TCP;
    q[7] = 64;
    writeIpv6(q, 8, STACK6);
    writeIpv6(q, 24, PEER6);
  }
  writeU16(q, hl, seg.srcPort);
  writeU16(q, hl + 2, seg.dstPort);
  writeU32(q, hl + 4, seg.seq);
  return q;
}

export interface Established {
  t: Trace;
  c: StackConnection;
  v4: boolean;
  /** The peer's next sequence number and the stack's ISS. */
  peerSeq: number;
  iss: number;
  /** The peer's address and port. */
  peer: IpAddr;
  peerPort: number;
}

/**
 * A connection from the peer (port 40000) to the stack's port 80, established by a handshake
 * in the trace: SYN with MSS 1460 (IPv6: 1440), SYN-ACK, ACK.
 */
export function established(v4: boolean, cfg: Partial<StackConfig> = {}): Established {
  const t = new Trace(cfg);
  t.stack.listen(80, { onAccept: () => {} });
  const peer = v4 ? PEER4 : PEER6;
  const local = v4 ? STACK4 : STACK6;
  const wrap = (seg: TcpSegment) =>
    eth(
      v4
        ? ipv4Packet(tcpBytes(seg, peer, local), { dontFragment: true })
        : ipv6Packet(IPPROTO_TCP, tcpBytes(seg, peer, local)),
    );
  t.send(
    wrap(
      tcpSegment({
        srcPort: 40000,
        dstPort: 80,
        seq: 1000,
        flags: TCP_SYN,
        window: 65535,
        mss: v4 ? 1460 : 1440,
      }),
    ),
  );
  const [synAck] = t.recvTcp();
  assert.ok(synAck && (synAck.flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK), 'SYN-ACK');
  t.send(
    wrap(
      tcpSegment({
        srcPort: 40000,
        dstPort: 80,
        seq: 1001,
        ack: (synAck.seq + 1) >>> 0,
        flags: TCP_ACK,
        window: 65535,
      }),
    ),
  );
  t.recvNothing('nothing after the handshake ACK');
  const c = [...t.stack.connections()][0];
  assert.equal(c.tcp.state, TcpState.Established);
  t.stack.takeEvents();
  return { t, c, v4, peerSeq: 1001, iss: synAck.seq, peer, peerPort: 40000 };
}

/** A segment from the peer on an established connection, as a frame. */
export function peerSegment(e: Established, fields: Partial<TcpSegment>): Uint8Array {
  const seg = tcpSegment({
    srcPort: 40000,
    dstPort: 80,
    window: 65535,
    flags: TCP_ACK,
    seq: e.peerSeq,
    ...fields,
  });
  const l4 = tcpBytes(seg, e.peer, e.v4 ? STACK4 : STACK6);
  return eth(e.v4 ? ipv4Packet(l4, { dontFragment: true }) : ipv6Packet(IPPROTO_TCP, l4));
}

/** Bytes with a recognisable pattern: byte i is (i * 7 + seed) & 0xff. */
export function pattern(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

/** Everything the application can read from `c` now. */
export function readAll(c: StackConnection): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let d = c.tcp.read(); d; d = c.tcp.read()) parts.push(d);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
