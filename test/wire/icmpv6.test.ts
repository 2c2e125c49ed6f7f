import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type Ipv6Addr, ipv6FromString, macFromString } from '../../src/wire/address.ts';
import { fromHex, toHex } from '../../src/wire/bytes.ts';
import { onesSum, pseudoHeaderSumV6, verifiesChecksum } from '../../src/wire/checksum.ts';
import { isWireError, type WireError } from '../../src/wire/error.ts';
import {
  emitIcmpv6,
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAMETER_PROBLEM,
  ICMPV6_PORT_UNREACHABLE_CODE,
  ICMPV6_ROUTER_ADVERTISEMENT,
  ICMPV6_ROUTER_SOLICITATION,
  ICMPV6_TIME_EXCEEDED,
  type Icmpv6Message,
  icmpv6Length,
  parseIcmpv6,
} from '../../src/wire/icmpv6.ts';
import { icmpv6 } from '../support/build.ts';
import { guard as guarded } from '../support/guard.ts';

const ip = (s: string): Ipv6Addr => ipv6FromString(s)!;
const mac = (s: string): number => macFromString(s)!;
const sum = (src: string, dst: string, len: number) => pseudoHeaderSumV6(ip(src), ip(dst), 58, len);

// Reference bytes from scapy 2.5 (/usr/bin/python3): the IPv6 payload of each message, with
// the addresses it was checksummed with. INVOKING: IPv6 fd00::2 -> fd00::9 TCP, first 48 bytes.
const INVOKING =
  '6000000005780640fd000000000000000000000000000002fd00000000000000000000000000000900509c4000000005';
const V: Record<string, { hex: string; src: string; dst: string }> = {
  // ICMPv6ND_NS(tgt=fd00::2)/ICMPv6NDOptSrcLLAddr(02:00:00:00:00:01)
  ns: {
    hex: '87007d9700000000fd0000000000000000000000000000020101020000000001',
    src: 'fd00::1',
    dst: 'ff02::1:ff00:2',
  },
  // DAD probe: no option.
  nsDad: { hex: '87007da300000000fd000000000000000000000000000002', src: '::', dst: 'ff02::1:ff00:2' },
  // ICMPv6ND_NA(R=1, S=1, O=1)/ICMPv6NDOptDstLLAddr(00:00:5e:00:01:2a)
  na: {
    hex: '88003f71e0000000fd000000000000000000000000000002020100005e00012a',
    src: 'fd00::2',
    dst: 'fd00::1',
  },
  // Linux 6.x DAD probe (from test/fixtures/kernel.pcap frame 2): no SLLA, a nonce option (RFC 7527).
  nsDadLinux: {
    hex: '8700bb3e00000000fe80000000000000000000fffe00000a0e01f33e75084b84',
    src: '::',
    dst: 'ff02::1:ff00:a',
  },
  // Unsolicited NA (take-over): O only, to all-nodes.
  naUnsolicited: {
    hex: '8800fd6f20000000fd000000000000000000000000000002020100005e00012a',
    src: 'fd00::2',
    dst: 'ff02::1',
  },
  echoRequest: { hex: '8000e7f0beef000370696e67', src: 'fd00::1', dst: 'fd00::2' },
  echoReply: { hex: '8100e6f0beef000370696e67', src: 'fd00::2', dst: 'fd00::1' },
  packetTooBig: { hex: `0200fb3000000500${INVOKING}`, src: 'fd00::fe', dst: 'fd00::2' },
  unreachable: { hex: `0104012d00000000${INVOKING}`, src: 'fd00::fe', dst: 'fd00::2' },
  timeExceeded: { hex: `0300ff3000000000${INVOKING}`, src: 'fd00::fe', dst: 'fd00::2' },
  paramProblem: { hex: `0401fe0700000028${INVOKING}`, src: 'fd00::fe', dst: 'fd00::2' },
  // ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr(02:00:00:00:00:01)
  rs: { hex: '85007bac000000000101020000000001', src: 'fd00::1', dst: 'ff02::2' },
  // ICMPv6ND_RA(chlim=64, routerlifetime=1800)/SrcLLAddr/MTU(1500)/PrefixInfo(fd00::/64)
  ra: {
    hex: '8600e54d40080708000000000000000001010200000000fe05010000000005dc030440c0ffffffffffffffff00000000fd000000000000000000000000000000',
    src: 'fe80::1',
    dst: 'ff02::1',
  },
};

