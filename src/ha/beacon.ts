/**
 * Beacons: the pair's heartbeats on the data link (docs/ARCHITECTURE.md §5: heartbeats on
 * the replication link and on the data link), the second path that tells a cut replication link
 * from a dead node, carries lease grants when the replication link is down, and lets a node that
 * comes back learn at once that another took over.
 *
 * A beacon is one Ethernet frame with EtherType 0x88B5 (IEEE 802 local experimental) to a
 * locally administered group MAC, from the sender's own MAC. It carries no IP header and says
 * nothing about the VIP, so it is not a frame "for the VIP" (I4): a standby and a node whose
 * lease has run out may send it (the kernel fence lets this EtherType through).
 *
 * Layout after the Ethernet header (big-endian):
 *
 *   'TKBN' | u8 version | u8 role | u8 flags | u8 idLength | u32 epoch | u32 session
 *   | f64 sentAt | f64 echo | 8-byte boot nonce | node id (UTF-8) | 16-byte tag
 *
 *   tag = first 16 bytes of HMAC-SHA256(beaconKey, everything from 'TKBN' to the node id)
 *   beaconKey = HMAC-SHA256(psk, "takeover-beacon-v1")
 *
 * - `sentAt` is the sender's monotonic clock (µs); a receiver refuses a beacon whose (nonce,
 *   sentAt) is not newer than the last it accepted from that node (replay within a process's
 *   life). A new nonce is a restarted process.
 * - `echo` is the `sentAt` of the active's beacon a standby answers (NaN when none): the grant of
 *   a lease (see HaNode), as the replication link's heartbeat replies carry.
 * - Limits: a beacon recorded from an earlier life of a node (another nonce) verifies again; it
 *   can only say what that node said then (an epoch no higher than the pair has reached).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { CONTROL_ETHERTYPE } from '../link/device.ts';
import { readMac, writeMac } from '../wire/address.ts';

export const BEACON_ETHERTYPE = CONTROL_ETHERTYPE;
/** Locally administered group address: bridges flood it, hosts ignore it. */
export const BEACON_MAC = 0x03_74_6b_6f_76_00;
const MAGIC = [0x54, 0x4b, 0x42, 0x4e]; // 'TKBN'
const VERSION = 1;
const FIXED = 4 + 1 + 1 + 1 + 1 + 4 + 4 + 8 + 8 + 8;
const TAG_BYTES = 16;
const ETH = 14;

export const BEACON_ROLES = ['candidate', 'active', 'standby'] as const;
export type BeaconRole = (typeof BEACON_ROLES)[number];

/** Active: a standby is attached in `session`. Standby: it holds a synced mirror of `session`. */
export const FLAG_ATTACHED = 1;
export const FLAG_SYNCED = 2;

export interface Beacon {
  nodeId: string;
  role: BeaconRole;
  epoch: number;
  session: number;
  attached: boolean;
  synced: boolean;
  sentAt: number;
  echo: number;
  nonce: Uint8Array;
}

const ENC = new TextEncoder();
const DEC = new TextDecoder('utf-8', { fatal: true });

/** The beacon key derived from the replication PSK. */
export function beaconKey(psk: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', psk).update('takeover-beacon-v1').digest());
}

function tag(key: Uint8Array, body: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(body).digest().subarray(0, TAG_BYTES));
}

/** The beacon as a frame from `srcMac`. */
export function encodeBeacon(b: Beacon, key: Uint8Array, srcMac: number): Uint8Array {
  const id = ENC.encode(b.nodeId).subarray(0, 255);
  const n = FIXED + id.length;
  const f = new Uint8Array(ETH + n + TAG_BYTES);
  writeMac(f, 0, BEACON_MAC);
  writeMac(f, 6, srcMac);
  f[12] = BEACON_ETHERTYPE >> 8;
  f[13] = BEACON_ETHERTYPE & 0xff;
  const dv = new DataView(f.buffer, ETH);
  f.set(MAGIC, ETH);
  f[ETH + 4] = VERSION;
  f[ETH + 5] = BEACON_ROLES.indexOf(b.role);
  f[ETH + 6] = (b.attached ? FLAG_ATTACHED : 0) | (b.synced ? FLAG_SYNCED : 0);
  f[ETH + 7] = id.length;
  dv.setUint32(8, b.epoch >>> 0);
  dv.setUint32(12, b.session >>> 0);
  dv.setFloat64(16, b.sentAt);
  dv.setFloat64(24, b.echo);
  f.set(b.nonce.subarray(0, 8), ETH + 32);
  f.set(id, ETH + FIXED);
  f.set(tag(key, f.subarray(ETH, ETH + n)), ETH + n);
  return f;
}

/** Whether a frame is a beacon at all (by EtherType), before any check. */
export function isBeaconFrame(f: Uint8Array): boolean {
  return f.length >= ETH && f[12] === BEACON_ETHERTYPE >> 8 && f[13] === (BEACON_ETHERTYPE & 0xff);
}

/** The beacon in frame `f`, or why it is refused. */
export function decodeBeacon(f: Uint8Array, key: Uint8Array): Beacon | string {
  if (!isBeaconFrame(f)) return 'not a beacon';
  if (f.length < ETH + FIXED + TAG_BYTES) return 'beacon: truncated';
  for (let i = 0; i < 4; i++) if (f[ETH + i] !== MAGIC[i]) return 'beacon: bad magic';
  if (f[ETH + 4] !== VERSION) return `beacon: version ${f[ETH + 4]}, ours is ${VERSION}`;
  const idLen = f[ETH + 7];
  const n = FIXED + idLen;
  // Ethernet pads short frames: anything after the tag is padding.
  if (f.length < ETH + n + TAG_BYTES) return 'beacon: truncated';
  const want = tag(key, f.subarray(ETH, ETH + n));
  if (!timingSafeEqual(want, f.subarray(ETH + n, ETH + n + TAG_BYTES)))
    return 'beacon: authentication failed';
  const role = BEACON_ROLES[f[ETH + 5]];
  if (role === undefined) return `beacon: unknown role ${f[ETH + 5]}`;
  const dv = new DataView(f.buffer, f.byteOffset + ETH);
  let nodeId: string;
  try {
    nodeId = DEC.decode(f.subarray(ETH + FIXED, ETH + n));
  } catch {
    return 'beacon: node id is not UTF-8';
  }
  const sentAt = dv.getFloat64(16);
  if (!Number.isFinite(sentAt)) return 'beacon: bad timestamp';
  return {
    nodeId,
    role,
    epoch: dv.getUint32(8),
    session: dv.getUint32(12),
    attached: (f[ETH + 6] & FLAG_ATTACHED) !== 0,
    synced: (f[ETH + 6] & FLAG_SYNCED) !== 0,
    sentAt,
    echo: dv.getFloat64(24),
    nonce: f.slice(ETH + 32, ETH + 40),
  };
}

/** The source MAC of a frame (the sender's own MAC). */
export function frameSource(f: Uint8Array): number {
  return readMac(f, 6);
}
