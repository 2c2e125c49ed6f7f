/**
 * What the simulated network drives. A node does no I/O and keeps no clock of its own: the
 * network calls it with `now` and asks `pollAt()` after every call (docs/ARCHITECTURE.md §2 "Time is passed in").
 */
import type { NodeHandle } from './network.ts';

export interface SimNode {
  /** A frame arrived on `port`. The node owns `frame` (the network copied it on send). */
  receive(port: number, frame: Uint8Array, now: number): void;
  /** Called at (never before) the instant `pollAt()` asked for. */
  poll?(now: number): void;
  /** The next instant the node wants `poll`, or undefined for none. Asked after every call. */
  pollAt?(): number | undefined;
  /** Called once by `Network.attach` with the handle the node transmits through. */
  attach?(handle: NodeHandle): void;
}
