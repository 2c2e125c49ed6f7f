/**
 * IP reassembly: RFC 791 3.2 and RFC 1122 3.3.2 (a host MUST reassemble) for IPv4, RFC 8200 4.5
 * for IPv6, bounded as Linux bounds it (net/ipv4/ip_fragment.c, net/ipv6/reassembly.c), so that
 * fragments are one more thing a hostile sender can only make us count and drop:
 *
 * - memory: every datagram in progress is charged its buffer (the data lands in place, the
 *   buffer growing by doubling until the last fragment tells the length) and fragment zero's
 *   header, plus a fixed cost per datagram and per fragment; past `memoryLimit` (Linux
 *   ipfrag_high_thresh, 4 MiB) new fragments are refused until timeouts free room (what Linux
 *   has done since 4.17: no eviction of others' datagrams);
 * - time: a datagram not complete `timeoutV4Us` (Linux ipfrag_time, 30 s) or `timeoutV6Us`
 *   (RFC 8200 4.5 and Linux ip6frag_time, 60 s) after its first fragment is dropped, and the
 *   caller may send ICMP Time Exceeded, code 1, when fragment zero was in (RFC 792, RFC 8200 4.5);
 * - at most `maxFragments` fragments per datagram (a 65,535-byte datagram at the IPv6 minimum MTU
 *   needs 54): more drops the datagram;
 * - overlaps: a fragment that overlaps one held drops the whole datagram, and the fragments still
 *   to come, until its timeout (RFC 5722 3 for IPv6; Linux does the same for IPv4). An exact
 *   duplicate (same place, same bytes) is only itself dropped, as RFC 5722 4 allows;
 * - consistency: one end (a second last fragment ending elsewhere, or data past the end, drop the
 *   datagram), a reassembled length of at most 65,535 (RFC 791 3.1, RFC 8200 4.5), and no mix of
 *   ECN-capable and non-ECN-capable fragments (RFC 3168 5.3: CE in any fragment marks the whole).
 *
 * IPv4 datagrams are told apart by source, destination, protocol and identification (RFC 791
 * 3.2); IPv6 ones by source, destination and identification (RFC 8200 4.5). The whole datagram
 * is rebuilt from the first fragment's header (IPv4: its options too; IPv6: its unfragmentable
 * part, the Fragment header left out) and handed back to the caller, which runs it through its
 * input path. Atomic fragments (RFC 6946) never come here: the caller processes them whole.
 *
 * No clock: `now` comes with each fragment, and `pollAt`/`poll` run the timeouts.
 */
import { readU16, writeU16 } from '../wire/bytes.ts';
import { finishChecksum, onesSum } from '../wire/checksum.ts';
import type { Ipv4Packet } from '../wire/ipv4.ts';
import type { Ipv6Packet } from '../wire/ipv6.ts';
import { ipKey } from './ip.ts';

export interface ReassemblyConfig {
  /** Bytes charged across every datagram in progress (see the module comment). Default 4 MiB. */
  memoryLimit: number;
  /** Default 30 s (Linux). */
  timeoutV4Us: number;
  /** Default 60 s (RFC 8200 4.5, Linux). */
  timeoutV6Us: number;
  /** Fragments one datagram may have. Default 64. */
  maxFragments: number;
}

export const DEFAULT_REASSEMBLY_CONFIG: Readonly<ReassemblyConfig> = Object.freeze({
  memoryLimit: 4 * 1024 * 1024,
  timeoutV4Us: 30_000_000,
  timeoutV6Us: 60_000_000,
  maxFragments: 64,
});

