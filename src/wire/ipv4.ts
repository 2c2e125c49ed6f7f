/**
 * IPv4 headers (RFC 791 3.1).
 *
 * Parsing validates the header (version, IHL, total length, flags, option framing, checksum) and
 * hands up the payload trimmed to Total Length, so Ethernet minimum-size padding never reaches
 * the transport. Options are checked for framing only and otherwise ignored (RFC 1122 3.2.1.8:
 * silently ignore options not understood). Address semantics (martians, broadcast sources) are
 * the stack's business, as is reassembly: fragments are returned with `isFragment` set.
 */

import type { Ipv4Addr } from './address.ts';
import { readU16, readU32, writeU16, writeU32 } from './bytes.ts';
import { finishChecksum, onesSum, pseudoHeaderSumV4, verifiesChecksum } from './checksum.ts';
import { type Parsed, WireError } from './error.ts';

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

/** A header without options; the only kind `emitIpv4Header` writes. */
export const IPV4_HEADER_LENGTH = 20;
const MAX_DATAGRAM = 65535;

export interface Ipv4Packet {
  /** IHL * 4: 20 to 60. */
  headerLength: number;
  /** Differentiated services code point (RFC 2474), 0-63. */
  dscp: number;
  /** Explicit congestion notification (RFC 3168), 0-3. */
  ecn: number;
  totalLength: number;
  ident: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In bytes (the field times 8). */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  /** As received (already verified unless the caller asked not to). */
  checksum: number;
  src: Ipv4Addr;
  dst: Ipv4Addr;
  /** MF set or offset non-zero: part of a datagram that needs reassembly. */
  isFragment: boolean;
  /** The bytes after the header up to Total Length: a view of the parsed bytes. */
  payload: Uint8Array;
}

/** What `emitIpv4Header` reads; a parsed `Ipv4Packet` qualifies. */
export type Ipv4HeaderFields = Pick<
  Ipv4Packet,
  | 'dscp'
  | 'ecn'
  | 'ident'
  | 'dontFragment'
  | 'moreFragments'
  | 'fragmentOffset'
  | 'ttl'
  | 'protocol'
  | 'src'
  | 'dst'
>;

function err(kind: WireError['kind'], reason: string): WireError {
  return Object.freeze(new WireError('ipv4', kind, reason));
}
// Shared immutable errors: refusing a flood of garbage allocates nothing.
const E_SHORT = err('truncated', 'shorter than the 20-byte header');
const E_VERSION = err('malformed', 'version is not 4');
const E_IHL = err('malformed', 'IHL below 5');
const E_SHORT_OPTIONS = err('truncated', 'shorter than the header length IHL states');
const E_TOTAL_SMALL = err('malformed', 'total length smaller than the header');
const E_TOTAL_BIG = err('truncated', 'total length exceeds the bytes received');
const E_RESERVED = err('malformed', 'reserved flag bit set');
const E_OVERSIZE = err('malformed', 'fragment offset plus length exceeds 65535');
const E_OPTION = err('malformed', 'option overruns the header');
const E_CHECKSUM = err('checksum', 'header checksum does not verify');

/**
 * RFC 791 3.1 option framing: End of Option List (0) ends the list, No Operation (1) is one
 * byte, every other option carries a length octet that counts type and length and must fit.
 */
function optionsFramed(b: Uint8Array, start: number, end: number): boolean {
  let o = start;
  while (o < end) {
    const type = b[o];
    if (type === 0) return true;
    if (type === 1) {
      o++;
      continue;
    }
    if (o + 1 >= end) return false;
    const len = b[o + 1];
    if (len < 2 || o + len > end) return false;
    o += len;
  }
  return true;
}

/**
 * Parses the IPv4 packet that is exactly `b` plus any trailing link padding. Rejects: version
 * other than 4; IHL < 5; a header or Total Length beyond `b`; Total Length below the header; the
 * reserved flag set (RFC 791 3.1: "must be zero"; we drop rather than guess what a sender that
 * sets it means); a fragment that would end past 65535 (RFC 791 3.2 maximum datagram: the "ping
 * of death"); options whose lengths overrun the header; a bad checksum when `verifyChecksum`.
 */
