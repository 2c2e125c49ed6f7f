/**
 * Timers and loss recovery, traced: retransmission timeout (RFC 6298), Karn's rule, fast
 * retransmit and NewReno (RFC 5681, RFC 6582), SACK recovery (RFC 6675), limited transmit
 * (RFC 3042), zero-window probing (RFC 9293 3.8.6.1), keep-alive (RFC 9293 3.8.4 / RFC 1122
 * 4.2.3.6), user timeout (RFC 5482) and the retransmission limit.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TcpConfig } from '../../src/tcp/config.ts';
import { TcpState } from '../../src/tcp/state.ts';
import {
  ACK,
  bytes,
  established,
  type Fx,
  MS,
  PEER_TS,
  PSH,
  peerSyn,
  RST,
  RTT,
  recv,
  recvNothing,
  recvOne,
  recvSegs,
  runUntil,
  S,
  SYN,
  send,
  synSent,
  T0,
} from './fixtures.ts';

const SEG = 1460;

/** `n` full segments written and sent at `fx.now`; returns their offsets. */
function flight(fx: Fx, n: number, extra = 0): number[] {
  fx.conn.write(bytes(n * SEG + extra));
  const segs = recv(fx.conn, fx.now);
  assert.equal(segs.length, n, 'one initial window of full segments');
  return segs.map((s) => (s.seq - fx.snd(0)) >>> 0);
}

/** A duplicate ACK (ack `ackOff`), optionally with SACK blocks given in our send offsets. */
function dupAck(fx: Fx, now: number, ackOff: number, sack?: [number, number][]): void {
  send(fx.conn, now, {
    seq: fx.rcv(0),
    ack: fx.snd(ackOff),
    flags: ACK,
    sackBlocks: sack?.flatMap(([s, e]) => [fx.snd(s), fx.snd(e)]),
  });
}

describe('retransmission timeout (RFC 6298)', () => {
  test('fires after the RTO (200 ms after a 10 ms handshake), then doubles: 400 ms, 800 ms', () => {
    const fx = established();
    const t = fx.now;
    fx.conn.write(bytes(100));
    recvOne(fx.conn, t, { flags: ACK | PSH, seq: fx.snd(0), len: 100 });
    assert.equal(fx.conn.pollAt(), t + 200 * MS);
    recvNothing(fx.conn, t + 200 * MS - 1);
    const out = runUntil(fx.conn, t, t + 3 * S - 1);
    assert.deepEqual(
      out.map((o) => o.at - t),
      [200 * MS, 600 * MS, 1400 * MS],
    );
    for (const o of out) {
      assert.equal(o.seg.seq, fx.snd(0));
      assert.deepEqual(o.seg.payload, bytes(100));
    }
    assert.equal(fx.conn.stats.rtoUs, 1600 * MS);
  });

  test('the first RTO before any RTT sample is initialRtoUs (the SYN, 1 s)', () => {
    // Covered for the SYN in connection-handshake; here the data RTO follows the handshake sample.
    const fx = established({ config: { minRtoUs: 50 * MS } });
    // 10 ms sample: RTO = 10 + 4 * 5 = 30 ms, raised to the 50 ms floor.
    assert.equal(fx.conn.stats.rtoUs, 50 * MS);
  });

  test('after a timeout the window restarts at one segment and slow start resumes on the ACK', () => {
    const fx = established();
    const t = fx.now;
    flight(fx, 10);
    const rto = recv(fx.conn, t + 200 * MS);
    assert.deepEqual(
      rto.map((s) => [(s.seq - fx.snd(0)) >>> 0, s.payload.length]),
      [[0, SEG]],
    );
    // The ACK of the first segment: the next two (cwnd 2) go out, from the go-back-N point.
    send(fx.conn, t + 210 * MS, { seq: fx.rcv(0), ack: fx.snd(SEG), flags: ACK });
    assert.deepEqual(
      recv(fx.conn, t + 210 * MS).map((s) => (s.seq - fx.snd(0)) >>> 0),
      [SEG, 2 * SEG],
    );
  });

  test("Karn's rule: no RTT sample from the ACK of a retransmitted segment (no timestamps)", () => {
    const timed = established();
    timed.conn.write(bytes(100));
    recv(timed.conn, timed.now);
    send(timed.conn, timed.now + 50 * MS, { seq: timed.rcv(0), ack: timed.snd(100), flags: ACK });
    // A clean sample of 50 ms: SRTT = 7/8 * 10 + 1/8 * 50 ms.
    assert.equal(timed.conn.stats.srttUs, 15 * MS);

    const fx = established();
    fx.conn.write(bytes(100));
    recv(fx.conn, fx.now);
    recvOne(fx.conn, fx.now + 200 * MS, { seq: fx.snd(0), len: 100 });
    send(fx.conn, fx.now + 250 * MS, { seq: fx.rcv(0), ack: fx.snd(100), flags: ACK });
    assert.equal(fx.conn.stats.srttUs, 10 * MS, 'ambiguous: neither 250 ms nor 50 ms is sampled');
    assert.equal(fx.conn.acknowledged, 100);
  });

  test('with timestamps the echo disambiguates: the retransmission is timed by its own TSval', () => {
    const fx = established({ peer: { tsVal: PEER_TS } });
    fx.conn.write(bytes(100));
    recv(fx.conn, fx.now);
    const t1 = fx.now + 200 * MS;
    const rx = recvOne(fx.conn, t1, { seq: fx.snd(0), len: 100, tsVal: fx.ts(t1) });
    const t2 = t1 + 50 * MS;
    send(fx.conn, t2, {
      seq: fx.rcv(0),
      ack: fx.snd(100),
      flags: ACK,
      tsVal: fx.peerTs(t2),
      tsEcr: rx.tsVal,
    });
    // 50 ms from the retransmission's echo: SRTT = 7/8 * 10 + 1/8 * 50 ms.
    assert.equal(fx.conn.stats.srttUs, 15 * MS);
  });
});

