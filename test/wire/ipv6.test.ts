import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ipv6FromString as parseIpv6Text } from '../../src/wire/address.ts';
import { fromHex, toHex, writeU16, writeU32 } from '../../src/wire/bytes.ts';
import { onesSum, verifiesChecksum } from '../../src/wire/checksum.ts';
import { isWireError, WireError, type WireErrorKind } from '../../src/wire/error.ts';
import { type EthernetFrame, parseEthernet } from '../../src/wire/ethernet.ts';
import { IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../../src/wire/ipv4.ts';
import {
  emitIpv6Header,
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_ESP,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_MH,
  IPPROTO_NONE,
  IPPROTO_ROUTING,
  IPV6_HEADER_LENGTH,
  type Ipv6Fragment,
  type Ipv6HeaderFields,
  type Ipv6Packet,
  ipv6HeaderLength,
  ipv6OptionActions,
  ipv6PseudoHeaderSum,
  MAX_EXT_HEADERS,
  NO_EXT_HEADERS,
  OPTION_DISCARD,
  OPTION_DISCARD_ICMP,
  OPTION_DISCARD_ICMP_UNICAST,
  OPTION_SKIP,
  parseIpv6,
} from '../../src/wire/ipv6.ts';

const A1 = 'fd000000000000000000000000000001';
const A2 = 'fd000000000000000000000000000002';

// scapy: IPv6(src="fd00::1",dst="fd00::2",tc=0xb8,fl=0xabcde,hlim=64)/TCP(sport=443,dport=50000,flags="S")
const IP6_TCP = `6b8abcde00140640${A1}${A2}01bbc350000000000000000050022000d0d20000`;
// scapy: IPv6(src="fd00::1",dst="fd00::2",hlim=255)/IPv6ExtHdrHopByHop(options=[RouterAlert()])/IPv6ExtHdrDestOpt()/
//        IPv6ExtHdrRouting(addresses=["fd00::3"])/IPv6ExtHdrFragment(id=0xdeadbeef,offset=0,m=1)/
//        AH(nh=17,payloadlen=4,spi=1,seq=1,icv=b'\0'*12)/UDP(sport=1,dport=2)/Raw(b'abcdefgh'*2)
const CHAIN_EXT =
  '3c00050200000100' + // Hop-by-Hop: Router Alert, PadN
  '2b00010400000000' + // Destination Options: PadN
  '2c02000100000000fd000000000000000000000000000003' + // Routing type 0, one address
  '33000001deadbeef' + // Fragment: offset 0, M=1
  '110400000000000100000001000000000000000000000000'; // AH, 12-byte ICV
const CHAIN_UDP = '000100020018000061626364656667686162636465666768';
const CHAIN = `60000000006000ff${A1}${A2}${CHAIN_EXT}${CHAIN_UDP}`;
// scapy: IPv6(src="fd00::1",dst="fd00::2")/IPv6ExtHdrFragment(id=0x1234,offset=185,m=0,nh=17)/Raw(b'x'*16)
const FRAG_LATER = `6000000000182c40${A1}${A2}110005c80000123478787878787878787878787878787878`;
// scapy: IPv6(src="fd00::1",dst="fd00::2")/IPv6ExtHdrDestOpt()/ESP(spi=5,seq=1,data=b'secret!!')
const ESP = `6000000000183c40${A1}${A2}32000104000000000000000500000001${'7365637265742121'}`;
// scapy: IPv6(src="fd00::1",dst="fd00::2",plen=0)/IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=70000)])/UDP()
const JUMBO = `6000000000000040${A1}${A2}1100c204000111700035003500080570`;
// scapy: Ether(...,type=0x88a8)/Dot1AD(vlan=10,prio=3)/Dot1Q(vlan=4094)/IPv6(src="fd00::1",dst="fd00::2")/ICMPv6EchoRequest()
const QINQ_ECHO = `ffffffffffff02000000000188a8600a81000ffe86dd6000000000083a40${A1}${A2}800085b800000000`;

function parsed(b: Uint8Array): Ipv6Packet {
  const p = parseIpv6(b);
  if (isWireError(p)) assert.fail(p.toString());
  return p;
}

function rejected(b: Uint8Array, kind: WireErrorKind): WireError {
  const r = parseIpv6(b);
  assert.ok(r instanceof WireError, `expected ${kind}, parsed`);
  assert.equal(r.layer, 'ipv6');
  assert.equal(r.kind, kind, r.reason);
  return r;
}

/** Header, chain and payload of `p` emitted into a fresh buffer. */
function reemitted(p: Ipv6Packet): string {
  const out = new Uint8Array(ipv6HeaderLength(p) + p.payload.length);
  assert.equal(emitIpv6Header(p, p.payloadLength, out, 0), ipv6HeaderLength(p));
  out.set(p.payload, ipv6HeaderLength(p));
  return toHex(out);
}

/** A fixed header carrying `payload` (hex) with first Next Header `nh`. */
function packet(nh: number, payload: string): Uint8Array {
  const body = fromHex(payload);
  const b = new Uint8Array(IPV6_HEADER_LENGTH + body.length);
  b[0] = 0x60;
  writeU16(b, 4, body.length);
  b[6] = nh;
  b[7] = 64;
  b.set(fromHex(A1), 8);
  b.set(fromHex(A2), 24);
  b.set(body, IPV6_HEADER_LENGTH);
  return b;
}

/** An 8-byte generic extension header (Hdr Ext Len 0) whose Next Header is `next`. */
const ext8 = (next: number) => `${next.toString(16).padStart(2, '0')}00010400000000`;

describe('parseIpv6 known answers', () => {
  test('TCP: every field', () => {
    const b = fromHex(IP6_TCP);
    const p = parsed(b);
    assert.deepEqual(
      { ...p, src: toHex(p.src), dst: toHex(p.dst), payload: toHex(p.payload) },
      {
        trafficClass: 0xb8,
        flowLabel: 0xabcde,
        payloadLength: 20,
        nextHeader: IPPROTO_TCP,
        hopLimit: 64,
        src: A1,
        dst: A2,
        extHeaders: NO_EXT_HEADERS,
        protocol: IPPROTO_TCP,
        fragment: undefined,
        payload: IP6_TCP.slice(80),
      },
    );
    assert.equal(p.extHeaders, NO_EXT_HEADERS, 'shared empty chain');
    assert.deepEqual(p.src, parseIpv6Text('fd00::1'));
    assert.deepEqual(p.dst, parseIpv6Text('fd00::2'));
    assert.equal(p.payload.buffer, b.buffer, 'payload is a view');
    assert.notEqual(p.src.buffer, b.buffer, 'addresses are copies');
    assert.equal(reemitted(p), IP6_TCP);
    const sum = onesSum(p.payload, 0, p.payload.length, ipv6PseudoHeaderSum(p, p.payload.length));
    assert.ok(verifiesChecksum(sum), 'scapy TCP checksum verifies over the pseudo-header');
  });

  test('Hop-by-Hop, Destination Options, Routing, Fragment, AH, then UDP', () => {
    const p = parsed(fromHex(CHAIN));
    assert.equal(p.payloadLength, 96);
    assert.equal(p.nextHeader, IPPROTO_HOPOPTS);
    assert.equal(p.hopLimit, 255);
    assert.equal(toHex(p.extHeaders), CHAIN_EXT);
    assert.equal(p.protocol, IPPROTO_UDP);
    // The Fragment header after Hop-by-Hop (8), Destination Options (8) and Routing (24), named
    // by the Routing header's first byte, followed by AH.
    assert.deepEqual(p.fragment, {
      offset: 0,
      more: true,
      ident: 0xdeadbeef,
      at: 80,
      linkAt: 56,
      nextHeader: IPPROTO_AH,
    });
    assert.equal(toHex(p.payload), CHAIN_UDP);
    assert.equal(reemitted(p), CHAIN);
  });

  test('a non-first fragment stops after its Fragment header', () => {
    const p = parsed(fromHex(FRAG_LATER));
    assert.equal(p.nextHeader, IPPROTO_FRAGMENT);
    assert.equal(toHex(p.extHeaders), '110005c800001234');
    assert.equal(p.protocol, IPPROTO_UDP);
    assert.deepEqual(p.fragment, {
      offset: 1480,
      more: false,
      ident: 0x1234,
      at: 40,
      linkAt: 6,
      nextHeader: IPPROTO_UDP,
    });
    assert.equal(new TextDecoder().decode(p.payload), 'x'.repeat(16));
    assert.equal(reemitted(p), FRAG_LATER);
  });

  test('a non-first fragment whose data looks like extension headers is not walked', () => {
    // Fragment offset 8, then bytes that would be an overrunning Routing header.
    const p = parsed(packet(IPPROTO_FRAGMENT, `2b00000800000001${'3cff000000000000'}`));
    assert.equal(p.protocol, IPPROTO_ROUTING);
    assert.equal(p.payload.length, 8);
  });

  test('ESP ends the walk: the rest is opaque payload', () => {
    const p = parsed(fromHex(ESP));
    assert.equal(p.nextHeader, IPPROTO_DSTOPTS);
    assert.equal(toHex(p.extHeaders), '3200010400000000');
    assert.equal(p.protocol, IPPROTO_ESP);
    assert.equal(toHex(p.payload), '00000005000000017365637265742121');
    assert.equal(reemitted(p), ESP);
  });

  test('No Next Header ends the walk', () => {
    const p = parsed(packet(IPPROTO_NONE, 'deadbeef'));
    assert.equal(p.protocol, IPPROTO_NONE);
    assert.equal(p.extHeaders, NO_EXT_HEADERS);
    assert.equal(toHex(p.payload), 'deadbeef');
    const q = parsed(packet(IPPROTO_DSTOPTS, `${ext8(IPPROTO_NONE)}`));
    assert.equal(q.protocol, IPPROTO_NONE);
    assert.equal(q.payload.length, 0);
  });

  test('AH length is (len + 2) * 4; Mobility uses the generic form', () => {
    // AH with Payload Len 1: 12 bytes (RFC 4302 2.2, no ICV; only the length rule matters here),
    // then a Mobility header with Hdr Ext Len 0: 8 bytes.
    const ah = parsed(packet(IPPROTO_AH, `870100000000000100000002${'1100000000000000'}aabbccdd`));
    assert.equal(ah.extHeaders.length, 12 + 8);
    assert.equal(ah.protocol, IPPROTO_UDP);
    assert.equal(toHex(ah.payload), 'aabbccdd');
  });

  test('link padding is trimmed by Payload Length', () => {
    const f = parseEthernet(fromHex(`${QINQ_ECHO}${'00'.repeat(12)}`)) as EthernetFrame;
    assert.equal(f.payload.length, 60);
    const p = parsed(f.payload);
    assert.equal(p.protocol, IPPROTO_ICMPV6);
    assert.equal(toHex(p.payload), '800085b800000000');
    const sum = onesSum(p.payload, 0, 8, ipv6PseudoHeaderSum(p, 8));
    assert.ok(verifiesChecksum(sum), 'scapy ICMPv6 checksum verifies over the pseudo-header');
  });

  test('exactly MAX_EXT_HEADERS extension headers are walked', () => {
    const chain = Array.from({ length: MAX_EXT_HEADERS }, (_, i) =>
      ext8(i === MAX_EXT_HEADERS - 1 ? IPPROTO_UDP : IPPROTO_DSTOPTS),
    ).join('');
    const p = parsed(packet(IPPROTO_DSTOPTS, `${chain}00010002`));
    assert.equal(p.extHeaders.length, 8 * MAX_EXT_HEADERS);
    assert.equal(p.protocol, IPPROTO_UDP);
  });
});

describe('parseIpv6 rejections', () => {
  test('every length below 40 + Payload Length is truncated, never a throw', () => {
    for (const hex of [IP6_TCP, CHAIN, FRAG_LATER, ESP]) {
      const full = fromHex(hex);
      for (let n = 0; n < full.length; n++) rejected(full.subarray(0, n), 'truncated');
    }
  });

  test('version other than 6', () => {
    for (const v of [0x40, 0x00, 0x70, 0xf0]) {
      const b = fromHex(IP6_TCP);
      b[0] = v | (b[0] & 0x0f);
      rejected(b, 'malformed');
    }
  });

  test('a jumbogram is unsupported', () => {
    const r = rejected(fromHex(JUMBO), 'unsupported');
    assert.match(r.reason, /jumbo/i);
    for (let n = 0; n < 40; n++) rejected(fromHex(JUMBO).subarray(0, n), 'truncated');
    // Payload Length 0 with a Hop-by-Hop header but no Jumbo option: the header overruns.
    const noJumbo = fromHex(JUMBO);
    noJumbo[42] = 0x01; // PadN instead of Jumbo
    rejected(noJumbo, 'truncated');
  });

  test('Hop-by-Hop anywhere but first is malformed (RFC 8200 4.1)', () => {
    rejected(packet(IPPROTO_DSTOPTS, `${ext8(IPPROTO_HOPOPTS)}${ext8(IPPROTO_UDP)}00010002`), 'malformed');
  });

  test('more than MAX_EXT_HEADERS extension headers', () => {
    const n = MAX_EXT_HEADERS + 1;
    const chain = Array.from({ length: n }, (_, i) => ext8(i === n - 1 ? IPPROTO_UDP : IPPROTO_DSTOPTS)).join(
      '',
    );
    rejected(packet(IPPROTO_DSTOPTS, `${chain}00010002`), 'malformed');
    // A chain that never reaches an upper layer within any plausible length (a "loop").
    const endless = ext8(IPPROTO_ROUTING).repeat(1000);
    rejected(packet(IPPROTO_ROUTING, endless), 'malformed');
  });

  test('a header overrunning Payload Length, even with bytes behind it', () => {
    // Routing header claims 16 bytes; Payload Length holds 8.
    const b = packet(IPPROTO_ROUTING, '11010000000000000000000000000000');
    writeU16(b, 4, 8);
    rejected(b, 'truncated');
    // A chain that ends exactly at Payload Length: fine.
    writeU16(b, 4, 16);
    assert.equal(parsed(b).payload.length, 0);
    // Next Header and length bytes themselves out of range.
    rejected(packet(IPPROTO_DSTOPTS, '11'), 'truncated');
    rejected(packet(IPPROTO_AH, '11'), 'truncated');
    rejected(packet(IPPROTO_FRAGMENT, '11000000000000'), 'truncated');
    rejected(packet(IPPROTO_MH, '3b01000000000000'), 'truncated');
  });

  test('fragment length and offset checks (RFC 8200 4.5)', () => {
    // M set with 12 bytes of fragment data.
    rejected(packet(IPPROTO_FRAGMENT, `1100000100000001${'00'.repeat(12)}`), 'malformed');
    // M clear: any length is fine for the last fragment.
    assert.equal(parsed(packet(IPPROTO_FRAGMENT, `1100000800000001${'00'.repeat(12)}`)).fragment?.offset, 8);
    // Offset 65528 plus 16 bytes passes 65535.
    rejected(packet(IPPROTO_FRAGMENT, `1100fff800000001${'00'.repeat(16)}`), 'malformed');
    // Two Fragment headers in one chain.
    rejected(packet(IPPROTO_FRAGMENT, `2c00000000000001${'1100000000000002'}00010002`), 'unsupported');
  });
});

describe('ipv6OptionActions (RFC 8200 4.2)', () => {
  // A Destination Options header (8 bytes) before TCP holding `opts` (6 bytes, hex).
  const dst = (opts: string) => parsed(packet(IPPROTO_DSTOPTS, `0600${opts}${'00'.repeat(20)}`));
  const verdict = (p: Ipv6Packet, from?: number, untilFragment?: boolean) => {
    const v = ipv6OptionActions(p, from, untilFragment);
    if (isWireError(v)) assert.fail(v.toString());
    return v;
  };

  test('Pad1 and PadN are recognised: nothing to do, nothing counted', () => {
    assert.deepEqual(verdict(dst('010400000000')), { skipped: 0, action: OPTION_SKIP, pointer: 0 });
    assert.deepEqual(verdict(dst('000000000000')), { skipped: 0, action: OPTION_SKIP, pointer: 0 });
    assert.deepEqual(verdict(parsed(fromHex(IP6_TCP))), { skipped: 0, action: OPTION_SKIP, pointer: 0 });
  });

  test('the two high-order bits of an unrecognised option decide (00, 01, 10, 11)', () => {
    // Type 0x1e (00): skipped and counted; then PadN.
    assert.deepEqual(verdict(dst('1e0000010000')), { skipped: 1, action: OPTION_SKIP, pointer: 0 });
    // Type 0x5e (01) after a Pad1: the pointer names its type byte (40 + 2 + 1).
    assert.deepEqual(verdict(dst('005e00010100')), { skipped: 0, action: OPTION_DISCARD, pointer: 43 });
    assert.deepEqual(verdict(dst('9e0001020000')), { skipped: 0, action: OPTION_DISCARD_ICMP, pointer: 42 });
    // Home Address (0xc9, 11) without Mobile IPv6: a Parameter Problem for unicast only.
    assert.deepEqual(verdict(dst('c90400000000')), {
      skipped: 0,
      action: OPTION_DISCARD_ICMP_UNICAST,
      pointer: 42,
    });
    // Skips before a discard are still reported; the walk stops at the discard.
    assert.deepEqual(verdict(dst('1e005e00c900')), { skipped: 1, action: OPTION_DISCARD, pointer: 44 });
  });

  test('Hop-by-Hop is walked too; Router Alert is passed over there', () => {
    const rtAlert = parsed(packet(IPPROTO_HOPOPTS, `0600050200000100${'00'.repeat(20)}`));
    assert.deepEqual(verdict(rtAlert), { skipped: 0, action: OPTION_SKIP, pointer: 0 });
    const unknown = parsed(packet(IPPROTO_HOPOPTS, `06008f0400000000${'00'.repeat(20)}`));
    assert.deepEqual(verdict(unknown), { skipped: 0, action: OPTION_DISCARD_ICMP, pointer: 42 });
    // Router Alert in a Destination Options header is just an unknown 00 option.
    assert.deepEqual(verdict(dst('050200000100')), { skipped: 1, action: OPTION_SKIP, pointer: 0 });
  });

  test('an option that runs past its header is malformed', () => {
    for (const opts of ['1e0500000000', '01050000000', '0000000000c9'].map((o) => o.padEnd(12, '0'))) {
      const v = ipv6OptionActions(dst(opts));
      assert.ok(isWireError(v), opts);
      assert.equal(v.kind, 'malformed');
    }
  });

  test('from and untilFragment select the headers walked (each fragment, then the datagram)', () => {
    // DestOpts (discard option) / Fragment (offset 0, M) / DestOpts (11 option) / TCP.
    const b = packet(
      IPPROTO_DSTOPTS,
      `2c005e0400000000${'3c00000100000001'}${'0600c90400000000'}${'00'.repeat(24)}`,
    );
    const p = parsed(b);
    assert.equal(verdict(p).action, OPTION_DISCARD);
    assert.equal(verdict(p, 48).action, OPTION_DISCARD_ICMP_UNICAST, 'after the first header');
    assert.equal(verdict(p, 48).pointer, 58);
    assert.equal(verdict(p, 48, true).action, OPTION_SKIP, 'the fragmentable part waits');
    assert.equal(verdict(p, 40, true).action, OPTION_DISCARD, 'the unfragmentable part is walked');
  });

  test('never throws on random option bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (opts) => {
        const v = ipv6OptionActions(dst(toHex(opts)));
        if (!isWireError(v)) assert.ok(v.action >= 0 && v.action <= 3);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('emitIpv6Header', () => {
  const fields: Ipv6HeaderFields = {
    trafficClass: 0x1ff, // masked to 0xff
    flowLabel: 0x1fffff, // masked to 0xfffff
    nextHeader: IPPROTO_TCP,
    hopLimit: 1,
    src: fromHex(A1),
    dst: fromHex(A2),
    extHeaders: NO_EXT_HEADERS,
  };

  test('writes the fixed header at an offset and leaves the rest alone', () => {
    const buf = new Uint8Array(44).fill(0xee);
    assert.equal(emitIpv6Header(fields, 1234, buf, 2), 40);
    assert.equal(toHex(buf), `eeee6fffffff04d20601${A1}${A2}eeee`);
  });

  test('Payload Length is exactly the argument: extension headers count in it', () => {
    const ext = fromHex(ext8(IPPROTO_TCP));
    const buf = new Uint8Array(48);
    assert.equal(
      emitIpv6Header({ ...fields, nextHeader: IPPROTO_DSTOPTS, extHeaders: ext }, 8 + 20, buf, 0),
      48,
    );
    assert.equal((buf[4] << 8) | buf[5], 28);
    assert.equal(toHex(buf.subarray(40)), ext8(IPPROTO_TCP));
  });

  test('an extension chain already in place is not copied over itself', () => {
    const buf = fromHex(CHAIN);
    const p = parsed(buf);
    assert.equal(emitIpv6Header({ ...p, hopLimit: 7 }, p.payloadLength, buf, 0), 40 + 72);
    assert.equal(buf[7], 7);
    assert.equal(toHex(buf.subarray(40)), toHex(fromHex(CHAIN).subarray(40)));
  });

  test('refuses lengths no header can carry', () => {
    const ext = fromHex(ext8(IPPROTO_TCP));
    const buf = new Uint8Array(48);
    assert.throws(() => emitIpv6Header({ ...fields, extHeaders: ext }, 7, buf, 0), RangeError);
    assert.throws(() => emitIpv6Header(fields, 65536, buf, 0), RangeError);
    assert.throws(() => emitIpv6Header({ ...fields, extHeaders: ext }, 8, buf, 1), RangeError);
    assert.equal(emitIpv6Header(fields, 65535, buf, 0), 40);
  });
});

describe('properties', () => {
  type Ext = { type: number; body: Uint8Array };
  // Generic headers (Hdr Ext Len 0-3) and AH (Payload Len 1-6); bodies are random bytes.
  const generic = fc
    .tuple(
      fc.constantFrom(IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_MH, 139, 140),
      fc.integer({ min: 0, max: 3 }),
    )
    .chain(([type, len]) =>
      fc.uint8Array({ minLength: (len + 1) * 8 - 2, maxLength: (len + 1) * 8 - 2 }).map((rest) => {
        const body = new Uint8Array((len + 1) * 8);
        body.set(rest, 2);
        body[1] = len;
        return { type, body };
      }),
    );
  const ah = fc.integer({ min: 1, max: 6 }).chain((len) =>
    fc.uint8Array({ minLength: (len + 2) * 4 - 2, maxLength: (len + 2) * 4 - 2 }).map((rest) => {
      const body = new Uint8Array((len + 2) * 4);
      body.set(rest, 2);
      body[1] = len;
      return { type: IPPROTO_AH, body };
    }),
  );

  const record = fc.record({
    trafficClass: fc.integer({ min: 0, max: 255 }),
    flowLabel: fc.integer({ min: 0, max: 0xfffff }),
    hopLimit: fc.integer({ min: 0, max: 255 }),
    src: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    dst: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    hbh: fc.boolean(),
    chain: fc.array(fc.oneof(generic, ah), { maxLength: 6 }),
    // An atomic fragment (offset 0, M clear) somewhere in the chain, or none.
    fragment: fc.option(fc.tuple(fc.nat(6), fc.integer({ min: 0, max: 0xffff_ffff })), { nil: undefined }),
    upper: fc.constantFrom(IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, IPPROTO_ESP, IPPROTO_NONE, 132),
    payload: fc.uint8Array({ maxLength: 40 }),
    padding: fc.nat(20),
  });

  test('random header + chain + payload: emit then parse gives the same record', () => {
    fc.assert(
      fc.property(record, (r) => {
        const chain: Ext[] = [...r.chain];
        let fragment: Ipv6Fragment | undefined;
        if (r.fragment) {
          const body = new Uint8Array(8);
          writeU32(body, 4, r.fragment[1]);
          chain.splice(Math.min(r.fragment[0], chain.length), 0, { type: IPPROTO_FRAGMENT, body });
        }
        if (r.hbh) chain.unshift({ type: IPPROTO_HOPOPTS, body: fromHex('0000010400000000') });
        // Link the Next Header fields; note where the Fragment header went.
        for (let i = 0, at = 40, prev = 6; i < chain.length; i++) {
          const next = i + 1 < chain.length ? chain[i + 1].type : r.upper;
          chain[i].body[0] = next;
          if (chain[i].type === IPPROTO_FRAGMENT)
            fragment = { offset: 0, more: false, ident: r.fragment![1], at, linkAt: prev, nextHeader: next };
          prev = at;
          at += chain[i].body.length;
        }
        const ext = Uint8Array.from(chain.flatMap((e) => [...e.body]));
        const h: Ipv6HeaderFields = {
          trafficClass: r.trafficClass,
          flowLabel: r.flowLabel,
          nextHeader: chain.length > 0 ? chain[0].type : r.upper,
          hopLimit: r.hopLimit,
          src: r.src,
          dst: r.dst,
          extHeaders: ext.length > 0 ? ext : NO_EXT_HEADERS,
        };
        const payloadLength = ext.length + r.payload.length;
        const b = new Uint8Array(40 + payloadLength + r.padding).fill(0x99);
        assert.equal(emitIpv6Header(h, payloadLength, b, 0), 40 + ext.length);
        b.set(r.payload, 40 + ext.length);
        const p = parsed(b);
        assert.deepEqual(
          { ...p, extHeaders: toHex(p.extHeaders), payload: toHex(p.payload) },
          {
            ...h,
            extHeaders: toHex(ext),
            payloadLength,
            protocol: r.upper,
            fragment,
            payload: toHex(r.payload),
          },
        );
        assert.equal(reemitted(p), toHex(b.subarray(0, 40 + payloadLength)));
      }),
      { numRuns: 500 },
    );
  });

  test('never throws on arbitrary chains', () => {
    const nh = fc.constantFrom(0, 43, 44, 50, 51, 59, 60, 135, 6, 17);
    const bytes = fc.array(fc.oneof(nh, fc.integer({ min: 0, max: 255 })), { maxLength: 120 });
    fc.assert(
      fc.property(nh, bytes, fc.integer({ min: -8, max: 8 }), (first, rest, skew) => {
        const b = packet(first, toHex(Uint8Array.from(rest)));
        writeU16(b, 4, Math.max(0, rest.length + skew));
        const r = parseIpv6(b);
        if (!isWireError(r)) {
          assert.equal(40 + r.extHeaders.length + r.payload.length, 40 + r.payloadLength);
          assert.ok(r.payloadLength <= rest.length);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
