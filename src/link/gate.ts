/**
 * A LinkDevice that can be muted: while muted nothing is sent and nothing received is passed on.
 * A standby's data link (DESIGN.md I4: at most one node emits frames for the VIP): its stack
 * stays silent on the shared wire until the take-over unmutes it.
 */
import type { LinkDevice } from './device.ts';

export class GatedDevice implements LinkDevice {
  muted = true;
  /** Frames dropped while muted, each way. */
  readonly counters = { sendDropped: 0, receiveDropped: 0 };

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
    this.inner.send(frame, segmentSize);
  }

  flush(): void {
    this.inner.flush();
  }

  onReceive(handler: (frames: Uint8Array[]) => void): void {
    this.inner.onReceive((frames) => {
      if (this.muted) {
        this.counters.receiveDropped += frames.length;
        return;
      }
      handler(frames);
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
