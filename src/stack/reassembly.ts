/**
 * IP reassembly: RFC 791 3.2 and RFC 1122 3.3.2 (a host MUST reassemble) for IPv4, RFC 8200 4.5
 * for IPv6, bounded as Linux bounds it (net/ipv4/ip_fragment.c, net/ipv6/reassembly.c), so that
 * fragments are one more thing a hostile sender can only make us count and drop:
 *
 * - memory: every datagram in progress is charged its bytes plus a fixed cost per datagram and
 *   per fragment; past `memoryLimit` (Linux ipfrag_high_thresh, 4 MiB) new fragments are refused
 *   until timeouts free room (what Linux has done since 4.17: no eviction of others' datagrams);
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
  packet: Uint8Array;
  /** IPv6: bytes of the unfragmentable part (fixed header and the extension headers before the Fragment header). */
  unfragmentable: number;
}

/** Fixed charges (bytes) besides the data, in the spirit of Linux charging skb truesize. */
const DATAGRAM_COST = 256;
const FRAGMENT_COST = 64;
const MAX_PACKET = 65535;
/** ICMP errors quote at most this much (RFC 1812 4.3.2.3: 576 in all; RFC 4443 2.4(c): 1280). */
const QUOTE_V4 = 576 - 20 - 8;
const QUOTE_V6 = 1280 - 40 - 8;

