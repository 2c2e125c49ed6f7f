/**
 * IPv6 headers (RFC 8200 3) and the extension header chain (RFC 8200 4).
 *
 * Parsing validates the fixed header, trims the packet to Payload Length (dropping link padding),
 * and walks the extension headers to find the upper-layer protocol. The chain is handed up as
 * one raw view (`extHeaders`) so that emit(parse(x)) reproduces it byte for byte; its options
 * are not interpreted by the parse (a Jumbo Payload option, RFC 2675, is refused as unsupported):
 * `ipv6OptionActions` walks them for the stack, which applies RFC 8200 4.2's action bits. IPv6
 * has no header checksum.
 */

import { type Ipv6Addr, readIpv6, writeIpv6 } from './address.ts';
import { readU16, readU32, writeU16 } from './bytes.ts';
import { pseudoHeaderSumV6 } from './checksum.ts';
import { type Parsed, WireError } from './error.ts';

export const IPV6_HEADER_LENGTH = 40;

// RFC 8200 4 and the IANA "IPv6 Extension Header Types" registry.
export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;
export const IPPROTO_MH = 135;
export const IPPROTO_HIP = 139;
export const IPPROTO_SHIM6 = 140;

/** The walk gives up after this many extension headers (RFC 8200 allows any number; we do not). */
export const MAX_EXT_HEADERS = 16;

export interface Ipv6Fragment {
  /** Fragment offset in bytes (the field times 8). */
  offset: number;
  /** M flag: more fragments follow. */
  more: boolean;
  ident: number;
  /**
   * Where the Fragment header starts, from the start of the packet: the unfragmentable part
   * (RFC 8200 4.5) is the bytes before it, the fragment's data the bytes from `at + 8` on.
   */
  at: number;
  /** Offset in the packet of the Next Header field that names the Fragment header (6 when first). */
  linkAt: number;
  /** The Fragment header's own Next Header: the first header of the fragmentable part. */
  nextHeader: number;
}

export interface Ipv6Packet {
  /** 8 bits: DSCP (upper 6) and ECN (lower 2). */
  trafficClass: number;
  /** 20 bits. */
  flowLabel: number;
  /** As received: extension headers plus upper layer, in bytes. */
  payloadLength: number;
  /** The fixed header's Next Header field: the first extension header or the upper layer. */
  nextHeader: number;
  hopLimit: number;
  src: Ipv6Addr;
  dst: Ipv6Addr;
  /**
   * The extension headers between the fixed header and `payload`, raw (a view of the parsed
   * bytes); `NO_EXT_HEADERS` when there are none. For a non-first fragment it ends with the
   * Fragment header.
   */
  extHeaders: Uint8Array;
  /**
   * The Next Header value that ends the walk: an upper-layer protocol, ESP (50, opaque), No Next
   * Header (59), or for a non-first fragment the Fragment header's Next Header.
   */
  protocol: number;
  /** Present when the packet carries a Fragment header: the caller must reassemble. */
  fragment: Ipv6Fragment | undefined;
  /** The bytes after the chain, up to Payload Length: a view of the parsed bytes. */
  payload: Uint8Array;
}

/** What `emitIpv6Header` reads; a parsed `Ipv6Packet` qualifies. */
export type Ipv6HeaderFields = Pick<
  Ipv6Packet,
  'trafficClass' | 'flowLabel' | 'nextHeader' | 'hopLimit' | 'src' | 'dst' | 'extHeaders'
>;

/** The `extHeaders` of every packet without extension headers (shared: no allocation). */
export const NO_EXT_HEADERS: Uint8Array = Object.freeze(new Uint8Array(0)) as Uint8Array;

