/**
 * The deterministic discrete-event network: a virtual clock (µs), one event queue, nodes and the
 * links between their ports. Nothing here reads the wall clock or `Math.random`: the same seed
 * and the same scenario give the same events in the same order, frame for frame.
 *
 * Driving nodes: after every call into a node (`receive`, `poll`, `attach`, or `wake()` after the
 * caller changed it from outside) the network asks `pollAt()`. It keeps at most one armed poll
 * event per node; an earlier answer arms a new one and the older becomes stale (a generation
 * counter), a later answer keeps the armed one, which re-asks `pollAt()` when it fires and only
 * calls `poll(now)` once that instant has come. So `poll` runs exactly at the time asked, never
 * before.
 */
import type { PcapWriter } from '../pcap.ts';
import { type CaptureAt, Link, type LinkDirection, type LinkOptions } from './link.ts';
import type { SimNode } from './node.ts';
import { EV_CALL, EV_DELIVER, EV_LINK_STATE, EV_POLL, EventQueue } from './queue.ts';
import { Rng } from './rng.ts';

export interface NetworkOptions {
  /** Seed of every random stream in the network. Default 1. */
  seed?: number;
}

export interface RunOptions {
  /** Run events up to and including this virtual time, then set the clock to it. */
  until?: number;
  /** Stop after this many events. Default 10 million. */
  maxEvents?: number;
}

export interface RunResult {
  /** 'idle': no events left; 'until': the next event is after `until`; 'maxEvents': the budget ran out. */
  reason: 'idle' | 'until' | 'maxEvents';
  /** Events processed by this call. */
  events: number;
  now: number;
}

const DEFAULT_MAX_EVENTS = 10_000_000;

/** A port of a node, for code that prefers `handle.port(1).send(frame)`. */
export interface PortHandle {
  readonly index: number;
  send(frame: Uint8Array): void;
  readonly connected: boolean;
}

/** A node as the network sees it, and the node's way to transmit. */
export class NodeHandle<T extends SimNode = SimNode> {
  /** This node's own random stream (derived from the network seed and the node's name). */
  readonly rng: Rng;
  /** False after `crash()`: the node gets no calls, its frames are not sent, frames to it are dropped. */
  alive = true;
  /** Frames the node sent on a port with no link. */
  txUnconnected = 0;
  /** Frames sent through the handle while crashed. */
  txWhileDown = 0;
  /** @internal outbound direction per port. */
  readonly out: (LinkDirection | undefined)[] = [];
  /** @internal generation of the armed poll event. */
  pollGen = 0;
  /** @internal time of the armed poll event, if any. */
  armedAt: number | undefined = undefined;
  private readonly portHandles: PortHandle[] = [];

  constructor(
    readonly net: Network,
    readonly name: string,
    public node: T,
  ) {
    this.rng = net.rng.derive(`node:${name}`);
  }

  /** The network's current virtual time, µs. */
  get now(): number {
    return this.net.now;
  }

  /** Transmits a copy of `frame` on `port` (counted and dropped when the port has no link). */
  send(port: number, frame: Uint8Array): void {
    if (!this.alive) {
      this.txWhileDown++;
      return;
    }
    const d = this.out[port];
    if (d === undefined) {
      this.txUnconnected++;
      return;
    }
    d.send(frame);
  }

  isConnected(port: number): boolean {
    return this.out[port] !== undefined;
  }

  /** Number of port slots (highest connected port + 1). */
  get portCount(): number {
    return this.out.length;
  }

  port(index: number): PortHandle {
    let p = this.portHandles[index];
    if (p === undefined) {
      const h = this;
      p = {
        index,
        send(frame: Uint8Array): void {
          h.send(index, frame);
        },
        get connected(): boolean {
          return h.out[index] !== undefined;
        },
      };
      this.portHandles[index] = p;
    }
    return p;
  }

  /** Re-asks `pollAt()`: call after changing the node from outside a network call. */
  wake(): void {
    this.net.refresh(this);
  }

  /** Kill -9: from now on the node is not called, sends nothing and receives nothing. */
  crash(): void {
    this.alive = false;
    this.pollGen++;
    this.armedAt = undefined;
  }

  /** Brings a crashed node back, optionally as a fresh node object on the same ports. */
  restart(node?: T): void {
    if (node !== undefined) this.node = node;
    this.alive = true;
    this.pollGen++;
    this.armedAt = undefined;
    if (node !== undefined) node.attach?.(this as unknown as NodeHandle);
    this.net.refresh(this);
  }
}

export class Network {
  readonly seed: number;
  /** The root random stream; prefer `rngFor(label)` so streams stay independent. */
  readonly rng: Rng;
  /** @internal */
  readonly queue = new EventQueue();
  private _now = 0;
  private _events = 0;
  private running = false;
  private readonly nodes: NodeHandle[] = [];
  private readonly nodeNames = new Set<string>();
  private readonly links: Link[] = [];
  private readonly linkNames = new Set<string>();

  constructor(opts: NetworkOptions = {}) {
    this.seed = opts.seed ?? 1;
    this.rng = new Rng(this.seed);
  }

  /** Virtual time, µs. */
  get now(): number {
    return this._now;
  }

  /** Events processed since the network was created. */
  get eventsProcessed(): number {
    return this._events;
  }

  /** Events waiting (stale poll events included). */
  get pendingEvents(): number {
    return this.queue.size;
  }

  /** An independent random stream for `label` (same seed + label = same stream). */
  rngFor(label: string): Rng {
    return this.rng.derive(`user:${label}`);
  }

