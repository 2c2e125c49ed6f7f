/**
 * ESTABLISHED, traced segment by segment: the acceptability rules (RFC 9293 3.10.7.4, RFC 5961),
 * PAWS (RFC 7323 5), acknowledgement policy (RFC 5681 4.2, RFC 2018), the receive window
 * (RFC 9293 3.8.6.2.2), sequence wrap and ICMP-driven MSS reduction.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TcpConnection } from '../../src/tcp/connection.ts';
import { TcpState } from '../../src/tcp/state.ts';
import {
  ACK,
  bytes,
  established,
  LOCAL_PORT,
  MS,
  nextWake,
  PEER_TS,
  PSH,
  REMOTE_PORT,
  RST,
  recv,
  recvNothing,
  recvOne,
  recvSegs,
  rngOf,
  SYN,
  send,
  shuttle,
  T0,
} from './fixtures.ts';

describe('sequence acceptability (RFC 9293 3.10.7.4)', () => {
  // A 10000-byte receive buffer: the window is exactly [RCV.NXT, RCV.NXT + 10000).
  const small = () => established({ config: { recvBufferSize: 10_000 } });

  test('data beyond the window: an ACK <SEQ=SND.NXT><ACK=RCV.NXT>, the data dropped', () => {
    const fx = small();
    send(fx.conn, fx.now, { seq: fx.rcv(10_000), ack: fx.snd(0), flags: ACK, payload: bytes(10) });
    recvOne(fx.conn, fx.now, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(0), window: 10_000 });
    assert.equal(fx.conn.readable, 0);
    // Its last byte inside the window: acceptable (held out of order, duplicate ACK).
    send(fx.conn, fx.now, { seq: fx.rcv(9_995), ack: fx.snd(0), flags: ACK, payload: bytes(5, 9_995) });
    // The right edge never moves left (RFC 9293 3.8.6.2.2): out-of-order bytes do not shrink it.
    recvOne(fx.conn, fx.now, { flags: ACK, ack: fx.rcv(0), window: 10_000 });
  });

  test('an old duplicate segment is re-acknowledged and not delivered twice', () => {
    const fx = small();
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(100) });
    assert.deepEqual(fx.conn.read(), bytes(100));
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(50) });
    recvOne(fx.conn, fx.now, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(100) });
    assert.equal(fx.conn.readable, 0);
    // Overlapping old and new: only the new part is taken.
    send(fx.conn, fx.now, { seq: fx.rcv(50), ack: fx.snd(0), flags: ACK, payload: bytes(100, 50) });
    assert.deepEqual(fx.conn.read(), bytes(50, 100));
  });

  test('an out-of-window RST is dropped in silence', () => {
    const fx = small();
    for (const off of [10_000, 20_000, -1, -5000]) {
      send(fx.conn, fx.now, { seq: fx.rcv(off), flags: RST });
      recvNothing(fx.conn, fx.now);
      assert.equal(fx.conn.state, TcpState.Established);
    }
  });

  test('an in-window RST with the wrong seq draws a challenge ACK; the connection survives (RFC 5961 3.2)', () => {
    const fx = small();
    send(fx.conn, fx.now, { seq: fx.rcv(1), flags: RST });
    recvOne(fx.conn, fx.now, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(0) });
    assert.equal(fx.conn.state, TcpState.Established);
    assert.equal(fx.conn.error, undefined);
    fx.conn.write(bytes(5));
    recvOne(fx.conn, fx.now, { flags: ACK | PSH, seq: fx.snd(0), len: 5 });
  });

  test('a RST at exactly RCV.NXT resets: CLOSED, ECONNRESET, nothing sent, nothing more accepted', () => {
    const fx = small();
    fx.conn.write(bytes(100));
    recv(fx.conn, fx.now);
    send(fx.conn, fx.now, { seq: fx.rcv(0), flags: RST });
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, 'ECONNRESET');
    recvNothing(fx.conn, fx.now + 10_000 * MS);
    assert.equal(fx.conn.pollAt(), undefined);
    assert.equal(fx.conn.write(bytes(1)), 0);
  });

  test('a SYN in ESTABLISHED draws a challenge ACK and is otherwise ignored (RFC 5961 4.2)', () => {
    const fx = small();
    send(fx.conn, fx.now, { seq: fx.rcv(10), flags: SYN, mss: 1460 });
    recvOne(fx.conn, fx.now, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(0) });
    assert.equal(fx.conn.state, TcpState.Established);
    assert.equal(fx.conn.error, undefined);
  });

  test('challenge ACKs are rate-limited: one per 500 ms, RST and SYN alike (RFC 5961 7)', () => {
    const fx = small();
    const t = fx.now;
    send(fx.conn, t, { seq: fx.rcv(1), flags: RST });
    recvOne(fx.conn, t, { flags: ACK, ack: fx.rcv(0) });
    send(fx.conn, t + 100 * MS, { seq: fx.rcv(2), flags: RST });
    recvNothing(fx.conn, t + 100 * MS);
    send(fx.conn, t + 499 * MS, { seq: fx.rcv(3), flags: SYN });
    recvNothing(fx.conn, t + 499 * MS);
    send(fx.conn, t + 500 * MS, { seq: fx.rcv(4), flags: RST });
    recvOne(fx.conn, t + 500 * MS, { flags: ACK, ack: fx.rcv(0) });
    assert.equal(fx.conn.state, TcpState.Established);
  });

  test('an ACK of data never sent: an ACK in reply, the segment (data included) dropped', () => {
    const fx = small();
    fx.conn.write(bytes(100));
    recv(fx.conn, fx.now);
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(101), flags: ACK, payload: bytes(10) });
    recvOne(fx.conn, fx.now, { flags: ACK, seq: fx.snd(100), ack: fx.rcv(0) });
    assert.equal(fx.conn.readable, 0);
    assert.equal(fx.conn.acknowledged, 0);
    // SEG.ACK = SND.NXT is fine.
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(100), flags: ACK, payload: bytes(10) });
    assert.equal(fx.conn.readable, 10);
    assert.equal(fx.conn.acknowledged, 100);
  });

  test('an ACK below SND.UNA - MAX.SND.WND draws a challenge ACK and is dropped (RFC 5961 5.2)', () => {
    // The peer's window is 2920 bytes all along, so MAX.SND.WND = 2920.
    const fx = established({ peer: { window: 2920 } });
    fx.conn.write(bytes(2920));
    assert.equal(recv(fx.conn, fx.now).length, 2);
    send(fx.conn, fx.now + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(2920), flags: ACK, window: 2920 });
    fx.conn.write(bytes(2920, 2920));
    assert.equal(recv(fx.conn, fx.now + 10 * MS).length, 2);
    const t = fx.now + 20 * MS;
    send(fx.conn, t, { seq: fx.rcv(0), ack: fx.snd(5840), flags: ACK, window: 2920 });
    recvNothing(fx.conn, t);
    // SND.UNA = 5840: acceptable ACKs are [2920, 5840]. 2919 is too old.
    send(fx.conn, t, { seq: fx.rcv(0), ack: fx.snd(2919), flags: ACK, window: 2920, payload: bytes(10) });
    recvOne(fx.conn, t, { flags: ACK, seq: fx.snd(5840), ack: fx.rcv(0) });
    assert.equal(fx.conn.readable, 0);
    // 2920 is old but acceptable: the data is taken.
    send(fx.conn, t, { seq: fx.rcv(0), ack: fx.snd(2920), flags: ACK, window: 2920, payload: bytes(10) });
    assert.equal(fx.conn.readable, 10);
    assert.equal(fx.conn.acknowledged, 5840);
  });

  test('a segment without ACK carrying data is dropped (RFC 9293 3.10.7.4 fifth: "if the ACK bit is off, drop")', () => {
    const fx = small();
    send(fx.conn, fx.now, { seq: fx.rcv(0), flags: PSH, payload: bytes(10) });
    assert.equal(fx.conn.readable, 0);
    recvNothing(fx.conn, fx.now + 100 * MS);
  });

  test('RCV.WND is what we advertised: without window scaling a 4 MiB buffer offers 65535, and data past it is refused', () => {
    const fx = established({ config: { windowScale: false, recvBufferSize: 4 << 20 }, peer: { sack: true } });
    send(fx.conn, fx.now, { seq: fx.rcv(70_000), ack: fx.snd(0), flags: ACK, payload: bytes(10, 70_000) });
    // Unacceptable (RFC 9293 3.10.7.4): an ACK, and the bytes are not held (no SACK block for them).
    recvOne(fx.conn, fx.now, { flags: ACK, ack: fx.rcv(0), window: 65535, sackBlocks: undefined });
    // Just inside the advertised window: held out of order and reported.
    send(fx.conn, fx.now, { seq: fx.rcv(65_000), ack: fx.snd(0), flags: ACK, payload: bytes(10, 65_000) });
    recvOne(fx.conn, fx.now, { flags: ACK, ack: fx.rcv(0), sackBlocks: [fx.rcv(65_000), fx.rcv(65_010)] });
  });
});

describe('PAWS (RFC 7323 5)', () => {
  const withTs = () => established({ peer: { tsVal: PEER_TS } });

  test('a segment with an older TSval is dropped and draws an ACK echoing TS.Recent', () => {
    const fx = withTs();
    const t = fx.now + 5 * MS;
    // TS.Recent is the handshake ACK's TSval, PEER_TS + 10.
    send(fx.conn, t, {
      seq: fx.rcv(0),
      ack: fx.snd(0),
      flags: ACK,
      payload: bytes(100),
      tsVal: PEER_TS + 9,
      tsEcr: fx.ts(t),
    });
    recvOne(fx.conn, t, { flags: ACK, ack: fx.rcv(0), tsVal: fx.ts(t), tsEcr: PEER_TS + 10 });
    assert.equal(fx.conn.readable, 0);
    // The same bytes with a current TSval are taken.
    send(fx.conn, t, {
      seq: fx.rcv(0),
      ack: fx.snd(0),
      flags: ACK,
      payload: bytes(100),
      tsVal: PEER_TS + 15,
      tsEcr: fx.ts(t),
    });
    assert.equal(fx.conn.readable, 100);
  });

  test('TSvals compare modulo 2^32: a wrapped TSval is newer', () => {
    const fx = established({ peer: { tsVal: 0xffff_fff0 } });
    const t = fx.now;
    send(fx.conn, t, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(10), tsVal: 3, tsEcr: 0 });
    assert.equal(fx.conn.readable, 10);
    send(fx.conn, t, {
      seq: fx.rcv(10),
      ack: fx.snd(0),
      flags: ACK,
      payload: bytes(10, 10),
      tsVal: 0xffff_fffe,
      tsEcr: 0,
    });
    assert.equal(fx.conn.readable, 10, 'older than 3 across the wrap');
  });

  test('TS.Recent is taken only from a segment covering Last.ACK.sent (RFC 7323 4.3)', () => {
    const fx = withTs();
    const t = fx.now + 5 * MS;
    // Out of order (above Last.ACK.sent): its TSval must not become TS.Recent.
    send(fx.conn, t, {
      seq: fx.rcv(100),
      ack: fx.snd(0),
      flags: ACK,
      payload: bytes(100, 100),
      tsVal: PEER_TS + 100,
      tsEcr: 0,
    });
    recvOne(fx.conn, t, { flags: ACK, ack: fx.rcv(0), tsEcr: PEER_TS + 10 });
    // The segment filling the hole starts at Last.ACK.sent: its TSval is echoed.
    send(fx.conn, t, {
      seq: fx.rcv(0),
      ack: fx.snd(0),
      flags: ACK,
      payload: bytes(100),
      tsVal: PEER_TS + 50,
      tsEcr: 0,
    });
    recvOne(fx.conn, t, { flags: ACK, ack: fx.rcv(200), tsEcr: PEER_TS + 50 });
  });

  test('RSTs are exempt: an exact RST with an old TSval still resets', () => {
    const fx = withTs();
    send(fx.conn, fx.now, { seq: fx.rcv(0), flags: RST, tsVal: PEER_TS, tsEcr: 0 });
    assert.equal(fx.conn.state, TcpState.Closed);
    assert.equal(fx.conn.error, 'ECONNRESET');
  });
});

describe('acknowledgement policy (RFC 5681 4.2, RFC 2018)', () => {
  test('one segment: the ACK waits exactly delayedAckUs', () => {
    const fx = established();
    const t = fx.now;
    send(fx.conn, t, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK | PSH, payload: bytes(100) });
    recvNothing(fx.conn, t);
    assert.equal(fx.conn.pollAt(), t + 40 * MS);
    recvNothing(fx.conn, t + 40 * MS - 1);
    recvOne(fx.conn, t + 40 * MS, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(100) });
    recvNothing(fx.conn, t + 80 * MS);
  });

  test('data of our own piggybacks the ACK at once', () => {
    const fx = established();
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(100) });
    fx.conn.write(bytes(10));
    recvOne(fx.conn, fx.now, { flags: ACK | PSH, ack: fx.rcv(100), len: 10 });
    recvNothing(fx.conn, fx.now + 40 * MS);
  });

  test('two full-sized segments: an immediate ACK', () => {
    const fx = established();
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(1460) });
    recvNothing(fx.conn, fx.now);
    send(fx.conn, fx.now, { seq: fx.rcv(1460), ack: fx.snd(0), flags: ACK, payload: bytes(1460, 1460) });
    recvOne(fx.conn, fx.now, { flags: ACK, ack: fx.rcv(2920) });
  });

  test('two full-sized segments with timestamps (1448 bytes each): an immediate ACK', () => {
    const fx = established({ peer: { tsVal: PEER_TS } });
    const ts = { tsVal: PEER_TS + 10, tsEcr: 0 };
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(1448), ...ts });
    recvNothing(fx.conn, fx.now);
    send(fx.conn, fx.now, {
      seq: fx.rcv(1448),
      ack: fx.snd(0),
      flags: ACK,
      payload: bytes(1448, 1448),
      ...ts,
    });
    recvOne(fx.conn, fx.now, { flags: ACK, ack: fx.rcv(2896) });
  });

  test('out of order: an immediate duplicate ACK whose SACK blocks list the most recent first', () => {
    // The peer's sequence numbers wrap inside the trace (offset 1500 is 0x0000_0000 + 4).
    const fx = established({ peer: { sack: true, iss: 2 ** 32 - 1497 } });
    const t = fx.now;
    const seg = (off: number, n: number) =>
      send(fx.conn, t, { seq: fx.rcv(off), ack: fx.snd(0), flags: ACK, payload: bytes(n, off) });
    seg(1000, 100);
    recvOne(fx.conn, t, { flags: ACK, ack: fx.rcv(0), sackBlocks: [fx.rcv(1000), fx.rcv(1100)] });
    seg(2000, 100);
    recvOne(fx.conn, t, {
      ack: fx.rcv(0),
      sackBlocks: [fx.rcv(2000), fx.rcv(2100), fx.rcv(1000), fx.rcv(1100)],
    });
    seg(3000, 100);
    recvOne(fx.conn, t, {
      ack: fx.rcv(0),
      sackBlocks: [fx.rcv(3000), fx.rcv(3100), fx.rcv(2000), fx.rcv(2100), fx.rcv(1000), fx.rcv(1100)],
    });
    // Extending the oldest block makes it the most recent (RFC 2018 4: the block holding the
    // segment that triggered the ACK comes first).
    seg(1100, 100);
    recvOne(fx.conn, t, {
      ack: fx.rcv(0),
      sackBlocks: [fx.rcv(1000), fx.rcv(1200), fx.rcv(3000), fx.rcv(3100), fx.rcv(2000), fx.rcv(2100)],
    });
    // Filling the first hole: an immediate ACK up to the next hole, the other blocks still listed.
    seg(0, 1000);
    recvOne(fx.conn, t, {
      ack: fx.rcv(1200),
      sackBlocks: [fx.rcv(3000), fx.rcv(3100), fx.rcv(2000), fx.rcv(2100)],
    });
    seg(1200, 800);
    seg(2100, 900);
    recvSegs(fx.conn, t, [{ ack: fx.rcv(3100), sackBlocks: undefined }]);
    assert.deepEqual(fx.conn.read(), bytes(3100));
  });

  test('with timestamps at most 3 SACK blocks fit (RFC 2018 3)', () => {
    const fx = established({ peer: { sack: true, tsVal: PEER_TS } });
    for (const off of [1000, 2000, 3000, 4000])
      send(fx.conn, fx.now, {
        seq: fx.rcv(off),
        ack: fx.snd(0),
        flags: ACK,
        payload: bytes(10, off),
        tsVal: PEER_TS + 10,
        tsEcr: 0,
      });
    const acks = recv(fx.conn, fx.now);
    const last = acks[acks.length - 1];
    assert.deepEqual(last.sackBlocks, [
      fx.rcv(4000),
      fx.rcv(4010),
      fx.rcv(3000),
      fx.rcv(3010),
      fx.rcv(2000),
      fx.rcv(2010),
    ]);
  });

  test('filling a hole without SACK: an immediate cumulative ACK', () => {
    const fx = established();
    send(fx.conn, fx.now, { seq: fx.rcv(500), ack: fx.snd(0), flags: ACK, payload: bytes(500, 500) });
    recvOne(fx.conn, fx.now, { ack: fx.rcv(0), sackBlocks: undefined });
    send(fx.conn, fx.now, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(500) });
    recvOne(fx.conn, fx.now, { ack: fx.rcv(1000) });
    assert.deepEqual(fx.conn.read(), bytes(1000));
  });
});

describe('our receive window (RFC 9293 3.8.6.2.2)', () => {
  test('closes when the application does not read; a tiny read sends nothing; a real read reopens it', () => {
    const fx = established({ config: { recvBufferSize: 4096 } });
    const c = fx.conn;
    const t = fx.now;
    send(c, t, { seq: fx.rcv(0), ack: fx.snd(0), flags: ACK, payload: bytes(1460) });
    send(c, t, { seq: fx.rcv(1460), ack: fx.snd(0), flags: ACK, payload: bytes(1460, 1460) });
    recvOne(c, t, { ack: fx.rcv(2920), window: 4096 - 2920 });
    send(c, t, { seq: fx.rcv(2920), ack: fx.snd(0), flags: ACK, payload: bytes(1176, 2920) });
    recvOne(c, t + 40 * MS, { ack: fx.rcv(4096), window: 0 });
    // The peer's zero-window probe: one byte past the window, answered with the same ACK.
    send(c, t + 250 * MS, { seq: fx.rcv(4096), ack: fx.snd(0), flags: ACK, payload: bytes(1, 4096) });
    recvOne(c, t + 250 * MS, { ack: fx.rcv(4096), window: 0 });
    assert.equal(c.readable, 4096);
    // Receiver SWS avoidance: 100 bytes of room is no reason to speak.
    assert.equal(c.read(100)?.length, 100);
    recvNothing(c, t + 300 * MS);
    assert.equal(c.pollAt(), undefined);
    // 1600 bytes of room (>= one MSS): a window update at once.
    assert.equal(c.read(1500)?.length, 1500);
    recvOne(c, t + 300 * MS, { flags: ACK, seq: fx.snd(0), ack: fx.rcv(4096), window: 1600 });
    // And the peer may now fill it.
    send(c, t + 310 * MS, { seq: fx.rcv(4096), ack: fx.snd(0), flags: ACK, payload: bytes(1460, 4096) });
    assert.equal(c.readable, 4096 - 1600 + 1460);
  });

  test('never shrinks: the right edge stays put while data arrives and is not read', () => {
    const fx = established({ config: { recvBufferSize: 10_000 } });
    let t = fx.now;
    for (let off = 0; off < 10_000; off += 1000) {
      send(fx.conn, t, { seq: fx.rcv(off), ack: fx.snd(0), flags: ACK, payload: bytes(1000, off) });
      t += 40 * MS;
      for (const s of recv(fx.conn, t)) assert.equal(((s.ack - fx.rcv(0)) >>> 0) + s.window, 10_000);
    }
  });
});

describe('sequence wrap', () => {
  test('ISNs (and timestamp clocks) at 2^32 - 5 on both sides: 10 kB each way, byte-exact, then both close cleanly', () => {
    const isn = 2 ** 32 - 5;
    const a = TcpConnection.connect({
      localPort: REMOTE_PORT,
      remotePort: LOCAL_PORT,
      now: T0,
      rng: rngOf(isn),
      config: { recvBufferSize: 3000 },
    });
    const syn = recvOne(a, T0, { seq: isn, tsVal: isn });
    const b = TcpConnection.accept(syn, {
      localPort: LOCAL_PORT,
      remotePort: REMOTE_PORT,
      now: T0,
      rng: rngOf(isn),
      config: { recvBufferSize: 3000 },
    });
    const N = 10_000;
    const fromA = bytes(N, 0, 1);
    const fromB = bytes(N, 0, 2);
    let aw = 0;
    let bw = 0;
    const gotA: Uint8Array[] = [];
    const gotB: Uint8Array[] = [];
    let wrappedSeq = 0;
    let t = T0;
    for (let i = 0; i < 5000; i++) {
      aw += a.write(fromA.subarray(aw));
      bw += b.write(fromB.subarray(bw));
      if (aw === N) a.close();
      if (bw === N) b.close();
      shuttle(a, b, t, (_from, s) => {
        if (s.payload.length > 0 && s.seq > 0xffff_0000 && s.seq + s.payload.length > 2 ** 32) wrappedSeq++;
      });
      for (let d = a.read(); d; d = a.read()) gotA.push(d);
      for (let d = b.read(); d; d = b.read()) gotB.push(d);
      const w = nextWake(t, a, b);
      if (w === undefined) break;
      t = w;
    }
    assert.deepEqual(Buffer.concat(gotB), Buffer.from(fromA));
    assert.deepEqual(Buffer.concat(gotA), Buffer.from(fromB));
    assert.equal(wrappedSeq, 2, 'each side sent one segment straddling 2^32');
    assert.ok(a.eof && b.eof);
    assert.equal(a.state, TcpState.Closed);
    assert.equal(b.state, TcpState.Closed);
    assert.equal(a.error, undefined);
    assert.equal(b.error, undefined);
  });
});

describe('ICMP: reduceMss (RFC 1191, RFC 8201)', () => {
  test('in-flight data is resent at the new size at once, and later segments are no larger', () => {
    const fx = established({ config: { noDelay: true } });
    const c = fx.conn;
    c.write(bytes(4380));
    assert.deepEqual(
      recv(c, fx.now).map((s) => s.payload.length),
      [1460, 1460, 1460],
    );
    const t = fx.now + 5 * MS;
    c.reduceMss(500);
    const resent = recv(c, t);
    assert.deepEqual(
      resent.map((s) => [(s.seq - fx.snd(0)) >>> 0, s.payload.length]),
      [0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000].map((o) => [o, Math.min(500, 4380 - o)]),
    );
    for (const s of resent) assert.deepEqual(s.payload, bytes(s.payload.length, (s.seq - fx.snd(0)) >>> 0));
    // cwnd keeps its size in segments (10 x 500): 4380 + 1000 in flight fills it.
    c.write(bytes(1200, 4380));
    assert.deepEqual(
      recv(c, t).map((s) => s.payload.length),
      [500, 500],
    );
    send(c, t + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(5380), flags: ACK });
    recvOne(c, t + 10 * MS, { seq: fx.snd(5380), len: 200 });
    // A larger value never raises it again.
    c.reduceMss(1400);
    send(c, t + 10 * MS, { seq: fx.rcv(0), ack: fx.snd(5580), flags: ACK });
    c.write(bytes(1000, 5580));
    assert.deepEqual(
      recv(c, t + 10 * MS).map((s) => s.payload.length),
      [500, 500],
    );
  });

  test('with timestamps the 12 option bytes come out of the reduced MSS too', () => {
    const fx = established({ peer: { tsVal: PEER_TS }, config: { noDelay: true } });
    fx.conn.reduceMss(600);
    fx.conn.write(bytes(1000));
    assert.deepEqual(
      recv(fx.conn, fx.now).map((s) => s.payload.length),
      [588, 412],
    );
  });
});
