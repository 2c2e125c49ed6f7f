/**
 * ICMP errors about our TCP segments, as packet traces: an error acts on a connection only when
 * the sequence number it quotes lies in SND.UNA..SND.NXT (RFC 5927 4.1; RFC 8201 4; Linux's
 * tcp_v4_err/tcp_v6_err), so knowing a 4-tuple is not enough to shrink a connection's MSS,
 * trigger a retransmission burst or end a handshake. Too-big reports of MTUs no path has are
 * ignored (IPv6 below 1280, IPv4 below 68) and IPv4 ones are never taken below 552.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TcpState } from '../../src/tcp/state.ts';
import {
  ICMP_DEST_UNREACHABLE,
  ICMP_FRAG_NEEDED_CODE,
  ICMP_HOST_UNREACHABLE_CODE,
  ICMP_PORT_UNREACHABLE_CODE,
  ICMP_TIME_EXCEEDED,
} from '../../src/wire/icmpv4.ts';
import {
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PORT_UNREACHABLE_CODE,
  icmpv6Message,
} from '../../src/wire/icmpv6.ts';
import { IPPROTO_TCP } from '../../src/wire/ipv4.ts';
import { TCP_ACK, TCP_RST, TCP_SYN, type TcpSegment, tcpSegment } from '../../src/wire/tcp.ts';
import {
  type Established,
  established,
  eth,
  icmpv4Packet,
  icmpv6Packet,
  ipv4Packet,
  ipv6Packet,
  PEER4,
  PEER6,
  pattern,
  peerSegment,
  quoteOf,
  STACK4,
  STACK6,
  Trace,
  tcpBytes,
} from './trace.ts';

const ROUTER4 = 0xc6_12_00_fe; // 198.18.0.254
const ROUTER6 = Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe]);

/** A too-big from a router quoting a segment with `seq` of `e`'s connection. */
function tooBig(e: Pick<Established, 'v4' | 'c'>, seq: number, mtu: number): Uint8Array {
  const q = quoteOf({ srcPort: e.c.localPort, dstPort: e.c.remotePort, seq }, e.v4);
  return eth(
    e.v4
      ? icmpv4Packet({ type: ICMP_DEST_UNREACHABLE, code: ICMP_FRAG_NEEDED_CODE, mtu, data: q }, ROUTER4)
      : icmpv6Packet(icmpv6Message(ICMPV6_PACKET_TOO_BIG, { mtu, data: q }), ROUTER6),
  );
}

/** The application writes `n` bytes; returns the segments the stack sends at once. */
function write(e: Established, n: number): TcpSegment[] {
  e.c.tcp.write(pattern(n));
  e.t.stack.touch(e.c);
  e.t.advance(0);
  return e.t.recvTcp();
}

/** The peer acknowledges everything sent so far; returns what the stack sends then. */
function ackAll(e: Established, flight: TcpSegment[]): TcpSegment[] {
  const last = flight.at(-1)!;
  e.t.send(peerSegment(e, { ack: (last.seq + last.payload.length) >>> 0 }), 1000);
  return e.t.recvTcp();
}

const sizes = (segs: TcpSegment[]) => [...new Set(segs.map((s) => s.payload.length))];