interface Datagram {
  readonly v4: boolean;
  readonly key: string;
  readonly deadline: number;
  /** Held fragments sorted by offset, never overlapping: data offsets [start, end) and bytes. */
  starts: number[];
  ends: number[];
  datas: Uint8Array[];
  /** Data bytes held. */
  held: number;
  /** Data length, once the last fragment (more = false) is in; -1 before. */
  total: number;
  /** Fragment zero's bytes before its data (IPv4: its header; IPv6: up to and with its Fragment header). */
  head: Uint8Array | undefined;
  /** IPv6, once fragment zero is in: where its Fragment header starts, what names it, what follows it. */
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
    const key = `${ip.src}|${ip.dst}|${ip.protocol}|${ip.ident}`;
    const data = ip.payload;
    // RFC 791 3.2: every fragment but the last carries a multiple of 8 bytes.
    if (ip.moreFragments && data.length % 8 !== 0) return this.malformed();
    return this.add(this.v4, key, true, now, ip.fragmentOffset, data, ip.moreFragments, ip.ecn, () => ({
      head: packet.slice(0, ip.headerLength),
      fragAt: ip.headerLength,
      linkAt: 0,
      nextHeader: ip.protocol,
    }));
  }

  /** One IPv6 fragment (`ip.fragment` set, not atomic), parsed from `packet`. */
  ipv6(packet: Uint8Array, ip: Ipv6Packet, now: number): Reassembled | undefined {
    const f = ip.fragment;
    if (f === undefined) return undefined;
    const key = `${ipKey(ip.src)}|${ipKey(ip.dst)}|${f.ident}`;
    const dataAt = f.at + 8;
    const data = packet.subarray(dataAt, 40 + ip.payloadLength);
    return this.add(this.v6, key, false, now, f.offset, data, f.more, ip.trafficClass & 3, () => ({
      head: packet.slice(0, dataAt),
      fragAt: f.at,
      linkAt: f.linkAt,
      nextHeader: f.nextHeader,
    }));
  }

  /** When the next datagram times out, or undefined when none is in progress. */
  pollAt(): number | undefined {
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
    for (const map of [this.v4, this.v6]) {
      for (let d = first(map); d !== undefined && d.deadline <= now; d = first(map)) {
        map.delete(d.key);
        this.charged -= d.memory;
        if (d.dead) continue;
        this.counters.reassemblyTimeouts++;
        this.counters.fragmentsDropped += d.datas.length;
        if (d.head !== undefined && timedOut !== undefined) {
          const room = (d.v4 ? QUOTE_V4 : QUOTE_V6) - d.head.length;
          const zero = d.datas[0];
          const quote = new Uint8Array(d.head.length + Math.max(0, Math.min(room, zero.length)));
          quote.set(d.head);
          quote.set(zero.subarray(0, quote.length - d.head.length), d.head.length);
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

  private add(
    map: Map<string, Datagram>,
    key: string,
    v4: boolean,
    now: number,
    start: number,
    data: Uint8Array,
    more: boolean,
    ecn: number,
    headOf: () => Pick<Datagram, 'head' | 'fragAt' | 'linkAt' | 'nextHeader'>,
  ): Reassembled | undefined {
    const c = this.counters;
    c.fragmentsIn++;
    const end = start + data.length;
    if (more && end === start) {
      c.fragmentsMalformed++;
      c.fragmentsDropped++;
      return undefined;
    }
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
        datas: [],
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
      c.fragmentsDropped++;
      return undefined;
    }
    const n = d.starts.length;
    // One end: the last fragment fixes it; nothing may lie past it.
    if (!more && ((d.total >= 0 && d.total !== end) || (n > 0 && d.ends[n - 1] > end)))
      return this.kill(d, 'reassemblyInvalid');
    if (more && d.total >= 0 && end > d.total) return this.kill(d, 'reassemblyInvalid');
    // Where it goes: fragments mostly arrive in order, so search from the end.
    let i = n;
    while (i > 0 && d.starts[i - 1] >= start) i--;
    if (i < n && d.starts[i] === start && d.ends[i] === end && equal(d.datas[i], data)) {
      c.fragmentDuplicates++;
      c.fragmentsDropped++;
      return undefined;
    }
    if ((i > 0 && d.ends[i - 1] > start) || (i < n && d.starts[i] < end))
      return this.kill(d, 'reassemblyOverlaps');
    if (n >= this.config.maxFragments) return this.kill(d, 'reassemblyTooManyFragments');
    const head = start === 0 ? headOf() : undefined;
    const cost = FRAGMENT_COST + data.length + (head?.head?.length ?? 0);
    if (this.charged + cost > this.config.memoryLimit) return this.overMemory();
    d.starts.splice(i, 0, start);
    d.ends.splice(i, 0, end);
    d.datas.splice(i, 0, data.slice());
    d.held += data.length;
    d.memory += cost;
    this.charged += cost;
    d.ecn |= 1 << ecn;
    if (head !== undefined) Object.assign(d, head);
    if (!more) d.total = end;
    // Non-overlapping pieces of [0, total) adding up to total cover it.
    if (d.total < 0 || d.held !== d.total || d.head === undefined) return undefined;
    return this.rebuild(map, d);
  }

  private rebuild(map: Map<string, Datagram>, d: Datagram): Reassembled | undefined {
    const head = d.head!;
    // RFC 3168 5.3: Not-ECT with ECT or CE is a mix no sender makes; CE anywhere marks the whole.
    if (d.ecn & 1 && d.ecn & 0b1110) return this.kill(d, 'reassemblyInvalid', 0);
    const ce = (d.ecn & 0b1000) !== 0;
    const headLength = d.fragAt;
    if ((d.v4 ? headLength : headLength - 40) + d.total > MAX_PACKET)
      return this.kill(d, 'reassemblyOversize', 0);
    const out = new Uint8Array(headLength + d.total);
    out.set(head.subarray(0, headLength));
    for (let k = 0; k < d.datas.length; k++) out.set(d.datas[k], headLength + d.starts[k]);
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
    map.delete(d.key);
    this.charged -= d.memory;
    this.counters.reassembled++;
    return { packet: out, unfragmentable: headLength };
  }

  private overMemory(): undefined {
    this.counters.reassemblyOverMemory++;
    this.counters.fragmentsDropped++;
    return undefined;
  }

  /**
   * Drops `d`'s fragments (and `arriving` more, the one that showed the fault) and keeps its key
   * dead until its deadline.
   */
  private kill(
    d: Datagram,
    why: 'reassemblyOverlaps' | 'reassemblyInvalid' | 'reassemblyTooManyFragments' | 'reassemblyOversize',
    arriving = 1,
  ): undefined {
    this.counters[why]++;
    this.counters.fragmentsDropped += d.datas.length + arriving;
    this.charged -= d.memory - DATAGRAM_COST;
    d.memory = DATAGRAM_COST;
    d.starts = [];
    d.ends = [];
    d.datas = [];
    d.held = 0;
    d.head = undefined;
    d.dead = true;
    return undefined;
  }
}

function first(m: Map<string, Datagram>): Datagram | undefined {
  for (const d of m.values()) return d;
  return undefined;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
