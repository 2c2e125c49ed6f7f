/**
 * The host: one interface (a MAC and several IPv4/IPv6 addresses, the VIP among them) on one
 * link, with ARP and NDP, ICMP echo and errors, and TCP: listeners, outgoing connections,
 * demultiplexing, RSTs for closed ports (RFC 9293 3.10.7.1).
 *
 * What the network sends is distrusted on the way in: IP fragments are reassembled within
 * bounds (reassembly.ts), IPv6 options are acted on by their type (RFC 8200 4.2), and an ICMP
 * error touches a connection only when it quotes a sequence number in flight (RFC 5927 4.1).
 * Everything refused is counted in `counters`, never thrown.
 *
 * No I/O and no clock, like the layers below: `receive(frame, now)` takes a frame from the link,
 * `poll(now)` runs what is due, `pollAt()` says when next; frames leave through the `transmit`
 * function given at construction (the device copies them). Nothing calls back into the
 * application from inside these calls: connections that changed are collected and handed out by
 * `takeEvents()`, so a driver can run application code between stack turns (no re-entrancy).
 */

import type { TcpConfig } from '../tcp/config.ts';
import { type RandomSource, TcpConnection } from '../tcp/connection.ts';
import { resetFor } from '../tcp/reset.ts';
import { isSynchronized, type TcpErrorCode, TcpState } from '../tcp/state.ts';
import {
  type Ipv6Addr,
  ipv6Equal,
  ipv6FromString,
  ipv6MulticastMac,
  isMulticastMac,
  MAC_BROADCAST,
  type MacAddr,
  solicitedNodeMulticast,
} from '../wire/address.ts';
import { ARP_REPLY, ARP_REQUEST, type ArpPacket, emitArp, gratuitousArp, parseArp } from '../wire/arp.ts';
import { readU16, readU32 } from '../wire/bytes.ts';
import { fold, pseudoHeaderSumV4, pseudoHeaderSumV6 } from '../wire/checksum.ts';
import { WireError } from '../wire/error.ts';
import {
  ETHERNET_HEADER_LENGTH,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  emitEthernetHeader,
  NO_VLANS,
  parseEthernet,
} from '../wire/ethernet.ts';
import {
  emitIcmpv4,
  ICMP_DEST_UNREACHABLE,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_FRAG_NEEDED_CODE,
  ICMP_PARAMETER_PROBLEM,
  ICMP_PORT_UNREACHABLE_CODE,
  ICMP_REASSEMBLY_TIME_EXCEEDED_CODE,
  ICMP_TIME_EXCEEDED,
  type Icmpv4Message,
  icmpv4Length,
  parseIcmpv4,
} from '../wire/icmpv4.ts';
import {
  emitIcmpv6,
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_NO_ROUTE_CODE,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAMETER_PROBLEM,
  ICMPV6_PORT_UNREACHABLE_CODE,
  ICMPV6_TIME_EXCEEDED,
  type Icmpv6Message,
  icmpv6Length,
  icmpv6Message,
  parseIcmpv6,
} from '../wire/icmpv6.ts';
import { emitIpv4Header, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, parseIpv4 } from '../wire/ipv4.ts';
import {
  emitIpv6Header,
  IPV6_HEADER_LENGTH,
  type Ipv6OptionVerdict,
  type Ipv6Packet,
  ipv6OptionActions,
  NO_EXT_HEADERS,
  OPTION_DISCARD,
  OPTION_DISCARD_ICMP_UNICAST,
  OPTION_SKIP,
  parseIpv6,
} from '../wire/ipv6.ts';
import {
  emitTcp,
  emitTcpHeader,
  parseTcp,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  type TcpSegment,
  tcpHeaderLength,
} from '../wire/tcp.ts';
import { Deadlines } from './deadlines.ts';
import { type IpAddr, type IpCidr, inPrefix, ipEqual, ipKey, isV4 } from './ip.ts';
import { DEFAULT_NEIGHBOR_CONFIG, type Neighbor, NeighborCache, type NeighborConfig } from './neighbors.ts';
import { Reassembler, type ReassemblyConfig, type ReassemblyCounters } from './reassembly.ts';

export interface StackConfig {
  mac: MacAddr;
  /** The interface's addresses with their prefixes; the first of each family is the default source. */
  addresses: IpCidr[];
  /** Default routers (off-link destinations go there); optional: tests use one subnet. */
  gateway4?: number;
  gateway6?: Ipv6Addr;
  /** Link MTU (bytes of IP packet). */
  mtu?: number;
  tcp?: Partial<TcpConfig>;
  neighbor?: Partial<NeighborConfig>;
  /** Bounds of IP reassembly (default Linux's: 4 MiB, 30 s IPv4, 60 s IPv6; 64 fragments). */
  reassembly?: Partial<ReassemblyConfig>;
  /** Half-open connections a listener holds at most (SYN-flood bound); beyond it SYNs are dropped. */
  synBacklog?: number;
  /** Ephemeral port range for outgoing connections (Linux default 32768-60999). */
  ephemeralPorts?: [number, number];
  /**
   * How long a cleanly closed connection's tuple absorbs stray segments in silence (default 10 s).
   * A passive closer has no TIME-WAIT: without this, a late duplicate from the peer would draw a
   * RST after a perfectly good close.
   */
  closedQuietUs?: number;
  /**
   * Largest frame (Ethernet header included) the link accepts with a segment size and cuts into
   * TCP segments itself (generic segmentation offload, as a TAP with a virtio-net header does).
   * When set, the segments one connection emits back to back in one poll leave as one such frame.
   * Default 0: every segment is its own frame.
   */
  gsoMaxFrame?: number;
}

/**
 * TCP segments of one connection gathered into one frame for the link to segment (GSO). Linux's
 * tcp_gso_segment copies the header to every piece, advancing seq and the IPv4 ident, clearing
 * PSH and FIN on all but the last: so every segment but the last is `segSize` bytes, only the
 * last may carry PSH or FIN, and all share ack, window and options.
 */
interface GsoBatch {
  c: StackConnection;
  /** The first segment's fields (its payload is replaced at flush). */
  first: TcpSegment;
  mac: MacAddr;
  /** Where the payload starts in the GSO buffer. */
  payloadAt: number;
  bytes: number;
  maxBytes: number;
  segSize: number;
  lastLen: number;
  lastFlags: number;
  count: number;
}

const ALL_NODES: Ipv6Addr = ipv6FromString('ff02::1')!;
const HOP_LIMIT_ND = 255;
const IP_TTL = 64;
/**
 * Linux's ip_rt_min_pmtu: an IPv4 path MTU is never taken below 552 (a report of 68 to 551 is
 * clamped to it), so a forged fragmentation-needed can at most bring the MSS to 512.
 */
const MIN_PMTU_V4 = 552;
/** RFC 791 3.2, RFC 1191 3: every IPv4 link carries 68 bytes; a smaller report is a lie. */
const MIN_MTU_V4 = 68;
/** RFC 8200 5 and RFC 8201 4: a Packet Too Big below 1280 is discarded. */
const MIN_MTU_V6 = 1280;
/** ICMP errors we originate: Linux's icmp_msgs_per_sec and icmp_msgs_burst (RFC 4443 2.4(f)). */
const ICMP_ERRORS_PER_S = 1000;
const ICMP_ERRORS_BURST = 50;
/** RFC 4443 2.4(c): an ICMPv6 error quotes as much of the packet as fits in 1280 bytes. */
const ICMPV6_QUOTE = 1280 - 40 - 8;

