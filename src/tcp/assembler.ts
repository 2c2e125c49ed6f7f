/**
 * The reassembly queue: bytes that arrived beyond RCV.NXT, out of order (RFC 9293 3.10.7.4:
 * "segments with higher beginning sequence numbers may be held for later processing"), and the
 * SACK blocks that report them (RFC 2018 3, 4).
 *
 * Held bytes form a sorted list of maximal ranges (disjoint and never touching). A range keeps
 * the copies of the segments it was built from as a list of pieces and joins them only when
 * `take` hands them over, so a long run of segments after a hole costs one copy each, not a
 * growing concatenation. Memory is bounded twice:
 * - `maxBytes` bounds the bytes held; what does not fit is not stored (and so never SACKed);
 * - at most `ASSEMBLER_MAX_RANGES` ranges are held (like smoltcp's fixed contig count); a segment
 *   that would open one more disjoint range is refused. Segments that touch a held range are
 *   always accepted (within `maxBytes`), so the data after the first hole keeps flowing.
 * Pieces are coalesced so that any two neighbours together exceed `COALESCE_BYTES`: a peer
 * sending one-byte segments cannot make the piece count (and the per-object overhead) grow
 * faster than about 1 per 1 KiB held.
 */

export interface AssemblerSnapshot {
  /** Held ranges, ascending. */
  ranges: { offset: number; data: Uint8Array }[];
  /** Every held range as [start, end), most recently changed first (the SACK order). */
  recent: [number, number][];
  maxBytes: number;
}

/** Most disjoint ranges held at once (so at most this many holes above RCV.NXT). */
export const ASSEMBLER_MAX_RANGES = 64;

/** Neighbouring pieces whose lengths sum to at most this are joined into one. */
const COALESCE_BYTES = 2048;

interface Range {
  start: number;
  end: number;
  /** Contiguous copies; their concatenation is the bytes [start, end). */
  pieces: Uint8Array[];
  /** Recency for SACK ordering: larger is more recent. */
  stamp: number;
}

export class Assembler {
  readonly maxBytes: number;
  private held = 0;
  private list: Range[] = [];
  private clock = 0;

