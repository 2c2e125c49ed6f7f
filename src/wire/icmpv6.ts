/**
 * ICMPv6 (RFC 4443) and the Neighbor Discovery messages a host needs (RFC 4861).
 *
 * One record shape for every type (fields a type does not have are 0, false or undefined), so
 * the parse path stays monomorphic and the stack switches on `type`:
 * - echo request/reply (128/129): `ident`, `seqNo`, `data` = echo data;
 * - destination unreachable (1), time exceeded (3): `data` = the invoking packet;
 * - packet too big (2): `mtu`; parameter problem (4): `pointer`; `data` = the invoking packet;
 * - neighbour solicitation (135): `target`, `sourceLinkAddr`;
 * - neighbour advertisement (136): `router`, `solicited`, `override`, `target`, `targetLinkAddr`;
 *   other NDP options (a DAD nonce, ...) stay in `data` and are carried over by emit;
 * - router solicitation / advertisement (133/134): parsed generically (`rest`, `data`), but their
 *   options are validated and a source link-layer address option is reported.
 * `rest` is always the raw 32-bit word after the checksum and `data` always the bytes after it.
 *
 * The checksum covers the RFC 8200 8.1 pseudo-header: the caller passes its unfolded sum,
 * `pseudoHeaderSumV6(src, dst, 58, length)`.
 *
 * RFC 4861 validity checks that need the IP header (hop limit 255, source address rules) or that
 * are policy (code 0, multicast target) belong to the stack; this codec rejects only what it cannot
 * decode: a body too short for its type, an option of length 0 or running past the end
 * (RFC 4861 4.6), and a link-layer address option that is not 8 octets (not Ethernet).
 */

import type { Ipv6Addr, MacAddr } from './address.ts';
import { readIpv6, readMac, writeIpv6, writeMac } from './address.ts';
import { readU16, readU32, writeU16, writeU32 } from './bytes.ts';
import { finishChecksum, onesSum, verifiesChecksum } from './checksum.ts';
import { type Parsed, WireError } from './error.ts';

export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAMETER_PROBLEM = 4;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_ROUTER_SOLICITATION = 133;
export const ICMPV6_ROUTER_ADVERTISEMENT = 134;
export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;

/** Destination unreachable codes (RFC 4443 3.1). */
export const ICMPV6_NO_ROUTE_CODE = 0;
export const ICMPV6_ADMIN_PROHIBITED_CODE = 1;
export const ICMPV6_ADDR_UNREACHABLE_CODE = 3;
export const ICMPV6_PORT_UNREACHABLE_CODE = 4;

/** NDP option types (RFC 4861 4.6). */
export const NDP_OPT_SOURCE_LINK_ADDR = 1;
export const NDP_OPT_TARGET_LINK_ADDR = 2;

export const ICMPV6_HEADER_LENGTH = 8;
/** NS and NA: header + 16-byte target (RFC 4861 7.1.1 / 7.1.2: ICMP length is 24 or more). */
const ND_NS_NA_LENGTH = 24;
const ND_RA_LENGTH = 16;

/** NA flag bits in the first byte of the rest word (RFC 4861 4.4). */
const NA_ROUTER = 0x8000_0000;
const NA_SOLICITED = 0x4000_0000;
const NA_OVERRIDE = 0x2000_0000;

export interface Icmpv6Message {
  type: number;
  code: number;
  /** As received; emit computes it. */
  checksum: number;
  /** The raw 32-bit word after the checksum. */
  rest: number;
  /** Echo (128/129) identifier and sequence number; 0 for other types. */
  ident: number;
  seqNo: number;
  /** Packet too big (2): the MTU of the next-hop link; 0 otherwise. */
  mtu: number;
  /** Parameter problem (4): offset of the error in the invoking packet; 0 otherwise. */
  pointer: number;
  /** Neighbour advertisement flags (RFC 4861 4.4); false for other types. */
  router: boolean;
  solicited: boolean;
  override: boolean;
  /** NS/NA target address (copied); undefined for other types. */
  target: Ipv6Addr | undefined;
  /** Source link-layer address option (type 1) of an RS, RA, NS or NA, when present. */
  sourceLinkAddr: MacAddr | undefined;
  /** Target link-layer address option (type 2) of an RS, RA, NS or NA, when present. */
  targetLinkAddr: MacAddr | undefined;
  /** Zero-copy view of everything after the first 8 bytes (echo data, invoking packet, NDP body). */
  data: Uint8Array;
}

function isNsNa(type: number): boolean {
  return type === ICMPV6_NEIGHBOR_SOLICITATION || type === ICMPV6_NEIGHBOR_ADVERTISEMENT;
}

function isEcho(type: number): boolean {
  return type === ICMPV6_ECHO_REQUEST || type === ICMPV6_ECHO_REPLY;
}

