/**
 * Judges a capture of frames from the Linux kernel (scripts/capture-fixtures.sh): every frame
 * decoded field by field and checked against tshark's own decoding of the same capture (the
 * .fields.tsv beside it), then re-emitted byte for byte. The kernel is the judge of what a frame
 * is; tshark is the judge of what its fields say. Used on the stored fixtures and, as root, on a
 * fresh capture from the running kernel.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { parsePcap } from '../../src/link/pcap.ts';
import { ipv4ToString, ipv6FromString, ipv6ToString, macToString } from '../../src/wire/address.ts';
import { isWireError } from '../../src/wire/error.ts';
import { ETHERTYPE_QINQ, ETHERTYPE_VLAN } from '../../src/wire/ethernet.ts';
import { emitFrame, type Frame, frameLength, parseFrame } from '../../src/wire/frame.ts';
import { IPPROTO_HOPOPTS } from '../../src/wire/ipv6.ts';
import { TCP_RST, TCP_SYN } from '../../src/wire/tcp.ts';

export interface KernelCapture {
  pcap: Uint8Array;
  /** tshark -T fields output with a header row (see scripts/capture-fixtures.sh). */
  tsv: string;
}

type Row = Map<string, string[]>;

/** tshark's first (outermost) value of a field, or undefined. */
function first(r: Row, field: string): string | undefined {
  return r.get(field)?.[0];
}
function num(r: Row, field: string): number | undefined {
  const v = first(r, field);
  return v === undefined ? undefined : Number(v);
}

/**
 * Declares the suite. `load` runs before the tests (it may capture); a string it returns is a
 * reason to skip.
 */
