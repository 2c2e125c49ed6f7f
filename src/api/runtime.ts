/**
 * The real-time driver (docs/ARCHITECTURE.md §2 "Time is passed in"): it turns the outside world into calls on
 * the stack. Frames from the device go to `receive`, the stack's `pollAt` becomes one event-loop
 * timer, and between stack turns it runs the application's callbacks (sockets and servers), so
 * the stack is never re-entered from inside itself. Each callback runs for its connection under
 * `isolation` (isolation.ts): what it throws resets that connection, never the turn; what
 * escapes the turn itself is the runtime's own fault and is marked so (`markInternal`).
 */
import { randomBytes } from 'node:crypto';
import type { LinkDevice } from '../link/device.ts';
import { type Listener, NetStack, type StackConfig, type StackConnection } from '../stack/stack.ts';
import type { RandomSource } from '../tcp/connection.ts';
import { TcpState } from '../tcp/state.ts';
import { Isolation, markInternal } from './isolation.ts';

/** Unpredictable 32-bit values (RFC 6528 ISNs) from the OS, drawn in blocks. */
export class CryptoRandom implements RandomSource {
  private block: Uint32Array = new Uint32Array(0);
  private i = 0;
  nextU32(): number {
    if (this.i >= this.block.length) {
      const b = randomBytes(1024);
      this.block = new Uint32Array(b.buffer, b.byteOffset, 256);
      this.i = 0;
    }
    return this.block[this.i++];
  }
}

/** Monotonic microseconds. */
export function monotonicUs(): number {
  return Math.floor(performance.now() * 1000);
}

/** A timer of a `Clock` (opaque; a real one may be `unref`ed). */
export type ClockTimer = object & { unref?(): unknown };

/**
 * Time as the runtime and the applications on it see it: the monotonic clock and Node's timers
 * (`realClock`), or a simulator's virtual time, so that the same application code (the relay)
 * runs on the simulated network. Callbacks run outside any connection's scope.
 */
export interface Clock {
  /** Monotonic microseconds. */
  now(): number;
  setTimeout(cb: () => void, ms: number): ClockTimer;
  clearTimeout(t: ClockTimer | undefined): void;
  /** After the current turn's I/O (Node's check phase); simulated: later at the same instant. */
  setImmediate(cb: () => void): ClockTimer;
  clearImmediate(t: ClockTimer | undefined): void;
}

/** The process's own time. */
export const realClock: Clock = {
  now: monotonicUs,
  setTimeout: (cb, ms) => setTimeout(cb, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout | undefined),
  setImmediate: (cb) => setImmediate(cb),
  clearImmediate: (t) => clearImmediate(t as NodeJS.Immediate | undefined),
};

export interface ConnectionHooks {
  /** The connection changed (data, window, state): called between stack turns. */
  onChange(c: StackConnection): void;
}

/**
 * A layer that runs once per turn (replication, src/ha): polled at its own deadlines, and called
 * after each turn once the application's synchronous work and its microtasks are done, so
 * everything the turn did is seen at once (docs/ARCHITECTURE.md §2 "A tick is a transaction").
 */
export interface TurnHook {
  pollAt(): number | undefined;
  poll(now: number): void;
  afterTurn(now: number): void;
}

export class Runtime {
  readonly stack: NetStack;
  private hook: TurnHook | undefined;
  private afterTurnQueued = false;
  private lastAfterTurnAt = 0;
  private hookPollQueued = false;
  /** Set by the HA layer: replicates a socket's checkpoint (or, with `tag`, its restore tag). */
  checkpointSink: ((c: StackConnection, value: unknown, tag?: boolean) => void) | undefined;
  /**
   * Restored connections no listener claims (ones this node's application opened: a relay's
   * server legs), for the application (`NetApi.onRestored`); without it they are left alone.
   */
  restoredOutbound: ((c: StackConnection) => void) | undefined;
  private timer: ClockTimer | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private immediate: ClockTimer | undefined;
  private readonly acceptors = new Map<Listener, (c: StackConnection) => void>();
  private closed = false;
  /** The application's failures, per connection: counted, never the process's. */
  readonly isolation: Isolation;
  /** Turns that ran the application more than this many times in a row are cut short (a bound). */
  static readonly MAX_ROUNDS = 64;
  /** Longest wait (µs) of the hook's turn work behind a starved check phase. */
  static readonly AFTER_TURN_MAX_WAIT_US = 5_000;

  constructor(
    readonly device: LinkDevice,
    config: StackConfig,
    rng: RandomSource = new CryptoRandom(),
    readonly clock: Clock = realClock,
  ) {
    // A link that segments TCP itself (a TAP with offload) gets 64 KiB frames unless the config says no.
    this.stack = new NetStack(
      { gsoMaxFrame: device.gsoMaxFrame ?? 0, ...config },
      rng,
      (f, segmentSize) => device.send(f, segmentSize),
      clock.now(),
    );
    this.isolation = new Isolation((c) => {
      c.tcp.abort();
      this.stack.touch(c);
      this.kick();
    });
    device.onReceive((frames) => {
      if (this.closed) return;
      const now = clock.now();
      try {
        for (const f of frames) this.stack.receive(f, now);
      } catch (e) {
        throw markInternal(e);
      }
      this.service();
    });
  }

  now(): number {
    return this.clock.now();
  }

  /** Schedules a stack turn soon (coalesced): after the application changed something. */
  kick(): void {
    if (this.immediate || this.closed) return;
    // Often called from an application's callback: the turn it schedules is no connection's.
    this.immediate = this.isolation.outside(() =>
      this.clock.setImmediate(() => {
        this.immediate = undefined;
        this.service();
      }),
    );
  }

