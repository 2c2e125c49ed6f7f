/**
 * The replication log (docs/ARCHITECTURE.md §4): what the active tells the standby, one batch per
 * turn of its event loop, and the binary form it travels in (inside an authenticated channel
 * message, see protocol.ts).
 *
 * Records, per connection (numbered by the active for the life of one replication session):
 * - `conn`: the connection's state at the end of the turn: the engine's snapshot without its byte
 *   buffers (their offsets are in it), as JSON. The first `conn` of a connection is its `open`
 *   and carries the whole state with the TCP config; later ones carry only the fields that
 *   changed (`{"$delta": 1, ...}`, see replicator.ts `stateDelta`).
 * - `recv` / `send`: bytes that arrived in order / that the application wrote, at stream offsets.
 *   The standby trims them by the offsets the next `conn` carries: consumption (readOffset) and
 *   the peer's ACK (sndUna).
 * - `gone`: the connection left the active's table.
 * - `ckpt`: an application checkpoint: a value with the read and write offsets it belongs to; with
 *   both offsets `TAG_OFFSET`, the connection's restore tag instead (a value that rewinds nothing,
 *   carried again in every bootstrap).
 *
 * Decoding never throws: a malformed batch yields a reason, and the caller drops the link.
 */
import { type IpAddr, isV4 } from '../stack/ip.ts';

export const REC_CONN = 1;
export const REC_RECV = 2;
export const REC_SEND = 3;
export const REC_GONE = 4;
export const REC_CKPT = 5;
/** Both offsets of a `ckpt` record that is a restore tag. */
export const TAG_OFFSET = -1;

export interface ConnTuple {
  local: IpAddr;
  localPort: number;
  remote: IpAddr;
  remotePort: number;
}

export type LogRecord =
  | { type: typeof REC_CONN; id: number; tuple: ConnTuple; state: Uint8Array }
  | { type: typeof REC_RECV | typeof REC_SEND; id: number; offset: number; data: Uint8Array }
  | { type: typeof REC_GONE; id: number }
  | { type: typeof REC_CKPT; id: number; readOffset: number; writeOffset: number; value: Uint8Array };

export interface Batch {
  /** Log sequence number: one per batch, from 1, per replication session. */
  lsn: number;
  /** The standby drops its whole mirror before applying this batch (a bootstrap). */
  reset: boolean;
  /**
   * From this batch on the active holds its output for the standby (sync mode) and the standby,
   * once it has applied it, holds everything the active has released: it may take over. Batches
   * between a bootstrap and this one stream while the active serves on (a standby catching up).
   */
  sync?: boolean;
  /** The active's clock (µs) when the batch was built. */
  at: number;
  /** The active's count of standbys it bootstrapped (the standby's mirror belongs to one). */
  session?: number;
  records: LogRecord[];
}

const ENC = new TextEncoder();

/** Grows as it writes; `bytes()` is a view of what was written. */
class Writer {
  private buf = new Uint8Array(4096);
  private dv = new DataView(this.buf.buffer);
  private n = 0;

  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + k) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
    this.dv = new DataView(b.buffer);
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.n++] = v;
  }

  u16(v: number): void {
    this.room(2);
    this.dv.setUint16(this.n, v);
    this.n += 2;
  }

  u32(v: number): void {
    this.room(4);
    this.dv.setUint32(this.n, v);
    this.n += 4;
  }

  /** A safe integer (or -1): as a float64, exact below 2^53. */
  num(v: number): void {
    this.room(8);
    this.dv.setFloat64(this.n, v);
    this.n += 8;
  }

  blob(b: Uint8Array): void {
    this.u32(b.length);
    this.room(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
  }

  addr(a: IpAddr): void {
    if (isV4(a)) {
      this.u8(4);
      this.u32(a);
    } else {
      this.u8(6);
      this.room(16);
      this.buf.set(a, this.n);
      this.n += 16;
    }
  }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.n);
  }
}

/** The batch as bytes. */
export function encodeBatch(b: Batch): Uint8Array {
  const w = new Writer();
  w.u8((b.reset ? 1 : 0) | (b.sync ? 2 : 0));
  w.num(b.lsn);
  w.num(b.at);
  w.num(b.session ?? 0);
  w.u32(b.records.length);
  for (const r of b.records) {
    w.u8(r.type);
    w.num(r.id);
    switch (r.type) {
      case REC_CONN:
        w.addr(r.tuple.local);
        w.u16(r.tuple.localPort);
        w.addr(r.tuple.remote);
        w.u16(r.tuple.remotePort);
        w.blob(r.state);
        break;
      case REC_RECV:
      case REC_SEND:
        w.num(r.offset);
        w.blob(r.data);
        break;
      case REC_GONE:
        break;
      case REC_CKPT:
        w.num(r.readOffset);
        w.num(r.writeOffset);
        w.blob(r.value);
        break;
    }
  }
  return w.bytes();
}

