/**
 * Active/standby pairs on the simulated network: each HA node is a NetStack plus an HaNode, both
 * with the shared virtual MAC and the VIP; the replication link is a simulated ordered pipe with
 * latency that breaks when either end crashes (as a kernel TCP does when a process is killed: the
 * survivor sees the close after one latency).
 *
 * Server applications are stateless functions of a connection's offsets, so the same code runs
 * on both nodes and picks up restored connections (docs/ARCHITECTURE.md §8):
 * - echo (port 7): reads what it can write back, writes it back;
 * - download (port 19): writes a pattern stream by offset up to a length, then closes;
 * - request/response (port 80): each 64-byte request gets a 1,000-byte answer derived from it.
 */

import type { LinkDevice } from '../link/device.ts';
import { GatedDevice } from '../link/gate.ts';
import type { NodeHandle, SimNode } from '../link/sim/index.ts';
import { fillPattern } from '../link/sim/pattern.ts';
import type { LogEvent } from '../log.ts';
import { cidrFromString } from '../stack/ip.ts';
import { NetStack, type StackConfig, type StackConnection } from '../stack/stack.ts';
import { TcpState } from '../tcp/state.ts';
import { macFromString } from '../wire/address.ts';
import { type ArbiterIntent, arbitrateNow, type MemoryArbiter } from './arbiter.ts';
import { beaconKey, isBeaconFrame } from './beacon.ts';
import { type HaDriver, HaNode, type HaNodeOptions, nodeMac, type PeerLink } from './node.ts';

export const VIP_MAC = macFromString('00:00:5e:00:01:01')!;
export const VIP4 = '198.18.0.100';
export const VIP6 = 'fd00::100';
export const ECHO_PORT = 7;
export const DOWNLOAD_PORT = 19;
export const RR_PORT = 80;
export const REQUEST_BYTES = 64;
export const RESPONSE_BYTES = 1000;
/** Pattern stream id of downloads. */
export const DOWNLOAD_STREAM = 77;

/** The answer to one request: bytes derived from the request's content. */
export function responseFor(req: Uint8Array): Uint8Array {
  const out = new Uint8Array(RESPONSE_BYTES);
  let h = 2166136261;
  for (const b of req) h = Math.imul(h ^ b, 16777619) >>> 0;
  for (let i = 0; i < out.length; i++) {
    h = Math.imul(h ^ i, 16777619) >>> 0;
    out[i] = h & 0xff;
  }
  return out;
}

/** Connections the application has closed (close() once: a second one would be no news). */
const closedByApp = new WeakSet<object>();

function closeOnce(c: StackConnection): boolean {
  if (closedByApp.has(c.tcp)) return false;
  closedByApp.add(c.tcp);
  c.tcp.close();
  return true;
}

/** Drives one server connection; returns whether it did anything. */
export function serveConnection(c: StackConnection, downloadBytes: number): boolean {
  const t = c.tcp;
  let acted = false;
  if (c.localPort === ECHO_PORT) {
    for (let i = 0; i < 64; i++) {
      const n = Math.min(t.readable, t.writable);
      if (n === 0) break;
      const d = t.read(n)!;
      t.write(d);
      acted = true;
    }
    if (t.eof && t.state === TcpState.CloseWait && closeOnce(c)) acted = true;
  } else if (c.localPort === DOWNLOAD_PORT) {
    for (let i = 0; i < 64 && t.writePosition < downloadBytes && t.writable > 0; i++) {
      const chunk = new Uint8Array(Math.min(downloadBytes - t.writePosition, t.writable, 32768));
      fillPattern(DOWNLOAD_STREAM, t.writePosition, chunk);
      t.write(chunk);
      acted = true;
    }
    if (
      t.writePosition >= downloadBytes &&
      (t.state === TcpState.Established || t.state === TcpState.CloseWait) &&
      closeOnce(c)
    )
      acted = true;
    for (let d = t.read(); d; d = t.read()) acted = true; // the client sends nothing; drain anyway
  } else if (c.localPort === RR_PORT) {
    for (let i = 0; i < 64 && t.readable >= REQUEST_BYTES && t.writable >= RESPONSE_BYTES; i++) {
      t.write(responseFor(t.read(REQUEST_BYTES)!));
      acted = true;
    }
    if (t.eof && t.state === TcpState.CloseWait && closeOnce(c)) acted = true;
  }
  return acted;
}

