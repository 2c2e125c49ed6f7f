/**
 * RFC 8200 4.2 option actions, as packet traces: a SYN to a listening port carries one
 * unrecognised option in a Destination Options (or Hop-by-Hop) header, and what the stack does
 * depends on the option type's two high-order bits: 00 skip (a SYN-ACK), 01 drop, 10 drop and
 * answer a Parameter Problem code 2 pointing at the option, 11 the same unless the destination
 * was multicast. Each outcome is counted.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ipFromString } from '../../src/stack/ip.ts';
import { type Ipv6Addr, ipv6Equal, ipv6MulticastMac } from '../../src/wire/address.ts';
import { pseudoHeaderSumV6 } from '../../src/wire/checksum.ts';
import {
  emitIcmpv6,
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PARAMETER_PROBLEM,
  icmpv6Length,
  icmpv6Message,
} from '../../src/wire/icmpv6.ts';
import { IPPROTO_ICMPV6, IPPROTO_TCP } from '../../src/wire/ipv4.ts';
import { IPPROTO_DSTOPTS, IPPROTO_HOPOPTS } from '../../src/wire/ipv6.ts';
import { TCP_ACK, TCP_SYN, tcpSegment } from '../../src/wire/tcp.ts';
import { eth, ipv6Packet, optionsHeader, PEER6, STACK6, Trace, tcpBytes } from './trace.ts';

const ALL_NODES = ipFromString('ff02::1') as Ipv6Addr;

function listening(): Trace {
  const t = new Trace();
  t.stack.listen(80, { onAccept: () => {} });
  return t;
}

/** A SYN to port 80 behind a header of `kind` holding option `type` (2 bytes of data). */
function synWith(kind: number, type: number, srcPort = 40000): Uint8Array {
  const syn = tcpBytes(
    tcpSegment({ srcPort, dstPort: 80, seq: 1, flags: TCP_SYN, window: 65535 }),
    PEER6,
    STACK6,
  );
  return ipv6Packet(IPPROTO_TCP, syn, [[kind, optionsHeader([type, 2, 0xab, 0xcd])]]);
}

/** An ICMPv6 message (any type) from the peer to `dst` behind a Destination Options header with `type`. */
function icmpWith(type: number, m: ReturnType<typeof icmpv6Message>, dst: Ipv6Addr = STACK6): Uint8Array {
  const n = icmpv6Length(m);
  const b = new Uint8Array(n);
  emitIcmpv6(m, b, 0, pseudoHeaderSumV6(PEER6, dst, IPPROTO_ICMPV6, n));
  return ipv6Packet(IPPROTO_ICMPV6, b, [[IPPROTO_DSTOPTS, optionsHeader([type, 2, 0, 0])]], { dst });
}

