/**
 * The standby's mirror of every connection on the active (docs/ARCHITECTURE.md §4,
 * §6 step 2): applies the log batch by batch, keeps memory bounded by trimming what the peer has
 * acknowledged (send side) and what the application consumed (receive side), and at take-over
 * builds each connection back as an engine snapshot for `TcpConnection.restore`.
 *
 * A batch is applied whole or not at all (docs/ARCHITECTURE.md §2 "A tick is a transaction"): it is checked
 * first, so a bad batch leaves the mirror as it was and the caller drops the link.
 */
import type { IpAddr } from '../stack/ip.ts';
import { connKey } from '../stack/stack.ts';
import { Assembler } from '../tcp/assembler.ts';
import { TcpConnection, type TcpSnapshot } from '../tcp/connection.ts';
import { seqToOffset } from '../wire/seq.ts';
import {
  type Batch,
  type ConnTuple,
  type LogRecord,
  parseJsonBytes,
  REC_CKPT,
  REC_CONN,
  REC_GONE,
  REC_RECV,
  REC_SEND,
  TAG_OFFSET,
} from './log.ts';

const NONE = -1;
/** Closed connections a mirror remembers (for quiet after a take-over). */
const GONE_REMEMBERED = 65536;
/** Bytes a standby keeps per connection of what it overhears the peer send past the mirror. */
export const SNOOP_MAX_BYTES = 4 * 1024 * 1024;

/** Bytes of one stream from `start` to `end`, in arrival chunks. */
export class ByteLog {
  start = 0;
  end = 0;
  private chunks: Uint8Array[] = [];
  private empty = true;

  get length(): number {
    return this.end - this.start;
  }

  /** Appends a copy of `data` at `offset`: must be where the log ends (the first append sets it). */
  append(offset: number, data: Uint8Array): boolean {
    if (this.empty && this.chunks.length === 0 && this.start === this.end) {
      this.start = offset;
      this.end = offset;
    }
    if (offset !== this.end) return false;
    if (data.length === 0) return true;
    this.empty = false;
    this.chunks.push(data.slice());
    this.end += data.length;
    return true;
  }

  /** Forgets every byte held and continues at `offset` (past the end: bytes no one needs). */
  skipTo(offset: number): void {
    if (offset <= this.end) return;
    this.chunks = [];
    this.start = this.end = offset;
    this.empty = false;
  }

  /** Forgets the bytes before `to`. */
  trim(to: number): void {
    if (to <= this.start) return;
    if (to >= this.end) {
      this.chunks = [];
      this.start = this.end = Math.max(to, this.end);
      return;
    }
    let drop = to - this.start;
    while (drop > 0) {
      const c = this.chunks[0];
      if (c.length <= drop) {
        this.chunks.shift();
        drop -= c.length;
      } else {
        this.chunks[0] = c.subarray(drop);
        drop = 0;
      }
    }
    this.start = to;
  }

  /** A copy of [from, end) (from clamped to what is held). */
  bytesFrom(from: number): Uint8Array {
    const f = Math.min(Math.max(from, this.start), this.end);
    const out = new Uint8Array(this.end - f);
    let skip = f - this.start;
    let o = 0;
    for (const c of this.chunks) {
      if (skip >= c.length) {
        skip -= c.length;
        continue;
      }
      const part = skip > 0 ? c.subarray(skip) : c;
      skip = 0;
      out.set(part, o);
      o += part.length;
    }
    return out;
  }
}

/** One mirrored connection. */
export class MirrorConn {
  readonly recv = new ByteLog();
  readonly send = new ByteLog();
  /**
   * The latest state (an engine snapshot without buffers, config included), with what the
   * application had taken (`appReadOffset`) and the engine's write end (`writePosition`).
   */
  state: TcpSnapshot & { appReadOffset?: number; writePosition?: number; nextHopMac?: number };
  /** The application's last checkpoint, if it took one. */
  checkpoint: { value: unknown; readOffset: number; writeOffset: number } | undefined;
  /** The application's restore tag (`Socket.setRestoreTag`): a value that rewinds nothing. */
  tag: unknown;
  /**
   * Bytes the peer sent past the mirror's `rcvNxt`, overheard on the data link (`snoop`): what
   * the active received but had not replicated, or what reached nobody while it died. At the
   * take-over the part contiguous with `rcvNxt` is restored as received.
   */
  private snooped: Assembler | undefined;

