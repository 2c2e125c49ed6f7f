import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ASSEMBLER_MAX_RANGES, Assembler } from '../../src/tcp/assembler.ts';

/** `n` bytes of a recognisable stream: the byte at offset o is o mod 251. */
function stream(offset: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (offset + i) % 251;
  return b;
}

function filled(n: number, v: number): Uint8Array {
  return new Uint8Array(n).fill(v);
}

/** Inserts the true stream bytes [start, end). */
function seg(a: Assembler, start: number, end: number): number {
  return a.insert(start, stream(start, end - start));
}

function pieceCounts(a: Assembler): number[] {
  return (a as unknown as { list: { pieces: Uint8Array[] }[] }).list.map((r) => r.pieces.length);
}

describe('Assembler: arrivals in and out of order', () => {
  test('an in-order segment is taken whole, as the very copy stored', () => {
    const a = new Assembler(10_000);
    const data = stream(0, 100);
    assert.equal(a.insert(0, data), 100);
    data.fill(0); // the frame buffer is reused: the assembler must have copied
    assert.equal(a.bytes, 100);
    assert.deepEqual(a.take(0), stream(0, 100));
    assert.equal(a.bytes, 0);
    assert.deepEqual(a.ranges(), []);
    assert.equal(a.take(100), undefined);
  });

  test('nothing is taken while a hole sits at rcvNxt', () => {
    const a = new Assembler(10_000);
    assert.equal(seg(a, 200, 300), 100);
    assert.equal(a.take(100), undefined);
    assert.deepEqual(a.ranges(), [200, 300]);
    assert.equal(a.bytes, 100);
  });

  test('filling the hole merges; take returns everything contiguous across the former ranges', () => {
    const a = new Assembler(10_000);
    seg(a, 300, 400);
    seg(a, 200, 300);
    seg(a, 500, 600);
    assert.deepEqual(a.ranges(), [200, 400, 500, 600]);
    seg(a, 400, 500);
    assert.deepEqual(a.ranges(), [200, 600]);
    seg(a, 100, 200);
    assert.deepEqual(a.take(100), stream(100, 500));
    assert.equal(a.bytes, 0);
  });

  test('segments arriving in reverse order are delivered once, in order', () => {
    const a = new Assembler(100_000);
    for (let s = 9000; s >= 1000; s -= 1000) seg(a, s, s + 1000);
    assert.equal(a.take(0), undefined);
    seg(a, 0, 1000);
    assert.deepEqual(a.take(0), stream(0, 10_000));
    assert.equal(a.take(10_000), undefined);
  });

  test('take from inside a range returns from rcvNxt on and drops what lies below', () => {
    const a = new Assembler(10_000);
    seg(a, 100, 200);
    seg(a, 200, 250); // two pieces in one range
    seg(a, 300, 350);
    assert.deepEqual(a.take(220), stream(220, 30));
    assert.deepEqual(a.ranges(), [300, 350]);
    assert.equal(a.bytes, 50);
    // A range wholly below rcvNxt is dropped (the bytes came by another path).
    assert.equal(a.take(400), undefined);
    assert.deepEqual(a.ranges(), []);
    assert.equal(a.bytes, 0);
  });

  test('take from inside a range of many MSS-sized pieces', () => {
    const a = new Assembler(100_000);
    for (let o = 1000; o < 10_000; o += 1448) seg(a, o, Math.min(o + 1448, 10_000));
    assert.deepEqual(pieceCounts(a), [6], 'six of 1448 bytes, the last one joined by the 312-byte tail');
    assert.deepEqual(a.take(4000), stream(4000, 6000), 'starting inside the third piece');
    assert.equal(a.bytes, 0);
    for (let o = 20_000; o < 30_000; o += 1448) seg(a, o, Math.min(o + 1448, 30_000));
    assert.deepEqual(
      a.take(20_000 + 2 * 1448),
      stream(20_000 + 2 * 1448, 10_000 - 2 * 1448),
      'at a boundary',
    );
  });

  test('take at the exact end of a range does not return it', () => {
    const a = new Assembler(10_000);
    seg(a, 100, 200);
    assert.equal(a.take(200), undefined);
    assert.equal(a.bytes, 0);
  });

  test('empty segments store nothing', () => {
    const a = new Assembler(10_000);
    assert.equal(a.insert(5, new Uint8Array(0)), 0);
    assert.deepEqual(a.ranges(), []);
    assert.deepEqual(a.sackBlocks(0, 4), []);
  });

  test('caller bugs throw RangeError', () => {
    const a = new Assembler(100);
    assert.throws(() => a.insert(-1, filled(1, 0)), RangeError);
    assert.throws(() => a.insert(1.5, filled(1, 0)), RangeError);
    assert.throws(() => new Assembler(-1), RangeError);
  });
});