function err(kind: WireError['kind'], reason: string): WireError {
  return Object.freeze(new WireError('ipv6', kind, reason));
}
const E_SHORT = err('truncated', 'shorter than the 40-byte header');
const E_VERSION = err('malformed', 'version is not 6');
const E_PAYLOAD = err('truncated', 'payload length exceeds the bytes received');
const E_JUMBO = err('unsupported', 'jumbogram (RFC 2675)');
const E_HBH = err('malformed', 'Hop-by-Hop Options header not first (RFC 8200 4.1)');
const E_EXT_SHORT = err('truncated', 'extension header overruns the payload length');
const E_TOO_MANY = err('malformed', `more than ${MAX_EXT_HEADERS} extension headers`);
const E_TWO_FRAGMENTS = err('unsupported', 'more than one Fragment header');
const E_FRAG_LENGTH = err('malformed', 'fragment length not a multiple of 8 with M set (RFC 8200 4.5)');
const E_FRAG_OVERSIZE = err('malformed', 'fragment ends past 65535 (RFC 8200 4.5)');

/** True when the Hop-by-Hop header at `b[40]` (as far as `b` holds it) has a Jumbo Payload option. */
function hasJumboOption(b: Uint8Array): boolean {
  if (b.length < IPV6_HEADER_LENGTH + 2) return false;
  let end = IPV6_HEADER_LENGTH + (b[IPV6_HEADER_LENGTH + 1] + 1) * 8;
  if (end > b.length) end = b.length;
  // RFC 8200 4.2 TLV options: Pad1 (0) is one byte; every other option is type, length, data.
  let o = IPV6_HEADER_LENGTH + 2;
  while (o < end) {
    const type = b[o];
    if (type === 0xc2) return true;
    if (type === 0) {
      o++;
      continue;
    }
    if (o + 1 >= end) return false;
    o += 2 + b[o + 1];
  }
  return false;
}

/**
 * Parses the IPv6 packet that is exactly `b` plus any trailing link padding.
 *
 * The chain walk (RFC 8200 4.1): Hop-by-Hop (0, first only), Routing (43), Destination Options
 * (60), Mobility (135), HIP (139), Shim6 (140) and the experimental 253/254 have the generic
 * form, (Hdr Ext Len + 1) * 8 bytes; Fragment (44) is 8 bytes; AH (51) is (Payload Len + 2) * 4
 * bytes (RFC 4302 2.2). ESP (50) and No Next Header (59) end the walk with `payload` = the rest.
 * A non-first fragment ends the walk after its Fragment header (what follows is fragment data).
 * Every header must lie within Payload Length; at most MAX_EXT_HEADERS are walked.
 */
export function parseIpv6(b: Uint8Array): Parsed<Ipv6Packet> {
  if (b.length < IPV6_HEADER_LENGTH) return E_SHORT;
  if (b[0] >>> 4 !== 6) return E_VERSION;
  const payloadLength = readU16(b, 4);
  const nextHeader = b[6];
  // RFC 2675 2: a jumbogram has Payload Length 0 and a Jumbo option in the Hop-by-Hop header.
  if (payloadLength === 0 && nextHeader === IPPROTO_HOPOPTS && hasJumboOption(b)) return E_JUMBO;
  const end = IPV6_HEADER_LENGTH + payloadLength;
  if (end > b.length) return E_PAYLOAD;

  let nh = nextHeader;
  let off = IPV6_HEADER_LENGTH;
  // Where the Next Header field naming the header at `off` lives.
  let linkAt = 6;
  let fragment: Ipv6Fragment | undefined;
  for (let count = 0; ; count++) {
    if (nh === IPPROTO_HOPOPTS && count !== 0) return E_HBH;
    let len: number;
    switch (nh) {
      case IPPROTO_HOPOPTS:
      case IPPROTO_ROUTING:
      case IPPROTO_DSTOPTS:
      case IPPROTO_MH:
      case IPPROTO_HIP:
      case IPPROTO_SHIM6:
      case 253:
      case 254:
        if (off + 2 > end) return E_EXT_SHORT;
        len = (b[off + 1] + 1) * 8;
        break;
      case IPPROTO_AH:
        if (off + 2 > end) return E_EXT_SHORT;
        len = (b[off + 1] + 2) * 4;
        break;
      case IPPROTO_FRAGMENT:
        len = 8;
        break;
      default:
        // Upper layer, ESP or No Next Header: the walk ends here.
        len = -1;
    }
    if (len < 0) break;
    if (count === MAX_EXT_HEADERS) return E_TOO_MANY;
    if (off + len > end) return E_EXT_SHORT;
    const next = b[off];
    if (nh === IPPROTO_FRAGMENT) {
      if (fragment !== undefined) return E_TWO_FRAGMENTS;
      const word = readU16(b, off + 2);
      const offset = word & 0xfff8;
      const more = (word & 1) !== 0;
      const dataLength = end - (off + 8);
      if (more && dataLength % 8 !== 0) return E_FRAG_LENGTH;
      if (offset + dataLength > 65535) return E_FRAG_OVERSIZE;
      fragment = { offset, more, ident: readU32(b, off + 4), at: off, linkAt, nextHeader: next };
      if (offset !== 0) {
        // RFC 8200 4.5: only the first fragment holds the rest of the chain.
        off += 8;
        nh = next;
        break;
      }
    }
    linkAt = off;
    off += len;
    nh = next;
  }
  return {
    trafficClass: ((b[0] & 0x0f) << 4) | (b[1] >>> 4),
    flowLabel: ((b[1] & 0x0f) << 16) | readU16(b, 2),
    payloadLength,
    nextHeader,
    hopLimit: b[7],
    src: readIpv6(b, 8),
    dst: readIpv6(b, 24),
    extHeaders: off === IPV6_HEADER_LENGTH ? NO_EXT_HEADERS : b.subarray(IPV6_HEADER_LENGTH, off),
    protocol: nh,
    fragment,
    payload: b.subarray(off, end),
  };
}