/** What became of fragments (part of the stack's counters). */
export interface ReassemblyCounters {
  /** Fragments that reached reassembly (atomic fragments do not). */
  fragmentsIn: number;
  /** Datagrams rebuilt from their fragments and handed on. */
  reassembled: number;
  /** Datagrams dropped when their time ran out. */
  reassemblyTimeouts: number;
  /** Datagrams dropped for overlapping fragments (RFC 5722). */
  reassemblyOverlaps: number;
  /** Datagrams dropped for having more than `maxFragments` fragments. */
  reassemblyTooManyFragments: number;
  /** Datagrams dropped for a reassembled length over 65,535. */
  reassemblyOversize: number;
  /** Datagrams dropped for inconsistent fragments: two different ends, data past the end, ECN mix. */
  reassemblyInvalid: number;
  /** Fragments refused because the memory cap was reached. */
  reassemblyOverMemory: number;
  /** Exact duplicates of a fragment held, dropped alone. */
  fragmentDuplicates: number;
  /** Fragments dropped for their own lengths: empty with more to come, or (IPv4) not a multiple of 8. */
  fragmentsMalformed: number;
  /** Every fragment that ends in no datagram: each reason above, and those of dropped datagrams. */
  fragmentsDropped: number;
}

/** A datagram back from reassembly: the whole packet, header first. */
export interface Reassembled {
  /** A view of a buffer of its own (possibly larger: copy what must outlive the call). */
  packet: Uint8Array;
  /** IPv6: bytes of the unfragmentable part (fixed header and the extension headers before the Fragment header). */
  unfragmentable: number;
}

/** Fixed charges (bytes) besides the buffers, in the spirit of Linux charging skb truesize. */
const DATAGRAM_COST = 256;
const FRAGMENT_COST = 64;
const MAX_PACKET = 65535;
/** Room kept before the data for the header the whole datagram gets (an IPv4 header with options fits). */
const HEAD_ROOM = 64;
/** A datagram's first buffer when its length is not known yet (then doubled as needed). */
const FIRST_CAPACITY = 4096;
/** ICMP errors quote at most this much (RFC 1812 4.3.2.3: 576 in all; RFC 4443 2.4(c): 1280). */
const QUOTE_V4 = 576 - 20 - 8;
const QUOTE_V6 = 1280 - 40 - 8;
const EMPTY = new Uint8Array(0);

interface Datagram {
  readonly v4: boolean;
  readonly key: string;
  readonly deadline: number;
  /** Held fragments sorted by offset, never overlapping: data offsets [start, end). */
  starts: number[];
  ends: number[];
  /** The data, each fragment's at HEAD_ROOM + its offset (grown as fragments reach further). */
  buf: Uint8Array;
  /** Data bytes held. */
  held: number;
  /** Data length, once the last fragment (more = false) is in; -1 before. */
  total: number;
  /** Fragment zero's bytes before its data (IPv4: its header; IPv6: up to and with its Fragment header). */
  head: Uint8Array | undefined;
  /** Once fragment zero is in: where its Fragment header starts (IPv4: its header length), what names it, what follows it. */
  fragAt: number;
  linkAt: number;
  nextHeader: number;
  /** ECN codepoints seen, one bit each. */
  ecn: number;
  /** Bytes charged. */
  memory: number;
  /** Dropped: later fragments are dropped too, until the deadline (RFC 5722 3). */
  dead: boolean;
}

export class Reassembler {
  readonly config: ReassemblyConfig;
  /** Datagrams in progress by key; insertion order is deadline order (one timeout per family). */
  private readonly v4 = new Map<string, Datagram>();
  private readonly v6 = new Map<string, Datagram>();
  private charged = 0;

  constructor(
    private readonly counters: ReassemblyCounters,
    config: Partial<ReassemblyConfig> = {},
  ) {
    const c = { ...DEFAULT_REASSEMBLY_CONFIG, ...config };
    for (const k of ['memoryLimit', 'timeoutV4Us', 'timeoutV6Us', 'maxFragments'] as const)
      if (!(Number.isSafeInteger(c[k]) && c[k] > 0))
        throw new RangeError(`reassembly config: ${k} must be a positive integer (got ${c[k]}).`);
    this.config = c;
  }

  /** Bytes charged now (at most `memoryLimit`, give or take the fixed cost of one datagram). */
  get memory(): number {
    return this.charged;
  }

  /** Datagrams in progress (dropped ones waiting out their timeout included). */
  get size(): number {
    return this.v4.size + this.v6.size;
  }

