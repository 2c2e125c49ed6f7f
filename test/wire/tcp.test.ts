import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ipv6FromString } from '../../src/wire/address.ts';
import { fromHex, toHex } from '../../src/wire/bytes.ts';
import { onesSum, pseudoHeaderSumV4, pseudoHeaderSumV6, verifiesChecksum } from '../../src/wire/checksum.ts';
import { isWireError, type WireError } from '../../src/wire/error.ts';
import {
  emitTcp,
  parseTcp,
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_NS,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TCP_URG,
  type TcpSegment,
  tcpFlagsToString,
  tcpHeaderLength,
} from '../../src/wire/tcp.ts';
import { tcp } from '../support/build.ts';
import { guard as guarded } from '../support/guard.ts';

// Reference bytes from scapy 2.5 (/usr/bin/python3), IPv4 198.18.0.1 <-> 198.18.0.2 unless noted.
const A = 0xc6120001;
const B = 0xc6120002;
const V = {
  // Linux SYN layout: MSS, SACK-PERM+TS, NOP WS.
  syn: '9c400050fffffff000000000a002faf0dfff0000020405b40402080a112233440000000001030307',
  // SYN-ACK without timestamps: MSS, NOP NOP SACK-PERM, NOP WS(14). B -> A.
  synackNoTs: '00509c4001020304fffffff18012ffff424a0000020405b4010104020103030e',
  // Established PSH,ACK with NOP NOP TS and 5 bytes of data.
  ackTsData: '9c400050fffffffe01020305801801f6043800000101080afffffff00000000168656c6c6f',
  // ACK with NOP NOP TS and NOP NOP SACK of 3 blocks (60-byte header).
  ackTsSack3:
    '9c400050000003e8000007d0f01003e8be1d00000101080a00000007000000080101051afffffff00000001000000100000002000000030000000400',
  // ACK with NOP NOP SACK of 4 blocks.
  ackSack4:
    '000100020000000100000002e01000038d380000010105220000000100000002000000030000000400000005000000060000000700000008',
  // RST, no options. B -> A.
  rst: '00509c4080000000000000005004000007280000',
  // Every flag including NS, reserved bits 101, urgent pointer.
  flagsAll: '0005000600000007000000085bff00096bcdabcd',
  // Not Linux's order: WS, TS, MSS, EOL padding.
  oddOrder: '000500060000000700000008a0020009a5740000030302080a000000010000000202040218000000',
  // MSS, unknown kind 30 (len 8), NOP NOP, EOL padding.
  unknownOpt: '00050006000000070000000890020009b4be0000020404b01e0801020304050601010000',
  // IPv6 fd00::1 -> fd00::2 SYN.
  v6Syn: '9c4001bb1234567800000000a002fd20aca90000020405a00402080adeadbeef0000000001030307',
};

const sumAB = (len: number) => pseudoHeaderSumV4(A, B, 6, len);
const sumBA = (len: number) => pseudoHeaderSumV4(B, A, 6, len);

function ok(b: Uint8Array, pseudoSum: number | undefined): TcpSegment {
  const r = parseTcp(b, pseudoSum);
  if (isWireError(r)) assert.fail(`unexpected ${r}`);
  return r;
}

function err(b: Uint8Array, pseudoSum: number | undefined): WireError {
  const r = parseTcp(b, pseudoSum);
  if (!isWireError(r)) assert.fail('expected a WireError');
  return r;
}

/** Re-emits a parsed segment into a fresh buffer. */
function reEmit(seg: TcpSegment, pseudoSum: number): Uint8Array {
  const out = new Uint8Array(tcpHeaderLength(seg) + seg.payload.length);
  assert.equal(emitTcp(seg, out, 0, pseudoSum), out.length);
  return out;
}

function segment(over: Partial<TcpSegment>): TcpSegment {
  return tcp({
    srcPort: 1,
    dstPort: 2,
    seq: 3,
    ack: 4,
    headerLength: 20,
    flags: TCP_ACK,
    window: 5,
    ...over,
  });
}

/** A segment whose options area is exactly `opts` (a multiple of 4 bytes), without a valid checksum. */
function withOptions(opts: number[]): Uint8Array {
  const b = new Uint8Array(20 + opts.length);
  b[12] = ((20 + opts.length) / 4) << 4;
  b[13] = TCP_ACK;
  b.set(opts, 20);
  return b;
}

