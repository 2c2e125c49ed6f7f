import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type CongestionAlgorithm,
  type CongestionControl,
  type CongestionSnapshot,
  createCongestionControl,
  restoreCongestionControl,
} from '../../src/tcp/congestion/index.ts';

const MSS = 1000;
const MS = 1000;
const S = 1_000_000;

/** RFC 9438 (4.1) constants, written out again so the tests do not trust the module's. */
const C = 0.4;
const BETA = 0.7;
const ALPHA = (3 * (1 - BETA)) / (1 + BETA); // 0.5294...

function wCubic(t: number, k: number, wMax: number): number {
  return C * (t - k) ** 3 + wMax;
}

/** A connection in slow start grown to `segments` * MSS by one-segment ACKs (ssthresh infinite). */
function grown(alg: CongestionAlgorithm, segments: number): CongestionControl {
  const cc = createCongestionControl(alg, MSS, 10);
  while (cc.cwnd < segments * MSS) cc.onAck(MSS, 0, undefined);
  assert.equal(cc.cwnd, segments * MSS);
  return cc;
}

/** One RTT of ACKs: a window's worth of one-segment ACKs spread evenly over `rtt`. Returns the new time. */
function ackRound(cc: CongestionControl, now: number, rtt: number): number {
  const n = Math.floor(cc.cwnd / MSS);
  for (let i = 0; i < n; i++) {
    cc.onAck(MSS, now, rtt);
    now += rtt / n;
  }
  return now;
}

/** A CUBIC that lost at `w` segments and recovered at `t0`; its epoch begins at the next ACK. */
function afterLoss(w: number, t0: number): CongestionControl {
  const cc = grown('cubic', w);
  cc.onCongestionEvent(t0 - 10 * MS, w * MSS);
  cc.onRecoveryExit(t0);
  return cc;
}