function vec(name: string): { b: Uint8Array; s: number } {
  const v = V[name];
  const b = fromHex(v.hex);
  return { b, s: sum(v.src, v.dst, b.length) };
}

function ok(b: Uint8Array, pseudoSum: number | undefined): Icmpv6Message {
  const r = parseIcmpv6(b, pseudoSum);
  if (isWireError(r)) assert.fail(`unexpected ${r}`);
  return r;
}

function err(b: Uint8Array, pseudoSum: number | undefined): WireError {
  const r = parseIcmpv6(b, pseudoSum);
  if (!isWireError(r)) assert.fail('expected a WireError');
  return r;
}

function reEmit(m: Icmpv6Message, pseudoSum: number): Uint8Array {
  const out = new Uint8Array(icmpv6Length(m));
  assert.equal(emitIcmpv6(m, out, 0, pseudoSum), out.length);
  return out;
}

function message(over: Partial<Icmpv6Message>): Icmpv6Message {
  return icmpv6({ type: 0, ...over });
}

/** An NDP message of `type` whose options area (at 8, 16 or 24 by type) is `opts`; no checksum. */
function ndWithOptions(opts: number[], type = ICMPV6_NEIGHBOR_SOLICITATION): Uint8Array {
  const at = type === ICMPV6_ROUTER_SOLICITATION ? 8 : type === ICMPV6_ROUTER_ADVERTISEMENT ? 16 : 24;
  const b = new Uint8Array(at + opts.length);
  b[0] = type;
  if (at === 24) b.set(ip('fd00::2'), 8);
  b.set(opts, at);
  return b;
}

