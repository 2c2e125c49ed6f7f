/**
 * A whole Ethernet frame decoded through every layer this stack speaks, and emitted back.
 *
 * `parseFrame` walks Ethernet (tags included) → ARP | IPv4 | IPv6 → TCP | ICMPv4 | ICMPv6 and
 * verifies every checksum on the way. IP fragments and protocols without a codec (UDP, ESP...)
 * stop at the network layer: their `payload` is there, the transport fields are undefined.
 * Bytes after the network-layer PDU (Ethernet minimum-size padding) are kept as `trailer` so that
 * `emitFrame(parseFrame(x))` reproduces `x` for every frame whose layers round-trip (see each
 * codec: IPv4 options and non-Linux TCP option layouts are re-emitted canonically).
 */

import { ARP_LENGTH, type ArpPacket, emitArp, parseArp } from './arp.ts';
import { type Parsed, WireError } from './error.ts';
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  type EthernetFrame,
  emitEthernetHeader,
  ethernetHeaderLength,
  parseEthernet,
} from './ethernet.ts';
import { emitIcmpv4, type Icmpv4Message, icmpv4Length, parseIcmpv4 } from './icmpv4.ts';
import { emitIcmpv6, type Icmpv6Message, icmpv6Length, parseIcmpv6 } from './icmpv6.ts';
import {
  emitIpv4Header,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPV4_HEADER_LENGTH,
  type Ipv4Packet,
  ipv4PseudoHeaderSum,
  parseIpv4,
} from './ipv4.ts';
import { emitIpv6Header, type Ipv6Packet, ipv6HeaderLength, ipv6PseudoHeaderSum, parseIpv6 } from './ipv6.ts';
import { emitTcp, parseTcp, type TcpSegment, tcpHeaderLength } from './tcp.ts';

