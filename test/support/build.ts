/**
 * Frame builders for tests and benchmarks: a record with sensible defaults, overridden by what
 * the caller names, encoded with the codecs (so checksums and lengths are always right).
 */
import type { ArpPacket } from '../../src/wire/arp.ts';
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  type EthernetFrame,
  NO_VLANS,
} from '../../src/wire/ethernet.ts';
import { emitFrame, type Frame, frameLength } from '../../src/wire/frame.ts';
import type { Icmpv4Message } from '../../src/wire/icmpv4.ts';
import { type Icmpv6Message, icmpv6Message } from '../../src/wire/icmpv6.ts';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, type Ipv4Packet } from '../../src/wire/ipv4.ts';
import { type Ipv6Packet, NO_EXT_HEADERS } from '../../src/wire/ipv6.ts';
import { type TcpSegment, tcpSegment } from '../../src/wire/tcp.ts';

const EMPTY = new Uint8Array(0);

/** A TCP segment: defaults as `tcpSegment`, but ports 40000 → 80 and a 65535 window. */
export function tcp(s: Partial<TcpSegment>): TcpSegment {
  return tcpSegment({ srcPort: 40000, dstPort: 80, window: 65535, headerLength: 0, ...s });
}

export function ipv4(p: Partial<Ipv4Packet> & Pick<Ipv4Packet, 'src' | 'dst'>): Ipv4Packet {
  return {
    headerLength: 20,
    dscp: 0,
    ecn: 0,
    totalLength: 0,
    ident: 0,
    dontFragment: true,
    moreFragments: false,
    fragmentOffset: 0,
    ttl: 64,
    protocol: IPPROTO_TCP,
    checksum: 0,
    isFragment: false,
    payload: EMPTY,
    ...p,
  };
}

export function ipv6(p: Partial<Ipv6Packet> & Pick<Ipv6Packet, 'src' | 'dst'>): Ipv6Packet {
  const protocol = p.protocol ?? IPPROTO_TCP;
  return {
    trafficClass: 0,
    flowLabel: 0,
    payloadLength: 0,
    nextHeader: protocol,
    hopLimit: 64,
    extHeaders: NO_EXT_HEADERS,
    protocol,
    fragment: undefined,
    payload: EMPTY,
    ...p,
  };
}

export function icmpv4(m: Partial<Icmpv4Message> & Pick<Icmpv4Message, 'type'>): Icmpv4Message {
  return { code: 0, checksum: 0, ident: 0, seqNo: 0, mtu: 0, rest: 0, data: EMPTY, ...m };
}

export function icmpv6(m: Partial<Icmpv6Message> & Pick<Icmpv6Message, 'type'>): Icmpv6Message {
  return icmpv6Message(m.type, m);
}

export function eth(
  dst: number,
  src: number,
  etherType: number,
  e: Partial<EthernetFrame> = {},
): EthernetFrame {
  return { dst, src, vlans: NO_VLANS, etherType, payload: EMPTY, ...e };
}

/** A whole frame record; the EtherType and IP protocol follow from the layers given. */
export function frame(
  dst: number,
  src: number,
  layers: {
    arp?: ArpPacket;
    ipv4?: Ipv4Packet;
    ipv6?: Ipv6Packet;
    tcp?: TcpSegment;
    icmpv4?: Icmpv4Message;
    icmpv6?: Icmpv6Message;
    vlans?: EthernetFrame['vlans'];
  },
): Frame {
  const etherType = layers.arp ? ETHERTYPE_ARP : layers.ipv6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4;
  const proto = layers.tcp ? IPPROTO_TCP : layers.icmpv4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  const v4 = layers.ipv4 && { ...layers.ipv4, protocol: proto };
  const v6 = layers.ipv6 && {
    ...layers.ipv6,
    protocol: proto,
    nextHeader: layers.ipv6.extHeaders.length > 0 ? layers.ipv6.nextHeader : proto,
  };
  return {
    eth: eth(dst, src, etherType, { vlans: layers.vlans ?? NO_VLANS }),
    arp: layers.arp,
    ipv4: v4,
    ipv6: v6,
    tcp: layers.tcp,
    icmpv4: layers.icmpv4,
    icmpv6: layers.icmpv6,
    trailer: EMPTY,
  };
}

/** Encodes a frame record to bytes. */
export function encode(f: Frame): Uint8Array {
  const out = new Uint8Array(frameLength(f));
  emitFrame(f, out, 0);
  return out;
}
