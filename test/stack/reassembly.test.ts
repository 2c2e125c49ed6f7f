/**
 * IP reassembly (RFC 1122 3.3.2, RFC 791 3.2, RFC 8200 4.5) as packet traces: TCP segments from
 * the peer arrive in fragments, in any order, and reach the connection byte-exact; and every
 * bound holds, each outcome counted: overlaps drop the datagram and what is still to come (RFC
 * 5722), exact duplicates only themselves, time runs out (30 s IPv4, 60 s IPv6) with a Time
 * Exceeded when fragment zero was in, the memory cap refuses, a datagram has at most 64
 * fragments and 65,535 bytes, atomic fragments are whole packets (RFC 6946). Then the
 * Reassembler alone against random fragmentations.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Reassembler, type ReassemblyCounters } from '../../src/stack/reassembly.ts';
import { ipv6Equal } from '../../src/wire/address.ts';
import { isWireError, type WireError } from '../../src/wire/error.ts';
import { ICMP_REASSEMBLY_TIME_EXCEEDED_CODE, ICMP_TIME_EXCEEDED } from '../../src/wire/icmpv4.ts';
import { ICMPV6_PARAMETER_PROBLEM, ICMPV6_TIME_EXCEEDED } from '../../src/wire/icmpv6.ts';
import { IPPROTO_TCP, parseIpv4 } from '../../src/wire/ipv4.ts';
import { IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, parseIpv6 } from '../../src/wire/ipv6.ts';
import { TCP_ACK, TCP_SYN, tcpSegment } from '../../src/wire/tcp.ts';
import {
  type Established,
  established,
  eth,
  fragmentV4,
  fragmentV6,
  ipv4Packet,
  ipv6Packet,
  optionsHeader,
  PEER4,
  PEER6,
  pattern,
  readAll,
  STACK4,
  STACK6,
  Trace,
  tcpBytes,
} from './trace.ts';

/** The TCP bytes of a data segment of `n` pattern bytes from the peer at its next sequence number. */
function dataSegment(e: Established, n: number, seed = 1): { l4: Uint8Array; data: Uint8Array } {
  const data = pattern(n, seed);
  const seg = tcpSegment({
    srcPort: 40000,
    dstPort: 80,
    seq: e.peerSeq,
    ack: (e.iss + 1) >>> 0,
    flags: TCP_ACK,
    window: 65535,
    payload: data,
  });
  return { l4: tcpBytes(seg, e.peer, e.v4 ? STACK4 : STACK6), data };
}

/** `l4` cut into fragments of `size` bytes of the peer's family, identification `ident`. */
function fragments(e: Established, l4: Uint8Array, size: number, ident: number): Uint8Array[] {
  return e.v4
    ? fragmentV4(l4, size, { ident }).map((p) => eth(p))
    : fragmentV6(IPPROTO_TCP, l4, size, ident).map((p) => eth(p));
}

const reorder = <T>(xs: T[], order: number[]) => order.map((i) => xs[i]);

function must<T>(x: T | WireError): T {
  if (isWireError(x)) assert.fail(x.toString());
  return x;
}