describe('Assembler: overlaps keep the first copy (RFC 9293 3.10.7.4)', () => {
  // Held: [100, 200) of 0xAA. The new segment is 0xBB; the result shows which copy survived.
  const cases: {
    name: string;
    at: [number, number];
    stored: number;
    ranges: number[];
    bb: [number, number][];
  }[] = [
    { name: 'overlapping the left edge', at: [50, 150], stored: 50, ranges: [50, 200], bb: [[50, 100]] },
    { name: 'overlapping the right edge', at: [150, 250], stored: 50, ranges: [100, 250], bb: [[200, 250]] },
    { name: 'inside', at: [120, 180], stored: 0, ranges: [100, 200], bb: [] },
    { name: 'an exact duplicate', at: [100, 200], stored: 0, ranges: [100, 200], bb: [] },
    { name: 'sharing the left edge', at: [100, 150], stored: 0, ranges: [100, 200], bb: [] },
    { name: 'sharing the right edge', at: [150, 200], stored: 0, ranges: [100, 200], bb: [] },
    {
      name: 'covering both edges',
      at: [50, 250],
      stored: 100,
      ranges: [50, 250],
      bb: [
        [50, 100],
        [200, 250],
      ],
    },
    { name: 'adjacent on the left', at: [50, 100], stored: 50, ranges: [50, 200], bb: [[50, 100]] },
    { name: 'adjacent on the right', at: [200, 250], stored: 50, ranges: [100, 250], bb: [[200, 250]] },
    { name: 'disjoint below', at: [10, 20], stored: 10, ranges: [10, 20, 100, 200], bb: [[10, 20]] },
    { name: 'disjoint above', at: [300, 310], stored: 10, ranges: [100, 200, 300, 310], bb: [[300, 310]] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const a = new Assembler(10_000);
      a.insert(100, filled(100, 0xaa));
      assert.equal(a.insert(c.at[0], filled(c.at[1] - c.at[0], 0xbb)), c.stored);
      assert.deepEqual(a.ranges(), c.ranges);
      assert.equal(a.bytes, 100 + c.stored);
      const lo = a.ranges()[0];
      const got = a.take(lo)!;
      const hi = lo + got.length;
      for (let o = lo; o < hi; o++) {
        const want = c.bb.some(([s, e]) => o >= s && o < e) ? 0xbb : 0xaa;
        assert.equal(got[o - lo], want, `byte at offset ${o}`);
      }
    });
  }

  test('one segment filling several holes stores only the holes and leaves one range', () => {
    const a = new Assembler(10_000);
    a.insert(100, filled(100, 0xaa));
    a.insert(300, filled(100, 0xaa));
    a.insert(500, filled(10, 0xaa));
    assert.equal(a.insert(50, filled(400, 0xbb)), 50 + 100 + 50);
    assert.deepEqual(a.ranges(), [50, 450, 500, 510]);
    const got = a.take(50)!;
    const want = new Uint8Array(400).fill(0xbb);
    want.fill(0xaa, 50, 150);
    want.fill(0xaa, 250, 350);
    assert.deepEqual(got, want);
  });
});