export function parseIpv4(b: Uint8Array, verifyChecksum = true): Parsed<Ipv4Packet> {
  if (b.length < IPV4_HEADER_LENGTH) return E_SHORT;
  const vihl = b[0];
  if (vihl >>> 4 !== 4) return E_VERSION;
  const hlen = (vihl & 0x0f) * 4;
  if (hlen < IPV4_HEADER_LENGTH) return E_IHL;
  if (hlen > b.length) return E_SHORT_OPTIONS;
  const total = readU16(b, 2);
  if (total < hlen) return E_TOTAL_SMALL;
  if (total > b.length) return E_TOTAL_BIG;
  const flagsOffset = readU16(b, 6);
  if ((flagsOffset & 0x8000) !== 0) return E_RESERVED;
  const fragmentOffset = (flagsOffset & 0x1fff) * 8;
  if (fragmentOffset + total - hlen > MAX_DATAGRAM) return E_OVERSIZE;
  if (hlen > IPV4_HEADER_LENGTH && !optionsFramed(b, IPV4_HEADER_LENGTH, hlen)) return E_OPTION;
  if (verifyChecksum && !verifiesChecksum(onesSum(b, 0, hlen))) return E_CHECKSUM;
  const moreFragments = (flagsOffset & 0x2000) !== 0;
  return {
    headerLength: hlen,
    dscp: b[1] >>> 2,
    ecn: b[1] & 3,
    totalLength: total,
    ident: readU16(b, 4),
    dontFragment: (flagsOffset & 0x4000) !== 0,
    moreFragments,
    fragmentOffset,
    ttl: b[8],
    protocol: b[9],
    checksum: readU16(b, 10),
    src: readU32(b, 12),
    dst: readU32(b, 16),
    isFragment: moreFragments || fragmentOffset !== 0,
    payload: b.subarray(hlen, total),
  };
}

/**
 * Writes a 20-byte header (no options) at `buf[off]` for `payloadLength` bytes that follow it
 * (Total Length = 20 + payloadLength) and computes its checksum; returns 20. The payload is the
 * caller's business. Throws RangeError for values no header can carry (caller bugs, not input).
 */
export function emitIpv4Header(
  p: Ipv4HeaderFields,
  payloadLength: number,
  buf: Uint8Array,
  off: number,
): number {
  const total = IPV4_HEADER_LENGTH + payloadLength;
  if (payloadLength < 0 || total > MAX_DATAGRAM) throw new RangeError('emitIpv4Header: bad payload length');
  if (p.fragmentOffset % 8 !== 0 || p.fragmentOffset < 0 || p.fragmentOffset > 0x1fff * 8)
    throw new RangeError('emitIpv4Header: fragment offset is not a multiple of 8 in range');
  if (off < 0 || off + IPV4_HEADER_LENGTH > buf.length)
    throw new RangeError('emitIpv4Header: buffer too small');
  buf[off] = 0x45;
  buf[off + 1] = ((p.dscp & 0x3f) << 2) | (p.ecn & 3);
  writeU16(buf, off + 2, total);
  writeU16(buf, off + 4, p.ident);
  writeU16(
    buf,
    off + 6,
    (p.dontFragment ? 0x4000 : 0) | (p.moreFragments ? 0x2000 : 0) | (p.fragmentOffset / 8),
  );
  buf[off + 8] = p.ttl;
  buf[off + 9] = p.protocol;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  writeU32(buf, off + 12, p.src);
  writeU32(buf, off + 16, p.dst);
  writeU16(buf, off + 10, finishChecksum(onesSum(buf, off, off + IPV4_HEADER_LENGTH)));
  return IPV4_HEADER_LENGTH;
}

/** The unfolded RFC 793/768 pseudo-header sum for an upper-layer PDU of `length` bytes in `p`. */
export function ipv4PseudoHeaderSum(p: Pick<Ipv4Packet, 'src' | 'dst' | 'protocol'>, length: number): number {
  return pseudoHeaderSumV4(p.src, p.dst, p.protocol, length);
}