for (const v4 of [true, false]) {
  const family = v4 ? 'IPv4' : 'IPv6';
  const size = v4 ? 1480 : 1232;

  describe(`${family} reassembly`, () => {
    test('a segment in fragments, last first and shuffled, reaches the connection byte-exact', () => {
      const e = established(v4);
      const { l4, data } = dataSegment(e, 6000);
      const frags = fragments(e, l4, size, 0x4242);
      assert.equal(frags.length, v4 ? 5 : 5);
      e.t.send(reorder(frags, [4, 1, 3, 0, 2]));
      assert.deepEqual(readAll(e.c), data);
      const c = e.t.stack.counters;
      assert.equal(c.fragmentsIn, 5);
      assert.equal(c.reassembled, 1);
      assert.equal(c.fragmentsDropped, 0);
      assert.equal(e.t.stack.reassembler.size, 0);
      assert.equal(e.t.stack.reassembler.memory, 0);
      // The stack acknowledges the whole segment (delayed ACK: within 40 ms).
      e.t.advance(50_000);
      const acks = e.t.recvTcp();
      assert.equal(acks.at(-1)?.ack, (e.peerSeq + 6000) >>> 0);
    });

    test('an exact duplicate is dropped alone; the datagram completes', () => {
      const e = established(v4);
      const { l4, data } = dataSegment(e, 3000);
      const frags = fragments(e, l4, size, 7);
      e.t.send([frags[0], frags[0], ...frags.slice(1)]);
      assert.deepEqual(readAll(e.c), data);
      assert.equal(e.t.stack.counters.fragmentDuplicates, 1);
      assert.equal(e.t.stack.counters.reassembled, 1);
    });

    test('overlapping fragments drop the datagram and the fragments still to come (RFC 5722)', () => {
      const e = established(v4);
      const { l4, data } = dataSegment(e, 3000);
      const frags = fragments(e, l4, size, 9);
      // A fragment covering [8, 8 + size) overlaps the first: the datagram is dropped.
      const overlap = v4
        ? eth(ipv4Packet(l4.subarray(8, 8 + size), { ident: 9, fragmentOffset: 8, moreFragments: true }))
        : fragmentV6(IPPROTO_TCP, l4.subarray(0, 8 + size), 8, 9)
            .map((p) => eth(p))
            .find((_, i) => i === 1)!;
      e.t.send([frags[0], overlap]);
      assert.equal(e.t.stack.counters.reassemblyOverlaps, 1);
      // The rest of the original arrives, complete as far as it goes: still nothing.
      e.t.send(frags.slice(1));
      assert.equal(readAll(e.c).length, 0, 'nothing delivered');
      assert.equal(e.t.stack.counters.reassembled, 0);
      assert.equal(e.t.stack.counters.fragmentsDropped, 2 + (frags.length - 1));
      // The sender retransmits with a new identification: delivered.
      e.t.send(fragments(e, l4, size, 10));
      assert.deepEqual(readAll(e.c), data);
    });

    test('same place, different bytes: an overlap, not a duplicate', () => {
      const e = established(v4);
      const { l4 } = dataSegment(e, 3000);
      const frags = fragments(e, l4, size, 11);
      const forged = frags[1].slice();
      forged[forged.length - 1] ^= 0xff;
      e.t.send([frags[0], frags[1], forged, frags[2]]);
      assert.equal(e.t.stack.counters.reassemblyOverlaps, 1);
      assert.equal(readAll(e.c).length, 0);
    });

    test(`an incomplete datagram times out after ${v4 ? 30 : 60} s; a Time Exceeded (code 1) quotes fragment zero`, () => {
      const e = established(v4);
      const { l4 } = dataSegment(e, 3000);
      const frags = fragments(e, l4, size, 12);
      const start = e.t.now;
      e.t.send(frags[0]);
      const timeout = v4 ? 30_000_000 : 60_000_000;
      assert.equal(e.t.stack.reassembler.pollAt(), start + timeout);
      assert.ok((e.t.stack.pollAt() ?? Infinity) <= start + timeout);
      e.t.advance(timeout - 1);
      e.t.recv();
      assert.equal(e.t.stack.counters.reassemblyTimeouts, 0);
      e.t.advance(1);
      assert.equal(e.t.stack.counters.reassemblyTimeouts, 1);
      assert.equal(e.t.stack.reassembler.memory, 0);
      const icmp = e.t.recv().filter((f) => f.icmpv4 || f.icmpv6);
      assert.equal(icmp.length, 1);
      const f = icmp[0];
      if (v4) {
        assert.equal(f.icmpv4?.type, ICMP_TIME_EXCEEDED);
        assert.equal(f.icmpv4?.code, ICMP_REASSEMBLY_TIME_EXCEEDED_CODE);
        assert.equal(f.ipv4?.dst, PEER4);
        const q = f.icmpv4!.data;
        assert.deepEqual(q.subarray(0, 28), frags[0].subarray(14, 14 + 28), 'header and 8 data bytes');
      } else {
        assert.equal(f.icmpv6?.type, ICMPV6_TIME_EXCEEDED);
        assert.equal(f.icmpv6?.code, 1);
        assert.ok(f.ipv6 && ipv6Equal(f.ipv6.dst, PEER6));
        assert.deepEqual(f.icmpv6!.data.subarray(0, 100), frags[0].subarray(14, 114));
      }
      // The rest arrives after the timeout: a new datagram, never complete; nothing delivered.
      e.t.send(frags.slice(1));
      assert.equal(readAll(e.c).length, 0);
    });

    test('without fragment zero, a timeout sends nothing', () => {
      const e = established(v4);
      const { l4 } = dataSegment(e, 3000);
      e.t.send(fragments(e, l4, size, 13).slice(1));
      e.t.advance(61_000_000);
      assert.equal(e.t.stack.counters.reassemblyTimeouts, 1);
      assert.equal(e.t.recv().filter((f) => f.icmpv4 || f.icmpv6).length, 0);
      assert.equal(e.t.stack.counters.fragmentsDropped, 2);
    });

    test('the memory cap refuses fragments until timeouts free room', () => {
      const e = established(v4, { reassembly: { memoryLimit: 64 * 1024 } });
      const { l4, data } = dataSegment(e, 3000);
      // 100 first fragments of datagrams that never complete.
      for (let id = 100; id < 200; id++) e.t.send(fragments(e, l4, size, id)[0]);
      const c = e.t.stack.counters;
      assert.ok(c.reassemblyOverMemory > 0, 'refused some');
      assert.ok(e.t.stack.reassembler.memory <= 64 * 1024, `memory ${e.t.stack.reassembler.memory}`);
      assert.ok(e.t.stack.reassembler.size < 100);
      assert.equal(c.fragmentsIn, 100);
      // A datagram that needs room now cannot be reassembled...
      e.t.send(fragments(e, l4, size, 300));
      assert.equal(c.reassembled, 0);
      // ...and can once the others time out.
      e.t.advance(v4 ? 30_000_000 : 60_000_000);
      e.t.send(fragments(e, l4, size, 301));
      assert.deepEqual(readAll(e.c), data);
      assert.equal(c.reassembled, 1);
    });

    test('more than 64 fragments: the datagram is dropped', () => {
      const e = established(v4);
      const { l4 } = dataSegment(e, 560);
      const frags = fragments(e, l4, 8, 14);
      assert.equal(frags.length, 73);
      e.t.send(frags);
      assert.equal(e.t.stack.counters.reassemblyTooManyFragments, 1);
      assert.equal(e.t.stack.counters.reassembled, 0);
      assert.equal(readAll(e.c).length, 0);
    });

    test('inconsistent ends: a second last fragment ending elsewhere, or data past the end', () => {
      const e = established(v4);
      const { l4 } = dataSegment(e, 3000);
      const frags = fragments(e, l4, size, 15);
      const shortLast = v4
        ? eth(ipv4Packet(l4.subarray(size, size + 16), { ident: 15, fragmentOffset: size }))
        : fragmentV6(IPPROTO_TCP, l4.subarray(0, size + 16), size, 15).map((p) => eth(p))[1];
      e.t.send([frags.at(-1)!, shortLast]);
      assert.equal(e.t.stack.counters.reassemblyInvalid, 1);
      const e2 = established(v4);
      const frags2 = fragments(e2, l4, size, 16);
      const past = v4
        ? eth(ipv4Packet(new Uint8Array(64), { ident: 16, fragmentOffset: 4096, moreFragments: true }))
        : fragmentV6(IPPROTO_TCP, new Uint8Array(3 * 4096), 4096, 16).map((p) => eth(p))[1];
      e2.t.send([frags2.at(-1)!, past]);
      assert.equal(e2.t.stack.counters.reassemblyInvalid, 1);
    });

    test('ECN: fragments mixing Not-ECT and ECT are a datagram no sender makes (RFC 3168 5.3)', () => {
      const e = established(v4);
      const { l4 } = dataSegment(e, 3000);
      const ecn = (i: number) => (i === 0 ? 0 : 2);
      const frags = v4
        ? [0, 1, 2].map((i) =>
            eth(
              ipv4Packet(l4.subarray(i * size, Math.min(l4.length, (i + 1) * size)), {
                ident: 17,
                fragmentOffset: i * size,
                moreFragments: i < 2,
                ecn: ecn(i),
              }),
            ),
          )
        : [0, 1, 2].map((i) => eth(fragmentV6(IPPROTO_TCP, l4, size, 17, [], { trafficClass: ecn(i) })[i]));
      e.t.send(frags);
      assert.equal(e.t.stack.counters.reassemblyInvalid, 1);
      assert.equal(readAll(e.c).length, 0);
    });

    test('a reassembled datagram over 65,535 bytes is dropped', () => {
      const t = new Trace();
      const data = new Uint8Array(v4 ? 65515 : 65528);
      const frags = v4
        ? // IHL 6 (a 4-byte option): 24 + 65515 > 65535.
          fragmentV4(data, 1480, { ident: 18, options: Uint8Array.from([1, 1, 1, 0]) })
        : // A Destination Options header in the unfragmentable part: 8 + 65528 > 65535.
          fragmentV6(IPPROTO_TCP, data, 1448, 18, [[IPPROTO_DSTOPTS, optionsHeader([])]]);
      assert.ok(frags.length <= 64);
      t.send(frags.map((p) => eth(p)));
      assert.equal(t.stack.counters.reassemblyOversize, 1);
      assert.equal(t.stack.counters.reassembled, 0);
      assert.equal(t.stack.reassembler.memory, 0, 'nothing held');
      assert.equal(t.stack.reassembler.size, 0);
    });
  });
}

