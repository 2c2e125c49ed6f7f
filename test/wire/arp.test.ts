import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { macFromString, ipv4FromString as parseIpv4Text } from '../../src/wire/address.ts';
import {
  ARP_LENGTH,
  ARP_REPLY,
  ARP_REQUEST,
  type ArpPacket,
  arpReplyTo,
  arpRequest,
  emitArp,
  gratuitousArp,
  isArpProbe,
  isGratuitousArp,
  parseArp,
} from '../../src/wire/arp.ts';
import { fromHex, toHex } from '../../src/wire/bytes.ts';
import { isWireError, WireError } from '../../src/wire/error.ts';

// scapy: ARP(op=1,hwsrc="02:00:00:00:00:01",psrc="198.18.0.1",hwdst="00:00:00:00:00:00",pdst="198.18.0.2")
const REQUEST = '0001080006040001020000000001c6120001000000000000c6120002';
// scapy: ARP(op=2,hwsrc="02:00:00:00:00:02",psrc="198.18.0.2",hwdst="02:00:00:00:00:01",pdst="198.18.0.1")
const REPLY = '0001080006040002020000000002c6120002020000000001c6120001';
// scapy: ARP(op=1,hwsrc="00:00:5e:00:01:07",psrc="198.18.0.100",hwdst="00:00:00:00:00:00",pdst="198.18.0.100")
const GRATUITOUS = '000108000604000100005e000107c6120064000000000000c6120064';

const ip = (s: string) => parseIpv4Text(s)!;
const mac = (s: string) => macFromString(s)!;

function parsed(b: Uint8Array): ArpPacket {
  const p = parseArp(b);
  if (isWireError(p)) assert.fail(p.toString());
  return p;
}

function emitted(p: ArpPacket): string {
  const out = new Uint8Array(ARP_LENGTH);
  assert.equal(emitArp(p, out, 0), ARP_LENGTH);
  return toHex(out);
}

describe('parseArp known answers', () => {
  test('request', () => {
    const p = parsed(fromHex(REQUEST));
    assert.deepEqual(p, {
      op: ARP_REQUEST,
      senderMac: mac('02:00:00:00:00:01'),
      senderIp: ip('198.18.0.1'),
      targetMac: 0,
      targetIp: ip('198.18.0.2'),
    });
    assert.equal(emitted(p), REQUEST);
  });

  test('reply', () => {
    const p = parsed(fromHex(REPLY));
    assert.deepEqual(p, {
      op: ARP_REPLY,
      senderMac: mac('02:00:00:00:00:02'),
      senderIp: ip('198.18.0.2'),
      targetMac: mac('02:00:00:00:00:01'),
      targetIp: ip('198.18.0.1'),
    });
    assert.equal(emitted(p), REPLY);
  });

  test('Ethernet padding after the 28 bytes is ignored', () => {
    const b = new Uint8Array(46).fill(0xaa);
    b.set(fromHex(REPLY));
    assert.equal(emitted(parsed(b)), REPLY);
  });
});

describe('helpers', () => {
  test('gratuitousArp matches the RFC 5227 announcement scapy builds', () => {
    const g = gratuitousArp(mac('00:00:5e:00:01:07'), ip('198.18.0.100'));
    assert.equal(emitted(g), GRATUITOUS);
    assert.ok(isGratuitousArp(g));
    assert.ok(isGratuitousArp(parsed(fromHex(GRATUITOUS))));
    assert.ok(!isGratuitousArp(parsed(fromHex(REQUEST))));
    assert.ok(!isArpProbe(g));
  });

  test('arpRequest and arpReplyTo build the scapy request and its reply', () => {
    const req = arpRequest(mac('02:00:00:00:00:01'), ip('198.18.0.1'), ip('198.18.0.2'));
    assert.equal(emitted(req), REQUEST);
    assert.equal(emitted(arpReplyTo(req, mac('02:00:00:00:00:02'))), REPLY);
  });

  test('a probe has sender IP 0 and is not gratuitous', () => {
    const probe = arpRequest(mac('02:00:00:00:00:01'), 0, ip('198.18.0.1'));
    assert.ok(isArpProbe(probe));
    assert.ok(!isGratuitousArp(probe));
    assert.ok(!isArpProbe(arpReplyTo(probe, 5)));
  });
});

describe('parseArp rejections', () => {
  test('every truncation is a truncated WireError, never a throw', () => {
    const full = fromHex(REQUEST);
    for (let n = 0; n < ARP_LENGTH; n++) {
      const r = parseArp(full.subarray(0, n));
      assert.ok(r instanceof WireError, `length ${n}`);
      assert.equal(r.layer, 'arp');
      assert.equal(r.kind, 'truncated');
    }
  });

  const mutations: [string, number, number][] = [
    ['hardware type 6 (IEEE 802)', 1, 6],
    ['protocol type IPv6', 2, 0x86],
    ['hardware length 8', 4, 8],
    ['protocol length 16', 5, 16],
    ['opcode 3 (RARP request)', 7, 3],
    ['opcode 0', 7, 0],
  ];
  for (const [name, at, value] of mutations) {
    test(`${name} is unsupported`, () => {
      const b = fromHex(REQUEST);
      b[at] = value;
      const r = parseArp(b);
      assert.ok(r instanceof WireError);
      assert.equal(r.kind, 'unsupported');
    });
  }

  test('emitArp refuses a buffer too small', () => {
    assert.throws(() => emitArp(gratuitousArp(1, 1), new Uint8Array(30), 3), RangeError);
  });
});

describe('properties', () => {
  test('emit then parse gives the same record', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(ARP_REQUEST, ARP_REPLY),
        fc.integer({ min: 0, max: 0xffff_ffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (op, senderMac, senderIp, targetMac, targetIp) => {
          const p: ArpPacket = { op, senderMac, senderIp, targetMac, targetIp };
          const out = new Uint8Array(ARP_LENGTH + 4);
          emitArp(p, out, 4);
          assert.deepEqual(parsed(out.subarray(4)), p);
        },
      ),
    );
  });

  test('never throws on arbitrary bytes behind a valid fixed part', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.boolean(), (tail, keep) => {
        const b = keep ? Uint8Array.from([...fromHex(REQUEST).subarray(0, 8), ...tail]) : tail;
        const r = parseArp(b);
        if (!isWireError(r)) assert.equal(emitted(r), toHex(b.subarray(0, ARP_LENGTH)));
      }),
    );
  });
});