describe('Assembler: bounded memory', () => {
  test('a segment that does not fit is stored only up to maxBytes, lowest bytes first', () => {
    const a = new Assembler(1000);
    assert.equal(seg(a, 1000, 1500), 500);
    assert.equal(seg(a, 2000, 2800), 500, 'partial: the first 500 bytes');
    assert.deepEqual(a.ranges(), [1000, 1500, 2000, 2500]);
    assert.equal(a.bytes, 1000);
    assert.equal(seg(a, 3000, 3100), 0, 'full: refused');
    assert.equal(seg(a, 2500, 2600), 0, 'full: even when adjacent');
    assert.deepEqual(a.sackBlocks(0, 4), [2000, 2500, 1000, 1500], 'a dropped byte is never SACKed');
    // Retransmissions of held bytes are still accepted (and still make their block the newest).
    assert.equal(seg(a, 1000, 1500), 0);
    assert.deepEqual(a.sackBlocks(0, 4), [1000, 1500, 2000, 2500]);
    // Delivery frees room.
    seg(a, 0, 1000); // does not fit either ...
    assert.equal(a.take(0), undefined); // ... so the hole stays
    assert.deepEqual(a.take(1000), stream(1000, 500));
    assert.equal(a.bytes, 500);
    assert.equal(seg(a, 2500, 3100), 500);
    assert.deepEqual(a.ranges(), [2000, 3000]);
  });

  test('partial storage fills holes in ascending order and stops mid-hole', () => {
    const a = new Assembler(250);
    seg(a, 100, 200);
    seg(a, 300, 320);
    // Free: 130. Holes of [0, 400): [0,100) then [200,300) then [320,400).
    assert.equal(seg(a, 0, 400), 130);
    assert.deepEqual(a.ranges(), [0, 230, 300, 320]);
    assert.deepEqual(a.take(0), stream(0, 230));
  });

  test('maxBytes 0 holds nothing', () => {
    const a = new Assembler(0);
    assert.equal(seg(a, 0, 10), 0);
    assert.equal(a.take(0), undefined);
    assert.deepEqual(a.sackBlocks(0, 4), []);
  });

  test(`at most ${ASSEMBLER_MAX_RANGES} ranges: a new disjoint one is refused, touching ones are not`, () => {
    const a = new Assembler(1_000_000);
    for (let k = 0; k < ASSEMBLER_MAX_RANGES; k++) assert.equal(seg(a, 1000 + 10 * k, 1001 + 10 * k), 1);
    const top = 1000 + 10 * ASSEMBLER_MAX_RANGES;
    assert.equal(a.ranges().length, 2 * ASSEMBLER_MAX_RANGES);
    assert.equal(seg(a, top + 5, top + 10), 0, 'a new hole would open');
    assert.equal(seg(a, 500, 600), 0, 'below the first range too');
    assert.equal(seg(a, 1001, 1003), 2, 'extending a range is fine');
    assert.equal(seg(a, 995, 1000), 5, 'prepending too');
    assert.equal(seg(a, 1003, 1010), 7, 'closing a hole frees a range');
    assert.equal(a.ranges().length, 2 * (ASSEMBLER_MAX_RANGES - 1));
    assert.equal(seg(a, top + 5, top + 10), 5);
    assert.equal(seg(a, 2000, 2001), 0);
    // A segment starting in a hole that spans into a range is accepted whole.
    assert.equal(seg(a, 1015, 1025), 9);
    assert.deepEqual(a.ranges().slice(0, 4), [995, 1011, 1015, 1025]);
  });

  test('pieces are coalesced: one-byte segments do not make one object per byte', () => {
    const a = new Assembler(1_000_000);
    for (let o = 10_000; o < 30_000; o++) seg(a, o, o + 1); // appended
    for (let o = 9999; o >= 5000; o--) seg(a, o, o + 1); // prepended
    // 20 000 appended bytes in ceil(20 000 / 2048) = 10 pieces, 5000 prepended in 3.
    assert.deepEqual(pieceCounts(a), [13]);
    assert.deepEqual(a.take(5000), stream(5000, 25_000));
  });

  test('MSS-sized pieces are not recopied', () => {
    const a = new Assembler(1_000_000);
    for (let o = 1448; o < 100 * 1448; o += 1448) seg(a, o, o + 1448);
    assert.deepEqual(pieceCounts(a), [99]);
  });
});