  constructor(
    readonly id: number,
    readonly tuple: ConnTuple,
    state: TcpSnapshot,
  ) {
    this.state = state;
  }

  /** Drops what can never be needed again: bytes the peer acknowledged, bytes the app consumed. */
  trim(): void {
    this.send.trim(this.state.sendBuffer.start);
    this.recv.trim(this.readFrom());
    // What was overheard below rcvNxt is replicated now.
    if (this.snooped && this.snooped.bytes > 0) this.snooped.dropBelow(this.state.rcvNxt);
  }

  /** Bytes overheard and held for this connection. */
  get snoopedBytes(): number {
    return this.snooped?.bytes ?? 0;
  }

  /**
   * A data segment the peer sent, overheard: keeps its bytes past the mirror's `rcvNxt` (TCP
   * sends the same bytes at the same sequence numbers, so a copy from the wire is the stream).
   * Returns the bytes kept.
   */
  snoop(seq: number, data: Uint8Array): number {
    const s = this.state;
    // Only a synchronized connection whose peer has not closed takes more data.
    if (s.rcvNxt < 0 || s.peerFinOffset !== NONE || data.length === 0) return 0;
    const base = s.rcvNxt;
    let off = seqToOffset(s.irs, seq, base);
    let d = data;
    if (off + d.length <= base || off >= base + SNOOP_MAX_BYTES) return 0;
    if (off < base) {
      d = d.subarray(base - off);
      off = base;
    }
    this.snooped ??= new Assembler(SNOOP_MAX_BYTES);
    return this.snooped.insert(off, d);
  }

  /**
   * Where the restored application reads from: its last checkpoint (bytes after it are delivered
   * again), else what it had taken from its stream (not what the engine handed the stream).
   */
  readFrom(): number {
    const s = this.state;
    const app = Math.min(s.appReadOffset ?? s.readOffset, s.readOffset);
    return this.checkpoint ? Math.min(this.checkpoint.readOffset, app) : app;
  }

  /**
   * Output the restored application will write again and must not be sent twice: from its
   * checkpoint's write offset to the end of what is held.
   */
  skipWrite(): number {
    return this.checkpoint ? Math.max(0, this.send.end - this.checkpoint.writeOffset) : 0;
  }

