/**
 * One TCP connection as a pure state machine (RFC 9293), with window scaling and timestamps
 * (RFC 7323), SACK (RFC 2018) and SACK-based loss recovery (RFC 6675), NewReno (RFC 6582) for
 * peers without SACK, RFC 6298 retransmission timing, RFC 5681 congestion control through a small
 * interface (CUBIC by default, RFC 9438), limited transmit (RFC 3042), RFC 5961 challenge ACKs.
 *
 * Read RFC 9293 3.10 ("Event Processing") first: `input` follows its order of checks.
 *
 * No I/O and no clock: `input(seg, now)` takes a parsed segment, `poll(now, emit)` runs timers
 * and hands every segment due to `emit` (synchronously: payloads are views of the send buffer),
 * `pollAt()` says when to call `poll` next. Randomness (ISN, timestamp offset) comes from the
 * injected source at open.
 *
 * Internally everything is a *stream offset*: the SYN is offset -1, the first data byte 0, a FIN
 * the offset after the last data byte. Sequence numbers exist only at the wire boundary
 * (`seqToOffset`/`offsetToSeq`), so streams past 2^32 bytes need no special care, and the two
 * replication limits are plain comparisons: never acknowledge past `ackLimit`, never transmit
 * past `sendLimit` (both in offsets; unbounded by default).
 */

import { offsetToSeq, seqBetween, seqGe, seqLt, seqToOffset } from '../wire/seq.ts';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpSegment, tcpSegment } from '../wire/tcp.ts';
import { Assembler, type AssemblerSnapshot } from './assembler.ts';
import { type KeepAliveConfig, type TcpConfig, tcpConfig } from './config.ts';
import {
  type CongestionControl,
  type CongestionSnapshot,
  createCongestionControl,
  restoreCongestionControl,
} from './congestion/index.ts';
import { RttEstimator, type RttSnapshot } from './rtt.ts';
import { Scoreboard } from './scoreboard.ts';
import { SendBuffer, type SendBufferSnapshot } from './send-buffer.ts';
import { isSynchronized, type TcpErrorCode, TcpState } from './state.ts';

/** The injected randomness: ISNs and timestamp offsets. */
export interface RandomSource {
  nextU32(): number;
}

export interface OpenOptions {
  localPort: number;
  remotePort: number;
  now: number;
  rng: RandomSource;
  config?: Partial<TcpConfig>;
  /** Initial send sequence number (else drawn from `rng`); SYN cookies choose it. */
  iss?: number;
}

const EMPTY = new Uint8Array(0);
const INF = Number.POSITIVE_INFINITY;
/** RFC 5681 2: DupThresh. */
const DUP_THRESH = 3;
/** RFC 7323 5.5: TS.Recent is invalid after 24 days of idleness. */
const PAWS_IDLE_US = 24 * 24 * 3600 * 1_000_000;
/** TCP option bytes of a timestamps option as sent (NOP, NOP, TS). */
const TS_OPTION_BYTES = 12;
/** RFC 6298 (5.7): the RTO for data after a retransmitted SYN without an RTT sample. */
const SYN_FALLBACK_RTO_US = 3_000_000;
/** Segments one `poll` may emit at most (a bound on the loop; cwnd bounds it long before). */
const MAX_BURST = 4096;

/** A range of sequence space to (re)transmit, in send offsets. */
interface Span {
  start: number;
  end: number;
}

export interface TcpCounters {
  segmentsOut: number;
  segmentsIn: number;
  /** Payload bytes transmitted, first sends and retransmissions. */
  bytesOut: number;
  bytesRetransmitted: number;
  segmentsRetransmitted: number;
  fastRecoveries: number;
  timeouts: number;
}

export interface TcpSnapshot {
  version: 1;
  takenAt: number;
  config: TcpConfig;
  state: TcpState;
  localPort: number;
  remotePort: number;
  passive: boolean;
  iss: number;
  irs: number;
  sndUna: number;
  sndMax: number;
  sndWnd: number;
  sndWl1: number;
  sndWl2: number;
  maxSndWnd: number;
  sndMss: number;
  peerMss: number;
  sndWscale: number;
  rcvWscale: number;
  sackOk: boolean;
  tsOk: boolean;
  wsOk: boolean;
  tsOffset: number;
  tsBaseUs: number;
  tsRecent: number;
  tsRecentAt: number;
  finQueued: boolean;
  finOffset: number;
  sendBuffer: SendBufferSnapshot;
  rcvNxt: number;
  readOffset: number;
  received: Uint8Array;
  peerFinOffset: number;
  assembler: AssemblerSnapshot;
  rcvRightEdge: number;
  ackLimit: number;
  sendLimit: number;
  lastAckSent: number;
  ackNow: boolean;
  delAckAt: number;
  bytesSinceAck: number;
  rtt: RttSnapshot;
  rttTimedAt: number;
  rttTimedEnd: number;
  cc: CongestionSnapshot;
  dupAcks: number;
  recovery: '' | 'fast' | 'rto';
  recoveryPoint: number;
  lostEnd: number;
  highRxt: number;
  sacked: number[];
  rtoAt: number;
  synNeedsSend: boolean;
  synSent: number;
  persistAt: number;
  persistBackoff: number;
  keepAliveAt: number;
  keepAliveProbes: number;
  timeWaitAt: number;
  lastSendAt: number;
  lastRecvAt: number;
  progressAt: number;
  error: TcpErrorCode | '';
  rstPending: boolean;
  lastChallengeAt: number;
  control: { seq: number; ack: number; flags: number }[];
  windowProbe: boolean;
  kickAcks: number;
  tsEcrFloor?: number;
  /**
   * After a take-over: segments up to this receive offset are acceptable even beyond our own
   * right edge (the old node may have advertised a larger one than it replicated); -1: none.
   */
  acceptEdge?: number;
  retransmits: number;
  softError: TcpErrorCode | '';
  counters: TcpCounters;
  clock: number;
}

/** JSON cannot hold Infinity: snapshots use this sentinel for "no deadline / unbounded". */
const NONE = -1;
const enc = (x: number) => (x === INF ? NONE : x);
const dec = (x: number) => (x === NONE ? INF : x);

export class TcpConnection {
  readonly config: TcpConfig;
  state: TcpState;
  readonly localPort: number;
  readonly remotePort: number;
  /** Created by a listener from a peer's SYN (passive open). */
  readonly passive: boolean;

  // Send sequence space (offsets; SYN = -1).
  readonly iss: number;
  private sndUna = -1;
  private sndMax = -1;
  private sndWnd = 0;
  private sndWl1 = -2;
  private sndWl2 = -2;
  private maxSndWnd = 0;
  /** Largest payload we put in a segment, options excluded (negotiated MSS, PMTU-clamped). */
  private sndMss: number;
  private peerMss = 0;
  private sndWscale = 0;
  private rcvWscale = 0;
  private sackOk = false;
  private tsOk = false;
  private wsOk = false;
  private tsOffset: number;
  private tsBaseUs: number;
  private tsRecent = 0;
  private tsRecentAt = -1;
  private finQueued = false;
  private finOffset = INF;
  private sendBuf: SendBuffer;

  // Receive sequence space (offsets; peer SYN = -1).
  private irs = 0;
  private rcvNxt = -1;
  private readOffset = 0;
  private received: Uint8Array[] = [];
  /** In-order arrivals kept for the replication layer (`observeArrivals`). */
  private arrivals: Uint8Array[] | undefined;
  /** Duplicate ACKs still to send after a take-over (`kickStart`). */
  private kickAcks = 0;
  /** After a take-over: timestamp echoes below this (sent by the old node) give no RTT; -1: none. */
  private tsEcrFloor = -1;
  /** See TcpSnapshot.acceptEdge. */
  private acceptEdge = -1;
  private receivedBytes = 0;
  private peerFinOffset = INF;
  private assembler: Assembler;
  private rcvRightEdge = 0;

  /** Never acknowledge past this receive offset (the standby must hold it first: docs/ARCHITECTURE.md §3). */
  ackLimit = INF;
  /** Never transmit past this send offset (the SYN is offset -1). */
  sendLimit = INF;

  private lastAckSent = -2;
  private ackNow = false;
  private delAckAt = INF;
  private bytesSinceAck = 0;

  private rtt: RttEstimator;
  private rttTimedAt = -1;
  private rttTimedEnd = -1;
  private cc: CongestionControl;
  private dupAcks = 0;
  private recovery: '' | 'fast' | 'rto' = '';
  private recoveryPoint = -1;
  private lostEnd = -1;
  private highRxt = -1;
  private sacked = new Scoreboard();

