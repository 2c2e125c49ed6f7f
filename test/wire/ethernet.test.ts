import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { macFromString } from '../../src/wire/address.ts';
import { fromHex, toHex } from '../../src/wire/bytes.ts';
import { isWireError, WireError } from '../../src/wire/error.ts';
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
  type EthernetFrame,
  emitEthernet,
  emitEthernetHeader,
  ethernetHeaderLength,
  ethernetLength,
  NO_VLANS,
  parseEthernet,
  type VlanTag,
} from '../../src/wire/ethernet.ts';

// scapy: Ether(dst="00:11:22:33:44:55",src="66:77:88:99:aa:bb")/Dot1Q(vlan=100,prio=5,id=1)/
//        IP(src="198.18.0.1",dst="198.18.0.2",id=0x1234,ttl=64,flags="DF")/TCP(sport=1234,dport=80,seq=1,ack=2,flags="A")
const VLAN_IP_TCP =
  '00112233445566778899aabb8100b0640800450000281234400040069c74c6120001c612000204d20050000000010000000250102000fe870000';
// scapy: Ether(dst="ff:ff:ff:ff:ff:ff",src="02:00:00:00:00:01",type=0x88a8)/Dot1AD(vlan=10,prio=3)/Dot1Q(vlan=4094)/
//        IPv6(src="fd00::1",dst="fd00::2")/ICMPv6EchoRequest()
const QINQ_IPV6 =
  'ffffffffffff02000000000188a8600a81000ffe86dd6000000000083a40fd000000000000000000000000000001fd000000000000000000000000000002800085b800000000';
// scapy: Ether(dst="02:00:00:00:00:01",src="02:00:00:00:00:02")/ARP(op=2,...)
const UNTAGGED_ARP = '02000000000102000000000208060001080006040002020000000002c6120002020000000001c6120001';

function parsed(hex: string): EthernetFrame {
  const f = parseEthernet(fromHex(hex));
  if (isWireError(f)) assert.fail(f.toString());
  return f;
}

function roundTrip(f: EthernetFrame): Uint8Array {
  const out = new Uint8Array(ethernetLength(f));
  assert.equal(emitEthernet(f, out, 0), out.length);
  return out;
}

describe('parseEthernet known answers', () => {
  test('802.1Q tagged IPv4', () => {
    const f = parsed(VLAN_IP_TCP);
    assert.equal(f.dst, macFromString('00:11:22:33:44:55'));
    assert.equal(f.src, macFromString('66:77:88:99:aa:bb'));
    assert.deepEqual(f.vlans, [{ tpid: ETHERTYPE_VLAN, pcp: 5, dei: true, vid: 100 }]);
    assert.equal(f.etherType, ETHERTYPE_IPV4);
    assert.equal(ethernetHeaderLength(f), 18);
    assert.equal(toHex(f.payload), VLAN_IP_TCP.slice(36));
    assert.equal(toHex(roundTrip(f)), VLAN_IP_TCP);
  });

  test('802.1ad S-tag over 802.1Q C-tag over IPv6', () => {
    const f = parsed(QINQ_IPV6);
    assert.equal(f.dst, 0xffff_ffff_ffff);
    assert.equal(f.src, 0x0200_0000_0001);
    assert.deepEqual(f.vlans, [
      { tpid: ETHERTYPE_QINQ, pcp: 3, dei: false, vid: 10 },
      { tpid: ETHERTYPE_VLAN, pcp: 0, dei: false, vid: 4094 },
    ]);
    assert.equal(f.etherType, ETHERTYPE_IPV6);
    assert.equal(ethernetHeaderLength(f), 22);
    assert.equal(f.payload.length, 48);
    assert.equal(f.payload[0], 0x60);
    assert.equal(toHex(roundTrip(f)), QINQ_IPV6);
  });

  test('untagged frames share the frozen empty tag list', () => {
    const f = parsed(UNTAGGED_ARP);
    assert.equal(f.vlans, NO_VLANS);
    assert.ok(Object.isFrozen(f.vlans));
    assert.equal(f.etherType, ETHERTYPE_ARP);
    assert.equal(f.payload.length, 28);
    assert.equal(toHex(roundTrip(f)), UNTAGGED_ARP);
  });

  test('payload is a zero-copy view', () => {
    const b = fromHex(UNTAGGED_ARP);
    const f = parseEthernet(b) as EthernetFrame;
    assert.equal(f.payload.buffer, b.buffer);
    assert.equal(f.payload.byteOffset, 14);
  });

  test('a header with nothing after it has an empty payload', () => {
    const f = parsed(UNTAGGED_ARP.slice(0, 28));
    assert.equal(f.payload.length, 0);
  });
});