  /**
   * One IPv4 fragment (`ip.isFragment`), parsed from `packet`. Returns the whole datagram when
   * this fragment completes it.
   */
  ipv4(packet: Uint8Array, ip: Ipv4Packet, now: number): Reassembled | undefined {
    const data = ip.payload;
    // RFC 791 3.2: every fragment but the last carries a multiple of 8 bytes (and some).
    if (ip.moreFragments && (data.length === 0 || data.length % 8 !== 0)) return this.malformed();
    const d = this.datagram(this.v4, `${ip.src}|${ip.dst}|${ip.protocol}|${ip.ident}`, true, now);
    if (d === undefined) return undefined;
    const whole = this.add(d, ip.fragmentOffset, data, ip.moreFragments, ip.ecn, packet, ip.headerLength);
    if (ip.fragmentOffset === 0 && (whole || d.head !== undefined)) {
      // Fragment zero is in: its header becomes the datagram's.
      d.fragAt = ip.headerLength;
      d.nextHeader = ip.protocol;
    }
    return whole ? this.complete(this.v4, d, packet, ip.headerLength) : undefined;
  }

  /** One IPv6 fragment (`ip.fragment` set, not atomic), parsed from `packet`. */
  ipv6(packet: Uint8Array, ip: Ipv6Packet, now: number): Reassembled | undefined {
    const f = ip.fragment;
    if (f === undefined) return undefined;
    const dataAt = f.at + 8;
    const data = packet.subarray(dataAt, 40 + ip.payloadLength);
    // RFC 8200 4.5: a multiple of 8 bytes when M is set (parseIpv6 checked), and some.
    if (f.more && data.length === 0) return this.malformed();
    const d = this.datagram(this.v6, `${ipKey(ip.src)}|${ipKey(ip.dst)}|${f.ident}`, false, now);
    if (d === undefined) return undefined;
    const whole = this.add(d, f.offset, data, f.more, ip.trafficClass & 3, packet, dataAt);
    if (f.offset === 0 && (whole || d.head !== undefined)) {
      // Fragment zero is in: its unfragmentable part becomes the datagram's.
      d.fragAt = f.at;
      d.linkAt = f.linkAt;
      d.nextHeader = f.nextHeader;
    }
    return whole ? this.complete(this.v6, d, packet, dataAt) : undefined;
  }

  /** When the next datagram times out, or undefined when none is in progress. */
  pollAt(): number | undefined {
    if (this.v4.size === 0 && this.v6.size === 0) return undefined;
    const a = first(this.v4)?.deadline;
    const b = first(this.v6)?.deadline;
    if (a === undefined) return b;
    return b === undefined || a < b ? a : b;
  }

  /**
   * Drops the datagrams whose time has run out. For each one whose fragment zero had arrived,
   * `timedOut` gets what an ICMP Time Exceeded (code 1) should quote: that fragment's header and
   * the start of its data (from `dataAt` on), and the protocol that data starts with.
   */
  poll(
    now: number,
    timedOut?: (v4: boolean, quote: Uint8Array, protocol: number, dataAt: number) => void,
  ): void {
    if (this.v4.size === 0 && this.v6.size === 0) return;
    for (const map of [this.v4, this.v6]) {
      for (let d = first(map); d !== undefined && d.deadline <= now; d = first(map)) {
        map.delete(d.key);
        this.charged -= d.memory;
        if (d.dead) continue;
        this.counters.reassemblyTimeouts++;
        this.counters.fragmentsDropped += d.starts.length;
        if (d.head !== undefined && timedOut !== undefined) {
          const room = (d.v4 ? QUOTE_V4 : QUOTE_V6) - d.head.length;
          const n = Math.max(0, Math.min(room, d.ends[0]));
          const quote = new Uint8Array(d.head.length + n);
          quote.set(d.head);
          quote.set(d.buf.subarray(HEAD_ROOM, HEAD_ROOM + n), d.head.length);
          timedOut(d.v4, quote, d.nextHeader, d.head.length);
        }
      }
    }
  }