  /**
   * The engine snapshot to restore at take-over: the last state, its buffers from the logs, no
   * replication limits, output as committed (bytes the active may have sent after its last
   * batch count as in flight, so they are retransmitted, never skipped), the timestamp clock moved
   * on by `tsAdvanceMs` so it never goes backwards for the peer (PAWS).
   */
  snapshotForRestore(tsAdvanceMs: number): TcpSnapshot {
    const { appReadOffset: _a, writePosition, nextHopMac: _m, ...s } = this.state;
    const sendStart = s.sendBuffer.start;
    const sendData = this.send.bytesFrom(sendStart);
    const readFrom = this.readFrom();
    // Output the engine held when the state was taken may have left (it was committed); what
    // the application wrote beyond it had not.
    const engineEnd = Math.min(sendStart + sendData.length, writePosition ?? sendStart + sendData.length);
    // What the peer sent past the replicated stream and we overheard, contiguous with it: the
    // restored engine holds it as received and acknowledges it (no standby holds anything now).
    const extra = s.rcvNxt >= 0 && s.peerFinOffset === NONE ? this.snooped?.take(s.rcvNxt) : undefined;
    const held = this.recv.bytesFrom(readFrom);
    let received = held;
    if (extra && extra.length > 0) {
      received = new Uint8Array(held.length + extra.length);
      received.set(held, 0);
      received.set(extra, held.length);
    }
    const rcvNxt = s.rcvNxt + (extra?.length ?? 0);
    return {
      ...s,
      rcvNxt,
      rcvRightEdge: Math.max(s.rcvRightEdge, rcvNxt),
      sendBuffer: {
        start: sendStart,
        data: sendData,
        capacity: Math.max(s.sendBuffer.capacity, sendData.length),
      },
      readOffset: readFrom,
      received,
      assembler: { ranges: [], recent: [], maxBytes: s.assembler.maxBytes },
      ackLimit: NONE,
      sendLimit: NONE,
      sndMax: s.sndMax >= 0 ? Math.max(s.sndMax, engineEnd) : s.sndMax,
      tsOffset: (s.tsOffset + tsAdvanceMs) >>> 0,
      control: [],
      rstPending: false,
      windowProbe: false,
      kickAcks: 0,
      sacked: [],
      lostEnd: s.sndUna,
      // Every ACK the old node sent was at most our rcvNxt (sync: nothing beyond what we hold is
      // acknowledged), and no window field can say more than 65535 scaled: the peer may have
      // been promised that far, though the last state we hold advertised less.
      acceptEdge: Math.max(rcvNxt, s.rcvNxt + 0xffff * 2 ** (s.wsOk ? s.rcvWscale : 0)),
      highRxt: s.sndUna,
    };
  }
}

export interface MirrorCounters {
  batches: number;
  records: number;
  rejected: number;
}

/** Every connection the active has, as of the last batch applied. */
export class Mirror {
  readonly conns = new Map<number, MirrorConn>();
  /** The same connections by tuple (connKey), for what is overheard on the data link. */
  private readonly byTuple = new Map<string, MirrorConn>();
  /**
   * Connections the active closed without error, with our clock when we heard: a new active
   * keeps quiet for their stray segments (a peer's last ACK, overheard or late) instead of
   * answering them with RSTs. Oldest first, at most `GONE_REMEMBERED`.
   */
  readonly gone = new Map<string, { tuple: ConnTuple; at: number }>();
  readonly counters: MirrorCounters = { batches: 0, records: 0, rejected: 0 };
  /** The last batch applied (0: none since the last reset). */
  lsn = 0;
  /** The active's clock in the last batch, and ours when it arrived. */
  activeAt = 0;
  receivedAt = 0;
  /** A bootstrap (reset batch) has been applied: live batches follow it. */
  bootstrapped = false;
  /**
   * A batch marked `sync` has been applied after the bootstrap: the mirror holds everything the
   * active has released, and only now can this node take over.
   */
  synced = false;

  /** Forgets every connection. */
  clear(): void {
    this.conns.clear();
    this.byTuple.clear();
    this.gone.clear();
  }

  /** Whether a connection with this tuple key (connKey) is mirrored, or was closed lately. */
  hasKey(key: string): boolean {
    return this.byTuple.has(key) || this.gone.has(key);
  }

  /** The mirrored connection with this tuple (our address and port first). */
  find(local: IpAddr, localPort: number, remote: IpAddr, remotePort: number): MirrorConn | undefined {
    return this.byTuple.get(connKey(local, localPort, remote, remotePort));
  }

  /** Bytes held in all logs (the mirror's memory). */
  get bytes(): number {
    let n = 0;
    for (const c of this.conns.values()) n += c.recv.length + c.send.length + c.snoopedBytes;
    return n;
  }

