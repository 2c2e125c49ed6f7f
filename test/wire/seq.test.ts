import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  offsetToSeq,
  seqAdd,
  seqBetween,
  seqGe,
  seqGt,
  seqInWindow,
  seqLe,
  seqLt,
  seqMax,
  seqMin,
  seqSub,
  seqToOffset,
} from '../../src/wire/seq.ts';

const MAX = 0xffff_ffff;

describe('seq arithmetic at the wrap', () => {
  test('adding past 2^32 wraps to small numbers', () => {
    assert.equal(seqAdd(MAX, 1), 0);
    assert.equal(seqAdd(MAX - 9, 20), 10);
    assert.equal(seqAdd(5, -10), MAX - 4);
    assert.equal(seqAdd(0, 2 ** 32), 0);
    assert.equal(seqAdd(7, 5 * 2 ** 32 + 3), 10);
  });

  test('comparison across the wrap', () => {
    assert.ok(seqLt(MAX, 0));
    assert.ok(seqLt(MAX - 100, 50));
    assert.ok(seqGt(50, MAX - 100));
    assert.ok(seqLe(3, 3) && seqGe(3, 3));
    assert.ok(!seqLt(3, 3) && !seqGt(3, 3));
    assert.equal(seqSub(10, MAX - 9), 20);
    assert.equal(seqSub(MAX - 9, 10), -20);
    assert.equal(seqMax(MAX, 2), 2);
    assert.equal(seqMin(MAX, 2), MAX);
  });

  test('window membership across the wrap', () => {
    assert.ok(seqInWindow(MAX, MAX - 1, 4));
    assert.ok(seqInWindow(1, MAX - 1, 4));
    assert.ok(!seqInWindow(2, MAX - 1, 3));
    assert.ok(!seqInWindow(MAX - 2, MAX - 1, 4));
    assert.ok(!seqInWindow(0, 0, 0), 'an empty window holds nothing');
    assert.ok(seqBetween(0, MAX, 1));
    assert.ok(!seqBetween(2, MAX, 1));
  });

  test('properties: a + d compares by the sign of d for |d| < 2^31', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX }),
        fc.integer({ min: -(2 ** 31) + 1, max: 2 ** 31 - 1 }),
        (a, d) => {
          const b = seqAdd(a, d);
          assert.equal(seqSub(b, a), d);
          assert.equal(seqLt(a, b), d > 0);
          assert.equal(seqGt(a, b), d < 0);
          assert.ok(b >= 0 && b <= MAX && Number.isInteger(b));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('stream offsets past 2^32', () => {
  test('offset 0 is ISN + 1, and offsets map onto wrapped sequence numbers', () => {
    const isn = MAX - 2;
    assert.equal(offsetToSeq(isn, 0), MAX - 1);
    assert.equal(offsetToSeq(isn, 1), MAX);
    assert.equal(offsetToSeq(isn, 2), 0);
    assert.equal(offsetToSeq(isn, 2 ** 32 + 2), 0);
  });

  test('a 5 GiB stream unwraps to the right offsets', () => {
    const isn = 0xfff0_0000;
    for (const offset of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 5 * 2 ** 30, 3 * 2 ** 32 + 12345]) {
      const seq = offsetToSeq(isn, offset);
      // Unwrapping is relative to a nearby known offset, before or after.
      assert.equal(seqToOffset(isn, seq, offset), offset);
      assert.equal(seqToOffset(isn, seq, Math.max(0, offset - 1_000_000)), offset);
      assert.equal(seqToOffset(isn, seq, offset + 1_000_000), offset);
    }
  });

  test('property: unwrap inverts offsetToSeq within 2^31 of the reference', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: -(2 ** 31) + 1, max: 2 ** 31 - 1 }),
        (isn, offset, delta) => {
          const near = Math.max(0, offset + delta);
          assert.equal(seqToOffset(isn, offsetToSeq(isn, offset), near), offset);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