  private malformed(): undefined {
    this.counters.fragmentsIn++;
    this.counters.fragmentsMalformed++;
    this.counters.fragmentsDropped++;
    return undefined;
  }

  /** The datagram `key` is, new if need be; undefined (counted) when the fragment is refused. */
  private datagram(map: Map<string, Datagram>, key: string, v4: boolean, now: number): Datagram | undefined {
    this.counters.fragmentsIn++;
    let d = map.get(key);
    if (d !== undefined && d.deadline <= now) {
      // Its timeout is due and not yet run: this fragment starts a new datagram.
      this.poll(now);
      d = map.get(key);
    }
    if (d === undefined) {
      if (this.charged + DATAGRAM_COST > this.config.memoryLimit) return this.overMemory();
      d = {
        v4,
        key,
        deadline: now + (v4 ? this.config.timeoutV4Us : this.config.timeoutV6Us),
        starts: [],
        ends: [],
        buf: EMPTY,
        held: 0,
        total: -1,
        head: undefined,
        fragAt: 0,
        linkAt: 0,
        nextHeader: 0,
        ecn: 0,
        memory: DATAGRAM_COST,
        dead: false,
      };
      map.set(key, d);
      this.charged += DATAGRAM_COST;
    }
    if (d.dead) {
      this.counters.fragmentsDropped++;
      return undefined;
    }
    return d;
  }

  /**
   * Takes in the fragment of data offsets [start, start + data.length); `packet` up to `dataAt`
   * is its header. True when the datagram is now complete (fragment zero's header is then still
   * in `packet` when it arrived last: `complete` takes it from there).
   */
  private add(
    d: Datagram,
    start: number,
    data: Uint8Array,
    more: boolean,
    ecn: number,
    packet: Uint8Array,
    dataAt: number,
  ): boolean {
    const c = this.counters;
    const end = start + data.length;
    const n = d.starts.length;
    // One end: the last fragment fixes it; nothing may lie past it.
    if (!more && ((d.total >= 0 && d.total !== end) || (n > 0 && d.ends[n - 1] > end)))
      return this.kill(d, 'reassemblyInvalid');
    if (more && d.total >= 0 && end > d.total) return this.kill(d, 'reassemblyInvalid');
    // Where it goes: fragments mostly arrive in order, so search from the end.
    let i = n;
    while (i > 0 && d.starts[i - 1] >= start) i--;
    if (i < n && d.starts[i] === start && d.ends[i] === end && equalAt(d.buf, HEAD_ROOM + start, data)) {
      c.fragmentDuplicates++;
      c.fragmentsDropped++;
      return false;
    }
    if ((i > 0 && d.ends[i - 1] > start) || (i < n && d.starts[i] < end))
      return this.kill(d, 'reassemblyOverlaps');
    if (n >= this.config.maxFragments) return this.kill(d, 'reassemblyTooManyFragments');
    // Room for the data: the exact length once known, else doubling from FIRST_CAPACITY.
    let grow = 0;
    const need = HEAD_ROOM + end;
    if (need > d.buf.length) {
      const known = more ? d.total : end;
      grow =
        (known >= 0
          ? HEAD_ROOM + known
          : Math.min(HEAD_ROOM + MAX_PACKET, Math.max(need, 2 * d.buf.length, FIRST_CAPACITY))) -
        d.buf.length;
    }
    // Fragment zero's header is kept unless it completes the datagram now.
    const last = d.held + data.length === (more ? d.total : end) && (start === 0 || d.head !== undefined);
    const head = start === 0 && !last ? dataAt : 0;
    const cost = FRAGMENT_COST + grow + head;
    if (this.charged + cost > this.config.memoryLimit) {
      this.overMemory();
      return false;
    }
    if (grow > 0) {
      const buf = new Uint8Array(d.buf.length + grow);
      buf.set(d.buf);
      d.buf = buf;
    }
    d.buf.set(data, HEAD_ROOM + start);
    d.starts.splice(i, 0, start);
    d.ends.splice(i, 0, end);
    d.held += data.length;
    d.memory += cost;
    this.charged += cost;
    d.ecn |= 1 << ecn;
    if (head > 0) d.head = packet.slice(0, head);
    if (!more) d.total = end;
    // Non-overlapping pieces of [0, total) adding up to total cover it.
    return d.total >= 0 && d.held === d.total && (d.head !== undefined || start === 0);
  }

