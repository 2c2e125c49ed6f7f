/**
 * Two LinkDevices joined in memory (a cable): what one sends the other receives in the next turn
 * of the event loop. For tests of the API layer without root.
 */
import type { LinkDevice } from '../../src/link/device.ts';

export class MemoryLink implements LinkDevice {
  readonly mtu = 1500;
  peer: MemoryLink | undefined;
  private queue: Uint8Array[] = [];
  private handler: ((frames: Uint8Array[]) => void) | undefined;
  private scheduled = false;
  private closed = false;
  framesOut = 0;

  static pair(): [MemoryLink, MemoryLink] {
    const a = new MemoryLink();
    const b = new MemoryLink();
    a.peer = b;
    b.peer = a;
    return [a, b];
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    this.queue.push(frame.slice());
    this.framesOut++;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    const q = this.queue;
    if (q.length === 0) return;
    this.queue = [];
    const p = this.peer;
    setImmediate(() => p?.deliver(q));
  }

  private deliver(frames: Uint8Array[]): void {
    if (!this.closed) this.handler?.(frames);
  }

  onReceive(handler: (frames: Uint8Array[]) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
