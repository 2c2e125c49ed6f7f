import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_RTT_CONFIG, RttEstimator, type RttSnapshot } from '../../src/tcp/rtt.ts';

const MS = 1000;
const S = 1_000_000;

describe('RttEstimator (RFC 6298)', () => {
  test('before any sample: the initial RTO of 1 s (2.1), no SRTT', () => {
    const r = new RttEstimator();
    assert.equal(r.rto, 1 * S);
    assert.equal(r.srtt, undefined);
    assert.equal(r.minRtt, undefined);
    assert.equal(r.backoffCount, 0);
  });

  test('first sample (2.2): SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4*RTTVAR)', () => {
    const r = new RttEstimator();
    r.sample(100 * MS);
    assert.equal(r.srtt, 100_000);
    assert.equal(r.rttvar, 50_000);
    assert.equal(r.rto, 100_000 + 4 * 50_000);
    assert.equal(r.minRtt, 100_000);
  });

  test('subsequent samples (2.3) by hand: RTTVAR from the old SRTT, then SRTT', () => {
    const r = new RttEstimator();
    r.sample(100 * MS);
    r.sample(120 * MS);
    // RTTVAR = 3/4 * 50000 + 1/4 * |100000 - 120000| = 42500; SRTT = 7/8 * 100000 + 1/8 * 120000.
    assert.equal(r.rttvar, 42_500);
    assert.equal(r.srtt, 102_500);
    assert.equal(r.rto, 102_500 + 170_000);
    r.sample(80 * MS);
    // RTTVAR = 3/4 * 42500 + 1/4 * 22500 = 37500; SRTT = 7/8 * 102500 + 1/8 * 80000 = 99687.5.
    assert.equal(r.rttvar, 37_500);
    assert.equal(r.srtt, 99_687.5);
    // RTO rounds up to a whole microsecond: 99687.5 + 150000.
    assert.equal(r.rto, 249_688);
    assert.equal(r.minRtt, 80_000);
  });

  test('clock granularity G = 1 ms bounds the variance term from below', () => {
    const r = new RttEstimator({ ...DEFAULT_RTT_CONFIG, minRtoUs: 0 });
    r.sample(10 * MS);
    for (let i = 0; i < 20; i++) r.sample(10 * MS);
    // RTTVAR = 5000 * (3/4)^20 < 250 µs, so 4*RTTVAR < G and RTO = SRTT + G.
    assert.ok(4 * r.rttvar < MS);
    assert.equal(r.rto, 10 * MS + 1 * MS);
  });

  test('min (2.4, Linux 200 ms) and max (2.5, 120 s) clamps', () => {
    const r = new RttEstimator();
    r.sample(1 * MS);
    assert.equal(r.rto, 200 * MS); // 1 ms + max(1 ms, 2 ms) = 3 ms, raised to the floor
    const big = new RttEstimator();
    big.sample(100 * S);
    assert.equal(big.rto, 120 * S); // 100 s + 200 s, lowered to the ceiling
    const custom = new RttEstimator({ minRtoUs: 1 * S, maxRtoUs: 60 * S, initialRtoUs: 3 * S });
    assert.equal(custom.rto, 3 * S);
    custom.sample(1 * MS);
    assert.equal(custom.rto, 1 * S);
  });

  test('back-off (5.5) doubles up to maxRto, keeps counting, and a sample (5.7) resets it', () => {
    const r = new RttEstimator();
    r.sample(100 * MS); // RTO 300 ms
    const seen: number[] = [];
    for (let i = 0; i < 12; i++) {
      r.backoff();
      seen.push(r.rto);
    }
    assert.deepEqual(
      seen,
      [0.6, 1.2, 2.4, 4.8, 9.6, 19.2, 38.4, 76.8, 120, 120, 120, 120].map((s) => Math.round(s * S)),
    );
    assert.equal(r.backoffCount, 12);
    r.sample(100 * MS);
    assert.equal(r.backoffCount, 0);
    // RTTVAR = 3/4 * 50000 + 0, SRTT unchanged: 100000 + 150000.
    assert.equal(r.rto, 250 * MS);
  });

  test('back-off before the first sample doubles the initial RTO (5.5)', () => {
    const r = new RttEstimator();
    r.backoff();
    r.backoff();
    assert.equal(r.rto, 4 * S);
    for (let i = 0; i < 100; i++) r.backoff();
    assert.equal(r.rto, 120 * S);
    assert.equal(r.backoffCount, 102);
  });

  test('garbage samples (negative, NaN, Infinity) are ignored', () => {
    const r = new RttEstimator();
    r.sample(-5);
    r.sample(Number.NaN);
    r.sample(Number.POSITIVE_INFINITY);
    assert.equal(r.srtt, undefined);
    r.backoff();
    r.sample(0); // a same-tick timestamp echo is a valid 0 µs sample
    assert.equal(r.srtt, 0);
    assert.equal(r.rto, 200 * MS);
    assert.equal(r.backoffCount, 0);
  });

  test('RFC 7323 Appendix G: gains divided by the samples expected per RTT', () => {
    const r = new RttEstimator();
    r.sample(100 * MS);
    r.sample(120 * MS, 4);
    // beta' = 1/16, alpha' = 1/32: RTTVAR = 15/16 * 50000 + 1/16 * 20000; SRTT = 31/32 * 100000 + 1/32 * 120000.
    assert.equal(r.rttvar, 48_125);
    assert.equal(r.srtt, 100_625);
    // Per-ACK sampling of a steady path: with scaled gains RTTVAR decays per RTT as RFC 6298 would.
    const plain = new RttEstimator();
    const scaled = new RttEstimator();
    plain.sample(100 * MS);
    scaled.sample(100 * MS);
    for (let i = 0; i < 32; i++) plain.sample(100 * MS);
    for (let i = 0; i < 32; i++) scaled.sample(100 * MS, 32);
    assert.ok(plain.rto === 200 * MS, 'unscaled: RTTVAR collapses and the RTO hits the floor');
    // One RTT of 32 scaled samples decays RTTVAR about as much as one plain sample (3/4):
    // 50000 * (1 - 1/128)^32 = 38902 against 37500, so the RTO stays near 250 ms.
    assert.equal(scaled.rto, Math.ceil(100 * MS + 4 * 50_000 * (1 - 1 / 128) ** 32));
    assert.ok(scaled.rto > 250 * MS && scaled.rto < 260 * MS);
  });

  test('bad configuration is refused with a sentence', () => {
    assert.throws(
      () => new RttEstimator({ minRtoUs: 5, maxRtoUs: 1, initialRtoUs: 1 }),
      /fix the RTO settings/,
    );
    assert.throws(
      () => new RttEstimator({ minRtoUs: 0, maxRtoUs: Number.POSITIVE_INFINITY, initialRtoUs: 1 }),
      RangeError,
    );
  });

  test('property: snapshot (through JSON) mid-sequence, then identical outputs', () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('sample' as const),
        rtt: fc.integer({ min: 0, max: 5 * S }),
        n: fc.nat(40),
      }),
      fc.record({ kind: fc.constant('backoff' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.array(op, { maxLength: 60 }), (before, after) => {
        const a = new RttEstimator();
        const apply = (r: RttEstimator, o: (typeof before)[number]): string => {
          if (o.kind === 'sample') r.sample(o.rtt, o.n);
          else r.backoff();
          return `${r.rto} ${r.srtt} ${r.rttvar} ${r.minRtt} ${r.backoffCount}`;
        };
        for (const o of before) apply(a, o);
        const snap = JSON.parse(JSON.stringify(a.snapshot())) as RttSnapshot;
        const b = RttEstimator.restore(snap);
        assert.equal(b.rto, a.rto);
        for (const o of after) assert.equal(apply(b, o), apply(a, o));
        assert.deepEqual(b.snapshot(), a.snapshot());
        // Invariant: the RTO is always within the bounds.
        assert.ok(a.rto >= 200 * MS && a.rto <= 120 * S);
      }),
      { numRuns: 300 },
    );
  });
});
