import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ipv4FromString, ipv6FromString } from '../../src/wire/address.ts';
import { fromHex } from '../../src/wire/bytes.ts';
import {
  finishChecksum,
  fold,
  internetChecksum,
  onesSum,
  pseudoHeaderSumV4,
  pseudoHeaderSumV6,
  updateChecksum16,
  updateChecksum32,
  verifiesChecksum,
} from '../../src/wire/checksum.ts';

describe('internet checksum (RFC 1071)', () => {
  test('RFC 1071 3 worked example: 0001 f203 f4f5 f6f7 sums to ddf2', () => {
    const b = fromHex('0001f203f4f5f6f7');
    assert.equal(fold(onesSum(b, 0, b.length)), 0xddf2);
    assert.equal(internetChecksum(b), ~0xddf2 & 0xffff);
  });

  test('an IPv4 header with its computed checksum verifies', () => {
    // 198.18.0.1 -> 198.18.0.2, TCP, ttl 64, id 0x1c46, DF, checksum field zeroed.
    const hdr = fromHex('4500 0028 1c46 4000 4006 0000 c612 0001 c612 0002');
    const sum = internetChecksum(hdr);
    hdr[10] = sum >>> 8;
    hdr[11] = sum & 0xff;
    assert.ok(verifiesChecksum(onesSum(hdr, 0, hdr.length)));
  });

  test('odd length pads with a zero byte on the right', () => {
    assert.equal(internetChecksum(fromHex('ab')), ~0xab00 & 0xffff);
    assert.equal(internetChecksum(fromHex('0102ab')), ~(0x0102 + 0xab00) & 0xffff);
  });

  test('an empty range and a range within a larger buffer', () => {
    assert.equal(internetChecksum(new Uint8Array(0)), 0xffff);
    const b = fromHex('ffff0001f203ffff');
    assert.equal(internetChecksum(b, 2, 6), finishChecksum(0x0001 + 0xf203));
  });

  test('property: the unrolled sum equals a word-at-a-time reference for any range', () => {
    const reference = (b: Uint8Array, start: number, end: number) => {
      let sum = 0;
      for (let i = start; i < end; i += 2) sum += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
      return sum;
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), fc.nat(), (b, x, y) => {
        const start = b.length === 0 ? 0 : x % (b.length + 1);
        const end = start + (b.length - start === 0 ? 0 : y % (b.length - start + 1));
        assert.equal(fold(onesSum(b, start, end, 7)), fold(reference(b, start, end) + 7));
      }),
      { numRuns: 3000 },
    );
  });

  test('pseudo-headers (IPv4 RFC 793, IPv6 RFC 8200 8.1)', () => {
    const s4 = pseudoHeaderSumV4(ipv4FromString('198.18.0.1')!, ipv4FromString('198.18.0.2')!, 6, 40);
    assert.equal(s4, 0xc612 + 0x0001 + 0xc612 + 0x0002 + 6 + 40);
    const s6 = pseudoHeaderSumV6(ipv6FromString('fd00::1')!, ipv6FromString('fd00::2')!, 58, 0x1_0002);
    assert.equal(s6, 0xfd00 + 1 + 0xfd00 + 2 + 1 + 2 + 58);
  });
});

describe('incremental update (RFC 1624)', () => {
  test('property: updating one word equals recomputing', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 2, maxLength: 64 }).filter((a) => a.length % 2 === 0),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (data, at, word) => {
          const i = (at % (data.length / 2)) * 2;
          const before = internetChecksum(data);
          const old = (data[i] << 8) | data[i + 1];
          data[i] = word >>> 8;
          data[i + 1] = word & 0xff;
          const after = internetChecksum(data);
          const inc = updateChecksum16(before, old, word);
          // RFC 1624 4: the incremental form may yield 0x0000 where a full recompute gives 0xffff
          // (both are the same one's complement zero); any other difference is a bug.
          assert.ok(inc === after || (inc ^ after) === 0xffff, `inc ${inc} full ${after}`);
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('property: updating a 32-bit field (an address, a sequence number) equals recomputing', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 20, maxLength: 20 }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (data, v) => {
          const before = internetChecksum(data);
          const old = ((data[12] << 24) | (data[13] << 16) | (data[14] << 8) | data[15]) >>> 0;
          data[12] = v >>> 24;
          data[13] = v >>> 16;
          data[14] = v >>> 8;
          data[15] = v;
          const inc = updateChecksum32(before, old, v);
          const after = internetChecksum(data);
          assert.ok(inc === after || (inc ^ after) === 0xffff, `inc ${inc} full ${after}`);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
