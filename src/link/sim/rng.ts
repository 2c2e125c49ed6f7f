/**
 * Seeded pseudo-random numbers for the simulator and for anything that needs randomness
 * injected (ISNs, jitter, fault decisions). xoshiro128** (Blackman and Vigna): 128 bits of
 * state, 32-bit outputs, period 2^128 - 1, a handful of integer ops per draw.
 *
 * Independent streams: `derive(label)` gives a stream that depends only on this generator's
 * key and the label, never on how far this generator has been drawn, so adding a link or a node
 * does not perturb anyone else's randomness. `fork()` draws a key from this stream (it does
 * advance this one) for anonymous children.
 */

const TWO_32 = 0x1_0000_0000;

/** splitmix32-style finaliser: a bijective avalanche of a 32-bit value. */
function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad);
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97);
  x ^= x >>> 15;
  return x >>> 0;
}

/** FNV-1a over UTF-16 code units, then mixed: a 32-bit key for a label. */
function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h ^ label.length);
}

/** A 32-bit key from any finite number (integers up to 2^53 keep all their bits). */
function keyOf(seed: number): number {
  if (!Number.isFinite(seed)) throw new Error(`Rng: the seed must be a finite number, got ${seed}.`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / TWO_32) >>> 0;
  const frac = Math.floor((seed - Math.floor(seed)) * TWO_32) >>> 0;
  return mix32(lo ^ mix32(hi ^ mix32(frac)));
}

export class Rng {
  /** The 32-bit key this stream was built from (what `derive` starts from). */
  readonly key: number;
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** A stream for `seed` (any finite number; equal seeds give equal streams). */
  constructor(seed: number) {
    this.key = keyOf(seed);
    // Expand the key with a splitmix32 sequence; a non-zero state is guaranteed since mix32 is a
    // bijection of distinct inputs and at most one of the four can map to zero.
    let x = this.key;
    x = (x + 0x6a09e667) | 0;
    this.s0 = mix32(x);
    x = (x + 0x6a09e667) | 0;
    this.s1 = mix32(x);
    x = (x + 0x6a09e667) | 0;
    this.s2 = mix32(x);
    x = (x + 0x6a09e667) | 0;
    this.s3 = mix32(x);
  }

  private static fromKey(key: number): Rng {
    // For integers below 2^32 the constructor's keyOf is a bijection, so distinct keys stay distinct.
    return new Rng(key >>> 0);
  }

  /**
   * A stream that continues from a saved `state()` (for snapshots and known-answer tests).
   * `key` (what `derive` starts from) defaults to one computed from the state.
   */
  static fromState(state: readonly [number, number, number, number], key?: number): Rng {
    if ((state[0] | state[1] | state[2] | state[3]) === 0)
      throw new Error('Rng.fromState: the state is all zero.');
    const r = new Rng(0);
    r.s0 = state[0] | 0;
    r.s1 = state[1] | 0;
    r.s2 = state[2] | 0;
    r.s3 = state[3] | 0;
    (r as { key: number }).key = key ?? mix32(state[0] ^ mix32(state[1] ^ mix32(state[2] ^ mix32(state[3]))));
    return r;
  }

  /** The 128-bit state as four unsigned 32-bit words. */
  state(): [number, number, number, number] {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  /** Uniform unsigned 32-bit integer. */
  nextU32(): number {
    const s1 = this.s1;
    const r = Math.imul(s1, 5);
    const result = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  next(): number {
    return this.nextU32() / TWO_32;
  }

  /** Uniform real in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [lo, hi], both inclusive, without modulo bias. Range at most 2^32 values. */
  int(lo: number, hi: number): number {
    lo = Math.ceil(lo);
    hi = Math.floor(hi);
    const n = hi - lo + 1;
    if (!(n >= 1) || n > TWO_32) throw new Error(`Rng.int: empty or too large range [${lo}, ${hi}].`);
    if (n === 1) return lo;
    // Rejection sampling: accept draws below the largest multiple of n. Expected < 2 draws; the
    // cap keeps the loop bounded (falling back to a tiny bias after 64 unlucky draws).
    const limit = TWO_32 - (TWO_32 % n);
    let x = this.nextU32();
    for (let i = 0; x >= limit && i < 64; i++) x = this.nextU32();
    return lo + (x % n);
  }

  /** True with probability `p` (p <= 0 never, p >= 1 always). Draws once. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: the array is empty.');
    return items[this.int(0, items.length - 1)];
  }

  /** In-place Fisher–Yates shuffle; returns the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      const t = items[i];
      items[i] = items[j];
      items[j] = t;
    }
    return items;
  }

  /** A child stream keyed by a draw from this one (advances this stream by one draw). */
  fork(): Rng {
    return Rng.fromKey(mix32(this.nextU32() ^ 0x5bd1e995));
  }

  /**
   * A child stream that depends only on this stream's key and `label`, not on its position:
   * `new Rng(s).derive('link:a-b')` is the same stream whatever else was drawn or derived.
   */
  derive(label: string | number): Rng {
    const h = typeof label === 'number' ? keyOf(label) ^ 0x9e3779b9 : hashLabel(label);
    return Rng.fromKey(mix32(this.key ^ mix32(h)));
  }
}
