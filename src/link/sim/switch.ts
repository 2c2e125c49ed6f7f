/**
 * A learning Ethernet bridge (IEEE 802.1D-2004 7.7-7.9, without spanning tree or VLANs).
 *
 * - Learning: the source MAC of every frame is bound to its ingress port; a frame from a MAC
 *   seen on another port moves the entry (how a gratuitous ARP from a new active node redirects
 *   the VIP's MAC to it).
 * - Forwarding: known unicast goes out its one port; broadcast, multicast and unknown unicast
 *   are flooded to every other connected port; nothing goes back out its ingress port (a known
 *   destination on the ingress port is filtered).
 * - Ageing: an entry not refreshed for `ageingUs` (default 300 s, 802.1D's recommended value)
 *   is forgotten. Expiry is checked on lookup and swept when the table grows, so the switch
 *   needs no timer and never adds events to the simulation.
 *
 * Reads only the two MAC addresses (bytes 0-5 destination, 6-11 source); frames shorter than an
 * Ethernet header (14 bytes) are dropped and counted.
 */
import { isMulticastMac, type MacAddr, readMac } from '../../wire/address.ts';
import type { NodeHandle } from './network.ts';
import type { SimNode } from './node.ts';

export interface SwitchOptions {
  /** Number of ports, 0 .. ports-1. */
  ports: number;
  /** MAC entry lifetime, µs. Default 300 s. */
  ageingUs?: number;
}

export interface MacEntry {
  mac: MacAddr;
  port: number;
  /** Virtual time the MAC was last seen as a source, µs. */
  lastSeen: number;
}

export interface SwitchStats {
  received: number;
  /** Known unicast sent out one port. */
  forwarded: number;
  /** Frames flooded (counted once per frame, not per port). */
  flooded: number;
  /** Known unicast whose port is the ingress port: dropped. */
  filtered: number;
  /** Shorter than an Ethernet header: dropped. */
  runts: number;
  /** Entries forgotten by ageing. */
  aged: number;
  /** Entries that changed port. */
  moves: number;
}

const MIN_FRAME = 14;
const SWEEP_MIN = 1024;

export class LearningSwitch implements SimNode {
  readonly ports: number;
  readonly ageingUs: number;
  readonly stats: SwitchStats = {
    received: 0,
    forwarded: 0,
    flooded: 0,
    filtered: 0,
    runts: 0,
    aged: 0,
    moves: 0,
  };
  private handle: NodeHandle | undefined = undefined;
  private readonly table = new Map<MacAddr, MacEntry>();
  private sweepAt = SWEEP_MIN;

  constructor(opts: SwitchOptions) {
    if (!(Number.isInteger(opts.ports) && opts.ports >= 1))
      throw new Error(`a switch needs an integer number of ports >= 1, got ${opts.ports}.`);
    if (opts.ageingUs !== undefined && !(opts.ageingUs > 0))
      throw new Error(`switch ageingUs must be a positive number of microseconds, got ${opts.ageingUs}.`);
    this.ports = opts.ports;
    this.ageingUs = opts.ageingUs ?? 300_000_000;
  }

  attach(handle: NodeHandle): void {
    this.handle = handle;
  }

  receive(port: number, frame: Uint8Array, now: number): void {
    const st = this.stats;
    st.received++;
    if (frame.length < MIN_FRAME || port >= this.ports) {
      st.runts++;
      return;
    }
    const dst = readMac(frame, 0);
    const src = readMac(frame, 6);
    if (!isMulticastMac(src)) this.learn(src, port, now);
    if (!isMulticastMac(dst)) {
      const out = this.lookup(dst, now);
      if (out !== undefined) {
        if (out === port) {
          st.filtered++;
        } else {
          st.forwarded++;
          this.handle?.send(out, frame);
        }
        return;
      }
    }
    st.flooded++;
    const h = this.handle;
    if (h === undefined) return;
    for (let p = 0; p < this.ports; p++) if (p !== port && h.isConnected(p)) h.send(p, frame);
  }

  private learn(mac: MacAddr, port: number, now: number): void {
    const e = this.table.get(mac);
    if (e !== undefined) {
      if (e.port !== port) {
        e.port = port;
        this.stats.moves++;
      }
      e.lastSeen = now;
      return;
    }
    this.table.set(mac, { mac, port, lastSeen: now });
    if (this.table.size >= this.sweepAt) {
      this.sweep(now);
      this.sweepAt = Math.max(SWEEP_MIN, this.table.size * 2);
    }
  }

  /** The port `mac` was learned on, or undefined if unknown or aged out (ageing it out now). */
  lookup(mac: MacAddr, now: number): number | undefined {
    const e = this.table.get(mac);
    if (e === undefined) return undefined;
    if (now - e.lastSeen >= this.ageingUs) {
      this.table.delete(mac);
      this.stats.aged++;
      return undefined;
    }
    return e.port;
  }

  /** Forgets every entry older than the ageing time. */
  sweep(now: number): void {
    for (const [mac, e] of this.table) {
      if (now - e.lastSeen >= this.ageingUs) {
        this.table.delete(mac);
        this.stats.aged++;
      }
    }
  }

  /** The live entries at `now` (sorted by MAC), for tests and status. */
  macTable(now: number): MacEntry[] {
    this.sweep(now);
    const out: MacEntry[] = [];
    for (const e of this.table.values()) out.push({ mac: e.mac, port: e.port, lastSeen: e.lastSeen });
    out.sort((x, y) => x.mac - y.mac);
    return out;
  }

  /** Forgets everything (like `bridge fdb flush`). */
  flush(): void {
    this.table.clear();
  }
}