describe('family specifics', () => {
  test('IPv4: a fragment with more to come must carry a multiple of 8 bytes', () => {
    const t = new Trace();
    t.send(eth(ipv4Packet(new Uint8Array(12), { ident: 1, moreFragments: true })));
    t.send(eth(ipv4Packet(new Uint8Array(0), { ident: 2, moreFragments: true, fragmentOffset: 8 })));
    assert.equal(t.stack.counters.fragmentsMalformed, 2);
    assert.equal(t.stack.reassembler.size, 0);
  });

  test('IPv4: the first fragment’s options come with the reassembled header', () => {
    const e = established(true);
    const { l4, data } = dataSegment(e, 2000);
    e.t.send(fragmentV4(l4, 1000, { ident: 3, options: Uint8Array.from([1, 1, 1, 0]) }).map((p) => eth(p)));
    assert.deepEqual(readAll(e.c), data);
  });

  test('IPv6: an atomic fragment (offset 0, M clear) is a whole packet (RFC 6946)', () => {
    const t = new Trace();
    t.stack.listen(80, { onAccept: () => {} });
    const syn = tcpBytes(tcpSegment({ srcPort: 40000, dstPort: 80, seq: 1, flags: TCP_SYN }), PEER6, STACK6);
    const atomic = fragmentV6(IPPROTO_TCP, syn, 1232, 77);
    assert.equal(atomic.length, 1);
    t.send(eth(atomic[0]));
    assert.equal(t.recvTcp()[0]?.flags, TCP_SYN | TCP_ACK);
    assert.equal(t.stack.counters.atomicFragments, 1);
    assert.equal(t.stack.counters.fragmentsIn, 0);
    assert.equal(t.stack.reassembler.size, 0);
  });

  test('IPv6 options: the unfragmentable part’s with each fragment, the rest once reassembled', () => {
    // A 01 option before the Fragment header drops every fragment on arrival.
    const t = new Trace();
    t.stack.listen(80, { onAccept: () => {} });
    const syn = tcpBytes(
      tcpSegment({ srcPort: 40000, dstPort: 80, seq: 1, flags: TCP_SYN, payload: new Uint8Array(2000) }),
      PEER6,
      STACK6,
    );
    const discard: [number, Uint8Array] = [IPPROTO_DSTOPTS, optionsHeader([0x5e, 0])];
    t.send(fragmentV6(IPPROTO_TCP, syn, 1232, 5, [discard]).map((p) => eth(p)));
    t.recvNothing();
    assert.equal(t.stack.counters.optionsDiscarded, 2);
    assert.equal(t.stack.counters.fragmentsIn, 0);
    // A 10 option after the Fragment header: one Parameter Problem, once reassembled, pointing
    // into the reassembled packet (40 + 2).
    const after = new Uint8Array(8 + syn.length);
    after.set(optionsHeader([0x9e, 0]));
    after[0] = IPPROTO_TCP;
    after.set(syn, 8);
    t.send(fragmentV6(IPPROTO_DSTOPTS, after, 1232, 6).map((p) => eth(p)));
    const out = t.recv();
    assert.equal(out.length, 1);
    assert.equal(out[0].icmpv6?.type, ICMPV6_PARAMETER_PROBLEM);
    assert.equal(out[0].icmpv6?.pointer, 42);
    assert.equal(
      out[0].icmpv6!.data[6],
      IPPROTO_DSTOPTS,
      'the quote is the datagram, without the Fragment header',
    );
    assert.equal(t.stack.counters.reassembled, 1);
    assert.equal(t.stack.counters.optionsRejected, 1);
  });

  test('IPv6: fragments of fragments are refused (RFC 7112: the first holds the whole chain)', () => {
    const t = new Trace();
    const inner = fragmentV6(IPPROTO_TCP, new Uint8Array(64), 32, 9)[0].subarray(40);
    t.send(fragmentV6(IPPROTO_FRAGMENT, inner, 32, 10).map((p) => eth(p)));
    assert.equal(t.stack.counters.reassembled, 0);
    assert.equal(t.stack.counters.malformed, 1, 'two Fragment headers in the first fragment');
  });
});