  private rtoAt = INF;
  private synNeedsSend = false;
  private synSent = 0;
  /** The next SYN(-ACK) is a kick-start's nudge (not a retry); transient, not replicated. */
  private synKicked = false;
  private persistAt = INF;
  private persistBackoff = 0;
  private keepAliveAt = INF;
  private keepAliveProbes = 0;
  private timeWaitAt = INF;
  private lastSendAt = -1;
  private lastRecvAt: number;
  /** Last time the peer acknowledged new data (or when data became outstanding): RFC 5482. */
  private progressAt = -1;
  /** Why the connection ended, if it ended badly. */
  error: TcpErrorCode | undefined;
  private rstPending = false;
  private lastChallengeAt = Number.NEGATIVE_INFINITY;
  /** Segments owed that no state derives: RSTs for unacceptable segments, challenge ACKs. */
  private control: { seq: number; ack: number; flags: number }[] = [];
  private windowProbe = false;
  private retransmits = 0;
  /** Counters for status and benchmarks (not behaviour). */
  readonly counters: TcpCounters = {
    segmentsOut: 0,
    segmentsIn: 0,
    bytesOut: 0,
    bytesRetransmitted: 0,
    segmentsRetransmitted: 0,
    fastRecoveries: 0,
    timeouts: 0,
  };
  private clock: number;

  private constructor(
    cfg: TcpConfig,
    localPort: number,
    remotePort: number,
    passive: boolean,
    iss: number,
    tsOffset: number,
    now: number,
  ) {
    this.config = cfg;
    this.localPort = localPort;
    this.remotePort = remotePort;
    this.passive = passive;
    this.iss = iss >>> 0;
    this.tsOffset = tsOffset >>> 0;
    this.tsBaseUs = now;
    this.clock = now;
    this.lastRecvAt = now;
    this.state = TcpState.Closed;
    this.sndMss = cfg.mss;
    this.sendBuf = new SendBuffer(cfg.sendBufferSize, 0);
    this.assembler = new Assembler(cfg.recvBufferSize);
    this.rtt = new RttEstimator({
      minRtoUs: cfg.minRtoUs,
      maxRtoUs: cfg.maxRtoUs,
      initialRtoUs: cfg.initialRtoUs,
    });
    this.cc = createCongestionControl(cfg.congestion, cfg.mss, cfg.initialCwndSegments);
    let ws = 0;
    while (ws < 14 && cfg.recvBufferSize > 0xffff * 2 ** ws) ws++;
    this.rcvWscale = cfg.windowScale ? ws : 0;
  }

  // ---------------------------------------------------------------------------------------------
  // Opening

  /** Active open (RFC 9293 3.10.1): a connection in SYN-SENT with its SYN due. */
  static connect(o: OpenOptions): TcpConnection {
    const cfg = tcpConfig(o.config);
    const iss = o.iss ?? o.rng.nextU32();
    const c = new TcpConnection(cfg, o.localPort, o.remotePort, false, iss, o.rng.nextU32(), o.now);
    c.state = TcpState.SynSent;
    c.synNeedsSend = true;
    return c;
  }

  /**
   * Passive open from a peer's SYN (RFC 9293 3.10.7.2, LISTEN state): a connection in
   * SYN-RECEIVED with its SYN-ACK due. The caller checked the segment is a SYN without ACK/RST.
   */
  static accept(syn: TcpSegment, o: OpenOptions): TcpConnection {
    const cfg = tcpConfig(o.config);
    const iss = o.iss ?? o.rng.nextU32();
    const c = new TcpConnection(cfg, o.localPort, o.remotePort, true, iss, o.rng.nextU32(), o.now);
    c.state = TcpState.SynReceived;
    c.takePeerSyn(syn, o.now);
    c.synNeedsSend = true;
    return c;
  }

  /** Options and sequence state from the peer's SYN (RFC 9293 3.10.7.2/3, RFC 7323, RFC 2018). */
  private takePeerSyn(syn: TcpSegment, now: number): void {
    const cfg = this.config;
    this.irs = syn.seq >>> 0;
    this.rcvNxt = 0;
    this.readOffset = 0;
    this.peerMss = syn.mss ?? cfg.defaultPeerMss;
    this.sndMss = Math.max(88, Math.min(cfg.mss, this.peerMss));
    // RFC 7323 2.2: scaling only when both SYNs carry the option; shift capped at 14 (2.3).
    this.wsOk = cfg.windowScale && syn.windowScale !== undefined;
    this.sndWscale = this.wsOk ? Math.min(14, syn.windowScale!) : 0;
    if (!this.wsOk) this.rcvWscale = 0;
    this.sackOk = cfg.sack && syn.sackPermitted;
    this.tsOk = cfg.timestamps && syn.tsVal !== undefined;
    if (this.tsOk) {
      this.tsRecent = syn.tsVal!;
      this.tsRecentAt = now;
    }
    // RFC 7323 2.2: the window of a SYN is never scaled.
    this.sndWnd = syn.window;
    this.maxSndWnd = syn.window;
    this.sndWl1 = -1;
    this.lastRecvAt = now;
  }

  // ---------------------------------------------------------------------------------------------
  // Application side

  /** In-order bytes waiting to be read. */
  get readable(): number {
    return this.receivedBytes;
  }

  /** Room in the send buffer. */
  get writable(): number {
    if (this.finQueued || !this.canSendData()) return 0;
    return this.sendBuf.free;
  }

  /** Our side is closed: a FIN is queued after the bytes written (`close`), or already sent. */
  get sendClosed(): boolean {
    return this.finQueued;
  }

  /** The peer's FIN has arrived and every byte before it has been read: end of stream. */
  get eof(): boolean {
    return this.peerFinOffset !== INF && this.rcvNxt > this.peerFinOffset && this.receivedBytes === 0;
  }

  /** Bytes consumed by the application so far (receive stream offset). */
  get readPosition(): number {
    return this.readOffset;
  }

  /** Bytes accepted from the application so far (send stream offset). */
  get writePosition(): number {
    return this.sendBuf.end;
  }

  /**
   * For a replication gate (`ackLimit`/`sendLimit`): what has already left (the last ACK sent, the
   * highest sequence offset sent) and what committing the current state would release (RCV.NXT;
   * the stream's end, FIN included). Offsets as in `snapshot()`.
   */
  releasePoints(): { ackSent: number; sent: number; ackTo: number; sendTo: number } {
    return {
      ackSent: this.lastAckSent,
      sent: this.sndMax,
      ackTo: this.rcvNxt,
      sendTo: this.finQueued ? this.finOffset + 1 : this.writePosition,
    };
  }

  /** Send offset acknowledged by the peer (data bytes; excludes SYN/FIN). */
  get acknowledged(): number {
    return Math.max(0, Math.min(this.sndUna, this.sendBuf.end));
  }

  /** When the last acceptable segment from the peer arrived (µs). */
  get lastReceivedAt(): number {
    return this.lastRecvAt;
  }

  /** Receive offset up to which bytes have arrived in order (the next expected byte). */
  get receivedPosition(): number {
    return Math.max(0, Math.min(this.rcvNxt, this.peerFinOffset));
  }

  /** Congestion window and smoothed RTT, for tests, benchmarks and status. */
  get stats(): {
    cwnd: number;
    ssthresh: number;
    srttUs: number | undefined;
    rtoUs: number;
    mss: number;
    sndWnd: number;
  } {
    return {
      cwnd: this.cc.cwnd,
      ssthresh: this.cc.ssthresh,
      srttUs: this.rtt.srtt,
      rtoUs: this.rtt.rto,
      mss: this.sndMss,
      sndWnd: this.sndWnd,
    };
  }

  private canSendData(): boolean {
    const s = this.state;
    return (
      s === TcpState.SynSent ||
      s === TcpState.SynReceived ||
      s === TcpState.Established ||
      s === TcpState.CloseWait
    );
  }

  /**
   * Keep every in-order byte that arrives (from the current `receivedPosition` on) for
   * `takeArrivals`, whether or not the application reads it first: the replication layer's view of
   * the receive stream. Off by default.
   */
  observeArrivals(on: boolean): void {
    this.arrivals = on ? [] : undefined;
  }

  /** In-order bytes that arrived since the last call (see `observeArrivals`), oldest first. */
  takeArrivals(): Uint8Array[] {
    const a = this.arrivals;
    if (a === undefined || a.length === 0) return [];
    this.arrivals = [];
    return a;
  }

  /** The bytes written from send offset `from` (not below the oldest held byte) to `writePosition`. */
  writtenSince(from: number): Uint8Array {
    const start = Math.max(from, this.sendBuf.start);
    const n = this.sendBuf.end - start;
    return n > 0 ? this.sendBuf.view(start, n) : EMPTY;
  }

  /**
   * Take-over kick-start (docs/ARCHITECTURE.md §6 step 3), for a connection just restored on a new node:
   * do not wait for the peer's back-off. Outstanding data (or a SYN/FIN) is retransmitted at once
   * from SND.UNA, else a probe at SND.UNA - 1 makes the peer answer with an ACK; and duplicate ACKs
   * make the peer fast-retransmit what it sent to the dead node (the first may count as a window
   * update, hence one more than the three of RFC 5681).
   */
  kickStart(now: number): void {
    if (this.state === TcpState.Closed || this.state === TcpState.TimeWait) return;
    this.clock = now;
    // Timings begun on the old node would measure the outage.
    this.rttTimedAt = -1;
    if (this.tsOk) this.tsEcrFloor = this.tsNow(now);
    if (!isSynchronized(this.state)) {
      // The SYN or SYN-ACK again, now, as a nudge: not through the timeout path, which would count
      // it against `synRetries` and back the timer off (a take-over's kick and its re-kicks at
      // each announcement used up the retries of a handshake stuck behind ARP in one second).
      this.synNeedsSend = true;
      this.synKicked = true;
    } else if (this.sndMax > this.sndUna || this.synNeedsSend) this.rtoAt = now;
    else this.windowProbe = true;
    if (isSynchronized(this.state)) this.kickAcks = 4;
  }

