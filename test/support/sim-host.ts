/**
 * A small protocol-speaking host for the simulator, built only from the wire codecs: it answers
 * ARP requests, ICMP and ICMPv6 echo, neighbour solicitations, and runs a toy TCP responder on
 * one port (SYN → SYN-ACK with mirrored options; data → cumulative ACK with SACK blocks for what
 * arrived out of order; FIN → FIN-ACK). It is a fixture for codec-level simulations and pcap
 * checks, not a TCP: the real engine is src/tcp.
 */
import type { NodeHandle, SimNode } from '../../src/link/sim/index.ts';
import { type Ipv4Addr, type Ipv6Addr, ipv6Equal, type MacAddr } from '../../src/wire/address.ts';
import { ARP_REPLY, ARP_REQUEST } from '../../src/wire/arp.ts';
import { isWireError } from '../../src/wire/error.ts';
import { type Frame, parseFrame } from '../../src/wire/frame.ts';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST } from '../../src/wire/icmpv4.ts';
import {
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
} from '../../src/wire/icmpv6.ts';
import { seqAdd, seqGt, seqLe, seqSub } from '../../src/wire/seq.ts';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type TcpSegment } from '../../src/wire/tcp.ts';
import { encode, frame, icmpv4, icmpv6, ipv4, ipv6, tcp } from './build.ts';

interface Conn {
  rcvNxt: number;
  sndNxt: number;
  /** Out-of-order ranges [start, end) above rcvNxt, in arrival order (most recent first, RFC 2018 4). */
  ooo: [number, number][];
  ts: boolean;
  sack: boolean;
  lastTsVal: number;
  received: number;
}

export class SimHost implements SimNode {
  handle!: NodeHandle;
  readonly received: Frame[] = [];
  malformed = 0;
  private readonly conns = new Map<string, Conn>();

  constructor(
    readonly mac: MacAddr,
    readonly ip4: Ipv4Addr,
    readonly ip6: Ipv6Addr,
    readonly tcpPort = 80,
  ) {}

  attach(h: NodeHandle): void {
    this.handle = h;
  }

  send(f: Frame): void {
    this.handle.send(0, encode(f));
  }

  receive(_port: number, bytes: Uint8Array, now: number): void {
    const f = parseFrame(bytes);
    if (isWireError(f)) {
      this.malformed++;
      return;
    }
    this.received.push(f);
    if (f.arp) {
      if (f.arp.op === ARP_REQUEST && f.arp.targetIp === this.ip4) {
        this.send(
          frame(f.arp.senderMac, this.mac, {
            arp: {
              op: ARP_REPLY,
              senderMac: this.mac,
              senderIp: this.ip4,
              targetMac: f.arp.senderMac,
              targetIp: f.arp.senderIp,
            },
          }),
        );
      }
      return;
    }
    if (f.ipv4 && f.ipv4.dst === this.ip4) {
      if (f.icmpv4?.type === ICMP_ECHO_REQUEST) {
        const m = f.icmpv4;
        this.send(
          frame(f.eth.src, this.mac, {
            ipv4: ipv4({ src: this.ip4, dst: f.ipv4.src }),
            icmpv4: icmpv4({ type: ICMP_ECHO_REPLY, ident: m.ident, seqNo: m.seqNo, data: m.data }),
          }),
        );
      } else if (f.tcp) {
        this.tcpInput(f, f.tcp, now);
      }
      return;
    }
    if (f.ipv6 && (ipv6Equal(f.ipv6.dst, this.ip6) || f.ipv6.dst[0] === 0xff)) {
      const m = f.icmpv6;
      if (m?.type === ICMPV6_NEIGHBOR_SOLICITATION && m.target && ipv6Equal(m.target, this.ip6)) {
        this.send(
          frame(f.eth.src, this.mac, {
            ipv6: ipv6({ src: this.ip6, dst: f.ipv6.src, hopLimit: 255 }),
            icmpv6: icmpv6({
              type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
              solicited: true,
              override: true,
              target: this.ip6,
              targetLinkAddr: this.mac,
            }),
          }),
        );
      } else if (m?.type === ICMPV6_ECHO_REQUEST && ipv6Equal(f.ipv6.dst, this.ip6)) {
        this.send(
          frame(f.eth.src, this.mac, {
            ipv6: ipv6({ src: this.ip6, dst: f.ipv6.src }),
            icmpv6: icmpv6({ type: ICMPV6_ECHO_REPLY, ident: m.ident, seqNo: m.seqNo, data: m.data }),
          }),
        );
      } else if (f.tcp && ipv6Equal(f.ipv6.dst, this.ip6)) {
        this.tcpInput(f, f.tcp, now);
      }
    }
  }