describe('NewReno (RFC 5681, RFC 3465, RFC 6582)', () => {
  test('initial window RFC 6928: IW segments, ssthresh infinite', () => {
    const cc = createCongestionControl('newreno', MSS, 10);
    assert.equal(cc.algorithm, 'newreno');
    assert.equal(cc.cwnd, 10 * MSS);
    assert.equal(cc.ssthresh, Number.POSITIVE_INFINITY);
    assert.equal(createCongestionControl('newreno', 1460, 4).cwnd, 4 * 1460);
    assert.equal(cc.snapshot().ssthresh, -1, 'infinite ssthresh is JSON-safe');
  });

  test('slow start doubles cwnd per RTT of one-segment ACKs', () => {
    const cc = createCongestionControl('newreno', MSS, 10);
    let now = 0;
    const seen: number[] = [];
    for (let r = 0; r < 4; r++) {
      now = ackRound(cc, now, 50 * MS);
      seen.push(cc.cwnd / MSS);
    }
    assert.deepEqual(seen, [20, 40, 80, 160]);
  });

  test('ABC (RFC 3465 2.2): at most L = 2*SMSS per ACK, exact bytes below that', () => {
    const cc = createCongestionControl('newreno', MSS, 10);
    cc.onAck(10 * MSS, 0, undefined);
    assert.equal(cc.cwnd, 12 * MSS);
    cc.onAck(500, 0, undefined);
    assert.equal(cc.cwnd, 12 * MSS + 500);
    cc.onAck(0, 0, undefined);
    assert.equal(cc.cwnd, 12 * MSS + 500);
  });

  test('congestion avoidance: one SMSS per cwnd of ACKed bytes (RFC 3465 2.1)', () => {
    const cc = grown('newreno', 40);
    cc.onCongestionEvent(0, 40 * MSS);
    cc.onRecoveryExit(0);
    assert.equal(cc.cwnd, 20 * MSS);
    let now = 0;
    for (let r = 1; r <= 10; r++) {
      now = ackRound(cc, now, 50 * MS);
      assert.equal(cc.cwnd, (20 + r) * MSS, `after ${r} RTTs`);
    }
    // Partial: 29 999 bytes of a 30 000-byte window do nothing; one more byte adds a segment.
    cc.onAck(30 * MSS - 1, now, undefined);
    assert.equal(cc.cwnd, 30 * MSS);
    cc.onAck(1, now, undefined);
    assert.equal(cc.cwnd, 31 * MSS);
    // A stretch ACK of three windows adds three segments at once.
    cc.onAck(3 * 31 * MSS, now, undefined);
    assert.equal(cc.cwnd, 34 * MSS);
    assert.equal(cc.snapshot().bytesAcked, 0);
  });

  test('fast recovery halves the flight (RFC 5681 eq. 4), exit restores ssthresh (RFC 6582)', () => {
    const cc = grown('newreno', 40);
    cc.onCongestionEvent(0, 40 * MSS);
    assert.equal(cc.ssthresh, 20 * MSS);
    assert.equal(cc.cwnd, 20 * MSS);
    cc.onRecoveryExit(0);
    assert.equal(cc.cwnd, 20 * MSS);
    // FlightSize, not cwnd: an application-limited sender with 10 segments out gets 5.
    const lim = grown('newreno', 40);
    lim.onCongestionEvent(0, 10 * MSS + 1);
    assert.equal(lim.ssthresh, 5 * MSS);
    assert.equal(lim.cwnd, 5 * MSS);
  });

  test('2*SMSS floor on ssthresh (eq. 4)', () => {
    const cc = grown('newreno', 20);
    cc.onCongestionEvent(0, 3 * MSS);
    assert.equal(cc.ssthresh, 2 * MSS);
    assert.equal(cc.cwnd, 2 * MSS);
    cc.onTimeout(0, MSS);
    assert.equal(cc.ssthresh, 2 * MSS);
    assert.equal(cc.cwnd, MSS);
  });

  test('RTO: cwnd = 1 SMSS, ssthresh halved once; repeated RTOs hold ssthresh (RFC 5681 3.1)', () => {
    const cc = grown('newreno', 40);
    cc.onTimeout(0, 40 * MSS);
    assert.equal(cc.cwnd, MSS);
    assert.equal(cc.ssthresh, 20 * MSS);
    cc.onTimeout(1 * S, MSS); // the same segment again: flight is tiny now, ssthresh must not follow
    assert.equal(cc.ssthresh, 20 * MSS);
    assert.equal(cc.cwnd, MSS);
    // Slow start from the loss window; stops at ssthresh and the rest counts toward avoidance.
    for (let i = 0; i < 18; i++) cc.onAck(MSS, 2 * S, undefined);
    assert.equal(cc.cwnd, 19 * MSS);
    cc.onAck(2 * MSS, 2 * S, undefined); // +1 SMSS reaches ssthresh; 1 SMSS left over
    assert.equal(cc.cwnd, 20 * MSS);
    assert.equal(cc.snapshot().bytesAcked, MSS);
    cc.onAck(19 * MSS, 2 * S, undefined);
    assert.equal(cc.cwnd, 21 * MSS);
    // Progress was made, so the next RTO is a new loss and halves again.
    cc.onTimeout(3 * S, 21 * MSS);
    assert.equal(cc.ssthresh, 10 * MSS + 500);
  });

  test('an RTO during recovery ends it: the later recovery exit is ignored', () => {
    const cc = grown('newreno', 40);
    cc.onCongestionEvent(0, 40 * MSS);
    cc.onTimeout(1 * S, 20 * MSS);
    assert.equal(cc.cwnd, MSS);
    cc.onRecoveryExit(2 * S);
    assert.equal(cc.cwnd, MSS);
  });

  test('idle restart (RFC 5681 4.1): cwnd = min(cwnd, IW); ssthresh keeps 3/4 cwnd (RFC 2861)', () => {
    const cc = grown('newreno', 40);
    cc.onCongestionEvent(0, 40 * MSS);
    cc.onRecoveryExit(0);
    cc.onIdle(10 * S);
    assert.equal(cc.cwnd, 10 * MSS);
    assert.equal(cc.ssthresh, 20 * MSS, 'max(20, 3/4 * 20) = 20');
    const big = grown('newreno', 80);
    big.onIdle(10 * S);
    assert.equal(big.cwnd, 10 * MSS);
    assert.equal(big.ssthresh, Number.POSITIVE_INFINITY);
    const hi = grown('newreno', 80);
    hi.onCongestionEvent(0, 40 * MSS); // ssthresh 20
    hi.onRecoveryExit(0);
    for (let i = 0; i < 20; i++) hi.onAck(hi.cwnd, 0, undefined); // cwnd 40
    hi.onIdle(10 * S);
    assert.equal(hi.ssthresh, 30 * MSS);
    const small = createCongestionControl('newreno', MSS, 10);
    small.onTimeout(0, 10 * MSS);
    small.onIdle(10 * S);
    assert.equal(small.cwnd, MSS, 'a window below IW is not raised');
  });

  test('setMss keeps the window in segments', () => {
    const cc = grown('newreno', 40);
    cc.onCongestionEvent(0, 40 * MSS);
    cc.setMss(1460);
    assert.equal(cc.cwnd, 20 * 1460);
    assert.equal(cc.ssthresh, 20 * 1460);
    cc.onTimeout(0, 3 * 1460);
    assert.equal(cc.cwnd, 1460);
    assert.equal(cc.ssthresh, 2 * 1460);
  });
});