  /** Queues bytes for sending; returns how many the send buffer took (backpressure). */
  write(data: Uint8Array): number {
    if (this.finQueued || !this.canSendData() || data.length === 0) return 0;
    return this.sendBuf.write(data);
  }

  /** Takes up to `max` in-order bytes (all by default); undefined when none are waiting. */
  read(max = INF): Uint8Array | undefined {
    if (this.receivedBytes === 0 || max <= 0) return undefined;
    const first = this.received[0];
    let out: Uint8Array;
    if (first.length <= max && (this.received.length === 1 || first.length === max)) {
      out = first;
      this.received.shift();
    } else {
      const n = Math.min(max, this.receivedBytes);
      out = new Uint8Array(n);
      let o = 0;
      while (o < n) {
        const c = this.received[0];
        const take = Math.min(c.length, n - o);
        out.set(take === c.length ? c : c.subarray(0, take), o);
        o += take;
        if (take === c.length) this.received.shift();
        else this.received[0] = c.subarray(take);
      }
    }
    this.receivedBytes -= out.length;
    this.readOffset += out.length;
    // RFC 9293 3.8.6.2.2 / RFC 1122 4.2.3.3: announce a window that re-opens by a useful amount
    // (at least doubling what the peer may still send, as Linux's tcp_cleanup_rbuf).
    if (isSynchronized(this.state) && this.peerFinOffset === INF) {
      const offered = Math.max(0, this.rcvRightEdge - this.rcvNxt);
      const room = this.windowRoom();
      if (room >= 2 * offered && room - offered >= this.windowThreshold()) this.ackNow = true;
    }
    return out;
  }

  /**
   * Half-close (RFC 9293 3.10.4): a FIN follows the bytes already written. Before the handshake
   * completes the FIN waits for it (as Linux's shutdown(SHUT_WR)); `abort` discards instead.
   */
  close(): void {
    switch (this.state) {
      case TcpState.SynSent:
      case TcpState.SynReceived:
      case TcpState.Established:
      case TcpState.CloseWait:
        if (!this.finQueued) {
          this.finQueued = true;
          this.finOffset = this.sendBuf.end;
        }
        return;
      default:
        return;
    }
  }

  /**
   * Closed without a word (no RST): the connection now belongs to another node (a take-over
   * superseded this one), which must be the only one to speak for it.
   */
  discard(): void {
    this.rstPending = false;
    this.enterClosed('ECONNABORTED');
  }

  /** Bytes received out of order and held (the data SACK blocks report). */
  get outOfOrderBytes(): number {
    return this.assembler.bytes;
  }

  /** Abort (RFC 9293 3.10.5): a RST to the peer in synchronized states, everything dropped. */
  abort(): void {
    if (this.state === TcpState.Closed) return;
    if (this.state !== TcpState.SynSent && this.state !== TcpState.TimeWait) this.rstPending = true;
    this.enterClosed('ECONNABORTED');
  }

  // ---------------------------------------------------------------------------------------------
  // Clocks

  private tsNow(now: number): number {
    return (Math.floor((now - this.tsBaseUs) / 1000) + this.tsOffset) >>> 0;
  }

  // ---------------------------------------------------------------------------------------------
  // Input (RFC 9293 3.10.7)

  /** Processes one segment addressed to this connection. Never throws for any segment. */
  input(seg: TcpSegment, now: number): void {
    this.clock = now;
    this.counters.segmentsIn++;
    switch (this.state) {
      case TcpState.Closed:
        return;
      case TcpState.SynSent:
        this.inputSynSent(seg, now);
        return;
      default:
        this.inputSynchronized(seg, now);
    }
  }

  /** RFC 9293 3.10.7.3. */
  private inputSynSent(seg: TcpSegment, now: number): void {
    const f = seg.flags;
    let ackOk = false;
    if (f & TCP_ACK) {
      // First: the ACK must acknowledge our SYN exactly (SND.UNA < SEG.ACK <= SND.NXT).
      const ackOff = seqToOffset(this.iss, seg.ack, 0);
      if (ackOff !== 0) {
        if (!(f & TCP_RST)) this.queueControl(seg.ack, 0, TCP_RST);
        return;
      }
      ackOk = true;
    }
    if (f & TCP_RST) {
      if (ackOk) this.enterClosed('ECONNREFUSED');
      return;
    }
    if (!(f & TCP_SYN)) return;
    this.takePeerSyn(seg, now);
    // What our SYN advertised (RFC 7323 2.2: unscaled).
    this.rcvRightEdge = this.rcvNxt + Math.min(0xffff, this.windowRoom());
    if (ackOk) {
      this.sndUna = 0;
      this.rtoAt = INF;
      this.sampleRtt(seg, 0, now);
      this.state = TcpState.Established;
      this.afterEstablished(now);
      this.ackNow = true;
      // Data or FIN on the SYN-ACK (RFC 9293 3.10.7.3 "sixth"): processed as in ESTABLISHED.
      // The segment starts at the SYN (offset -1); its data at offset 0.
      if (seg.payload.length > 0 || f & TCP_FIN) this.processText(seg, -1, now);
    } else {
      // Simultaneous open (RFC 9293 3.5, figure 8): SYN-ACK with our ISS.
      this.state = TcpState.SynReceived;
      this.synNeedsSend = true;
      this.synSent = 0;
    }
  }

  private afterEstablished(now: number): void {
    // RFC 6298 (5.7): a retransmitted SYN and no RTT sample: data starts from a 3 s RTO.
    if (this.synSent > 1) this.rtt.fallback(SYN_FALLBACK_RTO_US);
    this.progressAt = now;
    this.armKeepAlive(now);
  }

  private inputSynchronized(seg: TcpSegment, now: number): void {
    const f = seg.flags;
    const rst = (f & TCP_RST) !== 0;
    const syn = (f & TCP_SYN) !== 0;
    const segOff = seqToOffset(this.irs, seg.seq, this.rcvNxt);
    const segLen = seg.payload.length + (syn ? 1 : 0) + (f & TCP_FIN ? 1 : 0);

    // RFC 7323 5.3 R1: PAWS, before the sequence check.
    if (this.tsOk && seg.tsVal !== undefined && !rst && this.tsRecentAt >= 0) {
      if (seqLt(seg.tsVal, this.tsRecent)) {
        if (now - this.tsRecentAt > PAWS_IDLE_US) {
          this.tsRecentAt = -1; // RFC 7323 5.5: stale TS.Recent, accept.
        } else {
          this.ackNow = true;
          return;
        }
      }
    }

    // First: sequence number acceptability (RFC 9293 3.10.7.4, the four cases). The window is
    // the right edge the peer may have been promised: ours, or after a take-over any the old
    // node could have advertised (its data beyond our own edge is trimmed below; its ACK counts).
    const wnd = Math.max(0, Math.max(this.rcvRightEdge, this.acceptEdge) - this.rcvNxt);
    let acceptable: boolean;
    if (segLen === 0)
      acceptable = wnd === 0 ? segOff === this.rcvNxt : segOff >= this.rcvNxt && segOff < this.rcvNxt + wnd;
    else if (wnd === 0) acceptable = false;
    else
      acceptable =
        (segOff >= this.rcvNxt && segOff < this.rcvNxt + wnd) ||
        (segOff + segLen - 1 >= this.rcvNxt && segOff + segLen - 1 < this.rcvNxt + wnd);
    // A retransmitted SYN in SYN-RECEIVED sits just before RCV.NXT: answer it with our SYN-ACK.
    if (this.state === TcpState.SynReceived && syn && !rst && segOff === -1) {
      // Simultaneous open (RFC 9293 3.5 figure 8, line 6): the peer's SYN-ACK acknowledging our
      // SYN completes the handshake (as Linux's tcp_validate_incoming lets it); answering it with
      // another SYN-ACK would ping-pong between two such peers for ever.
      if (f & TCP_ACK && this.sndMax >= 0 && seqToOffset(this.iss, seg.ack, 0) === 0) {
        this.state = TcpState.Established;
        this.sndUna = 0;
        this.rtoAt = INF;
        this.sampleRtt(seg, 0, now);
        this.sndWnd = seg.window; // RFC 7323 2.2: the window of a SYN is never scaled
        this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
        this.sndWl1 = -1;
        this.sndWl2 = 0;
        this.afterEstablished(now);
        return;
      }
      this.synNeedsSend = true;
      return;
    }
    if (!acceptable) {
      // RFC 5961 3.2: an out-of-window RST is dropped silently; anything else draws an ACK.
      if (!rst) {
        if (this.state === TcpState.TimeWait && f & TCP_FIN) this.timeWaitAt = now + this.config.timeWaitUs;
        this.ackNow = true;
      }
      return;
    }
    this.lastRecvAt = now;
    this.keepAliveProbes = 0;
    if (this.keepAliveAt !== INF) this.armKeepAlive(now);

    // Second: RST (RFC 9293 3.10.7.4 + RFC 5961 3.2: exact match resets, in-window challenges).
    if (rst) {
      if (segOff !== this.rcvNxt) {
        this.challengeAck(now);
        return;
      }
      switch (this.state) {
        case TcpState.SynReceived:
          this.enterClosed(this.passive ? 'ECONNRESET' : 'ECONNREFUSED');
          return;
        case TcpState.Closing:
        case TcpState.LastAck:
        case TcpState.TimeWait:
          this.enterClosed(undefined);
          return;
        default:
          this.enterClosed('ECONNRESET');
          return;
      }
    }

    // Fourth: SYN in a synchronized state (RFC 5961 4.2: challenge ACK, drop).
    if (syn) {
      this.challengeAck(now);
      return;
    }

    // Fifth: ACK.
    if (!(f & TCP_ACK)) return;
    const ackOff = seqToOffset(this.iss, seg.ack, this.sndUna);
    if (this.state === TcpState.SynReceived) {
      if (ackOff < 0 || ackOff > this.sndMax) {
        this.queueControl(seg.ack, 0, TCP_RST);
        return;
      }
      this.state = TcpState.Established;
      this.sndWnd = seg.window << this.sndWscale;
      this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
      this.sndWl1 = segOff;
      this.sndWl2 = ackOff;
      this.afterEstablished(now);
    }
    // RFC 5961 5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT].
    if (ackOff > this.sndMax) {
      this.ackNow = true;
      return;
    }
    if (ackOff < this.sndUna - Math.max(this.maxSndWnd, 1)) {
      this.challengeAck(now);
      return;
    }
    this.processAck(seg, segOff, ackOff, now);
    if ((this.state as TcpState) === TcpState.Closed) return;

    // RFC 7323 4.3: TS.Recent from a segment that covers Last.ACK.sent.
    if (
      this.tsOk &&
      seg.tsVal !== undefined &&
      segOff <= this.lastAckSent &&
      seqGe(seg.tsVal, this.tsRecent)
    ) {
      this.tsRecent = seg.tsVal;
      this.tsRecentAt = now;
    }

    // Seventh and eighth: text and FIN.
    if (seg.payload.length > 0 || f & TCP_FIN) this.processText(seg, segOff, now);
  }