/** Bytes `emitIpv6Header` writes for `p`: 40 plus its extension headers. */
export function ipv6HeaderLength(p: Pick<Ipv6Packet, 'extHeaders'>): number {
  return IPV6_HEADER_LENGTH + p.extHeaders.length;
}

/**
 * Writes the fixed header followed by `p.extHeaders` verbatim at `buf[off]`; returns
 * `ipv6HeaderLength(p)`. `payloadLength` is the Payload Length field exactly (RFC 8200 3):
 * every byte after the 40-byte fixed header, so `p.extHeaders.length` + the upper-layer length.
 * `p.nextHeader` must name the first extension header (or the upper layer when there is none).
 * emit(parse(x), parse(x).payloadLength) reproduces x's header and chain. Throws RangeError
 * for lengths no header can carry (caller bugs, not input).
 */
export function emitIpv6Header(
  p: Ipv6HeaderFields,
  payloadLength: number,
  buf: Uint8Array,
  off: number,
): number {
  const ext = p.extHeaders;
  if (payloadLength < ext.length || payloadLength > 0xffff)
    throw new RangeError('emitIpv6Header: payload length below the extension headers or above 65535');
  const len = IPV6_HEADER_LENGTH + ext.length;
  if (off < 0 || off + len > buf.length) throw new RangeError('emitIpv6Header: buffer too small');
  const tc = p.trafficClass & 0xff;
  const fl = p.flowLabel & 0xfffff;
  buf[off] = 0x60 | (tc >>> 4);
  buf[off + 1] = ((tc & 0x0f) << 4) | (fl >>> 16);
  writeU16(buf, off + 2, fl);
  writeU16(buf, off + 4, payloadLength);
  buf[off + 6] = p.nextHeader;
  buf[off + 7] = p.hopLimit;
  writeIpv6(buf, off + 8, p.src);
  writeIpv6(buf, off + 24, p.dst);
  const at = off + IPV6_HEADER_LENGTH;
  if (ext.length > 0 && !(ext.buffer === buf.buffer && ext.byteOffset === buf.byteOffset + at))
    buf.set(ext, at);
  return len;
}

/**
 * The unfolded RFC 8200 8.1 pseudo-header sum for an upper-layer PDU of `length` bytes in `p`
 * (uses `p.dst`: right at the final destination; a sender with a Routing header must use the
 * final address instead).
 */
