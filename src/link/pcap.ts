/**
 * Classic libpcap capture files (the format of tcpdump, tshark and Wireshark; see
 * draft-ietf-opsawg-pcap and pcap-savefile(5)).
 *
 * File header, 24 bytes: magic (0xa1b2c3d4 = microsecond timestamps, 0xa1b23c4d = nanosecond),
 * version 2.4, thiszone 0, sigfigs 0, snaplen, link type. Each record: ts_sec, ts_usec (or
 * ts_nsec), incl_len, orig_len, then incl_len bytes. The writer emits little-endian files; the
 * reader accepts either byte order and either magic.
 *
 * The writer only builds bytes in memory (chunks, no fs), so it works in any driver; `save`
 * and `close` write a file at the edge.
 */
import { writeFileSync } from 'node:fs';
import { type Parsed, WireError } from '../wire/error.ts';

export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const LINKTYPE_ETHERNET = 1;
export const PCAP_DEFAULT_SNAPLEN = 262144;
export const PCAP_HEADER_LENGTH = 24;
export const PCAP_RECORD_HEADER_LENGTH = 16;

const CHUNK = 64 * 1024;

export interface PcapWriterOptions {
  /** Nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds. Default false. */
  nanosecond?: boolean;
  /** Longest frame prefix stored; longer frames keep their `orig_len`. Default 262144. */
  snaplen?: number;
  /** Default LINKTYPE_ETHERNET (1). */
  linkType?: number;
  /** File that `close()` writes. Without it, `close()` only returns the bytes. */
  path?: string;
}

/** Accumulates a pcap file in memory. Timestamps are virtual microseconds (any non-negative number). */
export class PcapWriter {
  readonly nanosecond: boolean;
  readonly snaplen: number;
  readonly linkType: number;
  readonly path: string | undefined;
  /** Records written so far. */
  records = 0;
  private chunks: Uint8Array[] = [];
  private cur: Uint8Array;
  private view: DataView;
  private used = 0;
  private closed = false;

  constructor(opts: PcapWriterOptions = {}) {
    this.nanosecond = opts.nanosecond ?? false;
    this.snaplen = opts.snaplen ?? PCAP_DEFAULT_SNAPLEN;
    this.linkType = opts.linkType ?? LINKTYPE_ETHERNET;
    this.path = opts.path;
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > 0x7fffffff)
      throw new Error(`PcapWriter: snaplen must be an integer between 1 and 2^31-1, got ${opts.snaplen}.`);
    this.cur = new Uint8Array(CHUNK);
    this.view = new DataView(this.cur.buffer);
    const v = this.view;
    v.setUint32(0, this.nanosecond ? PCAP_MAGIC_NS : PCAP_MAGIC_US, true);
    v.setUint16(4, 2, true);
    v.setUint16(6, 4, true);
    v.setInt32(8, 0, true); // thiszone
    v.setUint32(12, 0, true); // sigfigs
    v.setUint32(16, this.snaplen, true);
    v.setUint32(20, this.linkType, true);
    this.used = PCAP_HEADER_LENGTH;
  }

  /** Total file size so far. */
  get byteLength(): number {
    let n = this.used;
    for (const c of this.chunks) n += c.length;
    return n;
  }

  /**
   * Appends one record. `tsUs` is virtual time in microseconds; fractions are kept to the file's
   * resolution (floored to the microsecond, rounded to the nanosecond). `frame` is copied.
   */
  write(tsUs: number, frame: Uint8Array, origLen: number = frame.length): void {
    if (this.closed) throw new Error('PcapWriter: write after close.');
    if (!(tsUs >= 0)) throw new Error(`PcapWriter: timestamp must be a non-negative number, got ${tsUs}.`);
    const incl = frame.length < this.snaplen ? frame.length : this.snaplen;
    const need = PCAP_RECORD_HEADER_LENGTH + incl;
    if (this.used + need > this.cur.length) {
      this.chunks.push(this.cur.subarray(0, this.used));
      this.cur = new Uint8Array(need > CHUNK ? need : CHUNK);
      this.view = new DataView(this.cur.buffer);
      this.used = 0;
    }
    let sec: number;
    let frac: number;
    if (this.nanosecond) {
      const ns = Math.round(tsUs * 1000);
      sec = Math.floor(ns / 1e9);
      frac = ns - sec * 1e9;
    } else {
      const us = Math.floor(tsUs);
      sec = Math.floor(us / 1e6);
      frac = us - sec * 1e6;
    }
    const v = this.view;
    const o = this.used;
    v.setUint32(o, sec >>> 0, true);
    v.setUint32(o + 4, frac, true);
    v.setUint32(o + 8, incl, true);
    v.setUint32(o + 12, origLen, true);
    this.cur.set(incl === frame.length ? frame : frame.subarray(0, incl), o + PCAP_RECORD_HEADER_LENGTH);
    this.used = o + need;
    this.records++;
  }

  /** The file so far, as one contiguous buffer (a copy; writing may continue). */
  toBuffer(): Uint8Array {
    const out = new Uint8Array(this.byteLength);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    out.set(this.cur.subarray(0, this.used), o);
    return out;
  }

  /** Writes the file so far to `path` (synchronously). */
  save(path: string): void {
    writeFileSync(path, this.toBuffer());
  }

  /** Ends the capture: writes `opts.path` if one was given, and returns the file's bytes. */
  close(): Uint8Array {
    const bytes = this.toBuffer();
    if (!this.closed && this.path !== undefined) writeFileSync(this.path, bytes);
    this.closed = true;
    return bytes;
  }
}