export interface HaSimOptions {
  nodeId: string;
  role: 'active' | 'standby';
  /** Its own MAC is unused: both nodes speak with the virtual MAC, one at a time. */
  stack?: Partial<StackConfig>;
  ha?: Partial<HaNodeOptions>;
  downloadBytes?: number;
  /**
   * The standby listens (README "Standby listens"): frames leave with the node's own source MAC
   * (`nodeMac`), so the switch never learns the virtual MAC and floods what clients send to it
   * to both nodes; the muted standby overhears it (HaNode.snoop).
   */
  snoop?: boolean;
  /** Send and hear beacons on the data link (default true; the key is the simulator's). */
  beacons?: boolean;
  /**
   * The arbiter this node asks (each node its own `MemoryArbiter` on one shared `ArbiterStore`,
   * so that each path has its own faults): a call applies half `arbiterLatencyUs` after it is
   * made, its answer arrives the other half later (a timeout: `timeoutMs` after the call).
   */
  arbiter?: MemoryArbiter;
  arbiterLatencyUs?: number;
}

/** The simulated pair's beacon key (a fixed PSK: the simulator is not a place for secrets). */
export const SIM_BEACON_KEY = beaconKey(new TextEncoder().encode('takeover simulator psk'));

export class HaSimNode implements SimNode {
  handle!: NodeHandle;
  stack!: NetStack;
  ha!: HaNode;
  gate!: GatedDevice;
  /** Frames sent on the data link (the VIP's frames). */
  framesSent = 0;
  /** Frames sent while this node was not active (must stay 0: I4). */
  framesWhileNotActive = 0;
  /** When this node last put a frame for the VIP on the wire (µs; -1: never). */
  lastFrameAt = -1;
  /**
   * Paused (SIGSTOP, a VM freeze): it runs nothing; frames for it are lost (a TAP's queue is
   * short), while what its replication link carries waits for it, as in a kernel's socket
   * buffers, and is read first when it resumes (before its timers, as the real driver does).
   */
  paused = false;
  private backlog: ((now: number) => void)[] = [];
  readonly logs: string[] = [];
  /** The events among them (src/log.ts), with the virtual time (µs). */
  readonly events: (LogEvent & { at: number })[] = [];
  link: SimPipeEnd | undefined;

  constructor(readonly opts: HaSimOptions) {}

  attach(h: NodeHandle): void {
    this.handle = h;
    this.paused = false;
    this.backlog = [];
    const cfg: StackConfig = {
      mac: VIP_MAC,
      addresses: [cidrFromString(`${VIP4}/24`)!, cidrFromString(`${VIP6}/64`)!],
      ...this.opts.stack,
    };
    const wire: LinkDevice = {
      mtu: cfg.mtu ?? 1500,
      send: (f) => {
        this.framesSent++;
        this.lastFrameAt = h.now;
        if (this.ha.role !== 'active') this.framesWhileNotActive++;
        h.send(0, f);
      },
      flush: () => {},
      onReceive: () => {},
      close: async () => {},
    };
    this.gate = new GatedDevice(wire, () => h.now);
    if (this.opts.snoop) this.gate.sourceMac = nodeMac(this.opts.nodeId);
    this.stack = new NetStack(cfg, h.rng, (f) => this.gate.send(f), h.now);
    for (const port of [ECHO_PORT, DOWNLOAD_PORT, RR_PORT]) this.stack.listen(port, { onAccept: () => {} });
    const driver: HaDriver = {
      setMuted: (m) => this.gate.setMuted(m),
      setLease: (until) => this.gate.setLease(until),
      sendBeacon: (f) => h.send(0, f),
      wake: () => h.wake(),
      restored: () => {},
      log: (line, fields) => {
        this.logs.push(`${(h.now / 1000).toFixed(1)} ms ${this.opts.nodeId}: ${line}`);
        if (fields) this.events.push({ ...fields, at: h.now });
      },
    };
    const arb = this.opts.arbiter;
    if (arb) driver.arbitrate = (intent) => this.arbitrate(arb, intent);
    const nonce = new Uint8Array(8);
    for (let i = 0; i < 8; i++) nonce[i] = h.rng.nextU32() & 0xff;
    this.ha = new HaNode(
      {
        nodeId: this.opts.nodeId,
        role: this.opts.role,
        beaconKey: this.opts.beacons === false ? undefined : SIM_BEACON_KEY,
        nonce,
        dataLinkProof: this.opts.snoop ?? false,
        ...this.opts.ha,
      },
      this.stack,
      driver,
      h.now,
    );
  }

  /** One intent: applied at the store half a round trip on, answered the other half later. */
  private arbitrate(arb: MemoryArbiter, intent: ArbiterIntent): void {
    const h = this.handle;
    const ha = this.ha;
    const half = (this.opts.arbiterLatencyUs ?? 1000) / 2;
    const sent = h.now;
    h.net.after(half, () => {
      const v = arbitrateNow(arb, intent);
      const answerAt =
        v.kind === 'unavailable' && v.error.kind === 'timeout' ? sent + arb.timeoutMs * 1000 : h.now + half;
      h.net.after(Math.max(0, answerAt - h.now), (now) => {
        // A crashed node's request may have reached the store; its answer reaches no one.
        if (!h.alive || this.ha !== ha) return;
        this.deliver(now, (t) => {
          ha.arbiterVerdict(intent, v, t);
          this.turn(t);
        });
      });
    });
  }

