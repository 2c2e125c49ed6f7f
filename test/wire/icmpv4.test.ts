import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/wire/bytes.ts';
import { internetChecksum, onesSum, verifiesChecksum } from '../../src/wire/checksum.ts';
import { isWireError, type WireError } from '../../src/wire/error.ts';
import {
  emitIcmpv4,
  ICMP_DEST_UNREACHABLE,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_FRAG_NEEDED_CODE,
  ICMP_PORT_UNREACHABLE_CODE,
  ICMP_TIME_EXCEEDED,
  ICMP_TTL_EXCEEDED_CODE,
  type Icmpv4Message,
  icmpv4Length,
  parseIcmpv4,
} from '../../src/wire/icmpv4.ts';
import { guard as guarded } from '../support/guard.ts';

// Reference bytes from scapy 2.5 (/usr/bin/python3): the IPv4 payload of each message.
// The invoking datagram: IPv4 198.18.0.2 -> 198.18.0.9, DF, total length 1500, TCP, + 8 bytes of TCP.
const INVOKING = '450005dc000140004006a8ebc6120002c612000900509c4000000005';
const V = {
  echoRequest: '080054371234fffe6162636465666768', // id 0x1234, seq 0xfffe, data "abcdefgh"
  fragNeeded: `03045aee00000578${INVOKING}`, // ICMP(type=3, code=4, nexthopmtu=1400)
  timeExceeded: `0b00586a00000000${INVOKING}`,
  portUnreachable: `0303606700000000${INVOKING}`,
  timestampRequest: '0d00f2e900070009000000010000000200000003', // type 13: parsed generically
};

function ok(b: Uint8Array, verify = true): Icmpv4Message {
  const r = parseIcmpv4(b, verify);
  if (isWireError(r)) assert.fail(`unexpected ${r}`);
  return r;
}

function err(b: Uint8Array, verify = true): WireError {
  const r = parseIcmpv4(b, verify);
  if (!isWireError(r)) assert.fail('expected a WireError');
  return r;
}

function reEmit(m: Icmpv4Message): Uint8Array {
  const out = new Uint8Array(icmpv4Length(m));
  assert.equal(emitIcmpv4(m, out, 0), out.length);
  return out;
}

describe('parseIcmpv4 known answers', () => {
  test('echo request: every field', () => {
    const b = fromHex(V.echoRequest);
    const m = ok(b);
    assert.deepEqual(m, {
      type: ICMP_ECHO_REQUEST,
      code: 0,
      checksum: 0x5437,
      ident: 0x1234,
      seqNo: 0xfffe,
      mtu: 0,
      rest: 0x1234fffe,
      data: new TextEncoder().encode('abcdefgh'),
    });
    assert.equal(m.data.buffer, b.buffer);
    assert.equal(m.data.byteOffset, b.byteOffset + 8);
  });

  test('fragmentation needed: next-hop MTU and the invoking datagram', () => {
    const m = ok(fromHex(V.fragNeeded));
    assert.equal(m.type, ICMP_DEST_UNREACHABLE);
    assert.equal(m.code, ICMP_FRAG_NEEDED_CODE);
    assert.equal(m.checksum, 0x5aee);
    assert.equal(m.mtu, 1400);
    assert.equal(m.rest, 1400);
    assert.equal(m.ident, 0);
    assert.equal(m.seqNo, 0);
    assert.equal(toHex(m.data), INVOKING);
  });

  test('time exceeded and port unreachable: no MTU, no echo fields', () => {
    const t = ok(fromHex(V.timeExceeded));
    assert.equal(t.type, ICMP_TIME_EXCEEDED);
    assert.equal(t.code, ICMP_TTL_EXCEEDED_CODE);
    assert.equal(t.mtu, 0);
    assert.equal(toHex(t.data), INVOKING);
    const p = ok(fromHex(V.portUnreachable));
    assert.equal(p.type, ICMP_DEST_UNREACHABLE);
    assert.equal(p.code, ICMP_PORT_UNREACHABLE_CODE);
    assert.equal(p.mtu, 0);
  });

  test('other types parse generically', () => {
    const m = ok(fromHex(V.timestampRequest));
    assert.equal(m.type, 13);
    assert.equal(m.rest, 0x00070009);
    assert.equal(m.ident, 0);
    assert.equal(m.seqNo, 0);
    assert.equal(toHex(m.data), '000000010000000200000003');
  });

  test('the MTU is read only for code 4 of destination unreachable', () => {
    const b = fromHex(V.portUnreachable);
    b[7] = 0x20; // rest = 0x20, checksum now wrong
    assert.equal(ok(b, false).mtu, 0);
    b[1] = ICMP_FRAG_NEEDED_CODE;
    assert.equal(ok(b, false).mtu, 0x20);
  });
});

