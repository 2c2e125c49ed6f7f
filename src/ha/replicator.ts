/**
 * The active's side of replication (docs/ARCHITECTURE.md §4): watches the stack (StackObserver),
 * turns everything one turn of the event loop did into one log batch, and holds each
 * connection's ACKs and transmissions (`ackLimit`, `sendLimit`) until the standby has
 * acknowledged the batch that carries them (sync mode): group commit, one round trip per turn.
 *
 * - A new connection starts held (its SYN or SYN-ACK waits for its `open` to commit).
 * - `bootstrap` sends every connection, buffers included, to a standby that just joined: a reset
 *   batch, then chunks among the live batches; nothing is held while they travel: the standby
 *   catches up on the batches as in async mode (it cannot take over yet, so nothing it lacks can
 *   be lost to a take-over). Once it has applied the last chunk and answers promptly, the next
 *   batch is marked `sync`: from it on
 *   output is held again, at what has already left, and the standby that applies it holds
 *   everything released. A standby joining under load costs clients one round trip, not the
 *   transfer of the whole snapshot.
 * - With no standby (`detach`) every limit is lifted: the node serves alone (degraded).
 * - In async mode batches flow the same way but limits are never set.
 */
import type { NetStack, StackConnection, StackObserver } from '../stack/stack.ts';
import type { TcpConnection, TcpSnapshot } from '../tcp/connection.ts';
import {
  type Batch,
  jsonBytes,
  type LogRecord,
  REC_CKPT,
  REC_CONN,
  REC_GONE,
  REC_RECV,
  REC_SEND,
  TAG_OFFSET,
} from './log.ts';

const INF = Number.POSITIVE_INFINITY;
/** An ACK limit no stream offset reaches: nothing held, but no SACK blocks (see `unhold`). */
const CATCHING_UP_ACK_LIMIT = Number.MAX_SAFE_INTEGER;
/**
 * How long (µs) after its bootstrap was acknowledged a standby waits at most for out-of-order
 * bytes to drain. Past it, a peer that counted some as SACKed, should the standby take over
 * before they are acknowledged, learns at its next RTO that they are gone (RFC 2018 8; Linux
 * detects the reneging sooner): a stall, not a loss.
 */
const SYNC_WAIT_US = 200_000;
/**
 * A standby that applied its bootstrap becomes able to take over (and output waits for it again)
 * only once it answers promptly: `WARM_ANSWERS` answers in a row (batch ACKs, heartbeat echoes),
 * each within `WARM_ANSWER_US` of what it answers. A process that just started and applied a
 * snapshot of every connection runs cold code and collects the snapshot's garbage for tens of
 * milliseconds (measured: 50 ms of one relay standby's event loop just after its bootstrap);
 * held output would wait for every one of them. `SYNC_WAIT_US` bounds the wait.
 */
const WARM_ANSWER_US = 4_000;
const WARM_ANSWERS = 4;
/**
 * A bootstrap's chunk: whole connections up to either bound (at least one). A state record's
 * JSON (about 1 KB, built, encrypted, parsed) costs far more than bytes copied. Measured before
 * chunks: a relay pair's bootstrap of 1,300 records (1.3 MB) blocked the active's event loop
 * 8-20 ms and the new standby's 20-50 ms, a stall for every client of the active.
 */
const BOOTSTRAP_CHUNK_CONNS = 32;
const BOOTSTRAP_CHUNK_BYTES = 128 * 1024;
/** Chunks unacknowledged past which no further chunk goes out (the standby sets the pace). */
const BOOTSTRAP_WINDOW = 4;
/**
 * At most one chunk per this (µs): a chunk costs the active 1-3 ms under load, and a busy
 * active runs several turns back to back (input from the TAP and the link), each of which could
 * send one. Measured with 64-connection chunks and no gap: three chunks in one 16 ms block.
 */
const BOOTSTRAP_CHUNK_GAP_US = 2_000;
/** What a connection's whole state record weighs, about (JSON, config included). */
const STATE_BYTES = 1_000;

