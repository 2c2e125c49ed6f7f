import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Rng } from '../../../src/link/sim/rng.ts';

function draws(r: Rng, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(r.nextU32());
  return out;
}

describe('Rng (xoshiro128**)', () => {
  test('known answer: state {1, 2, 3, 4} gives the reference outputs', () => {
    // Outputs of the reference C implementation (Blackman and Vigna) from s = {1, 2, 3, 4}.
    const r = Rng.fromState([1, 2, 3, 4]);
    assert.deepEqual(
      draws(r, 10),
      [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804],
    );
  });

  test('state() round-trips through fromState()', () => {
    const a = new Rng(42);
    draws(a, 5);
    const b = Rng.fromState(a.state(), a.key);
    assert.deepEqual(draws(b, 20), draws(a, 20));
    assert.deepEqual(draws(b.derive('x'), 5), draws(a.derive('x'), 5));
    assert.throws(() => Rng.fromState([0, 0, 0, 0]), /all zero/);
  });

  test('same seed, same stream; different seeds, different streams', () => {
    assert.deepEqual(draws(new Rng(7), 50), draws(new Rng(7), 50));
    assert.notDeepEqual(draws(new Rng(7), 50), draws(new Rng(8), 50));
    assert.notDeepEqual(draws(new Rng(0), 50), draws(new Rng(2 ** 32), 50));
    assert.notDeepEqual(draws(new Rng(1), 50), draws(new Rng(1.5), 50));
    assert.throws(() => new Rng(Number.NaN), /finite/);
  });

  test('derive depends on the key and the label, not on the position', () => {
    const a = new Rng(3);
    const before = draws(a.derive('link:x'), 10);
    draws(a, 1000);
    a.derive('other');
    assert.deepEqual(draws(a.derive('link:x'), 10), before);
    assert.notDeepEqual(draws(a.derive('link:y'), 10), before);
    assert.notDeepEqual(draws(new Rng(4).derive('link:x'), 10), before);
    assert.notDeepEqual(draws(a.derive(1), 10), draws(a.derive(2), 10));
    // A derived stream is not the parent's stream.
    assert.notDeepEqual(draws(new Rng(3), 10), before);
  });

  test('fork advances the parent and gives a new stream each time', () => {
    const a = new Rng(5);
    const b = new Rng(5);
    const f1 = a.fork();
    const f2 = a.fork();
    assert.notDeepEqual(draws(f1, 10), draws(f2, 10));
    b.nextU32();
    b.nextU32();
    assert.deepEqual(draws(a, 10), draws(b, 10));
  });

  test('next() is in [0, 1) and nextU32() covers the high bit', () => {
    const r = new Rng(9);
    let high = 0;
    for (let i = 0; i < 10000; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1);
      if (r.nextU32() >= 2 ** 31) high++;
    }
    assert.ok(high > 4700 && high < 5300, `high bit set ${high} times of 10000`);
  });

  test('int(lo, hi) is inclusive and roughly uniform', () => {
    const r = new Rng(11);
    const counts = new Array<number>(7).fill(0);
    for (let i = 0; i < 70000; i++) {
      const x = r.int(-3, 3);
      assert.ok(Number.isInteger(x) && x >= -3 && x <= 3);
      counts[x + 3]++;
    }
    for (const c of counts) assert.ok(c > 9400 && c < 10600, `bucket count ${c}`);
    assert.equal(r.int(5, 5), 5);
    const big = r.int(0, 2 ** 32 - 1);
    assert.ok(big >= 0 && big < 2 ** 32);
    assert.throws(() => r.int(3, 2), /range/);
    assert.throws(() => r.int(0, 2 ** 32), /range/);
  });

  test('chance(p): 0 never, 1 always, 0.25 about a quarter', () => {
    const r = new Rng(13);
    let hits = 0;
    for (let i = 0; i < 20000; i++) {
      assert.equal(r.chance(0), false);
      assert.equal(r.chance(1), true);
      if (r.chance(0.25)) hits++;
    }
    assert.ok(hits > 4700 && hits < 5300, `${hits} hits`);
  });

  test('pick and shuffle', () => {
    const r = new Rng(17);
    const xs = [1, 2, 3, 4, 5, 6, 7, 8];
    const s = r.shuffle(xs.slice());
    assert.deepEqual(
      s.slice().sort((a, b) => a - b),
      xs,
    );
    assert.notDeepEqual(s, xs);
    assert.ok(xs.includes(r.pick(xs)));
    assert.throws(() => r.pick([]), /empty/);
  });
});
