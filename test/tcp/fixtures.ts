/**
 * Packet-trace fixtures for the TCP engine tests (the shape of smoltcp's socket/tcp.rs tests):
 * a fixture builds a connection already in a given state by feeding it segments; `send` hands
 * the engine one segment from the peer, `recv` polls it and returns what it emitted, and
 * `expectSeg`/`recvOne`/`recvNothing` assert on the exact segments (or on silence).
 *
 * Everything is deterministic: ISS and timestamp offset come from `rngOf`, time is explicit.
 * The fixtures' handshake takes RTT (10 ms), so an established connection has one RTT sample
 * and its RTO sits at the 200 ms floor.
 */
import assert from 'node:assert/strict';
import type { TcpConfig } from '../../src/tcp/config.ts';
import { type RandomSource, TcpConnection } from '../../src/tcp/connection.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { offsetToSeq } from '../../src/wire/seq.ts';
import {
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  type TcpSegment,
  tcpFlagsToString,
} from '../../src/wire/tcp.ts';
import { tcp } from '../support/build.ts';

export const SYN = TCP_SYN;
export const ACK = TCP_ACK;
export const FIN = TCP_FIN;
export const RST = TCP_RST;
export const PSH = TCP_PSH;

export const LOCAL_PORT = 80;
export const REMOTE_PORT = 40000;
/** Default ISNs: ours and the peer's. Tests near the wrap pass their own. */
export const LOCAL_ISS = 0x1000_0000;
export const REMOTE_ISS = 0x2000_0000;
/** Our timestamp clock's offset (the rng's second draw). */
export const LOCAL_TS = 0x0100_0000;
/** The peer's TSval at T0 when it uses timestamps (its clock ticks once a millisecond). */
export const PEER_TS = 7000;
/** When every fixture opens (µs). */
export const T0 = 1_000_000;
/** Handshake round trip of the fixtures (µs). */
export const RTT = 10_000;
export const MS = 1000;
export const S = 1_000_000;

/** Deterministic randomness: `values` in order (ISS, then timestamp offset), then the last one forever. */
export function rngOf(...values: number[]): RandomSource {
  let i = 0;
  return { nextU32: () => values[Math.min(i++, values.length - 1)] >>> 0 };
}

/** `n` bytes of a recognisable pattern starting at stream offset `from` (stream `k` differs). */
export function bytes(n: number, from = 0, k = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (from + i) * 7 + k * 101 + ((from + i) >>> 8);
  return b;
}

/** One segment from the peer; ports default to the connection's tuple. */
export function send(conn: TcpConnection, now: number, s: Partial<TcpSegment>): void {
  conn.input(tcp({ srcPort: conn.remotePort, dstPort: conn.localPort, ...s }), now);
}

/** Polls at `now` and returns every emitted segment (payloads copied: they are send-buffer views). */
export function recv(conn: TcpConnection, now: number): TcpSegment[] {
  const out: TcpSegment[] = [];
  conn.poll(now, (s) => {
    assert.equal(s.srcPort, conn.localPort, 'source port');
    assert.equal(s.dstPort, conn.remotePort, 'destination port');
    out.push({ ...s, payload: s.payload.slice(), sackBlocks: s.sackBlocks?.slice() });
  });
  return out;
}

/** Fields a test may pin down; absent keys are not checked (a key set to undefined is). */
export interface Expect {
  flags?: number;
  seq?: number;
  ack?: number;
  window?: number;
  mss?: number | undefined;
  windowScale?: number | undefined;
  sackPermitted?: boolean;
  sackBlocks?: number[] | undefined;
  tsVal?: number | undefined;
  tsEcr?: number | undefined;
  /** Exact payload. */
  payload?: Uint8Array;
  /** Payload length only. */
  len?: number;
}

export function fmt(s: TcpSegment): string {
  let t = `${tcpFlagsToString(s.flags)} seq=${s.seq} ack=${s.ack} win=${s.window} len=${s.payload.length}`;
  if (s.mss !== undefined) t += ` mss=${s.mss}`;
  if (s.windowScale !== undefined) t += ` ws=${s.windowScale}`;
  if (s.sackPermitted) t += ' sackOK';
  if (s.tsVal !== undefined) t += ` ts=${s.tsVal}/${s.tsEcr}`;
  if (s.sackBlocks !== undefined) t += ` sack=${s.sackBlocks.join(',')}`;
  return t;
}

