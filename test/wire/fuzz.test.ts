import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { toHex } from '../../src/wire/bytes.ts';
import { FuzzFailure, fuzzTargets, guard, OutOfRange, runFuzz } from '../support/fuzz.ts';

describe('fuzzing every parser', () => {
  test('the guard catches a read past the end (so a clean run means something)', () => {
    const g = guard(new Uint8Array([1, 2, 3]));
    assert.equal(g[2], 3);
    assert.equal(g.length, 3);
    assert.throws(() => g[3], OutOfRange);
    assert.throws(() => g.subarray(1)[2], OutOfRange);
  });

  test('100k mutated and random inputs: no throw, no out-of-range read, no stray view, stable re-emit', () => {
    const seed = Number(process.env.SEED ?? 20261127);
    const targets = fuzzTargets();
    for (const t of targets) assert.ok(t.corpus.length > 0, `${t.name} has an empty corpus`);
    try {
      const s = runFuzz({ seed, cases: 100_000, guardEvery: 8, targets });
      assert.equal(s.cases, 100_000);
      // Each parser must both accept and reject some inputs, or the mutations are not reaching it.
      for (const [name, t] of Object.entries(s.byTarget)) {
        assert.ok(t.accepted > 0 && t.accepted < t.cases, `${name}: ${t.accepted} of ${t.cases} accepted`);
      }
      assert.ok(s.maxCaseMs < 250, `slowest case took ${s.maxCaseMs} ms`);
    } catch (e) {
      if (e instanceof FuzzFailure) {
        assert.fail(
          `${e.message}\n  target ${e.target}, seed ${e.seed}, case ${e.caseNo}\n  input ${toHex(e.input)}`,
        );
      }
      throw e;
    }
  });
});