  /** Registers the accept callback of a listener (the stack hands accepted connections here). */
  listen(
    port: number,
    address: StackConnection['local'] | undefined,
    backlog: number,
    onAccept: (c: StackConnection) => void,
  ): Listener {
    const l = this.stack.listen(port, { address, backlog, onAccept: () => {} });
    this.acceptors.set(l, onAccept);
    return l;
  }

  unlisten(l: Listener): void {
    this.acceptors.delete(l);
    this.stack.closeListener(l);
  }

  /** Installs the per-turn layer (one at most). */
  setHook(h: TurnHook | undefined): void {
    this.hook = h;
    this.kick();
  }

  /**
   * Connections restored by a take-over: each goes to the application as a new connection of
   * the server listening on its port (the socket says `restored`). Those with no listener run
   * without an application.
   */
  /**
   * Runs the stack's timers and sends what they produce now, without the application's turn:
   * after a take-over, the restored connections' kick-start retransmissions and the VIP's
   * announcement leave before the application adopts them (which takes a while for many), and
   * the events they raise wait for the next turn.
   */
  flushOutput(): { pollMs: number; writeMs: number } {
    if (this.closed) return { pollMs: 0, writeMs: 0 };
    const t0 = performance.now();
    this.stack.poll(this.clock.now());
    const t1 = performance.now();
    this.device.flush();
    return { pollMs: t1 - t0, writeMs: performance.now() - t1 };
  }

  adoptRestored(conns: StackConnection[]): void {
    for (const c of conns) {
      const l = this.stack.listenerFor(c.local, c.localPort);
      // Still in its handshake: the stack hands it to the listener when it completes, as any.
      if (l && c.tcp.state === TcpState.SynReceived) continue;
      const accept = l ? this.acceptors.get(l) : undefined;
      // A poison pill (a request that made the old node's application throw) throws here
      // again: that connection is dropped (isolation.restoredDropped), the take-over goes on.
      if (accept) this.isolation.run(c, () => accept(c));
      else if (this.restoredOutbound) {
        const take = this.restoredOutbound;
        this.isolation.run(c, () => take(c));
      }
    }
    this.kick();
  }

  /** One turn: stack, then application callbacks, until quiet (bounded); then the next timer. */
  service(): void {
    if (this.closed) return;
    try {
      this.turn();
    } catch (e) {
      throw markInternal(e);
    }
  }

  private turn(): void {
    const hook = this.hook;
    if (hook && !this.hookPollQueued) {
      const at = hook.pollAt();
      if (at !== undefined && at <= this.clock.now()) {
        // In the check phase, after this loop iteration's I/O: a failure detector must not judge
        // silence while the peer's messages wait unread behind a busy turn.
        this.hookPollQueued = true;
        this.isolation.outside(() =>
          this.clock.setImmediate(() => {
            this.hookPollQueued = false;
            if (this.closed) return;
            try {
              this.hook?.poll(this.clock.now());
            } catch (e) {
              throw markInternal(e);
            }
            this.service();
          }),
        );
      }
    }
    for (let round = 0; round < Runtime.MAX_ROUNDS; round++) {
      const now = this.clock.now();
      this.stack.poll(now);
      const ev = this.stack.takeEvents();
      if (ev.changed.length === 0 && ev.accepted.length === 0) break;
      for (const { l, c } of ev.accepted) {
        const accept = this.acceptors.get(l);
        if (accept) this.isolation.run(c, () => accept(c));
      }
      for (const c of ev.changed) {
        const changed = c.onChange;
        if (changed) this.isolation.run(c, changed);
      }
    }
    this.device.flush();
    if (hook && !this.afterTurnQueued) {
      // After this turn's nextTicks and promise jobs (stream callbacks write there), before I/O.
      this.afterTurnQueued = true;
      this.isolation.outside(() =>
        this.clock.setImmediate(() => {
          this.afterTurnQueued = false;
          if (this.closed) return;
          this.lastAfterTurnAt = this.clock.now();
          try {
            this.hook?.afterTurn(this.lastAfterTurnAt);
            this.arm();
          } catch (e) {
            throw markInternal(e);
          }
        }),
      );
    } else if (hook) {
      // A flood of frames can keep the event loop in its poll phase, and the check phase (where
      // the queued call waits) starved, for hundreds of milliseconds: measured after a take-over
      // under load. The hook's turn work (the replication batch) must not wait that long; what
      // nextTicks write later goes in the next batch.
      const now = this.clock.now();
      if (now - this.lastAfterTurnAt > Runtime.AFTER_TURN_MAX_WAIT_US) {
        this.lastAfterTurnAt = now;
        hook.afterTurn(now);
      }
    }
    this.arm();
  }

  private arm(): void {
    const s = this.stack.pollAt();
    const h = this.hook?.pollAt();
    const at = h === undefined || (s !== undefined && s < h) ? s : h;
    if (at === undefined) {
      if (this.timer) this.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      return;
    }
    const now = this.clock.now();
    if (at <= now) {
      this.kick();
      return;
    }
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.isolation.outside(() =>
      this.clock.setTimeout(
        () => {
          this.timer = undefined;
          this.timerAt = Number.POSITIVE_INFINITY;
          this.service();
        },
        Math.max(0, Math.ceil((at - now) / 1000)),
      ),
    );
  }

  /** Sends gratuitous ARP / unsolicited NA for every address. */
  announce(): void {
    this.stack.announce();
    this.device.flush();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    if (this.immediate) this.clock.clearImmediate(this.immediate);
    await this.device.close();
  }
}