  private processAck(seg: TcpSegment, segOff: number, ackOff: number, now: number): void {
    const sndUnaBefore = this.sndUna;
    const wndBefore = this.sndWnd;
    if (ackOff > this.sndUna) {
      this.sampleRtt(seg, ackOff, now);
      const acked = Math.max(0, Math.min(ackOff, this.sendBuf.end) - Math.max(this.sndUna, 0));
      this.sndUna = ackOff;
      this.sendBuf.trim(Math.max(0, Math.min(ackOff, this.sendBuf.end)));
      this.sacked.trimBelow(ackOff);
      if (this.highRxt < ackOff) this.highRxt = ackOff;
      if (this.lostEnd < ackOff) this.lostEnd = ackOff;
      this.dupAcks = 0;
      this.retransmits = 0;
      this.progressAt = now;
      this.windowProbe = false;
      this.persistBackoff = 0;
      if (this.recovery !== '') {
        if (ackOff >= this.recoveryPoint) {
          if (this.recovery === 'fast') this.cc.onRecoveryExit(now);
          this.recovery = '';
        } else if (this.recovery === 'fast' && (!this.sackOk || this.sacked.bytes === 0)) {
          // RFC 6582 3.2 step 5: a partial ACK; the next hole is lost too. With SACK, when the
          // receiver reports nothing held above the ACK (it lost everything after the hole, as a
          // node that took over from a dead one does), the scoreboard would never mark the rest
          // lost before the RTO: the NewReno rule applies.
          this.lostEnd = Math.max(this.lostEnd, Math.min(ackOff + this.sndMss, this.sndMax));
        }
      }
      // Slow start in RTO recovery; no growth in fast recovery (RFC 6675 5).
      if (this.recovery !== 'fast' && acked > 0) this.cc.onAck(acked, now, this.rtt.srtt);
      // RFC 6298 5.2, 5.3.
      this.rtoAt = this.sndUna >= this.sndMax ? INF : now + this.rtt.rto;
      if (this.state === TcpState.FinWait1 && this.sndUna > this.finOffset) this.state = TcpState.FinWait2;
      else if (this.state === TcpState.Closing && this.sndUna > this.finOffset) this.enterTimeWait(now);
      else if (this.state === TcpState.LastAck && this.sndUna > this.finOffset) {
        this.enterClosed(undefined);
        return;
      }
    }

    // SACK blocks (RFC 2018, RFC 6675 5); D-SACK blocks (RFC 2883) fall below SND.UNA and are ignored.
    if (this.sackOk && seg.sackBlocks !== undefined) {
      const b = seg.sackBlocks;
      for (let i = 0; i + 1 < b.length; i += 2) {
        const s = seqToOffset(this.iss, b[i], this.sndUna);
        const e = seqToOffset(this.iss, b[i + 1], this.sndUna);
        if (e <= s || s < this.sndUna || e > this.sndMax) continue;
        this.sacked.add(s, e);
      }
      const lost = this.sacked.lostBoundary(DUP_THRESH, this.sndMss);
      if (lost > this.lostEnd) this.lostEnd = lost;
    }

    // Window update (RFC 9293 3.10.7.4, SND.WL1/SND.WL2).
    if (this.sndWl1 < segOff || (this.sndWl1 === segOff && this.sndWl2 <= ackOff)) {
      this.sndWnd = seg.window << this.sndWscale;
      if (this.sndWnd > this.maxSndWnd) this.maxSndWnd = this.sndWnd;
      this.sndWl1 = segOff;
      this.sndWl2 = ackOff;
    }

    // RFC 5681 2 duplicate ACK: no data, no SYN/FIN, same ACK, data outstanding, same window.
    if (
      ackOff === sndUnaBefore &&
      this.sndMax > this.sndUna &&
      seg.payload.length === 0 &&
      !(seg.flags & (TCP_SYN | TCP_FIN)) &&
      this.sndWnd === wndBefore
    ) {
      this.dupAcks++;
    }

    // Entering loss recovery (RFC 6675 5 step 4; RFC 6582 3.2 steps 1-2 for peers without SACK).
    if (this.recovery === '' && this.sndMax > this.sndUna && this.sndUna > this.recoveryPoint) {
      const sackLoss = this.sackOk && this.lostEnd > this.sndUna;
      if (this.dupAcks >= DUP_THRESH || sackLoss) this.enterFastRecovery(now);
    }
    if (this.sndWnd > 0) this.persistAt = INF;
  }

  private enterFastRecovery(now: number): void {
    this.counters.fastRecoveries++;
    this.recovery = 'fast';
    this.recoveryPoint = this.sndMax;
    this.cc.onCongestionEvent(now, this.sndMax - this.sndUna);
    // The first un-SACKed segment is lost (RFC 6675 5 step 4.3, RFC 6582 step 2).
    const first = this.sacked.nextUnsacked(this.sndUna);
    this.lostEnd = Math.max(this.lostEnd, Math.min(first + this.sndMss, this.sndMax));
    this.highRxt = this.sndUna;
  }

  /**
   * RTT samples (RFC 6298 3): one timed segment per flight, in microseconds, voided by Karn's rule
   * when it is retransmitted. During loss recovery, when no segment can be timed, the
   * timestamp echo fills in (RFC 7323 4): it tells which transmission is acknowledged, but only
   * to the millisecond, so an echo from this same millisecond counts as 1 ms (as Linux does).
   */
  private sampleRtt(seg: TcpSegment, ackOff: number, now: number): void {
    if (this.rttTimedAt >= 0) {
      if (ackOff >= this.rttTimedEnd) {
        this.rtt.sample(Math.max(1, now - this.rttTimedAt));
        this.rttTimedAt = -1;
      }
      return;
    }
    if (this.recovery !== '' && this.tsOk && seg.tsEcr !== undefined && seg.tsEcr !== 0) {
      // An echo of a value sent before a take-over measures the outage, not the path.
      if (this.tsEcrFloor >= 0 && ((seg.tsEcr - this.tsEcrFloor) | 0) < 0) return;
      const ms = (this.tsNow(now) - seg.tsEcr) >>> 0;
      if (ms < 0x7fff_ffff) this.rtt.sample(Math.max(1, ms) * 1000);
    }
  }