export function ipv6PseudoHeaderSum(p: Pick<Ipv6Packet, 'src' | 'dst' | 'protocol'>, length: number): number {
  return pseudoHeaderSumV6(p.src, p.dst, p.protocol, length);
}

// RFC 8200 4.2: the two high-order bits of an option's type say what a node that does not
// recognise the option must do with the packet.
/** 00: skip over this option and continue processing the header. */
export const OPTION_SKIP = 0;
/** 01: discard the packet. */
export const OPTION_DISCARD = 1;
/** 10: discard the packet and send an ICMP Parameter Problem, Code 2, pointing at the option's type. */
export const OPTION_DISCARD_ICMP = 2;
/** 11: as 10, but send the Parameter Problem only when the destination was not multicast. */
export const OPTION_DISCARD_ICMP_UNICAST = 3;

const OPT_PAD1 = 0;
const OPT_PADN = 1;
/** RFC 2711: meaningful to routers only; a host passes over it without counting it as unknown. */
const OPT_ROUTER_ALERT = 5;

export interface Ipv6OptionVerdict {
  /** Options not recognised whose action is 00 (skip), walked over before the verdict. */
  skipped: number;
  /** OPTION_SKIP: the packet may be processed; else the action of the option that stopped it. */
  action: number;
  /** Offset of that option's type byte from the start of the packet (a Parameter Problem's pointer). */
  pointer: number;
}

const E_OPTION = err('malformed', 'option runs past its extension header (RFC 8200 4.2)');

/**
 * RFC 8200 4.2 for a host: walks the options of the Hop-by-Hop and Destination Options headers of
 * a parsed packet and says what to do with it. A host recognises Pad1 and PadN (and passes over a
 * Hop-by-Hop Router Alert, RFC 2711); any other option is unrecognised and its type's high-order
 * bits decide (OPTION_*). The walk stops at the first option that is not skipped. Only headers
 * that start at or after byte `from` of the packet are looked into, and with `untilFragment` the
 * walk ends at a Fragment header: so the unfragmentable part of each fragment and the fragmentable
 * part of the reassembled datagram are each processed once, as RFC 8200 4.5 orders it. An option
 * whose length runs past its header is an error (Linux's ip6_parse_tlv drops the packet).
 */
export function ipv6OptionActions(
  p: Pick<Ipv6Packet, 'nextHeader' | 'extHeaders'>,
  from = IPV6_HEADER_LENGTH,
  untilFragment = false,
): Parsed<Ipv6OptionVerdict> {
  const ext = p.extHeaders;
  let nh = p.nextHeader;
  let skipped = 0;
  // parseIpv6 validated the chain's framing: every header lies within `ext`.
  for (let i = 0; i < ext.length; ) {
    let len: number;
    switch (nh) {
      case IPPROTO_FRAGMENT:
        if (untilFragment) return { skipped, action: OPTION_SKIP, pointer: 0 };
        len = 8;
        break;
      case IPPROTO_AH:
        len = (ext[i + 1] + 2) * 4;
        break;
      default:
        len = (ext[i + 1] + 1) * 8;
    }
    if ((nh === IPPROTO_HOPOPTS || nh === IPPROTO_DSTOPTS) && IPV6_HEADER_LENGTH + i >= from) {
      const end = i + len;
      let o = i + 2;
      while (o < end) {
        const type = ext[o];
        if (type === OPT_PAD1) {
          o++;
          continue;
        }
        if (o + 2 > end || o + 2 + ext[o + 1] > end) return E_OPTION;
        if (type !== OPT_PADN && !(type === OPT_ROUTER_ALERT && nh === IPPROTO_HOPOPTS)) {
          const action = type >>> 6;
          if (action !== OPTION_SKIP) return { skipped, action, pointer: IPV6_HEADER_LENGTH + o };
          skipped++;
        }
        o += 2 + ext[o + 1];
      }
    }
    nh = ext[i];
    i += len;
  }
  return { skipped, action: OPTION_SKIP, pointer: 0 };
}