describe('Assembler: SACK blocks (RFC 2018)', () => {
  // RFC 2018 5: "the data receiver ... has received ... a left window edge of 5000, and the
  // data transmitter sends a burst of 8 segments, each containing 500 data bytes."
  test('RFC 2018 5, case 2: the first segment is dropped, the other seven arrive', () => {
    const a = new Assembler(100_000);
    for (let s = 5500; s < 9000; s += 500) {
      seg(a, s, s + 500);
      assert.equal(a.take(5000), undefined, 'ACK stays 5000');
      assert.deepEqual(a.sackBlocks(5000, 4), [5500, s + 500]);
    }
  });

  test('RFC 2018 5, case 3: the 2nd, 4th, 6th and 8th segments are dropped, then two arrive late', () => {
    const a = new Assembler(100_000);
    let rcvNxt = 5000;
    const arrive = (s: number): number[] => {
      seg(a, s, s + 500);
      const got = a.take(rcvNxt);
      if (got !== undefined) rcvNxt += got.length;
      return [rcvNxt, ...a.sackBlocks(rcvNxt, 4)];
    };
    assert.deepEqual(arrive(5000), [5500]);
    assert.deepEqual(arrive(6000), [5500, 6000, 6500]);
    assert.deepEqual(arrive(7000), [5500, 7000, 7500, 6000, 6500]);
    assert.deepEqual(arrive(8000), [5500, 8000, 8500, 7000, 7500, 6000, 6500]);
    // "Suppose at this point, the 4th packet is received out of order."
    assert.deepEqual(arrive(6500), [5500, 6000, 7500, 8000, 8500]);
    // "Suppose at this point, the 2nd segment is received."
    assert.deepEqual(arrive(5500), [7500, 8000, 8500]);
  });

  test('at most `max` blocks: the most recent ones (RFC 2018 3: 3 fit beside timestamps)', () => {
    const a = new Assembler(100_000);
    for (const s of [1000, 3000, 5000, 7000, 9000]) seg(a, s, s + 100);
    assert.deepEqual(a.sackBlocks(0, 3), [9000, 9100, 7000, 7100, 5000, 5100]);
    assert.deepEqual(a.sackBlocks(0, 4), [9000, 9100, 7000, 7100, 5000, 5100, 3000, 3100]);
    assert.deepEqual(a.sackBlocks(0, 0), []);
    assert.deepEqual(a.ranges(), [1000, 1100, 3000, 3100, 5000, 5100, 7000, 7100, 9000, 9100]);
  });

  test('the block holding the triggering segment comes first, even for a duplicate', () => {
    const a = new Assembler(100_000);
    seg(a, 1000, 1100);
    seg(a, 2000, 2100);
    seg(a, 3000, 3100);
    seg(a, 1050, 1100); // a retransmission of already held bytes
    assert.deepEqual(a.sackBlocks(0, 4), [1000, 1100, 3000, 3100, 2000, 2100]);
    seg(a, 2100, 2200); // extends a block
    assert.deepEqual(a.sackBlocks(0, 4), [2000, 2200, 1000, 1100, 3000, 3100]);
    seg(a, 1100, 2000); // joins two blocks
    assert.deepEqual(a.sackBlocks(0, 4), [1000, 2200, 3000, 3100]);
  });

  test('a refused segment leaves the order alone', () => {
    const a = new Assembler(200);
    seg(a, 1000, 1100);
    seg(a, 2000, 2100);
    assert.equal(seg(a, 500, 600), 0);
    assert.deepEqual(a.sackBlocks(0, 4), [2000, 2100, 1000, 1100]);
  });

  test('no block below rcvNxt; a block straddling it starts at rcvNxt', () => {
    const a = new Assembler(100_000);
    seg(a, 1000, 1100);
    seg(a, 2000, 2100);
    assert.deepEqual(a.sackBlocks(1100, 4), [2000, 2100]);
    assert.deepEqual(a.sackBlocks(2050, 4), [2050, 2100]);
    assert.deepEqual(a.sackBlocks(2100, 4), []);
  });

  test('clear forgets everything', () => {
    const a = new Assembler(100_000);
    seg(a, 1000, 1100);
    a.clear();
    assert.equal(a.bytes, 0);
    assert.deepEqual(a.ranges(), []);
    assert.deepEqual(a.sackBlocks(0, 4), []);
    assert.equal(seg(a, 0, 10), 10);
  });
});