interface Replicated {
  id: number;
  /** Receive / send stream offsets replicated so far (data bytes). */
  recvEnd: number;
  sendEnd: number;
  /** The config went out (in the connection's first state record). */
  opened: boolean;
  /** The state the standby holds for it (the last one sent): the next goes as a delta of it. */
  last: Record<string, unknown> | undefined;
  /** Its restore tag (JSON bytes), sent again in every bootstrap. */
  tag?: Uint8Array;
  /** Its last checkpoint, sent again in a bootstrap that still holds the bytes read after it. */
  ckpt?: LogRecord & { type: typeof REC_CKPT };
}

function tagRecord(id: number, value: Uint8Array): LogRecord {
  return { type: REC_CKPT, id, readOffset: TAG_OFFSET, writeOffset: TAG_OFFSET, value };
}

interface Commit {
  lsn: number;
  releases: { c: StackConnection; ackLimit: number; sendLimit: number }[];
}

export interface ReplicatorCounters {
  batches: number;
  records: number;
  bytes: number;
  commits: number;
  /** Checkpoints a bootstrap could not carry (older than the bytes the active still holds). */
  checkpointsLost: number;
}

export class Replicator implements StackObserver {
  readonly counters: ReplicatorCounters = {
    batches: 0,
    records: 0,
    bytes: 0,
    commits: 0,
    checkpointsLost: 0,
  };
  private readonly conns = new Map<StackConnection, Replicated>();
  private readonly dirty = new Set<StackConnection>();
  /**
   * Connections the standby has not received whole since its bootstrap began (in order). None of
   * them is ever in `dirty` (`serviced`, `touched`, `tag`, `checkpoint` leave them out): their
   * chunk sends them as they are then.
   */
  private readonly toBootstrap = new Set<StackConnection>();
  /** The batches that carried a bootstrap chunk, not acknowledged yet. */
  private chunksUnacked: number[] = [];
  private lastChunkAt = -INF;
  private gone: number[] = [];
  private checkpoints: LogRecord[] = [];
  private readonly pending: Commit[] = [];
  /** Every batch sent and not acknowledged, with its time (the standby's lag). */
  private unacked: { lsn: number; at: number }[] = [];
  /** The replication session (set by the node for each standby it bootstraps), in every batch. */
  session = 0;
  private nextId = 1;
  private lsn = 0;
  private ackedLsn = 0;
  private attached = false;
  /** Between a bootstrap and the batch marked `sync`: batches flow, nothing is held. */
  private catchingUp = false;
  private bootstrapLsn = 0;
  private bootstrapAckedAt = INF;
  /** Prompt answers in a row from the standby since it applied its bootstrap (see WARM_ANSWERS). */
  private warmAnswers = 0;
  /** The `sync` batch has gone out: the standby holds, or will, everything released. */
  private syncSent = false;

  constructor(
    private readonly stack: NetStack,
    readonly mode: 'sync' | 'async',
  ) {
    for (const c of stack.connections()) this.track(c);
    stack.observer = this;
  }

  /** A standby is attached, has caught up (batches flow) and holds the limits (sync). */
  get gating(): boolean {
    return this.attached && this.mode === 'sync' && !this.catchingUp;
  }

  /** The batch that makes the standby able to take over has been sent. */
  get standbySynced(): boolean {
    return this.attached && this.syncSent;
  }

  /** Batches sent and not yet acknowledged. */
  get inFlight(): number {
    return this.attached ? this.lsn - this.ackedLsn : 0;
  }

  /** When the oldest batch not yet acknowledged was built (our clock; Infinity: none). */
  get oldestUnackedAt(): number {
    return this.unacked.length > 0 ? this.unacked[0].at : INF;
  }

  /** Connections replicated (or to be, once a standby attaches). */
  get connectionCount(): number {
    return this.conns.size;
  }

  get lastLsn(): number {
    return this.lsn;
  }

  private track(c: StackConnection): Replicated {
    let r = this.conns.get(c);
    if (!r) {
      r = { id: this.nextId++, recvEnd: 0, sendEnd: 0, opened: false, last: undefined };
      // A connection restored by a take-over keeps its tag for the standbys of this node.
      const tag = c.restored?.tag;
      if (tag !== undefined) r.tag = jsonBytes(tag);
      this.conns.set(c, r);
      c.tcp.observeArrivals(true);
    }
    return r;
  }