  /** Data and FIN (RFC 9293 3.10.7.4 seventh and eighth). */
  private processText(seg: TcpSegment, segOff: number, now: number): void {
    const s = this.state;
    const dataStart = segOff + (seg.flags & TCP_SYN ? 1 : 0);
    if (seg.flags & TCP_FIN && this.peerFinOffset === INF) {
      if (
        s === TcpState.Established ||
        s === TcpState.FinWait1 ||
        s === TcpState.FinWait2 ||
        s === TcpState.SynReceived
      )
        this.peerFinOffset = dataStart + seg.payload.length;
    }
    const acceptsData = s === TcpState.Established || s === TcpState.FinWait1 || s === TcpState.FinWait2;
    let data = seg.payload;
    if (acceptsData && data.length > 0) {
      let off = dataStart;
      if (off < this.rcvNxt) {
        data = data.subarray(Math.min(data.length, this.rcvNxt - off));
        off = this.rcvNxt;
      }
      // Bytes past the right edge of the window are not stored (and so never acknowledged).
      const room = this.rcvRightEdge - off;
      if (data.length > room) data = data.subarray(0, Math.max(0, room));
      if (data.length > 0) {
        if (off === this.rcvNxt) {
          this.deliver(data.slice());
          const before = this.rcvNxt;
          for (
            let more = this.assembler.take(this.rcvNxt);
            more !== undefined;
            more = this.assembler.take(this.rcvNxt)
          )
            this.deliver(more);
          // RFC 5681 4.2: ACK at once when a gap is (partly) filled; else every second full segment.
          if (this.rcvNxt > before || this.assembler.bytes > 0) this.ackNow = true;
          this.bytesSinceAck += data.length;
          if (this.bytesSinceAck >= 2 * this.rcvMss()) this.ackNow = true;
          else if (this.delAckAt === INF) this.delAckAt = now + this.config.delayedAckUs;
        } else {
          this.assembler.insert(off, data);
          // RFC 5681 4.2: an out-of-order segment draws an immediate (duplicate) ACK.
          this.ackNow = true;
        }
      } else {
        this.ackNow = true; // a duplicate: re-acknowledge (it may be a lost ACK's retransmission)
      }
    } else if (seg.payload.length > 0) {
      this.ackNow = true;
    }
    this.maybeTakeFin(now);
  }

  private deliver(bytes: Uint8Array): void {
    this.arrivals?.push(bytes);
    this.received.push(bytes);
    this.receivedBytes += bytes.length;
    this.rcvNxt += bytes.length;
  }

  /** The peer's FIN counts once every byte before it has arrived. */
  private maybeTakeFin(now: number): void {
    if (this.peerFinOffset === INF || this.rcvNxt !== this.peerFinOffset) return;
    this.rcvNxt = this.peerFinOffset + 1;
    this.ackNow = true;
    switch (this.state) {
      case TcpState.SynReceived:
      case TcpState.Established:
        this.state = TcpState.CloseWait;
        break;
      case TcpState.FinWait1:
        if (this.sndUna > this.finOffset) this.enterTimeWait(now);
        else this.state = TcpState.Closing;
        break;
      case TcpState.FinWait2:
        this.enterTimeWait(now);
        break;
      default:
        break;
    }
  }

  private challengeAck(now: number): void {
    // RFC 5961 7: rate-limited.
    if (now - this.lastChallengeAt < this.config.challengeAckIntervalUs) return;
    this.lastChallengeAt = now;
    this.ackNow = true;
  }

  private queueControl(seq: number, ack: number, flags: number): void {
    if (this.control.length < 8) this.control.push({ seq: seq >>> 0, ack: ack >>> 0, flags });
  }

  // ---------------------------------------------------------------------------------------------
  // State changes

  private enterTimeWait(now: number): void {
    this.state = TcpState.TimeWait;
    this.clearTimers();
    this.timeWaitAt = now + this.config.timeWaitUs;
  }

  private enterClosed(error: TcpErrorCode | undefined): void {
    this.state = TcpState.Closed;
    if (error !== undefined && this.error === undefined) this.error = error;
    this.clearTimers();
    this.timeWaitAt = INF;
  }

  private clearTimers(): void {
    this.rtoAt = INF;
    this.delAckAt = INF;
    this.persistAt = INF;
    this.keepAliveAt = INF;
    this.synNeedsSend = false;
  }

  /** Nagle on (false) or off (true), as TCP_NODELAY. */
  setNoDelay(noDelay: boolean): void {
    this.config.noDelay = noDelay;
  }

  /** Keepalive on with these timings, or off (SO_KEEPALIVE with TCP_KEEPIDLE/INTVL/CNT). */
  setKeepAlive(k: KeepAliveConfig | undefined, now: number): void {
    this.config.keepAlive = k && { ...k };
    this.keepAliveProbes = 0;
    this.keepAliveAt =
      k && isSynchronized(this.state) && this.state !== TcpState.TimeWait ? now + k.idleUs : INF;
  }

  private armKeepAlive(now: number): void {
    const k = this.config.keepAlive;
    this.keepAliveAt = k ? now + k.idleUs : INF;
  }

  /**
   * RFC 6191: may a new SYN reuse this TIME-WAIT connection's tuple? Yes when its timestamp is
   * newer than the last seen, or (without timestamps) its sequence number lies beyond RCV.NXT.
   */
  acceptsNewSyn(syn: TcpSegment): boolean {
    if (this.state !== TcpState.TimeWait) return this.state === TcpState.Closed;
    if (this.tsOk && syn.tsVal !== undefined) return seqLt(this.tsRecent, syn.tsVal);
    return seqLt(offsetToSeq(this.irs, this.rcvNxt), syn.seq);
  }

  /**
   * ICMP fragmentation needed / packet too big for this connection (RFC 1191, RFC 8201): the
   * caller turns the reported MTU into an MSS. Smaller segments are sent from now on and what is
   * in flight is retransmitted at the new size at once, without a congestion response.
   */
  reduceMss(mss: number): void {
    const m = Math.max(88, Math.floor(mss));
    if (m >= this.sndMss) return;
    this.sndMss = m;
    this.cc.setMss(m);
    if (this.sndMax > this.sndUna && isSynchronized(this.state)) {
      this.lostEnd = this.sndMax;
      this.highRxt = this.sndUna;
      this.rttTimedAt = -1;
    }
  }

  /** A soft ICMP error (unreachable): reported if the connection later times out. */
  softError(code: TcpErrorCode): void {
    this.pendingSoftError = code;
  }
  private pendingSoftError: TcpErrorCode | undefined;

  /**
   * RFC 5927 4.1 (RFC 8201 4 for too-big): does an ICMP error quoting a segment of ours that
   * starts at `seq` refer to something in flight, SND.UNA <= seq <= SND.NXT? Only then may it act
   * on the connection: anyone else must guess a sequence number within the flight, as for a RST.
   * SND.NXT itself is included, as in Linux's tcp_v4_err (`between(seq, snd_una, snd_nxt)`): a
   * pure ACK or a probe quotes it. In SYN-SENT and SYN-RECEIVED that leaves ISS and ISS + 1.
   */
  icmpQuoteInFlight(seq: number): boolean {
    if (this.state === TcpState.Closed || this.state === TcpState.TimeWait) return false;
    const una = offsetToSeq(this.iss, this.sndUna);
    const nxt = offsetToSeq(this.iss, Math.max(this.sndMax, this.sndUna));
    return seqBetween(seq >>> 0, una, nxt);
  }

  /**
   * A validated ICMP error that is not too-big (destination unreachable, time exceeded, parameter
   * problem). Once synchronized it is a soft error (RFC 1122 4.2.3.9), reported only if the
   * connection later times out. During the handshake the attempt ends at once with `code`, as
   * Linux's tcp_v4_err and tcp_v6_err do (RFC 5461 4 describes the practice): nothing is sent, a
   * half-open connection just goes. Returns true when the connection closed.
   */
  icmpError(code: TcpErrorCode): boolean {
    if (this.state === TcpState.SynSent || this.state === TcpState.SynReceived) {
      this.enterClosed(code);
      return true;
    }
    this.pendingSoftError = code;
    return false;
  }

  // ---------------------------------------------------------------------------------------------
  // Timers and output

  /** The next instant `poll` has work: a timer, or now when something is ready to send. */
  pollAt(): number | undefined {
    if (this.state === TcpState.Closed)
      return this.rstPending || this.control.length > 0 ? this.clock : undefined;
    if (this.outputReady()) return this.clock;
    let t = this.rtoAt;
    if (this.delAckAt < t) t = this.delAckAt;
    if (this.persistAt < t) t = this.persistAt;
    if (this.keepAliveAt < t) t = this.keepAliveAt;
    if (this.timeWaitAt < t) t = this.timeWaitAt;
    const ut = this.userTimeoutAt();
    if (ut < t) t = ut;
    return t === INF ? undefined : t;
  }

  private userTimeoutAt(): number {
    const u = this.config.userTimeoutUs;
    return u > 0 && this.sndMax > this.sndUna && isSynchronized(this.state) ? this.progressAt + u : INF;
  }

  private outputReady(): boolean {
    if (this.control.length > 0 || this.kickAcks > 0) return true;
    // A SYN or SYN-ACK held by the limits blocks all other output (see `output`): nothing to do
    // until the layer above raises them, so `pollAt` must not answer "now" (a busy loop).
    if (this.synNeedsSend)
      return !(this.sendLimit < 0 || (this.state === TcpState.SynReceived && this.ackLimit < 0));
    if (!isSynchronized(this.state) || this.state === TcpState.TimeWait) return this.ackNow;
    // An active open whose peer's SYN may not be acknowledged yet (see `output`): wait.
    if (this.ackField() < 0) return false;
    if (this.ackNow || this.ackOwed()) return true;
    return this.nextSpan() !== undefined;
  }