export function expectSeg(s: TcpSegment, e: Expect, label = ''): void {
  const at = `${label ? `${label}: ` : ''}${fmt(s)}`;
  if ('flags' in e) assert.equal(tcpFlagsToString(s.flags), tcpFlagsToString(e.flags!), `flags of ${at}`);
  for (const k of [
    'seq',
    'ack',
    'window',
    'mss',
    'windowScale',
    'sackPermitted',
    'tsVal',
    'tsEcr',
  ] as const) {
    if (k in e) assert.equal(s[k], e[k], `${k} of ${at}`);
  }
  if ('sackBlocks' in e) assert.deepEqual(s.sackBlocks, e.sackBlocks, `sackBlocks of ${at}`);
  if (e.len !== undefined) assert.equal(s.payload.length, e.len, `payload length of ${at}`);
  if (e.payload !== undefined) assert.deepEqual(s.payload, e.payload, `payload of ${at}`);
}

/** Polls and expects exactly the segments `es`, in order. */
export function recvSegs(conn: TcpConnection, now: number, es: Expect[]): TcpSegment[] {
  const out = recv(conn, now);
  assert.equal(out.length, es.length, `segments emitted: [${out.map(fmt).join(' | ')}]`);
  for (let i = 0; i < es.length; i++) expectSeg(out[i], es[i], `segment ${i}`);
  return out;
}

/** Polls and expects exactly one segment. */
export function recvOne(conn: TcpConnection, now: number, e: Expect): TcpSegment {
  return recvSegs(conn, now, [e])[0];
}

/** Polls and expects silence. */
export function recvNothing(conn: TcpConnection, now: number): void {
  const out = recv(conn, now);
  assert.equal(out.length, 0, `expected nothing, got [${out.map(fmt).join(' | ')}]`);
}

/** The options the peer puts on its SYN (or SYN-ACK); absent: not offered. */
export interface PeerOptions {
  iss?: number;
  /** Its MSS option; default 1460 (`null`: no MSS option). */
  mss?: number | null;
  ws?: number;
  sack?: boolean;
  /** Its TSval at T0; absent: no timestamps. */
  tsVal?: number;
  /** The raw window field of its SYN and of its handshake ACK (default 65535). */
  window?: number;
}

export interface FixtureOptions {
  config?: Partial<TcpConfig>;
  /** Our ISS (default LOCAL_ISS). */
  iss?: number;
  /** Our timestamp offset (default LOCAL_TS). */
  tsOffset?: number;
  peer?: PeerOptions;
}

/** A connection under test plus the numbers a trace needs. */
export class Fx {
  constructor(
    readonly conn: TcpConnection,
    /** Our ISS. */
    readonly iss: number,
    /** The peer's ISS. */
    readonly irs: number,
    /** Time the fixture stopped at (µs). */
    public now: number,
    readonly peer: PeerOptions,
    readonly tsOffset: number,
  ) {}

  /** Our sequence number at send offset `off` (the SYN is -1). */
  snd(off: number): number {
    return offsetToSeq(this.iss, off);
  }

  /** The peer's sequence number at its stream offset `off`. */
  rcv(off: number): number {
    return offsetToSeq(this.irs, off);
  }

  /** Our TSval at `now`: milliseconds since the open plus the offset. */
  ts(now: number): number {
    return (Math.floor((now - T0) / 1000) + this.tsOffset) >>> 0;
  }

  /** The peer's TSval at `now` (undefined without timestamps). */
  peerTs(now: number): number | undefined {
    const v = this.peer.tsVal;
    return v === undefined ? undefined : (v + Math.floor((now - T0) / 1000)) >>> 0;
  }

  /** An ACK from the peer acknowledging our offset `ackOff` (its seq: offset 0 unless `more` says). */
  ack(now: number, ackOff: number, more: Partial<TcpSegment> = {}): void {
    send(this.conn, now, {
      seq: this.rcv(0),
      ack: this.snd(ackOff),
      flags: ACK,
      tsVal: this.peerTs(now),
      tsEcr: this.peer.tsVal === undefined ? undefined : this.ts(now),
      ...more,
    });
  }
}

/** The peer's SYN or SYN-ACK as the fixtures build it. */
export function peerSyn(
  p: PeerOptions,
  irs: number,
  flags: number,
  ack: number,
  tsEcr: number | undefined,
): TcpSegment {
  return tcp({
    srcPort: REMOTE_PORT,
    dstPort: LOCAL_PORT,
    seq: irs,
    ack,
    flags,
    window: p.window ?? 65535,
    mss: p.mss === null ? undefined : (p.mss ?? 1460),
    windowScale: p.ws,
    sackPermitted: p.sack ?? false,
    tsVal: p.tsVal,
    tsEcr: p.tsVal === undefined ? undefined : (tsEcr ?? 0),
  });
}

