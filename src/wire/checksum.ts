/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept unfolded in a JS number while accumulating (exact far beyond any frame size) and
 * folded to 16 bits once at the end.
 */

import type { Ipv4Addr, Ipv6Addr } from './address.ts';

/** One's-complement sum of big-endian 16-bit words of `b[start, end)`, added to `initial`. Unfolded. */
export function onesSum(b: Uint8Array, start: number, end: number, initial = 0): number {
  // High and low bytes of the 16-bit words are summed apart and combined once: fewer shifts,
  // eight bytes per turn (about 25% faster than a word per turn on a 1,480-byte segment).
  let hi = 0;
  let lo = 0;
  let i = start;
  const even = end - ((end - start) & 1);
  const end8 = start + ((even - start) & ~7);
  for (; i < end8; i += 8) {
    hi += b[i] + b[i + 2] + b[i + 4] + b[i + 6];
    lo += b[i + 1] + b[i + 3] + b[i + 5] + b[i + 7];
  }
  for (; i < even; i += 2) {
    hi += b[i];
    lo += b[i + 1];
  }
  // RFC 1071 4.1: an odd trailing byte is padded with a zero byte on the right.
  if (i < end) hi += b[i];
  return initial + hi * 256 + lo;
}

/** Folds an unfolded sum to 16 bits (end-around carry). */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum field value for data whose unfolded sum (with the field zeroed) is `sum`. */
export function finishChecksum(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** The Internet checksum of `b[start, end)`. */
export function internetChecksum(b: Uint8Array, start = 0, end = b.length): number {
  return finishChecksum(onesSum(b, start, end));
}

/** Data including its checksum field verifies when it sums to 0xffff (or 0 from an all-zero ones' complement). */
export function verifiesChecksum(sum: number): boolean {
  const f = fold(sum);
  return f === 0xffff || f === 0;
}

/** RFC 793 / RFC 768 IPv4 pseudo-header: source, destination, zero, protocol, upper-layer length. */
export function pseudoHeaderSumV4(src: Ipv4Addr, dst: Ipv4Addr, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** RFC 8200 8.1 IPv6 pseudo-header: source, destination, 32-bit upper-layer length, next header. */
export function pseudoHeaderSumV6(src: Ipv6Addr, dst: Ipv6Addr, nextHeader: number, length: number): number {
  let sum = 0;
  for (let i = 0; i < 16; i += 2) sum += ((src[i] << 8) | src[i + 1]) + ((dst[i] << 8) | dst[i + 1]);
  return sum + Math.floor(length / 0x10000) + (length & 0xffff) + nextHeader;
}

/**
 * RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changed from
 * `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function updateChecksum16(checksum: number, oldWord: number, newWord: number): number {
  return ~fold((~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff)) & 0xffff;
}

/** RFC 1624 for a 32-bit field (an IPv4 address, a sequence number): two word updates at once. */
export function updateChecksum32(checksum: number, oldValue: number, newValue: number): number {
  const sum =
    (~checksum & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    ((newValue >>> 16) & 0xffff) +
    (newValue & 0xffff);
  return ~fold(sum) & 0xffff;
}
