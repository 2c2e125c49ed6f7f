/**
 * Closing (RFC 9293 3.6, 3.10.4-5, 3.10.7.4 eighth), traced: active close through TIME-WAIT,
 * simultaneous close through CLOSING, passive close through LAST-ACK, abort, and the RFC 6191
 * rule for reusing a TIME-WAIT tuple.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TcpState } from '../../src/tcp/state.ts';
import { tcp } from '../support/build.ts';
import {
  ACK,
  bytes,
  established,
  FIN,
  type Fx,
  MS,
  PEER_TS,
  PSH,
  RST,
  recvNothing,
  recvOne,
  runUntil,
  S,
  SYN,
  send,
} from './fixtures.ts';

const TIME_WAIT = 60 * S;

/** Active close to TIME-WAIT: our FIN, its ACK, the peer's FIN (at the returned time). */
function toTimeWait(fx: Fx): number {
  const c = fx.conn;
  c.close();
  recvOne(c, fx.now, { flags: FIN | ACK, seq: fx.snd(0), ack: fx.rcv(0), len: 0 });
  assert.equal(c.state, TcpState.FinWait1);
  send(c, fx.now + 10 * MS, {
    seq: fx.rcv(0),
    ack: fx.snd(1),
    flags: ACK,
    tsVal: fx.peerTs(fx.now + 10 * MS),
  });
  assert.equal(c.state, TcpState.FinWait2);
  recvNothing(c, fx.now + 10 * MS);
  const t = fx.now + 20 * MS;
  send(c, t, { seq: fx.rcv(0), ack: fx.snd(1), flags: FIN | ACK, tsVal: fx.peerTs(t) });
  assert.equal(c.state, TcpState.TimeWait);
  recvOne(c, t, { flags: ACK, seq: fx.snd(1), ack: fx.rcv(1) });
  return t;
}

describe('active close (FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT)', () => {
  test('the side closing first stays in TIME-WAIT for exactly timeWaitUs, then CLOSED without error', () => {
    const fx = established();
    const t = toTimeWait(fx);
    assert.equal(fx.conn.pollAt(), t + TIME_WAIT);
    recvNothing(fx.conn, t + TIME_WAIT - 1);
    assert.equal(fx.conn.state, TcpState.TimeWait);
    recvNothing(fx.conn, t + TIME_WAIT);
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, undefined);
    assert.equal(fx.conn.pollAt(), undefined);
  });

  test('a retransmitted FIN in TIME-WAIT is ACKed again and restarts the timer', () => {
    const fx = established();
    const t = toTimeWait(fx);
    const t2 = t + 30 * S;
    send(fx.conn, t2, { seq: fx.rcv(0), ack: fx.snd(1), flags: FIN | ACK });
    recvOne(fx.conn, t2, { flags: ACK, seq: fx.snd(1), ack: fx.rcv(1) });
    assert.equal(fx.conn.pollAt(), t2 + TIME_WAIT);
    recvNothing(fx.conn, t + TIME_WAIT);
    assert.equal(fx.conn.state, TcpState.TimeWait);
    recvNothing(fx.conn, t2 + TIME_WAIT);
    assert.equal(fx.conn.state, TcpState.Closed);
  });

  test('TIME-WAIT accepts no data and sends nothing of its own', () => {
    const fx = established();
    const t = toTimeWait(fx);
    assert.equal(fx.conn.write(bytes(10)), 0);
    recvNothing(fx.conn, t + 1 * S);
  });

  test('the FIN rides on the last data segment', () => {
    const fx = established();
    fx.conn.write(bytes(100));
    fx.conn.close();
    assert.equal(fx.conn.write(bytes(1)), 0, 'no writing after close');
    recvOne(fx.conn, fx.now, { flags: FIN | ACK | PSH, seq: fx.snd(0), len: 100 });
    send(fx.conn, fx.now + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(101), flags: ACK });
    assert.equal(fx.conn.state, TcpState.FinWait2);
  });

  test('an ACK short of the FIN leaves FIN-WAIT-1; the FIN is retransmitted on the timer', () => {
    const fx = established();
    fx.conn.write(bytes(100));
    fx.conn.close();
    recvOne(fx.conn, fx.now, { flags: FIN | ACK | PSH, len: 100 });
    send(fx.conn, fx.now + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(100), flags: ACK });
    assert.equal(fx.conn.state, TcpState.FinWait1);
    recvOne(fx.conn, fx.now + 210 * MS, { flags: FIN | ACK, seq: fx.snd(100), len: 0 });
  });

  test("FIN-WAIT-2 still receives data; the peer's FIN and the ACK of ours in one segment go straight to TIME-WAIT", () => {
    const fx = established();
    fx.conn.close();
    recvOne(fx.conn, fx.now, { flags: FIN | ACK });
    send(fx.conn, fx.now + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(1), flags: ACK | FIN, payload: bytes(20) });
    assert.equal(fx.conn.state, TcpState.TimeWait);
    assert.deepEqual(fx.conn.read(), bytes(20));
    assert.equal(fx.conn.eof, true);
    recvOne(fx.conn, fx.now + 10 * MS, { flags: ACK, seq: fx.snd(1), ack: fx.rcv(21) });
  });
});