describe('RFC 8200 4.2: unrecognised options in a Destination Options header', () => {
  test('00: skipped, the SYN is answered', () => {
    const t = listening();
    t.send(eth(synWith(IPPROTO_DSTOPTS, 0x1e)));
    const [synAck] = t.recvTcp();
    assert.equal(synAck?.flags, TCP_SYN | TCP_ACK);
    assert.equal(t.stack.counters.optionsSkipped, 1);
  });

  test('01: the packet is discarded silently, the SYN never reaches TCP', () => {
    const t = listening();
    t.send(eth(synWith(IPPROTO_DSTOPTS, 0x5e)));
    t.recvNothing('no SYN-ACK, no ICMP');
    assert.equal(t.stack.counters.optionsDiscarded, 1);
    assert.equal(t.stack.counters.tcpIn, 0);
    assert.equal(t.stack.connectionCount, 0);
  });

  for (const type of [0x9e, 0xc9]) {
    test(`${type >> 6 === 2 ? '10' : '11'} to a unicast address: discarded, a Parameter Problem code 2 points at the option`, () => {
      const t = listening();
      const pkt = synWith(IPPROTO_DSTOPTS, type);
      t.send(eth(pkt));
      const out = t.recv();
      assert.equal(out.length, 1, 'one Parameter Problem, no SYN-ACK');
      const f = out[0];
      assert.ok(f.ipv6 && f.icmpv6);
      assert.ok(ipv6Equal(f.ipv6.src, STACK6) && ipv6Equal(f.ipv6.dst, PEER6));
      assert.equal(f.icmpv6.type, ICMPV6_PARAMETER_PROBLEM);
      assert.equal(f.icmpv6.code, 2);
      assert.equal(f.icmpv6.pointer, 42, 'the option type byte: 40 + 2');
      assert.deepEqual(f.icmpv6.data, pkt, 'the whole invoking packet is quoted');
      assert.equal(t.stack.counters.optionsRejected, 1);
      assert.equal(t.stack.counters.icmpErrorsSent, 1);
      assert.equal(t.stack.counters.tcpIn, 0);
    });
  }

  test('11 to a multicast address: discarded silently; 10 to multicast: answered from our unicast address', () => {
    const t = new Trace();
    const echo = icmpv6Message(ICMPV6_ECHO_REQUEST, { ident: 1, seqNo: 1 });
    t.send(eth(icmpWith(0xc9, echo, ALL_NODES), ipv6MulticastMac(ALL_NODES)));
    t.recvNothing();
    assert.equal(t.stack.counters.optionsDiscarded, 1);
    t.send(eth(icmpWith(0x9e, echo, ALL_NODES), ipv6MulticastMac(ALL_NODES)));
    const [f] = t.recv();
    assert.equal(f?.icmpv6?.type, ICMPV6_PARAMETER_PROBLEM);
    assert.ok(f.ipv6 && ipv6Equal(f.ipv6.src, STACK6), 'RFC 4443 2.2: a unicast source');
    assert.equal(t.stack.counters.optionsRejected, 1);
  });

  test('a later option is pointed at exactly (offset in the packet)', () => {
    const t = listening();
    const syn = tcpBytes(tcpSegment({ srcPort: 40000, dstPort: 80, seq: 1, flags: TCP_SYN }), PEER6, STACK6);
    // Pad1, PadN(1), an unknown 00 option, then the 10 one: 40 + 2 + 1 + 3 + 4 = 50.
    const opts = optionsHeader([0, 1, 1, 0, 0x1e, 2, 0, 0, 0x9e, 0]);
    t.send(eth(ipv6Packet(IPPROTO_TCP, syn, [[IPPROTO_DSTOPTS, opts]])));
    const [f] = t.recv();
    assert.equal(f?.icmpv6?.pointer, 50);
    assert.equal(t.stack.counters.optionsSkipped, 1);
  });

  test('no Parameter Problem about an ICMPv6 error (RFC 4443 2.4(e.1)), nor to a multicast source', () => {
    const t = new Trace();
    const unreach = icmpv6Message(ICMPV6_DEST_UNREACHABLE, { code: 4, data: new Uint8Array(48) });
    t.send(eth(icmpWith(0x9e, unreach)));
    const mcast = ipFromString('ff02::2') as Ipv6Addr;
    const syn = tcpBytes(tcpSegment({ srcPort: 1, dstPort: 80, seq: 1, flags: TCP_SYN }), mcast, STACK6);
    t.send(eth(ipv6Packet(IPPROTO_TCP, syn, [[IPPROTO_DSTOPTS, optionsHeader([0x9e, 0])]], { src: mcast })));
    t.recvNothing();
    assert.equal(t.stack.counters.optionsRejected, 2);
    assert.equal(t.stack.counters.icmpErrorsSent, 0);
  });

  test('an option running past its header: malformed, dropped', () => {
    const t = listening();
    const syn = tcpBytes(tcpSegment({ srcPort: 40000, dstPort: 80, seq: 1, flags: TCP_SYN }), PEER6, STACK6);
    const opts = optionsHeader([0x1e, 2, 0, 0]);
    opts[3] = 9; // length 9 in an 8-byte header
    t.send(eth(ipv6Packet(IPPROTO_TCP, syn, [[IPPROTO_DSTOPTS, opts]])));
    t.recvNothing();
    assert.equal(t.stack.counters.malformed, 1);
  });

  test('Parameter Problems are rate-limited: a burst of 50, then 1000 a second', () => {
    const t = listening();
    const frames = Array.from({ length: 200 }, (_, i) => eth(synWith(IPPROTO_DSTOPTS, 0x9e, 30000 + i)));
    t.send(frames);
    assert.equal(t.recv().length, 50);
    assert.equal(t.stack.counters.icmpErrorsRateLimited, 150);
    t.send(frames.slice(0, 20), 10_000); // 10 ms: 10 tokens
    assert.equal(t.recv().length, 10);
    assert.equal(t.stack.counters.optionsRejected, 220);
  });
});

describe('RFC 8200 4.2: the same in a Hop-by-Hop header', () => {
  test('01 discards, 10 answers, 00 and Router Alert pass', () => {
    const t = listening();
    t.send(eth(synWith(IPPROTO_HOPOPTS, 0x7f)));
    t.recvNothing();
    assert.equal(t.stack.counters.optionsDiscarded, 1);
    t.send(eth(synWith(IPPROTO_HOPOPTS, 0x8f)));
    const [pp] = t.recv();
    assert.equal(pp?.icmpv6?.type, ICMPV6_PARAMETER_PROBLEM);
    assert.equal(pp.icmpv6.pointer, 42);
    t.send(eth(synWith(IPPROTO_HOPOPTS, 0x05, 40001)));
    t.send(eth(synWith(IPPROTO_HOPOPTS, 0x3f, 40002)));
    assert.equal(t.recvTcp().length, 2, 'two SYN-ACKs');
    assert.equal(t.stack.counters.optionsSkipped, 1, 'Router Alert is known, 0x3f skipped');
  });
});