  /**
   * The whole datagram `d`, fragment zero's header from `d.head` or, when that fragment came
   * last, from `packet` (up to `dataAt`).
   */
  private complete(
    map: Map<string, Datagram>,
    d: Datagram,
    packet: Uint8Array,
    dataAt: number,
  ): Reassembled | undefined {
    const head = d.head ?? packet.subarray(0, dataAt);
    map.delete(d.key);
    this.charged -= d.memory;
    d.memory = 0;
    // RFC 3168 5.3: Not-ECT with ECT or CE is a mix no sender makes; CE anywhere marks the whole.
    if (d.ecn & 1 && d.ecn & 0b1110) return this.drop(d, 'reassemblyInvalid');
    const ce = (d.ecn & 0b1000) !== 0;
    const headLength = d.fragAt;
    if ((d.v4 ? headLength : headLength - 40) + d.total > MAX_PACKET)
      return this.drop(d, 'reassemblyOversize');
    // The header goes right before the data when it fits in the room kept there.
    let out: Uint8Array;
    if (headLength <= HEAD_ROOM) {
      out = d.buf.subarray(HEAD_ROOM - headLength, HEAD_ROOM + d.total);
    } else {
      out = new Uint8Array(headLength + d.total);
      out.set(d.buf.subarray(HEAD_ROOM, HEAD_ROOM + d.total), headLength);
    }
    out.set(head.subarray(0, headLength));
    if (d.v4) {
      // Total Length, no MF and offset 0 (DF as fragment zero had it), CE, a new checksum.
      writeU16(out, 2, out.length);
      writeU16(out, 6, readU16(out, 6) & 0x4000);
      if (ce) out[1] |= 3;
      out[10] = 0;
      out[11] = 0;
      writeU16(out, 10, finishChecksum(onesSum(out, 0, headLength)));
    } else {
      // The Fragment header leaves: what named it now names what followed it (RFC 8200 4.5).
      writeU16(out, 4, out.length - 40);
      out[d.linkAt] = d.nextHeader;
      if (ce) out[1] |= 0x30;
    }
    this.counters.reassembled++;
    return { packet: out, unfragmentable: headLength };
  }

  private overMemory(): undefined {
    this.counters.reassemblyOverMemory++;
    this.counters.fragmentsDropped++;
    return undefined;
  }

  /**
   * Drops `d`'s fragments (and the one arriving, which showed the fault) and keeps its key dead
   * until its deadline.
   */
  private kill(
    d: Datagram,
    why: 'reassemblyOverlaps' | 'reassemblyInvalid' | 'reassemblyTooManyFragments' | 'reassemblyOversize',
  ): false {
    this.counters[why]++;
    this.counters.fragmentsDropped += d.starts.length + 1;
    this.charged -= d.memory - DATAGRAM_COST;
    d.memory = DATAGRAM_COST;
    d.starts = [];
    d.ends = [];
    d.buf = EMPTY;
    d.held = 0;
    d.head = undefined;
    d.dead = true;
    return false;
  }

  /** A complete datagram (already out of the table) that may not be passed on. */
  private drop(d: Datagram, why: 'reassemblyInvalid' | 'reassemblyOversize'): undefined {
    this.counters[why]++;
    this.counters.fragmentsDropped += d.starts.length;
    return undefined;
  }
}

function first(m: Map<string, Datagram>): Datagram | undefined {
  for (const d of m.values()) return d;
  return undefined;
}

/** Do `b`'s bytes sit in `a` from `at`? */
function equalAt(a: Uint8Array, at: number, b: Uint8Array): boolean {
  if (at + b.length > a.length) return false;
  for (let i = 0; i < b.length; i++) if (a[at + i] !== b[i]) return false;
  return true;
}