  created(c: StackConnection): void {
    this.track(c);
    if (this.gating) {
      c.tcp.ackLimit = -1;
      c.tcp.sendLimit = -1;
    } else if (this.catchingUp) c.tcp.ackLimit = CATCHING_UP_ACK_LIMIT;
    this.dirty.add(c);
  }

  serviced(c: StackConnection): void {
    // Not sent whole yet: its chunk will send it as it is then.
    if (!this.toBootstrap.has(c)) this.dirty.add(c);
  }

  removed(c: StackConnection): void {
    const r = this.conns.get(c);
    if (!r) return;
    this.conns.delete(c);
    this.dirty.delete(c);
    this.toBootstrap.delete(c);
    if (this.attached && r.opened) this.gone.push(r.id);
  }

  /** The application marked something on `c` (read, wrote, closed) outside a stack poll. */
  touched(c: StackConnection): void {
    if (this.conns.has(c) && !this.toBootstrap.has(c)) this.dirty.add(c);
  }

  /**
   * A restore tag of `c` (`Socket.setRestoreTag`): replicated in this turn's batch and again in
   * every bootstrap, so that any standby restores it.
   */
  tag(c: StackConnection, value: Uint8Array): void {
    const r = this.conns.get(c);
    if (!r) return;
    r.tag = value;
    // Not sent whole yet: it will be, tag included.
    if (!this.attached || this.toBootstrap.has(c)) return;
    this.dirty.add(c);
    this.checkpoints.push(tagRecord(r.id, value));
  }

  /** An application checkpoint of `c`: replicated in this turn's batch, with the state. */
  checkpoint(c: StackConnection, value: Uint8Array): void {
    const r = this.conns.get(c);
    if (!r || !this.attached) return;
    // Not sent whole yet: its chunk will carry this checkpoint.
    const pending = this.toBootstrap.has(c);
    if (!pending) this.dirty.add(c);
    // The application's own positions: bytes still in its stream buffers are not read yet,
    // bytes it wrote that wait outside the engine are written already.
    const t = c.tcp;
    let writeOffset = t.writePosition;
    for (const u of c.app?.unsent() ?? []) writeOffset += u.length;
    r.ckpt = {
      type: REC_CKPT,
      id: r.id,
      readOffset: c.app ? Math.min(t.readPosition, c.app.consumed()) : t.readPosition,
      writeOffset,
      value,
    };
    if (!pending) this.checkpoints.push(r.ckpt);
  }

  /**
   * A standby joined: the reset batch, holding the first connections whole; the others follow,
   * whole too, a chunk per batch (`BOOTSTRAP_CHUNK_*`, at most `BOOTSTRAP_WINDOW` batches
   * unacknowledged) among the live batches, so that neither node spends more than a
   * millisecond or so of a turn on it. Nothing is held meanwhile; output released so far stays
   * released.
   */
  bootstrap(now: number): Batch {
    this.attached = true;
    this.catchingUp = true;
    this.syncSent = false;
    this.pending.length = 0;
    this.unacked = [];
    this.gone = [];
    this.checkpoints = [];
    this.dirty.clear();
    this.toBootstrap.clear();
    this.lsn = 0;
    this.ackedLsn = 0;
    for (const [c, r] of this.conns) {
      // A new standby knows nothing: every connection opens again, config and state whole.
      r.opened = false;
      r.last = undefined;
      this.toBootstrap.add(c);
      // Nothing is held while the standby catches up (it cannot take over yet).
      this.unhold(c, CATCHING_UP_ACK_LIMIT);
    }
    const records: LogRecord[] = [];
    this.bootstrapChunk(now, records);
    const b = this.seal(now, true, records, []);
    this.bootstrapLsn = this.toBootstrap.size === 0 ? b.lsn : INF;
    this.chunksUnacked = [b.lsn];
    this.lastChunkAt = now;
    this.bootstrapAckedAt = INF;
    this.warmAnswers = 0;
    return b;
  }