  /** Runs due timers and emits every segment that may leave now. */
  poll(now: number, emit: (seg: TcpSegment) => void): void {
    this.clock = now;
    this.runTimers(now);
    this.output(now, emit);
  }

  private runTimers(now: number): void {
    if (this.timeWaitAt <= now) {
      this.timeWaitAt = INF;
      if (this.state === TcpState.TimeWait) this.enterClosed(undefined);
      return;
    }
    if (this.state === TcpState.Closed) return;
    if (this.userTimeoutAt() <= now) {
      this.rstPending = true;
      this.enterClosed('ETIMEDOUT');
      return;
    }
    if (this.rtoAt <= now) this.onRetransmitTimeout(now);
    if (this.delAckAt <= now) {
      this.delAckAt = INF;
      this.ackNow = true;
    }
    if (this.persistAt <= now) {
      // RFC 9293 3.8.6.1: probe the zero window; RFC 1122 4.2.2.17: back off, never give up.
      this.persistAt = INF;
      this.windowProbe = true;
      this.persistBackoff++;
    }
    if (this.keepAliveAt <= now) {
      const k = this.config.keepAlive!;
      if (this.keepAliveProbes >= k.count) {
        this.rstPending = true;
        this.enterClosed('ETIMEDOUT');
        return;
      }
      this.keepAliveProbes++;
      this.windowProbe = true; // the same segment: SEG.SEQ = SND.UNA - 1, no data (RFC 1122 4.2.3.6)
      this.keepAliveAt = now + k.intervalUs;
    }
  }

  private onRetransmitTimeout(now: number): void {
    this.rtoAt = INF;
    if (this.state === TcpState.SynSent || this.state === TcpState.SynReceived) {
      if (this.synSent > this.config.synRetries) {
        this.enterClosed(this.pendingSoftError ?? 'ETIMEDOUT');
        return;
      }
      this.rtt.backoff();
      this.synNeedsSend = true;
      return;
    }
    if (this.sndMax <= this.sndUna) return;
    if (this.retransmits >= this.config.maxRetransmissions) {
      this.rstPending = true;
      this.enterClosed(this.pendingSoftError ?? 'ETIMEDOUT');
      return;
    }
    this.retransmits++;
    this.counters.timeouts++;
    // RFC 6298 5.5-5.6, RFC 5681 3.1 eq. 4, RFC 6582 4 (recover = highest sent).
    this.rtt.backoff();
    this.cc.onTimeout(now, this.sndMax - this.sndUna);
    this.recovery = 'rto';
    this.recoveryPoint = this.sndMax;
    this.lostEnd = this.sndMax;
    // RFC 2018 8: after a timeout the SACKed bits are turned off, since the receiver may have
    // reneged (a node that took over holds nothing the dead one only SACKed): everything from
    // SND.UNA is resent, and the timer is armed again by that.
    this.sacked.clear();
    this.highRxt = this.sndUna;
    this.dupAcks = 0;
    this.rttTimedAt = -1;
  }

  /** The ACK field we may send: RCV.NXT, held back by `ackLimit`. */
  private ackField(): number {
    return this.rcvNxt < this.ackLimit ? this.rcvNxt : this.ackLimit;
  }

  private ackOwed(): boolean {
    return this.ackField() > this.lastAckSent && this.delAckAt === INF && this.bytesSinceAck === 0;
  }

  /**
   * The size of a full-sized segment from the peer (RFC 5681 4.2 ACKs every second one): the
   * smaller MSS of the two, less the timestamp option every segment carries (RFC 6691). Counting
   * our own MSS would let two 1448-byte segments go unacknowledged until the delayed-ACK timer.
   */
  private rcvMss(): number {
    const m = this.peerMss > 0 ? Math.min(this.config.mss, this.peerMss) : this.config.mss;
    return this.tsOk ? m - TS_OPTION_BYTES : m;
  }

  /** Receiver SWS avoidance (RFC 9293 3.8.6.2.2): advance the window by min(MSS, buffer/2) or more. */
  private windowThreshold(): number {
    return Math.max(1, Math.min(this.rcvMss(), this.config.recvBufferSize >>> 1));
  }

  /** Free receive buffer space. */
  private windowRoom(): number {
    const used = this.receivedBytes + this.assembler.bytes;
    return Math.max(0, this.config.recvBufferSize - used);
  }

  /**
   * The window to advertise with ACK field `ack`: never shrinking the right edge (RFC 9293
   * 3.8.6.2.2, RFC 7323 2.4), advancing it only by useful amounts (receiver SWS avoidance).
   */
  private windowField(ack: number, syn: boolean): number {
    const edge = this.rcvNxt + this.windowRoom();
    const from = Math.max(this.rcvRightEdge, this.rcvNxt);
    let target = this.rcvRightEdge;
    if (edge - from >= this.windowThreshold()) target = edge;
    // RCV.WND is what we advertise: no more than the field can say (65535, scaled unless a SYN).
    const unit = syn ? 1 : 2 ** this.rcvWscale;
    if (target - ack > 0xffff * unit) target = ack + 0xffff * unit;
    // Scaling rounds the window down, except where that would make the advertised edge recede
    // (RFC 7323 2.4): then up, and the few bytes over the buffer are accepted all the same.
    let field = Math.max(0, Math.min(0xffff, Math.floor((target - ack) / unit)));
    if (ack + field * unit < this.rcvRightEdge)
      field = Math.min(0xffff, Math.ceil((this.rcvRightEdge - ack) / unit));
    const advertised = ack + field * unit;
    if (advertised > this.rcvRightEdge) this.rcvRightEdge = advertised;
    return field;
  }

  private segment(seqOff: number, flags: number, payload: Uint8Array, now: number): TcpSegment {
    this.counters.segmentsOut++;
    this.counters.bytesOut += payload.length;
    const syn = (flags & TCP_SYN) !== 0;
    let ack = 0;
    if (flags & TCP_ACK) {
      const a = this.ackField();
      ack = offsetToSeq(this.irs, a);
      this.lastAckSent = a;
      this.ackNow = false;
      this.delAckAt = INF;
      this.bytesSinceAck = 0;
    }
    let sackBlocks: number[] | undefined;
    if (!syn && this.sacking()) {
      const b = this.assembler.sackBlocks(this.rcvNxt, this.maxSackBlocks());
      if (b.length > 0) {
        sackBlocks = b;
        for (let i = 0; i < b.length; i++) b[i] = offsetToSeq(this.irs, b[i]);
      }
    }
    const ws = this.windowField(flags & TCP_ACK ? this.ackField() : this.rcvNxt, syn);
    return {
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq: offsetToSeq(this.iss, seqOff),
      ack,
      headerLength: 0,
      reserved: 0,
      flags,
      window: ws,
      checksum: 0,
      urgentPointer: 0,
      mss: undefined,
      windowScale: undefined,
      sackPermitted: false,
      sackBlocks,
      tsVal: this.tsOk ? this.tsNow(now) : undefined,
      tsEcr: this.tsOk ? this.tsRecent : undefined,
      payload,
    };
  }

  private output(now: number, emit: (seg: TcpSegment) => void): void {
    for (const c of this.control.splice(0)) {
      emit(this.bareSegment(c.seq, c.ack, c.flags));
    }
    if (this.rstPending) {
      this.rstPending = false;
      // RFC 9293 3.10.5: <SEQ=SND.NXT><CTL=RST>, with an ACK as Linux sends it.
      const seg = this.bareSegment(
        offsetToSeq(this.iss, Math.max(this.sndMax, 0)),
        offsetToSeq(this.irs, this.rcvNxt),
        TCP_RST | TCP_ACK,
      );
      emit(seg);
    }
    if (this.state === TcpState.Closed) return;

    if (this.synNeedsSend) {
      // The SYN (send offset -1) past `sendLimit`, or a SYN-ACK whose ACK of the peer's SYN
      // (receive offset 0) is past `ackLimit`: hold it.
      if (this.sendLimit < 0 || (this.state === TcpState.SynReceived && this.ackLimit < 0)) return;
      this.synNeedsSend = false;
      emit(this.synSegment(now));
      // A kick-start's resend is not a retry (see `kickStart`), nor a sample (Karn).
      const kicked = this.synKicked;
      this.synKicked = false;
      if (!kicked) this.synSent++;
      this.sndMax = 0;
      this.rtoAt = now + this.rtt.rto;
      this.lastSendAt = now;
      if (kicked) this.rttTimedAt = -1;
      else if (this.rttTimedAt < 0 && this.synSent === 1) {
        this.rttTimedAt = now;
        this.rttTimedEnd = 0;
      } else if (this.synSent > 1) this.rttTimedAt = -1;
      return;
    }
    if (this.state === TcpState.SynSent || this.state === TcpState.SynReceived) {
      if (this.ackNow && this.state === TcpState.SynReceived) {
        this.ackNow = false;
      }
      return;
    }

    // An active open that got its SYN-ACK before `ackLimit` covers the peer's SYN (receive offset
    // 0: the standby does not hold the initial sequence number yet): every segment would carry
    // the ACK of the SYN itself, which the peer answers with a RST (RFC 9293 3.10.7.3). Nothing
    // leaves until the limit is raised, as a passive open holds its SYN-ACK.
    if (this.ackField() < 0) return;
    let sent = 0;
    if (this.state !== TcpState.TimeWait) {
      let span = this.nextSpan();
      if (
        span !== undefined &&
        this.lastSendAt >= 0 &&
        this.sndMax === this.sndUna &&
        now - this.lastSendAt > this.rtt.rto
      ) {
        // RFC 5681 4.1: restart the window when sending resumes after an idle period.
        this.cc.onIdle(now);
        span = this.nextSpan();
      }
      for (; span !== undefined && sent < MAX_BURST; span = this.nextSpan()) {
        emit(this.dataSegment(span, now));
        sent++;
      }
      if (sent === 0) this.armPersist(now);
    }
    if (this.windowProbe) {
      this.windowProbe = false;
      if (sent === 0) {
        // RFC 1122 4.2.3.6 / Linux: SEG.SEQ = SND.UNA - 1 with no data elicits an ACK.
        emit(this.segment(this.sndUna - 1, TCP_ACK, EMPTY, now));
        sent++;
      }
    }
    for (; this.kickAcks > 0; this.kickAcks--) emit(this.segment(this.sndMax, TCP_ACK, EMPTY, now));
    if (sent === 0 && (this.ackNow || this.ackOwed())) {
      if (this.ackField() > this.lastAckSent || this.ackNow)
        emit(this.segment(this.sndMax, TCP_ACK, EMPTY, now));
      this.ackNow = false;
    }
  }