for (const v4 of [true, false]) {
  const family = v4 ? 'IPv4' : 'IPv6';
  const mss = v4 ? 1460 : 1440;

  describe(`${family}: ICMP too-big must quote a sequence number in flight`, () => {
    test('quoting a number outside SND.UNA..SND.NXT is counted and dropped: no burst, the MSS stays', () => {
      const e = established(v4);
      const flight = write(e, 100_000);
      assert.equal(flight.length, 10, 'initial window');
      assert.deepEqual(sizes(flight), [mss]);
      const una = flight[0].seq;
      const nxt = (flight.at(-1)!.seq + mss) >>> 0;
      const forged = [una - 1, nxt + 1, una + 0x8000_0000, una - 100_000, 0x1234_5678].map((s) => s >>> 0);
      for (const seq of forged) e.t.send(tooBig(e, seq, v4 ? 576 : 1280));
      e.t.recvNothing('no retransmission burst');
      assert.equal(e.t.stack.counters.icmpOutOfWindow, forged.length);
      assert.equal(e.t.stack.counters.icmpErrorsIn, forged.length);
      // The next flight still uses full-sized segments.
      const next = ackAll(e, flight);
      assert.ok(next.length > 0);
      assert.deepEqual(sizes(next), [mss], 'the MSS did not move');
    });

    test('quoting a segment in flight (SND.UNA or SND.NXT included) shrinks the MSS and resends at once', () => {
      for (const which of ['una', 'middle', 'nxt'] as const) {
        const e = established(v4);
        const flight = write(e, 100_000);
        const una = flight[0].seq;
        const seq =
          which === 'una' ? una : which === 'middle' ? flight[4].seq : (flight.at(-1)!.seq + mss) >>> 0;
        const mtu = v4 ? 1000 : 1280;
        e.t.send(tooBig(e, seq, mtu));
        const resent = e.t.recvTcp();
        const small = mtu - (v4 ? 40 : 60);
        assert.ok(resent.length > 0, `${which}: the flight is resent at once`);
        assert.equal(resent[0].seq, una, `${which}: from SND.UNA`);
        assert.deepEqual(sizes(resent), [small], `${which}: in ${small}-byte segments`);
        assert.equal(e.t.stack.counters.icmpOutOfWindow, 0);
      }
    });

    test('an unknown 4-tuple or an unreadable quote is counted as unmatched', () => {
      const e = established(v4);
      write(e, 10_000);
      e.t.send(tooBig({ v4, c: { ...e.c, localPort: 81 } as typeof e.c }, 1, 1280));
      const short = quoteOf({ srcPort: 80, dstPort: 40000, seq: 1 }, v4).subarray(0, v4 ? 24 : 44);
      e.t.send(
        eth(
          v4
            ? icmpv4Packet({
                type: ICMP_DEST_UNREACHABLE,
                code: ICMP_FRAG_NEEDED_CODE,
                mtu: 600,
                data: short,
              })
            : icmpv6Packet(icmpv6Message(ICMPV6_PACKET_TOO_BIG, { mtu: 1280, data: short })),
        ),
      );
      e.t.recvNothing();
      assert.equal(e.t.stack.counters.icmpUnmatched, 2);
    });
  });
}

describe('implausible MTUs', () => {
  test('IPv4: below 68 is ignored; 68 to 551 is taken as 552 (MSS 512, not 88)', () => {
    const e = established(true);
    const flight = write(e, 100_000);
    for (const mtu of [0, 20, 67]) e.t.send(tooBig(e, flight[0].seq, mtu));
    e.t.recvNothing('no burst for an impossible MTU');
    assert.equal(e.t.stack.counters.icmpBadMtu, 3);
    e.t.send(tooBig(e, flight[0].seq, 128));
    const resent = e.t.recvTcp();
    assert.deepEqual(sizes(resent), [512]);
  });

  test('IPv6: below the minimum MTU, 1280, is discarded (RFC 8201 4)', () => {
    const e = established(false);
    const flight = write(e, 100_000);
    for (const mtu of [0, 576, 1000, 1279]) e.t.send(tooBig(e, flight[0].seq, mtu));
    e.t.recvNothing();
    assert.equal(e.t.stack.counters.icmpBadMtu, 4);
    assert.deepEqual(sizes(ackAll(e, flight)), [1440]);
  });

  test('a report at or above the current MTU changes nothing (RFC 8201 4: never increase)', () => {
    const e = established(true);
    const flight = write(e, 100_000);
    e.t.send(tooBig(e, flight[0].seq, 1500));
    e.t.send(tooBig(e, flight[0].seq, 9000));
    e.t.recvNothing();
    assert.deepEqual(sizes(ackAll(e, flight)), [1460]);
  });
});

