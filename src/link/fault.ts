/**
 * A fault injector wrapped around any LinkDevice (smoltcp's `phy::FaultInjector`): loss,
 * duplication, reordering, fixed delay and corruption, set separately for frames going out
 * (`tx`) and coming in (`rx`). Real networks in `test/netns` have no netem qdisc on this kernel,
 * so this is how a test imposes "loss 2 % + reorder 25 % + delay 10 ms" on a TAP-backed stack:
 *
 * ```ts
 * const dev = new FaultInjector(tap, {
 *   rng: new Rng(seed),
 *   loss: 0.02, reorder: 0.25, reorderDelayMs: [1, 20], delayMs: 10, // both directions
 *   rx: { corrupt: 0.001 },                                        // and a little more inbound
 * });
 * ```
 *
 * The model of one direction, for each frame:
 * 1. Loss: dropped with probability `loss` (`lost`).
 * 2. Duplication: with probability `duplicate` a second copy follows the first (`duplicated`).
 * 3. For each copy, independently: corruption (one random bit flipped, `corrupted`) and
 *    reordering (an extra delay drawn in `reorderDelayMs`, `reordered`).
 * 4. Delivery after `delayMs` (+ the reorder delay). A frame with no delay passes at once; a
 *    delayed one waits on a real timer (this is a driver, the edge where wall-clock time is
 *    allowed). Equal delays keep the order frames came in.
 *
 * A random number is drawn only for a fault whose probability is above zero, from the `rng` of
 * the direction (default: the shared one), in the order of the list above.
 *
 * Ownership follows LinkDevice: frames sent are copied before any fault touches them; frames
 * received are owned by the receiver, and every duplicate is a copy of its own. `close()` cancels
 * every pending timer (those frames count as `cancelled`) before closing the inner device.
 */
import type { LinkDevice } from './device.ts';

/** A source of uniform numbers in [0, 1), e.g. `Rng` from `link/sim`. */
export interface RandomSource {
  next(): number;
}

/** The faults of one direction. Probabilities are in [0, 1]; times in milliseconds. */
export interface FaultSettings {
  /** Probability a frame is dropped. Default 0. */
  loss?: number;
  /** Probability a frame is delivered twice. Default 0. */
  duplicate?: number;
  /** Probability a copy is held back by an extra delay, so that later frames overtake it. Default 0. */
  reorder?: number;
  /** Range of the extra delay of a reordered copy, whole ms, both inclusive. Default [1, 20]. */
  reorderDelayMs?: readonly [number, number];
  /** Delay of every frame, ms. Default 0 (no timer: frames pass in the same turn). */
  delayMs?: number;
  /** Probability a copy has one random bit flipped. Default 0. */
  corrupt?: number;
  /** Random source of this direction. Default: the injector's `rng`. */
  rng?: RandomSource;
}

export interface FaultInjectorOptions extends FaultSettings {
  /** Random source for every decision (unless a direction brings its own). */
  rng: RandomSource;
  /** Faults of frames the stack sends; each field overrides the shared one above. */
  tx?: FaultSettings;
  /** Faults of frames the stack receives; each field overrides the shared one above. */
  rx?: FaultSettings;
}

/** What one direction did, frame by frame. */
export interface FaultCounters {
  /** Frames that entered the direction. */
  frames: number;
  /** Copies handed on (to the inner device for tx, to the receiver for rx). */
  delivered: number;
  lost: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
  /** Copies that waited on a timer (delayed or reordered). */
  delayed: number;
  /** Delayed copies dropped by `close()`. */
  cancelled: number;
}

interface Direction {
  loss: number;
  duplicate: number;
  reorder: number;
  reorderMin: number;
  reorderMax: number;
  delayMs: number;
  corrupt: number;
  rng: RandomSource;
  readonly counters: FaultCounters;
}

const SETTING_KEYS = ['loss', 'duplicate', 'reorder', 'reorderDelayMs', 'delayMs', 'corrupt', 'rng'] as const;

function probability(name: string, v: number | undefined): number {
  if (v === undefined) return 0;
  if (!(v >= 0 && v <= 1))
    throw new Error(`FaultInjector: ${name} is a probability between 0 and 1, got ${v}.`);
  return v;
}

function milliseconds(name: string, v: number | undefined, dflt: number, whole = false): number {
  if (v === undefined) return dflt;
  if (!(Number.isFinite(v) && v >= 0 && (!whole || Number.isInteger(v))))
    throw new Error(
      `FaultInjector: ${name} is a non-negative ${whole ? 'whole ' : ''}number of milliseconds, got ${v}.`,
    );
  return v;
}

function counters(): FaultCounters {
  return {
    frames: 0,
    delivered: 0,
    lost: 0,
    duplicated: 0,
    reordered: 0,
    corrupted: 0,
    delayed: 0,
    cancelled: 0,
  };
}

