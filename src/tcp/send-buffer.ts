/**
 * The send buffer: bytes the application wrote that the peer has not yet acknowledged
 * (RFC 9293 3.3.1: the span from SND.UNA to the end of written data), addressed by stream offset.
 *
 * A ring over one Uint8Array. Storage is allocated on the first write and doubled on demand up
 * to `capacity`, so an idle connection costs nothing and a busy one reaches a steady state in
 * which `write` and `trim` never allocate. Transmission reads segments with `view`.
 */

export interface SendBufferSnapshot {
  /** Stream offset of `data[0]`. */
  start: number;
  /** The bytes [start, end). */
  data: Uint8Array;
  capacity: number;
}

/** Smallest storage allocated by a first write (unless capacity is smaller). */
const MIN_STORAGE = 4096;
const EMPTY = new Uint8Array(0);

export class SendBuffer {
  readonly capacity: number;
  private buf: Uint8Array = EMPTY;
  /** Index in `buf` of the byte at offset `start`. */
  private head = 0;
  private len = 0;
  private startOffset: number;

  constructor(capacity: number, start = 0) {
    if (!Number.isSafeInteger(capacity) || capacity < 0)
      throw new RangeError(`send buffer capacity must be a non-negative integer, got ${capacity}`);
    if (!Number.isSafeInteger(start) || start < 0)
      throw new RangeError(`send buffer start must be a non-negative safe integer, got ${start}`);
    this.capacity = capacity;
    this.startOffset = start;
  }

  /** Offset of the first byte still held: the oldest unacknowledged byte. */
  get start(): number {
    return this.startOffset;
  }

  /** Offset after the last byte written. */
  get end(): number {
    return this.startOffset + this.len;
  }

  get length(): number {
    return this.len;
  }

  get free(): number {
    return this.capacity - this.len;
  }

  /** Copies up to `free` bytes of `data` in; returns how many were taken. */
  write(data: Uint8Array): number {
    const n = Math.min(data.length, this.capacity - this.len);
    if (n === 0) return 0;
    if (this.len + n > this.buf.length) this.grow(this.len + n);
    const size = this.buf.length;
    let tail = this.head + this.len;
    if (tail >= size) tail -= size;
    const first = Math.min(n, size - tail);
    this.buf.set(first === data.length ? data : data.subarray(0, first), tail);
    if (first < n) this.buf.set(data.subarray(first, n), 0);
    this.len += n;
    return n;
  }

  /**
   * The bytes [offset, offset + len), which must lie within [start, end). A zero-copy view when
   * the range is contiguous in storage; a fresh copy when it wraps (once per lap of the ring).
   * A view is valid until the next `write` or `trim`.
   */
  view(offset: number, len: number): Uint8Array {
    const rel = offset - this.startOffset;
    if (!Number.isInteger(rel) || !Number.isInteger(len) || rel < 0 || len < 0 || rel + len > this.len)
      throw new RangeError(`view [${offset}, ${offset + len}) is outside [${this.start}, ${this.end})`);
    if (len === 0) return EMPTY;
    const size = this.buf.length;
    let p = this.head + rel;
    if (p >= size) p -= size;
    if (p + len <= size) return this.buf.subarray(p, p + len);
    const out = new Uint8Array(len);
    const first = size - p;
    out.set(this.buf.subarray(p, size), 0);
    out.set(this.buf.subarray(0, len - first), first);
    return out;
  }

  /** Drops everything before `offset` (acknowledged by the peer); `offset` in [start, end]. */
  trim(offset: number): void {
    const n = offset - this.startOffset;
    if (!Number.isInteger(n) || n < 0 || n > this.len)
      throw new RangeError(`trim to ${offset} is outside [${this.start}, ${this.end}]`);
    this.startOffset = offset;
    this.len -= n;
    if (this.len === 0) {
      // Restarting at index 0 keeps the next segments contiguous (zero-copy views).
      this.head = 0;
    } else {
      this.head += n;
      if (this.head >= this.buf.length) this.head -= this.buf.length;
    }
  }

  snapshot(): SendBufferSnapshot {
    const data = this.len === 0 ? new Uint8Array(0) : this.view(this.startOffset, this.len).slice();
    return { start: this.startOffset, data, capacity: this.capacity };
  }

  static restore(s: SendBufferSnapshot): SendBuffer {
    const b = new SendBuffer(s.capacity, s.start);
    if (s.data.length > s.capacity)
      throw new RangeError(`send buffer snapshot holds ${s.data.length} bytes, more than its capacity`);
    b.write(s.data);
    return b;
  }

  /** Reallocates storage to hold at least `need` bytes (doubling, at most `capacity`), unwrapped. */
  private grow(need: number): void {
    const size = Math.min(this.capacity, Math.max(need, MIN_STORAGE, this.buf.length * 2));
    const next = new Uint8Array(size);
    const old = this.buf;
    const first = Math.min(this.len, old.length - this.head);
    next.set(old.subarray(this.head, this.head + first), 0);
    if (first < this.len) next.set(old.subarray(0, this.len - first), first);
    this.buf = next;
    this.head = 0;
  }
}