describe('fast retransmit and recovery (RFC 5681 3.2, RFC 6582, RFC 6675)', () => {
  for (const congestion of ['cubic', 'newreno'] as TcpConfig['congestion'][]) {
    test(`third duplicate ACK retransmits the first unacknowledged segment at once (${congestion})`, () => {
      const fx = established({ config: { congestion } });
      const t = fx.now + 10 * MS;
      flight(fx, 10);
      // Segment 0 lost; 1, 2, 3 arrive and each draws a duplicate ACK.
      dupAck(fx, t, 0);
      dupAck(fx, t, 0);
      recvNothing(fx.conn, t);
      dupAck(fx, t, 0);
      recvSegs(fx.conn, t, [{ seq: fx.snd(0), len: SEG, payload: bytes(SEG) }]);
      // Nothing else: more duplicate ACKs do not resend it again.
      dupAck(fx, t, 0);
      recvNothing(fx.conn, t);
      assert.equal(fx.conn.pollAt(), fx.now + 200 * MS, 'the RTO of the first transmission still runs');
    });
  }

  test('limited transmit (RFC 3042): one new segment on each of the first two duplicate ACKs', () => {
    const fx = established();
    const t = fx.now + 10 * MS;
    flight(fx, 10, 5 * SEG);
    dupAck(fx, t, 0);
    recvSegs(fx.conn, t, [{ seq: fx.snd(10 * SEG), len: SEG }]);
    dupAck(fx, t, 0);
    recvSegs(fx.conn, t, [{ seq: fx.snd(11 * SEG), len: SEG }]);
    dupAck(fx, t, 0);
    recvSegs(fx.conn, t, [{ seq: fx.snd(0), len: SEG }]);
  });

  test('limited transmit off: nothing before the third duplicate ACK', () => {
    const fx = established({ config: { limitedTransmit: false } });
    const t = fx.now + 10 * MS;
    flight(fx, 10, 5 * SEG);
    dupAck(fx, t, 0);
    dupAck(fx, t, 0);
    recvNothing(fx.conn, t);
    dupAck(fx, t, 0);
    recvSegs(fx.conn, t, [{ seq: fx.snd(0), len: SEG }]);
  });

  test('a duplicate ACK must not carry data or change the window to count (RFC 5681 2)', () => {
    const fx = established({ config: { limitedTransmit: false } });
    const t = fx.now + 10 * MS;
    flight(fx, 10);
    const ack = (more: object) => send(fx.conn, t, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, ...more });
    ack({}); // duplicate 1
    ack({ window: 60_000 }); // a window update, not a duplicate
    ack({ window: 60_000, payload: bytes(10) }); // carries data, not a duplicate
    ack({ window: 60_000, seq: fx.rcv(10) }); // duplicate 2
    assert.ok(
      recv(fx.conn, t).every((s) => s.payload.length === 0),
      'no retransmission after two duplicates',
    );
    ack({ window: 60_000, seq: fx.rcv(10) }); // duplicate 3
    recvSegs(fx.conn, t, [{ seq: fx.snd(0), len: SEG }]);
  });

  test('NewReno partial ACK: the next hole is retransmitted at once (RFC 6582 3.2 step 5)', () => {
    const fx = established({ config: { congestion: 'newreno' } });
    const t = fx.now + 10 * MS;
    flight(fx, 10);
    // Segments 0 and 5 lost: the peer sends a duplicate ACK for each of 1-4 and 6-9.
    for (let i = 0; i < 3; i++) dupAck(fx, t, 0);
    recvSegs(fx.conn, t, [{ seq: fx.snd(0), len: SEG }]);
    for (let i = 0; i < 5; i++) dupAck(fx, t, 0);
    recvNothing(fx.conn, t);
    // The retransmission fills the first hole: ACK up to segment 5, short of the recovery point.
    send(fx.conn, t + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(5 * SEG), flags: ACK });
    recvSegs(fx.conn, t + 10 * MS, [{ seq: fx.snd(5 * SEG), len: SEG, payload: bytes(SEG, 5 * SEG) }]);
    send(fx.conn, t + 20 * MS, { seq: fx.rcv(0), ack: fx.snd(10 * SEG), flags: ACK });
    recvNothing(fx.conn, t + 20 * MS);
    assert.equal(fx.conn.acknowledged, 10 * SEG);
    assert.equal(fx.conn.pollAt(), undefined);
  });

  test('SACK recovery retransmits only the hole (RFC 6675), sequence numbers wrapping mid-flight', () => {
    const fx = established({ peer: { sack: true }, iss: 2 ** 32 - 3 * SEG });
    const t = fx.now + 10 * MS;
    flight(fx, 10);
    // Segment 3 lost. The peer acknowledges 0-2, then SACKs 4, 4-5, 4-6, ...
    send(fx.conn, t, {
      seq: fx.rcv(0),
      ack: fx.snd(3 * SEG),
      flags: ACK,
      sackBlocks: [fx.snd(4 * SEG), fx.snd(5 * SEG)],
    });
    const out = recv(fx.conn, t);
    for (let k = 6; k <= 10; k++) {
      dupAck(fx, t, 3 * SEG, [[4 * SEG, k * SEG]]);
      out.push(...recv(fx.conn, t));
    }
    // Nothing was queued beyond the ten segments, so all that may leave is the hole.
    assert.deepEqual(
      out.map((s) => [(s.seq - fx.snd(0)) >>> 0, s.payload.length]),
      [[3 * SEG, SEG]],
    );
    assert.deepEqual(out[0].payload, bytes(SEG, 3 * SEG));
    send(fx.conn, t + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(10 * SEG), flags: ACK });
    recvNothing(fx.conn, t + 10 * MS);
    assert.equal(fx.conn.acknowledged, 10 * SEG);
  });

  test('SACK recovery with two holes resends both and never a SACKed byte', () => {
    const fx = established({ peer: { sack: true } });
    const t = fx.now + 10 * MS;
    flight(fx, 10);
    // Segments 2 and 6 lost.
    const sent: number[] = [];
    const take = () => {
      for (const s of recv(fx.conn, t)) sent.push((s.seq - fx.snd(0)) >>> 0);
    };
    dupAck(fx, t, 2 * SEG, [[3 * SEG, 4 * SEG]]);
    take();
    dupAck(fx, t, 2 * SEG, [[3 * SEG, 5 * SEG]]);
    take();
    dupAck(fx, t, 2 * SEG, [[3 * SEG, 6 * SEG]]);
    take();
    dupAck(fx, t, 2 * SEG, [
      [7 * SEG, 8 * SEG],
      [3 * SEG, 6 * SEG],
    ]);
    take();
    dupAck(fx, t, 2 * SEG, [
      [7 * SEG, 9 * SEG],
      [3 * SEG, 6 * SEG],
    ]);
    take();
    dupAck(fx, t, 2 * SEG, [
      [7 * SEG, 10 * SEG],
      [3 * SEG, 6 * SEG],
    ]);
    take();
    assert.deepEqual(sent, [2 * SEG, 6 * SEG]);
  });
});