  /** Adds a node under a unique name and calls its `attach(handle)` if it has one. */
  attach<T extends SimNode>(node: T, name?: string): NodeHandle<T> {
    const n = name ?? `node${this.nodes.length}`;
    if (this.nodeNames.has(n)) throw new Error(`a node named ${n} is already attached; pick another name.`);
    const h = new NodeHandle<T>(this, n, node);
    this.nodeNames.add(n);
    this.nodes.push(h as unknown as NodeHandle);
    node.attach?.(h as unknown as NodeHandle);
    this.refresh(h as unknown as NodeHandle);
    return h;
  }

  /** Connects port `aPort` of `a` to port `bPort` of `b` with a full-duplex link. */
  connect(a: NodeHandle, aPort: number, b: NodeHandle, bPort: number, opts: LinkOptions = {}): Link {
    for (const [h, p] of [
      [a, aPort],
      [b, bPort],
    ] as const) {
      if (h.net !== this) throw new Error(`node ${h.name} belongs to another network.`);
      if (!(Number.isInteger(p) && p >= 0)) throw new Error(`port numbers are integers >= 0, got ${p}.`);
      if (h.out[p] !== undefined) throw new Error(`port ${p} of node ${h.name} already has a link.`);
    }
    if (a === b && aPort === bPort) throw new Error('a link needs two distinct ports.');
    const name = opts.name ?? `${a.name}.${aPort}-${b.name}.${bPort}`;
    if (this.linkNames.has(name)) throw new Error(`a link named ${name} already exists; pick another name.`);
    const link = new Link(this, name, a, aPort, b, bPort, opts, this.rng.derive(`link:${name}`));
    this.linkNames.add(name);
    this.links.push(link);
    while (a.out.length <= aPort) a.out.push(undefined);
    while (b.out.length <= bPort) b.out.push(undefined);
    a.out[aPort] = link.ab;
    b.out[bPort] = link.ba;
    return link;
  }

  /** Records both directions of `link` into `writer` (see LinkOptions.captureAt). */
  capture(link: Link, writer: PcapWriter, at: CaptureAt = 'deliver'): void {
    link.capture(writer, at);
  }

  /** Runs `fn(now)` at virtual time `time` (or now, if `time` is past); then re-asks every node's pollAt. */
  at(time: number, fn: (now: number) => void): void {
    if (Number.isNaN(time)) throw new Error('Network.at: the time is NaN.');
    this.queue.push(time > this._now ? time : this._now, EV_CALL, fn, null, 0);
  }

  /** Runs `fn(now)` `delayUs` from now. */
  after(delayUs: number, fn: (now: number) => void): void {
    this.at(this._now + delayUs, fn);
  }

  /** Processes events in (time, insertion) order until idle, `until`, or `maxEvents`. */
  run(opts: RunOptions = {}): RunResult {
    if (this.running) throw new Error('Network.run called from inside the simulation (a node or callback).');
    const until = opts.until;
    const maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    const q = this.queue;
    let count = 0;
    let reason: RunResult['reason'] = 'idle';
    this.running = true;
    try {
      for (;;) {
        const t = q.peekTime();
        if (t === undefined) break;
        if (until !== undefined && t > until) {
          reason = 'until';
          break;
        }
        if (count >= maxEvents) {
          reason = 'maxEvents';
          break;
        }
        const ev = q.pop()!;
        this._now = ev.time;
        count++;
        switch (ev.kind) {
          case EV_DELIVER:
            (ev.target as LinkDirection).arrive(ev.frame!, ev.time);
            break;
          case EV_POLL:
            this.firePoll(ev.target as NodeHandle, ev.n);
            break;
          case EV_LINK_STATE:
            (ev.target as LinkDirection).setUp(ev.n === 1);
            break;
          case EV_CALL:
            (ev.target as (now: number) => void)(this._now);
            for (const h of this.nodes) this.refresh(h);
            break;
        }
        q.release(ev);
      }
    } finally {
      this.running = false;
      this._events += count;
    }
    if (until !== undefined && reason !== 'maxEvents' && until > this._now) this._now = until;
    return { reason, events: count, now: this._now };
  }

  /** Runs until no event is left; throws if that takes more than `maxEvents` events. */
  runUntilIdle(maxEvents: number = DEFAULT_MAX_EVENTS): RunResult {
    const r = this.run({ maxEvents });
    if (r.reason !== 'idle')
      throw new Error(
        `the simulation did not go idle within ${maxEvents} events (virtual time ${this._now} µs); ` +
          'a node keeps a timer armed or frames circulate: use run({ until }) instead.',
      );
    return r;
  }

  /** @internal hands a frame to a node and re-asks its pollAt. */
  deliver(h: NodeHandle, port: number, frame: Uint8Array): void {
    h.node.receive(port, frame, this._now);
    this.refresh(h);
  }

  private firePoll(h: NodeHandle, gen: number): void {
    if (!h.alive || gen !== h.pollGen) return; // stale
    h.armedAt = undefined;
    const node = h.node;
    const t = node.pollAt?.();
    if (t === undefined) return;
    if (t > this._now) {
      this.arm(h, t);
      return;
    }
    node.poll?.(this._now);
    this.refresh(h);
  }

  private arm(h: NodeHandle, t: number): void {
    h.pollGen++;
    h.armedAt = t;
    this.queue.push(t > this._now ? t : this._now, EV_POLL, h, null, h.pollGen);
  }

  /** @internal asks `h`'s pollAt and arms a poll event if it wants one earlier than the armed one. */
  refresh(h: NodeHandle): void {
    if (!h.alive) return;
    const t = h.node.pollAt?.();
    if (t === undefined) return;
    if (Number.isNaN(t)) throw new Error(`node ${h.name} answered pollAt() with NaN.`);
    if (h.armedAt === undefined || t < h.armedAt) this.arm(h, t);
  }
}
