/**
 * The PROXY protocol header (HAProxy's spec, "The PROXY protocol", versions 1 and 2): the first
 * bytes of a server leg, telling the server the client's address and port, and the address and
 * port the client connected to.
 */
import { type IpAddr, ipToString, isV4 } from '../stack/ip.ts';

/** v2's 12-byte signature. */
const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

export interface ProxyEnds {
  client: IpAddr;
  clientPort: number;
  /** Where the client connected (the frontend's VIP and port). */
  local: IpAddr;
  localPort: number;
}

function addrBytes(a: IpAddr): Uint8Array {
  if (typeof a === 'number') return new Uint8Array([a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff]);
  return new Uint8Array(a);
}

/** The header of `version` for a connection; the two addresses are of one family. */
export function proxyHeader(version: 'v1' | 'v2', e: ProxyEnds): Uint8Array {
  const v4 = isV4(e.client);
  if (version === 'v1') {
    const line = `PROXY ${v4 ? 'TCP4' : 'TCP6'} ${ipToString(e.client)} ${ipToString(e.local)} ${e.clientPort} ${e.localPort}\r\n`;
    return new TextEncoder().encode(line);
  }
  const src = addrBytes(e.client);
  const dst = addrBytes(e.local);
  const len = src.length * 2 + 4;
  const out = new Uint8Array(16 + len);
  out.set(SIG, 0);
  out[12] = 0x21; // version 2, PROXY
  out[13] = v4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out[14] = len >>> 8;
  out[15] = len & 0xff;
  out.set(src, 16);
  out.set(dst, 16 + src.length);
  const p = 16 + 2 * src.length;
  out[p] = e.clientPort >>> 8;
  out[p + 1] = e.clientPort & 0xff;
  out[p + 2] = e.localPort >>> 8;
  out[p + 3] = e.localPort & 0xff;
  return out;
}