  get muted(): boolean {
    return this.gate.muted;
  }

  pause(): void {
    this.paused = true;
  }

  resume(now: number): void {
    this.paused = false;
    for (const f of this.backlog.splice(0)) f(now);
    this.poll(now);
    this.handle.wake();
  }

  /** Something from the replication link: now, or when the node resumes. */
  deliver(now: number, f: (now: number) => void): void {
    if (this.paused) this.backlog.push(f);
    else f(now);
  }

  receive(_port: number, frame: Uint8Array, now: number): void {
    if (this.paused) return;
    if (isBeaconFrame(frame)) {
      this.ha.beacon(frame, now);
      this.turn(now);
      return;
    }
    this.ha.heard(now);
    if (!this.muted) this.stack.receive(frame, now);
    else if (this.opts.snoop) this.ha.snoop(frame, now);
    this.turn(now);
  }

  poll(now: number): void {
    if (this.paused) return;
    this.ha.poll(now);
    this.turn(now);
  }

  pollAt(): number | undefined {
    if (this.paused) return undefined;
    const a = this.stack.pollAt();
    const h = this.ha.pollAt();
    const b = h === Number.POSITIVE_INFINITY ? undefined : h;
    if (a === undefined) return b;
    return b === undefined || a < b ? a : b;
  }

  /** One driver turn: stack and application until quiet (bounded), then the batch. */
  turn(now: number): void {
    if (this.paused) return;
    const dl = this.opts.downloadBytes ?? 0;
    for (let i = 0; i < 100; i++) {
      this.stack.poll(now);
      const ev = this.stack.takeEvents();
      if (ev.changed.length === 0 && ev.accepted.length === 0) break;
      for (const { c } of ev.accepted) if (serveConnection(c, dl)) this.stack.touch(c);
      for (const c of ev.changed) if (!c.removed && serveConnection(c, dl)) this.stack.touch(c);
    }
    this.ha.afterTurn(now);
  }
}

/** A node at one end of a simulated replication link (HaSimNode, or a node on a Runtime). */
export interface PipeHost {
  readonly handle: NodeHandle;
  readonly ha: HaNode;
  link: SimPipeEnd | undefined;
  /** Runs `f` now, or when the node resumes from a pause. */
  deliver(now: number, f: (now: number) => void): void;
  /** The node's turn after a message (its stack, application and replication batch). */
  turn(now: number): void;
}

/** One end of the simulated replication link. */
export class SimPipeEnd implements PeerLink {
  closed = false;
  peer!: SimPipeEnd;
  constructor(
    readonly owner: PipeHost,
    private readonly latencyUs: number,
  ) {}

  send(type: number, epoch: number, payload: Uint8Array): void {
    if (this.closed || !this.owner.handle.alive) return;
    const copy = payload.slice();
    const peer = this.peer;
    this.owner.handle.net.after(this.latencyUs, (now) =>
      peer.owner.deliver(now, (t) => {
        if (peer.closed || !peer.owner.handle.alive) return;
        peer.owner.ha.message(type, epoch, copy, t);
        peer.owner.turn(t);
      }),
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const peer = this.peer;
    this.owner.handle.net.after(this.latencyUs, (now) =>
      peer.owner.deliver(now, (t) => {
        if (peer.closed) return;
        peer.closed = true;
        if (peer.owner.handle.alive) peer.owner.ha.linkClosed(peer, t);
      }),
    );
  }
}

/** Opens a replication link between two HA nodes (both see it open at once). */
export function linkNodes(a: PipeHost, b: PipeHost, latencyUs: number, now: number): void {
  const ea = new SimPipeEnd(a, latencyUs);
  const eb = new SimPipeEnd(b, latencyUs);
  ea.peer = eb;
  eb.peer = ea;
  a.link = ea;
  b.link = eb;
  a.ha.linkOpened(ea, now);
  b.ha.linkOpened(eb, now);
}

/** Kill -9 of an HA node: it stops at once; its replication link closes for the peer. */
export function crashNode(n: PipeHost): void {
  n.handle.crash();
  const l = n.link;
  if (l && !l.closed) {
    l.closed = true;
    const peer = l.peer;
    n.handle.net.after(200, (now) => {
      if (peer.closed) return;
      peer.closed = true;
      if (peer.owner.handle.alive) peer.owner.ha.linkClosed(peer, now);
    });
  }
}
