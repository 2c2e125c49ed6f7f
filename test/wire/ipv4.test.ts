import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ipv4FromString as parseIpv4Text } from '../../src/wire/address.ts';
import { fromHex, toHex, writeU16 } from '../../src/wire/bytes.ts';
import { internetChecksum, onesSum, verifiesChecksum } from '../../src/wire/checksum.ts';
import { isWireError, WireError, type WireErrorKind } from '../../src/wire/error.ts';
import { type EthernetFrame, parseEthernet } from '../../src/wire/ethernet.ts';
import {
  emitIpv4Header,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_HEADER_LENGTH,
  type Ipv4HeaderFields,
  type Ipv4Packet,
  ipv4PseudoHeaderSum,
  parseIpv4,
} from '../../src/wire/ipv4.ts';

// scapy: IP(src="198.18.0.1",dst="198.18.0.2",id=0x1234,ttl=64,flags="DF")/TCP(sport=1234,dport=80,seq=1,ack=2,flags="A")
const IP_TCP = '450000281234400040069c74c6120001c612000204d20050000000010000000250102000fe870000';
// scapy: IP(src="198.18.0.1",dst="198.18.0.2",id=0xbeef,ttl=63,tos=0xb9,flags="MF",frag=100,proto=6)/Raw(b"hello world!")
const FRAGMENT = '45b90020beef20643f060fa4c6120001c612000268656c6c6f20776f726c6421';
// scapy: IP(src="10.0.0.1",dst="10.0.0.2",options=[IPOption_RR(routers=["1.2.3.4"]),IPOption_NOP(),IPOption_EOL()])/UDP(sport=1,dport=2)
const WITH_OPTIONS = '4800002800010000401152b60a0000010a000002070704010203040100000000000100020008ebd8';
// scapy: Ether(dst="00:11:22:33:44:55",src="66:77:88:99:aa:bb")/IP(src="10.0.0.1",dst="10.0.0.2",ttl=64,id=7)/ICMP(id=1,seq=1),
// padded by the link to the 60-byte minimum.
const PADDED_FRAME =
  '00112233445566778899aabb08004500001c00070000400166d80a0000010a0000020800f7fd00010001000000000000000000000000000000000000';

const ip = (s: string) => parseIpv4Text(s)!;

function parsed(b: Uint8Array, verify = true): Ipv4Packet {
  const p = parseIpv4(b, verify);
  if (isWireError(p)) assert.fail(p.toString());
  return p;
}

function rejected(b: Uint8Array, kind: WireErrorKind, verify = true): void {
  const r = parseIpv4(b, verify);
  assert.ok(r instanceof WireError, `expected ${kind}, parsed`);
  assert.equal(r.layer, 'ipv4');
  assert.equal(r.kind, kind, r.reason);
}

/** Re-computes the header checksum after a test mutated the header. */
function fixChecksum(b: Uint8Array): Uint8Array {
  const hlen = (b[0] & 0x0f) * 4;
  writeU16(b, 10, 0);
  writeU16(b, 10, internetChecksum(b, 0, Math.min(hlen, b.length)));
  return b;
}

function emitted(p: Ipv4HeaderFields, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(IPV4_HEADER_LENGTH + payload.length);
  assert.equal(emitIpv4Header(p, payload.length, out, 0), IPV4_HEADER_LENGTH);
  out.set(payload, IPV4_HEADER_LENGTH);
  return out;
}