  constructor(maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0)
      throw new RangeError(`assembler maxBytes must be a non-negative integer, got ${maxBytes}`);
    this.maxBytes = maxBytes;
  }

  /** Bytes currently held. */
  get bytes(): number {
    return this.held;
  }

  /**
   * Stores the bytes [offset, offset + data.length), copying them. Bytes already held are kept
   * (first copy wins, as RFC 9293 3.10.7.4 permits). The gaps the segment covers are filled in
   * ascending order until `maxBytes` is reached; the rest is not stored, so it is never
   * acknowledged. Returns the number of bytes stored. The range that then holds `offset` becomes
   * the most recent for SACK (RFC 2018 4: the first block reports the triggering segment).
   */
  insert(offset: number, data: Uint8Array): number {
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new RangeError(`insert offset must be a non-negative safe integer, got ${offset}`);
    const end = offset + data.length;
    if (data.length === 0) return 0;
    const list = this.list;
    // i: first range that ends at or after `offset` (touches or lies beyond the segment).
    let i = this.firstEndingAtOrAfter(offset);
    let pos = offset;
    let stored = 0;
    let budget = this.maxBytes - this.held;
    while (pos < end) {
      const r = i < list.length ? list[i] : undefined;
      if (r !== undefined && r.start <= pos) {
        // Already held (or just adjacent): first copy wins.
        pos = r.end;
        i++;
        continue;
      }
      const gapEnd = r !== undefined && r.start < end ? r.start : end;
      const n = Math.min(gapEnd - pos, budget);
      if (n === 0) break;
      const placed = this.place(i, pos, data.subarray(pos - offset, pos - offset + n));
      if (placed < 0) break; // range limit
      stored += n;
      budget -= n;
      this.held += n;
      i = placed;
      pos += n;
      if (pos < gapEnd) break; // out of memory mid-gap
    }
    // The segment's first byte is held now unless none of it could be stored.
    const k = this.firstEndingAtOrAfter(offset + 1);
    if (k < list.length && list[k].start <= offset) list[k].stamp = ++this.clock;
    return stored;
  }

  /**
   * Drops held bytes below `rcvNxt`; then, if a held range covers `rcvNxt`, removes it and returns
   * its bytes from `rcvNxt` on (ranges are maximal, so this is everything contiguous), else
   * `undefined`.
   */
  take(rcvNxt: number): Uint8Array | undefined {
    this.dropBelow(rcvNxt);
    const list = this.list;
    if (list.length === 0 || list[0].start > rcvNxt) return undefined;
    const r = list.shift()!;
    this.held -= r.end - r.start;
    if (r.pieces.length === 1) return r.pieces[0];
    const out = new Uint8Array(r.end - r.start);
    let at = 0;
    for (const p of r.pieces) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /**
   * Up to `max` SACK blocks as flat [start0, end0, start1, end1, ...] (stream offsets), each a
   * maximal held range clipped to start at `rcvNxt` or above, most recently changed first, then
   * the others by recency (RFC 2018 4: the first block holds the triggering segment; the rest
   * repeat the most recently reported blocks).
   */
  sackBlocks(rcvNxt: number, max: number): number[] {
    const out: number[] = [];
    const list = this.list;
    let below = Number.POSITIVE_INFINITY;
    for (let n = 0; n < max; n++) {
      // Selection of the next most recent block: no sort, no allocation beyond `out`.
      let best = -1;
      for (let j = 0; j < list.length; j++) {
        const r = list[j];
        if (r.end > rcvNxt && r.stamp < below && (best < 0 || r.stamp > list[best].stamp)) best = j;
      }
      if (best < 0) break;
      const r = list[best];
      out.push(Math.max(r.start, rcvNxt), r.end);
      below = r.stamp;
    }
    return out;
  }

  /** How many blocks `sackBlocks(rcvNxt, max)` would return. */
  sackBlockCount(rcvNxt: number, max: number): number {
    let n = 0;
    for (const r of this.list) if (r.end > rcvNxt) n++;
    return n < max ? n : max;
  }

  /** Held ranges as flat [start, end, ...], ascending. */
  ranges(): number[] {
    const out: number[] = [];
    for (const r of this.list) out.push(r.start, r.end);
    return out;
  }

  /** Drops every held byte below `offset` (without copying what stays). */
  dropBelow(offset: number): void {
    const list = this.list;
    let drop = 0;
    while (drop < list.length && list[drop].end <= offset) {
      this.held -= list[drop].end - list[drop].start;
      drop++;
    }
    if (drop > 0) list.splice(0, drop);
    const r = list[0];
    if (r === undefined || r.start >= offset) return;
    let cut = offset - r.start;
    this.held -= cut;
    r.start = offset;
    while (cut > 0) {
      const p = r.pieces[0];
      if (p.length <= cut) {
        cut -= p.length;
        r.pieces.shift();
      } else {
        r.pieces[0] = p.subarray(cut);
        cut = 0;
      }
    }
  }

  clear(): void {
    this.list = [];
    this.held = 0;
  }

  snapshot(): AssemblerSnapshot {
    const ranges = this.list.map((r) => ({ offset: r.start, data: concat(r) }));
    const recent = this.list
      .slice()
      .sort((a, b) => b.stamp - a.stamp)
      .map((r): [number, number] => [r.start, r.end]);
    return { ranges, recent, maxBytes: this.maxBytes };
  }

  static restore(s: AssemblerSnapshot): Assembler {
    const a = new Assembler(s.maxBytes);
    let prevEnd = -1;
    for (const { offset, data } of s.ranges) {
      if (!Number.isSafeInteger(offset) || data.length === 0 || offset <= prevEnd)
        throw new RangeError('assembler snapshot ranges must be non-empty, ascending and not touching');
      prevEnd = offset + data.length;
      a.list.push({ start: offset, end: prevEnd, pieces: [data.slice()], stamp: 0 });
      a.held += data.length;
    }
    if (a.held > a.maxBytes || a.list.length > ASSEMBLER_MAX_RANGES)
      throw new RangeError('assembler snapshot holds more than its limits allow');
    if (s.recent.length !== a.list.length)
      throw new RangeError('assembler snapshot recency must list every range once');
    for (let n = 0; n < s.recent.length; n++) {
      const [start, end] = s.recent[n];
      const r = a.list.find((x) => x.start === start && x.end === end);
      if (r === undefined || r.stamp !== 0)
        throw new RangeError('assembler snapshot recency must list every range once');
      r.stamp = s.recent.length - n;
    }
    a.clock = s.recent.length;
    return a;
  }

  /** Index of the first range with end >= offset (binary search). */
  private firstEndingAtOrAfter(offset: number): number {
    const list = this.list;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid].end < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Stores a copy of `bytes` at `pos`, a gap just before range `i` (or past the last range),
   * joining the neighbours it touches. Returns the index of the range that now holds it, or -1
   * if storing it would open a range past the limit.
   */
  private place(i: number, pos: number, bytes: Uint8Array): number {
    const list = this.list;
    const end = pos + bytes.length;
    const left = i > 0 && list[i - 1].end === pos ? list[i - 1] : undefined;
    const right = i < list.length && list[i].start === end ? list[i] : undefined;
    if (left === undefined && right === undefined && list.length >= ASSEMBLER_MAX_RANGES) return -1;
    const piece = bytes.slice();
    if (left !== undefined) {
      appendPiece(left.pieces, piece);
      left.end = end;
      if (right !== undefined) {
        // The gap between two ranges is filled: they become one.
        appendPiece(left.pieces, right.pieces[0]);
        for (let j = 1; j < right.pieces.length; j++) left.pieces.push(right.pieces[j]);
        left.end = right.end;
        left.stamp = Math.max(left.stamp, right.stamp);
        list.splice(i, 1);
      }
      return i - 1;
    }
    if (right !== undefined) {
      const first = right.pieces[0];
      if (first.length + piece.length <= COALESCE_BYTES) right.pieces[0] = join(piece, first);
      else right.pieces.unshift(piece);
      right.start = pos;
      return i;
    }
    list.splice(i, 0, { start: pos, end, pieces: [piece], stamp: 0 });
    return i;
  }
}

/** Pushes `p` onto `pieces`, joining it with the last piece if both are small. */
function appendPiece(pieces: Uint8Array[], p: Uint8Array): void {
  const last = pieces.length - 1;
  if (last >= 0 && pieces[last].length + p.length <= COALESCE_BYTES) pieces[last] = join(pieces[last], p);
  else pieces.push(p);
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function concat(r: Range): Uint8Array {
  const out = new Uint8Array(r.end - r.start);
  let at = 0;
  for (const p of r.pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
