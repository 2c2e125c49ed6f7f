/**
 * The active's side of replication (DESIGN.md "Replication"): watches the stack (StackObserver),
 * turns everything one turn of the event loop did into one log batch, and holds each
 * connection's ACKs and transmissions (`ackLimit`, `sendLimit`) until the standby has
 * acknowledged the batch that carries them (sync mode): group commit, one round trip per turn.
 *
 * - A new connection starts held (its SYN or SYN-ACK waits for its `open` to commit).
 * - `bootstrap` puts every connection, buffers included, into one reset batch for a standby that
 *   just joined; until it commits, nothing leaves beyond what already had.
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
} from './log.ts';

const INF = Number.POSITIVE_INFINITY;

interface Replicated {
  id: number;
  /** Receive / send stream offsets replicated so far (data bytes). */
  recvEnd: number;
  sendEnd: number;
  /** The config went out (in the connection's first state record). */
  opened: boolean;
  /** The state the standby holds for it (the last one sent): the next goes as a delta of it. */
  last: Record<string, unknown> | undefined;
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
}

export class Replicator implements StackObserver {
  readonly counters: ReplicatorCounters = { batches: 0, records: 0, bytes: 0, commits: 0 };
  private readonly conns = new Map<StackConnection, Replicated>();
  private readonly dirty = new Set<StackConnection>();
  private gone: number[] = [];
  private checkpoints: LogRecord[] = [];
  private readonly pending: Commit[] = [];
  private nextId = 1;
  private lsn = 0;
  private attached = false;

  constructor(
    private readonly stack: NetStack,
    readonly mode: 'sync' | 'async',
  ) {
    for (const c of stack.connections()) this.track(c);
    stack.observer = this;
  }

  /** A standby is attached (batches flow) and holds the limits (sync). */
  get gating(): boolean {
    return this.attached && this.mode === 'sync';
  }

  /** Batches sent and not yet acknowledged. */
  get inFlight(): number {
    return this.pending.length;
  }

  get lastLsn(): number {
    return this.lsn;
  }

  private track(c: StackConnection): Replicated {
    let r = this.conns.get(c);
    if (!r) {
      r = { id: this.nextId++, recvEnd: 0, sendEnd: 0, opened: false, last: undefined };
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
    }
    this.dirty.add(c);
  }

  serviced(c: StackConnection): void {
    this.dirty.add(c);
  }

  removed(c: StackConnection): void {
    const r = this.conns.get(c);
    if (!r) return;
    this.conns.delete(c);
    this.dirty.delete(c);
    if (this.attached && r.opened) this.gone.push(r.id);
  }

  /** The application marked something on `c` (read, wrote, closed) outside a stack poll. */
  touched(c: StackConnection): void {
    if (this.conns.has(c)) this.dirty.add(c);
  }

  /** An application checkpoint of `c`: replicated in this turn's batch, with the state. */
  checkpoint(c: StackConnection, value: Uint8Array): void {
    const r = this.conns.get(c);
    if (!r || !this.attached) return;
    this.dirty.add(c);
    // The application's own positions: bytes still in its stream buffers are not read yet,
    // bytes it wrote that wait outside the engine are written already.
    const t = c.tcp;
    let writeOffset = t.writePosition;
    for (const u of c.app?.unsent() ?? []) writeOffset += u.length;
    this.checkpoints.push({
      type: REC_CKPT,
      id: r.id,
      readOffset: c.app ? Math.min(t.readPosition, c.app.consumed()) : t.readPosition,
      writeOffset,
      value,
    });
  }

  /**
   * A standby joined: the reset batch holding every connection whole. Output released so far
   * stays released; what is beyond it waits for this batch to commit.
   */
  bootstrap(now: number): Batch {
    this.attached = true;
    this.pending.length = 0;
    this.gone = [];
    this.checkpoints = [];
    this.dirty.clear();
    this.lsn = 0;
    const records: LogRecord[] = [];
    const releases: Commit['releases'] = [];
    for (const [c, r] of this.conns) {
      const t = c.tcp;
      const s = t.snapshot(now, true);
      t.takeArrivals();
      const recvFrom = s.readOffset;
      const received = s.received;
      const { start: sendStart, data: sendData } = s.sendBuffer;
      const rel = this.limitsOf(t, s);
      const { lastAckSent, sndMax } = s;
      // A new standby knows nothing: every connection opens again, config and state whole.
      r.opened = false;
      r.last = undefined;
      records.push(this.stateRecord(c, r, s));
      if (received.length > 0) records.push({ type: REC_RECV, id: r.id, offset: recvFrom, data: received });
      r.recvEnd = recvFrom + received.length;
      if (sendData.length > 0) records.push({ type: REC_SEND, id: r.id, offset: sendStart, data: sendData });
      r.sendEnd = sendStart + sendData.length;
      if (this.mode === 'sync') {
        // Hold at what has already gone out; the rest leaves when the bootstrap commits.
        t.ackLimit = Math.min(rel.ackLimit, Math.max(lastAckSent, -1));
        t.sendLimit = Math.min(rel.sendLimit, Math.max(sndMax, -1));
      }
      releases.push({ c, ...rel });
    }
    return this.seal(now, true, records, releases);
  }

  /** Everything since the last batch, as the next batch; undefined when nothing changed. */
  batch(now: number): Batch | undefined {
    if (!this.attached) {
      this.dirty.clear();
      for (const c of this.conns.keys()) c.tcp.takeArrivals();
      return undefined;
    }
    if (this.dirty.size === 0 && this.gone.length === 0 && this.checkpoints.length === 0) return undefined;
    const records: LogRecord[] = [];
    const releases: Commit['releases'] = [];
    for (const c of this.dirty) {
      const r = this.conns.get(c);
      if (!r) continue;
      const t = c.tcp;
      const s = t.snapshot(now, false);
      const stateFirst = !r.opened;
      if (stateFirst) records.push(this.stateRecord(c, r, s));
      for (const d of t.takeArrivals()) {
        records.push({ type: REC_RECV, id: r.id, offset: r.recvEnd, data: d });
        r.recvEnd += d.length;
      }
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
      if (!stateFirst) records.push(this.stateRecord(c, r, s));
      releases.push({ c, ...this.limitsOf(t, s) });
    }
    this.dirty.clear();
    for (const id of this.gone) records.push({ type: REC_GONE, id });
    this.gone = [];
    records.push(...this.checkpoints);
    this.checkpoints = [];
    return this.seal(now, false, records, releases);
  }

  private seal(now: number, reset: boolean, records: LogRecord[], releases: Commit['releases']): Batch {
    const lsn = ++this.lsn;
    if (this.mode === 'sync') this.pending.push({ lsn, releases });
    this.counters.batches++;
    this.counters.records += records.length;
    return { lsn, reset, at: now, records };
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
  private limitsOf(t: TcpConnection, s: TcpSnapshot): { ackLimit: number; sendLimit: number } {
    return {
      ackLimit: s.rcvNxt,
      sendLimit: s.finQueued ? s.finOffset + 1 : t.writePosition,
    };
  }

  /** The standby holds every batch up to `lsn`: release what they carried. */
  ack(lsn: number): void {
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
  }

  /** No standby: lift every limit (serve alone) and stop producing batches. */
  detach(): void {
    this.attached = false;
    this.pending.length = 0;
    this.gone = [];
    this.checkpoints = [];
    for (const c of this.conns.keys()) {
      if (c.tcp.ackLimit !== INF || c.tcp.sendLimit !== INF) {
        c.tcp.ackLimit = INF;
        c.tcp.sendLimit = INF;
        this.stack.touch(c);
      }
    }
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
