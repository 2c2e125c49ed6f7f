/**
 * A protocol conversation on the simulated network, captured to pcap and judged by tshark:
 * ARP, ICMP echo, NDP, ICMPv6 echo, TCP over IPv4 and IPv6 with every option (SACK blocks
 * included), a RST from a closed port and an 802.1Q-tagged gratuitous ARP, all built by our
 * codecs. tshark must decode every frame with no malformed packet, no bad checksum, no expert
 * error and no "ACKed unseen segment". The same seed twice gives byte-identical pcaps.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { PcapWriter } from '../../../src/link/pcap.ts';
import { LearningSwitch, Network } from '../../../src/link/sim/index.ts';
import {
  ipv4FromString,
  ipv6FromString,
  ipv6MulticastMac,
  MAC_BROADCAST,
  macFromString,
  solicitedNodeMulticast,
} from '../../../src/wire/address.ts';
import { ARP_REQUEST, gratuitousArp } from '../../../src/wire/arp.ts';
import { ETHERTYPE_VLAN } from '../../../src/wire/ethernet.ts';
import { ICMP_ECHO_REQUEST } from '../../../src/wire/icmpv4.ts';
import { ICMPV6_ECHO_REQUEST, ICMPV6_NEIGHBOR_SOLICITATION } from '../../../src/wire/icmpv6.ts';
import { seqAdd } from '../../../src/wire/seq.ts';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpSegment } from '../../../src/wire/tcp.ts';
import { frame, icmpv4, icmpv6, ipv4, ipv6, tcp } from '../../support/build.ts';
import { SimHost } from '../../support/sim-host.ts';

const A_MAC = macFromString('02:00:00:00:00:0a')!;
const B_MAC = macFromString('02:00:00:00:00:0b')!;
const C_MAC = macFromString('02:00:00:00:00:0c')!;
const A4 = ipv4FromString('198.18.0.1')!;
const B4 = ipv4FromString('198.18.0.2')!;
const A6 = ipv6FromString('fd00::a')!;
const B6 = ipv6FromString('fd00::b')!;

const hasTshark = spawnSync('tshark', ['-v'], { stdio: 'ignore' }).status === 0;

interface Outcome {
  pcap: Uint8Array;
  frames: number;
  a: SimHost;
  b: SimHost;
}

/** Runs the conversation; A is the client, B the server, C only listens to floods. */
function converse(seed: number, faults: boolean): Outcome {
  const net = new Network({ seed });
  const a = new SimHost(A_MAC, A4, A6);
  const b = new SimHost(B_MAC, B4, B6);
  const c = new SimHost(C_MAC, ipv4FromString('198.18.0.3')!, ipv6FromString('fd00::c')!);
  const ha = net.attach(a, 'a');
  const hb = net.attach(b, 'b');
  const hc = net.attach(c, 'c');
  const sw = net.attach(new LearningSwitch({ ports: 3 }), 'sw');
  const pcap = new PcapWriter();
  const link = {
    latencyUs: 100,
    bandwidthBps: 100e6,
    ...(faults ? { duplicate: 0.05, reorder: 0.1, reorderDelayUs: [1, 200] as const } : {}),
  };
  net.connect(ha, 0, sw, 0, { ...link, name: 'a-sw', capture: pcap });
  net.connect(hb, 0, sw, 1, { ...link, name: 'b-sw' });
  net.connect(hc, 0, sw, 2, { ...link, name: 'c-sw' });

  net.at(0, () =>
    a.send(
      frame(MAC_BROADCAST, A_MAC, {
        arp: { op: ARP_REQUEST, senderMac: A_MAC, senderIp: A4, targetMac: 0, targetIp: B4 },
      }),
    ),
  );
  net.at(1000, () =>
    a.send(
      frame(B_MAC, A_MAC, {
        ipv4: ipv4({ src: A4, dst: B4, ident: 7 }),
        icmpv4: icmpv4({
          type: ICMP_ECHO_REQUEST,
          ident: 0x1234,
          seqNo: 1,
          data: new Uint8Array(56).fill(0x61),
        }),
      }),
    ),
  );
  net.at(2000, () => {
    const group = solicitedNodeMulticast(B6);
    a.send(
      frame(ipv6MulticastMac(group), A_MAC, {
        ipv6: ipv6({ src: A6, dst: group, hopLimit: 255 }),
        icmpv6: icmpv6({ type: ICMPV6_NEIGHBOR_SOLICITATION, target: B6, sourceLinkAddr: A_MAC }),
      }),
    );
  });
  net.at(3000, () =>
    a.send(
      frame(B_MAC, A_MAC, {
        ipv6: ipv6({ src: A6, dst: B6 }),
        icmpv6: icmpv6({
          type: ICMPV6_ECHO_REQUEST,
          ident: 0x4321,
          seqNo: 1,
          data: new Uint8Array(32).fill(0x62),
        }),
      }),
    ),
  );

  // TCP: a handshake, four data segments with the second held back (B SACKs 3 and 4), the
  // second, then FIN. Over IPv4 with every option, over IPv6 without timestamps.
  const tcpScript = (start: number, v6: boolean, isn: number, port: number) => {
    const l3 = () => (v6 ? { ipv6: ipv6({ src: A6, dst: B6 }) } : { ipv4: ipv4({ src: A4, dst: B4 }) });
    const ts = (now: number) => (v6 ? {} : { tsVal: Math.floor(now / 10) >>> 0, tsEcr: 0 });
    const seg = (s: Partial<TcpSegment>) =>
      a.send(frame(B_MAC, A_MAC, { ...l3(), tcp: tcp({ srcPort: port, dstPort: 80, ...s }) }));
    const synAck = () =>
      a.received.find((f) => f.tcp && f.tcp.dstPort === port && (f.tcp.flags & TCP_SYN) !== 0)?.tcp;
    const data = (i: number) => new Uint8Array(1000).fill(0x30 + i);
    net.at(start, (now) =>
      seg({
        seq: isn,
        flags: TCP_SYN,
        mss: 1460,
        windowScale: 7,
        sackPermitted: true,
        window: 64240,
        ...ts(now),
      }),
    );
    const echo = (now: number) => (v6 ? {} : { tsVal: Math.floor(now / 10) >>> 0, tsEcr: synAck()!.tsVal });
    const ack = () => seqAdd(synAck()!.seq, 1);
    // Steps 3 ms apart: longer than any round trip, reordering included.
    net.at(start + 3000, (now) => {
      assert.ok(synAck(), 'no SYN-ACK');
      seg({ seq: seqAdd(isn, 1), ack: ack(), flags: TCP_ACK, window: 502, ...echo(now) });
      for (const i of [0, 2, 3]) {
        seg({
          seq: seqAdd(isn, 1 + i * 1000),
          ack: ack(),
          flags: TCP_ACK | TCP_PSH,
          window: 502,
          payload: data(i),
          ...echo(now),
        });
      }
    });
    net.at(start + 6000, (now) =>
      seg({
        seq: seqAdd(isn, 1001),
        ack: ack(),
        flags: TCP_ACK | TCP_PSH,
        window: 502,
        payload: data(1),
        ...echo(now),
      }),
    );
    net.at(start + 9000, (now) =>
      seg({ seq: seqAdd(isn, 4001), ack: ack(), flags: TCP_FIN | TCP_ACK, window: 502, ...echo(now) }),
    );
    net.at(start + 12000, (now) => {
      const finSeen = a.received.some(
        (f) => f.tcp && f.tcp.dstPort === port && (f.tcp.flags & TCP_FIN) !== 0,
      );
      assert.ok(finSeen, 'no FIN from B');
      seg({ seq: seqAdd(isn, 4002), ack: seqAdd(ack(), 1), flags: TCP_ACK, window: 502, ...echo(now) });
    });
  };
  // ISNs near the wrap, so sequence numbers cross 2^32 inside the conversation.
  tcpScript(4000, false, 0xffff_fc00, 40001);
  tcpScript(20000, true, 0xffff_fe00, 40002);
  // A SYN to a closed port draws a RST.
  net.at(36000, () =>
    a.send(
      frame(B_MAC, A_MAC, {
        ipv4: ipv4({ src: A4, dst: B4 }),
        tcp: tcp({ srcPort: 40003, dstPort: 81, seq: 5, flags: TCP_SYN }),
      }),
    ),
  );
  // B announces itself on VLAN 100 (a tagged gratuitous ARP, flooded to A's link).
  net.at(37000, () =>
    b.send(
      frame(MAC_BROADCAST, B_MAC, {
        vlans: [{ tpid: ETHERTYPE_VLAN, pcp: 3, dei: false, vid: 100 }],
        arp: gratuitousArp(B_MAC, B4),
      }),
    ),
  );
  const r = net.run({ until: 50_000, maxEvents: 100_000 });
  assert.notEqual(r.reason, 'maxEvents');
  return { pcap: pcap.toBuffer(), frames: pcap.records, a, b };
}