describe('other ICMP errors: the same check, then soft once established, fatal to a handshake', () => {
  /** The stack connects to the peer's port 81; returns the SYN it sends. */
  function connecting(v4: boolean) {
    const t = new Trace();
    const c = t.stack.connect(v4 ? PEER4 : PEER6, 81, t.now);
    t.advance(0);
    const [syn] = t.recvTcp();
    assert.equal(syn.flags, TCP_SYN);
    return { t, c, syn, v4 };
  }

  function unreachable(v4: boolean, seq: number, lport: number, code: 'port' | 'host'): Uint8Array {
    const q = quoteOf({ srcPort: lport, dstPort: 81, seq }, v4, 60);
    if (v4)
      return eth(
        icmpv4Packet({
          type: ICMP_DEST_UNREACHABLE,
          code: code === 'port' ? ICMP_PORT_UNREACHABLE_CODE : ICMP_HOST_UNREACHABLE_CODE,
          data: q,
        }),
      );
    return eth(
      icmpv6Packet(
        icmpv6Message(ICMPV6_DEST_UNREACHABLE, {
          code: code === 'port' ? ICMPV6_PORT_UNREACHABLE_CODE : 3,
          data: q,
        }),
      ),
    );
  }

  for (const v4 of [true, false]) {
    const family = v4 ? 'IPv4' : 'IPv6';
    test(`${family}: port unreachable ends a connect only when it quotes the SYN (ISS): ECONNREFUSED`, () => {
      const { t, c, syn } = connecting(v4);
      for (const seq of [syn.seq + 2, syn.seq - 1, syn.seq + 0x4000_0000].map((s) => s >>> 0))
        t.send(unreachable(v4, seq, c.localPort, 'port'));
      assert.equal(c.tcp.state, TcpState.SynSent, 'a forged unreachable is ignored');
      assert.equal(t.stack.counters.icmpOutOfWindow, 3);
      t.send(unreachable(v4, syn.seq, c.localPort, 'port'));
      assert.equal(c.tcp.state, TcpState.Closed);
      assert.equal(c.tcp.error, 'ECONNREFUSED');
      assert.equal(t.stack.connectionCount, 0);
      t.recvNothing('no RST, no retransmitted SYN');
    });

    test(`${family}: host unreachable during the connect: EHOSTUNREACH`, () => {
      const { t, c, syn } = connecting(v4);
      t.send(unreachable(v4, syn.seq, c.localPort, 'host'));
      assert.equal(c.tcp.error, 'EHOSTUNREACH');
    });
  }

  test('IPv4 time exceeded quoting the SYN ends the connect too (Linux: EHOSTUNREACH)', () => {
    const { t, c, syn } = connecting(true);
    const q = quoteOf({ srcPort: c.localPort, dstPort: 81, seq: syn.seq }, true, 60);
    t.send(eth(icmpv4Packet({ type: ICMP_TIME_EXCEEDED, code: 0, data: q }, ROUTER4)));
    assert.equal(c.tcp.state, TcpState.Closed);
    assert.equal(c.tcp.error, 'EHOSTUNREACH');
  });

  test('established: a valid unreachable is a soft error, a forged one nothing', () => {
    const e = established(true);
    const flight = write(e, 5000);
    const q = (seq: number) => quoteOf({ srcPort: 80, dstPort: 40000, seq }, true);
    e.t.send(
      eth(
        icmpv4Packet({
          type: ICMP_DEST_UNREACHABLE,
          code: ICMP_HOST_UNREACHABLE_CODE,
          data: q(flight[0].seq - 5),
        }),
      ),
    );
    assert.equal(e.t.stack.counters.icmpOutOfWindow, 1);
    e.t.send(
      eth(
        icmpv4Packet({
          type: ICMP_DEST_UNREACHABLE,
          code: ICMP_HOST_UNREACHABLE_CODE,
          data: q(flight[0].seq),
        }),
      ),
    );
    assert.equal(e.c.tcp.state, TcpState.Established, 'RFC 1122 4.2.3.9: soft');
    assert.equal(e.c.tcp.snapshot(e.t.now).softError, 'EHOSTUNREACH');
    e.t.recvNothing();
  });

  test('a half-open connection goes, silently, on a valid error quoting its SYN-ACK; not on a forged one', () => {
    for (const v4 of [true, false]) {
      const t = new Trace();
      t.stack.listen(80, { onAccept: () => {} });
      const peer = v4 ? PEER4 : PEER6;
      const local = v4 ? STACK4 : STACK6;
      const syn = tcpBytes(
        tcpSegment({ srcPort: 40000, dstPort: 80, seq: 5, flags: TCP_SYN, window: 65535 }),
        peer,
        local,
      );
      t.send(eth(v4 ? ipv4Packet(syn) : ipv6Packet(IPPROTO_TCP, syn)));
      const [synAck] = t.recvTcp();
      assert.equal(synAck.flags, TCP_SYN | TCP_ACK);
      const err = (seq: number) => {
        const q = quoteOf({ srcPort: 80, dstPort: 40000, seq }, v4, 60);
        return eth(
          v4
            ? icmpv4Packet({ type: ICMP_DEST_UNREACHABLE, code: ICMP_HOST_UNREACHABLE_CODE, data: q })
            : icmpv6Packet(icmpv6Message(ICMPV6_DEST_UNREACHABLE, { code: 3, data: q })),
        );
      };
      t.send(err((synAck.seq + 1000) >>> 0));
      assert.equal(t.stack.connectionCount, 1, 'a forged error leaves it');
      t.send(err(synAck.seq));
      assert.equal(t.stack.connectionCount, 0, 'a valid one drops it');
      const out = t.recvTcp();
      assert.ok(!out.some((s) => s.flags & TCP_RST), 'no RST');
    }
  });
});
