/**
 * TCP sequence-number arithmetic (RFC 9293 3.4), the only place it is done.
 *
 * A sequence number is an unsigned 32-bit integer held in a JS number; every result is stored
 * with `>>> 0`. Comparison takes the signed 32-bit difference, so it is correct across the wrap
 * as long as the two values are less than 2^31 apart (which the window rules guarantee).
 *
 * A *stream offset* counts bytes since the first data byte (ISN + 1) as a safe integer; it never
 * wraps. The replication log and the API speak offsets; only the wire speaks sequence numbers.
 */

export type Seq = number;

/** `a + n` modulo 2^32. `n` may be negative or larger than 2^32. */
export function seqAdd(a: Seq, n: number): Seq {
  return (a + (n % 0x1_0000_0000)) >>> 0;
}

/** Signed distance `a - b` in (-2^31, 2^31]. */
export function seqSub(a: Seq, b: Seq): number {
  return (a - b) | 0;
}

export function seqLt(a: Seq, b: Seq): boolean {
  return ((a - b) | 0) < 0;
}

export function seqLe(a: Seq, b: Seq): boolean {
  return ((a - b) | 0) <= 0;
}

export function seqGt(a: Seq, b: Seq): boolean {
  return ((a - b) | 0) > 0;
}

export function seqGe(a: Seq, b: Seq): boolean {
  return ((a - b) | 0) >= 0;
}

export function seqMax(a: Seq, b: Seq): Seq {
  return seqGt(a, b) ? a : b;
}

export function seqMin(a: Seq, b: Seq): Seq {
  return seqLt(a, b) ? a : b;
}

/** `start <= x < start + size` in sequence space (size up to 2^32 - 1; size 0 means empty). */
export function seqInWindow(x: Seq, start: Seq, size: number): boolean {
  return (x - start) >>> 0 < size;
}

/** `lo <= x <= hi` in sequence space. */
export function seqBetween(x: Seq, lo: Seq, hi: Seq): boolean {
  return (x - lo) >>> 0 <= (hi - lo) >>> 0;
}

/** The sequence number of stream offset `offset` (offset 0 is the byte after the SYN, ISN + 1). */
export function offsetToSeq(isn: Seq, offset: number): Seq {
  return (isn + 1 + (offset % 0x1_0000_0000)) >>> 0;
}

/**
 * The stream offset of `seq`, unwrapped to the one nearest `near` (a known offset of the same
 * stream, such as the current receive or send point). Exact while the two are less than 2^31 apart.
 */
export function seqToOffset(isn: Seq, seq: Seq, near: number): number {
  return near + seqSub(seq, offsetToSeq(isn, near));
}