/**
 * Parses one ICMPv6 message; `b` is exactly the upper-layer payload. `pseudoSum` is the unfolded
 * IPv6 pseudo-header sum for length `b.length` (next header 58); `undefined` skips verification.
 * A repeated link-layer address option: the first one wins (as Linux's `ndisc_parse_options`).
 */
export function parseIcmpv6(b: Uint8Array, pseudoSum: number | undefined): Parsed<Icmpv6Message> {
  const len = b.length;
  if (len < ICMPV6_HEADER_LENGTH) return new WireError('icmpv6', 'truncated', 'message shorter than 8 bytes');
  if (pseudoSum !== undefined && !verifiesChecksum(onesSum(b, 0, len, pseudoSum)))
    return new WireError('icmpv6', 'checksum', 'bad ICMPv6 checksum');
  const type = b[0];
  const rest = readU32(b, 4);

  let target: Ipv6Addr | undefined;
  let sourceLinkAddr: MacAddr | undefined;
  let targetLinkAddr: MacAddr | undefined;
  let optionsAt = -1;
  if (isNsNa(type)) {
    if (len < ND_NS_NA_LENGTH)
      return new WireError(
        'icmpv6',
        'truncated',
        'neighbour solicitation/advertisement shorter than 24 bytes',
      );
    target = readIpv6(b, 8);
    optionsAt = ND_NS_NA_LENGTH;
  } else if (type === ICMPV6_ROUTER_ADVERTISEMENT) {
    if (len < ND_RA_LENGTH)
      return new WireError('icmpv6', 'truncated', 'router advertisement shorter than 16 bytes');
    optionsAt = ND_RA_LENGTH;
  } else if (type === ICMPV6_ROUTER_SOLICITATION) {
    optionsAt = ICMPV6_HEADER_LENGTH;
  }

  if (optionsAt >= 0) {
    // RFC 4861 4.6: type, length in units of 8 octets; length 0 is invalid; unknown types skipped.
    let i = optionsAt;
    while (i < len) {
      if (i + 2 > len) return new WireError('icmpv6', 'malformed', 'NDP option header past the end');
      const olen = b[i + 1] << 3;
      if (olen === 0) return new WireError('icmpv6', 'malformed', 'NDP option of length 0');
      if (i + olen > len) return new WireError('icmpv6', 'malformed', 'NDP option runs past the end');
      const otype = b[i];
      if (otype === NDP_OPT_SOURCE_LINK_ADDR || otype === NDP_OPT_TARGET_LINK_ADDR) {
        if (olen !== 8)
          return new WireError(
            'icmpv6',
            'malformed',
            'link-layer address option is not 8 octets (not Ethernet)',
          );
        if (otype === NDP_OPT_SOURCE_LINK_ADDR) {
          if (sourceLinkAddr === undefined) sourceLinkAddr = readMac(b, i + 2);
        } else if (targetLinkAddr === undefined) targetLinkAddr = readMac(b, i + 2);
      }
      i += olen;
    }
  }

  const echo = isEcho(type);
  const na = type === ICMPV6_NEIGHBOR_ADVERTISEMENT;
  return {
    type,
    code: b[1],
    checksum: readU16(b, 2),
    rest,
    ident: echo ? rest >>> 16 : 0,
    seqNo: echo ? rest & 0xffff : 0,
    mtu: type === ICMPV6_PACKET_TOO_BIG ? rest : 0,
    pointer: type === ICMPV6_PARAMETER_PROBLEM ? rest : 0,
    router: na && (rest & NA_ROUTER) !== 0,
    solicited: na && (rest & NA_SOLICITED) !== 0,
    override: na && (rest & NA_OVERRIDE) !== 0,
    target,
    sourceLinkAddr,
    targetLinkAddr,
    data: b.subarray(ICMPV6_HEADER_LENGTH),
  };
}

const EMPTY = new Uint8Array(0);

/** The NDP options area of an NS/NA record's `data` (after the 16-byte target), or empty. */
function nsNaOptions(m: Icmpv6Message): Uint8Array {
  return m.data.length > 16 ? m.data.subarray(16) : EMPTY;
}

/**
 * Length of the options in `opts` other than link-layer address options, walked as RFC 4861 4.6
 * (stopping at the first malformed one); copies them to `out[at]` when `out` is given.
 */
function otherNdOptions(opts: Uint8Array, out: Uint8Array | undefined, at: number): number {
  let n = 0;
  let i = 0;
  while (i + 2 <= opts.length) {
    const olen = opts[i + 1] << 3;
    if (olen === 0 || i + olen > opts.length) break;
    const t = opts[i];
    if (t !== NDP_OPT_SOURCE_LINK_ADDR && t !== NDP_OPT_TARGET_LINK_ADDR) {
      if (out !== undefined) out.set(opts.subarray(i, i + olen), at + n);
      n += olen;
    }
    i += olen;
  }
  return n;
}