/** One TCP connection bound to addresses and ports in this stack. */
export class StackConnection {
  /** Set by the API layer: called (from `takeEvents`' caller, never inside a stack call) after changes. */
  onChange: (() => void) | undefined;
  /** Still being accepted: counts in its listener's half-open table until synchronized. */
  listener: Listener | undefined;
  removed = false;
  /**
   * Set by the API layer: what the application has really taken and given, beyond the engine's
   * offsets (bytes read from the engine but still in a stream buffer; bytes written to a stream
   * but not yet in the engine). Replication uses it so a take-over loses neither.
   */
  app: { consumed(): number; unsent(): Uint8Array[] } | undefined;
  /** Set on a connection restored by a take-over: the application's last checkpoint, if any. */
  restored: { checkpoint: unknown; skipWrite: number; tag?: unknown } | undefined;

  constructor(
    readonly key: string,
    readonly local: IpAddr,
    readonly localPort: number,
    readonly remote: IpAddr,
    readonly remotePort: number,
    readonly tcp: TcpConnection,
  ) {}

  get v4(): boolean {
    return isV4(this.local);
  }
}

/**
 * Told synchronously of every connection's life (the replication layer): `created` before the
 * connection's first poll (so limits can hold its SYN or SYN-ACK), `serviced` after each poll,
 * `removed` when it leaves the table.
 */
export interface StackObserver {
  created(c: StackConnection): void;
  serviced(c: StackConnection): void;
  removed(c: StackConnection): void;
}

export class Listener {
  halfOpen = 0;
  closed = false;
  readonly accepted: StackConnection[] = [];

  constructor(
    readonly address: IpAddr | undefined,
    readonly port: number,
    readonly backlog: number,
    readonly onAccept: (c: StackConnection) => void,
  ) {}
}

/** Every count starts at 0; reassembly's are described in ReassemblyCounters. */
export interface StackCounters extends ReassemblyCounters {
  framesIn: number;
  framesOut: number;
  malformed: number;
  notForUs: number;
  unsupported: number;
  /** IPv6 atomic fragments (offset 0, M clear), processed as whole packets (RFC 6946). */
  atomicFragments: number;
  /** Unrecognised IPv6 options of action 00, skipped (RFC 8200 4.2). */
  optionsSkipped: number;
  /** Packets dropped silently for an unrecognised option: action 01, or 11 to a multicast address. */
  optionsDiscarded: number;
  /** Packets dropped for an unrecognised option of action 10 or 11, a Parameter Problem due. */
  optionsRejected: number;
  arpIn: number;
  ndpIn: number;
  echoReplies: number;
  icmpErrorsIn: number;
  /** ICMP errors quoting no connection of ours (or too little of one to tell). */
  icmpUnmatched: number;
  /** ICMP errors whose quoted sequence number lies outside SND.UNA..SND.NXT (RFC 5927 4.1). */
  icmpOutOfWindow: number;
  /** Too-big reports of an MTU no link has (below 68 for IPv4, 1280 for IPv6), ignored. */
  icmpBadMtu: number;
  /** ICMP errors we sent (Parameter Problem, Time Exceeded). */
  icmpErrorsSent: number;
  /** ICMP errors we did not send: over the rate limit. */
  icmpErrorsRateLimited: number;
  tcpIn: number;
  tcpRstSent: number;
  synDropped: number;
  noRoute: number;
  neighborDrops: number;
  lateSegments: number;
  /** Frames handed to the link to cut into segments (GSO); each counts once in framesOut. */
  gsoFrames: number;
  /** ARP / NA frames from another node for one of our addresses. */
  addressClaims: number;
}

/** A connection's tuple as a map key (local address and port, then the peer's). */
export function connKey(local: IpAddr, lport: number, remote: IpAddr, rport: number): string {
  return `${ipKey(local)}|${lport}|${ipKey(remote)}|${rport}`;
}

export class NetStack {
  readonly mac: MacAddr;
  readonly mtu: number;
  readonly addresses: IpCidr[];
  readonly counters: StackCounters = {
    framesIn: 0,
    framesOut: 0,
    malformed: 0,
    notForUs: 0,
    unsupported: 0,
    fragmentsIn: 0,
    reassembled: 0,
    reassemblyTimeouts: 0,
    reassemblyOverlaps: 0,
    reassemblyTooManyFragments: 0,
    reassemblyOversize: 0,
    reassemblyInvalid: 0,
    reassemblyOverMemory: 0,
    fragmentDuplicates: 0,
    fragmentsMalformed: 0,
    fragmentsDropped: 0,
    atomicFragments: 0,
    optionsSkipped: 0,
    optionsDiscarded: 0,
    optionsRejected: 0,
    arpIn: 0,
    ndpIn: 0,
    echoReplies: 0,
    icmpErrorsIn: 0,
    icmpUnmatched: 0,
    icmpOutOfWindow: 0,
    icmpBadMtu: 0,
    icmpErrorsSent: 0,
    icmpErrorsRateLimited: 0,
    tcpIn: 0,
    tcpRstSent: 0,
    synDropped: 0,
    noRoute: 0,
    neighborDrops: 0,
    lateSegments: 0,
    gsoFrames: 0,
    addressClaims: 0,
  };
  readonly neighbors: NeighborCache;
  /** IP fragments being put back together (RFC 1122 3.3.2, RFC 8200 4.5). */
  readonly reassembler: Reassembler;
  /** See StackObserver. */
  observer: StackObserver | undefined;
  /** False: SYNs to listeners are refused with a RST (existing connections carry on). */
  acceptingNew = true;
  /**
   * Called when an ARP or neighbour advertisement from another node claims one of our
   * addresses (a take-over elsewhere: the HA layer fences on it).
   */
  onAddressClaim: ((a: IpAddr, now: number) => void) | undefined;
  private readonly cfg: StackConfig;
  private readonly conns = new Map<string, StackConnection>();
  private readonly listeners = new Map<string, Listener>();
  private readonly timers = new Deadlines<StackConnection>();
  private readonly dirty = new Set<StackConnection>();
  private readonly events = new Set<StackConnection>();
  private readonly accepts: { l: Listener; c: StackConnection }[] = [];
  private readonly usedPorts = new Map<number, number>();
  /** Recently closed tuples (insertion order is expiry order) → when they stop absorbing segments. */
  private readonly quiet = new Map<string, number>();
  private readonly buf: Uint8Array;
  private ipId = 0;
  private clock: number;
  private readonly gsoBuf: Uint8Array | undefined;
  private gso: GsoBatch | undefined;
  /** The connection `service` is polling (its segments may be gathered for GSO). */
  private servicing: StackConnection | undefined;
  private readonly emitServiced = (seg: TcpSegment): void => this.gatherTcp(this.servicing!, seg);
  /** Token bucket of the ICMP errors we originate: tokens, and when it was last filled. */
  private icmpTokens = ICMP_ERRORS_BURST;
  private icmpTokensAt: number;
  private readonly reassemblyTimedOut = (v4: boolean, quote: Uint8Array, protocol: number, dataAt: number) =>
    this.sendTimeExceeded(v4, quote, protocol, dataAt);

