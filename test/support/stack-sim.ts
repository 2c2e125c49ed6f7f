/**
 * NetStacks as nodes of the simulated network, with a tiny event-driven application per stack
 * (the role the API layer and its driver play on a real host).
 */
import type { NodeHandle, SimNode } from '../../src/link/sim/index.ts';
import { type Listener, NetStack, type StackConfig, type StackConnection } from '../../src/stack/stack.ts';

export class StackNode implements SimNode {
  handle!: NodeHandle;
  stack!: NetStack;
  /** Called for each accepted connection and each change (outside stack calls). */
  onAccept: ((c: StackConnection, l: Listener, now: number) => void) | undefined;
  onChange: ((c: StackConnection, now: number) => void) | undefined;

  constructor(readonly config: StackConfig) {}

  attach(h: NodeHandle): void {
    this.handle = h;
    this.stack = new NetStack(this.config, h.rng, (f) => h.send(0, f), h.now);
  }

  receive(_port: number, frame: Uint8Array, now: number): void {
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
