/**
 * Self-locating byte streams for the nemesis clients: every aligned 8-byte word of stream `key`
 * says which word it is, so a receiver that reads the wrong bytes can tell where they came from:
 * an earlier offset (duplicated), a later one (a hole: lost), or nowhere (corrupted).
 *
 *   word j = u32be(j ^ key) . u32be(imul(j, 0x9e3779b1) ^ key ^ 0x5bd1e995)
 *
 * (The project's `fillPattern` streams only repeat with a period, so a misplaced window cannot be
 * located beyond it; the HTTP example's bodies use it and are judged by `locatePattern`.)
 */
import { checkPattern, patternByte } from '../../../src/link/sim/pattern.ts';

const MIX = 0x9e3779b1;
const SALT = 0x5bd1e995;

/** Writes stream `key`'s bytes from offset `from` into `out`. */
export function fillStream(key: number, from: number, out: Uint8Array): void {
  const word = new Uint8Array(8);
  const dv = new DataView(word.buffer);
  let j = Math.floor(from / 8);
  let skip = from % 8;
  for (let i = 0; i < out.length; j++) {
    dv.setUint32(0, (j ^ key) >>> 0);
    dv.setUint32(4, (Math.imul(j, MIX) ^ key ^ SALT) >>> 0);
    const n = Math.min(8 - skip, out.length - i);
    out.set(word.subarray(skip, skip + n), i);
    i += n;
    skip = 0;
  }
}

export function streamBytes(key: number, from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  fillStream(key, from, b);
  return b;
}

/** The offset stream `key` has at `d[i..]` (which must hold at least 15 bytes), or undefined. */
export function locate(key: number, d: Uint8Array, i: number): number | undefined {
  const dv = new DataView(d.buffer, d.byteOffset, d.length);
  for (let s = 0; s < 8 && i + s + 8 <= d.length; s++) {
    const j = (dv.getUint32(i + s) ^ key) >>> 0;
    if (dv.getUint32(i + s + 4) !== (Math.imul(j, MIX) ^ key ^ SALT) >>> 0) continue;
    const at = j * 8 - s;
    if (at < 0) continue;
    // The bytes before the word must agree too (s of them).
    const want = streamBytes(key, at, Math.min(d.length - i, 24));
    if (Buffer.from(d.buffer, d.byteOffset + i, want.length).equals(want)) return at;
  }
  return undefined;
}

/** What a receiver found wrong in one stream, in bytes. */
export interface StreamDamage {
  /** Bytes delivered again (their offset was below what had already arrived). */
  duplicated: number;
  /** Bytes skipped over: a later offset arrived before them and they never came. */
  lost: number;
  /** Bytes that belong nowhere in the stream. */
  corrupted: number;
  /** The first few anomalies, one sentence each. */
  events: string[];
}

/**
 * Checks a received stream of `key` chunk by chunk. `high` is how far the stream has arrived
 * (every offset below it was delivered at least once).
 */
export class StreamChecker {
  /** The offset the next received byte should have. */
  private pos = 0;
  private synced = true;
  private carry: Buffer | undefined;
  high = 0;
  readonly damage: StreamDamage = { duplicated: 0, lost: 0, corrupted: 0, events: [] };

  constructor(
    readonly key: number,
    private readonly name: string,
  ) {}

  private note(e: string): void {
    if (this.damage.events.length < 3) this.damage.events.push(`${this.name}: ${e}`);
  }

  /** Accounts a run of `n` good bytes at `pos`. */
  private run(n: number): void {
    if (this.pos > this.high) {
      this.damage.lost += this.pos - this.high;
      this.note(`bytes ${this.high}..${this.pos} never arrived (the stream jumped over them)`);
      this.high = this.pos;
    }
    const dup = Math.max(0, Math.min(this.high, this.pos + n) - this.pos);
    if (dup > 0) {
      if (this.damage.duplicated === 0 || this.damage.events.length < 3)
        this.note(`bytes ${this.pos}..${this.pos + dup} arrived again (already had up to ${this.high})`);
      this.damage.duplicated += dup;
    }
    this.pos += n;
    this.high = Math.max(this.high, this.pos);
  }

  /** Takes the next received chunk. */
  push(chunk: Buffer): void {
    const d = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = undefined;
    let i = 0;
    while (i < d.length) {
      if (this.synced) {
        const want = streamBytes(this.key, this.pos, d.length - i);
        let n = 0;
        const got = d.subarray(i);
        if (got.equals(want)) n = got.length;
        else while (n < got.length && got[n] === want[n]) n++;
        if (n > 0) this.run(n);
        i += n;
        if (i < d.length) this.synced = false;
        continue;
      }
      if (d.length - i < 15) {
        this.carry = Buffer.from(d.subarray(i));
        return;
      }
      const at = locate(this.key, d, i);
      if (at === undefined) {
        if (this.damage.corrupted === 0) this.note(`byte ${this.pos} belongs nowhere in the stream`);
        this.damage.corrupted++;
        this.pos++;
        i++;
        continue;
      }
      this.pos = at;
      this.synced = true;
    }
  }

  /** The stream ended: bytes left unlocated count as corrupted. */
  end(): void {
    if (this.carry) {
      this.damage.corrupted += this.carry.length;
      this.note(`${this.carry.length} trailing bytes belong nowhere`);
      this.carry = undefined;
    }
  }
}

/**
 * Where in a body of the project's pattern `stream` (period 65521) the bytes `d[i..i+16]` come
 * from: the candidate offset nearest `near`, or undefined when they match no offset.
 */
export function locatePattern(stream: number, d: Uint8Array, i: number, near: number): number | undefined {
  const n = Math.min(16, d.length - i);
  if (n < 8) return undefined;
  const PERIOD = 65521;
  const w = d.subarray(i, i + n);
  for (let delta = 0; delta < PERIOD; delta++) {
    for (const at of delta === 0 ? [near] : [near - delta, near + delta]) {
      if (at < 0) continue;
      if (patternByte(stream, at) !== w[0]) continue;
      if (checkPattern(stream, at, w) < 0) return at;
    }
  }
  return undefined;
}