  private reply(f: Frame, s: Partial<TcpSegment>): void {
    const t = f.tcp!;
    const l3 = f.ipv4
      ? { ipv4: ipv4({ src: this.ip4, dst: f.ipv4.src }) }
      : { ipv6: ipv6({ src: this.ip6, dst: f.ipv6!.src }) };
    this.send(
      frame(f.eth.src, this.mac, { ...l3, tcp: tcp({ srcPort: t.dstPort, dstPort: t.srcPort, ...s }) }),
    );
  }

  private tcpInput(f: Frame, t: TcpSegment, now: number): void {
    if (t.dstPort !== this.tcpPort) {
      if ((t.flags & TCP_RST) === 0) {
        // RFC 9293 3.10.7.1: a segment to a closed port draws a RST.
        const ackOnly = (t.flags & TCP_ACK) !== 0;
        this.reply(f, {
          seq: ackOnly ? t.ack : 0,
          ack: ackOnly ? 0 : seqAdd(t.seq, t.payload.length + ((t.flags & TCP_SYN) !== 0 ? 1 : 0)),
          flags: ackOnly ? TCP_RST : TCP_RST | TCP_ACK,
          window: 0,
        });
      }
      return;
    }
    const key = `${f.ipv4 ? f.ipv4.src : f.ipv6!.src.join('.')}:${t.srcPort}`;
    const tsVal = Math.floor(now / 1000) >>> 0;
    if (t.flags & TCP_SYN) {
      const c: Conn = {
        rcvNxt: seqAdd(t.seq, 1),
        sndNxt: 0x7fff_fff0,
        ooo: [],
        ts: t.tsVal !== undefined,
        sack: t.sackPermitted,
        lastTsVal: t.tsVal ?? 0,
        received: 0,
      };
      this.conns.set(key, c);
      this.reply(f, {
        seq: c.sndNxt,
        ack: c.rcvNxt,
        flags: TCP_SYN | TCP_ACK,
        mss: 1460,
        windowScale: t.windowScale !== undefined ? 7 : undefined,
        sackPermitted: c.sack,
        tsVal: c.ts ? tsVal : undefined,
        tsEcr: c.ts ? t.tsVal : undefined,
      });
      c.sndNxt = seqAdd(c.sndNxt, 1);
      return;
    }
    const c = this.conns.get(key);
    if (!c) return;
    if (t.tsVal !== undefined) c.lastTsVal = t.tsVal;
    let fin = (t.flags & TCP_FIN) !== 0;
    const len = t.payload.length;
    if (len > 0) {
      const start = t.seq;
      const end = seqAdd(t.seq, len);
      if (seqLe(start, c.rcvNxt) && seqGt(end, c.rcvNxt)) {
        c.received += seqSub(end, c.rcvNxt);
        c.rcvNxt = end;
        // Pull in out-of-order ranges the new data reaches.
        for (let moved = true; moved; ) {
          moved = false;
          for (let i = 0; i < c.ooo.length; i++) {
            const [s, e] = c.ooo[i];
            if (seqLe(s, c.rcvNxt)) {
              if (seqGt(e, c.rcvNxt)) {
                c.received += seqSub(e, c.rcvNxt);
                c.rcvNxt = e;
              }
              c.ooo.splice(i, 1);
              moved = true;
              break;
            }
          }
        }
      } else if (seqGt(start, c.rcvNxt)) {
        c.ooo.unshift([start, end]);
        fin = false;
      }
    }
    // The FIN counts only when everything before it has arrived (a reordered FIN waits for its retransmission).
    if (fin && seqAdd(t.seq, len) === c.rcvNxt) c.rcvNxt = seqAdd(c.rcvNxt, 1);
    else fin = false;
    if (len === 0 && !fin) return;
    const blocks = c.sack && c.ooo.length > 0 ? c.ooo.slice(0, 3).flat() : undefined;
    this.reply(f, {
      seq: c.sndNxt,
      ack: c.rcvNxt,
      flags: fin ? TCP_FIN | TCP_ACK : TCP_ACK,
      window: 1024,
      sackBlocks: blocks,
      tsVal: c.ts ? tsVal : undefined,
      tsEcr: c.ts ? c.lastTsVal : undefined,
    });
    if (fin) c.sndNxt = seqAdd(c.sndNxt, 1);
  }

  /** Bytes received in order on the responder, per connection. */
  tcpReceived(): number[] {
    return [...this.conns.values()].map((c) => c.received);
  }
}
