/**
 * A LinkDevice that can be muted: while muted nothing is sent and nothing received is passed on.
 * A standby's data link (DESIGN.md I4: at most one node emits frames for the VIP): its stack
 * stays silent on the shared wire until the take-over unmutes it.
 */
import { type MacAddr, writeMac } from '../wire/address.ts';
import type { LinkDevice } from './device.ts';

export class GatedDevice implements LinkDevice {
  muted = true;
  /** Frames dropped while muted, each way. */
  readonly counters = { sendDropped: 0, receiveDropped: 0 };
  /**
   * When set, every frame leaves with this source MAC (the node's own) instead of the stack's
   * (the shared virtual MAC): switches then never learn the virtual MAC and flood what is sent
   * to it, so a muted standby hears it too.
   */
  sourceMac: MacAddr | undefined;
  /** Hears the frames that arrive while muted (instead of dropping them unseen). */
  onMutedReceive: ((frame: Uint8Array) => void) | undefined;

  constructor(readonly inner: LinkDevice) {}

  get mtu(): number {
    return this.inner.mtu;
  }

  get gsoMaxFrame(): number | undefined {
    return this.inner.gsoMaxFrame;
  }

  send(frame: Uint8Array, segmentSize?: number): void {
    if (this.muted) {
      this.counters.sendDropped++;
      return;
    }
    if (this.sourceMac !== undefined && frame.length >= 12) writeMac(frame, 6, this.sourceMac);
    this.inner.send(frame, segmentSize);
  }

  flush(): void {
    this.inner.flush();
  }

  onReceive(handler: (frames: Uint8Array[]) => void): void {
    this.inner.onReceive((frames) => {
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