  /**
   * When the next chunk of the bootstrap may go (our clock): Infinity when every connection has
   * gone or the window is full (an acknowledgment opens it).
   */
  bootstrapDueAt(): number {
    if (!this.attached || this.toBootstrap.size === 0 || this.chunksUnacked.length >= BOOTSTRAP_WINDOW)
      return INF;
    return this.lastChunkAt + BOOTSTRAP_CHUNK_GAP_US;
  }

  /** The next connections of the bootstrap, whole, into `records`. */
  private bootstrapChunk(now: number, records: LogRecord[]): void {
    let conns = 0;
    let bytes = 0;
    for (const c of this.toBootstrap) {
      if (conns >= BOOTSTRAP_CHUNK_CONNS || bytes >= BOOTSTRAP_CHUNK_BYTES) break;
      this.toBootstrap.delete(c);
      bytes += this.wholeRecords(c, this.conns.get(c)!, now, records);
      conns++;
    }
  }

  /**
   * `c` whole into `records`: config and state, every byte it still holds both ways, its tag and
   * its last checkpoint. Returns the bytes of data it carries plus an estimate of the state's.
   */
  private wholeRecords(c: StackConnection, r: Replicated, now: number, records: LogRecord[]): number {
    const t = c.tcp;
    const s = t.snapshot(now, true);
    t.takeArrivals();
    const recvFrom = s.readOffset;
    const received = s.received;
    const { start: sendStart, data: sendData } = s.sendBuffer;
    records.push(this.stateRecord(c, r, s));
    if (received.length > 0) records.push({ type: REC_RECV, id: r.id, offset: recvFrom, data: received });
    r.recvEnd = recvFrom + received.length;
    if (sendData.length > 0) records.push({ type: REC_SEND, id: r.id, offset: sendStart, data: sendData });
    r.sendEnd = sendStart + sendData.length;
    if (r.tag) records.push(tagRecord(r.id, r.tag));
    // The last checkpoint, if the bytes read after it are still here to deliver again (the
    // engine drops what the application consumed); else the application's next one counts.
    if (r.ckpt && r.ckpt.readOffset >= recvFrom) records.push(r.ckpt);
    else if (r.ckpt) this.counters.checkpointsLost++;
    return STATE_BYTES + received.length + sendData.length + (r.tag?.length ?? 0);
  }

  /**
   * Lifts `c`'s limits. While a standby catches up the ACK limit stays finite, though out of
   * reach (`CATCHING_UP_ACK_LIMIT`): the engine then sends no SACK blocks, which would report
   * out-of-order bytes the standby will not hold once it can take over.
   */
  private unhold(c: StackConnection, limit = INF): void {
    if (c.tcp.ackLimit !== limit || c.tcp.sendLimit !== INF) {
      c.tcp.ackLimit = limit;
      c.tcp.sendLimit = INF;
      this.stack.touch(c);
    }
  }

  /**
   * The standby answered something we sent `latencyUs` ago (a batch's ACK, a heartbeat's echo):
   * while it catches up, whether it keeps up (see WARM_ANSWERS).
   */
  answered(latencyUs: number): void {
    if (!this.catchingUp || this.ackedLsn < this.bootstrapLsn) return;
    this.warmAnswers = latencyUs <= WARM_ANSWER_US ? this.warmAnswers + 1 : 0;
  }

  /**
   * Whether the standby may become able to take over now: it applied the bootstrap, answers
   * promptly (WARM_ANSWERS; nothing sent to it waits longer), and no connection holds
   * out-of-order bytes (which its peer may count as SACKed, from before the standby came: it
   * would wait for its RTO to learn they are gone); or the wait has lasted `SYNC_WAIT_US`.
   */
  private readyToSync(now: number): boolean {
    if (this.ackedLsn < this.bootstrapLsn) return false;
    if (this.bootstrapAckedAt === INF) this.bootstrapAckedAt = now;
    if (now >= this.bootstrapAckedAt + SYNC_WAIT_US) return true;
    // Only held output (sync mode) would wait for a slow standby.
    if (
      this.mode === 'sync' &&
      (this.warmAnswers < WARM_ANSWERS || now - this.oldestUnackedAt > WARM_ANSWER_US)
    )
      return false;
    for (const c of this.conns.keys()) if (c.tcp.outOfOrderBytes > 0) return false;
    return true;
  }