  private armPersist(now: number): void {
    const waiting = this.sendBuf.end > this.sndMax || (this.finQueued && this.sndMax <= this.finOffset);
    if (
      this.sndWnd === 0 &&
      waiting &&
      this.sndMax === this.sndUna &&
      this.persistAt === INF &&
      this.rtoAt === INF
    ) {
      const base = Math.max(this.rtt.rto, this.config.minRtoUs);
      this.persistAt = now + Math.min(this.config.maxRtoUs, base * 2 ** Math.min(this.persistBackoff, 30));
    }
  }

  private bareSegment(seq: number, ack: number, flags: number): TcpSegment {
    this.counters.segmentsOut++;
    return tcpSegment({ srcPort: this.localPort, dstPort: this.remotePort, seq, ack, flags });
  }

  private synSegment(now: number): TcpSegment {
    const cfg = this.config;
    const synAck = this.state === TcpState.SynReceived;
    const seg = this.segment(-1, synAck ? TCP_SYN | TCP_ACK : TCP_SYN, EMPTY, now);
    seg.mss = cfg.mss;
    // On a SYN-ACK, only what the peer offered (RFC 7323 1.3, RFC 2018 2).
    const offerWs = synAck ? this.wsOk : cfg.windowScale;
    const offerTs = synAck ? this.tsOk : cfg.timestamps;
    seg.windowScale = offerWs ? this.rcvWscale : undefined;
    seg.sackPermitted = synAck ? this.sackOk : cfg.sack;
    seg.tsVal = offerTs ? this.tsNow(now) : undefined;
    seg.tsEcr = offerTs ? (synAck ? this.tsRecent : 0) : undefined;
    seg.sackBlocks = undefined;
    if (!synAck) {
      seg.ack = 0;
      seg.window = Math.min(0xffff, cfg.recvBufferSize);
    }
    return seg;
  }

  /**
   * Do segments carry SACK blocks now: out-of-order data held, SACK agreed, and no `ackLimit`.
   * A SACK block acknowledges too (selectively): under a replication limit the blocks would
   * announce bytes the standby does not hold, so none are sent (I2, docs/ARCHITECTURE.md §1).
   */
  private sacking(): boolean {
    return this.sackOk && this.assembler.bytes > 0 && this.ackLimit === INF;
  }

  /** SACK blocks a segment carries at most: 4, or 3 beside timestamps (40 bytes of options). */
  private maxSackBlocks(): number {
    return this.tsOk ? 3 : 4;
  }

  /**
   * Largest payload per segment: the MSS less the options the next segment carries (RFC 6691):
   * timestamps, and the SACK blocks while out-of-order data is held (as Linux's tcp_current_mss),
   * so a segment never outgrows the MTU.
   */
  private maxPayload(): number {
    let opts = this.tsOk ? TS_OPTION_BYTES : 0;
    if (this.sacking()) {
      const n = this.assembler.sackBlockCount(this.rcvNxt, this.maxSackBlocks());
      if (n > 0) opts += 4 + 8 * n;
    }
    return Math.max(1, this.sndMss - opts);
  }

  /** Bytes in flight per RFC 6675 SetPipe: outstanding, less SACKed and lost-not-resent. */
  private pipe(): number {
    let p = this.sndMax - this.sndUna - this.sacked.bytes;
    if (this.lostEnd > this.highRxt) {
      const from = Math.max(this.highRxt, this.sndUna);
      p -= this.lostEnd - from - this.sacked.bytesIn(from, this.lostEnd);
    }
    if (this.recovery === 'fast' && !this.sackOk) p -= this.dupAcks * this.sndMss; // RFC 6582 inflation, as pipe
    return p < 0 ? 0 : p;
  }

  /** The next range to send, or undefined: retransmission first (RFC 6675 NextSeg), then new data. */
  private nextSpan(): Span | undefined {
    if (!isSynchronized(this.state) || this.state === TcpState.TimeWait) return undefined;
    const cwnd = this.cc.cwnd;
    const pipe = this.pipe();
    const mp = this.maxPayload();
    const seqEnd = this.finQueued ? this.finOffset + 1 : this.sendBuf.end;
    // 1. Lost data not yet retransmitted in this episode.
    if (this.lostEnd > this.highRxt) {
      const s = this.sacked.nextUnsacked(Math.max(this.highRxt, this.sndUna));
      if (s < this.lostEnd && s < this.sndMax) {
        // The first retransmission of fast recovery goes regardless of cwnd (RFC 5681 3.2 step 4,
        // RFC 6675 5 step 4.3, RFC 6582 3.2 steps 2 and 5 for a NewReno partial ACK): with
        // cwnd halved and pipe still counting the flight, waiting would leave it to the RTO.
        const first =
          this.recovery === 'fast' && this.highRxt <= this.sndUna && (!this.sackOk || this.dupAcks > 0);
        if (pipe >= cwnd && !first) return undefined;
        // Within the peer's window too: a retransmission past its right edge is only dropped.
        const e = Math.min(
          s + mp,
          this.lostEnd,
          this.sndMax,
          this.sacked.nextSacked(s),
          this.sndUna + this.sndWnd,
        );
        if (e > s) return { start: s, end: e };
      }
    }
    // 2. New data (or a FIN), within the peer's window, cwnd and `sendLimit`.
    const s = this.sndMax;
    if (s >= seqEnd) return undefined;
    const allowance =
      this.recovery === '' && this.config.limitedTransmit ? Math.min(this.dupAcks, 2) * this.sndMss : 0;
    if (pipe >= cwnd + allowance) return undefined;
    const limit = Math.min(this.sndUna + this.sndWnd, this.sendLimit);
    const dataEnd = this.sendBuf.end;
    const finGoes = this.finQueued && this.finOffset < this.sendLimit;
    let e = Math.min(s + mp, dataEnd, limit);
    if (e > s) {
      if (e - s < mp) {
        // Nagle (RFC 9293 3.7.4) and sender SWS avoidance (3.8.6.2.1): a short segment only when it
        // carries everything queued and nothing is outstanding (or Nagle is off, or we are closing),
        // or when it fills half the largest window the peer offered.
        const allQueued = e === dataEnd;
        const idle = this.sndMax === this.sndUna;
        const bigEnough = this.maxSndWnd > 0 && e - s >= this.maxSndWnd / 2;
        if (!((allQueued && (this.config.noDelay || idle || finGoes)) || bigEnough)) return undefined;
      }
      if (e === dataEnd && finGoes) e = this.finOffset + 1; // piggyback the FIN
      return { start: s, end: e };
    }
    // 3. A FIN alone, once every data byte is out (it needs no window).
    if (this.finQueued && s === this.finOffset && this.finOffset < this.sendLimit)
      return { start: s, end: s + 1 };
    return undefined;
  }

  private dataSegment(span: Span, now: number): TcpSegment {
    const dataEnd = Math.min(span.end, this.sendBuf.end);
    const len = Math.max(0, dataEnd - span.start);
    const payload = len > 0 ? this.sendBuf.view(span.start, len) : EMPTY;
    let flags = TCP_ACK;
    const fin = this.finQueued && span.end > this.finOffset;
    if (fin) flags |= TCP_FIN;
    if (len > 0 && dataEnd === this.sendBuf.end) flags |= TCP_PSH;
    const seg = this.segment(span.start, flags, payload, now);
    if (span.end > this.sndMax) {
      // New data.
      if (this.sndMax === this.sndUna) this.progressAt = now;
      this.sndMax = span.end;
      if (this.rttTimedAt < 0) {
        this.rttTimedAt = now;
        this.rttTimedEnd = span.end;
      }
      if (fin) {
        if (this.state === TcpState.Established) this.state = TcpState.FinWait1;
        else if (this.state === TcpState.CloseWait) this.state = TcpState.LastAck;
      }
    } else {
      // A retransmission: Karn's rule voids a timing that covers it.
      if (this.rttTimedAt >= 0 && span.start < this.rttTimedEnd) this.rttTimedAt = -1;
      this.highRxt = Math.max(this.highRxt, span.end);
      this.counters.segmentsRetransmitted++;
      this.counters.bytesRetransmitted += len;
    }
    if (this.rtoAt === INF) this.rtoAt = now + this.rtt.rto;
    this.lastSendAt = now;
    return seg;
  }