describe('Assembler: snapshot', () => {
  test('a plain record with ranges ascending and recency newest first', () => {
    const a = new Assembler(5000);
    seg(a, 300, 400);
    seg(a, 100, 150);
    seg(a, 150, 200);
    seg(a, 600, 700);
    const s = a.snapshot();
    assert.deepEqual(s, {
      ranges: [
        { offset: 100, data: stream(100, 100) },
        { offset: 300, data: stream(300, 100) },
        { offset: 600, data: stream(600, 100) },
      ],
      recent: [
        [600, 700],
        [100, 200],
        [300, 400],
      ],
      maxBytes: 5000,
    });
    const r = Assembler.restore(structuredClone(s));
    assert.deepEqual(r.sackBlocks(0, 4), a.sackBlocks(0, 4));
    assert.equal(r.bytes, 300);
  });

  test('restore rejects inconsistent records', () => {
    const d = (n: number) => new Uint8Array(n);
    const bad = [
      { ranges: [{ offset: 0, data: d(10) }], recent: [], maxBytes: 100 },
      { ranges: [{ offset: 0, data: d(10) }], recent: [[0, 11]], maxBytes: 100 },
      { ranges: [{ offset: 0, data: d(10) }], recent: [[0, 10]], maxBytes: 5 },
      {
        ranges: [
          { offset: 0, data: d(10) },
          { offset: 10, data: d(10) },
        ],
        recent: [
          [0, 10],
          [10, 20],
        ],
        maxBytes: 100,
      },
      { ranges: [{ offset: 0, data: d(0) }], recent: [[0, 0]], maxBytes: 100 },
      {
        ranges: [
          { offset: 0, data: d(1) },
          { offset: 5, data: d(1) },
        ],
        recent: [
          [0, 1],
          [0, 1],
        ],
        maxBytes: 100,
      },
    ] as const;
    for (const s of bad)
      assert.throws(
        () => Assembler.restore(s as unknown as Parameters<typeof Assembler.restore>[0]),
        RangeError,
      );
  });
});

// ---- Model-based properties ----

type AOp = { kind: 'insert'; rel: number; len: number; tag: number } | { kind: 'take' } | { kind: 'sack' };

const aopArb: fc.Arbitrary<AOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      rel: fc.integer({ min: -30, max: 400 }),
      len: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 80 })),
      tag: fc.nat(255),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('take' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sack' as const) }) },
);

/** A naive model: a map from offset to byte, and the receiver's rcvNxt. */
interface Model {
  held: Map<number, number>;
  rcvNxt: number;
  delivered: number[];
}

function modelRuns(m: Model): number[] {
  const keys = [...m.held.keys()].sort((x, y) => x - y);
  const out: number[] = [];
  for (const k of keys) {
    if (out.length > 0 && out[out.length - 1] === k) out[out.length - 1] = k + 1;
    else out.push(k, k + 1);
  }
  return out;
}

/**
 * Applies `op` to the assembler and checks it against the model. Segment bytes are
 * `(offset * 7 + tag) & 255`, so a byte kept from an earlier copy is told apart from a later one.
 * Returns what the caller observes, for the snapshot comparison.
 */