describe('parseIpv4 known answers', () => {
  test('TCP segment: every field', () => {
    const b = fromHex(IP_TCP);
    const p = parsed(b);
    assert.deepEqual(
      { ...p, payload: toHex(p.payload) },
      {
        headerLength: 20,
        dscp: 0,
        ecn: 0,
        totalLength: 40,
        ident: 0x1234,
        dontFragment: true,
        moreFragments: false,
        fragmentOffset: 0,
        ttl: 64,
        protocol: IPPROTO_TCP,
        checksum: 0x9c74,
        src: ip('198.18.0.1'),
        dst: ip('198.18.0.2'),
        isFragment: false,
        payload: IP_TCP.slice(40),
      },
    );
    assert.equal(p.payload.buffer, b.buffer, 'payload is a view');
    assert.equal(toHex(emitted(p, p.payload)), IP_TCP);
  });

  test('fragment with DSCP/ECN: offset in bytes, MF, isFragment', () => {
    const p = parsed(fromHex(FRAGMENT));
    assert.equal(p.dscp, 46); // EF
    assert.equal(p.ecn, 1); // ECT(1)
    assert.equal(p.ident, 0xbeef);
    assert.equal(p.dontFragment, false);
    assert.equal(p.moreFragments, true);
    assert.equal(p.fragmentOffset, 800);
    assert.equal(p.isFragment, true);
    assert.equal(p.ttl, 63);
    assert.equal(p.checksum, 0x0fa4);
    assert.equal(new TextDecoder().decode(p.payload), 'hello world!');
    assert.equal(toHex(emitted(p, p.payload)), FRAGMENT);
  });

  test('last fragment (offset only) is a fragment too', () => {
    const b = fromHex(FRAGMENT);
    b[6] = 0x00; // clear MF, keep offset 100
    const p = parsed(fixChecksum(b));
    assert.equal(p.moreFragments, false);
    assert.equal(p.fragmentOffset, 800);
    assert.equal(p.isFragment, true);
  });

  test('options are skipped: payload starts after IHL * 4', () => {
    const p = parsed(fromHex(WITH_OPTIONS));
    assert.equal(p.headerLength, 32);
    assert.equal(p.protocol, IPPROTO_UDP);
    assert.equal(toHex(p.payload), '000100020008ebd8');
  });

  test('Ethernet padding is trimmed by Total Length', () => {
    const f = parseEthernet(fromHex(PADDED_FRAME)) as EthernetFrame;
    assert.equal(f.payload.length, 46);
    const p = parsed(f.payload);
    assert.equal(p.totalLength, 28);
    assert.equal(p.protocol, IPPROTO_ICMP);
    assert.equal(toHex(p.payload), '0800f7fd00010001');
  });

  test('ipv4PseudoHeaderSum verifies the scapy TCP checksum', () => {
    const p = parsed(fromHex(IP_TCP));
    const sum = onesSum(p.payload, 0, p.payload.length, ipv4PseudoHeaderSum(p, p.payload.length));
    assert.ok(verifiesChecksum(sum));
    p.payload[16] ^= 1; // flip a checksum bit
    const bad = onesSum(p.payload, 0, p.payload.length, ipv4PseudoHeaderSum(p, p.payload.length));
    assert.ok(!verifiesChecksum(bad));
  });
});

describe('parseIpv4 rejections', () => {
  test('every length below Total Length is truncated, never a throw', () => {
    for (const hex of [IP_TCP, FRAGMENT, WITH_OPTIONS]) {
      const full = fromHex(hex);
      for (let n = 0; n < full.length; n++) rejected(full.subarray(0, n), 'truncated');
    }
  });

  test('version other than 4', () => {
    const b = fromHex(IP_TCP);
    b[0] = 0x65;
    rejected(fixChecksum(b), 'malformed');
  });

  test('IHL below 5', () => {
    for (let ihl = 0; ihl < 5; ihl++) {
      const b = fromHex(IP_TCP);
      b[0] = 0x40 | ihl;
      rejected(b, 'malformed', false);
    }
  });

  test('IHL beyond the bytes received', () => {
    const b = fromHex(IP_TCP).subarray(0, 24);
    b.fill(1, 20); // No Operation options
    b[0] = 0x46; // 24-byte header fits ...
    writeU16(b, 2, 24);
    assert.equal(parsed(b, false).headerLength, 24);
    b[0] = 0x47; // ... 28 does not
    rejected(b, 'truncated', false);
  });

  test('Total Length below the header, or beyond the buffer', () => {
    const b = fromHex(IP_TCP);
    writeU16(b, 2, 19);
    rejected(fixChecksum(b), 'malformed');
    writeU16(b, 2, 20);
    assert.equal(parsed(fixChecksum(b)).payload.length, 0);
    writeU16(b, 2, 41);
    rejected(fixChecksum(b), 'truncated');
  });

  test('reserved flag bit set', () => {
    const b = fromHex(IP_TCP);
    b[6] |= 0x80;
    rejected(fixChecksum(b), 'malformed');
  });

  test('a fragment ending past 65535 (ping of death)', () => {
    const b = fromHex(FRAGMENT); // 12 bytes of payload
    writeU16(b, 6, 0x1fff); // offset 65528: 65528 + 12 > 65535
    rejected(fixChecksum(b), 'malformed');
    writeU16(b, 6, 8190); // 65520 + 12 fits
    assert.equal(parsed(fixChecksum(b)).fragmentOffset, 65520);
  });

  test('bad checksum, and verifyChecksum = false skips the check', () => {
    const b = fromHex(IP_TCP);
    b[8] = 63; // TTL changed, checksum not updated
    rejected(b, 'checksum');
    assert.equal(parsed(b, false).ttl, 63);
    b[8] = 64;
    b[11] ^= 0x01; // checksum field itself corrupted
    rejected(b, 'checksum');
  });

  test('options must be framed within the header', () => {
    const base = fromHex(WITH_OPTIONS);
    const cases: [number, number][] = [
      [21, 13], // RR length 13 runs past the 32-byte header
      [21, 1], // length below 2
      [21, 0],
    ];
    for (const [at, v] of cases) {
      const b = base.slice();
      b[at] = v;
      rejected(fixChecksum(b), 'malformed');
    }
    // An option type as the very last header byte has no room for its length.
    const last = base.slice();
    last.fill(1, 20, 31); // NOPs
    last[31] = 7;
    rejected(fixChecksum(last), 'malformed');
    // A length that ends exactly at the header end is fine; so is garbage after End of Option List.
    const exact = base.slice();
    exact[21] = 12;
    assert.equal(parsed(fixChecksum(exact)).headerLength, 32);
    const eol = base.slice();
    eol.fill(0xff, 21, 32);
    eol[20] = 0;
    assert.equal(parsed(fixChecksum(eol)).headerLength, 32);
  });
});

