/**
 * State deltas (replicator.ts `stateDelta`, mirror.ts `applyStateDelta`): what the active sends
 * after a connection's first state record, and what the standby rebuilds from it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { applyStateDelta } from '../../src/ha/mirror.ts';
import { sameJson, stateDelta } from '../../src/ha/replicator.ts';

/** A JSON round trip: what the standby sees of a value (undefined fields vanish). */
const wire = (v: unknown) => JSON.parse(JSON.stringify(v)) as Record<string, unknown>;

const value = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constantFrom('', 'fast', 'rto'),
  fc.constant(undefined),
  fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 4 }),
  fc.record({ srtt: fc.integer(), rto: fc.integer() }),
  fc.array(fc.record({ seq: fc.integer(), flags: fc.integer({ min: 0, max: 255 }) }), { maxLength: 3 }),
);
const keys = fc.constantFrom(
  'sndUna',
  'sndMax',
  'rcvNxt',
  'rtt',
  'cc',
  'sacked',
  'control',
  'tsEcrFloor',
  'error',
);
const state = fc.dictionary(keys, value);

describe('replicated state deltas', () => {
  test('the delta of two states, applied to the first as the standby holds it, gives the second', () => {
    fc.assert(
      fc.property(state, state, (a, b) => {
        const last = { version: 1, config: { mss: 1460 }, ...a };
        const next = { version: 1, config: undefined, ...b };
        const held = wire(last);
        const got = applyStateDelta(held, wire(stateDelta(last, next)));
        assert.ok(got);
        // The config stays what the first record carried; every other field is the new one.
        assert.deepEqual(got, { ...wire(next), config: { mss: 1460 } });
      }),
      { numRuns: 2000, seed: 5 },
    );
  });

  test('unchanged fields are left out; an unset field is listed as gone', () => {
    const last = { version: 1, sndUna: 5, rtt: { srtt: 1, rto: 2 }, tsEcrFloor: 9, config: { mss: 1 } };
    const next = {
      version: 1,
      sndUna: 6,
      rtt: { srtt: 1, rto: 2 },
      tsEcrFloor: undefined,
      config: undefined,
    };
    assert.deepEqual(stateDelta(last, next), { $delta: 1, sndUna: 6, $gone: ['tsEcrFloor'] });
  });

  test('sameJson: deep equality of JSON-shaped values', () => {
    assert.ok(sameJson({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }));
    assert.ok(!sameJson({ a: [1, { b: 2 }] }, { a: [1, { b: 3 }] }));
    assert.ok(!sameJson([1], { 0: 1 }));
    assert.ok(!sameJson({ a: 1 }, { b: 1 }));
    assert.ok(!sameJson(null, {}));
  });

  test('a malformed delta is refused: no config, no __proto__, $gone a list of names', () => {
    const base = { version: 1, config: { mss: 1 }, sndUna: 1 };
    assert.equal(applyStateDelta(base, { $delta: 2 }), undefined);
    assert.equal(applyStateDelta(base, { $delta: 1, config: {} }), undefined);
    assert.equal(applyStateDelta(base, JSON.parse('{"$delta":1,"__proto__":{"x":1}}')), undefined);
    assert.equal(applyStateDelta(base, { $delta: 1, $gone: 'sndUna' }), undefined);
    assert.equal(applyStateDelta(base, { $delta: 1, $gone: ['config'] }), undefined);
    assert.deepEqual(applyStateDelta(base, { $delta: 1, sndUna: 2, $gone: ['x'] }), { ...base, sndUna: 2 });
  });
});