describe('parseEthernet rejections', () => {
  test('every truncation of the header is a WireError, never a throw', () => {
    for (const hex of [VLAN_IP_TCP, QINQ_IPV6, UNTAGGED_ARP]) {
      const full = fromHex(hex);
      const header = ethernetHeaderLength(parseEthernet(full) as EthernetFrame);
      for (let n = 0; n < header; n++) {
        const r = parseEthernet(full.subarray(0, n));
        assert.ok(r instanceof WireError, `length ${n}`);
        assert.equal(r.layer, 'ethernet');
        assert.equal(r.kind, 'truncated');
      }
    }
  });

  test('an 802.3 length field is unsupported, also behind a tag', () => {
    const b = fromHex(UNTAGGED_ARP);
    b[12] = 0x05;
    b[13] = 0xdc; // 1500
    const r = parseEthernet(b);
    assert.ok(r instanceof WireError);
    assert.equal(r.kind, 'unsupported');
    const t = fromHex(VLAN_IP_TCP);
    t[16] = 0x00;
    t[17] = 0x2e;
    const rt = parseEthernet(t);
    assert.ok(rt instanceof WireError);
    assert.equal(rt.kind, 'unsupported');
    // 0x0600 itself is the first EtherType.
    b[12] = 0x06;
    b[13] = 0x00;
    assert.equal((parseEthernet(b) as EthernetFrame).etherType, 0x0600);
  });

  test('a frame that ends inside a tag is truncated', () => {
    const c = new Uint8Array(14 + 4);
    c[12] = 0x81;
    c[16] = 0x81; // the inner EtherType slot names another tag, with no room for its TCI
    const r = parseEthernet(c);
    assert.ok(r instanceof WireError);
    assert.equal(r.kind, 'truncated');
  });
});

describe('emit', () => {
  test('emitEthernetHeader writes only the header and masks tag fields', () => {
    const buf = new Uint8Array(30).fill(0xee);
    const n = emitEthernetHeader(
      {
        dst: 1,
        src: 2,
        vlans: [{ tpid: ETHERTYPE_VLAN, pcp: 15, dei: false, vid: 0x1fff }],
        etherType: ETHERTYPE_IPV6,
      },
      buf,
      4,
    );
    assert.equal(n, 18);
    assert.equal(toHex(buf), `eeeeeeee000000000001000000000002${'8100efff86dd'}eeeeeeeeeeeeeeee`);
  });

  test('emitEthernet skips the copy when the payload already sits in place', () => {
    const buf = new Uint8Array(14 + 4).fill(0);
    const payload = buf.subarray(14);
    payload.set([1, 2, 3, 4]);
    const n = emitEthernet({ dst: 3, src: 4, vlans: NO_VLANS, etherType: 0x0800, payload }, buf, 0);
    assert.equal(n, 18);
    assert.equal(toHex(buf), '000000000003000000000004080001020304');
  });

  test('emitEthernet copies a payload from elsewhere', () => {
    const buf = new Uint8Array(20);
    const n = emitEthernet(
      { dst: 3, src: 4, vlans: NO_VLANS, etherType: 0x0800, payload: Uint8Array.of(9, 8) },
      buf,
      2,
    );
    assert.equal(n, 16);
    assert.equal(toHex(buf.subarray(2, 18)), '00000000000300000000000408000908');
  });

  test('a buffer too small is a RangeError (a caller bug)', () => {
    assert.throws(
      () => emitEthernetHeader({ dst: 0, src: 0, vlans: NO_VLANS, etherType: 0x0800 }, new Uint8Array(13), 0),
      RangeError,
    );
    assert.throws(
      () =>
        emitEthernet(
          { dst: 0, src: 0, vlans: NO_VLANS, etherType: 0x0800, payload: new Uint8Array(2) },
          new Uint8Array(15),
          0,
        ),
      RangeError,
    );
  });
});

