/**
 * The simplest node: remembers every frame it receives and sends what it is told to. For tests
 * of the network itself and of anything that needs a passive peer or a tap on a switch port.
 */
import type { NodeHandle } from './network.ts';
import type { SimNode } from './node.ts';

export interface ReceivedFrame {
  port: number;
  frame: Uint8Array;
  /** Virtual arrival time, µs. */
  at: number;
}

export class Recorder implements SimNode {
  readonly received: ReceivedFrame[] = [];
  private handle: NodeHandle | undefined = undefined;

  attach(handle: NodeHandle): void {
    this.handle = handle;
  }

  receive(port: number, frame: Uint8Array, now: number): void {
    this.received.push({ port, frame, at: now });
  }

  /** Transmits `frame` on `port` now. */
  send(port: number, frame: Uint8Array): void {
    if (this.handle === undefined)
      throw new Error('Recorder.send before the recorder was attached to a network.');
    this.handle.send(port, frame);
  }

  /** Forgets what was received. */
  clear(): void {
    this.received.length = 0;
  }
}