export interface PcapRecord {
  /** Timestamp in microseconds (fractional for nanosecond files). */
  tsUs: number;
  /** The captured bytes: a view into the input. */
  frame: Uint8Array;
  /** Length of the frame on the wire (>= frame.length when the snaplen cut it). */
  origLen: number;
}

export interface PcapFile {
  littleEndian: boolean;
  nanosecond: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  /** LINKTYPE_* (the low 26 bits of the header's link-type field, as libpcap's LT_LINKTYPE). */
  linkType: number;
  records: PcapRecord[];
}

function u32(b: Uint8Array, o: number, le: boolean): number {
  return le
    ? (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0
    : ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function u16(b: Uint8Array, o: number, le: boolean): number {
  return le ? b[o] | (b[o + 1] << 8) : (b[o] << 8) | b[o + 1];
}

/** Parses a whole pcap file. Never throws: any malformed or truncated input yields a WireError. */
export function parsePcap(bytes: Uint8Array): Parsed<PcapFile> {
  if (bytes.length < PCAP_HEADER_LENGTH)
    return new WireError('pcap', 'truncated', 'shorter than the file header');
  let le: boolean;
  let ns: boolean;
  const magicBe = u32(bytes, 0, false);
  const magicLe = u32(bytes, 0, true);
  if (magicLe === PCAP_MAGIC_US || magicLe === PCAP_MAGIC_NS) {
    le = true;
    ns = magicLe === PCAP_MAGIC_NS;
  } else if (magicBe === PCAP_MAGIC_US || magicBe === PCAP_MAGIC_NS) {
    le = false;
    ns = magicBe === PCAP_MAGIC_NS;
  } else {
    return new WireError('pcap', 'malformed', 'not a pcap file (bad magic number)');
  }
  const versionMajor = u16(bytes, 4, le);
  const versionMinor = u16(bytes, 6, le);
  if (versionMajor !== 2) return new WireError('pcap', 'unsupported', 'pcap major version is not 2');
  const snaplen = u32(bytes, 16, le);
  const linkType = u32(bytes, 20, le) & 0x03ffffff;
  const fracLimit = ns ? 1e9 : 1e6;
  const records: PcapRecord[] = [];
  let o = PCAP_HEADER_LENGTH;
  while (o < bytes.length) {
    if (bytes.length - o < PCAP_RECORD_HEADER_LENGTH)
      return new WireError('pcap', 'truncated', 'file ends inside a record header');
    const sec = u32(bytes, o, le);
    const frac = u32(bytes, o + 4, le);
    const incl = u32(bytes, o + 8, le);
    const orig = u32(bytes, o + 12, le);
    if (frac >= fracLimit) return new WireError('pcap', 'malformed', 'sub-second timestamp out of range');
    if (incl > orig) return new WireError('pcap', 'malformed', 'captured length exceeds original length');
    const start = o + PCAP_RECORD_HEADER_LENGTH;
    if (incl > bytes.length - start) return new WireError('pcap', 'truncated', 'file ends inside a record');
    records.push({
      tsUs: sec * 1e6 + (ns ? frac / 1000 : frac),
      frame: bytes.subarray(start, start + incl),
      origLen: orig,
    });
    o = start + incl;
  }
  return { littleEndian: le, nanosecond: ns, versionMajor, versionMinor, snaplen, linkType, records };
}