describe('a protocol conversation on the simulator', () => {
  test('every exchange completes: ARP, echo, NDP, TCP with SACK over v4 and v6, RST', () => {
    const { a, b } = converse(1, false);
    const got = (pred: (f: (typeof a.received)[number]) => boolean) => a.received.some(pred);
    assert.ok(
      got((f) => f.arp?.op === 2 && f.arp.senderIp === B4),
      'ARP reply',
    );
    assert.ok(
      got((f) => f.icmpv4?.type === 0 && f.icmpv4.ident === 0x1234),
      'echo reply',
    );
    assert.ok(
      got((f) => f.icmpv6?.type === 136 && f.icmpv6.targetLinkAddr === B_MAC),
      'neighbour advertisement',
    );
    assert.ok(
      got((f) => f.icmpv6?.type === 129 && f.icmpv6.ident === 0x4321),
      'ICMPv6 echo reply',
    );
    assert.ok(
      got((f) => (f.tcp?.sackBlocks?.length ?? 0) === 2 && !!f.ipv4),
      'SACK over IPv4',
    );
    assert.ok(
      got((f) => (f.tcp?.sackBlocks?.length ?? 0) === 2 && !!f.ipv6),
      'SACK over IPv6',
    );
    assert.ok(
      got((f) => !!f.tcp && (f.tcp.flags & TCP_FIN) !== 0 && f.tcp.dstPort === 40002),
      'FIN-ACK',
    );
    assert.ok(
      got((f) => !!f.tcp && (f.tcp.flags & TCP_RST) !== 0 && f.tcp.dstPort === 40003),
      'RST',
    );
    assert.ok(
      got((f) => f.eth.vlans.length === 1 && f.eth.vlans[0].vid === 100),
      'tagged gratuitous ARP',
    );
    assert.deepEqual(b.tcpReceived(), [4000, 4000], 'B received both streams in order');
    assert.equal(a.malformed + b.malformed, 0);
  });

  test('one seed, two runs: byte-identical pcaps; another seed: different', () => {
    const h = (x: Uint8Array) => createHash('sha256').update(x).digest('hex');
    const one = h(converse(42, true).pcap);
    assert.equal(h(converse(42, true).pcap), one);
    assert.notEqual(h(converse(43, true).pcap), one);
  });

  test(
    'tshark decodes every frame: no malformed packet, no bad checksum, no expert error',
    { skip: !hasTshark && 'tshark is not installed (apt-get install tshark)' },
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'takeover-sim-'));
      try {
        for (const [seed, faults] of [
          [1, false],
          [7, true],
        ] as const) {
          const out = converse(seed, faults);
          const file = join(dir, `conv-${seed}.pcap`);
          writeFileSync(file, out.pcap);
          const r = spawnSync(
            'tshark',
            [
              '-r',
              file,
              '-o',
              'ip.check_checksum:TRUE',
              '-o',
              'tcp.check_checksum:TRUE',
              '-o',
              'tcp.relative_sequence_numbers:FALSE',
              '-T',
              'fields',
              '-E',
              'occurrence=f',
              '-e',
              'frame.number',
              '-e',
              'frame.protocols',
              '-e',
              'ip.checksum.status',
              '-e',
              'tcp.checksum.status',
              '-e',
              'icmp.checksum.status',
              '-e',
              'icmpv6.checksum.status',
              '-e',
              '_ws.malformed',
              '-e',
              '_ws.expert.severity',
              '-e',
              '_ws.expert.message',
            ],
            { encoding: 'utf8' },
          );
          assert.equal(r.status, 0, r.stderr);
          const lines = r.stdout.replace(/\n$/, '').split('\n');
          assert.equal(lines.length, out.frames, 'tshark saw every frame');
          const protocols = new Set<string>();
          for (const line of lines) {
            const [no, protos, ...rest] = line.split('\t');
            const [ipSt, tcpSt, icmpSt, icmp6St, malformed, severity, message] = rest;
            const at = `seed ${seed} frame ${no}: ${line}`;
            protocols.add(protos);
            assert.ok(!protos.includes('malformed') && !malformed, at);
            for (const st of [ipSt, tcpSt, icmpSt, icmp6St])
              assert.ok(st === '' || st === '1', `checksum: ${at}`);
            // 0x00800000 is PI_ERROR.
            for (const s of (severity ?? '').split(',').filter(Boolean))
              assert.ok(Number(s) < 0x00800000, at);
            assert.ok(!(message ?? '').includes('ACKed segment that wasn'), at);
          }
          for (const want of [
            'eth:ethertype:arp',
            'eth:ethertype:ip:icmp:data',
            'eth:ethertype:ipv6:icmpv6',
            'eth:ethertype:ip:tcp',
            'eth:ethertype:ipv6:tcp',
            'eth:ethertype:vlan:ethertype:arp',
          ]) {
            assert.ok(
              [...protocols].some((p) => p === want || p.startsWith(`${want}:`)),
              `no ${want} in ${[...protocols].join(' ')}`,
            );
          }
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
