/**
 * The output gate of an HA node's data link (I4, docs/ARCHITECTURE.md §5): a LinkDevice
 * wrapper that enforces who may speak for the VIP.
 *
 * - `muted` (a standby, or a node superseded by a take-over): nothing the stack sends leaves and
 *   nothing received reaches it (it may be overheard: `onMutedReceive`).
 * - The lease: frames leave only while `clock()` is before `leaseUntil` (the HA layer renews it
 *   from its standby's grants). The check is made on every frame against the monotonic clock, so
 *   a process that wakes from a pause checks before its first frame. A frame sent while the lease
 *   has lapsed is held (bounded) and leaves if the lease is renewed (`setLease`), or is dropped
 *   when the node is muted (superseded): a lapse that is only a late grant costs a short delay,
 *   not a retransmission.
 * - `sendControl` bypasses both: the nodes' beacons on the data link, which are not frames for
 *   the VIP.
 * - `intercept` sees every received frame first (beacons, the data-link evidence).
 */
import { type MacAddr, writeMac } from '../wire/address.ts';
import type { LinkDevice } from './device.ts';

/** Frames (and bytes) held while the lease has lapsed; more are dropped. */
const HOLD_MAX_FRAMES = 4096;
const HOLD_MAX_BYTES = 8 * 1024 * 1024;

export class GatedDevice implements LinkDevice {
  muted = true;
  /** Frames dropped while muted, each way; frames held, released and dropped for the lease. */
  readonly counters = {
    sendDropped: 0,
    receiveDropped: 0,
    leaseHeld: 0,
    leaseReleased: 0,
    leaseDropped: 0,
  };
  /**
   * When set, every frame leaves with this source MAC (the node's own) instead of the stack's
   * (the shared virtual MAC): switches then never learn the virtual MAC and flood what is sent
   * to it, so a muted standby hears it too.
   */
  sourceMac: MacAddr | undefined;
  /** Hears the frames that arrive while muted (instead of dropping them unseen). */
  onMutedReceive: ((frame: Uint8Array) => void) | undefined;
  /** Sees every received frame first; returns true to consume it (it goes no further). */
  intercept: ((frame: Uint8Array) => boolean) | undefined;
  /** Frames may leave while `clock()` < `leaseUntil` (µs); +Infinity: no lease in force. */
  private leaseUntil = Number.POSITIVE_INFINITY;
  private held: { frame: Uint8Array; segmentSize: number | undefined }[] = [];
  private heldBytes = 0;

  constructor(
    readonly inner: LinkDevice,
    private readonly clock: () => number = () => 0,
  ) {}

  get mtu(): number {
    return this.inner.mtu;
  }

  get gsoMaxFrame(): number | undefined {
    return this.inner.gsoMaxFrame;
  }

  /** Whether a frame for the VIP may leave now: not muted, and the lease allows it. */
  get mayEmit(): boolean {
    return !this.muted && this.leaseValid;
  }

  /**
   * A lease granted on another channel (a worker thread's, src/ha/pulse.ts), read at each check
   * while a granted lease is in force; `onExtend` hears each extension it brings (the kernel
   * fence follows it before the frame is written).
   */
  sharedLease: (() => number) | undefined;
  onExtend: ((until: number) => void) | undefined;

  /** Whether the lease allows a frame now. */
  get leaseValid(): boolean {
    const u = this.leaseUntil;
    if (u === Number.POSITIVE_INFINITY) return true;
    if (u === Number.NEGATIVE_INFINITY) return false;
    const now = this.clock();
    if (now < u) return true;
    const shared = this.sharedLease?.() ?? u;
    if (shared > u) {
      this.leaseUntil = shared;
      this.onExtend?.(shared);
    }
    return now < this.leaseUntil;
  }

  /** The lease moved: frames held for it leave if it now allows them. */
  setLease(until: number): void {
    this.leaseUntil = until;
    if (this.held.length > 0 && !this.muted && this.leaseValid) {
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      for (const h of held) this.forward(h.frame, h.segmentSize);
      this.counters.leaseReleased += held.length;
      this.inner.flush();
    }
  }

  setMuted(m: boolean): void {
    this.muted = m;
    if (m) this.dropHeld();
  }

  private dropHeld(): void {
    this.counters.leaseDropped += this.held.length;
    this.held = [];
    this.heldBytes = 0;
  }

  send(frame: Uint8Array, segmentSize?: number): void {
    if (this.muted) {
      this.counters.sendDropped++;
      return;
    }
    if (!this.leaseValid) {
      if (this.held.length >= HOLD_MAX_FRAMES || this.heldBytes + frame.length > HOLD_MAX_BYTES) {
        this.counters.leaseDropped++;
        return;
      }
      this.held.push({ frame: frame.slice(), segmentSize });
      this.heldBytes += frame.length;
      this.counters.leaseHeld++;
      return;
    }
    this.forward(frame, segmentSize);
  }

  private forward(frame: Uint8Array, segmentSize: number | undefined): void {
    if (this.sourceMac !== undefined && frame.length >= 12) writeMac(frame, 6, this.sourceMac);
    this.inner.send(frame, segmentSize);
  }

  /** A frame that is not for the VIP (a beacon): leaves whatever the mute and the lease say. */
  sendControl(frame: Uint8Array): void {
    this.inner.send(frame);
    this.inner.flush();
  }

  flush(): void {
    this.inner.flush();
  }

  onReceive(handler: (frames: Uint8Array[]) => void): void {
    this.inner.onReceive((frames) => {
      const take = this.intercept;
      if (take) frames = frames.filter((f) => !take(f));
      if (frames.length === 0) return;
      if (this.muted) {
        this.counters.receiveDropped += frames.length;
        const hear = this.onMutedReceive;
        if (hear) for (const f of frames) hear(f);
        return;
      }
      handler(frames);
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
