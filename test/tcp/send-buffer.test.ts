import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { SendBuffer } from '../../src/tcp/send-buffer.ts';

/** `n` bytes of a recognisable stream: the byte at offset o is o mod 251. */
function stream(offset: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (offset + i) % 251;
  return b;
}

function storage(b: SendBuffer): Uint8Array {
  return (b as unknown as { buf: Uint8Array }).buf;
}

describe('SendBuffer: write, view, trim', () => {
  test('an empty buffer starts where told and holds nothing', () => {
    const b = new SendBuffer(1000, 7);
    assert.equal(b.start, 7);
    assert.equal(b.end, 7);
    assert.equal(b.length, 0);
    assert.equal(b.free, 1000);
    assert.deepEqual(b.view(7, 0), new Uint8Array(0));
    assert.equal(storage(b).length, 0, 'no storage before the first write');
  });

  test('write takes what fits and says how much; trim frees room', () => {
    const b = new SendBuffer(10);
    assert.equal(b.write(stream(0, 6)), 6);
    assert.equal(b.write(stream(6, 6)), 4, 'only 4 bytes of room left');
    assert.equal(b.end, 10);
    assert.equal(b.free, 0);
    assert.equal(b.write(stream(10, 1)), 0);
    b.trim(3);
    assert.equal(b.start, 3);
    assert.equal(b.length, 7);
    assert.equal(b.free, 3);
    assert.deepEqual(b.view(3, 7), stream(3, 7));
  });

  test('wrap-around: a view across the end of storage is a correct copy; others are zero-copy', () => {
    const b = new SendBuffer(10);
    b.write(stream(0, 8));
    b.trim(6); // storage index 6 holds offset 6
    assert.equal(b.write(stream(8, 8)), 8); // offsets 8..15 at indices 8,9,0..5
    assert.equal(b.end, 16);
    const whole = b.view(6, 10);
    assert.deepEqual(whole, stream(6, 10));
    assert.notEqual(whole.buffer, storage(b).buffer, 'a wrapped range is copied');
    const before = b.view(6, 4); // indices 6..9
    const after = b.view(10, 6); // indices 0..5
    assert.deepEqual(before, stream(6, 4));
    assert.deepEqual(after, stream(10, 6));
    assert.equal(before.buffer, storage(b).buffer, 'a contiguous range is a view');
    assert.equal(after.buffer, storage(b).buffer);
    assert.deepEqual(b.view(9, 2), stream(9, 2), 'two bytes straddling the wrap');
  });

  test('trimming everything restarts at index 0 so the next segment is contiguous', () => {
    const b = new SendBuffer(10);
    b.write(stream(0, 7));
    b.trim(7);
    b.write(stream(7, 10));
    const v = b.view(7, 10);
    assert.equal(v.buffer, storage(b).buffer);
    assert.deepEqual(v, stream(7, 10));
  });

  test('storage grows by doubling up to capacity, keeping wrapped contents', () => {
    const b = new SendBuffer(100_000);
    b.write(stream(0, 4000));
    assert.equal(storage(b).length, 4096);
    b.trim(3000);
    b.write(stream(4000, 3000)); // wraps inside the 4096 bytes: 4000 held
    assert.equal(storage(b).length, 4096);
    b.write(stream(7000, 5000)); // 9000 held: grows past 8192 to exactly what is needed
    assert.equal(storage(b).length, 9000);
    assert.deepEqual(b.view(3000, 9000), stream(3000, 9000));
    b.write(stream(12_000, 1)); // doubling
    assert.equal(storage(b).length, 18_000);
    b.write(stream(12_001, 200_000));
    assert.equal(storage(b).length, 100_000, 'never beyond capacity');
    assert.equal(b.end, 103_000);
    assert.deepEqual(b.view(3000, 100_000), stream(3000, 100_000));
  });

  test('steady state: write and trim reuse one storage array', () => {
    const b = new SendBuffer(65_536);
    let off = 0;
    b.write(stream(0, 60_000));
    const s = storage(b);
    for (let i = 0; i < 500; i++) {
      off += 1448;
      b.trim(off);
      b.write(stream(b.end, 1448));
      assert.deepEqual(b.view(off, 1448), stream(off, 1448));
    }
    assert.equal(storage(b), s);
  });

  test('offsets past 2^32 are plain integers', () => {
    const base = 2 ** 32 - 10;
    const b = new SendBuffer(64, base);
    assert.equal(b.write(stream(base, 30)), 30);
    assert.equal(b.end, 2 ** 32 + 20);
    assert.deepEqual(b.view(2 ** 32 - 5, 10), stream(2 ** 32 - 5, 10));
    b.trim(2 ** 32 + 5);
    assert.equal(b.start, 2 ** 32 + 5);
    assert.equal(b.length, 15);
    b.write(stream(2 ** 32 + 20, 40)); // wraps the 64-byte ring
    assert.deepEqual(b.view(2 ** 32 + 5, 55), stream(2 ** 32 + 5, 55));
  });

  test('capacity 0 takes nothing', () => {
    const b = new SendBuffer(0);
    assert.equal(b.write(stream(0, 5)), 0);
    assert.equal(b.free, 0);
  });

  test('caller bugs throw RangeError', () => {
    const b = new SendBuffer(100, 50);
    b.write(stream(50, 20));
    assert.throws(() => b.view(49, 1), RangeError);
    assert.throws(() => b.view(60, 11), RangeError);
    assert.throws(() => b.view(50, -1), RangeError);
    assert.throws(() => b.view(50.5, 1), RangeError);
    assert.throws(() => b.trim(49), RangeError);
    assert.throws(() => b.trim(71), RangeError);
    assert.throws(() => new SendBuffer(-1), RangeError);
    assert.throws(() => new SendBuffer(10, -1), RangeError);
    assert.throws(() => new SendBuffer(1.5), RangeError);
    assert.deepEqual(b.view(70, 0), new Uint8Array(0), 'an empty range at the end is fine');
    b.trim(70);
    assert.equal(b.length, 0);
  });

  test('snapshot is a plain copy; restore continues identically', () => {
    const b = new SendBuffer(10, 2 ** 40);
    b.write(stream(0, 8));
    b.trim(2 ** 40 + 6);
    b.write(stream(8, 6)); // wrapped
    const s = b.snapshot();
    assert.deepEqual(s, { start: 2 ** 40 + 6, data: stream(6, 8), capacity: 10 });
    const r = SendBuffer.restore(structuredClone(s));
    b.write(new Uint8Array([1, 2, 3]));
    assert.deepEqual(b.snapshot().data, new Uint8Array([...stream(6, 8), 1, 2]), 'snapshot data is a copy');
    assert.equal(r.write(new Uint8Array([1, 2, 3])), 2);
    assert.deepEqual(r.view(r.start, r.length), b.view(b.start, b.length));
    assert.throws(() => SendBuffer.restore({ start: 0, data: new Uint8Array(11), capacity: 10 }), RangeError);
  });
});