describe('CUBIC (RFC 9438)', () => {
  test('congestion event (4.6): ssthresh = cwnd = 0.7 * flight; W_max = cwnd_prior = cwnd before', () => {
    const cc = grown('cubic', 100);
    assert.equal(cc.algorithm, 'cubic');
    cc.onCongestionEvent(0, 100 * MSS);
    assert.equal(cc.ssthresh, 70 * MSS);
    assert.equal(cc.cwnd, 70 * MSS);
    const s = cc.snapshot();
    assert.equal(s.wMax, 100);
    assert.equal(s.cwndPrior, 100);
    cc.onRecoveryExit(MS);
    assert.equal(cc.cwnd, 70 * MSS);
    // The 2*SMSS floor.
    const tiny = grown('cubic', 20);
    tiny.onCongestionEvent(0, 2 * MSS);
    assert.equal(tiny.ssthresh, 2 * MSS);
    assert.equal(tiny.cwnd, 2 * MSS);
  });

  test('K by hand (4.2): W_max 100, cwnd_epoch 70 -> K = cbrt(30 / 0.4) = cbrt(75) s', () => {
    const cc = afterLoss(100, 1 * S);
    cc.onAck(MSS, 1 * S, 100 * MS);
    const s = cc.snapshot();
    assert.equal(s.cwndEpoch, 70);
    assert.equal(s.epochStart, 1 * S);
    // 4.2171633265...^3 = 75.
    assert.ok(Math.abs((s.k as number) - 4.21716332650875) < 1e-12, `K = ${s.k}`);
  });

  test('growth follows W_cubic: concave up to W_max at t = K, then convex (4.4, 4.5)', () => {
    // W_max 1000 segments, RTT 100 ms: K = cbrt(300 / 0.4) = 9.0856 s; the Reno-friendly W_est
    // only reaches ~748 segments by then, so the cubic function rules throughout.
    const rtt = 100 * MS;
    const t0 = 1 * S;
    const cc = afterLoss(1000, t0);
    const k = Math.cbrt(750);
    let now = t0;
    const curve: { t: number; w: number }[] = [];
    while (now - t0 < 14 * S) {
      now = ackRound(cc, now, rtt);
      curve.push({ t: (now - t0) / S, w: cc.cwnd / MSS });
    }
    assert.ok(Math.abs((cc.snapshot().k as number) - k) < 1e-12);
    // Every RTT, cwnd is within half a segment of W_cubic(t) = 0.4 (t - K)^3 + 1000.
    for (const { t, w } of curve) {
      assert.ok(Math.abs(w - wCubic(t, k, 1000)) < 0.5, `t=${t}: cwnd ${w}, W_cubic ${wCubic(t, k, 1000)}`);
    }
    // cwnd at t = K equals W_max within a segment.
    const atK = curve.reduce((a, b) => (Math.abs(b.t - k) < Math.abs(a.t - k) ? b : a));
    assert.ok(Math.abs(atK.w - 1000) < 1, `cwnd at K: ${atK.w}`);
    // Shape: per-RTT increments shrink before K (concave) and grow after it (convex).
    const inc = (i: number) => curve[i + 1].w - curve[i].w;
    const iK = curve.indexOf(atK);
    assert.ok(inc(0) > inc(30) && inc(30) > inc(60) && inc(60) > inc(iK - 2));
    assert.ok(inc(iK + 2) < inc(iK + 20) && inc(iK + 20) < inc(curve.length - 2));
    assert.ok(
      curve.slice(0, iK - 1).every((p) => p.w < 1000),
      'concave region stays below W_max',
    );
    assert.ok(curve[curve.length - 1].w > 1040, 'convex region probes past W_max');
  });

  test('the 1.5 * cwnd cap on the target (4.2) bounds growth per RTT', () => {
    // Far past K the cubic target is huge; each segment ACKed then adds (1.5 cwnd - cwnd) / cwnd
    // = 0.5 segment, so one RTT of ACKs takes 70 segments to exactly 105.
    const cc = afterLoss(100, 1 * S);
    cc.onAck(MSS, 1 * S, 100 * MS); // the epoch begins
    const before = cc.cwnd / MSS;
    assert.equal(Math.floor(before), 70);
    ackRound(cc, 61 * S, 100 * MS); // t - K ~ 56 s: W_cubic ~ 70 000 segments
    assert.ok(Math.abs(cc.cwnd / MSS - before * 1.5) < 0.01, `${before} -> ${cc.cwnd / MSS}`);
  });

  test('Reno-friendly region (4.3) dominates at small RTT: alpha_cubic per RTT, then 1 past cwnd_prior', () => {
    // W_max 100, cwnd_epoch 70, RTT 1 ms: W_cubic(t) barely moves in 100 ms (K = 4.2 s), W_est
    // grows alpha_cubic = 3 * 0.3 / 1.7 segments per RTT.
    const rtt = 1 * MS;
    const t0 = 1 * S;
    const cc = afterLoss(100, t0);
    let now = t0;
    for (let r = 1; r <= 50; r++) {
      now = ackRound(cc, now, rtt);
      const expected = 70 + ALPHA * r; // W_est after r RTTs (Figure 4)
      assert.ok(
        Math.abs(cc.cwnd / MSS - expected) < 0.5,
        `RTT ${r}: cwnd ${cc.cwnd / MSS}, W_est ${expected}`,
      );
      assert.ok(cc.cwnd / MSS > wCubic((now - t0) / S, Math.cbrt(75), 100) + 5 || r < 10);
    }
    // Past cwnd_prior = 100 segments, alpha_cubic = 1: Reno's one segment per RTT.
    while (cc.cwnd < 101 * MSS) now = ackRound(cc, now, rtt);
    const from = cc.cwnd / MSS;
    for (let r = 0; r < 10; r++) now = ackRound(cc, now, rtt);
    assert.ok(Math.abs(cc.cwnd / MSS - from - 10) < 0.3, `grew ${cc.cwnd / MSS - from} in 10 RTTs`);
    assert.ok(cc.cwnd / MSS > wCubic((now - t0) / S, Math.cbrt(75), 100) + 10);
  });

  test('fast convergence (4.7): a loss below W_max lowers W_max to cwnd * (1 + beta) / 2', () => {
    const cc = afterLoss(100, 1 * S);
    let now = 1 * S;
    while (cc.cwnd < 80 * MSS) now = ackRound(cc, now, 100 * MS);
    const w = cc.snapshot().cwnd as number; // fractional bytes
    cc.onCongestionEvent(now, cc.cwnd);
    const s = cc.snapshot();
    assert.ok(Math.abs((s.wMax as number) - ((w / MSS) * (1 + BETA)) / 2) < 1e-9, `W_max ${s.wMax}`);
    assert.ok((s.wMax as number) < (w / MSS) * 0.86);
    assert.equal(s.cwndPrior, w / MSS);
    // A loss at or above the old W_max keeps W_max = cwnd.
    const up = grown('cubic', 100);
    up.onCongestionEvent(0, 100 * MSS);
    up.onRecoveryExit(0);
    up.onAck(MSS, 0, undefined); // start the epoch
    for (let i = 0; i < 10; i++) up.onAck(10_000 * MSS, 100 * S, 100 * MS); // far past K
    const upW = (up.snapshot().cwnd as number) / MSS;
    assert.ok(upW > 100);
    up.onCongestionEvent(100 * S, up.cwnd);
    assert.equal(up.snapshot().wMax, upW);
  });

  test('RTO (4.8): cwnd 1 SMSS, ssthresh 0.7 * flight; next epoch K = 0, W_max = cwnd_epoch', () => {
    const cc = grown('cubic', 100);
    cc.onTimeout(0, 100 * MSS);
    assert.equal(cc.cwnd, MSS);
    assert.equal(cc.ssthresh, 70 * MSS);
    cc.onTimeout(1 * S, 2 * MSS); // repeated RTO: ssthresh held
    assert.equal(cc.ssthresh, 70 * MSS);
    let now = 2 * S;
    while (cc.cwnd < 70 * MSS) cc.onAck(MSS, now, 10 * MS);
    assert.equal(cc.cwnd, 70 * MSS);
    now += 10 * MS;
    cc.onAck(MSS, now, 10 * MS);
    const s = cc.snapshot();
    assert.equal(s.k, 0);
    assert.equal(s.wMax, 70);
    // W_est starts at cwnd_epoch and, below cwnd_prior = 100, grows by alpha_cubic / cwnd per segment.
    assert.equal(s.cwndPrior, 100);
    assert.equal(s.wEst, 70 + ALPHA / 70);
  });

  test('idle restart resets cwnd to IW and starts a new epoch', () => {
    const cc = afterLoss(100, 1 * S);
    let now = ackRound(cc, 1 * S, 100 * MS);
    assert.notEqual(cc.snapshot().epochStart, -1);
    cc.onIdle(now + 5 * S);
    assert.equal(cc.cwnd, 10 * MSS);
    assert.equal(cc.snapshot().epochStart, -1);
    assert.ok(cc.ssthresh >= 52 * MSS, '3/4 of the old cwnd is remembered');
    now += 5 * S;
    while (cc.cwnd < cc.ssthresh) cc.onAck(MSS, now, 100 * MS);
    cc.onAck(MSS, now, 100 * MS);
    assert.equal(cc.snapshot().epochStart, now);
  });

  test('setMss keeps the window in segments', () => {
    const cc = afterLoss(100, 1 * S);
    cc.setMss(500);
    assert.equal(cc.cwnd, 70 * 500);
    assert.equal(cc.ssthresh, 70 * 500);
  });
});