describe('parseIcmpv6 known answers', () => {
  test('neighbour solicitation with source link-layer address: every field', () => {
    const { b, s } = vec('ns');
    assert.deepEqual(ok(b, s), {
      type: ICMPV6_NEIGHBOR_SOLICITATION,
      code: 0,
      checksum: 0x7d97,
      rest: 0,
      ident: 0,
      seqNo: 0,
      mtu: 0,
      pointer: 0,
      router: false,
      solicited: false,
      override: false,
      target: ip('fd00::2'),
      sourceLinkAddr: mac('02:00:00:00:00:01'),
      targetLinkAddr: undefined,
      data: b.subarray(8),
    });
  });

  test('the target is a copy, not a view', () => {
    const { b, s } = vec('ns');
    const m = ok(b, s);
    b[23] = 0x77;
    assert.deepEqual(m.target, ip('fd00::2'));
  });

  test('DAD neighbour solicitation without options', () => {
    const { b, s } = vec('nsDad');
    const m = ok(b, s);
    assert.deepEqual(m.target, ip('fd00::2'));
    assert.equal(m.sourceLinkAddr, undefined);
    assert.equal(m.targetLinkAddr, undefined);
  });

  test('solicited neighbour advertisement: flags and target link-layer address', () => {
    const { b, s } = vec('na');
    const m = ok(b, s);
    assert.equal(m.type, ICMPV6_NEIGHBOR_ADVERTISEMENT);
    assert.equal(m.rest, 0xe0000000);
    assert.equal(m.router, true);
    assert.equal(m.solicited, true);
    assert.equal(m.override, true);
    assert.deepEqual(m.target, ip('fd00::2'));
    assert.equal(m.targetLinkAddr, mac('00:00:5e:00:01:2a'));
    assert.equal(m.sourceLinkAddr, undefined);
  });

  test('unsolicited neighbour advertisement: override only', () => {
    const { b, s } = vec('naUnsolicited');
    const m = ok(b, s);
    assert.equal(m.router, false);
    assert.equal(m.solicited, false);
    assert.equal(m.override, true);
  });

  test('echo request and reply', () => {
    for (const [name, type] of [
      ['echoRequest', ICMPV6_ECHO_REQUEST],
      ['echoReply', ICMPV6_ECHO_REPLY],
    ] as const) {
      const { b, s } = vec(name);
      const m = ok(b, s);
      assert.equal(m.type, type);
      assert.equal(m.ident, 0xbeef);
      assert.equal(m.seqNo, 3);
      assert.equal(Buffer.from(m.data).toString(), 'ping');
      assert.equal(m.data.buffer, b.buffer);
      assert.equal(m.target, undefined);
    }
  });

  test('packet too big: MTU and invoking packet', () => {
    const { b, s } = vec('packetTooBig');
    const m = ok(b, s);
    assert.equal(m.type, ICMPV6_PACKET_TOO_BIG);
    assert.equal(m.mtu, 1280);
    assert.equal(m.pointer, 0);
    assert.equal(toHex(m.data), INVOKING);
  });

  test('destination unreachable, time exceeded, parameter problem', () => {
    const u = ok(vec('unreachable').b, vec('unreachable').s);
    assert.equal(u.type, ICMPV6_DEST_UNREACHABLE);
    assert.equal(u.code, ICMPV6_PORT_UNREACHABLE_CODE);
    assert.equal(u.mtu, 0);
    assert.equal(toHex(u.data), INVOKING);
    const t = ok(vec('timeExceeded').b, vec('timeExceeded').s);
    assert.equal(t.type, ICMPV6_TIME_EXCEEDED);
    assert.equal(t.code, 0);
    const p = ok(vec('paramProblem').b, vec('paramProblem').s);
    assert.equal(p.type, ICMPV6_PARAMETER_PROBLEM);
    assert.equal(p.code, 1);
    assert.equal(p.pointer, 40);
    assert.equal(p.mtu, 0);
  });

  test('router solicitation and advertisement: generic, with the source link-layer address', () => {
    const rs = ok(vec('rs').b, vec('rs').s);
    assert.equal(rs.type, ICMPV6_ROUTER_SOLICITATION);
    assert.equal(rs.sourceLinkAddr, mac('02:00:00:00:00:01'));
    const { b, s } = vec('ra');
    const ra = ok(b, s);
    assert.equal(ra.type, ICMPV6_ROUTER_ADVERTISEMENT);
    assert.equal(ra.rest >>> 24, 64); // current hop limit
    assert.equal(ra.rest & 0xffff, 1800); // router lifetime
    assert.equal(ra.sourceLinkAddr, mac('02:00:00:00:00:fe'));
    assert.equal(ra.data.length, b.length - 8);
    assert.equal(ra.target, undefined);
  });

  test('unknown NDP options are skipped; a repeated link-layer option: the first wins', () => {
    const b = ndWithOptions([
      ...[14, 1, 1, 2, 3, 4, 5, 6], // nonce (RFC 3971), not decoded
      ...[1, 1, 2, 0, 0, 0, 0, 1],
      ...[1, 1, 2, 0, 0, 0, 0, 2],
      ...[2, 1, 2, 0, 0, 0, 0, 3],
      ...[99, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]);
    const m = ok(b, undefined);
    assert.equal(m.sourceLinkAddr, mac('02:00:00:00:00:01'));
    assert.equal(m.targetLinkAddr, mac('02:00:00:00:00:03'));
  });

  test('other types are not scanned for options', () => {
    const b = fromHex('80000000000100020000'); // echo request whose data would be a length-0 option
    const m = ok(b, undefined);
    assert.equal(m.sourceLinkAddr, undefined);
    assert.equal(m.data.length, 2);
  });
});

describe('parseIcmpv6 rejections', () => {
  test('truncated at every length below 8', () => {
    const { b, s } = vec('echoRequest');
    for (let n = 0; n < 8; n++) {
      assert.equal(err(b.subarray(0, n), undefined).kind, 'truncated', `length ${n}`);
      assert.equal(err(b.subarray(0, n), s).kind, 'truncated', `length ${n}`);
    }
  });

  test('NS and NA shorter than 24 bytes, RA shorter than 16', () => {
    for (const name of ['ns', 'na']) {
      const { b } = vec(name);
      for (let n = 8; n < 24; n++) {
        const e = err(b.subarray(0, n), undefined);
        assert.equal(e.kind, 'truncated', `${name} length ${n}`);
        assert.equal(e.layer, 'icmpv6');
      }
    }
    const { b } = vec('ra');
    for (let n = 8; n < 16; n++) assert.equal(err(b.subarray(0, n), undefined).kind, 'truncated', `ra ${n}`);
  });

  test('NS/NA cut inside an option: malformed', () => {
    const { b } = vec('ns');
    for (let n = 25; n < 32; n++)
      assert.equal(err(b.subarray(0, n), undefined).kind, 'malformed', `length ${n}`);
  });

  test('control: a good option area parses for every NDP type', () => {
    for (const type of [133, 134, 135, 136]) {
      const m = ok(ndWithOptions([1, 1, 2, 0, 0, 0, 0, 9, 99, 1, 0, 0, 0, 0, 0, 0], type), undefined);
      assert.equal(m.sourceLinkAddr, mac('02:00:00:00:00:09'), `type ${type}`);
    }
  });

  const malformedCases: [string, number[]][] = [
    ['option length 0', [1, 0, 2, 0, 0, 0, 0, 1]],
    ['unknown option of length 0', [99, 0, 0, 0, 0, 0, 0, 0]],
    ['option past the end', [99, 2, 0, 0, 0, 0, 0, 0]],
    ['one byte of option header', [1]],
    ['source link-layer address of 16 octets', [1, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['target link-layer address of 16 octets', [2, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['length 0 after a good option', [1, 1, 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0]],
  ];
  for (const [name, opts] of malformedCases) {
    test(`malformed NDP option: ${name}`, () => {
      for (const type of [
        ICMPV6_NEIGHBOR_SOLICITATION,
        ICMPV6_NEIGHBOR_ADVERTISEMENT,
        ICMPV6_ROUTER_SOLICITATION,
        ICMPV6_ROUTER_ADVERTISEMENT,
      ]) {
        const e = err(ndWithOptions(opts, type), undefined);
        assert.equal(e.kind, 'malformed', `type ${type}`);
      }
    });
  }

  test('bad checksum anywhere, and a wrong pseudo-header', () => {
    const { b, s } = vec('na');
    for (let i = 0; i < b.length; i++) {
      const c = b.slice();
      c[i] ^= 0x10;
      assert.equal(err(c, s).kind, 'checksum', `byte ${i}`);
    }
    assert.equal(err(b, sum('fd00::3', 'fd00::1', b.length)).kind, 'checksum');
    assert.equal(err(b, sum('fd00::2', 'fd00::1', b.length + 8)).kind, 'checksum');
    ok(b, undefined);
  });

  test('never throws and never reads out of range on random bytes', () => {
    const types = fc.constantFrom(1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137, 200);
    fc.assert(
      fc.property(types, fc.uint8Array({ maxLength: 64 }), fc.boolean(), (type, bytes, check) => {
        if (bytes.length > 0) bytes[0] = type;
        const r = parseIcmpv6(guarded(bytes), check ? 999 : undefined);
        if (!isWireError(r)) assert.equal(r.data.length, bytes.length - 8);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('emitIcmpv6', () => {
  for (const name of Object.keys(V)) {
    test(`emit(parse(x)) == x: ${name}`, () => {
      const { b, s } = vec(name);
      const m = ok(b, s);
      assert.equal(icmpv6Length(m), b.length);
      assert.equal(toHex(reEmit(m, s)), V[name].hex);
    });
  }

  test('an unsolicited NA built from fields (take-over), at an offset', () => {
    const m = message({
      type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
      rest: 0xffffffff, // ignored: NA flags come from the booleans
      override: true,
      target: ip('fd00::2'),
      targetLinkAddr: mac('00:00:5e:00:01:2a'),
      data: new Uint8Array(50), // zeros: no valid option after the target, so nothing is carried over
    });
    assert.equal(icmpv6Length(m), 32);
    const buf = new Uint8Array(80).fill(0xcc);
    assert.equal(emitIcmpv6(m, buf, 40, sum('fd00::2', 'ff02::1', 32)), 32);
    assert.equal(buf[39], 0xcc);
    assert.equal(buf[72], 0xcc);
    assert.equal(toHex(buf.subarray(40, 72)), V.naUnsolicited.hex);
  });

  test('an NS built from fields, with and without the source link-layer address', () => {
    const m = message({
      type: ICMPV6_NEIGHBOR_SOLICITATION,
      target: ip('fd00::2'),
      sourceLinkAddr: mac('02:00:00:00:00:01'),
    });
    assert.equal(toHex(reEmit(m, sum('fd00::1', 'ff02::1:ff00:2', 32))), V.ns.hex);
    const dad = { ...m, sourceLinkAddr: undefined };
    assert.equal(toHex(reEmit(dad, sum('::', 'ff02::1:ff00:2', 24))), V.nsDad.hex);
  });

  test('Linux DAD probe: the nonce option is kept in data and carried over', () => {
    const { b, s } = vec('nsDadLinux');
    const m = ok(b, s);
    assert.deepEqual(m.target, ip('fe80::ff:fe00:a'));
    assert.equal(m.sourceLinkAddr, undefined);
    assert.equal(toHex(m.data.subarray(16)), '0e01f33e75084b84');
    assert.equal(icmpv6Length(m), 32);
  });

  test('link-layer options first, then the others in their order', () => {
    const b = ndWithOptions([
      ...[14, 1, 1, 2, 3, 4, 5, 6],
      ...[2, 1, 2, 0, 0, 0, 0, 3],
      ...[99, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],
      ...[1, 1, 2, 0, 0, 0, 0, 1],
    ]);
    const m = ok(b, undefined);
    const out = reEmit(m, 0);
    assert.equal(
      toHex(out.subarray(24)),
      '0101020000000001' + '0201020000000003' + '0e01010203040506' + '63020909090909090909090909090909',
    );
    const back = ok(out, 0);
    assert.equal(back.sourceLinkAddr, m.sourceLinkAddr);
    assert.equal(back.targetLinkAddr, m.targetLinkAddr);
    assert.equal(toHex(reEmit(back, 0)), toHex(out));
  });

  test('emitting in place over the parsed buffer, with a link-layer option added', () => {
    const { b } = vec('nsDadLinux');
    const buf = new Uint8Array(60);
    buf.set(b, 4);
    const m = ok(buf.subarray(4, 4 + b.length), undefined);
    const n = emitIcmpv6({ ...m, sourceLinkAddr: mac('02:00:00:00:00:0a') }, buf, 4, 0);
    assert.equal(n, 40);
    assert.equal(toHex(buf.subarray(4 + 24, 4 + 40)), '010102000000000a0e01f33e75084b84');
    assert.ok(verifiesChecksum(onesSum(buf, 4, 4 + n)));
  });

  test('both link-layer options: source first, then target', () => {
    const m = message({
      type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
      target: ip('fd00::2'),
      sourceLinkAddr: 1,
      targetLinkAddr: 2,
    });
    const out = reEmit(m, 0);
    assert.equal(toHex(out.subarray(24)), '01010000000000010201000000000002');
    const back = ok(out, 0);
    assert.equal(back.sourceLinkAddr, 1);
    assert.equal(back.targetLinkAddr, 2);
  });

  test('packet too big, parameter problem and echo from their typed fields', () => {
    const inv = fromHex(INVOKING);
    const ptb = message({ type: ICMPV6_PACKET_TOO_BIG, mtu: 1280, rest: 7, data: inv });
    assert.equal(toHex(reEmit(ptb, vec('packetTooBig').s)), V.packetTooBig.hex);
    const pp = message({ type: ICMPV6_PARAMETER_PROBLEM, code: 1, pointer: 40, data: inv });
    assert.equal(toHex(reEmit(pp, vec('paramProblem').s)), V.paramProblem.hex);
    const echo = message({ type: ICMPV6_ECHO_REPLY, ident: 0xbeef, seqNo: 3, data: Buffer.from('ping') });
    assert.equal(toHex(reEmit(echo, vec('echoReply').s)), V.echoReply.hex);
  });

  test('data already in place is not copied but still checksummed', () => {
    const buf = new Uint8Array(40);
    const data = buf.subarray(18, 21);
    data.set([7, 8, 9]);
    const m = message({ type: ICMPV6_ECHO_REQUEST, ident: 1, seqNo: 2, data });
    assert.equal(emitIcmpv6(m, buf, 10, 0x1234), 11);
    assert.ok(verifiesChecksum(onesSum(buf, 10, 21, 0x1234)));
    assert.deepEqual(Array.from(ok(buf.subarray(10, 21), 0x1234).data), [7, 8, 9]);
  });

  test('throws RangeError on a small buffer or an NS/NA without a target', () => {
    const { b, s } = vec('ns');
    const m = ok(b, s);
    assert.throws(() => emitIcmpv6(m, new Uint8Array(31), 0, s), RangeError);
    assert.throws(() => emitIcmpv6({ ...m, target: undefined }, new Uint8Array(32), 0, s), RangeError);
  });

  test('property: NS/NA from fields -> emit -> parse gives the same fields', () => {
    const arbMac = fc.option(fc.nat({ max: 0xffff_ffff_ffff }), { nil: undefined });
    const arb = fc.record({
      na: fc.boolean(),
      router: fc.boolean(),
      solicited: fc.boolean(),
      override: fc.boolean(),
      target: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      sourceLinkAddr: arbMac,
      targetLinkAddr: arbMac,
      extra: fc.array(
        fc
          .tuple(fc.integer({ min: 3, max: 255 }), fc.integer({ min: 1, max: 3 }))
          .chain(([t, units]) =>
            fc
              .uint8Array({ minLength: units * 8 - 2, maxLength: units * 8 - 2 })
              .map((body) => [t, units, ...body]),
          ),
        { maxLength: 3 },
      ),
      pseudo: fc.nat({ max: 0xfffff }),
    });
    fc.assert(
      fc.property(arb, (r) => {
        const m = message({
          type: r.na ? ICMPV6_NEIGHBOR_ADVERTISEMENT : ICMPV6_NEIGHBOR_SOLICITATION,
          router: r.na && r.router,
          solicited: r.na && r.solicited,
          override: r.na && r.override,
          target: r.target,
          sourceLinkAddr: r.sourceLinkAddr,
          targetLinkAddr: r.targetLinkAddr,
          // Other options ride in data after the target, as parse leaves them.
          data: Uint8Array.from([...r.target, ...r.extra.flat()]),
        });
        const out = reEmit(m, r.pseudo);
        const back = ok(out, r.pseudo);
        assert.deepEqual(back, { ...m, checksum: back.checksum, rest: back.rest, data: out.subarray(8) });
        const lla = (r.sourceLinkAddr !== undefined ? 8 : 0) + (r.targetLinkAddr !== undefined ? 8 : 0);
        assert.equal(toHex(out.subarray(24 + lla)), toHex(Uint8Array.from(r.extra.flat())));
        assert.equal(toHex(reEmit(back, r.pseudo)), toHex(out));
      }),
      { numRuns: 1000 },
    );
  });

  test('property: other types -> emit -> parse round-trips rest and data', () => {
    const arb = fc.record({
      type: fc.constantFrom(1, 2, 3, 4, 128, 129, 137, 200),
      code: fc.nat({ max: 255 }),
      rest: fc.nat({ max: 0xffffffff }),
      data: fc.uint8Array({ maxLength: 40 }),
      pseudo: fc.nat({ max: 0xfffff }),
    });
    fc.assert(
      fc.property(arb, (r) => {
        // The typed fields agree with rest, as parse would set them.
        const echo = r.type === 128 || r.type === 129;
        const m = message({
          type: r.type,
          code: r.code,
          rest: r.rest,
          ident: echo ? r.rest >>> 16 : 0,
          seqNo: echo ? r.rest & 0xffff : 0,
          mtu: r.type === 2 ? r.rest : 0,
          pointer: r.type === 4 ? r.rest : 0,
          data: r.data,
        });
        const out = reEmit(m, r.pseudo);
        const back = ok(out, r.pseudo);
        assert.deepEqual(back, { ...m, checksum: back.checksum });
      }),
      { numRuns: 1000 },
    );
  });
});