export function judgeKernelCapture(name: string, load: () => KernelCapture | string): void {
  let skip: string | false = false;
  let frames: Uint8Array[] = [];
  let rows: Row[] = [];
  let parsed: ReturnType<typeof parseFrame>[] = [];
  describe(name, () => {
    before(() => {
      const got = load();
      if (typeof got === 'string') {
        skip = got;
        return;
      }
      const pcap = parsePcap(got.pcap);
      if (isWireError(pcap)) throw new Error(`capture does not parse: ${pcap}`);
      const lines = got.tsv.replace(/\n$/, '').split('\n');
      const names = lines[0].split('\t');
      rows = lines.slice(1).map((line) => {
        const m: Row = new Map();
        line.split('\t').forEach((v, i) => {
          if (v !== '') m.set(names[i], v.split(';'));
        });
        return m;
      });
      frames = pcap.records.map((rec) => rec.frame);
      parsed = frames.map((b) => parseFrame(b));
    });

    test('the capture and tshark agree on the frame count, and there are enough frames', (ctx) => {
      if (skip) return ctx.skip(skip);
      assert.equal(rows.length, frames.length);
      assert.ok(frames.length > 300, `only ${frames.length} frames`);
    });

    test('every kernel frame decodes through every layer with valid checksums', (ctx) => {
      if (skip) return ctx.skip(skip);
      for (const [i, p] of parsed.entries()) assert.ok(!isWireError(p), `frame ${i + 1}: ${p}`);
    });

    test('emit(parse(x)) equals x for every frame', (ctx) => {
      if (skip) return ctx.skip(skip);
      for (const [i, p] of parsed.entries()) {
        const f = p as Frame;
        const out = new Uint8Array(frameLength(f));
        const n = emitFrame(f, out, 0);
        assert.equal(n, frames[i].length, `frame ${i + 1} length`);
        assert.deepEqual(out, frames[i], `frame ${i + 1} bytes`);
      }
    });

    test('Ethernet and 802.1Q fields match tshark', (ctx) => {
      if (skip) return ctx.skip(skip);
      for (const [i, p] of parsed.entries()) {
        const f = p as Frame;
        const r = rows[i];
        assert.equal(macToString(f.eth.dst), first(r, 'eth.dst'), `frame ${i + 1}`);
        assert.equal(macToString(f.eth.src), first(r, 'eth.src'), `frame ${i + 1}`);
        // tshark 4.0 decodes an 802.1ad S-tag as ieee8021ad.id and 802.1Q C-tags as vlan.id.
        const vids = [...(r.get('ieee8021ad.id') ?? []), ...(r.get('vlan.id') ?? [])].map(Number);
        assert.deepEqual(
          f.eth.vlans.map((v) => v.vid),
          vids,
          `frame ${i + 1}`,
        );
        // tshark's eth.type is the outer EtherType (the TPID when tagged).
        const outer = f.eth.vlans.length > 0 ? f.eth.vlans[0].tpid : f.eth.etherType;
        assert.equal(outer, num(r, 'eth.type'), `frame ${i + 1}`);
      }
    });

    test('ARP fields match tshark', (ctx) => {
      if (skip) return ctx.skip(skip);
      let n = 0;
      for (const [i, p] of parsed.entries()) {
        const a = (p as Frame).arp;
        if (!a) continue;
        n++;
        const r = rows[i];
        assert.equal(a.op, num(r, 'arp.opcode'));
        assert.equal(macToString(a.senderMac), first(r, 'arp.src.hw_mac'));
        assert.equal(ipv4ToString(a.senderIp), first(r, 'arp.src.proto_ipv4'));
        assert.equal(macToString(a.targetMac), first(r, 'arp.dst.hw_mac'));
        assert.equal(ipv4ToString(a.targetIp), first(r, 'arp.dst.proto_ipv4'));
      }
      assert.ok(n >= 3, `${n} ARP frames`);
    });

    test('IPv4 fields match tshark', (ctx) => {
      if (skip) return ctx.skip(skip);
      let n = 0;
      for (const [i, p] of parsed.entries()) {
        const ip = (p as Frame).ipv4;
        if (!ip) continue;
        n++;
        const r = rows[i];
        const at = `frame ${i + 1}`;
        assert.equal(ip.headerLength, num(r, 'ip.hdr_len'), at);
        assert.equal((ip.dscp << 2) | ip.ecn, num(r, 'ip.dsfield'), at);
        assert.equal(ip.totalLength, num(r, 'ip.len'), at);
        assert.equal(ip.ident, num(r, 'ip.id'), at);
        assert.equal(ip.dontFragment, first(r, 'ip.flags.df') === '1', at);
        assert.equal(ip.moreFragments, first(r, 'ip.flags.mf') === '1', at);
        assert.equal(ip.fragmentOffset, num(r, 'ip.frag_offset')! * 8, at); // tshark: 8-byte units
        assert.equal(ip.ttl, num(r, 'ip.ttl'), at);
        assert.equal(ip.protocol, num(r, 'ip.proto'), at);
        assert.equal(ip.checksum, num(r, 'ip.checksum'), at);
        assert.equal(ipv4ToString(ip.src), first(r, 'ip.src'), at);
        assert.equal(ipv4ToString(ip.dst), first(r, 'ip.dst'), at);
      }
      assert.ok(n > 100, `${n} IPv4 frames`);
    });

    test('IPv6 fields, extension headers and fragments match tshark', (ctx) => {
      if (skip) return ctx.skip(skip);
      let n = 0;
      for (const [i, p] of parsed.entries()) {
        const ip = (p as Frame).ipv6;
        if (!ip) continue;
        n++;
        const r = rows[i];
        const at = `frame ${i + 1}`;
        assert.equal(ip.trafficClass, num(r, 'ipv6.tclass'), at);
        assert.equal(ip.flowLabel, num(r, 'ipv6.flow'), at);
        assert.equal(ip.payloadLength, num(r, 'ipv6.plen'), at);
        assert.equal(ip.nextHeader, num(r, 'ipv6.nxt'), at);
        assert.equal(ip.hopLimit, num(r, 'ipv6.hlim'), at);
        assert.deepEqual(ip.src, ipv6FromString(first(r, 'ipv6.src')!), at);
        assert.equal(ipv6ToString(ip.dst), ipv6ToString(ipv6FromString(first(r, 'ipv6.dst')!)!), at);
        if (r.has('ipv6.fraghdr.offset')) {
          assert.ok(ip.fragment, at);
          assert.equal(ip.fragment.offset, num(r, 'ipv6.fraghdr.offset')! * 8, at);
          assert.equal(ip.fragment.more, first(r, 'ipv6.fraghdr.more') === '1', at);
          assert.equal(ip.fragment.ident, num(r, 'ipv6.fraghdr.ident'), at);
        } else {
          assert.equal(ip.fragment, undefined, at);
        }
      }
      assert.ok(n > 100, `${n} IPv6 frames`);
    });

    test('TCP fields and options match tshark', (ctx) => {
      if (skip) return ctx.skip(skip);
      let n = 0;
      for (const [i, p] of parsed.entries()) {
        const f = p as Frame;
        const t = f.tcp;
        const r = rows[i];
        const at = `frame ${i + 1}`;
        if (!t) {
          // Only frames whose TCP header tshark found inside an ICMP error or a fragment lack ours.
          if (r.has('tcp.srcport'))
            assert.ok(f.icmpv4 || f.icmpv6 || f.ipv4?.isFragment || f.ipv6?.fragment, at);
          continue;
        }
        n++;
        assert.equal(t.srcPort, num(r, 'tcp.srcport'), at);
        assert.equal(t.dstPort, num(r, 'tcp.dstport'), at);
        assert.equal(t.seq, num(r, 'tcp.seq_raw'), at);
        assert.equal(t.ack, num(r, 'tcp.ack_raw'), at);
        assert.equal(t.headerLength, num(r, 'tcp.hdr_len'), at);
        assert.equal(t.flags, num(r, 'tcp.flags'), at);
        assert.equal(t.window, num(r, 'tcp.window_size_value'), at);
        assert.equal(t.checksum, num(r, 'tcp.checksum'), at);
        assert.equal(t.urgentPointer, num(r, 'tcp.urgent_pointer'), at);
        assert.equal(t.mss, num(r, 'tcp.options.mss_val'), at);
        assert.equal(t.windowScale, num(r, 'tcp.options.wscale.shift'), at);
        assert.equal(t.sackPermitted, r.has('tcp.options.sack_perm'), at);
        assert.equal(t.tsVal, num(r, 'tcp.options.timestamp.tsval'), at);
        assert.equal(t.tsEcr, num(r, 'tcp.options.timestamp.tsecr'), at);
        assert.equal(t.payload.length, num(r, 'tcp.len'), at);
        const le = (r.get('tcp.options.sack_le') ?? []).map(Number);
        const re = (r.get('tcp.options.sack_re') ?? []).map(Number);
        const want = le.flatMap((l, k) => [l, re[k]]);
        assert.deepEqual(t.sackBlocks ?? [], want, at);
      }
      assert.ok(n > 300, `${n} TCP frames`);
    });

    test('ICMPv4 and ICMPv6 fields match tshark', (ctx) => {
      if (skip) return ctx.skip(skip);
      let n4 = 0;
      let n6 = 0;
      for (const [i, p] of parsed.entries()) {
        const f = p as Frame;
        const r = rows[i];
        const at = `frame ${i + 1}`;
        if (f.icmpv4) {
          n4++;
          assert.equal(f.icmpv4.type, num(r, 'icmp.type'), at);
          assert.equal(f.icmpv4.code, num(r, 'icmp.code'), at);
          assert.equal(f.icmpv4.checksum, num(r, 'icmp.checksum'), at);
          if (r.has('icmp.ident') && (f.icmpv4.type === 0 || f.icmpv4.type === 8)) {
            assert.equal(f.icmpv4.ident, num(r, 'icmp.ident'), at);
            assert.equal(f.icmpv4.seqNo, num(r, 'icmp.seq'), at);
          }
          assert.equal(f.icmpv4.mtu, num(r, 'icmp.mtu') ?? 0, at);
        }
        if (f.icmpv6) {
          n6++;
          const m = f.icmpv6;
          assert.equal(m.type, num(r, 'icmpv6.type'), at);
          assert.equal(m.code, num(r, 'icmpv6.code'), at);
          assert.equal(m.checksum, num(r, 'icmpv6.checksum'), at);
          if (m.type === 128 || m.type === 129) {
            assert.equal(m.ident, num(r, 'icmpv6.echo.identifier'), at);
            assert.equal(m.seqNo, num(r, 'icmpv6.echo.sequence_number'), at);
          }
          assert.equal(m.mtu, num(r, 'icmpv6.mtu') ?? 0, at);
          const target = first(
            r,
            m.type === 135 ? 'icmpv6.nd.ns.target_address' : 'icmpv6.nd.na.target_address',
          );
          if (m.type === 135 || m.type === 136)
            assert.equal(ipv6ToString(m.target!), ipv6ToString(ipv6FromString(target!)!), at);
          if (m.type === 136) {
            assert.equal(m.router, first(r, 'icmpv6.nd.na.flag.r') === '1', at);
            assert.equal(m.solicited, first(r, 'icmpv6.nd.na.flag.s') === '1', at);
            assert.equal(m.override, first(r, 'icmpv6.nd.na.flag.o') === '1', at);
          }
          const ll = m.sourceLinkAddr ?? m.targetLinkAddr;
          if (m.type === 135 || m.type === 136) {
            assert.equal(ll === undefined ? undefined : macToString(ll), first(r, 'icmpv6.opt.linkaddr'), at);
          }
        }
      }
      assert.ok(n4 >= 4 && n6 >= 10, `${n4} ICMPv4, ${n6} ICMPv6`);
    });

    test('the fixture covers every feature the codecs claim', (ctx) => {
      if (skip) return ctx.skip(skip);
      const fs = parsed as Frame[];
      const count = (pred: (f: Frame) => boolean) => fs.filter(pred).length;
      const cover: Record<string, number> = {
        '802.1Q tag': count((f) => f.eth.vlans.length === 1 && f.eth.vlans[0].tpid === ETHERTYPE_VLAN),
        '802.1ad QinQ': count((f) => f.eth.vlans.length === 2 && f.eth.vlans[0].tpid === ETHERTYPE_QINQ),
        'ARP request and reply': Math.min(
          count((f) => f.arp?.op === 1),
          count((f) => f.arp?.op === 2),
        ),
        'IPv4 fragment (MF)': count((f) => !!f.ipv4?.moreFragments),
        'IPv4 last fragment': count((f) => !!f.ipv4 && !f.ipv4.moreFragments && f.ipv4.fragmentOffset > 0),
        'IPv6 fragment header': count((f) => !!f.ipv6?.fragment),
        'IPv6 hop-by-hop': count((f) => f.ipv6?.nextHeader === IPPROTO_HOPOPTS),
        'ICMP frag needed': count(
          (f) => f.icmpv4?.type === 3 && f.icmpv4.code === 4 && f.icmpv4.mtu === 1280,
        ),
        'ICMP port unreachable': count((f) => f.icmpv4?.type === 3 && f.icmpv4.code === 3),
        'ICMPv6 packet too big': count((f) => f.icmpv6?.type === 2 && f.icmpv6.mtu === 1280),
        'neighbour solicitation': count((f) => f.icmpv6?.type === 135),
        'neighbour advertisement': count((f) => f.icmpv6?.type === 136),
        'SYN with MSS, SACK-perm, timestamps, window scale': count(
          (f) =>
            !!f.tcp &&
            (f.tcp.flags & TCP_SYN) !== 0 &&
            f.tcp.sackPermitted &&
            f.tcp.tsVal !== undefined &&
            f.tcp.windowScale !== undefined,
        ),
        'SYN without timestamps': count(
          (f) => !!f.tcp && (f.tcp.flags & TCP_SYN) !== 0 && f.tcp.tsVal === undefined,
        ),
        'SYN without SACK-perm': count(
          (f) => !!f.tcp && (f.tcp.flags & TCP_SYN) !== 0 && !f.tcp.sackPermitted,
        ),
        'SYN without window scale': count(
          (f) => !!f.tcp && (f.tcp.flags & TCP_SYN) !== 0 && f.tcp.windowScale === undefined,
        ),
        'SACK blocks': count((f) => (f.tcp?.sackBlocks?.length ?? 0) >= 2),
        'two or more SACK blocks': count((f) => (f.tcp?.sackBlocks?.length ?? 0) >= 4),
        RST: count((f) => !!f.tcp && (f.tcp.flags & TCP_RST) !== 0),
        'TCP over IPv6': count((f) => !!f.tcp && !!f.ipv6),
      };
      for (const [what, n] of Object.entries(cover)) assert.ok(n > 0, `fixture lacks: ${what}`);
    });
  });
}
