/**
 * The neighbour cache shared by ARP (RFC 826) and NDP (RFC 4861 7.3): IP address → MAC, with
 * resolution (a bounded queue of packets waiting for it, requests retried then given up), ageing
 * (a stale entry is still used while it is re-confirmed by unicast probes), and learning from
 * what the network says.
 */
import type { MacAddr } from '../wire/address.ts';
import { Deadlines } from './deadlines.ts';
import { type IpAddr, ipKey } from './ip.ts';

export interface NeighborConfig {
  /** How long a confirmed entry is trusted before it is re-probed (RFC 4861 REACHABLE_TIME: 30 s). */
  reachableUs: number;
  /** Between requests while resolving or probing (RFC 4861 RETRANS_TIMER: 1 s). */
  retransmitUs: number;
  /** Requests before giving up (RFC 4861 MAX_MULTICAST_SOLICIT: 3). */
  probes: number;
  /** Packets held per unresolved neighbour; the oldest is dropped beyond it. */
  queueLimit: number;
  /** Entries held at most (the least recently confirmed incomplete ones go first). */
  maxEntries: number;
}

export const DEFAULT_NEIGHBOR_CONFIG: Readonly<NeighborConfig> = Object.freeze({
  reachableUs: 30_000_000,
  retransmitUs: 1_000_000,
  probes: 3,
  queueLimit: 64,
  maxEntries: 4096,
});

export interface Neighbor {
  readonly addr: IpAddr;
  mac: MacAddr | undefined;
  confirmedAt: number;
  /** Requests sent in the current resolution or probe round. */
  sent: number;
  /** Network-layer packets waiting for the MAC. */
  pending: Uint8Array[];
}

export interface NeighborEvents {
  /** Send a request for `n.addr`: broadcast/multicast when `unicastTo` is undefined. */
  request(n: Neighbor, unicastTo: MacAddr | undefined): void;
  /** These packets can go to `mac` now. */
  release(n: Neighbor, mac: MacAddr, packets: Uint8Array[]): void;
  /** Resolution failed: these packets are dropped. */
  drop(n: Neighbor, packets: Uint8Array[]): void;
}

export class NeighborCache {
  private readonly entries = new Map<string, Neighbor>();
  private readonly timers = new Deadlines<Neighbor>();
  private readonly probing = new Set<Neighbor>();
  counters = { resolved: 0, failed: 0, queuedDrops: 0, learned: 0 };

  constructor(
    readonly config: NeighborConfig,
    private readonly events: NeighborEvents,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(addr: IpAddr): Neighbor | undefined {
    return this.entries.get(ipKey(addr));
  }

  /**
   * The MAC to send to `addr`, or undefined after queuing `packet` (a copy is kept) and starting
   * resolution. A stale entry is used and re-confirmed in the background.
   */
  resolve(addr: IpAddr, packet: Uint8Array, now: number): MacAddr | undefined {
    const key = ipKey(addr);
    let n = this.entries.get(key);
    if (n?.mac !== undefined) {
      // Stale: keep using it, re-confirm by unicast probes from the next poll (not from here: the
      // caller's packet may live in the buffer a probe would be built in).
      if (now - n.confirmedAt > this.config.reachableUs && n.sent === 0 && !this.probing.has(n)) {
        this.probing.add(n);
        this.timers.set(n, now);
      }
      return n.mac;
    }
    if (!n) {
      if (this.entries.size >= this.config.maxEntries) this.evictOne();
      n = { addr, mac: undefined, confirmedAt: -1, sent: 0, pending: [] };
      this.entries.set(key, n);
    }
    if (n.pending.length >= this.config.queueLimit) {
      n.pending.shift();
      this.counters.queuedDrops++;
    }
    n.pending.push(packet.slice());
    if (n.sent === 0) {
      n.sent = 1;
      this.events.request(n, undefined);
      this.timers.set(n, now + this.config.retransmitUs);
    }
    return undefined;
  }

  /**
   * What the network said: `addr` is at `mac`. `create` says whether an unknown address may be
   * added (a reply or a request addressed to us: yes; gossip: only update what we already hold,
   * RFC 826 "merge" and RFC 4861 7.2.5).
   */
  learn(addr: IpAddr, mac: MacAddr, now: number, create: boolean): void {
    const key = ipKey(addr);
    let n = this.entries.get(key);
    if (!n) {
      if (!create) return;
      if (this.entries.size >= this.config.maxEntries) this.evictOne();
      n = { addr, mac: undefined, confirmedAt: -1, sent: 0, pending: [] };
      this.entries.set(key, n);
    }
    const wasUnresolved = n.mac === undefined;
    n.mac = mac;
    n.confirmedAt = now;
    n.sent = 0;
    this.probing.delete(n);
    this.timers.set(n, undefined);
    this.counters.learned++;
    if (wasUnresolved) this.counters.resolved++;
    if (n.pending.length > 0) {
      const p = n.pending;
      n.pending = [];
      this.events.release(n, mac, p);
    }
  }

  /** Forgets `addr` (e.g. a configured static change). */
  forget(addr: IpAddr): void {
    const n = this.entries.get(ipKey(addr));
    if (!n) return;
    this.probing.delete(n);
    this.timers.set(n, undefined);
    this.entries.delete(ipKey(addr));
  }

  pollAt(): number | undefined {
    return this.timers.peek();
  }

  /** Retries and gives up, as due. */
  poll(now: number): void {
    for (let n = this.timers.popDue(now); n !== undefined; n = this.timers.popDue(now)) {
      if (n.sent >= this.config.probes) {
        // Unanswered: drop what waited and the entry itself.
        this.probing.delete(n);
        this.entries.delete(ipKey(n.addr));
        this.counters.failed++;
        if (n.pending.length > 0) this.events.drop(n, n.pending);
        n.pending = [];
        continue;
      }
      n.sent++;
      this.events.request(n, n.mac);
      this.timers.set(n, now + this.config.retransmitUs);
    }
  }

  private evictOne(): void {
    // Prefer an incomplete entry (a scan of unreachable addresses should not push out real ones).
    let victim: Neighbor | undefined;
    for (const n of this.entries.values()) {
      if (n.mac === undefined) {
        victim = n;
        break;
      }
      if (!victim || n.confirmedAt < victim.confirmedAt) victim = n;
    }
    if (victim) {
      this.probing.delete(victim);
      this.timers.set(victim, undefined);
      this.entries.delete(ipKey(victim.addr));
      if (victim.pending.length > 0) this.events.drop(victim, victim.pending);
    }
  }
}