describe('zero window and persist (RFC 9293 3.8.6.1, RFC 1122 4.2.2.17)', () => {
  test('a zero window holds data; probes at SND.UNA-1 back off 200, 400, 800 ms; an opening window lets data flow', () => {
    const fx = established({ peer: { window: 0 } });
    const t = fx.now;
    fx.conn.write(bytes(3000));
    recvNothing(fx.conn, t);
    const probes = runUntil(fx.conn, t, t + 1500 * MS);
    assert.deepEqual(
      probes.map((p) => p.at - t),
      [200 * MS, 600 * MS, 1400 * MS],
    );
    for (const p of probes) {
      assert.equal(p.seg.flags, ACK);
      assert.equal(p.seg.seq, fx.snd(-1));
      assert.equal(p.seg.ack, fx.rcv(0));
      assert.equal(p.seg.payload.length, 0);
    }
    assert.equal(fx.conn.pollAt(), t + 3000 * MS);
    // The probe's answer opens the window: the data goes at once.
    send(fx.conn, t + 1410 * MS, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, window: 65535 });
    assert.deepEqual(
      recv(fx.conn, t + 1410 * MS).map((s) => [(s.seq - fx.snd(0)) >>> 0, s.payload.length]),
      [
        [0, SEG],
        [SEG, SEG],
      ],
    );
    // Nagle holds the 80-byte tail until the ACK.
    send(fx.conn, t + 1420 * MS, { seq: fx.rcv(0), ack: fx.snd(2 * SEG), flags: ACK, window: 65535 });
    recvOne(fx.conn, t + 1420 * MS, { seq: fx.snd(2 * SEG), len: 80 });
  });

  test('a zero-window answer to a probe keeps the probing going and never times the connection out', () => {
    const fx = established({ peer: { window: 0 }, config: { maxRetransmissions: 2 } });
    fx.conn.write(bytes(100));
    recv(fx.conn, fx.now);
    let t = fx.now;
    for (let i = 0; i < 8; i++) {
      const w = fx.conn.pollAt();
      assert.ok(w !== undefined);
      t = w;
      recvOne(fx.conn, t, { seq: fx.snd(-1), len: 0 });
      send(fx.conn, t + 5 * MS, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, window: 0 });
    }
    assert.equal(fx.conn.state, TcpState.Established);
  });

  test('a window that closes with data in flight: the RTO retransmits, then probing takes over', () => {
    const fx = established({ config: { noDelay: true } });
    fx.conn.write(bytes(100));
    recvOne(fx.conn, fx.now, { len: 100 });
    fx.conn.write(bytes(100, 100));
    // The first 100 bytes are acknowledged with a zero window: the next 100 wait.
    send(fx.conn, fx.now + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(100), flags: ACK, window: 0 });
    recvNothing(fx.conn, fx.now + 10 * MS);
    const w = fx.conn.pollAt();
    assert.ok(w !== undefined);
    recvOne(fx.conn, w, { seq: fx.snd(99), len: 0 });
  });
});