  /**
   * Applies `b` (received at our clock `now`); a reason when it is refused (out of order, a
   * record for an unknown connection, data not where its log ends, a state that is not a
   * snapshot). A refused batch changes nothing.
   */
  apply(b: Batch, now: number): string | undefined {
    const states = new Map<LogRecord, TcpSnapshot>();
    const err = this.check(b, states);
    if (err) {
      this.counters.rejected++;
      return err;
    }
    if (b.reset) {
      this.clear();
      this.bootstrapped = true;
      this.synced = false;
    }
    if (b.sync) this.synced = true;
    const touched = new Set<MirrorConn>();
    for (const r of b.records) {
      switch (r.type) {
        case REC_CONN: {
          const state = states.get(r)!;
          const c = this.conns.get(r.id);
          if (c) {
            // Later states omit the config (it never changes).
            state.config = c.state.config;
            c.state = state;
            touched.add(c);
          } else {
            const n = new MirrorConn(r.id, r.tuple, state);
            this.conns.set(r.id, n);
            this.byTuple.set(
              connKey(r.tuple.local, r.tuple.localPort, r.tuple.remote, r.tuple.remotePort),
              n,
            );
            touched.add(n);
          }
          break;
        }
        case REC_RECV:
        case REC_SEND: {
          const c = this.conns.get(r.id)!;
          const log = r.type === REC_RECV ? c.recv : c.send;
          if (r.offset > log.end && (log.length > 0 || log.end > 0)) log.skipTo(r.offset);
          log.append(r.offset, r.data);
          touched.add(c);
          break;
        }
        case REC_GONE:
          {
            const c = this.conns.get(r.id);
            if (c) {
              const k = connKey(c.tuple.local, c.tuple.localPort, c.tuple.remote, c.tuple.remotePort);
              this.byTuple.delete(k);
              if (c.state.error === '') {
                if (this.gone.size >= GONE_REMEMBERED)
                  this.gone.delete(this.gone.keys().next().value as string);
                this.gone.delete(k);
                this.gone.set(k, { tuple: c.tuple, at: now });
              }
            }
          }
          this.conns.delete(r.id);
          break;
        case REC_CKPT: {
          const c = this.conns.get(r.id)!;
          if (r.readOffset === TAG_OFFSET && r.writeOffset === TAG_OFFSET) {
            c.tag = parseJsonBytes(r.value);
            break;
          }
          c.checkpoint = {
            value: parseJsonBytes(r.value),
            readOffset: r.readOffset,
            writeOffset: r.writeOffset,
          };
          break;
        }
      }
    }
    for (const c of touched) if (this.conns.get(c.id) === c) c.trim();
    this.lsn = b.lsn;
    this.activeAt = b.at;
    this.receivedAt = now;
    this.counters.batches++;
    this.counters.records += b.records.length;
    return undefined;
  }