type Op =
  | { kind: 'write'; n: number }
  | { kind: 'trim'; frac: number }
  | { kind: 'view'; a: number; b: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('write' as const), n: fc.nat(300) }),
  fc.record({ kind: fc.constant('trim' as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('view' as const),
    a: fc.double({ min: 0, max: 1, noNaN: true }),
    b: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
);

/** Applies `op` to the buffer and to a naive model (a plain array of bytes from `start`); returns an observation. */
function step(b: SendBuffer, m: { start: number; bytes: number[]; next: number }, op: Op): unknown {
  if (op.kind === 'write') {
    const data = stream(m.next, op.n);
    const took = b.write(data);
    const want = Math.min(op.n, b.capacity - m.bytes.length);
    assert.equal(took, want);
    for (let i = 0; i < took; i++) m.bytes.push(data[i]);
    m.next += took;
    return took;
  }
  if (op.kind === 'trim') {
    const n = Math.floor(op.frac * m.bytes.length);
    b.trim(m.start + n);
    m.start += n;
    m.bytes.splice(0, n);
    return n;
  }
  const lo = Math.floor(Math.min(op.a, op.b) * m.bytes.length);
  const hi = Math.floor(Math.max(op.a, op.b) * m.bytes.length);
  const v = b.view(m.start + lo, hi - lo);
  assert.deepEqual(Array.from(v), m.bytes.slice(lo, hi));
  return Array.from(v);
}

describe('SendBuffer properties', () => {
  test('agrees with a naive array model under random write/trim/view', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 700 }),
        fc.integer({ min: 0, max: 2 ** 33 }),
        fc.array(opArb, { maxLength: 80, size: 'max' }),
        (cap, start, ops) => {
          const b = new SendBuffer(cap, start);
          const m = { start, bytes: [] as number[], next: 0 };
          for (const op of ops) {
            step(b, m, op);
            assert.equal(b.start, m.start);
            assert.equal(b.end, m.start + m.bytes.length);
            assert.equal(b.length, m.bytes.length);
            assert.equal(b.free, cap - m.bytes.length);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test('snapshot/restore at a random point: identical subsequent behaviour', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 700 }),
        fc.array(opArb, { maxLength: 40, size: 'max' }),
        fc.array(opArb, { maxLength: 40, size: 'max' }),
        (cap, before, after) => {
          const a = new SendBuffer(cap, 2 ** 32 - 10);
          const m = { start: 2 ** 32 - 10, bytes: [] as number[], next: 0 };
          for (const op of before) step(a, m, op);
          const b = SendBuffer.restore(structuredClone(a.snapshot()));
          const mb = { start: m.start, bytes: m.bytes.slice(), next: m.next };
          for (const op of after) assert.deepEqual(step(b, mb, op), step(a, m, op));
          assert.deepEqual(b.snapshot(), a.snapshot());
        },
      ),
      { numRuns: 300 },
    );
  });
});
