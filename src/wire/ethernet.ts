/**
 * Ethernet II frames (IEEE 802.3 clause 3 with the DIX type field) and IEEE 802.1Q VLAN tags,
 * including stacked tags (802.1ad "Q-in-Q": S-tag 0x88a8 outside, C-tag 0x8100 inside).
 *
 * The frame handed to `parseEthernet` starts at the destination address and ends where the
 * driver says it ends; the FCS is never present (TAP and the simulator strip it). Minimum-size
 * padding is part of the payload here: the network layer trims it with its own length field.
 */

import { type MacAddr, readMac, writeMac } from './address.ts';
import { readU16, writeU16 } from './bytes.ts';
import { type Parsed, WireError } from './error.ts';

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
/** IEEE 802.1Q customer tag (C-tag). */
export const ETHERTYPE_VLAN = 0x8100;
/** IEEE 802.1ad service tag (S-tag). */
export const ETHERTYPE_QINQ = 0x88a8;

/** Destination, source, type. */
export const ETHERNET_HEADER_LENGTH = 14;
export const VLAN_TAG_LENGTH = 4;

/** One 802.1Q tag: the TPID that introduced it and its Tag Control Information. */
export interface VlanTag {
  /** ETHERTYPE_VLAN or ETHERTYPE_QINQ. */
  tpid: number;
  /** Priority code point, 0-7. */
  pcp: number;
  /** Drop eligible indicator (formerly CFI). */
  dei: boolean;
  /** VLAN identifier, 0-4095 (0: priority tag only; 4095 reserved). */
  vid: number;
}

export interface EthernetFrame {
  dst: MacAddr;
  src: MacAddr;
  /** Outermost tag first. `NO_VLANS` (shared, frozen) for untagged frames. */
  vlans: readonly VlanTag[];
  /** The EtherType after the last tag (>= 0x0600). */
  etherType: number;
  /** Everything after the header, padding included: a view of the parsed bytes. */
  payload: Uint8Array;
}

/** The `vlans` of every untagged frame: shared so that parsing one allocates nothing. */
export const NO_VLANS: readonly VlanTag[] = Object.freeze([]);

/** Deepest tag stack accepted. */
export const MAX_VLAN_TAGS = 4;

// Errors are immutable and carry no stack, so one instance each serves every refused frame.
const E_SHORT = Object.freeze(
  new WireError('ethernet', 'truncated', 'frame shorter than the 14-byte header'),
);
const E_SHORT_TAG = Object.freeze(new WireError('ethernet', 'truncated', 'frame ends inside a VLAN tag'));
const E_TAGS = Object.freeze(new WireError('ethernet', 'unsupported', 'more than 4 stacked VLAN tags'));
const E_LENGTH = Object.freeze(
  new WireError('ethernet', 'unsupported', 'IEEE 802.3 length field instead of an EtherType'),
);

function isTpid(t: number): boolean {
  return t === ETHERTYPE_VLAN || t === ETHERTYPE_QINQ;
}

export function parseEthernet(b: Uint8Array): Parsed<EthernetFrame> {
  if (b.length < ETHERNET_HEADER_LENGTH) return E_SHORT;
  let type = readU16(b, 12);
  let off = ETHERNET_HEADER_LENGTH;
  let vlans: readonly VlanTag[] = NO_VLANS;
  if (isTpid(type)) {
    const tags: VlanTag[] = [];
    // 802.1Q and 802.1ad stack two tags; anything deeper than MAX_VLAN_TAGS is refused rather than
    // turned into thousands of tag records by a jumbo frame made of tags.
    while (isTpid(type)) {
      if (tags.length === MAX_VLAN_TAGS) return E_TAGS;
      if (off + VLAN_TAG_LENGTH > b.length) return E_SHORT_TAG;
      const tci = readU16(b, off);
      tags.push({ tpid: type, pcp: tci >>> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0x0fff });
      type = readU16(b, off + 2);
      off += VLAN_TAG_LENGTH;
    }
    vlans = tags;
  }
  // IEEE 802.3 3.2.6: values up to 1500 are a length (an LLC frame follows); 1501-1535 are
  // undefined. Neither is Ethernet II.
  if (type < 0x0600) return E_LENGTH;
  return {
    dst: readMac(b, 0),
    src: readMac(b, 6),
    vlans,
    etherType: type,
    payload: b.subarray(off),
  };
}

/** Bytes `emitEthernetHeader` writes for `f`. */
export function ethernetHeaderLength(f: Pick<EthernetFrame, 'vlans'>): number {
  return ETHERNET_HEADER_LENGTH + VLAN_TAG_LENGTH * f.vlans.length;
}

/**
 * Writes the header of `f` (addresses, tags, EtherType) at `buf[off]`; returns its length. The
 * payload is not touched. Tag fields are masked to their widths.
 */
export function emitEthernetHeader(
  f: Pick<EthernetFrame, 'dst' | 'src' | 'vlans' | 'etherType'>,
  buf: Uint8Array,
  off: number,
): number {
  const len = ethernetHeaderLength(f);
  if (off < 0 || off + len > buf.length) throw new RangeError('emitEthernetHeader: buffer too small');
  writeMac(buf, off, f.dst);
  writeMac(buf, off + 6, f.src);
  let o = off + 12;
  const vlans = f.vlans;
  for (let i = 0; i < vlans.length; i++) {
    const t = vlans[i];
    writeU16(buf, o, t.tpid);
    writeU16(buf, o + 2, ((t.pcp & 7) << 13) | (t.dei ? 0x1000 : 0) | (t.vid & 0x0fff));
    o += VLAN_TAG_LENGTH;
  }
  writeU16(buf, o, f.etherType);
  return len;
}

/** Header plus payload length. */
export function ethernetLength(f: Pick<EthernetFrame, 'vlans' | 'payload'>): number {
  return ethernetHeaderLength(f) + f.payload.length;
}

/**
 * Writes header and payload at `buf[off]`; returns the bytes written. The payload copy is skipped
 * when `f.payload` already is the region right after the header in `buf` (built in place).
 * No minimum-size padding is added: that is the link's business.
 */
export function emitEthernet(f: EthernetFrame, buf: Uint8Array, off: number): number {
  const h = emitEthernetHeader(f, buf, off);
  const p = f.payload;
  const at = off + h;
  if (at + p.length > buf.length) throw new RangeError('emitEthernet: buffer too small');
  if (!(p.buffer === buf.buffer && p.byteOffset === buf.byteOffset + at)) buf.set(p, at);
  return h + p.length;
}