/** Bytes emitIcmpv6 writes for `m`. */
export function icmpv6Length(m: Icmpv6Message): number {
  if (isNsNa(m.type))
    return (
      ND_NS_NA_LENGTH +
      (m.sourceLinkAddr !== undefined ? 8 : 0) +
      (m.targetLinkAddr !== undefined ? 8 : 0) +
      otherNdOptions(nsNaOptions(m), undefined, 0)
    );
  return ICMPV6_HEADER_LENGTH + m.data.length;
}

/**
 * Writes `m` at `buf[off]` and returns its length; `pseudoSum` is the unfolded pseudo-header sum
 * for that length. NS and NA are built from their typed fields: reserved bits zero (`rest` is
 * ignored), `target`, a source and/or a target link-layer address option for each one set, then
 * any other options found in `data` after its 16-byte target, in their order (such as the nonce
 * option, RFC 7527, of a Linux DAD probe). That is Linux's order, so a kernel NS/NA round-trips; a
 * record built from fields has empty `data` and gets only the link-layer options. Other types write the
 * rest word from their typed fields (echo: ident/seqNo; packet too big: mtu; parameter problem:
 * pointer; otherwise `rest`) followed by `data` verbatim (RS and RA included). The data copy is
 * skipped when `m.data` already sits at `buf[off + 8]`. Throws RangeError when `buf` is too small
 * or an NS/NA has no target (caller bugs).
 */
export function emitIcmpv6(m: Icmpv6Message, buf: Uint8Array, off: number, pseudoSum: number): number {
  const type = m.type;
  const total = icmpv6Length(m);
  if (off < 0 || off + total > buf.length) throw new RangeError('emitIcmpv6: buffer too small');
  buf[off] = type;
  buf[off + 1] = m.code;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  if (isNsNa(type)) {
    const target = m.target;
    if (target === undefined || target.length !== 16)
      throw new RangeError('emitIcmpv6: neighbour solicitation/advertisement without a 16-byte target');
    let rest = 0;
    if (type === ICMPV6_NEIGHBOR_ADVERTISEMENT) {
      if (m.router) rest |= NA_ROUTER;
      if (m.solicited) rest |= NA_SOLICITED;
      if (m.override) rest |= NA_OVERRIDE;
    }
    let others = nsNaOptions(m);
    // Emitting over the buffer the record was parsed from: copy the options out first.
    if (others.length > 0 && others.buffer === buf.buffer) others = others.slice();
    writeU32(buf, off + 4, rest >>> 0);
    writeIpv6(buf, off + 8, target);
    let p = off + ND_NS_NA_LENGTH;
    if (m.sourceLinkAddr !== undefined) {
      buf[p] = NDP_OPT_SOURCE_LINK_ADDR;
      buf[p + 1] = 1;
      writeMac(buf, p + 2, m.sourceLinkAddr);
      p += 8;
    }
    if (m.targetLinkAddr !== undefined) {
      buf[p] = NDP_OPT_TARGET_LINK_ADDR;
      buf[p + 1] = 1;
      writeMac(buf, p + 2, m.targetLinkAddr);
      p += 8;
    }
    otherNdOptions(others, buf, p);
  } else {
    let rest = m.rest;
    if (isEcho(type)) rest = ((m.ident & 0xffff) << 16) | (m.seqNo & 0xffff);
    else if (type === ICMPV6_PACKET_TOO_BIG) rest = m.mtu;
    else if (type === ICMPV6_PARAMETER_PROBLEM) rest = m.pointer;
    writeU32(buf, off + 4, rest >>> 0);
    const data = m.data;
    const dataAt = off + ICMPV6_HEADER_LENGTH;
    if (data.length > 0 && !(data.buffer === buf.buffer && data.byteOffset === buf.byteOffset + dataAt))
      buf.set(data, dataAt);
  }
  writeU16(buf, off + 2, finishChecksum(onesSum(buf, off, off + total, pseudoSum)));
  return total;
}

const NO_DATA = new Uint8Array(0);

/** A message record of `type` with every other field empty, overridden by `fields` (for building). */
export function icmpv6Message(type: number, fields: Partial<Icmpv6Message> = {}): Icmpv6Message {
  return {
    type,
    code: 0,
    checksum: 0,
    rest: 0,
    ident: 0,
    seqNo: 0,
    mtu: 0,
    pointer: 0,
    router: false,
    solicited: false,
    override: false,
    target: undefined,
    sourceLinkAddr: undefined,
    targetLinkAddr: undefined,
    data: NO_DATA,
    ...fields,
  };
}