/** Passive open: the peer's SYN at T0 was accepted and our SYN-ACK is out. */
export function synReceived(o: FixtureOptions = {}): { fx: Fx; synAck: TcpSegment } {
  const p = o.peer ?? {};
  const iss = o.iss ?? LOCAL_ISS;
  const irs = p.iss ?? REMOTE_ISS;
  const tsOffset = o.tsOffset ?? LOCAL_TS;
  const conn = TcpConnection.accept(peerSyn(p, irs, SYN, 0, undefined), {
    localPort: LOCAL_PORT,
    remotePort: REMOTE_PORT,
    now: T0,
    rng: rngOf(iss, tsOffset),
    config: o.config,
  });
  assert.equal(conn.state, TcpState.SynReceived);
  const fx = new Fx(conn, iss, irs, T0, p, tsOffset);
  const synAck = recvOne(conn, T0, { flags: SYN | ACK, seq: iss, ack: fx.rcv(0) });
  return { fx, synAck };
}

/** Passive open completed: the peer's handshake ACK arrived one RTT after its SYN. */
export function established(o: FixtureOptions = {}): Fx {
  const { fx, synAck } = synReceived(o);
  const t = T0 + RTT;
  send(fx.conn, t, {
    seq: fx.rcv(0),
    ack: fx.snd(0),
    flags: ACK,
    window: fx.peer.window ?? 65535,
    tsVal: fx.peerTs(t),
    tsEcr: synAck.tsVal,
  });
  assert.equal(fx.conn.state, TcpState.Established);
  recvNothing(fx.conn, t);
  fx.now = t;
  return fx;
}

/** Active open: our SYN is out at T0. */
export function synSent(o: FixtureOptions = {}): { fx: Fx; syn: TcpSegment } {
  const p = o.peer ?? {};
  const iss = o.iss ?? LOCAL_ISS;
  const tsOffset = o.tsOffset ?? LOCAL_TS;
  const conn = TcpConnection.connect({
    localPort: LOCAL_PORT,
    remotePort: REMOTE_PORT,
    now: T0,
    rng: rngOf(iss, tsOffset),
    config: o.config,
  });
  assert.equal(conn.state, TcpState.SynSent);
  const fx = new Fx(conn, iss, p.iss ?? REMOTE_ISS, T0, p, tsOffset);
  const syn = recvOne(conn, T0, { flags: SYN, seq: iss, ack: 0 });
  return { fx, syn };
}

/** Active open completed: the peer's SYN-ACK arrived one RTT after our SYN and we ACKed it. */
export function establishedActive(o: FixtureOptions = {}): Fx {
  const { fx, syn } = synSent(o);
  const t = T0 + RTT;
  send(fx.conn, t, peerSyn({ ...fx.peer, tsVal: fx.peerTs(t) }, fx.irs, SYN | ACK, fx.snd(0), syn.tsVal));
  assert.equal(fx.conn.state, TcpState.Established);
  recvOne(fx.conn, t, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(0) });
  fx.now = t;
  return fx;
}

/**
 * Two engines joined by a lossless, zero-latency wire: delivers every segment each emits to the
 * other until both are quiet at `now`. `tap` sees each segment (from a or from b) as it passes.
 */
export function shuttle(
  a: TcpConnection,
  b: TcpConnection,
  now: number,
  tap?: (from: 'a' | 'b', s: TcpSegment) => void,
): number {
  let moved = 0;
  for (let round = 0; round < 10_000; round++) {
    const fromA = recv(a, now);
    for (const s of fromA) {
      tap?.('a', s);
      b.input(s, now);
    }
    const fromB = recv(b, now);
    for (const s of fromB) {
      tap?.('b', s);
      a.input(s, now);
    }
    moved += fromA.length + fromB.length;
    if (fromA.length + fromB.length === 0) return moved;
  }
  throw new Error('shuttle: the two engines never went quiet');
}

/** The earliest instant either engine wants to run, not before `now`; undefined when neither does. */
export function nextWake(now: number, ...cs: TcpConnection[]): number | undefined {
  let t: number | undefined;
  for (const c of cs) {
    const w = c.pollAt();
    if (w !== undefined && (t === undefined || w < t)) t = w;
  }
  return t === undefined ? undefined : Math.max(now, t);
}

/** Polls at every instant `conn` asks for, up to `until`, and returns what came out with its time. */
export function runUntil(
  conn: TcpConnection,
  from: number,
  until: number,
): { at: number; seg: TcpSegment }[] {
  const out: { at: number; seg: TcpSegment }[] = [];
  let now = from;
  for (let i = 0; i < 10_000; i++) {
    const w = conn.pollAt();
    if (w === undefined || w > until) break;
    now = Math.max(now, w);
    const segs = recv(conn, now);
    for (const seg of segs) out.push({ at: now, seg });
    if (segs.length === 0 && conn.pollAt() === w) throw new Error(`runUntil: pollAt stuck at ${w}`);
  }
  return out;
}
