/**
 * ARP (RFC 826) for IPv4 over Ethernet, the only combination this stack speaks.
 *
 * Layout: hardware type (1), protocol type (0x0800), hardware length (6), protocol length (4),
 * opcode, sender MAC, sender IPv4, target MAC, target IPv4: 28 bytes. On Ethernet the packet is
 * padded to the 46-byte minimum payload; trailing bytes are ignored here.
 */

import { type Ipv4Addr, type MacAddr, readMac, writeMac } from './address.ts';
import { readU16, readU32, writeU16, writeU32 } from './bytes.ts';
import { type Parsed, WireError } from './error.ts';

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
export type ArpOp = typeof ARP_REQUEST | typeof ARP_REPLY;

export const ARP_LENGTH = 28;
const HTYPE_ETHERNET = 1;
const PTYPE_IPV4 = 0x0800;

export interface ArpPacket {
  op: ArpOp;
  senderMac: MacAddr;
  senderIp: Ipv4Addr;
  /** Ignored in requests (usually zero). */
  targetMac: MacAddr;
  targetIp: Ipv4Addr;
}

const E_SHORT_FIXED = Object.freeze(
  new WireError('arp', 'truncated', 'packet shorter than the 8-byte fixed part'),
);
const E_SHORT = Object.freeze(new WireError('arp', 'truncated', 'packet shorter than 28 bytes'));
const E_HTYPE = Object.freeze(new WireError('arp', 'unsupported', 'hardware type is not Ethernet'));
const E_PTYPE = Object.freeze(new WireError('arp', 'unsupported', 'protocol type is not IPv4'));
const E_LENGTHS = Object.freeze(
  new WireError('arp', 'unsupported', 'address lengths are not 6 (hardware) and 4 (protocol)'),
);
const E_OP = Object.freeze(new WireError('arp', 'unsupported', 'opcode is neither request nor reply'));

export function parseArp(b: Uint8Array): Parsed<ArpPacket> {
  if (b.length < 8) return E_SHORT_FIXED;
  // Check the types first: an ARP for another protocol is unsupported whatever its length.
  if (readU16(b, 0) !== HTYPE_ETHERNET) return E_HTYPE;
  if (readU16(b, 2) !== PTYPE_IPV4) return E_PTYPE;
  if (b[4] !== 6 || b[5] !== 4) return E_LENGTHS;
  const op = readU16(b, 6);
  // RFC 5494 lists more opcodes (RARP, InARP, ...); none of them is ours to answer.
  if (op !== ARP_REQUEST && op !== ARP_REPLY) return E_OP;
  if (b.length < ARP_LENGTH) return E_SHORT;
  return {
    op,
    senderMac: readMac(b, 8),
    senderIp: readU32(b, 14),
    targetMac: readMac(b, 18),
    targetIp: readU32(b, 24),
  };
}

/** Writes the 28-byte packet at `buf[off]`; returns ARP_LENGTH. */
export function emitArp(p: ArpPacket, buf: Uint8Array, off: number): number {
  if (off < 0 || off + ARP_LENGTH > buf.length) throw new RangeError('emitArp: buffer too small');
  writeU16(buf, off, HTYPE_ETHERNET);
  writeU16(buf, off + 2, PTYPE_IPV4);
  buf[off + 4] = 6;
  buf[off + 5] = 4;
  writeU16(buf, off + 6, p.op);
  writeMac(buf, off + 8, p.senderMac);
  writeU32(buf, off + 14, p.senderIp);
  writeMac(buf, off + 18, p.targetMac);
  writeU32(buf, off + 24, p.targetIp);
  return ARP_LENGTH;
}

/** A request asking who has `targetIp` (target MAC zero, RFC 5227 2.1.1). */
export function arpRequest(senderMac: MacAddr, senderIp: Ipv4Addr, targetIp: Ipv4Addr): ArpPacket {
  return { op: ARP_REQUEST, senderMac, senderIp, targetMac: 0, targetIp };
}

/** RFC 826 "Packet Reception": the reply to `request` from the owner of `request.targetIp`. */
export function arpReplyTo(request: ArpPacket, ownMac: MacAddr): ArpPacket {
  return {
    op: ARP_REPLY,
    senderMac: ownMac,
    senderIp: request.targetIp,
    targetMac: request.senderMac,
    targetIp: request.senderIp,
  };
}

/**
 * RFC 5227 3 ARP Announcement (gratuitous ARP): a request whose sender and target IP are both the
 * claimed address and whose target MAC is zero. Sent to the broadcast MAC, it makes every
 * neighbour that caches `ip` update it to `mac` (RFC 826: the sender pair is merged first).
 */
export function gratuitousArp(mac: MacAddr, ip: Ipv4Addr): ArpPacket {
  return { op: ARP_REQUEST, senderMac: mac, senderIp: ip, targetMac: 0, targetIp: ip };
}

/** A gratuitous ARP (request or reply): the sender announces its own address. */
export function isGratuitousArp(p: ArpPacket): boolean {
  return p.senderIp === p.targetIp && p.senderIp !== 0;
}

/** RFC 5227 2.1.1 ARP Probe: a request with sender IP 0.0.0.0 (address conflict detection). */
export function isArpProbe(p: ArpPacket): boolean {
  return p.op === ARP_REQUEST && p.senderIp === 0;
}
