/**
 * Deterministic test streams: byte `i` of stream `s` is a fixed pseudo-random function of both,
 * so a sender can produce any part of a stream from its offset alone (a restored application
 * resumes with no other state) and a receiver can check every byte it reads.
 */

/**
 * The byte pattern of a stream: a pseudo-random sequence with period PERIOD (a prime, so a
 * stream shifted by 2^32 or by a power of two never matches itself), different per stream.
 * Kept as a table with a tail, so that any window up to TAIL bytes is one contiguous copy and a
 * whole read is checked with one native compare.
 */
const PERIOD = 65521;
const TAIL = 1 << 20;
const tables = new Map<number, Uint8Array>();

const MAX_TABLES = 64;

function table(stream: number): Uint8Array {
  let t = tables.get(stream);
  if (!t) {
    t = new Uint8Array(PERIOD + TAIL);
    for (let i = 0; i < PERIOD; i++)
      t[i] = (Math.imul(i ^ (i >>> 13), 0x9e3779b1) + Math.imul(stream, 0x85ebca6b)) >>> 24;
    for (let i = PERIOD; i < t.length; i += PERIOD) t.copyWithin(i, 0, Math.min(PERIOD, t.length - i));
    // Bounded: a table is ~1 MB, and callers key streams by port (thousands in a long run).
    if (tables.size >= MAX_TABLES) tables.delete(tables.keys().next().value as number);
    tables.set(stream, t);
  }
  return t;
}

/** Byte `i` of stream `stream`. */
export function patternByte(stream: number, i: number): number {
  return table(stream)[i % PERIOD];
}

export function fillPattern(stream: number, from: number, out: Uint8Array): void {
  const t = table(stream);
  for (let done = 0; done < out.length; ) {
    const n = Math.min(TAIL, out.length - done);
    const o = (from + done) % PERIOD;
    out.set(t.subarray(o, o + n), done);
    done += n;
  }
}

/** The first index where `d` differs from the stream at offset `from`, or -1. */
export function checkPattern(stream: number, from: number, d: Uint8Array): number {
  const t = table(stream);
  for (let done = 0; done < d.length; ) {
    const n = Math.min(TAIL, d.length - done);
    const o = (from + done) % PERIOD;
    const got = Buffer.from(d.buffer, d.byteOffset + done, n);
    if (!got.equals(Buffer.from(t.buffer, t.byteOffset + o, n))) {
      for (let k = 0; k < n; k++) if (got[k] !== t[o + k]) return done + k;
    }
    done += n;
  }
  return -1;
}