  /**
   * `transmit` gets every frame; `segmentSize` is set only on a GSO frame (see
   * `StackConfig.gsoMaxFrame`), which the link must cut into TCP segments of that payload size.
   */
  constructor(
    cfg: StackConfig,
    private readonly rng: RandomSource,
    private readonly transmit: (frame: Uint8Array, segmentSize?: number) => void,
    now: number,
  ) {
    if (cfg.addresses.length === 0)
      throw new RangeError('stack config: addresses must name at least one address.');
    this.cfg = cfg;
    this.mac = cfg.mac;
    this.mtu = cfg.mtu ?? 1500;
    if (!(this.mtu >= 1280 && this.mtu <= 65535))
      throw new RangeError(`stack config: mtu must be from 1280 to 65535 (got ${this.mtu}).`);
    this.addresses = cfg.addresses.slice();
    this.buf = new Uint8Array(ETHERNET_HEADER_LENGTH + this.mtu + 64);
    const gsoMax = cfg.gsoMaxFrame ?? 0;
    if (!(Number.isInteger(gsoMax) && gsoMax >= 0 && gsoMax <= 65535 + ETHERNET_HEADER_LENGTH))
      throw new RangeError(`stack config: gsoMaxFrame must be an integer from 0 to 65549 (got ${gsoMax}).`);
    this.gsoBuf = gsoMax > ETHERNET_HEADER_LENGTH + this.mtu ? new Uint8Array(gsoMax) : undefined;
    this.clock = now;
    this.icmpTokensAt = now;
    this.reassembler = new Reassembler(this.counters, cfg.reassembly);
    this.ipId = rng.nextU32() & 0xffff;
    this.neighbors = new NeighborCache(
      { ...DEFAULT_NEIGHBOR_CONFIG, ...cfg.neighbor },
      {
        request: (n, to) => this.sendNeighborRequest(n, to),
        release: (_n, mac, packets) => {
          for (const p of packets) this.sendFrame(mac, p[0] >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, p);
        },
        drop: (_n, packets) => {
          this.counters.neighborDrops += packets.length;
        },
      },
    );
  }

  // -------------------------------------------------------------------------------------------
  // Addresses

  /** Is `a` one of ours? */
  isLocal(a: IpAddr): boolean {
    for (const c of this.addresses) if (ipEqual(c.address, a)) return true;
    return false;
  }

  /** Adds an address (a VIP being claimed); announce it with `announce`. */
  addAddress(c: IpCidr): void {
    if (!this.isLocal(c.address)) this.addresses.push(c);
  }

  removeAddress(a: IpAddr): void {
    const i = this.addresses.findIndex((c) => ipEqual(c.address, a));
    if (i >= 0) this.addresses.splice(i, 1);
  }

  private sourceFor(dst: IpAddr): IpAddr | undefined {
    let fallback: IpAddr | undefined;
    for (const c of this.addresses) {
      if (isV4(c.address) !== isV4(dst)) continue;
      if (inPrefix(dst, c)) return c.address;
      fallback ??= c.address;
    }
    return fallback;
  }

  private nextHop(dst: IpAddr): IpAddr | undefined {
    for (const c of this.addresses) if (inPrefix(dst, c)) return dst;
    if (isV4(dst)) return this.cfg.gateway4;
    // Link-local destinations are on-link.
    if (dst[0] === 0xfe && (dst[1] & 0xc0) === 0x80) return dst;
    return this.cfg.gateway6;
  }

  // -------------------------------------------------------------------------------------------
  // Frames in

  /** One frame from the link. Never throws; bad input is counted and dropped. */
  receive(frame: Uint8Array, now: number): void {
    this.clock = now;
    this.counters.framesIn++;
    const eth = parseEthernet(frame);
    if (eth instanceof WireError) {
      this.counters.malformed++;
      return;
    }
    if (eth.dst !== this.mac && !isMulticastMac(eth.dst)) {
      this.counters.notForUs++;
      return;
    }
    if (eth.vlans.length > 0) {
      this.counters.unsupported++;
      return;
    }
    switch (eth.etherType) {
      case ETHERTYPE_ARP:
        this.arpInput(eth.payload, now);
        return;
      case ETHERTYPE_IPV4:
        this.ipv4Input(eth.payload, now);
        return;
      case ETHERTYPE_IPV6:
        this.ipv6Input(eth.payload, now);
        return;
      default:
        this.counters.unsupported++;
    }
  }

  private arpInput(b: Uint8Array, now: number): void {
    const a = parseArp(b);
    if (a instanceof WireError) {
      this.counters.malformed++;
      return;
    }
    this.counters.arpIn++;
    // Another node speaks for one of our addresses (our own frames never come back to us).
    if (a.senderIp !== 0 && this.isLocal(a.senderIp)) this.claimSeen(a.senderIp, now);
    const forUs = this.isLocal(a.targetIp);
    // RFC 826 "merge": update what we hold; add the sender when the packet is for us.
    if (a.senderIp !== 0 && !this.isLocal(a.senderIp))
      this.neighbors.learn(a.senderIp, a.senderMac, now, forUs);
    if (forUs && a.op === ARP_REQUEST && a.senderIp !== a.targetIp) {
      this.sendArp(a.senderMac, {
        op: ARP_REPLY,
        senderMac: this.mac,
        senderIp: a.targetIp,
        targetMac: a.senderMac,
        targetIp: a.senderIp,
      });
    }
  }

  private ipv4Input(b: Uint8Array, now: number): void {
    const ip = parseIpv4(b);
    if (ip instanceof WireError) {
      this.counters.malformed++;
      return;
    }
    if (!this.isLocal(ip.dst)) {
      this.counters.notForUs++;
      return;
    }
    if (ip.isFragment) {
      // RFC 1122 3.3.2: a host MUST reassemble. The whole datagram comes back through here once.
      this.reassembler.poll(now, this.reassemblyTimedOut);
      const whole = this.reassembler.ipv4(b, ip, now);
      if (whole !== undefined) this.ipv4Input(whole.packet, now);
      return;
    }
    if (ip.protocol === IPPROTO_TCP) {
      const seg = parseTcp(ip.payload, pseudoHeaderSumV4(ip.src, ip.dst, IPPROTO_TCP, ip.payload.length));
      if (seg instanceof WireError) {
        this.counters.malformed++;
        return;
      }
      this.tcpInput(ip.dst, ip.src, seg, now);
    } else if (ip.protocol === IPPROTO_ICMP) {
      const m = parseIcmpv4(ip.payload);
      if (m instanceof WireError) {
        this.counters.malformed++;
        return;
      }
      switch (m.type) {
        case ICMP_ECHO_REQUEST:
          this.counters.echoReplies++;
          this.sendIcmpv4(ip.dst, ip.src, {
            type: ICMP_ECHO_REPLY,
            code: 0,
            checksum: 0,
            ident: m.ident,
            seqNo: m.seqNo,
            mtu: 0,
            rest: m.rest,
            data: m.data,
          });
          return;
        case ICMP_DEST_UNREACHABLE:
          this.counters.icmpErrorsIn++;
          if (m.code === ICMP_FRAG_NEEDED_CODE) this.icmpError(m.data, true, m.mtu, undefined);
          // Linux ignores codes past NR_ICMP_UNREACH (15).
          else if (m.code <= 15) this.icmpError(m.data, true, 0, unreachableV4(m.code));
          return;
        case ICMP_TIME_EXCEEDED:
        case ICMP_PARAMETER_PROBLEM:
          this.counters.icmpErrorsIn++;
          this.icmpError(m.data, true, 0, 'EHOSTUNREACH');
          return;
        default:
          return;
      }
    } else {
      this.counters.unsupported++;
    }
  }