class Truncated extends Error {}

/** Reads what Writer wrote; throws Truncated (caught in decodeBatch) past the end. */
class Reader {
  private readonly dv: DataView;
  n = 0;
  constructor(private readonly b: Uint8Array) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  private need(k: number): void {
    if (this.n + k > this.b.length) throw new Truncated();
  }
  u8(): number {
    this.need(1);
    return this.b[this.n++];
  }
  u16(): number {
    this.need(2);
    const v = this.dv.getUint16(this.n);
    this.n += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.dv.getUint32(this.n);
    this.n += 4;
    return v;
  }
  num(): number {
    this.need(8);
    const v = this.dv.getFloat64(this.n);
    this.n += 8;
    return v;
  }
  blob(): Uint8Array {
    const len = this.u32();
    this.need(len);
    const v = this.b.subarray(this.n, this.n + len);
    this.n += len;
    return v;
  }
  addr(): IpAddr | undefined {
    const f = this.u8();
    if (f === 4) return this.u32();
    if (f !== 6) return undefined;
    this.need(16);
    const v = this.b.slice(this.n, this.n + 16);
    this.n += 16;
    return v;
  }
  get done(): boolean {
    return this.n === this.b.length;
  }
}

function isOffset(v: number): boolean {
  return Number.isSafeInteger(v) && v >= -1;
}

/**
 * The batch in `b`, or a reason it is malformed. Record payloads are views of `b`: copy what is
 * kept past `b`'s life.
 */
export function decodeBatch(b: Uint8Array): Batch | string {
  const r = new Reader(b);
  try {
    const flags = r.u8();
    if (flags > 3) return `batch: unknown flags ${flags}`;
    const lsn = r.num();
    const at = r.num();
    const session = r.num();
    if (!Number.isSafeInteger(session) || session < 0) return `batch: bad session ${session}`;
    if (!Number.isSafeInteger(lsn) || lsn < 1) return `batch: bad log sequence number ${lsn}`;
    if (!Number.isFinite(at)) return 'batch: bad timestamp';
    const count = r.u32();
    // Each record takes at least 9 bytes: a count beyond that is a lie, not an allocation.
    if (count > (b.length - r.n) / 9) return `batch: ${count} records cannot fit ${b.length} bytes`;
    const records: LogRecord[] = [];
    for (let i = 0; i < count; i++) {
      const type = r.u8();
      const id = r.num();
      if (!Number.isSafeInteger(id) || id < 0) return `batch record ${i}: bad connection id`;
      switch (type) {
        case REC_CONN: {
          const local = r.addr();
          const localPort = r.u16();
          const remote = r.addr();
          const remotePort = r.u16();
          if (local === undefined || remote === undefined || isV4(local) !== isV4(remote))
            return `batch record ${i}: bad address`;
          records.push({ type, id, tuple: { local, localPort, remote, remotePort }, state: r.blob() });
          break;
        }
        case REC_RECV:
        case REC_SEND: {
          const offset = r.num();
          if (!isOffset(offset)) return `batch record ${i}: bad offset`;
          records.push({ type, id, offset, data: r.blob() });
          break;
        }
        case REC_GONE:
          records.push({ type, id });
          break;
        case REC_CKPT: {
          const readOffset = r.num();
          const writeOffset = r.num();
          if (!isOffset(readOffset) || !isOffset(writeOffset)) return `batch record ${i}: bad offset`;
          records.push({ type, id, readOffset, writeOffset, value: r.blob() });
          break;
        }
        default:
          return `batch record ${i}: unknown type ${type}`;
      }
    }
    if (!r.done) return `batch: ${b.length - r.n} bytes after the last record`;
    return { lsn, reset: (flags & 1) !== 0, sync: (flags & 2) !== 0, at, session, records };
  } catch (e) {
    if (e instanceof Truncated) return 'batch: truncated';
    return `batch: ${(e as Error).message}`;
  }
}

/** JSON text as bytes (state and checkpoint values). */
export function jsonBytes(v: unknown): Uint8Array {
  return ENC.encode(JSON.stringify(v));
}

const DEC = new TextDecoder('utf-8', { fatal: true });

/** The JSON value in `b`, or undefined when it is not JSON text. */
export function parseJsonBytes(b: Uint8Array): unknown {
  try {
    return JSON.parse(DEC.decode(b));
  } catch {
    return undefined;
  }
}