  /** Validates a whole batch against the mirror without changing it. */
  private check(b: Batch, states: Map<LogRecord, TcpSnapshot>): string | undefined {
    if (!b.reset && !this.bootstrapped) return `batch ${b.lsn} before any bootstrap`;
    if (!b.reset && b.lsn !== this.lsn + 1) return `batch ${b.lsn} out of order (expected ${this.lsn + 1})`;
    // Simulated log ends and known ids, so every append lands where its log ends.
    const ends = new Map<string, number>();
    const known = new Set<number>(b.reset ? [] : this.conns.keys());
    const fresh = new Set<number>();
    /** The record that set each connection's state earlier in this batch. */
    const lastState = new Map<number, LogRecord>();
    for (const [i, r] of b.records.entries()) {
      if (r.type === REC_CONN) {
        let s = parseJsonBytes(r.state) as Partial<TcpSnapshot> | undefined;
        if (s && typeof s === 'object' && (s as Record<string, unknown>).$delta !== undefined) {
          // A delta of the state this connection last had (in this batch or the mirror).
          const base =
            states.get(lastState.get(r.id)!) ?? (b.reset ? undefined : this.conns.get(r.id)?.state);
          if (!known.has(r.id) || !base)
            return `batch ${b.lsn} record ${i}: a state delta for unknown connection ${r.id}`;
          s = applyStateDelta(base, s as Record<string, unknown>) as Partial<TcpSnapshot> | undefined;
          if (!s) return `batch ${b.lsn} record ${i}: a malformed state delta`;
        }
        if (!s || typeof s !== 'object' || s.version !== 1 || typeof s.sndUna !== 'number')
          return `batch ${b.lsn} record ${i}: the state is not an engine snapshot`;
        lastState.set(r.id, r);
        states.set(r, s as TcpSnapshot);
        if (!known.has(r.id)) {
          if (typeof s.config !== 'object' || s.config === null)
            return `batch ${b.lsn} record ${i}: a new connection without its config`;
          known.add(r.id);
          fresh.add(r.id);
        }
        continue;
      }
      if (!known.has(r.id)) return `batch ${b.lsn} record ${i}: unknown connection ${r.id}`;
      if (r.type === REC_GONE) {
        known.delete(r.id);
        lastState.delete(r.id);
        for (const k of ['r', 's']) ends.delete(`${k}${r.id}`);
        continue;
      }
      if (r.type === REC_RECV || r.type === REC_SEND) {
        const k = `${r.type === REC_RECV ? 'r' : 's'}${r.id}`;
        let end = ends.get(k);
        if (end === undefined) {
          const c = fresh.has(r.id) ? undefined : this.conns.get(r.id);
          const log = c ? (r.type === REC_RECV ? c.recv : c.send) : undefined;
          end = log && (log.length > 0 || log.end > 0) ? log.end : r.offset;
        }
        // Sent bytes the peer acknowledged before a batch carried them are not needed by anyone:
        // the active skips them, and its state (earlier in the batch) says the peer has them.
        if (r.type === REC_SEND && r.offset > end) {
          const st = states.get(lastState.get(r.id)!) ?? this.conns.get(r.id)?.state;
          if (st && st.sendBuffer.start >= r.offset) end = r.offset;
        }
        if (r.offset !== end)
          return `batch ${b.lsn} record ${i}: ${r.type === REC_RECV ? 'received' : 'sent'} data at ${r.offset}, the log ends at ${end}`;
        ends.set(k, end + r.data.length);
      }
    }
    return undefined;
  }

  /**
   * Every mirrored connection restored as an engine on our clock `now`, with the timestamp clock
   * moved on by the time since the last batch plus `tsMarginMs`. Connections whose state does not
   * restore are reported, not thrown.
   */
  restoreAll(
    now: number,
    tsMarginMs: number,
  ): { restored: { tuple: ConnTuple; tcp: TcpConnection; mirror: MirrorConn }[]; failed: string[] } {
    const advance = Math.ceil((now - this.receivedAt) / 1000) + tsMarginMs;
    const restored: { tuple: ConnTuple; tcp: TcpConnection; mirror: MirrorConn }[] = [];
    const failed: string[] = [];
    for (const m of this.conns.values()) {
      try {
        const tcp = TcpConnection.restore(m.snapshotForRestore(advance), now);
        restored.push({ tuple: m.tuple, tcp, mirror: m });
      } catch (e) {
        failed.push(`connection ${m.id}: ${(e as Error).message}`);
      }
    }
    return { restored, failed };
  }
}

/** A tuple as text, for logs. */
export function tupleText(t: ConnTuple, fmt: (a: IpAddr) => string): string {
  return `${fmt(t.local)}:${t.localPort} <-> ${fmt(t.remote)}:${t.remotePort}`;
}

/**
 * `base` with a delta (replicator.ts `stateDelta`) applied, as a new object; undefined when the
 * delta is malformed ($delta must be 1, $gone a list of field names, no field may be `config`).
 */
export function applyStateDelta(base: object, delta: Record<string, unknown>): object | undefined {
  if (delta.$delta !== 1) return undefined;
  const gone = delta.$gone;
  if (
    gone !== undefined &&
    !(Array.isArray(gone) && gone.every((k) => typeof k === 'string' && k !== 'config'))
  )
    return undefined;
  const out: Record<string, unknown> = { ...base };
  for (const k in delta) {
    if (k === '$delta' || k === '$gone') continue;
    if (k === 'config' || k === '__proto__') return undefined;
    out[k] = delta[k];
  }
  for (const k of (gone as string[] | undefined) ?? []) delete out[k];
  return out;
}
