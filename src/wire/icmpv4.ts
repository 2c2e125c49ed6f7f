/**
 * ICMP for IPv4 (RFC 792; "fragmentation needed" next-hop MTU: RFC 1191 4).
 *
 * Every message is type, code, checksum, a 32-bit "rest of header" word and data. Every type
 * parses (unknown ones generically: type, code, rest, data); the stack decides what to answer.
 * The checksum covers the ICMP message only (no pseudo-header).
 */

import { readU16, readU32, writeU16, writeU32 } from './bytes.ts';
import { finishChecksum, onesSum, verifiesChecksum } from './checksum.ts';
import { type Parsed, WireError } from './error.ts';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_SOURCE_QUENCH = 4;
export const ICMP_REDIRECT = 5;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAMETER_PROBLEM = 12;

/** Destination unreachable codes (RFC 792; 4 is RFC 1191's "fragmentation needed and DF set"). */
export const ICMP_NET_UNREACHABLE_CODE = 0;
export const ICMP_HOST_UNREACHABLE_CODE = 1;
export const ICMP_PROTO_UNREACHABLE_CODE = 2;
export const ICMP_PORT_UNREACHABLE_CODE = 3;
export const ICMP_FRAG_NEEDED_CODE = 4;
/** Time exceeded codes. */
export const ICMP_TTL_EXCEEDED_CODE = 0;
export const ICMP_REASSEMBLY_TIME_EXCEEDED_CODE = 1;

export const ICMPV4_HEADER_LENGTH = 8;

export interface Icmpv4Message {
  type: number;
  code: number;
  /** As received; emit computes it. */
  checksum: number;
  /** Echo request/reply identifier; 0 for other types. */
  ident: number;
  /** Echo request/reply sequence number; 0 for other types. */
  seqNo: number;
  /** Next-hop MTU of destination unreachable / fragmentation needed (RFC 1191 4); 0 otherwise. */
  mtu: number;
  /** The raw 32-bit word after the checksum. */
  rest: number;
  /** Zero-copy view: echo data, or the invoking datagram (IP header + 8+ bytes) for errors. */
  data: Uint8Array;
}

function isEcho(type: number): boolean {
  return type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY;
}

function isFragNeeded(type: number, code: number): boolean {
  return type === ICMP_DEST_UNREACHABLE && code === ICMP_FRAG_NEEDED_CODE;
}

/** Parses one ICMP message; `b` is exactly the IPv4 payload. */
export function parseIcmpv4(b: Uint8Array, verifyChecksum = true): Parsed<Icmpv4Message> {
  if (b.length < ICMPV4_HEADER_LENGTH)
    return new WireError('icmpv4', 'truncated', 'message shorter than 8 bytes');
  if (verifyChecksum && !verifiesChecksum(onesSum(b, 0, b.length)))
    return new WireError('icmpv4', 'checksum', 'bad ICMP checksum');
  const type = b[0];
  const code = b[1];
  const rest = readU32(b, 4);
  const echo = isEcho(type);
  return {
    type,
    code,
    checksum: readU16(b, 2),
    ident: echo ? rest >>> 16 : 0,
    seqNo: echo ? rest & 0xffff : 0,
    mtu: isFragNeeded(type, code) ? rest & 0xffff : 0,
    rest,
    data: b.subarray(ICMPV4_HEADER_LENGTH),
  };
}

/** Bytes emitIcmpv4 writes for `m`. */
export function icmpv4Length(m: Icmpv4Message): number {
  return ICMPV4_HEADER_LENGTH + m.data.length;
}

/**
 * Writes `m` at `buf[off]` and returns its length. The rest-of-header word comes from the typed
 * fields where the type has them (echo: ident and seqNo; fragmentation needed: the high 16 bits
 * of `rest`, unused by RFC 1191, then `mtu`), else from `rest`. The checksum is computed; the data
 * copy is skipped when `m.data` already sits at `buf[off + 8]`. Throws RangeError when `buf` is
 * too small (a caller bug).
 */
export function emitIcmpv4(m: Icmpv4Message, buf: Uint8Array, off: number): number {
  const data = m.data;
  const total = ICMPV4_HEADER_LENGTH + data.length;
  if (off < 0 || off + total > buf.length) throw new RangeError('emitIcmpv4: buffer too small');
  let rest = m.rest;
  if (isEcho(m.type)) rest = ((m.ident & 0xffff) << 16) | (m.seqNo & 0xffff);
  else if (isFragNeeded(m.type, m.code)) rest = (rest & 0xffff0000) | (m.mtu & 0xffff);
  buf[off] = m.type;
  buf[off + 1] = m.code;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  writeU32(buf, off + 4, rest >>> 0);
  const dataAt = off + ICMPV4_HEADER_LENGTH;
  if (data.length > 0 && !(data.buffer === buf.buffer && data.byteOffset === buf.byteOffset + dataAt))
    buf.set(data, dataAt);
  writeU16(buf, off + 2, finishChecksum(onesSum(buf, off, off + total)));
  return total;
}