  /**
   * `optionsFrom`: option headers before this byte were processed already (the unfragmentable
   * part of a reassembled datagram, processed with each fragment); `reassembled`: `b` was put
   * back together from fragments.
   */
  private ipv6Input(b: Uint8Array, now: number, optionsFrom = IPV6_HEADER_LENGTH, reassembled = false): void {
    const ip = parseIpv6(b);
    if (ip instanceof WireError) {
      this.counters.malformed++;
      return;
    }
    const dst = ip.dst;
    const multicast = dst[0] === 0xff;
    if (multicast ? !this.joined(dst) : !this.isLocal(dst)) {
      this.counters.notForUs++;
      return;
    }
    const frag = ip.fragment;
    // RFC 6946 4: an atomic fragment (offset 0, M clear) is a whole packet, never reassembled.
    const atomic = frag !== undefined && frag.offset === 0 && !frag.more;
    if (ip.extHeaders.length > 0) {
      // RFC 8200 4.5: a fragment's own options are its unfragmentable part's; the rest are the
      // reassembled datagram's.
      const v = ipv6OptionActions(ip, optionsFrom, frag !== undefined && !atomic);
      if (v instanceof WireError) {
        this.counters.malformed++;
        return;
      }
      this.counters.optionsSkipped += v.skipped;
      if (v.action !== OPTION_SKIP) {
        this.unrecognizedOption(b, ip, v, multicast, now);
        return;
      }
    }
    if (frag !== undefined) {
      if (reassembled) {
        // A Fragment header inside a reassembled datagram: nobody fragments twice.
        this.counters.malformed++;
        return;
      }
      if (atomic) {
        this.counters.atomicFragments++;
      } else {
        this.reassembler.poll(now, this.reassemblyTimedOut);
        const whole = this.reassembler.ipv6(b, ip, now);
        if (whole !== undefined) this.ipv6Input(whole.packet, now, whole.unfragmentable, true);
        return;
      }
    }
    if (ip.protocol === IPPROTO_TCP && !multicast) {
      const seg = parseTcp(ip.payload, pseudoHeaderSumV6(ip.src, dst, IPPROTO_TCP, ip.payload.length));
      if (seg instanceof WireError) {
        this.counters.malformed++;
        return;
      }
      this.tcpInput(dst, ip.src, seg, now);
    } else if (ip.protocol === IPPROTO_ICMPV6) {
      const m = parseIcmpv6(ip.payload, pseudoHeaderSumV6(ip.src, dst, IPPROTO_ICMPV6, ip.payload.length));
      if (m instanceof WireError) {
        this.counters.malformed++;
        return;
      }
      this.icmpv6Input(ip.src, dst, ip.hopLimit, m, now, frag !== undefined || reassembled);
    } else {
      this.counters.unsupported++;
    }
  }

  /**
   * RFC 8200 4.2: an unrecognised option whose action is not "skip". 01 drops the packet; 10
   * drops it and sends a Parameter Problem, code 2, pointing at the option's type; 11 does the
   * same unless the destination was multicast (then it drops in silence). RFC 4443 2.4(e.3)
   * allows this one error to answer a multicast packet.
   */
  private unrecognizedOption(
    b: Uint8Array,
    ip: Ipv6Packet,
    v: Ipv6OptionVerdict,
    multicast: boolean,
    now: number,
  ): void {
    if (v.action === OPTION_DISCARD || (v.action === OPTION_DISCARD_ICMP_UNICAST && multicast)) {
      this.counters.optionsDiscarded++;
      return;
    }
    this.counters.optionsRejected++;
    const src = ip.src;
    // RFC 4443 2.4(e): no error to a source that is not one node, nor about an ICMPv6 error.
    if (src[0] === 0xff || src.every((x) => x === 0)) return;
    const upper = ip.fragment === undefined || ip.fragment.offset === 0;
    if (upper && ip.protocol === IPPROTO_ICMPV6 && ip.payload.length > 0 && ip.payload[0] < 128) return;
    // RFC 4443 2.2: the answer to a multicast packet comes from one of our unicast addresses.
    const from = multicast ? this.sourceFor(src) : ip.dst;
    if (from === undefined || !this.icmpErrorAllowed(now)) return;
    const quote = b.subarray(0, Math.min(IPV6_HEADER_LENGTH + ip.payloadLength, ICMPV6_QUOTE));
    this.counters.icmpErrorsSent++;
    this.sendIcmpv6(
      from as Ipv6Addr,
      src,
      icmpv6Message(ICMPV6_PARAMETER_PROBLEM, { code: 2, pointer: v.pointer, data: quote }),
    );
  }

  /**
   * A datagram's reassembly timed out with its fragment zero in: ICMP Time Exceeded, code 1
   * (RFC 792; RFC 8200 4.5), quoting that fragment, unless its source is not one node, its
   * destination was multicast (RFC 4443 2.4(e.3)), it is itself an ICMP error (RFC 1122 3.2.2),
   * or the rate limit says no.
   */
  private sendTimeExceeded(v4: boolean, quote: Uint8Array, protocol: number, dataAt: number): void {
    const icmpError =
      quote.length > dataAt &&
      (v4
        ? protocol === IPPROTO_ICMP && isIcmpv4Error(quote[dataAt])
        : protocol === IPPROTO_ICMPV6 && quote[dataAt] < 128);
    if (icmpError) return;
    if (v4) {
      const src = readU32(quote, 12);
      const dst = readU32(quote, 16);
      const top = src >>> 24;
      if (top === 0 || top === 127 || top >= 224 || !this.isLocal(dst)) return;
      if (!this.icmpErrorAllowed(this.clock)) return;
      this.counters.icmpErrorsSent++;
      this.sendIcmpv4(dst, src, {
        type: ICMP_TIME_EXCEEDED,
        code: ICMP_REASSEMBLY_TIME_EXCEEDED_CODE,
        checksum: 0,
        ident: 0,
        seqNo: 0,
        mtu: 0,
        rest: 0,
        data: quote,
      });
      return;
    }
    // The quote is cut short of its Payload Length: read the addresses by hand.
    const src = quote.slice(8, 24);
    const dst = quote.slice(24, 40);
    if (src[0] === 0xff || src.every((x) => x === 0) || dst[0] === 0xff) return;
    if (!this.icmpErrorAllowed(this.clock)) return;
    this.counters.icmpErrorsSent++;
    this.sendIcmpv6(dst, src, icmpv6Message(ICMPV6_TIME_EXCEEDED, { code: 1, data: quote }));
  }

  /** RFC 4443 2.4(f), RFC 1812 4.3.2.8: a token bucket over the ICMP errors we originate. */
  private icmpErrorAllowed(now: number): boolean {
    const t = this.icmpTokens + ((now - this.icmpTokensAt) * ICMP_ERRORS_PER_S) / 1e6;
    this.icmpTokens = Math.min(ICMP_ERRORS_BURST, Math.max(0, t));
    this.icmpTokensAt = now;
    if (this.icmpTokens < 1) {
      this.counters.icmpErrorsRateLimited++;
      return false;
    }
    this.icmpTokens--;
    return true;
  }

  /** Multicast groups we listen to: all-nodes and the solicited-node group of each address. */
  private joined(group: Ipv6Addr): boolean {
    if (ipv6Equal(group, ALL_NODES)) return true;
    for (const c of this.addresses) {
      if (isV4(c.address)) continue;
      if (ipv6Equal(group, solicitedNodeMulticast(c.address))) return true;
    }
    return false;
  }