  /** Everything since the last batch, as the next batch; undefined when nothing changed. */
  batch(now: number): Batch | undefined {
    if (!this.attached) {
      this.dirty.clear();
      for (const c of this.conns.keys()) c.tcp.takeArrivals();
      return undefined;
    }
    // The standby has applied the bootstrap: from this batch on, output waits for it again.
    const sync = this.catchingUp && this.readyToSync(now);
    if (sync) this.catchingUp = false;
    const chunk = this.bootstrapDueAt() <= now;
    if (!sync && !chunk && this.dirty.size === 0 && this.gone.length === 0 && this.checkpoints.length === 0)
      return undefined;
    const records: LogRecord[] = [];
    const releases: Commit['releases'] = [];
    for (const c of this.dirty) {
      const r = this.conns.get(c);
      if (!r) continue;
      const t = c.tcp;
      const s = t.snapshot(now, false);
      // Bytes written, sent and acknowledged between two batches (nothing holds them while a
      // standby catches up) are gone from the engine and needed by no one: the log skips them,
      // and the state record goes first so the standby sees the acknowledgment with the skip.
      const ackedTo = s.sendBuffer.start;
      records.push(this.stateRecord(c, r, s));
      for (const d of t.takeArrivals()) {
        records.push({ type: REC_RECV, id: r.id, offset: r.recvEnd, data: d });
        r.recvEnd += d.length;
      }
      if (r.sendEnd < ackedTo) r.sendEnd = ackedTo;
      const w = t.writtenSince(r.sendEnd);
      if (w.length > 0) {
        records.push({ type: REC_SEND, id: r.id, offset: r.sendEnd, data: w });
        r.sendEnd += w.length;
      }
      // Bytes the application wrote that wait outside the engine continue the same stream.
      if (c.app) {
        let skip = r.sendEnd - t.writePosition;
        for (const u of c.app.unsent()) {
          if (skip >= u.length) {
            skip -= u.length;
            continue;
          }
          const part = skip > 0 ? u.subarray(skip) : u;
          skip = 0;
          records.push({ type: REC_SEND, id: r.id, offset: r.sendEnd, data: part.slice() });
          r.sendEnd += part.length;
        }
      }
      if (!sync) releases.push({ c, ...this.limitsOf(t) });
    }
    this.dirty.clear();
    if (sync) {
      // Every connection, in this batch or not (the standby holds the state of one that did not
      // change since its last record): held at what has already gone out, the rest released when
      // this batch commits. (A state record of each, as this batch once carried, cost the active
      // 6 ms for 223 connections and the standby as much to apply: a stall for every client.)
      for (const c of this.conns.keys()) {
        const t = c.tcp;
        const p = t.releasePoints();
        if (this.mode === 'sync') {
          t.ackLimit = Math.min(p.ackTo, Math.max(p.ackSent, -1));
          t.sendLimit = Math.min(p.sendTo, Math.max(p.sent, -1));
        }
        releases.push({ c, ackLimit: p.ackTo, sendLimit: p.sendTo });
      }
    }
    for (const id of this.gone) records.push({ type: REC_GONE, id });
    this.gone = [];
    records.push(...this.checkpoints);
    this.checkpoints = [];
    if (chunk) this.bootstrapChunk(now, records);
    const b = this.seal(now, false, records, releases);
    if (chunk) {
      this.chunksUnacked.push(b.lsn);
      this.lastChunkAt = now;
      if (this.toBootstrap.size === 0) this.bootstrapLsn = b.lsn;
    }
    if (sync) {
      b.sync = true;
      this.syncSent = true;
    }
    return b;
  }

  private seal(now: number, reset: boolean, records: LogRecord[], releases: Commit['releases']): Batch {
    const lsn = ++this.lsn;
    if (this.gating) this.pending.push({ lsn, releases });
    if (this.attached) this.unacked.push({ lsn, at: now });
    this.counters.batches++;
    this.counters.records += records.length;
    return { lsn, reset, at: now, session: this.session, records };
  }