function astep(a: Assembler, m: Model, op: AOp, withTags: boolean, window?: number): unknown {
  if (op.kind === 'insert') {
    let offset = Math.max(0, m.rcvNxt + op.rel);
    let len = op.len;
    if (window !== undefined) {
      // RFC 9293 3.10.7.4: a receiver trims a segment to its window [rcvNxt, rcvNxt + window).
      const lo = Math.max(offset, m.rcvNxt);
      len = Math.min(offset + len, m.rcvNxt + window) - lo;
      offset = lo;
      if (len <= 0) return 0;
    }
    const data = new Uint8Array(len);
    for (let i = 0; i < len; i++) data[i] = withTags ? ((offset + i) * 7 + op.tag) & 255 : (offset + i) % 251;
    const before = a.ranges().length / 2;
    const stored = a.insert(offset, data);
    // What was stored: a prefix, in ascending order, of the segment's bytes not held before.
    const gaps: number[] = [];
    for (let o = offset; o < offset + len; o++) if (!m.held.has(o)) gaps.push(o);
    assert.ok(stored <= gaps.length);
    for (let j = 0; j < stored; j++) m.held.set(gaps[j], data[gaps[j] - offset]);
    assert.deepEqual(a.ranges(), modelRuns(m));
    assert.equal(a.bytes, m.held.size);
    assert.ok(a.bytes <= a.maxBytes);
    assert.ok(a.ranges().length / 2 <= ASSEMBLER_MAX_RANGES);
    if (stored < gaps.length) {
      // Only two reasons to refuse: memory is full, or a new range past the limit was needed.
      const full = a.bytes === a.maxBytes;
      const tooMany = stored === 0 && before === ASSEMBLER_MAX_RANGES;
      assert.ok(full || tooMany, `refused ${gaps.length - stored} bytes without cause`);
    }
    if (m.held.has(offset) && offset >= m.rcvNxt) {
      const b = a.sackBlocks(m.rcvNxt, 1);
      assert.ok(b[0] <= offset && offset < b[1], 'the first SACK block holds the new segment');
    }
    return stored;
  }
  if (op.kind === 'take') {
    const got = a.take(m.rcvNxt);
    for (const k of [...m.held.keys()]) if (k < m.rcvNxt) m.held.delete(k);
    const want: number[] = [];
    while (m.held.has(m.rcvNxt + want.length)) want.push(m.held.get(m.rcvNxt + want.length)!);
    if (want.length === 0) assert.equal(got, undefined);
    else assert.deepEqual(Array.from(got!), want);
    for (let j = 0; j < want.length; j++) m.held.delete(m.rcvNxt + j);
    m.rcvNxt += want.length;
    m.delivered.push(...want);
    assert.equal(a.bytes, m.held.size);
    return want;
  }
  const blocks = a.sackBlocks(m.rcvNxt, 4);
  const runs = modelRuns(m);
  assert.ok(blocks.length <= 8);
  for (let j = 0; j < blocks.length; j += 2) {
    assert.ok(blocks[j] >= m.rcvNxt && blocks[j] < blocks[j + 1]);
    const r = runs.findIndex((_, i) => i % 2 === 0 && runs[i] <= blocks[j] && blocks[j + 1] === runs[i + 1]);
    assert.ok(r >= 0, 'each block is a held range');
    for (let q = 0; q < j; q += 2) assert.notEqual(blocks[q], blocks[j], 'blocks are distinct');
  }
  const above = runs.filter((_, i) => i % 2 === 1 && runs[i] > m.rcvNxt).length;
  assert.equal(blocks.length, 2 * Math.min(4, above));
  return blocks;
}

const maxBytesArb = fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 200, max: 5000 }));