describe('simultaneous close (RFC 9293 3.6 figure 13)', () => {
  test("FIN-WAIT-1 + the peer's FIN -> CLOSING (ACK sent); the ACK of our FIN -> TIME-WAIT", () => {
    const fx = established();
    fx.conn.close();
    recvOne(fx.conn, fx.now, { flags: FIN | ACK, seq: fx.snd(0), ack: fx.rcv(0) });
    // The peer's FIN crosses ours: it acknowledges nothing new.
    const t = fx.now + 5 * MS;
    send(fx.conn, t, { seq: fx.rcv(0), ack: fx.snd(0), flags: FIN | ACK });
    assert.equal(fx.conn.state, TcpState.Closing);
    recvOne(fx.conn, t, { flags: ACK, seq: fx.snd(1), ack: fx.rcv(1) });
    const t2 = t + 5 * MS;
    send(fx.conn, t2, { seq: fx.rcv(1), ack: fx.snd(1), flags: ACK });
    assert.equal(fx.conn.state, TcpState.TimeWait);
    recvNothing(fx.conn, t2);
    recvNothing(fx.conn, t2 + TIME_WAIT);
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, undefined);
  });

  test('in CLOSING our FIN is retransmitted until acknowledged', () => {
    const fx = established();
    fx.conn.close();
    recvOne(fx.conn, fx.now, { flags: FIN | ACK });
    send(fx.conn, fx.now + 5 * MS, { seq: fx.rcv(0), ack: fx.snd(0), flags: FIN | ACK });
    recvOne(fx.conn, fx.now + 5 * MS, { flags: ACK });
    recvOne(fx.conn, fx.now + 200 * MS, { flags: FIN | ACK, seq: fx.snd(0), ack: fx.rcv(1) });
    assert.equal(fx.conn.state, TcpState.Closing);
  });
});

describe('passive close (CLOSE-WAIT, LAST-ACK)', () => {
  test("the peer's FIN: an immediate ACK, CLOSE-WAIT and end of stream; our FIN -> LAST-ACK; its ACK -> CLOSED", () => {
    const fx = established();
    const c = fx.conn;
    send(c, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: FIN | ACK | PSH, payload: bytes(30) });
    assert.equal(c.state, TcpState.CloseWait);
    recvOne(c, fx.now, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(31) });
    assert.equal(c.eof, false, 'bytes before the FIN still unread');
    assert.deepEqual(c.read(), bytes(30));
    assert.equal(c.eof, true);
    // CLOSE-WAIT may still send.
    c.write(bytes(10));
    recvOne(c, fx.now, { flags: ACK | PSH, seq: fx.snd(0), len: 10 });
    c.close();
    recvOne(c, fx.now, { flags: FIN | ACK, seq: fx.snd(10), ack: fx.rcv(31) });
    assert.equal(c.state, TcpState.LastAck);
    send(c, fx.now + 10 * MS, { seq: fx.rcv(31), ack: fx.snd(11), flags: ACK });
    assert.equal(c.state, TcpState.Closed);
    assert.equal(c.error, undefined);
    assert.equal(c.pollAt(), undefined);
  });

  test('a FIN out of order waits for the bytes before it', () => {
    const fx = established();
    send(fx.conn, fx.now, { seq: fx.rcv(10), ack: fx.snd(0), flags: FIN | ACK, payload: bytes(10, 10) });
    assert.equal(fx.conn.state, TcpState.Established);
    recvOne(fx.conn, fx.now, { flags: ACK, ack: fx.rcv(0) });
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(10) });
    assert.equal(fx.conn.state, TcpState.CloseWait);
    recvOne(fx.conn, fx.now, { flags: ACK, ack: fx.rcv(21) });
    assert.deepEqual(fx.conn.read(), bytes(20));
  });

  test('LAST-ACK retransmits the FIN on the timer', () => {
    const fx = established();
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: FIN | ACK });
    recvOne(fx.conn, fx.now, { flags: ACK });
    fx.conn.close();
    recvOne(fx.conn, fx.now, { flags: FIN | ACK, seq: fx.snd(0) });
    const out = runUntil(fx.conn, fx.now, fx.now + 700 * MS);
    assert.deepEqual(
      out.map((o) => [o.at - fx.now, o.seg.flags, o.seg.seq]),
      [
        [200 * MS, FIN | ACK, fx.snd(0)],
        [600 * MS, FIN | ACK, fx.snd(0)],
      ],
    );
  });
});