  /** `fragmented`: the message came in fragments (or an atomic fragment). */
  private icmpv6Input(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hopLimit: number,
    m: Icmpv6Message,
    now: number,
    fragmented: boolean,
  ): void {
    switch (m.type) {
      case ICMPV6_NEIGHBOR_SOLICITATION: {
        // RFC 4861 7.1.1: hop limit 255, code 0, target not multicast; RFC 6980 5: not fragmented.
        if (hopLimit !== HOP_LIMIT_ND || m.code !== 0 || !m.target || m.target[0] === 0xff || fragmented)
          return;
        this.counters.ndpIn++;
        if (!this.isLocal(m.target)) return;
        const unspecified = src.every((x) => x === 0);
        if (unspecified) {
          // Duplicate address detection by someone else: answer to all-nodes (RFC 4861 7.2.4).
          this.sendNa(ALL_NODES, ipv6MulticastMac(ALL_NODES), m.target, false);
          return;
        }
        if (m.sourceLinkAddr !== undefined) this.neighbors.learn(src, m.sourceLinkAddr, now, true);
        const to = m.sourceLinkAddr ?? this.neighbors.get(src)?.mac;
        if (to !== undefined) this.sendNa(src, to, m.target, true);
        return;
      }
      case ICMPV6_NEIGHBOR_ADVERTISEMENT: {
        if (hopLimit !== HOP_LIMIT_ND || m.code !== 0 || !m.target || fragmented) return;
        this.counters.ndpIn++;
        if (this.isLocal(m.target)) this.claimSeen(m.target, now);
        else if (m.targetLinkAddr !== undefined) this.neighbors.learn(m.target, m.targetLinkAddr, now, false);
        return;
      }
      case ICMPV6_ECHO_REQUEST: {
        if (dst[0] === 0xff) return;
        this.counters.echoReplies++;
        this.sendIcmpv6(dst, src, { ...m, type: ICMPV6_ECHO_REPLY, code: 0, checksum: 0 });
        return;
      }
      case ICMPV6_PACKET_TOO_BIG:
        this.counters.icmpErrorsIn++;
        this.icmpError(m.data, false, m.mtu, undefined);
        return;
      case ICMPV6_DEST_UNREACHABLE:
        this.counters.icmpErrorsIn++;
        this.icmpError(
          m.data,
          false,
          0,
          m.code === ICMPV6_NO_ROUTE_CODE
            ? 'ENETUNREACH'
            : m.code === ICMPV6_PORT_UNREACHABLE_CODE
              ? 'ECONNREFUSED'
              : 'EHOSTUNREACH',
        );
        return;
      case ICMPV6_TIME_EXCEEDED:
      case ICMPV6_PARAMETER_PROBLEM:
        this.counters.icmpErrorsIn++;
        this.icmpError(m.data, false, 0, 'EHOSTUNREACH');
        return;
      default:
        return;
    }
  }

  /**
   * An ICMP error quoting one of our TCP segments. Believed only when the quoted sequence number
   * lies in SND.UNA..SND.NXT (RFC 5927 4.1, RFC 8201 4; Linux's tcp_v4_err and tcp_v6_err), else
   * anyone who knows a 4-tuple could shrink its MSS or end its handshake. Then too-big (`error`
   * undefined) shrinks the connection's MSS (RFC 1191, RFC 8201), never below what a path can
   * carry: an IPv6 report below 1280 is discarded (RFC 8201 4), an IPv4 one below 68 too (RFC
   * 1191 3) and one below 552 is taken as 552 (Linux's min_pmtu). Other errors are soft once
   * synchronized and end a handshake (TcpConnection.icmpError). The quote is parsed by hand:
   * it is truncated, so the codecs' length checks would refuse it.
   */
  private icmpError(quote: Uint8Array, v4: boolean, mtu: number, error: TcpErrorCode | undefined): void {
    let src: IpAddr;
    let dst: IpAddr;
    let l4: number;
    if (v4) {
      const ihl = (quote[0] & 0x0f) * 4;
      if (
        quote.length < 20 ||
        quote[0] >> 4 !== 4 ||
        ihl < 20 ||
        quote[9] !== IPPROTO_TCP ||
        quote.length < ihl + 8
      ) {
        this.counters.icmpUnmatched++;
        return;
      }
      src = readU32(quote, 12);
      dst = readU32(quote, 16);
      l4 = ihl;
    } else {
      if (quote.length < 48 || quote[0] >> 4 !== 6 || quote[6] !== IPPROTO_TCP) {
        this.counters.icmpUnmatched++;
        return;
      }
      src = quote.slice(8, 24);
      dst = quote.slice(24, 40);
      l4 = 40;
    }
    const c = this.conns.get(connKey(src, readU16(quote, l4), dst, readU16(quote, l4 + 2)));
    if (!c) {
      this.counters.icmpUnmatched++;
      return;
    }
    if (!c.tcp.icmpQuoteInFlight(readU32(quote, l4 + 4))) {
      this.counters.icmpOutOfWindow++;
      return;
    }
    if (error === undefined) {
      if (mtu < (v4 ? MIN_MTU_V4 : MIN_MTU_V6)) {
        this.counters.icmpBadMtu++;
        return;
      }
      const pmtu = v4 ? Math.max(mtu, MIN_PMTU_V4) : mtu;
      c.tcp.reduceMss(pmtu - (v4 ? 40 : 60));
    } else {
      c.tcp.icmpError(error);
    }
    this.touch(c);
  }

  // -------------------------------------------------------------------------------------------
  // TCP

  private tcpConfig(v4: boolean): Partial<TcpConfig> {
    const mss = this.mtu - (v4 ? 40 : 60);
    const t = this.cfg.tcp ?? {};
    return { ...t, mss: Math.min(t.mss ?? mss, mss), defaultPeerMss: v4 ? 536 : 1220 };
  }