describe('Assembler properties', () => {
  test('agrees with a byte-map model under random inserts, takes and SACK queries', () => {
    fc.assert(
      fc.property(maxBytesArb, fc.array(aopArb, { maxLength: 200, size: 'max' }), (maxBytes, ops) => {
        const a = new Assembler(maxBytes);
        const m: Model = { held: new Map(), rcvNxt: 0, delivered: [] };
        for (const op of ops) astep(a, m, op, true);
      }),
      { numRuns: 400 },
    );
  });

  test('a stream sent in random pieces is delivered exactly: in order, never duplicated', () => {
    fc.assert(
      fc.property(maxBytesArb, fc.array(aopArb, { maxLength: 300, size: 'max' }), (maxBytes, ops) => {
        const a = new Assembler(maxBytes);
        const m: Model = { held: new Map(), rcvNxt: 0, delivered: [] };
        // The receiver trims segments to a window no larger than the assembler's memory, so the
        // byte at rcvNxt always has room.
        for (const op of ops) astep(a, m, op, false, maxBytes);
        // The sender finally retransmits everything in order.
        for (let guard = 0; guard < 10_000 && m.rcvNxt < 500; guard++) {
          astep(a, m, { kind: 'insert', rel: 0, len: 40, tag: 0 }, false, maxBytes);
          astep(a, m, { kind: 'take' }, false, maxBytes);
        }
        if (maxBytes > 0) {
          assert.ok(m.rcvNxt >= 500);
          assert.deepEqual(m.delivered, Array.from(stream(0, m.rcvNxt)));
        }
      }),
      { numRuns: 300 },
    );
  });

  test('many one-byte holes reach the range limit and the model still agrees', () => {
    let atLimit = 0;
    const spread = fc.record({
      kind: fc.constant('insert' as const),
      rel: fc.integer({ min: 1, max: 400 }).map((x) => 2 * x),
      len: fc.constant(1),
      tag: fc.nat(255),
    });
    fc.assert(
      fc.property(
        fc.array(fc.oneof({ weight: 8, arbitrary: spread }, { weight: 2, arbitrary: aopArb }), {
          minLength: 150,
          maxLength: 250,
        }),
        (ops) => {
          const a = new Assembler(100_000);
          const m: Model = { held: new Map(), rcvNxt: 0, delivered: [] };
          for (const op of ops) {
            astep(a, m, op, true);
            if (a.ranges().length === 2 * ASSEMBLER_MAX_RANGES) atLimit++;
          }
        },
      ),
      { numRuns: 200 },
    );
    assert.ok(atLimit > 1000, `the limit was reached after only ${atLimit} operations`);
  });

  test('MSS-sized segments (many pieces per range) agree with the model too', () => {
    const big = fc.record({
      kind: fc.constant('insert' as const),
      rel: fc.integer({ min: -1500, max: 12_000 }),
      len: fc.integer({ min: 1, max: 2000 }),
      tag: fc.nat(255),
    });
    const ops = fc.array(fc.oneof({ weight: 6, arbitrary: big }, { weight: 2, arbitrary: aopArb }), {
      maxLength: 60,
      size: 'max',
    });
    fc.assert(
      fc.property(fc.integer({ min: 1000, max: 20_000 }), ops, (maxBytes, ops) => {
        const a = new Assembler(maxBytes);
        const m: Model = { held: new Map(), rcvNxt: 0, delivered: [] };
        for (const op of ops) astep(a, m, op, true);
      }),
      { numRuns: 100 },
    );
  });

  test('snapshot/restore at a random point: identical subsequent behaviour', () => {
    fc.assert(
      fc.property(
        maxBytesArb,
        fc.array(aopArb, { maxLength: 100, size: 'max' }),
        fc.array(aopArb, { maxLength: 100, size: 'max' }),
        (maxBytes, before, after) => {
          const a = new Assembler(maxBytes);
          const m: Model = { held: new Map(), rcvNxt: 0, delivered: [] };
          for (const op of before) astep(a, m, op, true);
          const b = Assembler.restore(structuredClone(a.snapshot()));
          const mb: Model = { held: new Map(m.held), rcvNxt: m.rcvNxt, delivered: [] };
          for (const op of after) {
            assert.deepEqual(astep(b, mb, op, true), astep(a, m, op, true));
            assert.deepEqual(b.sackBlocks(m.rcvNxt, 4), a.sackBlocks(m.rcvNxt, 4));
          }
          assert.deepEqual(b.snapshot(), a.snapshot());
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('Assembler.dropBelow', () => {
  test('drops whole ranges below, cuts the one across, keeps the rest byte for byte', () => {
    const a = new Assembler(1 << 20);
    const data = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
    a.insert(100, data(100, 50)); // [100, 150)
    a.insert(150, data(150, 30)); // merges: [100, 180) in two pieces
    a.insert(300, data(300, 20)); // [300, 320)
    a.insert(10, data(10, 5)); // [10, 15)
    assert.equal(a.bytes, 105);
    a.dropBelow(160);
    assert.equal(a.bytes, 40);
    assert.deepEqual(a.ranges(), [160, 180, 300, 320]);
    assert.deepEqual(a.take(160), data(160, 20));
    a.dropBelow(310);
    assert.deepEqual(a.take(310), data(310, 10));
    assert.equal(a.bytes, 0);
    a.dropBelow(1000);
    assert.equal(a.bytes, 0);
  });
});