  // ---------------------------------------------------------------------------------------------
  // Snapshot and restore (docs/ARCHITECTURE.md §3 "a connection is a value")

  /**
   * The whole connection as plain data (JSON-safe but for byte buffers). `now` is the instant it
   * is taken (default: the last call's); `restore` maps that instant onto its own clock. Without
   * `buffers` the byte buffers are left empty (their offsets kept): the state alone, cheap to take.
   */
  snapshot(now: number = this.clock, buffers = true): TcpSnapshot {
    const received = new Uint8Array(buffers ? this.receivedBytes : 0);
    let o = 0;
    for (const c of buffers ? this.received : []) {
      received.set(c, o);
      o += c.length;
    }
    return {
      version: 1,
      takenAt: now,
      config: { ...this.config, keepAlive: this.config.keepAlive && { ...this.config.keepAlive } },
      state: this.state,
      localPort: this.localPort,
      remotePort: this.remotePort,
      passive: this.passive,
      iss: this.iss,
      irs: this.irs,
      sndUna: this.sndUna,
      sndMax: this.sndMax,
      sndWnd: this.sndWnd,
      sndWl1: this.sndWl1,
      sndWl2: this.sndWl2,
      maxSndWnd: this.maxSndWnd,
      sndMss: this.sndMss,
      peerMss: this.peerMss,
      sndWscale: this.sndWscale,
      rcvWscale: this.rcvWscale,
      sackOk: this.sackOk,
      tsOk: this.tsOk,
      wsOk: this.wsOk,
      tsOffset: this.tsOffset,
      tsBaseUs: this.tsBaseUs,
      tsRecent: this.tsRecent,
      tsRecentAt: this.tsRecentAt,
      finQueued: this.finQueued,
      finOffset: enc(this.finOffset),
      sendBuffer: buffers
        ? this.sendBuf.snapshot()
        : { start: this.sendBuf.start, data: EMPTY, capacity: this.sendBuf.capacity },
      rcvNxt: this.rcvNxt,
      readOffset: this.readOffset,
      received,
      peerFinOffset: enc(this.peerFinOffset),
      assembler: buffers
        ? this.assembler.snapshot()
        : { ranges: [], recent: [], maxBytes: this.assembler.maxBytes },
      rcvRightEdge: this.rcvRightEdge,
      ackLimit: enc(this.ackLimit),
      sendLimit: enc(this.sendLimit),
      lastAckSent: this.lastAckSent,
      ackNow: this.ackNow,
      delAckAt: enc(this.delAckAt),
      bytesSinceAck: this.bytesSinceAck,
      rtt: this.rtt.snapshot(),
      rttTimedAt: this.rttTimedAt,
      rttTimedEnd: this.rttTimedEnd,
      cc: this.cc.snapshot(),
      dupAcks: this.dupAcks,
      recovery: this.recovery,
      recoveryPoint: this.recoveryPoint,
      lostEnd: this.lostEnd,
      highRxt: this.highRxt,
      sacked: this.sacked.ranges.slice(),
      rtoAt: enc(this.rtoAt),
      synNeedsSend: this.synNeedsSend,
      synSent: this.synSent,
      persistAt: enc(this.persistAt),
      persistBackoff: this.persistBackoff,
      keepAliveAt: enc(this.keepAliveAt),
      keepAliveProbes: this.keepAliveProbes,
      timeWaitAt: enc(this.timeWaitAt),
      lastSendAt: this.lastSendAt,
      lastRecvAt: this.lastRecvAt,
      progressAt: this.progressAt,
      error: this.error ?? '',
      rstPending: this.rstPending,
      lastChallengeAt: this.lastChallengeAt === Number.NEGATIVE_INFINITY ? NONE : this.lastChallengeAt,
      control: this.control.map((c) => ({ ...c })),
      windowProbe: this.windowProbe,
      kickAcks: this.kickAcks,
      tsEcrFloor: this.tsEcrFloor,
      acceptEdge: this.acceptEdge,
      retransmits: this.retransmits,
      softError: this.pendingSoftError ?? '',
      counters: { ...this.counters },
      clock: this.clock,
    };
  }

  /**
   * A connection that behaves exactly as the snapshotted one would have. `now` is the restoring
   * side's clock: every timer and the timestamp clock move by `now - s.takenAt`, so a restore on
   * another host's clock keeps relative deadlines.
   */
  static restore(s: TcpSnapshot, now: number = s.takenAt): TcpConnection {
    if (s.version !== 1)
      throw new Error(`TcpConnection.restore: unknown snapshot version ${String(s.version)}.`);
    const d = now - s.takenAt;
    const shift = (x: number) => (x === NONE ? INF : x + d);
    const c = new TcpConnection(
      tcpConfig(s.config),
      s.localPort,
      s.remotePort,
      s.passive,
      s.iss,
      s.tsOffset,
      now,
    );
    c.state = s.state;
    c.irs = s.irs;
    c.sndUna = s.sndUna;
    c.sndMax = s.sndMax;
    c.sndWnd = s.sndWnd;
    c.sndWl1 = s.sndWl1;
    c.sndWl2 = s.sndWl2;
    c.maxSndWnd = s.maxSndWnd;
    c.sndMss = s.sndMss;
    c.peerMss = s.peerMss;
    c.sndWscale = s.sndWscale;
    c.rcvWscale = s.rcvWscale;
    c.sackOk = s.sackOk;
    c.tsOk = s.tsOk;
    c.wsOk = s.wsOk;
    c.tsBaseUs = s.tsBaseUs + d;
    c.tsRecent = s.tsRecent;
    c.tsRecentAt = s.tsRecentAt < 0 ? s.tsRecentAt : s.tsRecentAt + d;
    c.finQueued = s.finQueued;
    c.finOffset = dec(s.finOffset);
    c.sendBuf = SendBuffer.restore(s.sendBuffer);
    c.rcvNxt = s.rcvNxt;
    c.readOffset = s.readOffset;
    c.received = s.received.length > 0 ? [s.received.slice()] : [];
    c.receivedBytes = s.received.length;
    c.peerFinOffset = dec(s.peerFinOffset);
    c.assembler = Assembler.restore(s.assembler);
    c.rcvRightEdge = s.rcvRightEdge;
    c.ackLimit = dec(s.ackLimit);
    c.sendLimit = dec(s.sendLimit);
    c.lastAckSent = s.lastAckSent;
    c.ackNow = s.ackNow;
    c.delAckAt = shift(s.delAckAt);
    c.bytesSinceAck = s.bytesSinceAck;
    c.rtt = new RttEstimator(
      { minRtoUs: c.config.minRtoUs, maxRtoUs: c.config.maxRtoUs, initialRtoUs: c.config.initialRtoUs },
      s.rtt,
    );
    c.rttTimedAt = s.rttTimedAt < 0 ? -1 : s.rttTimedAt + d;
    c.rttTimedEnd = s.rttTimedEnd;
    c.cc = restoreCongestionControl(s.cc);
    c.dupAcks = s.dupAcks;
    c.recovery = s.recovery;
    c.recoveryPoint = s.recoveryPoint;
    c.lostEnd = s.lostEnd;
    c.highRxt = s.highRxt;
    c.sacked = new Scoreboard(s.sacked);
    c.rtoAt = shift(s.rtoAt);
    c.synNeedsSend = s.synNeedsSend;
    c.synSent = s.synSent;
    c.persistAt = shift(s.persistAt);
    c.persistBackoff = s.persistBackoff;
    c.keepAliveAt = shift(s.keepAliveAt);
    c.keepAliveProbes = s.keepAliveProbes;
    c.timeWaitAt = shift(s.timeWaitAt);
    c.lastSendAt = s.lastSendAt < 0 ? -1 : s.lastSendAt + d;
    c.lastRecvAt = s.lastRecvAt + d;
    c.progressAt = s.progressAt < 0 ? -1 : s.progressAt + d;
    c.error = s.error === '' ? undefined : s.error;
    c.rstPending = s.rstPending;
    c.lastChallengeAt = s.lastChallengeAt === NONE ? Number.NEGATIVE_INFINITY : s.lastChallengeAt + d;
    c.control = s.control.map((x) => ({ ...x }));
    c.windowProbe = s.windowProbe;
    c.kickAcks = s.kickAcks ?? 0;
    c.tsEcrFloor = s.tsEcrFloor ?? -1;
    c.acceptEdge = s.acceptEdge ?? -1;
    c.retransmits = s.retransmits;
    c.pendingSoftError = s.softError === '' ? undefined : s.softError;
    Object.assign(c.counters, s.counters);
    c.clock = s.clock + d;
    return c;
  }
}