describe('keep-alive (RFC 9293 3.8.4, RFC 1122 4.2.3.6)', () => {
  const keepAlive = { idleUs: 10 * S, intervalUs: 1 * S, count: 3 };

  test('probes after idleUs at SND.UNA-1 without data, every intervalUs, then RST and ETIMEDOUT after count', () => {
    const fx = established({ config: { keepAlive } });
    const t = fx.now;
    assert.equal(fx.conn.pollAt(), t + 10 * S);
    const out = runUntil(fx.conn, t, t + 60 * S);
    assert.deepEqual(
      out.map((o) => [o.at - t, o.seg.flags, o.seg.seq, o.seg.payload.length]),
      [
        [10 * S, ACK, fx.snd(-1), 0],
        [11 * S, ACK, fx.snd(-1), 0],
        [12 * S, ACK, fx.snd(-1), 0],
        [13 * S, RST | ACK, fx.snd(0), 0],
      ],
    );
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, 'ETIMEDOUT');
  });

  test('an answered probe resets the count and the idle time', () => {
    const fx = established({ config: { keepAlive } });
    const t = fx.now;
    recvOne(fx.conn, t + 10 * S, { seq: fx.snd(-1) });
    recvOne(fx.conn, t + 11 * S, { seq: fx.snd(-1) });
    send(fx.conn, t + 11 * S + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK });
    assert.equal(fx.conn.pollAt(), t + 21 * S + 10 * MS);
    const out = runUntil(fx.conn, t + 11 * S, t + 100 * S);
    assert.deepEqual(
      out.map((o) => [o.at - t, o.seg.flags]),
      [
        [21 * S + 10 * MS, ACK],
        [22 * S + 10 * MS, ACK],
        [23 * S + 10 * MS, ACK],
        [24 * S + 10 * MS, RST | ACK],
      ],
    );
  });

  test('received data defers the first probe', () => {
    const fx = established({ config: { keepAlive } });
    const t = fx.now;
    send(fx.conn, t + 5 * S, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(10) });
    recvOne(fx.conn, t + 5 * S + 40 * MS, { ack: fx.rcv(10) });
    recvNothing(fx.conn, t + 10 * S);
    assert.equal(fx.conn.pollAt(), t + 15 * S);
  });

  test('off by default: an idle connection never wakes', () => {
    const fx = established();
    assert.equal(fx.conn.pollAt(), undefined);
  });
});