describe('both algorithms', () => {
  type Op =
    | { kind: 'ack'; bytes: number; dt: number; srtt: number }
    | { kind: 'loss'; flight: number; dt: number }
    | { kind: 'exit'; dt: number }
    | { kind: 'rto'; flight: number; dt: number }
    | { kind: 'idle'; dt: number }
    | { kind: 'mss'; mss: number };
  const dt = fc.integer({ min: 0, max: 500_000 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({
        kind: fc.constant('ack' as const),
        bytes: fc.integer({ min: 0, max: 50_000 }),
        dt,
        srtt: fc.integer({ min: 0, max: 300_000 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('loss' as const),
        flight: fc.integer({ min: 0, max: 500_000 }),
        dt,
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('exit' as const), dt }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('rto' as const),
        flight: fc.integer({ min: 0, max: 500_000 }),
        dt,
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('idle' as const), dt }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('mss' as const),
        mss: fc.constantFrom(536, 1000, 1448, 1460),
      }),
    },
  );

  function apply(cc: CongestionControl, o: Op, now: number): number {
    if ('dt' in o) now += o.dt;
    switch (o.kind) {
      case 'ack':
        cc.onAck(o.bytes, now, o.srtt === 0 ? undefined : o.srtt);
        break;
      case 'loss':
        cc.onCongestionEvent(now, o.flight);
        break;
      case 'exit':
        cc.onRecoveryExit(now);
        break;
      case 'rto':
        cc.onTimeout(now, o.flight);
        break;
      case 'idle':
        cc.onIdle(now);
        break;
      case 'mss':
        cc.setMss(o.mss);
        break;
    }
    return now;
  }

  for (const alg of ['newreno', 'cubic'] as const) {
    test(`${alg}: snapshot through JSON mid-sequence continues bit-identically`, () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 80 }), fc.array(op, { maxLength: 80 }), (before, after) => {
          const a = createCongestionControl(alg, 1448, 10);
          let now = 0;
          for (const o of before) now = apply(a, o, now);
          const snap = JSON.parse(JSON.stringify(a.snapshot())) as CongestionSnapshot;
          const b = restoreCongestionControl(snap);
          assert.equal(b.algorithm, alg);
          assert.deepEqual(b.snapshot(), a.snapshot());
          let nb = now;
          for (const o of after) {
            now = apply(a, o, now);
            nb = apply(b, o, nb);
            assert.equal(b.cwnd, a.cwnd);
            assert.equal(b.ssthresh, a.ssthresh);
          }
          assert.deepEqual(b.snapshot(), a.snapshot());
        }),
        { numRuns: 300 },
      );
    });

    test(`${alg}: invariants over random calls (ACKs never shrink cwnd; cwnd >= 1 SMSS; ssthresh >= 2 SMSS)`, () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 150 }), (ops) => {
          const cc = createCongestionControl(alg, 1448, 10);
          let mss = 1448;
          let now = 0;
          for (const o of ops) {
            const before = cc.cwnd;
            now = apply(cc, o, now);
            if (o.kind === 'mss') mss = o.mss;
            if (o.kind === 'ack') assert.ok(cc.cwnd >= before, `${o.kind}: ${before} -> ${cc.cwnd}`);
            assert.ok(cc.cwnd >= mss && Number.isFinite(cc.cwnd) && Number.isInteger(cc.cwnd));
            assert.ok(cc.ssthresh >= 2 * mss);
            assert.ok(Number.isInteger(cc.ssthresh) || cc.ssthresh === Number.POSITIVE_INFINITY);
          }
        }),
        { numRuns: 300 },
      );
    });
  }

  test('bad arguments are refused with a sentence', () => {
    assert.throws(() => createCongestionControl('newreno', 0, 10), /MSS must be a positive integer/);
    assert.throws(() => createCongestionControl('cubic', 1460, 0), /initial window/);
    assert.throws(
      () => createCongestionControl('vegas' as CongestionAlgorithm, 1460, 10),
      /newreno' or 'cubic/,
    );
    assert.throws(() => restoreCongestionControl({ algorithm: 'bbr' as CongestionAlgorithm }), /Unknown/);
  });
});
