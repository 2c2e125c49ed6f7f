/**
 * The sender's SACK scoreboard (RFC 6675 2, 4): which bytes above SND.UNA the receiver reported
 * holding, as sorted, disjoint, merged [start, end) ranges of stream offsets.
 */

export class Scoreboard {
  /** Flat sorted [start0, end0, start1, end1, ...], disjoint and not touching. */
  ranges: number[];
  /** Total bytes covered. */
  bytes: number;

  constructor(ranges: number[] = []) {
    this.ranges = ranges.slice();
    let b = 0;
    for (let i = 0; i < ranges.length; i += 2) b += ranges[i + 1] - ranges[i];
    this.bytes = b;
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  /** Highest SACKed offset (end of the last range), or -Infinity. */
  get highest(): number {
    return this.ranges.length === 0 ? Number.NEGATIVE_INFINITY : this.ranges[this.ranges.length - 1];
  }

  /** Adds [start, end), merging with what touches it. */
  add(start: number, end: number): void {
    if (end <= start) return;
    const r = this.ranges;
    // Find the first range whose end >= start (it may merge).
    let i = 0;
    while (i < r.length && r[i + 1] < start) i += 2;
    let j = i;
    let s = start;
    let e = end;
    while (j < r.length && r[j] <= e) {
      if (r[j] < s) s = r[j];
      if (r[j + 1] > e) e = r[j + 1];
      this.bytes -= r[j + 1] - r[j];
      j += 2;
    }
    r.splice(i, j - i, s, e);
    this.bytes += e - s;
  }

  /** Forgets everything below `offset` (cumulatively acknowledged). */
  trimBelow(offset: number): void {
    const r = this.ranges;
    let i = 0;
    while (i < r.length && r[i + 1] <= offset) {
      this.bytes -= r[i + 1] - r[i];
      i += 2;
    }
    if (i > 0) r.splice(0, i);
    if (r.length > 0 && r[0] < offset) {
      this.bytes -= offset - r[0];
      r[0] = offset;
    }
  }

  clear(): void {
    this.ranges.length = 0;
    this.bytes = 0;
  }

  /** True when `offset` lies in a SACKed range. */
  has(offset: number): boolean {
    const r = this.ranges;
    for (let i = 0; i < r.length; i += 2) {
      if (offset < r[i]) return false;
      if (offset < r[i + 1]) return true;
    }
    return false;
  }

  /** The first offset >= `from` that is not SACKed. */
  nextUnsacked(from: number): number {
    const r = this.ranges;
    let x = from;
    for (let i = 0; i < r.length; i += 2) {
      if (x < r[i]) return x;
      if (x < r[i + 1]) x = r[i + 1];
    }
    return x;
  }

  /** Start of the first SACKed range above `from`, or Infinity. */
  nextSacked(from: number): number {
    const r = this.ranges;
    for (let i = 0; i < r.length; i += 2) if (r[i] > from) return r[i];
    return Number.POSITIVE_INFINITY;
  }

  /** SACKed bytes within [from, to). */
  bytesIn(from: number, to: number): number {
    const r = this.ranges;
    let n = 0;
    for (let i = 0; i < r.length; i += 2) {
      const s = r[i] > from ? r[i] : from;
      const e = r[i + 1] < to ? r[i + 1] : to;
      if (e > s) n += e - s;
    }
    return n;
  }

  /**
   * RFC 6675 4 IsLost: a hole is lost when more than (DupThresh - 1) * SMSS bytes above it are
   * SACKed (or DupThresh discontiguous ranges are). Since that count only falls going up, the lost
   * holes are a prefix: returns the offset below which every un-SACKed byte is lost.
   */
  lostBoundary(dupThresh: number, mss: number): number {
    const r = this.ranges;
    let above = 0;
    let count = 0;
    for (let i = r.length - 2; i >= 0; i -= 2) {
      above += r[i + 1] - r[i];
      count++;
      if (above > (dupThresh - 1) * mss || count >= dupThresh) return r[i];
    }
    return Number.NEGATIVE_INFINITY;
  }
}
