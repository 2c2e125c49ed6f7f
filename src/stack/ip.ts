/**
 * IP addresses of either family as one value: an IPv4 address is a number, an IPv6 address a
 * 16-byte Uint8Array (see wire/address.ts). Helpers to tell them apart, compare, key and print.
 */
import {
  type Ipv4Addr,
  type Ipv6Addr,
  ipv4FromString,
  ipv4ToString,
  ipv6Equal,
  ipv6FromString,
  ipv6ToString,
} from '../wire/address.ts';

export type IpAddr = Ipv4Addr | Ipv6Addr;

export function isV4(a: IpAddr): a is Ipv4Addr {
  return typeof a === 'number';
}

export function ipEqual(a: IpAddr, b: IpAddr): boolean {
  if (isV4(a)) return a === b;
  return !isV4(b) && ipv6Equal(a, b);
}

export function ipToString(a: IpAddr): string {
  return isV4(a) ? ipv4ToString(a) : ipv6ToString(a);
}

/** A compact map key: the number for IPv4, hex for IPv6. */
export function ipKey(a: IpAddr): string {
  if (isV4(a)) return String(a);
  let s = 'x';
  for (let i = 0; i < 16; i++) s += (a[i] < 16 ? '0' : '') + a[i].toString(16);
  return s;
}

/** Parses an address of either family; undefined when it is neither. */
export function ipFromString(s: string): IpAddr | undefined {
  return s.includes(':') ? ipv6FromString(s) : ipv4FromString(s);
}

/** `address/prefix` (e.g. 198.18.0.2/24, fd00::2/64). */
export interface IpCidr {
  address: IpAddr;
  prefixLength: number;
}

/** Parses `a.b.c.d/n` or `x::y/n`; undefined when malformed. */
export function cidrFromString(s: string): IpCidr | undefined {
  const slash = s.indexOf('/');
  const addr = ipFromString(slash < 0 ? s : s.slice(0, slash));
  if (addr === undefined) return undefined;
  const max = isV4(addr) ? 32 : 128;
  const n = slash < 0 ? max : Number(s.slice(slash + 1));
  if (!Number.isInteger(n) || n < 0 || n > max) return undefined;
  return { address: addr, prefixLength: n };
}

/** Does `a` fall in `net`? */
export function inPrefix(a: IpAddr, net: IpCidr): boolean {
  const b = net.address;
  if (isV4(a) !== isV4(b)) return false;
  if (isV4(a)) {
    const n = net.prefixLength;
    if (n === 0) return true;
    const mask = n === 32 ? 0xffff_ffff : ~(0xffff_ffff >>> n) >>> 0;
    return (a & mask) >>> 0 === ((b as number) & mask) >>> 0;
  }
  const bb = b as Uint8Array;
  let bits = net.prefixLength;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const m = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i] & m) !== (bb[i] & m)) return false;
  }
  return true;
}