describe('emitIpv4Header', () => {
  const fields: Ipv4HeaderFields = {
    dscp: 10,
    ecn: 2,
    ident: 1,
    dontFragment: false,
    moreFragments: false,
    fragmentOffset: 0,
    ttl: 1,
    protocol: 17,
    src: 1,
    dst: 2,
  };

  test('writes at an offset, leaves the rest alone, checksum verifies', () => {
    const buf = new Uint8Array(26).fill(0xee);
    assert.equal(emitIpv4Header(fields, 100, buf, 3), 20);
    assert.equal(toHex(buf.subarray(0, 3)), 'eeeeee');
    assert.equal(toHex(buf.subarray(23)), 'eeeeee');
    assert.ok(verifiesChecksum(onesSum(buf, 3, 23)));
    assert.equal(toHex(buf.subarray(3, 23)), '452a0078000100000111b9480000000100000002');
  });

  test('refuses what no header can carry', () => {
    const buf = new Uint8Array(20);
    assert.throws(() => emitIpv4Header(fields, 65516, buf, 0), RangeError);
    assert.throws(() => emitIpv4Header(fields, -1, buf, 0), RangeError);
    assert.throws(() => emitIpv4Header({ ...fields, fragmentOffset: 7 }, 0, buf, 0), RangeError);
    assert.throws(() => emitIpv4Header({ ...fields, fragmentOffset: 65536 }, 0, buf, 0), RangeError);
    assert.throws(() => emitIpv4Header(fields, 0, buf, 1), RangeError);
    assert.equal(emitIpv4Header(fields, 65515, buf, 0), 20);
  });
});

describe('properties', () => {
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
  const header = fc
    .record({
      dscp: fc.integer({ min: 0, max: 63 }),
      ecn: fc.integer({ min: 0, max: 3 }),
      ident: fc.integer({ min: 0, max: 0xffff }),
      dontFragment: fc.boolean(),
      moreFragments: fc.boolean(),
      fragmentOffset: fc.integer({ min: 0, max: 1000 }).map((x) => x * 8),
      ttl: fc.integer({ min: 0, max: 255 }),
      protocol: fc.integer({ min: 0, max: 255 }),
      src: u32,
      dst: u32,
    })
    .map((r) => ({ ...r }));

  test('emit then parse gives the same record', () => {
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 64 }), fc.nat(20), (h, payload, padding) => {
        const b = new Uint8Array(IPV4_HEADER_LENGTH + payload.length + padding).fill(0x55);
        emitIpv4Header(h, payload.length, b, 0);
        b.set(payload, IPV4_HEADER_LENGTH);
        const p = parsed(b);
        assert.deepEqual(
          { ...p, payload: toHex(p.payload) },
          {
            ...h,
            headerLength: 20,
            totalLength: 20 + payload.length,
            checksum: p.checksum, // verified below
            isFragment: h.moreFragments || h.fragmentOffset !== 0,
            payload: toHex(payload),
          },
        );
        assert.equal(internetChecksum(b, 0, 20), 0);
        assert.equal(toHex(emitted(p, p.payload)), toHex(b.subarray(0, p.totalLength)));
      }),
    );
  });

  test('never throws on arbitrary bytes behind a plausible first byte', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0x45, 0x46, 0x4f, 0x44, 0x65),
        fc.uint8Array({ maxLength: 80 }),
        (v, rest) => {
          const b = Uint8Array.from([v, ...rest]);
          if (b.length >= 4) writeU16(b, 2, Math.min(readLen(rest), b.length));
          const r = parseIpv4(b, false);
          if (!isWireError(r)) {
            assert.ok(r.headerLength <= r.totalLength && r.totalLength <= b.length);
            assert.equal(r.payload.length, r.totalLength - r.headerLength);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

function readLen(b: Uint8Array): number {
  return b.length >= 3 ? (b[1] << 8) | b[2] : 0;
}