/** `base` with `over`'s defined fields on top. */
function merged(base: FaultSettings, over: FaultSettings | undefined): FaultSettings {
  const out: FaultSettings = {};
  for (const k of SETTING_KEYS) {
    const v = over?.[k] !== undefined ? over[k] : base[k];
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

export class FaultInjector implements LinkDevice {
  readonly mtu: number;
  private readonly tx: Direction;
  private readonly rx: Direction;
  private handler: ((frames: Uint8Array[]) => void) | undefined;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  /** Copies waiting on a timer, per direction (what `close()` counts as cancelled). */
  private readonly pendingBy = new Map<Direction, number>();
  private closed = false;

  constructor(
    private readonly inner: LinkDevice,
    options: FaultInjectorOptions,
  ) {
    this.mtu = inner.mtu;
    this.tx = {
      ...FaultInjector.direction('tx', merged(options, options.tx), options.rng),
      counters: counters(),
    };
    this.rx = {
      ...FaultInjector.direction('rx', merged(options, options.rx), options.rng),
      counters: counters(),
    };
    inner.onReceive((frames) => this.received(frames));
  }

  /** Counters of the frames the stack sent (`tx`) and received (`rx`). Live objects. */
  get stats(): { readonly tx: Readonly<FaultCounters>; readonly rx: Readonly<FaultCounters> } {
    return { tx: this.tx.counters, rx: this.rx.counters };
  }

  /** Copies waiting on a timer, both directions. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Changes the faults from now on (frames already delayed keep their time). Fields given at the
   * top apply to both directions, `tx`/`rx` fields to one; fields not given keep their value.
   */
  configure(settings: FaultSettings & { tx?: FaultSettings; rx?: FaultSettings }): void {
    for (const [name, dir] of [
      ['tx', this.tx],
      ['rx', this.rx],
    ] as const) {
      const current: FaultSettings = {
        loss: dir.loss,
        duplicate: dir.duplicate,
        reorder: dir.reorder,
        reorderDelayMs: [dir.reorderMin, dir.reorderMax],
        delayMs: dir.delayMs,
        corrupt: dir.corrupt,
        rng: dir.rng,
      };
      const next = merged(merged(current, settings), settings[name]);
      Object.assign(dir, FaultInjector.direction(name, next, dir.rng));
    }
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    this.pass(this.tx, frame.slice(), (copies) => {
      for (const f of copies) this.inner.send(f);
    });
  }

  flush(): void {
    if (!this.closed) this.inner.flush();
  }

  onReceive(handler: (frames: Uint8Array[]) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    for (const [d, n] of this.pendingBy) d.counters.cancelled += n;
    this.timers.clear();
    this.pendingBy.clear();
    this.handler = undefined;
    await this.inner.close();
  }

  private received(frames: Uint8Array[]): void {
    if (this.closed) return;
    const now: Uint8Array[] = [];
    for (const f of frames) this.pass(this.rx, f, (copies) => this.deliver(copies, now));
    if (now.length > 0) this.handler?.(now);
  }

  /** Hands rx copies to the receiver: into `batch` when passing at once, else as their own batch. */
  private deliver(copies: Uint8Array[], batch?: Uint8Array[]): void {
    if (batch) batch.push(...copies);
    else this.handler?.(copies);
  }

  /**
   * Applies a direction's faults to `frame` (owned here) and hands every surviving copy to
   * `out`: at once for undelayed copies, from a timer for the others.
   */
  private pass(d: Direction, frame: Uint8Array, out: (copies: Uint8Array[]) => void): void {
    const c = d.counters;
    c.frames++;
    if (d.loss > 0 && d.rng.next() < d.loss) {
      c.lost++;
      return;
    }
    const twice = d.duplicate > 0 && d.rng.next() < d.duplicate;
    if (twice) c.duplicated++;
    // The duplicate is taken before the first copy can be corrupted.
    const all = twice ? [frame, frame.slice()] : [frame];
    const immediate: Uint8Array[] = [];
    for (const copy of all) {
      if (d.corrupt > 0 && d.rng.next() < d.corrupt && copy.length > 0) {
        const bit = Math.min(copy.length * 8 - 1, Math.floor(d.rng.next() * copy.length * 8));
        copy[bit >>> 3] ^= 0x80 >>> (bit & 7);
        c.corrupted++;
      }
      let delay = d.delayMs;
      if (d.reorder > 0 && d.rng.next() < d.reorder) {
        const span = d.reorderMax - d.reorderMin;
        delay += d.reorderMin + Math.min(span, Math.floor(d.rng.next() * (span + 1)));
        c.reordered++;
      }
      if (delay <= 0) {
        immediate.push(copy);
        continue;
      }
      c.delayed++;
      this.pendingBy.set(d, (this.pendingBy.get(d) ?? 0) + 1);
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.pendingBy.set(d, (this.pendingBy.get(d) ?? 1) - 1);
        if (this.closed) return;
        c.delivered++;
        if (d === this.tx) {
          this.inner.send(copy);
          this.inner.flush();
        } else {
          this.deliver([copy]);
        }
      }, delay);
      this.timers.add(t);
    }
    if (immediate.length > 0) {
      c.delivered += immediate.length;
      out(immediate);
    }
  }

  private static direction(name: string, s: FaultSettings, rng: RandomSource): Omit<Direction, 'counters'> {
    const [lo, hi] = s.reorderDelayMs ?? [1, 20];
    const reorderMin = milliseconds(`${name}.reorderDelayMs[0]`, lo, 1, true);
    const reorderMax = milliseconds(`${name}.reorderDelayMs[1]`, hi, 20, true);
    if (reorderMin > reorderMax)
      throw new Error(
        `FaultInjector: ${name}.reorderDelayMs must be [min, max] with min <= max, got [${lo}, ${hi}].`,
      );
    return {
      loss: probability(`${name}.loss`, s.loss),
      duplicate: probability(`${name}.duplicate`, s.duplicate),
      reorder: probability(`${name}.reorder`, s.reorder),
      reorderMin,
      reorderMax,
      delayMs: milliseconds(`${name}.delayMs`, s.delayMs, 0),
      corrupt: probability(`${name}.corrupt`, s.corrupt),
      rng: s.rng ?? rng,
    };
  }
}