describe('properties', () => {
  const mac = fc.integer({ min: 0, max: 0xffff_ffff_ffff });
  const tag: fc.Arbitrary<VlanTag> = fc
    .record({
      tpid: fc.constantFrom(ETHERTYPE_VLAN, ETHERTYPE_QINQ),
      pcp: fc.integer({ min: 0, max: 7 }),
      dei: fc.boolean(),
      vid: fc.integer({ min: 0, max: 4095 }),
    })
    .map((t) => ({ ...t }));
  const etherType = fc
    .integer({ min: 0x0600, max: 0xffff })
    .filter((t) => t !== ETHERTYPE_VLAN && t !== ETHERTYPE_QINQ);

  test('emit then parse gives the same record', () => {
    fc.assert(
      fc.property(
        mac,
        mac,
        fc.array(tag, { maxLength: 4 }),
        etherType,
        fc.uint8Array({ maxLength: 64 }),
        (dst, src, vlans, type, payload) => {
          const f: EthernetFrame = { dst, src, vlans, etherType: type, payload };
          const g = parseEthernet(roundTrip(f));
          if (isWireError(g)) return assert.fail(g.toString());
          assert.deepEqual({ ...g, vlans: [...g.vlans] }, f);
        },
      ),
    );
  });

  test('never throws on arbitrary bytes, and what it accepts re-emits identically', () => {
    const tpid = fc.constantFrom(
      Uint8Array.of(0x81, 0x00),
      Uint8Array.of(0x88, 0xa8),
      Uint8Array.of(0x08, 0x00),
    );
    // Bytes spliced with TPIDs so that tag stacks and truncated tags actually occur.
    const frame = fc
      .array(fc.oneof(fc.uint8Array({ maxLength: 6 }), tpid), { maxLength: 12 })
      .map((parts) => Uint8Array.from(parts.flatMap((p) => [...p])));
    fc.assert(
      fc.property(frame, (b) => {
        const f = parseEthernet(b);
        if (!isWireError(f)) assert.equal(toHex(roundTrip(f)), toHex(b));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('tag stack bound', () => {
  test('four tags parse, a fifth is refused (no tag records for a frame made of tags)', async () => {
    const { parseEthernet, MAX_VLAN_TAGS } = await import('../../src/wire/ethernet.ts');
    const { isWireError } = await import('../../src/wire/error.ts');
    const frame = (tags: number) => {
      const b = new Uint8Array(14 + 4 * tags + 20);
      b.fill(0x02, 0, 12);
      for (let i = 0; i < tags; i++) {
        b[12 + 4 * i] = 0x81;
        b[13 + 4 * i] = 0x00;
        b[15 + 4 * i] = i + 1;
      }
      b[12 + 4 * tags] = 0x08;
      return b;
    };
    const ok = parseEthernet(frame(MAX_VLAN_TAGS));
    assert.ok(!isWireError(ok));
    assert.deepEqual(
      ok.vlans.map((v) => v.vid),
      [1, 2, 3, 4],
    );
    const bad = parseEthernet(frame(MAX_VLAN_TAGS + 1));
    assert.ok(isWireError(bad) && bad.kind === 'unsupported');
  });
});