describe('parseTcp known answers', () => {
  test('Linux-style SYN: every field', () => {
    const b = fromHex(V.syn);
    const s = ok(b, sumAB(b.length));
    assert.deepEqual(s, {
      srcPort: 40000,
      dstPort: 80,
      seq: 0xfffffff0,
      ack: 0,
      headerLength: 40,
      reserved: 0,
      flags: TCP_SYN,
      window: 64240,
      checksum: 0xdfff,
      urgentPointer: 0,
      mss: 1460,
      windowScale: 7,
      sackPermitted: true,
      sackBlocks: undefined,
      tsVal: 0x11223344,
      tsEcr: 0,
      payload: new Uint8Array(0),
    });
  });

  test('SYN-ACK without timestamps: NOP NOP SACK-PERM, window scale 14', () => {
    const b = fromHex(V.synackNoTs);
    const s = ok(b, sumBA(b.length));
    assert.equal(s.srcPort, 80);
    assert.equal(s.dstPort, 40000);
    assert.equal(s.seq, 0x01020304);
    assert.equal(s.ack, 0xfffffff1);
    assert.equal(s.flags, TCP_SYN | TCP_ACK);
    assert.equal(s.window, 65535);
    assert.equal(s.headerLength, 32);
    assert.equal(s.mss, 1460);
    assert.equal(s.sackPermitted, true);
    assert.equal(s.windowScale, 14);
    assert.equal(s.tsVal, undefined);
    assert.equal(s.tsEcr, undefined);
    assert.equal(s.sackBlocks, undefined);
  });

  test('established ACK with NOP NOP TS (fast path) and data, seq near 2^32', () => {
    const b = fromHex(V.ackTsData);
    const s = ok(b, sumAB(b.length));
    assert.equal(s.seq, 0xfffffffe);
    assert.equal(s.ack, 0x01020305);
    assert.equal(s.flags, TCP_PSH | TCP_ACK);
    assert.equal(s.window, 502);
    assert.equal(s.headerLength, 32);
    assert.equal(s.tsVal, 0xfffffff0);
    assert.equal(s.tsEcr, 1);
    assert.equal(s.mss, undefined);
    assert.equal(s.windowScale, undefined);
    assert.equal(s.sackPermitted, false);
    assert.equal(Buffer.from(s.payload).toString(), 'hello');
    // Zero-copy view of the input.
    assert.equal(s.payload.buffer, b.buffer);
    assert.equal(s.payload.byteOffset, b.byteOffset + 32);
  });

  test('timestamps plus 3 SACK blocks', () => {
    const b = fromHex(V.ackTsSack3);
    const s = ok(b, sumAB(b.length));
    assert.equal(s.headerLength, 60);
    assert.equal(s.tsVal, 7);
    assert.equal(s.tsEcr, 8);
    assert.deepEqual(s.sackBlocks, [0xfffffff0, 0x10, 0x100, 0x200, 0x300, 0x400]);
    assert.equal(s.payload.length, 0);
  });

  test('4 SACK blocks', () => {
    const b = fromHex(V.ackSack4);
    const s = ok(b, sumAB(b.length));
    assert.deepEqual(s.sackBlocks, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(s.tsVal, undefined);
  });

  test('RST without options, seq 2^31', () => {
    const b = fromHex(V.rst);
    const s = ok(b, sumBA(b.length));
    assert.equal(s.flags, TCP_RST);
    assert.equal(s.seq, 0x80000000);
    assert.equal(s.headerLength, 20);
    assert.equal(s.window, 0);
    assert.equal(s.mss, undefined);
    assert.equal(s.sackPermitted, false);
  });

  test('all nine flags, reserved bits and urgent pointer', () => {
    const b = fromHex(V.flagsAll);
    const s = ok(b, sumAB(b.length));
    assert.equal(
      s.flags,
      TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH | TCP_ACK | TCP_URG | TCP_ECE | TCP_CWR | TCP_NS,
    );
    assert.equal(s.flags, 0x1ff);
    assert.equal(s.reserved, 5);
    assert.equal(s.urgentPointer, 0xabcd);
  });

  test('options in another order, EOL padding', () => {
    const b = fromHex(V.oddOrder);
    const s = ok(b, sumAB(b.length));
    assert.equal(s.windowScale, 2);
    assert.equal(s.tsVal, 1);
    assert.equal(s.tsEcr, 2);
    assert.equal(s.mss, 536);
    assert.equal(s.sackPermitted, false);
  });

  test('unknown option kinds are skipped by their length', () => {
    const b = fromHex(V.unknownOpt);
    const s = ok(b, sumAB(b.length));
    assert.equal(s.mss, 1200);
    assert.equal(s.headerLength, 36);
    assert.equal(s.tsVal, undefined);
  });

  test('over IPv6 with the v6 pseudo-header', () => {
    const b = fromHex(V.v6Syn);
    const sum = pseudoHeaderSumV6(ipv6FromString('fd00::1')!, ipv6FromString('fd00::2')!, 6, b.length);
    const s = ok(b, sum);
    assert.equal(s.dstPort, 443);
    assert.equal(s.seq, 0x12345678);
    assert.equal(s.mss, 1440);
    assert.equal(s.tsVal, 0xdeadbeef);
    assert.equal(s.windowScale, 7);
    assert.equal(s.sackPermitted, true);
    assert.equal(err(b, sum + 1).kind, 'checksum');
  });

  test('a repeated option: the last one wins', () => {
    const s = ok(withOptions([2, 4, 0x05, 0xb4, 2, 4, 0x02, 0x18]), undefined);
    assert.equal(s.mss, 536);
    const t = ok(
      withOptions([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 8, 10, 0, 0, 0, 3, 0, 0, 0, 4]),
      undefined,
    );
    assert.equal(t.tsVal, 3);
    assert.equal(t.tsEcr, 4);
  });

  test('EOL ends the list: bytes after it are not options', () => {
    const s = ok(withOptions([3, 3, 5, 0, 2, 0, 0xff, 0xff]), undefined);
    assert.equal(s.windowScale, 5);
    assert.equal(s.mss, undefined);
  });

  test('SACK-permitted alone with NOPs, and the 12-byte TS without NOPs', () => {
    const s = ok(withOptions([4, 2, 1, 1]), undefined);
    assert.equal(s.sackPermitted, true);
    const t = ok(withOptions([8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 9, 0, 0]), undefined);
    assert.equal(t.tsVal, 0xffffffff);
    assert.equal(t.tsEcr, 9);
  });

  test('the checksum covers the data; undefined pseudoSum skips the check', () => {
    const b = fromHex(V.ackTsData);
    b[b.length - 1] ^= 1;
    assert.equal(err(b, sumAB(b.length)).kind, 'checksum');
    assert.equal(ok(b, undefined).payload[4], 'o'.charCodeAt(0) ^ 1);
  });
});

describe('parseTcp rejections', () => {
  test('truncated at every length below the header', () => {
    const b = fromHex(V.syn);
    for (let n = 0; n < b.length; n++) {
      const e = err(b.subarray(0, n), undefined);
      assert.equal(e.kind, 'truncated', `length ${n}`);
      assert.equal(e.layer, 'tcp');
      // With the checksum requested the answer is the same: lengths are checked first.
      assert.equal(err(b.subarray(0, n), sumAB(n)).kind, 'truncated', `length ${n}`);
    }
  });

  test('data offset below 5', () => {
    for (let d = 0; d < 5; d++) {
      const b = withOptions([]);
      b[12] = d << 4;
      const e = err(b, undefined);
      assert.equal(e.kind, 'malformed', `offset ${d}`);
    }
  });

  test('data offset past the end', () => {
    const b = withOptions([1, 1, 1, 1]);
    b[12] = 6 << 4; // 24 bytes, exactly the segment: fine
    ok(b, undefined);
    for (let d = 7; d < 16; d++) {
      b[12] = d << 4;
      assert.equal(err(b, undefined).kind, 'truncated', `offset ${d}`);
    }
  });

  test('bad checksum', () => {
    const b = fromHex(V.syn);
    for (const i of [0, 5, 16, 17, 25, 39]) {
      const c = b.slice();
      c[i] ^= 0x40;
      assert.equal(err(c, sumAB(c.length)).kind, 'checksum', `byte ${i}`);
    }
    assert.equal(err(b, sumBA(b.length) + 1).kind, 'checksum');
    assert.equal(err(b, pseudoHeaderSumV4(A, B, 6, b.length + 1)).kind, 'checksum');
  });

  const malformedCases: [string, number[]][] = [
    ['MSS length 3', [2, 3, 5, 1]],
    ['MSS length 5', [2, 5, 5, 0xb4, 0, 1, 1, 1]],
    ['window scale length 2', [3, 2, 1, 1]],
    ['window scale length 4', [3, 4, 7, 0]],
    ['SACK-permitted length 3', [4, 3, 0, 1]],
    ['SACK-permitted length 4', [4, 4, 0, 0]],
    ['SACK length 2 (no block)', [5, 2, 1, 1]],
    ['SACK length 9', [5, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]],
    ['SACK length 11', [5, 11, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]],
    ['SACK length 14', [5, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0]],
    ['timestamps length 8', [8, 8, 0, 0, 0, 1, 0, 0]],
    ['timestamps length 12', [8, 12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]],
    ['option length 0', [1, 1, 30, 0]],
    ['option length 1', [30, 1, 1, 1]],
    ['known option length 0', [2, 0, 1, 1]],
    ['option past the header', [1, 30, 4, 0]],
    ['MSS past the header', [1, 1, 1, 1, 1, 1, 2, 4]],
    ['timestamps past the header', [1, 1, 8, 10, 0, 0, 0, 1]],
    ['SACK past the header', [1, 1, 1, 1, 5, 10, 0, 0, 0, 1, 0, 0]],
    ['kind in the last byte, no length byte', [1, 1, 1, 30]],
    ['MSS kind in the last byte', [1, 1, 1, 2]],
  ];
  for (const [name, opts] of malformedCases) {
    test(`malformed option: ${name}`, () => {
      const e = err(withOptions(opts), undefined);
      assert.equal(e.kind, 'malformed');
      assert.equal(e.layer, 'tcp');
    });
  }

  test('the 40-byte option space cannot hold a 5-block SACK', () => {
    const opts = new Array<number>(40).fill(0);
    opts[0] = 5;
    opts[1] = 42;
    assert.equal(err(withOptions(opts), undefined).kind, 'malformed');
  });

  test('never throws and never reads out of range on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.boolean(), (bytes, check) => {
        const r = parseTcp(guarded(bytes), check ? 1234 : undefined);
        if (!isWireError(r)) {
          assert.ok(r.headerLength >= 20 && r.headerLength <= bytes.length);
          assert.equal(r.payload.length, bytes.length - r.headerLength);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('never throws on random option areas behind a valid fixed header', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 }).chain((w) => fc.uint8Array({ minLength: 4 * w, maxLength: 4 * w })),
        fc.uint8Array({ maxLength: 8 }),
        (opts, data) => {
          const b = new Uint8Array(20 + opts.length + data.length);
          b.set(withOptions(Array.from(opts)));
          b.set(data, 20 + opts.length);
          const r = parseTcp(guarded(b), undefined);
          if (!isWireError(r)) assert.equal(r.payload.length, data.length);
          else assert.equal(r.kind, 'malformed');
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('emitTcp', () => {
  const linuxLayout: [keyof typeof V, (n: number) => number][] = [
    ['syn', sumAB],
    ['synackNoTs', sumBA],
    ['ackTsData', sumAB],
    ['ackTsSack3', sumAB],
    ['ackSack4', sumAB],
    ['rst', sumBA],
    ['flagsAll', sumAB],
  ];
  for (const [name, sum] of linuxLayout) {
    test(`emit(parse(x)) == x for Linux-layout segment ${name}`, () => {
      const b = fromHex(V[name]);
      const s = ok(b, sum(b.length));
      assert.equal(tcpHeaderLength(s), s.headerLength);
      assert.equal(toHex(reEmit(s, sum(b.length))), V[name]);
    });
  }

  test('emit(parse(x)) == x over IPv6', () => {
    const b = fromHex(V.v6Syn);
    const sum = pseudoHeaderSumV6(ipv6FromString('fd00::1')!, ipv6FromString('fd00::2')!, 6, b.length);
    assert.equal(toHex(reEmit(ok(b, sum), sum)), V.v6Syn);
  });

  test('other option orders are re-emitted in the Linux layout with the same meaning', () => {
    const b = fromHex(V.oddOrder);
    const s = ok(b, sumAB(b.length));
    const out = reEmit(s, sumAB(tcpHeaderLength(s)));
    assert.equal(out.length, 40);
    // MSS 536, NOP NOP TS(1, 2), NOP WS 2.
    assert.equal(toHex(out.subarray(20)), '020402180101080a000000010000000201030302');
    const again = ok(out, sumAB(out.length));
    assert.deepEqual({ ...again, headerLength: 0, checksum: 0 }, { ...s, headerLength: 0, checksum: 0 });
  });

  test('option layouts for each combination', () => {
    const cases: [Partial<TcpSegment>, string][] = [
      [{}, ''],
      [{ mss: 1460 }, '020405b4'],
      [{ sackPermitted: true }, '01010402'],
      [{ windowScale: 0 }, '01030300'],
      [{ tsVal: 1, tsEcr: 2 }, '0101080a0000000100000002'],
      [{ tsVal: 1, tsEcr: undefined }, '0101080a0000000100000000'],
      [{ tsVal: 1, tsEcr: 2, sackPermitted: true }, '0402080a0000000100000002'],
      [{ mss: 1, sackPermitted: true, windowScale: 9 }, '020400010101040201030309'],
      [{ sackBlocks: [5, 6] }, '0101050a0000000500000006'],
      [{ sackBlocks: [] }, ''],
    ];
    for (const [over, hex] of cases) {
      const seg = segment(over);
      const out = new Uint8Array(tcpHeaderLength(seg));
      assert.equal(emitTcp(seg, out, 0, 0), 20 + hex.length / 2);
      assert.equal(toHex(out.subarray(20)), hex, JSON.stringify(over));
      assert.equal(out[12] >>> 4, (20 + hex.length / 2) / 4);
    }
  });

  test('SACK blocks are cut to what fits (Linux: 3 with timestamps), and to 4', () => {
    const withTs = segment({ tsVal: 1, tsEcr: 2, sackBlocks: [1, 2, 3, 4, 5, 6, 7, 8] });
    assert.equal(tcpHeaderLength(withTs), 60);
    const s = ok(reEmit(withTs, 0), undefined);
    assert.deepEqual(s.sackBlocks, [1, 2, 3, 4, 5, 6]);
    const many = segment({ sackBlocks: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] });
    assert.equal(tcpHeaderLength(many), 56);
    assert.deepEqual(ok(reEmit(many, 0), undefined).sackBlocks, [1, 2, 3, 4, 5, 6, 7, 8]);
    const full = segment({
      mss: 1,
      windowScale: 1,
      tsVal: 1,
      sackPermitted: true,
      sackBlocks: [1, 2, 3, 4, 5, 6, 7, 8],
    });
    // MSS 4 + SACK-PERM/TS 12 + WS 4 leave 20 bytes: NOP NOP SACK header and 2 blocks.
    assert.equal(tcpHeaderLength(full), 60);
    assert.deepEqual(ok(reEmit(full, 0), undefined).sackBlocks, [1, 2, 3, 4]);
  });

  test('ignores headerLength and checksum on input; writes at an offset; checksum verifies', () => {
    const src = A;
    const dst = B;
    const payload = Uint8Array.from([1, 2, 3]);
    const seg = segment({ headerLength: 99, checksum: 0x1234, tsVal: 5, tsEcr: 6, payload });
    const buf = new Uint8Array(100).fill(0xee);
    const n = emitTcp(seg, buf, 14, pseudoHeaderSumV4(src, dst, 6, 35));
    assert.equal(n, 35);
    assert.equal(buf[13], 0xee);
    assert.equal(buf[14 + n], 0xee);
    const out = buf.subarray(14, 14 + n);
    assert.ok(verifiesChecksum(onesSum(out, 0, n, pseudoHeaderSumV4(src, dst, 6, n))));
    const s = ok(out, pseudoHeaderSumV4(src, dst, 6, n));
    assert.equal(s.headerLength, 32);
    assert.deepEqual(Array.from(s.payload), [1, 2, 3]);
  });

  test('a payload already in place is used as is; one elsewhere in the buffer is copied', () => {
    const buf = new Uint8Array(64);
    const inPlace = buf.subarray(32, 37);
    inPlace.set([9, 8, 7, 6, 5]);
    const n = emitTcp(segment({ tsVal: 1, payload: inPlace }), buf, 0, 77);
    assert.equal(n, 37);
    assert.deepEqual(Array.from(ok(buf.subarray(0, n), 77 + 0).payload), [9, 8, 7, 6, 5]);

    const buf2 = new Uint8Array(64);
    const elsewhere = buf2.subarray(40, 43);
    elsewhere.set([1, 2, 3]);
    assert.equal(emitTcp(segment({ payload: elsewhere }), buf2, 0, 0), 23);
    assert.deepEqual(Array.from(buf2.subarray(20, 23)), [1, 2, 3]);
    assert.ok(verifiesChecksum(onesSum(buf2, 0, 23)));
  });

  test('throws RangeError when the buffer is too small (a caller bug)', () => {
    const seg = segment({ mss: 1460 });
    assert.throws(() => emitTcp(seg, new Uint8Array(23), 0, 0), RangeError);
    assert.throws(() => emitTcp(seg, new Uint8Array(30), 7, 0), RangeError);
    assert.equal(emitTcp(seg, new Uint8Array(30), 6, 0), 24);
  });

  test('sequence numbers and timestamps at the top of the 32-bit range survive', () => {
    for (const v of [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]) {
      const s = ok(reEmit(segment({ seq: v, ack: v, tsVal: v, tsEcr: v, sackBlocks: [v, v] }), 0), 0);
      assert.equal(s.seq, v);
      assert.equal(s.ack, v);
      assert.equal(s.tsVal, v);
      assert.equal(s.tsEcr, v);
      assert.deepEqual(s.sackBlocks, [v, v]);
    }
  });

  test('property: random segment -> emit -> parse is the same record, checksum verifies', () => {
    const u32 = fc.nat({ max: 0xffffffff });
    const u16 = fc.nat({ max: 0xffff });
    const arbSegment = fc
      .record({
        srcPort: u16,
        dstPort: u16,
        seq: u32,
        ack: u32,
        reserved: fc.nat({ max: 7 }),
        flags: fc.nat({ max: 0x1ff }),
        window: u16,
        urgentPointer: u16,
        mss: fc.option(u16, { nil: undefined }),
        windowScale: fc.option(fc.nat({ max: 255 }), { nil: undefined }),
        sackPermitted: fc.boolean(),
        ts: fc.option(fc.tuple(u32, u32), { nil: undefined }),
        sack: fc.array(fc.tuple(u32, u32), { minLength: 0, maxLength: 4 }),
        payload: fc.uint8Array({ maxLength: 40 }),
        src: u32,
        dst: u32,
      })
      .map((r) => {
        const seg = segment({
          srcPort: r.srcPort,
          dstPort: r.dstPort,
          seq: r.seq,
          ack: r.ack,
          reserved: r.reserved,
          flags: r.flags,
          window: r.window,
          urgentPointer: r.urgentPointer,
          mss: r.mss,
          windowScale: r.windowScale,
          sackPermitted: r.sackPermitted,
          tsVal: r.ts?.[0],
          tsEcr: r.ts?.[1],
          payload: r.payload,
        });
        // Only as many SACK blocks as fit next to the other options, as the engine would.
        const room = Math.floor((40 - (tcpHeaderLength(seg) - 20) - 4) / 8);
        const blocks = r.sack.slice(0, Math.max(0, room)).flat();
        seg.sackBlocks = blocks.length > 0 ? blocks : undefined;
        return { seg, src: r.src, dst: r.dst };
      });
    fc.assert(
      fc.property(arbSegment, fc.nat({ max: 16 }), ({ seg, src, dst }, off) => {
        const hl = tcpHeaderLength(seg);
        const total = hl + seg.payload.length;
        const sum = pseudoHeaderSumV4(src, dst, 6, total);
        const buf = new Uint8Array(off + total);
        assert.equal(emitTcp(seg, buf, off, sum), total);
        const out = buf.subarray(off);
        assert.ok(verifiesChecksum(onesSum(out, 0, total, sum)));
        const back = ok(out, sum);
        assert.deepEqual(back, { ...seg, headerLength: hl, checksum: back.checksum, payload: back.payload });
        assert.deepEqual(back.payload, seg.payload);
        assert.equal(back.checksum, (out[16] << 8) | out[17]);
        // And emitting the parsed record reproduces the bytes.
        assert.equal(toHex(reEmit(back, sum)), toHex(out));
      }),
      { numRuns: 2000 },
    );
  });
});

test('tcpFlagsToString', () => {
  assert.equal(tcpFlagsToString(TCP_SYN | TCP_ACK), 'SYN,ACK');
  assert.equal(tcpFlagsToString(TCP_FIN | TCP_PSH | TCP_ACK), 'FIN,PSH,ACK');
  assert.equal(tcpFlagsToString(TCP_RST), 'RST');
  assert.equal(tcpFlagsToString(0), 'none');
  assert.equal(tcpFlagsToString(0x1ff), 'FIN,SYN,RST,PSH,ACK,URG,ECE,CWR,NS');
});