describe('Reassembler alone', () => {
  const counters = (): ReassemblyCounters => ({
    fragmentsIn: 0,
    reassembled: 0,
    reassemblyTimeouts: 0,
    reassemblyOverlaps: 0,
    reassemblyTooManyFragments: 0,
    reassemblyOversize: 0,
    reassemblyInvalid: 0,
    reassemblyOverMemory: 0,
    fragmentDuplicates: 0,
    fragmentsMalformed: 0,
    fragmentsDropped: 0,
  });

  test('random sizes, fragment sizes, orders and exact duplicates: one datagram, byte-exact', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.integer({ min: 9, max: 20_000 }),
        fc.integer({ min: 1, max: 190 }).map((k) => k * 8),
        fc.array(fc.nat(), { minLength: 1, maxLength: 80 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (v4, n, size, keys, dups) => {
          const data = pattern(n, n);
          // At least two fragments (one is no fragment at all) and at most 64.
          const piece = Math.max(Math.min(size, Math.floor((n - 1) / 8) * 8), Math.ceil(n / 64 / 8) * 8);
          const packets = v4
            ? fragmentV4(data, piece, { ident: 5 })
            : fragmentV6(IPPROTO_TCP, data, piece, 5);
          // A random order (keys sort the indices), some sent twice.
          const order = packets
            .map((_, i) => i)
            .sort((a, b) => (keys[a % keys.length] ?? 0) - (keys[b % keys.length] ?? 0) || a - b);
          // Copies go anywhere before the fragment that completes the datagram (one after it
          // would start a new datagram, to time out).
          const last = order.pop()!;
          for (const d of dups) order.splice(d % (order.length + 1), 0, order[d % order.length]);
          order.push(last);
          const c = counters();
          const r = new Reassembler(c);
          const done: Uint8Array[] = [];
          for (const i of order) {
            const p = packets[i];
            const got = v4 ? r.ipv4(p, must(parseIpv4(p)), 0) : r.ipv6(p, must(parseIpv6(p)), 0);
            if (got) done.push(got.packet);
          }
          assert.equal(done.length, 1, JSON.stringify(c));
          const whole = done[0];
          const hl = v4 ? 20 : 40;
          assert.equal(whole.length, hl + n);
          assert.deepEqual(whole.subarray(hl), data);
          if (v4) assert.equal(must(parseIpv4(whole)).isFragment, false);
          else assert.equal(must(parseIpv6(whole)).fragment, undefined);
          assert.equal(r.memory, 0);
          assert.equal(r.size, 0);
          assert.equal(c.fragmentDuplicates, order.length - packets.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('memory never passes the cap, whatever arrives', () => {
    const c = counters();
    const r = new Reassembler(c, { memoryLimit: 100_000 });
    let peak = 0;
    for (let id = 0; id < 500; id++) {
      for (const p of fragmentV4(pattern(3000), 1480, { ident: id }).slice(0, 2)) {
        // As the stack does: due timeouts first, then the fragment. A datagram every 100 ms.
        r.poll(id * 100_000);
        r.ipv4(p, must(parseIpv4(p)), id * 100_000);
        peak = Math.max(peak, r.memory);
      }
    }
    assert.ok(peak <= 100_000, `peak ${peak}`);
    assert.ok(c.reassemblyOverMemory > 0);
    // Deadlines 30 s after each first fragment: the first ones have gone already, the rest now.
    assert.ok(c.reassemblyTimeouts > 0, 'expired on the way');
    r.poll(500 * 100_000 + 30_000_000);
    assert.equal(r.memory, 0);
    assert.equal(r.size, 0);
    assert.equal(c.fragmentsIn, 1000);
    assert.equal(c.fragmentsDropped, 1000, 'none completes: every fragment ends dropped');
  });

  test('random fragments into a stack: nothing throws, memory stays under the cap, all expires', () => {
    const frag = fc.record({
      v4: fc.boolean(),
      ident: fc.integer({ min: 0, max: 3 }),
      offset: fc.integer({ min: 0, max: 300 }).map((k) => k * 8),
      length: fc.integer({ min: 0, max: 200 }),
      more: fc.boolean(),
      ecn: fc.integer({ min: 0, max: 3 }),
      fill: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(fc.array(frag, { minLength: 1, maxLength: 300 }), (frags) => {
        const t = new Trace({ reassembly: { memoryLimit: 20_000 } });
        for (const f of frags) {
          const data = new Uint8Array(f.length).fill(f.fill);
          const fh = new Uint8Array(8);
          fh[2] = f.offset >> 8;
          fh[3] = (f.offset & 0xf8) | (f.more ? 1 : 0);
          fh[7] = f.ident;
          const p = f.v4
            ? ipv4Packet(data, {
                ident: f.ident,
                fragmentOffset: f.offset,
                moreFragments: f.more,
                ecn: f.ecn,
              })
            : ipv6Packet(IPPROTO_TCP, data, [[IPPROTO_FRAGMENT, fh]], { trafficClass: f.ecn });
          t.send(eth(p));
          assert.ok(t.stack.reassembler.memory <= 20_000);
        }
        t.advance(61_000_000);
        assert.equal(t.stack.reassembler.memory, 0);
        assert.equal(t.stack.reassembler.size, 0);
        const c = t.stack.counters;
        assert.ok(c.fragmentsIn + c.atomicFragments + c.malformed + c.notForUs + c.tcpIn > 0);
      }),
      { numRuns: 200 },
    );
  });

  test('refuses nonsense bounds', () => {
    assert.throws(() => new Reassembler(counters(), { memoryLimit: 0 }), RangeError);
    assert.throws(() => new Reassembler(counters(), { maxFragments: 1.5 }), RangeError);
  });
});
