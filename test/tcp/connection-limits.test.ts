/**
 * The two replication limits (docs/ARCHITECTURE.md §3):
 * `ackLimit`, a receive offset the ACK field may not pass, and `sendLimit`, a send offset no
 * transmitted byte (nor the SYN at -1, nor the FIN at its offset) may reach. Raising either
 * releases what it held at the next poll, without waiting for a timer.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TcpConnection } from '../../src/tcp/connection.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { tcp } from '../support/build.ts';
import {
  ACK,
  bytes,
  established,
  FIN,
  LOCAL_ISS,
  LOCAL_PORT,
  MS,
  PSH,
  REMOTE_ISS,
  REMOTE_PORT,
  recv,
  recvNothing,
  recvOne,
  rngOf,
  SYN,
  send,
  T0,
} from './fixtures.ts';

describe('ackLimit', () => {
  test('data past the limit is held but not acknowledged; raising the limit releases the ACK at once', () => {
    const fx = established({ config: { recvBufferSize: 10_000 } });
    const c = fx.conn;
    c.ackLimit = 100;
    send(c, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK | PSH, payload: bytes(1000) });
    assert.equal(c.readable, 1000, 'the bytes are held (the layer above replicates them)');
    recvNothing(c, fx.now);
    // The delayed ACK stops at the limit; the window keeps the right edge where it was.
    recvOne(c, fx.now + 40 * MS, { flags: ACK, ack: fx.rcv(100), window: 10_000 - 100 });
    assert.equal(c.pollAt(), undefined, 'nothing to do while the limit holds');
    c.ackLimit = 600;
    assert.equal(c.pollAt(), fx.now + 40 * MS, 'due at once');
    recvOne(c, fx.now + 41 * MS, { flags: ACK, ack: fx.rcv(600) });
    c.ackLimit = Number.POSITIVE_INFINITY;
    recvOne(c, fx.now + 42 * MS, { flags: ACK, ack: fx.rcv(1000) });
    recvNothing(c, fx.now + 1000 * MS);
  });

  test('an immediate ACK (two full segments) also stops at the limit', () => {
    const fx = established();
    fx.conn.ackLimit = 2000;
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(1460) });
    send(fx.conn, fx.now, { seq: fx.rcv(1460), ack: fx.snd(0), flags: ACK, payload: bytes(1460, 1460) });
    recvOne(fx.conn, fx.now, { ack: fx.rcv(2000) });
  });

  test('our data segments carry the held-back ACK field too', () => {
    const fx = established();
    fx.conn.ackLimit = 10;
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(50) });
    fx.conn.write(bytes(5));
    recvOne(fx.conn, fx.now, { flags: ACK | PSH, ack: fx.rcv(10), len: 5 });
  });

  test("the peer's FIN (at its offset) is acknowledged only once the limit passes it", () => {
    const fx = established();
    const c = fx.conn;
    c.ackLimit = 100;
    send(c, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: FIN | ACK, payload: bytes(100) });
    assert.equal(c.state, TcpState.CloseWait);
    recvOne(c, fx.now, { flags: ACK, ack: fx.rcv(100) });
    c.ackLimit = 101;
    recvOne(c, fx.now + 1 * MS, { flags: ACK, ack: fx.rcv(101) });
  });

  test("ackLimit < 0 holds the SYN-ACK (it acknowledges the peer's SYN, offset -1)", () => {
    const syn = tcp({ srcPort: REMOTE_PORT, dstPort: LOCAL_PORT, seq: REMOTE_ISS, flags: SYN, mss: 1460 });
    const c = TcpConnection.accept(syn, {
      localPort: LOCAL_PORT,
      remotePort: REMOTE_PORT,
      now: T0,
      rng: rngOf(LOCAL_ISS),
    });
    c.ackLimit = -1;
    recvNothing(c, T0);
    assert.equal(c.pollAt(), undefined, 'a held SYN-ACK is no reason to wake');
    c.ackLimit = 0;
    assert.equal(c.pollAt(), T0);
    recvOne(c, T0 + 1 * MS, { flags: SYN | ACK, seq: LOCAL_ISS, ack: REMOTE_ISS + 1 });
  });

  test("ackLimit < 0 holds an active open's first ACK after the SYN-ACK (acknowledging the SYN itself draws a RST)", () => {
    const c = TcpConnection.connect({
      localPort: LOCAL_PORT,
      remotePort: REMOTE_PORT,
      now: T0,
      rng: rngOf(LOCAL_ISS),
    });
    c.ackLimit = -1;
    c.sendLimit = 0;
    recvOne(c, T0, { flags: SYN, seq: LOCAL_ISS });
    send(c, T0 + 1 * MS, { seq: REMOTE_ISS, ack: LOCAL_ISS + 1, flags: SYN | ACK, mss: 1460 });
    assert.equal(c.state, TcpState.Established);
    c.write(bytes(100));
    recvNothing(c, T0 + 1 * MS);
    assert.equal(c.pollAt(), undefined, 'a held ACK is no reason to wake');
    c.ackLimit = 0;
    c.sendLimit = Number.POSITIVE_INFINITY;
    const segs = recv(c, T0 + 2 * MS);
    assert.ok(segs.length > 0);
    for (const s of segs) assert.equal(s.ack, REMOTE_ISS + 1, 'every segment acknowledges the SYN');
  });
});

describe('sendLimit', () => {
  test('written data is held at the limit; raising it releases it at once', () => {
    const fx = established();
    const c = fx.conn;
    c.sendLimit = 0;
    c.write(bytes(1000));
    recvNothing(c, fx.now);
    assert.equal(c.pollAt(), undefined, 'held data arms no timer');
    c.sendLimit = 1000;
    assert.equal(c.pollAt(), fx.now);
    recvOne(c, fx.now + 1 * MS, { flags: ACK | PSH, seq: fx.snd(0), payload: bytes(1000) });
  });

  test('no byte at or past the limit ever leaves, whatever the window and cwnd allow', () => {
    const fx = established({ config: { noDelay: true } });
    const c = fx.conn;
    c.sendLimit = 2920 + 700;
    c.write(bytes(10_000));
    const out = recv(c, fx.now);
    const end = Math.max(...out.map((s) => ((s.seq - fx.snd(0)) >>> 0) + s.payload.length));
    assert.ok(end <= 3620, `sent up to ${end}`);
    assert.ok(end >= 2920, 'the full segments below the limit go');
    c.sendLimit = Number.POSITIVE_INFINITY;
    send(c, fx.now + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(end), flags: ACK });
    const rest = recv(c, fx.now + 10 * MS);
    assert.equal((rest[0].seq - fx.snd(0)) >>> 0, end, 'the rest follows on from where the limit stopped it');
  });

  test('sendLimit -1 holds the SYN; raising it to 0 sends it', () => {
    const c = TcpConnection.connect({
      localPort: LOCAL_PORT,
      remotePort: REMOTE_PORT,
      now: T0,
      rng: rngOf(LOCAL_ISS),
    });
    c.sendLimit = -1;
    recvNothing(c, T0);
    assert.equal(c.pollAt(), undefined, 'a held SYN is no reason to wake');
    recvNothing(c, T0 + 5 * 1_000_000);
    assert.equal(c.state, TcpState.SynSent);
    c.sendLimit = 0;
    recvOne(c, T0 + 6 * 1_000_000, { flags: SYN, seq: LOCAL_ISS });
  });

  test('the FIN is held while sendLimit <= its offset, and goes alone when released', () => {
    const fx = established();
    const c = fx.conn;
    c.sendLimit = 100;
    c.write(bytes(100));
    c.close();
    recvOne(c, fx.now, { flags: ACK | PSH, seq: fx.snd(0), len: 100 });
    assert.equal(c.state, TcpState.Established, 'no FIN sent yet');
    recvNothing(c, fx.now + 1 * MS);
    c.sendLimit = 101;
    recvOne(c, fx.now + 2 * MS, { flags: FIN | ACK, seq: fx.snd(100), len: 0 });
    assert.equal(c.state, TcpState.FinWait1);
  });

  test('sendLimit releases in steps: each step sends exactly the newly allowed bytes', () => {
    const fx = established({ config: { noDelay: true } });
    const c = fx.conn;
    c.sendLimit = 0;
    c.write(bytes(300));
    c.sendLimit = 300;
    recvOne(c, fx.now, { seq: fx.snd(0), payload: bytes(300) });
    c.write(bytes(200, 300));
    recvNothing(c, fx.now);
    send(c, fx.now + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(300), flags: ACK });
    recvNothing(c, fx.now + 10 * MS);
    c.sendLimit = 500;
    recvOne(c, fx.now + 10 * MS, { seq: fx.snd(300), payload: bytes(200, 300) });
  });
});