  /**
   * The connection's state record. Takes `s` over (a fresh snapshot, not used after): it becomes
   * the replicated state, without the byte buffers and the counters, the config only in the first.
   */
  private stateRecord(c: StackConnection, r: Replicated, s: TcpSnapshot): LogRecord {
    // Fields set to undefined are left out of the JSON (and out of deltas).
    const full = s as unknown as Record<string, unknown>;
    if (r.opened) full.config = undefined;
    r.opened = true;
    full.counters = undefined;
    full.received = undefined;
    // What the application has really taken: bytes still in a stream buffer are not consumed.
    full.appReadOffset = c.app ? Math.min(s.readOffset, c.app.consumed()) : s.readOffset;
    full.writePosition = c.tcp.writePosition;
    full.nextHopMac = this.stack.neighborMac(c.remote);
    full.sendBuffer = { start: s.sendBuffer.start, capacity: s.sendBuffer.capacity };
    const body = r.last ? stateDelta(r.last, full) : full;
    r.last = full;
    return {
      type: REC_CONN,
      id: r.id,
      tuple: { local: c.local, localPort: c.localPort, remote: c.remote, remotePort: c.remotePort },
      state: jsonBytes(body),
    };
  }

  /** What the batch lets `t` acknowledge and send once committed (FIN and SYN included). */
  private limitsOf(t: TcpConnection): { ackLimit: number; sendLimit: number } {
    const p = t.releasePoints();
    return { ackLimit: p.ackTo, sendLimit: p.sendTo };
  }

  /**
   * The standby holds every batch up to `lsn`: release what they carried. Returns when the newest
   * batch this acknowledges was sent (our clock; NaN when it acknowledges none): its commit latency.
   */
  ack(lsn: number): number {
    if (lsn > this.ackedLsn && lsn <= this.lsn) this.ackedLsn = lsn;
    let k = 0;
    while (k < this.unacked.length && this.unacked[k].lsn <= lsn) k++;
    const sentAt = k > 0 ? this.unacked[k - 1].at : Number.NaN;
    if (k > 0) this.unacked.splice(0, k);
    while (this.chunksUnacked.length > 0 && this.chunksUnacked[0] <= lsn) this.chunksUnacked.shift();
    while (this.pending.length > 0 && this.pending[0].lsn <= lsn) {
      const commit = this.pending.shift()!;
      this.counters.commits++;
      for (const { c, ackLimit, sendLimit } of commit.releases) {
        if (c.removed) continue;
        const t = c.tcp;
        let changed = false;
        if (ackLimit > t.ackLimit) {
          t.ackLimit = ackLimit;
          changed = true;
        }
        if (sendLimit > t.sendLimit) {
          t.sendLimit = sendLimit;
          changed = true;
        }
        if (changed) this.stack.touch(c);
      }
    }
    return sentAt;
  }

  /** No standby: lift every limit (serve alone) and stop producing batches. */
  detach(): void {
    this.attached = false;
    this.catchingUp = false;
    this.syncSent = false;
    this.pending.length = 0;
    this.unacked = [];
    this.gone = [];
    this.checkpoints = [];
    this.toBootstrap.clear();
    this.chunksUnacked = [];
    for (const c of this.conns.keys()) this.unhold(c);
  }
}

/**
 * What changed from `last` to `next` (both a connection's replicated state): `{$delta: 1, ...the
 * fields whose value differs, $gone: [fields no longer set]}`. Most of a state (the config, the
 * sequence bases, the options) never changes after the handshake, and a turn moves a handful of
 * fields; see `applyStateDelta` in mirror.ts. The config travels once and is never in a delta.
 */
export function stateDelta(
  last: Record<string, unknown>,
  next: Record<string, unknown>,
): Record<string, unknown> {
  const d: Record<string, unknown> = { $delta: 1 };
  for (const k in next) {
    const v = next[k];
    if (v !== undefined && !sameJson(v, last[k])) d[k] = v;
  }
  const gone: string[] = [];
  for (const k in last) if (k !== 'config' && last[k] !== undefined && next[k] === undefined) gone.push(k);
  if (gone.length > 0) d.$gone = gone;
  return d;
}

/** Deep equality of JSON-shaped values (numbers, strings, booleans, null, arrays, plain objects). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (const k of ka) if (!(k in rb) || !sameJson(ra[k], rb[k])) return false;
  return true;
}