export interface Frame {
  eth: EthernetFrame;
  arp: ArpPacket | undefined;
  ipv4: Ipv4Packet | undefined;
  ipv6: Ipv6Packet | undefined;
  tcp: TcpSegment | undefined;
  icmpv4: Icmpv4Message | undefined;
  icmpv6: Icmpv6Message | undefined;
  /** Bytes after the network-layer PDU (padding); a view, usually empty. */
  trailer: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const E_UNKNOWN_ETHERTYPE = Object.freeze(new WireError('frame', 'unsupported', 'EtherType not handled'));

/** Decodes `b` through every layer; any layer's error is returned as is. */
export function parseFrame(b: Uint8Array, verifyChecksums = true): Parsed<Frame> {
  const eth = parseEthernet(b);
  if (eth instanceof WireError) return eth;
  const f: Frame = {
    eth,
    arp: undefined,
    ipv4: undefined,
    ipv6: undefined,
    tcp: undefined,
    icmpv4: undefined,
    icmpv6: undefined,
    trailer: EMPTY,
  };
  const l3 = eth.payload;
  switch (eth.etherType) {
    case ETHERTYPE_ARP: {
      const arp = parseArp(l3);
      if (arp instanceof WireError) return arp;
      f.arp = arp;
      f.trailer = l3.subarray(ARP_LENGTH);
      return f;
    }
    case ETHERTYPE_IPV4: {
      const ip = parseIpv4(l3, verifyChecksums);
      if (ip instanceof WireError) return ip;
      f.ipv4 = ip;
      f.trailer = l3.subarray(ip.totalLength);
      if (ip.isFragment) return f;
      const l4 = ip.payload;
      if (ip.protocol === IPPROTO_TCP) {
        const tcp = parseTcp(l4, verifyChecksums ? ipv4PseudoHeaderSum(ip, l4.length) : undefined);
        if (tcp instanceof WireError) return tcp;
        f.tcp = tcp;
      } else if (ip.protocol === IPPROTO_ICMP) {
        const icmp = parseIcmpv4(l4, verifyChecksums);
        if (icmp instanceof WireError) return icmp;
        f.icmpv4 = icmp;
      }
      return f;
    }
    case ETHERTYPE_IPV6: {
      const ip = parseIpv6(l3);
      if (ip instanceof WireError) return ip;
      f.ipv6 = ip;
      f.trailer = l3.subarray(40 + ip.payloadLength);
      if (ip.fragment !== undefined) return f;
      const l4 = ip.payload;
      if (ip.protocol === IPPROTO_TCP) {
        const tcp = parseTcp(l4, verifyChecksums ? ipv6PseudoHeaderSum(ip, l4.length) : undefined);
        if (tcp instanceof WireError) return tcp;
        f.tcp = tcp;
      } else if (ip.protocol === IPPROTO_ICMPV6) {
        const icmp = parseIcmpv6(l4, verifyChecksums ? ipv6PseudoHeaderSum(ip, l4.length) : undefined);
        if (icmp instanceof WireError) return icmp;
        f.icmpv6 = icmp;
      }
      return f;
    }
    default:
      return E_UNKNOWN_ETHERTYPE;
  }
}

/** Bytes of the transport PDU `emitFrame` writes for `f`, or of the raw IP payload. */
function l4Length(f: Frame, rawPayload: Uint8Array): number {
  if (f.tcp) return tcpHeaderLength(f.tcp) + f.tcp.payload.length;
  if (f.icmpv4) return icmpv4Length(f.icmpv4);
  if (f.icmpv6) return icmpv6Length(f.icmpv6);
  return rawPayload.length;
}

/** Total bytes `emitFrame` writes for `f`. */
export function frameLength(f: Frame): number {
  const eth = ethernetHeaderLength(f.eth);
  let l3: number;
  if (f.arp) l3 = ARP_LENGTH;
  else if (f.ipv4) l3 = IPV4_HEADER_LENGTH + l4Length(f, f.ipv4.payload);
  else if (f.ipv6) l3 = ipv6HeaderLength(f.ipv6) + l4Length(f, f.ipv6.payload);
  else l3 = f.eth.payload.length;
  return eth + l3 + f.trailer.length;
}

/** Writes the transport PDU (or the raw payload) at `buf[off]`; returns its length. */
function emitL4(f: Frame, raw: Uint8Array, pseudoSum: number, buf: Uint8Array, off: number): number {
  if (f.tcp) return emitTcp(f.tcp, buf, off, pseudoSum);
  if (f.icmpv4) return emitIcmpv4(f.icmpv4, buf, off);
  if (f.icmpv6) return emitIcmpv6(f.icmpv6, buf, off, pseudoSum);
  buf.set(raw, off);
  return raw.length;
}

/**
 * Writes the frame at `buf[off]` (lengths and checksums computed); returns bytes written.
 * Throws RangeError when `buf` is too small (a caller bug; size it with `frameLength`).
 */
export function emitFrame(f: Frame, buf: Uint8Array, off = 0): number {
  const total = frameLength(f);
  if (off < 0 || off + total > buf.length) throw new RangeError('emitFrame: buffer too small');
  let o = off + emitEthernetHeader(f.eth, buf, off);
  if (f.arp) {
    o += emitArp(f.arp, buf, o);
  } else if (f.ipv4) {
    const ip = f.ipv4;
    const l4len = l4Length(f, ip.payload);
    o += emitIpv4Header(ip, l4len, buf, o);
    o += emitL4(f, ip.payload, ipv4PseudoHeaderSum(ip, l4len), buf, o);
  } else if (f.ipv6) {
    const ip = f.ipv6;
    const l4len = l4Length(f, ip.payload);
    o += emitIpv6Header(ip, ip.extHeaders.length + l4len, buf, o);
    o += emitL4(f, ip.payload, ipv6PseudoHeaderSum(ip, l4len), buf, o);
  } else {
    buf.set(f.eth.payload, o);
    o += f.eth.payload.length;
  }
  buf.set(f.trailer, o);
  return o + f.trailer.length - off;
}
