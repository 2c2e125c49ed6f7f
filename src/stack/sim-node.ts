/**
 * A NetStack as a node of the simulated network, with a tiny event-driven application (the role
 * the API layer and its driver play on a real host): the clients of tests and of `takeover demo`.
 * With `config.gsoMaxFrame` it segments GSO frames in software, as a TAP's kernel does.
 */
import { segmentTcpFrame } from '../link/gso.ts';
import type { NodeHandle, SimNode } from '../link/sim/index.ts';
import { type Listener, NetStack, type StackConfig, type StackConnection } from './stack.ts';

export class StackNode implements SimNode {
  handle!: NodeHandle;
  stack!: NetStack;
  /** Called for each accepted connection and each change (outside stack calls). */
  onAccept: ((c: StackConnection, l: Listener, now: number) => void) | undefined;
  onChange: ((c: StackConnection, now: number) => void) | undefined;

  /** Sees every frame that reaches this node, before its stack does. */
  onFrame: ((frame: Uint8Array, now: number) => void) | undefined;
  /** Every frame put on the link, in order (GSO frames after segmentation), when recording. */
  sent: Uint8Array[] | undefined;
  /** GSO frames the stack handed over that were not valid (segmentTcpFrame refused them). */
  badGso = 0;

  /** With `config.gsoMaxFrame` the node segments GSO frames in software, like a TAP's kernel. */
  constructor(readonly config: StackConfig) {}

  attach(h: NodeHandle): void {
    this.handle = h;
    const out = (f: Uint8Array) => {
      this.sent?.push(f.slice());
      h.send(0, f);
    };
    this.stack = new NetStack(
      this.config,
      h.rng,
      (f, segmentSize) => {
        if (segmentSize === undefined) {
          out(f);
          return;
        }
        const pieces = segmentTcpFrame(f, segmentSize);
        if (pieces === undefined) this.badGso++;
        else for (const p of pieces) out(p);
      },
      h.now,
    );
  }

  receive(_port: number, frame: Uint8Array, now: number): void {
    this.onFrame?.(frame, now);
    this.stack.receive(frame, now);
    this.turn(now);
  }

  poll(now: number): void {
    this.turn(now);
  }

  pollAt(): number | undefined {
    return this.stack.pollAt();
  }

  /** One driver turn: run the stack, then the application, until both are quiet (bounded). */
  turn(now: number): void {
    for (let i = 0; i < 100; i++) {
      this.stack.poll(now);
      const ev = this.stack.takeEvents();
      if (ev.changed.length === 0 && ev.accepted.length === 0) return;
      for (const { l, c } of ev.accepted) this.onAccept?.(c, l, now);
      for (const c of ev.changed) this.onChange?.(c, now);
    }
  }
}