describe('parseIcmpv4 rejections', () => {
  test('truncated at every length below 8', () => {
    const b = fromHex(V.echoRequest);
    for (let n = 0; n < 8; n++) {
      assert.equal(err(b.subarray(0, n)).kind, 'truncated', `length ${n}`);
      assert.equal(err(b.subarray(0, n), false).kind, 'truncated', `length ${n}`);
    }
    // 8 bytes is a complete (data-less) message; the checksum then covers fewer bytes.
    const m = ok(b.subarray(0, 8), false);
    assert.equal(m.data.length, 0);
  });

  test('bad checksum anywhere; verifyChecksum=false skips the check', () => {
    const b = fromHex(V.fragNeeded);
    for (let i = 0; i < b.length; i++) {
      const c = b.slice();
      c[i] ^= 0x04;
      assert.equal(err(c).kind, 'checksum', `byte ${i}`);
      assert.equal(err(c).layer, 'icmpv4');
      ok(c, false);
    }
  });

  test('never throws and never reads out of range on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.boolean(), (bytes, verify) => {
        const r = parseIcmpv4(guarded(bytes), verify);
        if (!isWireError(r)) assert.equal(r.data.length, bytes.length - 8);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('emitIcmpv4', () => {
  for (const name of Object.keys(V) as (keyof typeof V)[]) {
    test(`emit(parse(x)) == x: ${name}`, () => {
      assert.equal(toHex(reEmit(ok(fromHex(V[name])))), V[name]);
    });
  }

  test('an echo reply built from fields, at an offset', () => {
    const m: Icmpv4Message = {
      type: ICMP_ECHO_REPLY,
      code: 0,
      checksum: 0xdead,
      ident: 0x1234,
      seqNo: 0xfffe,
      mtu: 0,
      rest: 0, // ignored for echo: ident and seqNo win
      data: new TextEncoder().encode('abcdefgh'),
    };
    const buf = new Uint8Array(40).fill(0xaa);
    assert.equal(emitIcmpv4(m, buf, 20), 16);
    assert.equal(buf[19], 0xaa);
    assert.equal(buf[36], 0xaa);
    const out = buf.subarray(20, 36);
    assert.equal(internetChecksum(out), 0);
    // The request vector with type 0 and its checksum adjusted by +0x0800.
    assert.equal(toHex(out), '00005c371234fffe6162636465666768');
  });

  test('fragmentation needed built from mtu, rest ignored except its unused high half', () => {
    const m: Icmpv4Message = {
      type: ICMP_DEST_UNREACHABLE,
      code: ICMP_FRAG_NEEDED_CODE,
      checksum: 0,
      ident: 0,
      seqNo: 0,
      mtu: 1400,
      rest: 0,
      data: fromHex(INVOKING),
    };
    assert.equal(toHex(reEmit(m)), V.fragNeeded);
  });

  test('other types write rest verbatim', () => {
    const m = ok(fromHex(V.timestampRequest));
    const out = reEmit({ ...m, ident: 99, seqNo: 99, mtu: 99 });
    assert.equal(toHex(out), V.timestampRequest);
  });

  test('data already in place is not copied but still checksummed', () => {
    const buf = new Uint8Array(30);
    const data = buf.subarray(10, 14);
    data.set([1, 2, 3, 4]);
    const m: Icmpv4Message = {
      type: ICMP_ECHO_REQUEST,
      code: 0,
      checksum: 0,
      ident: 1,
      seqNo: 2,
      mtu: 0,
      rest: 0,
      data,
    };
    assert.equal(emitIcmpv4(m, buf, 2), 12);
    assert.ok(verifiesChecksum(onesSum(buf, 2, 14)));
    assert.deepEqual(Array.from(ok(buf.subarray(2, 14)).data), [1, 2, 3, 4]);
  });

  test('throws RangeError when the buffer is too small', () => {
    const m = ok(fromHex(V.echoRequest));
    assert.throws(() => emitIcmpv4(m, new Uint8Array(15), 0), RangeError);
    assert.throws(() => emitIcmpv4(m, new Uint8Array(16), 1), RangeError);
  });

  test('property: emit -> parse gives the same record', () => {
    const arb = fc.record({
      type: fc.oneof(fc.constantFrom(0, 3, 8, 11), fc.nat({ max: 255 })),
      code: fc.oneof(fc.constant(4), fc.nat({ max: 255 })),
      ident: fc.nat({ max: 0xffff }),
      seqNo: fc.nat({ max: 0xffff }),
      mtu: fc.nat({ max: 0xffff }),
      rest: fc.nat({ max: 0xffffffff }),
      data: fc.uint8Array({ maxLength: 40 }),
    });
    fc.assert(
      fc.property(arb, (r) => {
        const m: Icmpv4Message = { ...r, checksum: 0 };
        const out = reEmit(m);
        const back = ok(out);
        const echo = r.type === 0 || r.type === 8;
        const fragNeeded = r.type === 3 && r.code === 4;
        assert.equal(back.type, r.type);
        assert.equal(back.code, r.code);
        assert.equal(back.ident, echo ? r.ident : 0);
        assert.equal(back.seqNo, echo ? r.seqNo : 0);
        assert.equal(back.mtu, fragNeeded ? r.mtu : 0);
        if (!echo && !fragNeeded) assert.equal(back.rest, r.rest);
        assert.deepEqual(back.data, r.data);
        assert.equal(toHex(reEmit(back)), toHex(out));
      }),
      { numRuns: 1000 },
    );
  });
});