  private tcpInput(local: IpAddr, remote: IpAddr, seg: TcpSegment, now: number): void {
    this.counters.tcpIn++;
    const key = connKey(local, seg.dstPort, remote, seg.srcPort);
    let c = this.conns.get(key);
    const pureSyn = (seg.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN;
    if (c && pureSyn && c.tcp.state === TcpState.TimeWait && c.tcp.acceptsNewSyn(seg)) {
      // RFC 6191: a new incarnation may reuse a TIME-WAIT tuple.
      this.remove(c);
      c = undefined;
    }
    if (c) {
      c.tcp.input(seg, now);
      this.touch(c);
      return;
    }
    if (this.isQuiet(key, now)) {
      if (!pureSyn) {
        this.counters.lateSegments++;
        return;
      }
      this.quiet.delete(key);
    }
    if (pureSyn) {
      const l =
        this.listeners.get(`${ipKey(local)}|${seg.dstPort}`) ?? this.listeners.get(`*|${seg.dstPort}`);
      // Not accepting (an HA node serving alone that was told to refuse): a RST, as a closed port.
      if (l && !l.closed && this.acceptingNew && (!l.address || isV4(l.address) === isV4(local))) {
        if (l.halfOpen >= (this.cfg.synBacklog ?? 1024) || l.accepted.length >= l.backlog) {
          this.counters.synDropped++;
          return;
        }
        const tcp = TcpConnection.accept(seg, {
          localPort: seg.dstPort,
          remotePort: seg.srcPort,
          now,
          rng: this.rng,
          config: this.tcpConfig(isV4(local)),
        });
        c = new StackConnection(key, local, seg.dstPort, remote, seg.srcPort, tcp);
        c.listener = l;
        l.halfOpen++;
        this.conns.set(key, c);
        this.holdPort(seg.dstPort);
        this.observer?.created(c);
        this.touch(c);
        return;
      }
    }
    const rst = resetFor(seg);
    if (rst) {
      this.counters.tcpRstSent++;
      this.sendTcp(local, remote, rst);
    }
  }

  /** Starts listening on `port` (all addresses when `address` is undefined). */
  listen(
    port: number,
    opts: { address?: IpAddr; backlog?: number; onAccept: (c: StackConnection) => void },
  ): Listener {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new RangeError(`listen: port must be 1-65535 (got ${port}).`);
    const key = opts.address === undefined ? `*|${port}` : `${ipKey(opts.address)}|${port}`;
    if (this.listeners.has(key)) {
      const e = new Error(`listen EADDRINUSE: port ${port} is already listened on.`) as NodeJS.ErrnoException;
      e.code = 'EADDRINUSE';
      throw e;
    }
    const l = new Listener(opts.address, port, opts.backlog ?? 511, opts.onAccept);
    this.listeners.set(key, l);
    this.holdPort(port);
    return l;
  }

  closeListener(l: Listener): void {
    if (l.closed) return;
    l.closed = true;
    const key = l.address === undefined ? `*|${l.port}` : `${ipKey(l.address)}|${l.port}`;
    if (this.listeners.get(key) === l) this.listeners.delete(key);
    this.releasePort(l.port);
  }

  /** Opens a connection to `remote`:`port`; the SYN leaves at the next poll. */
  connect(
    remote: IpAddr,
    port: number,
    now: number,
    opts: { local?: IpAddr; localPort?: number; tcp?: Partial<TcpConfig> } = {},
  ): StackConnection {
    this.clock = now;
    const local = opts.local ?? this.sourceFor(remote);
    if (local === undefined) {
      const e = new Error(
        `connect ENETUNREACH: no local address of the family of the destination.`,
      ) as NodeJS.ErrnoException;
      e.code = 'ENETUNREACH';
      throw e;
    }
    const lport = opts.localPort ?? this.ephemeralPort(local, remote, port);
    const key = connKey(local, lport, remote, port);
    if (this.conns.has(key)) {
      const e = new Error(`connect EADDRINUSE: ${lport} to that peer is in use.`) as NodeJS.ErrnoException;
      e.code = 'EADDRINUSE';
      throw e;
    }
    const tcp = TcpConnection.connect({
      localPort: lport,
      remotePort: port,
      now,
      rng: this.rng,
      config: { ...this.tcpConfig(isV4(local)), ...opts.tcp },
    });
    const c = new StackConnection(key, local, lport, remote, port, tcp);
    this.conns.set(key, c);
    this.holdPort(lport);
    this.observer?.created(c);
    this.touch(c);
    return c;
  }

  /**
   * Takes in a connection restored from elsewhere (a take-over): it is polled at once. One still
   * in SYN-RECEIVED joins its listener's half-open table, so the application accepts it when the
   * handshake completes. Throws if the tuple is in use.
   */
  adopt(
    local: IpAddr,
    localPort: number,
    remote: IpAddr,
    remotePort: number,
    tcp: TcpConnection,
  ): StackConnection {
    const key = connKey(local, localPort, remote, remotePort);
    if (this.conns.has(key)) throw new Error(`adopt: connection ${key} exists already.`);
    const c = new StackConnection(key, local, localPort, remote, remotePort, tcp);
    if (tcp.state === TcpState.SynReceived) {
      const l = this.listenerFor(local, localPort);
      if (l && !l.closed) {
        c.listener = l;
        l.halfOpen++;
      }
    }
    this.conns.set(key, c);
    this.holdPort(localPort);
    this.quiet.delete(key);
    this.touch(c);
    return c;
  }

  private ephemeralPort(local: IpAddr, remote: IpAddr, rport: number): number {
    const [lo, hi] = this.cfg.ephemeralPorts ?? [32768, 60999];
    const n = hi - lo + 1;
    const start = this.rng.nextU32() % n;
    for (let i = 0; i < n; i++) {
      const p = lo + ((start + i) % n);
      if (!this.usedPorts.has(p) && !this.conns.has(connKey(local, p, remote, rport))) return p;
    }
    const e = new Error('connect EADDRNOTAVAIL: no free ephemeral port.') as NodeJS.ErrnoException;
    e.code = 'EADDRNOTAVAIL';
    throw e;
  }

  private holdPort(p: number): void {
    this.usedPorts.set(p, (this.usedPorts.get(p) ?? 0) + 1);
  }

  private releasePort(p: number): void {
    const n = (this.usedPorts.get(p) ?? 0) - 1;
    if (n <= 0) this.usedPorts.delete(p);
    else this.usedPorts.set(p, n);
  }

  private claimSeen(a: IpAddr, now: number): void {
    this.counters.addressClaims++;
    this.onAddressClaim?.(a, now);
  }

  /** The MAC frames to `remote` go to (its next hop's), when resolved. */
  neighborMac(remote: IpAddr): MacAddr | undefined {
    const hop = this.nextHop(remote);
    return hop === undefined ? undefined : this.neighbors.get(hop)?.mac;
  }

  /**
   * Seeds the neighbour cache for `remote`'s next hop with what another node had resolved (a
   * take-over: the restored connections' first frames leave without waiting for ARP/NDP, and
   * without overflowing the resolution queue). Re-confirmed like any entry once it ages.
   */
  seedNeighbor(remote: IpAddr, mac: MacAddr, now: number): void {
    const hop = this.nextHop(remote);
    if (hop !== undefined && this.neighbors.get(hop)?.mac === undefined)
      this.neighbors.learn(hop, mac, now, true);
  }

  /** The listener that takes connections to `local`:`port`, if any. */
  listenerFor(local: IpAddr, port: number): Listener | undefined {
    return this.listeners.get(`${ipKey(local)}|${port}`) ?? this.listeners.get(`*|${port}`);
  }

  /** The application acted on `c` (wrote, read, closed, changed a limit): it has work at the next poll. */
  touch(c: StackConnection): void {
    if (!c.removed) this.dirty.add(c);
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  connections(): IterableIterator<StackConnection> {
    return this.conns.values();
  }

  /**
   * Stray segments for this tuple (no SYN) are absorbed in silence until `until`, as for a
   * connection of ours that closed cleanly: after a take-over, for those the old node closed.
   */
  quietTuple(local: IpAddr, localPort: number, remote: IpAddr, remotePort: number, until: number): void {
    const key = connKey(local, localPort, remote, remotePort);
    if (this.conns.has(key)) return;
    if (this.quiet.size >= 65536) this.quiet.delete(this.quiet.keys().next().value as string);
    this.quiet.delete(key);
    this.quiet.set(key, until);
  }

  private isQuiet(key: string, now: number): boolean {
    // Expired entries leave from the front (all live for the same time).
    for (const [k, until] of this.quiet) {
      if (until > now) break;
      this.quiet.delete(k);
    }
    return this.quiet.has(key);
  }

  /**
   * Drops every connection without a word (no RST, no FIN): a node superseded by a take-over,
   * whose connections now belong to the new active. The application hears ECONNABORTED.
   */
  discardAll(): number {
    let n = 0;
    for (const c of [...this.conns.values()]) {
      c.tcp.discard();
      this.remove(c);
      n++;
    }
    return n;
  }

  private remove(c: StackConnection): void {
    if (c.removed) return;
    c.removed = true;
    if (c.tcp.error === undefined && c.tcp.state === TcpState.Closed) {
      if (this.quiet.size >= 65536) this.quiet.delete(this.quiet.keys().next().value as string);
      this.quiet.delete(c.key);
      this.quiet.set(c.key, this.clock + (this.cfg.closedQuietUs ?? 10_000_000));
    }
    this.conns.delete(c.key);
    this.timers.set(c, undefined);
    this.dirty.delete(c);
    this.releasePort(c.localPort);
    if (c.listener) {
      c.listener.halfOpen--;
      c.listener = undefined;
    }
    this.events.add(c);
    this.observer?.removed(c);
  }

  // -------------------------------------------------------------------------------------------
  // Polling

  /** The next instant `poll` has work; `now` when something is ready at once. */
  pollAt(): number | undefined {
    if (this.dirty.size > 0) return this.clock;
    let at = this.timers.peek();
    const n = this.neighbors.pollAt();
    if (n !== undefined && (at === undefined || n < at)) at = n;
    const r = this.reassembler.pollAt();
    if (r !== undefined && (at === undefined || r < at)) at = r;
    return at;
  }

  /** Runs every connection and neighbour timer that is due and sends what is ready. */
  poll(now: number): void {
    this.clock = now;
    this.neighbors.poll(now);
    this.reassembler.poll(now, this.reassemblyTimedOut);
    // Bounded: each connection is polled at most twice per call.
    const work: StackConnection[] = [...this.dirty];
    this.dirty.clear();
    for (let c = this.timers.popDue(now); c !== undefined; c = this.timers.popDue(now)) work.push(c);
    for (const c of work) this.service(c, now);
  }

  private service(c: StackConnection, now: number): void {
    if (c.removed) return;
    const tcp = c.tcp;
    this.servicing = c;
    tcp.poll(now, this.emitServiced);
    this.flushGso();
    const l = c.listener;
    if (l && isSynchronized(tcp.state)) {
      // Handshake complete: out of the half-open table, into the application's hands.
      l.halfOpen--;
      c.listener = undefined;
      if (l.closed) {
        tcp.abort();
        tcp.poll(now, (seg) => this.sendTcp(c.local, c.remote, seg));
      } else {
        this.accepts.push({ l, c });
      }
    }
    this.observer?.serviced(c);
    if (tcp.state === TcpState.Closed && tcp.pollAt() === undefined) {
      this.remove(c);
      return;
    }
    this.timers.set(c, tcp.pollAt());
    if (!c.listener) this.events.add(c);
  }

  /**
   * Connections that changed since the last call (each once) and new accepted connections; the
   * driver runs the application's callbacks for them outside any stack call.
   */
  takeEvents(): { changed: StackConnection[]; accepted: { l: Listener; c: StackConnection }[] } {
    const changed = [...this.events];
    this.events.clear();
    const accepted = this.accepts.splice(0);
    return { changed, accepted };
  }

  // -------------------------------------------------------------------------------------------
  // Frames out

  /** Gratuitous ARP for each IPv4 address and an unsolicited NA for each IPv6 one (claiming them). */
  announce(): void {
    for (const c of this.addresses) {
      if (isV4(c.address)) this.sendArp(MAC_BROADCAST, gratuitousArp(this.mac, c.address));
      else this.sendNa(ALL_NODES, ipv6MulticastMac(ALL_NODES), c.address, false, true);
    }
  }

  private sendFrame(dstMac: MacAddr, etherType: number, l3: Uint8Array): void {
    const b = this.buf;
    emitEthernetHeader({ dst: dstMac, src: this.mac, vlans: NO_VLANS, etherType }, b, 0);
    if (!(l3.buffer === b.buffer && l3.byteOffset === b.byteOffset + ETHERNET_HEADER_LENGTH))
      b.set(l3, ETHERNET_HEADER_LENGTH);
    this.counters.framesOut++;
    this.transmit(b.subarray(0, ETHERNET_HEADER_LENGTH + l3.length));
  }

  private sendArp(dstMac: MacAddr, a: ArpPacket): void {
    const b = this.buf;
    const n = emitArp(a, b, ETHERNET_HEADER_LENGTH);
    this.sendFrame(dstMac, ETHERTYPE_ARP, b.subarray(ETHERNET_HEADER_LENGTH, ETHERNET_HEADER_LENGTH + n));
  }

  private sendNeighborRequest(n: Neighbor, unicastTo: MacAddr | undefined): void {
    const target = n.addr;
    const src = this.sourceFor(target);
    if (src === undefined) return;
    if (isV4(target)) {
      this.sendArp(unicastTo ?? MAC_BROADCAST, {
        op: ARP_REQUEST,
        senderMac: this.mac,
        senderIp: src as number,
        targetMac: 0,
        targetIp: target,
      });
    } else {
      const group = solicitedNodeMulticast(target);
      const dst = unicastTo === undefined ? group : target;
      this.sendIcmpv6Frame(unicastTo ?? ipv6MulticastMac(group), src as Ipv6Addr, dst, HOP_LIMIT_ND, {
        ...icmpv6Message(ICMPV6_NEIGHBOR_SOLICITATION),
        target,
        sourceLinkAddr: this.mac,
      });
    }
  }

  private sendNa(
    dst: Ipv6Addr,
    dstMac: MacAddr,
    target: Ipv6Addr,
    solicited: boolean,
    override = true,
  ): void {
    this.sendIcmpv6Frame(dstMac, target, dst, HOP_LIMIT_ND, {
      ...icmpv6Message(ICMPV6_NEIGHBOR_ADVERTISEMENT),
      solicited,
      override,
      target,
      targetLinkAddr: this.mac,
    });
  }

  /** Writes the IP header for `len` upper-layer bytes already at buf[14 + header]; returns the header size. */
  private ipHeader(
    src: IpAddr,
    dst: IpAddr,
    proto: number,
    len: number,
    hopLimit = IP_TTL,
    b = this.buf,
  ): number {
    if (isV4(src)) {
      this.ipId = (this.ipId + 1) & 0xffff;
      return emitIpv4Header(
        {
          dscp: 0,
          ecn: 0,
          ident: this.ipId,
          dontFragment: true,
          moreFragments: false,
          fragmentOffset: 0,
          ttl: hopLimit,
          protocol: proto,
          src,
          dst: dst as number,
        },
        len,
        b,
        ETHERNET_HEADER_LENGTH,
      );
    }
    return emitIpv6Header(
      {
        trafficClass: 0,
        flowLabel: 0,
        nextHeader: proto,
        hopLimit,
        src,
        dst: dst as Ipv6Addr,
        extHeaders: NO_EXT_HEADERS,
      },
      len,
      b,
      ETHERNET_HEADER_LENGTH,
    );
  }

  /** Sends the IP packet at buf[14, 14 + len) to `dst`, resolving the next hop's MAC. */
  private route(dst: IpAddr, len: number): void {
    const packet = this.buf.subarray(ETHERNET_HEADER_LENGTH, ETHERNET_HEADER_LENGTH + len);
    const v4 = isV4(dst);
    const etherType = v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
    if (!v4 && dst[0] === 0xff) {
      this.sendFrame(ipv6MulticastMac(dst), etherType, packet);
      return;
    }
    const hop = this.nextHop(dst);
    if (hop === undefined) {
      this.counters.noRoute++;
      return;
    }
    const mac = this.neighbors.resolve(hop, packet, this.clock);
    if (mac !== undefined) this.sendFrame(mac, etherType, packet);
  }

  /**
   * A segment `c` emits while being serviced: gathered into the GSO batch when the link segments
   * for us and the segment fits the batch (see GsoBatch), sent alone otherwise.
   */
  private gatherTcp(c: StackConnection, seg: TcpSegment): void {
    const buf = this.gsoBuf;
    if (buf === undefined) {
      this.sendTcp(c.local, c.remote, seg);
      return;
    }
    const n = seg.payload.length;
    const plain = n > 0 && (seg.flags & ~(TCP_PSH | TCP_FIN)) === TCP_ACK && seg.sackBlocks === undefined;
    const g = this.gso;
    if (g !== undefined) {
      const f = g.first;
      if (
        plain &&
        g.c === c &&
        g.lastFlags === TCP_ACK &&
        g.lastLen === g.segSize &&
        n <= g.segSize &&
        g.bytes + n <= g.maxBytes &&
        seg.seq === (f.seq + g.bytes) >>> 0 &&
        seg.ack === f.ack &&
        seg.window === f.window &&
        seg.tsVal === f.tsVal &&
        seg.tsEcr === f.tsEcr &&
        seg.urgentPointer === f.urgentPointer
      ) {
        buf.set(seg.payload, g.payloadAt + g.bytes);
        g.bytes += n;
        g.lastLen = n;
        g.lastFlags = seg.flags;
        g.count++;
        return;
      }
      this.flushGso();
    }
    const hop = plain && seg.mss === undefined ? this.nextHop(c.remote) : undefined;
    // Only to a neighbour already resolved (`resolve` then queues nothing; it re-confirms a stale one).
    const mac =
      hop === undefined || this.neighbors.get(hop)?.mac === undefined
        ? undefined
        : this.neighbors.resolve(hop, seg.payload, this.clock);
    if (mac === undefined) {
      this.sendTcp(c.local, c.remote, seg);
      return;
    }
    const ipHl = c.v4 ? 20 : 40;
    const payloadAt = ETHERNET_HEADER_LENGTH + ipHl + tcpHeaderLength(seg);
    // IPv4's total length and IPv6's payload length are 16 bits.
    const room = Math.min(
      buf.length - payloadAt,
      65535 - (payloadAt - ETHERNET_HEADER_LENGTH - (c.v4 ? 0 : 40)),
    );
    buf.set(seg.payload, payloadAt);
    this.gso = {
      c,
      first: { ...seg },
      mac,
      payloadAt,
      bytes: n,
      maxBytes: room - (room % n),
      segSize: n,
      lastLen: n,
      lastFlags: seg.flags,
      count: 1,
    };
  }

  /** Sends the gathered batch: one GSO frame, or a plain one when it holds a single segment. */
  private flushGso(): void {
    const g = this.gso;
    if (g === undefined) return;
    this.gso = undefined;
    const buf = this.gsoBuf!;
    const c = g.c;
    const seg = g.first;
    seg.flags = g.lastFlags;
    seg.payload = buf.subarray(g.payloadAt, g.payloadAt + g.bytes);
    if (g.count === 1) {
      this.sendTcp(c.local, c.remote, seg);
      return;
    }
    const ipHl = c.v4 ? 20 : 40;
    const tcpAt = ETHERNET_HEADER_LENGTH + ipHl;
    const l4 = g.payloadAt - tcpAt + g.bytes;
    emitTcpHeader(seg, g.bytes, buf, tcpAt);
    // CHECKSUM_PARTIAL convention (Linux __tcp_v4_send_check): the field holds the folded
    // pseudo-header sum; the link sums the rest and fixes it per segment.
    const pseudo = c.v4
      ? pseudoHeaderSumV4(c.local as number, c.remote as number, IPPROTO_TCP, l4)
      : pseudoHeaderSumV6(c.local as Ipv6Addr, c.remote as Ipv6Addr, IPPROTO_TCP, l4);
    buf[tcpAt + 16] = fold(pseudo) >>> 8;
    buf[tcpAt + 17] = fold(pseudo) & 0xff;
    this.ipHeader(c.local, c.remote, IPPROTO_TCP, l4, IP_TTL, buf);
    // The link numbers the IPv4 idents of the pieces from the first one on.
    this.ipId = (this.ipId + g.count - 1) & 0xffff;
    emitEthernetHeader(
      { dst: g.mac, src: this.mac, vlans: NO_VLANS, etherType: c.v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6 },
      buf,
      0,
    );
    this.counters.framesOut++;
    this.counters.gsoFrames++;
    this.transmit(buf.subarray(0, tcpAt + l4), g.segSize);
  }

  private sendTcp(src: IpAddr, dst: IpAddr, seg: TcpSegment): void {
    const v4 = isV4(src);
    const l4 = tcpHeaderLength(seg) + seg.payload.length;
    const hl = v4 ? 20 : 40;
    const sum = v4
      ? pseudoHeaderSumV4(src, dst as number, IPPROTO_TCP, l4)
      : pseudoHeaderSumV6(src, dst as Ipv6Addr, IPPROTO_TCP, l4);
    emitTcp(seg, this.buf, ETHERNET_HEADER_LENGTH + hl, sum);
    this.ipHeader(src, dst, IPPROTO_TCP, l4);
    this.route(dst, hl + l4);
  }

  private sendIcmpv4(src: number, dst: number, m: Icmpv4Message): void {
    const l4 = icmpv4Length(m);
    if (20 + l4 > this.mtu) return;
    emitIcmpv4(m, this.buf, ETHERNET_HEADER_LENGTH + 20);
    this.ipHeader(src, dst, IPPROTO_ICMP, l4);
    this.route(dst, 20 + l4);
  }

  private sendIcmpv6(src: Ipv6Addr, dst: Ipv6Addr, m: Icmpv6Message): void {
    const l4 = icmpv6Length(m);
    if (40 + l4 > this.mtu) return;
    emitIcmpv6(m, this.buf, ETHERNET_HEADER_LENGTH + 40, pseudoHeaderSumV6(src, dst, IPPROTO_ICMPV6, l4));
    this.ipHeader(src, dst, IPPROTO_ICMPV6, l4);
    this.route(dst, 40 + l4);
  }

  /** ND messages go to a MAC we already know (or a multicast one), never through resolution. */
  private sendIcmpv6Frame(
    dstMac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hopLimit: number,
    m: Icmpv6Message,
  ): void {
    const l4 = icmpv6Length(m);
    emitIcmpv6(m, this.buf, ETHERNET_HEADER_LENGTH + 40, pseudoHeaderSumV6(src, dst, IPPROTO_ICMPV6, l4));
    this.ipHeader(src, dst, IPPROTO_ICMPV6, l4, hopLimit);
    this.sendFrame(
      dstMac,
      ETHERTYPE_IPV6,
      this.buf.subarray(ETHERNET_HEADER_LENGTH, ETHERNET_HEADER_LENGTH + 40 + l4),
    );
  }
}

/**
 * What an IPv4 destination unreachable tells a connection, after Linux's icmp_err_convert folded
 * onto the codes a connection reports: network codes (0, 6, 9, 11) ENETUNREACH, port
 * unreachable ECONNREFUSED, the rest EHOSTUNREACH.
 */
function unreachableV4(code: number): TcpErrorCode {
  if (code === 0 || code === 6 || code === 9 || code === 11) return 'ENETUNREACH';
  return code === ICMP_PORT_UNREACHABLE_CODE ? 'ECONNREFUSED' : 'EHOSTUNREACH';
}

/** ICMPv4 types that are errors (RFC 1122 3.2.2: never answered with an error). */
function isIcmpv4Error(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}
