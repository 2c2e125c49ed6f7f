/**
 * Link and network addresses as cheap values.
 *
 * - A MAC address is a 48-bit integer (exact in a JS number), so comparing and hashing are free.
 * - An IPv4 address is an unsigned 32-bit integer.
 * - An IPv6 address is a 16-byte `Uint8Array` the record owns (copied out of the frame, never a
 *   view of a buffer that a driver may reuse).
 */

export type MacAddr = number;
export type Ipv4Addr = number;
export type Ipv6Addr = Uint8Array;

export const MAC_BROADCAST: MacAddr = 0xffff_ffff_ffff;
const TWO_32 = 0x1_0000_0000;

export function readMac(b: Uint8Array, o: number): MacAddr {
  return (
    (b[o] * 0x100 + b[o + 1]) * TWO_32 +
    (((b[o + 2] << 24) | (b[o + 3] << 16) | (b[o + 4] << 8) | b[o + 5]) >>> 0)
  );
}

export function writeMac(b: Uint8Array, o: number, mac: MacAddr): void {
  const hi = Math.floor(mac / TWO_32);
  const lo = mac >>> 0;
  b[o] = hi >>> 8;
  b[o + 1] = hi;
  b[o + 2] = lo >>> 24;
  b[o + 3] = lo >>> 16;
  b[o + 4] = lo >>> 8;
  b[o + 5] = lo;
}

/** Group bit (I/G) of the first octet: broadcast and multicast. */
export function isMulticastMac(mac: MacAddr): boolean {
  return Math.floor(mac / 0x100_0000_0000) % 2 === 1;
}

export function macToString(mac: MacAddr): string {
  const b = new Uint8Array(6);
  writeMac(b, 0, mac);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Parses `aa:bb:cc:dd:ee:ff` (or with `-`). Returns undefined when it is not a MAC address. */
export function macFromString(s: string): MacAddr | undefined {
  const m =
    /^([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})$/.exec(
      s,
    );
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 6; i++) v = v * 256 + Number.parseInt(m[i], 16);
  return v;
}

export function ipv4ToString(a: Ipv4Addr): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** Parses dotted-quad IPv4. Returns undefined when it is not one. */
export function ipv4FromString(s: string): Ipv4Addr | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = Number(m[i]);
    if (part > 255 || (m[i].length > 1 && m[i][0] === '0')) return undefined;
    v = v * 256 + part;
  }
  return v;
}

export function readIpv6(b: Uint8Array, o: number): Ipv6Addr {
  return b.slice(o, o + 16);
}

export function writeIpv6(b: Uint8Array, o: number, a: Ipv6Addr): void {
  b.set(a, o);
}

export function ipv6Equal(a: Ipv6Addr, b: Ipv6Addr): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isMulticastIpv6(a: Ipv6Addr): boolean {
  return a[0] === 0xff;
}

export function isUnspecifiedIpv6(a: Ipv6Addr): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== 0) return false;
  return true;
}

/** RFC 5952 text form: lower case, longest run (>= 2) of zero groups as `::`, first run on a tie. */
export function ipv6ToString(a: Ipv6Addr): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((a[i] << 8) | a[i + 1]);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Parses IPv6 text (with `::` and an optional trailing dotted quad). Returns undefined when it is not one. */
export function ipv6FromString(s: string): Ipv6Addr | undefined {
  if (s.length === 0 || s.length > 45) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parseSide = (side: string, allowV4: boolean): number[] | undefined => {
    if (side === '') return [];
    const parts = side.split(':');
    const out: number[] = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (allowV4 && i === parts.length - 1 && p.includes('.')) {
        const v4 = ipv4FromString(p);
        if (v4 === undefined) return undefined;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(Number.parseInt(p, 16));
      }
    }
    return out;
  };
  const head = parseSide(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? parseSide(halves[1], true) : [];
  if (!head || !tail) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = groups[i] >>> 8;
    out[i * 2 + 1] = groups[i] & 0xff;
  }
  return out;
}

/** RFC 4291 2.7.1: ff02::1:ffXX:XXXX from the low 24 bits of a unicast address. */
export function solicitedNodeMulticast(a: Ipv6Addr): Ipv6Addr {
  const out = new Uint8Array(16);
  out[0] = 0xff;
  out[1] = 0x02;
  out[11] = 0x01;
  out[12] = 0xff;
  out[13] = a[13];
  out[14] = a[14];
  out[15] = a[15];
  return out;
}

/** RFC 2464 7: 33:33 followed by the low 32 bits of the IPv6 multicast group. */
export function ipv6MulticastMac(a: Ipv6Addr): MacAddr {
  return 0x3333 * TWO_32 + (((a[12] << 24) | (a[13] << 16) | (a[14] << 8) | a[15]) >>> 0);
}

/** RFC 1112 6.4: 01:00:5e followed by the low 23 bits of the IPv4 multicast group. */
export function ipv4MulticastMac(a: Ipv4Addr): MacAddr {
  return 0x0100_5e00_0000 + (a & 0x7f_ffff);
}