describe('abort (RFC 9293 3.10.5)', () => {
  test('abort in ESTABLISHED: <SEQ=SND.NXT><CTL=RST>, CLOSED, ECONNABORTED', () => {
    const fx = established();
    fx.conn.write(bytes(100));
    recvOne(fx.conn, fx.now, { len: 100 });
    fx.conn.abort();
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, 'ECONNABORTED');
    recvOne(fx.conn, fx.now, { flags: RST | ACK, seq: fx.snd(100), ack: fx.rcv(0), len: 0 });
    recvNothing(fx.conn, fx.now + 10 * S);
  });

  test('an exact RST in TIME-WAIT closes it without an error', () => {
    const fx = established();
    const t = toTimeWait(fx);
    send(fx.conn, t + 1 * S, { seq: fx.rcv(1), flags: RST });
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, undefined);
  });
});

describe('acceptsNewSyn: reusing a TIME-WAIT tuple (RFC 6191, RFC 1122 4.2.2.13)', () => {
  test('with timestamps: only a SYN whose TSval is newer than TS.Recent', () => {
    const fx = established({ peer: { tsVal: PEER_TS } });
    const t = toTimeWait(fx);
    const recent = fx.peerTs(t)!; // the FIN's TSval
    const syn = (tsVal: number, seq = 1) => tcp({ flags: SYN, seq, tsVal, tsEcr: 0 });
    assert.equal(fx.conn.acceptsNewSyn(syn(recent + 1)), true);
    assert.equal(fx.conn.acceptsNewSyn(syn(recent)), false);
    assert.equal(fx.conn.acceptsNewSyn(syn(recent - 1)), false);
    // The timestamp decides even when the sequence number is old.
    assert.equal(fx.conn.acceptsNewSyn(syn(recent + 1000, fx.rcv(-5))), true);
  });

  test('without timestamps: only a SYN whose sequence number lies beyond RCV.NXT', () => {
    const fx = established();
    toTimeWait(fx);
    const syn = (seq: number) => tcp({ flags: SYN, seq });
    // RCV.NXT is the peer's FIN + 1, offset 1.
    assert.equal(fx.conn.acceptsNewSyn(syn(fx.rcv(2))), true);
    assert.equal(fx.conn.acceptsNewSyn(syn(fx.rcv(100_000))), true);
    assert.equal(fx.conn.acceptsNewSyn(syn(fx.rcv(1))), false);
    assert.equal(fx.conn.acceptsNewSyn(syn(fx.rcv(0))), false);
    assert.equal(fx.conn.acceptsNewSyn(syn(fx.rcv(-1000))), false);
  });

  test('across the sequence wrap', () => {
    const fx = established({ peer: { iss: 0xffff_fff0 } });
    toTimeWait(fx);
    assert.equal(fx.rcv(1), 0xffff_fff2);
    assert.equal(fx.conn.acceptsNewSyn(tcp({ flags: SYN, seq: 5 })), true);
    assert.equal(fx.conn.acceptsNewSyn(tcp({ flags: SYN, seq: 0xffff_ff00 })), false);
  });

  test('never in a live connection; always once CLOSED', () => {
    const fx = established();
    assert.equal(fx.conn.acceptsNewSyn(tcp({ flags: SYN, seq: fx.rcv(100) })), false);
    const t = toTimeWait(fx);
    recvNothing(fx.conn, t + TIME_WAIT);
    assert.equal(fx.conn.acceptsNewSyn(tcp({ flags: SYN, seq: fx.rcv(0) })), true);
  });
});