describe('giving up (RFC 5482 user timeout, RFC 9293 3.8.3 R2)', () => {
  test('userTimeoutUs: data unacknowledged that long ends the connection with a RST and ETIMEDOUT', () => {
    const fx = established({ config: { userTimeoutUs: 5 * S } });
    const t = fx.now;
    fx.conn.write(bytes(100));
    recv(fx.conn, t);
    const out = runUntil(fx.conn, t, t + 60 * S);
    assert.deepEqual(
      out.map((o) => [o.at - t, o.seg.flags, o.seg.seq, o.seg.payload.length]),
      [
        [200 * MS, ACK | PSH, fx.snd(0), 100],
        [600 * MS, ACK | PSH, fx.snd(0), 100],
        [1400 * MS, ACK | PSH, fx.snd(0), 100],
        [3000 * MS, ACK | PSH, fx.snd(0), 100],
        [5000 * MS, RST | ACK, fx.snd(100), 0],
      ],
    );
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, 'ETIMEDOUT');
  });

  test('userTimeoutUs counts from the last progress, not from the first byte', () => {
    const fx = established({ config: { userTimeoutUs: 5 * S, noDelay: true } });
    const t = fx.now;
    fx.conn.write(bytes(100));
    recv(fx.conn, t);
    fx.conn.write(bytes(100, 100));
    send(fx.conn, t + 4 * S, { seq: fx.rcv(0), ack: fx.snd(100), flags: ACK });
    recv(fx.conn, t + 4 * S);
    runUntil(fx.conn, t + 4 * S, t + 9 * S - 1);
    assert.equal(fx.conn.state, TcpState.Established);
    runUntil(fx.conn, t + 4 * S, t + 9 * S);
    assert.equal(fx.conn.error, 'ETIMEDOUT');
  });

  test('maxRetransmissions: after that many timeouts the next one sends a RST and reports ETIMEDOUT', () => {
    const fx = established({ config: { maxRetransmissions: 3 } });
    const t = fx.now;
    fx.conn.write(bytes(100));
    recv(fx.conn, t);
    const out = runUntil(fx.conn, t, t + 60 * S);
    assert.deepEqual(
      out.map((o) => [o.at - t, o.seg.flags]),
      [
        [200 * MS, ACK | PSH],
        [600 * MS, ACK | PSH],
        [1400 * MS, ACK | PSH],
        [3000 * MS, RST | ACK],
      ],
    );
    assert.equal(fx.conn.error, 'ETIMEDOUT');
    assert.equal(fx.conn.pollAt(), undefined);
  });

  test('an ACK of new data resets the retransmission count', () => {
    const fx = established({ config: { maxRetransmissions: 2, noDelay: true } });
    const t = fx.now;
    fx.conn.write(bytes(200));
    recv(fx.conn, t);
    recv(fx.conn, t + 200 * MS);
    recv(fx.conn, t + 600 * MS);
    send(fx.conn, t + 700 * MS, { seq: fx.rcv(0), ack: fx.snd(100), flags: ACK });
    // Two more timeouts are allowed again before the give-up.
    const out = runUntil(fx.conn, t + 700 * MS, t + 60 * S);
    assert.deepEqual(
      out.map((o) => o.seg.flags),
      [ACK | PSH, ACK | PSH, RST | ACK],
    );
  });
});

describe('RTO after a retransmitted SYN (RFC 6298 5.7)', () => {
  test('no RTT sample from the handshake: data starts from a 3 s RTO, not the backed-off SYN RTO', () => {
    const { fx } = synSent();
    // The SYN is lost once: retransmitted after the 1 s initial RTO.
    recvOne(fx.conn, T0 + 1000 * MS, { flags: SYN, seq: fx.snd(-1) });
    // The SYN-ACK answers the retransmission; Karn's rule allows no sample.
    const t = T0 + 1000 * MS + RTT;
    send(fx.conn, t, peerSyn(fx.peer, fx.irs, SYN | ACK, fx.snd(0), undefined));
    assert.equal(fx.conn.state, TcpState.Established);
    recvOne(fx.conn, t, { flags: ACK });
    assert.equal(fx.conn.stats.rtoUs, 3000 * MS);
    fx.conn.write(bytes(100));
    recvOne(fx.conn, t, { flags: ACK | PSH, len: 100 });
    recvNothing(fx.conn, t + 2999 * MS);
    recvOne(fx.conn, t + 3000 * MS, { flags: ACK | PSH, len: 100 });
  });
});
