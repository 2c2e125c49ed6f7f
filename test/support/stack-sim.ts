/**
 * NetStacks as nodes of the simulated network, with a tiny event-driven application per stack
 * (the role the API layer and its driver play on a real host).
 */
import { segmentTcpFrame } from '../../src/link/gso.ts';
import { LearningSwitch, Network, type NodeHandle, type SimNode } from '../../src/link/sim/index.ts';
import { cidrFromString } from '../../src/stack/ip.ts';
import { type Listener, NetStack, type StackConfig, type StackConnection } from '../../src/stack/stack.ts';
import { macFromString } from '../../src/wire/address.ts';
import { checkPattern, fillPattern } from './tcp-sim.ts';

export class StackNode implements SimNode {
  handle!: NodeHandle;
  stack!: NetStack;
  /** Called for each accepted connection and each change (outside stack calls). */
  onAccept: ((c: StackConnection, l: Listener, now: number) => void) | undefined;
  onChange: ((c: StackConnection, now: number) => void) | undefined;

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

export const A_MAC = macFromString('02:00:00:00:01:0a')!;
export const B_MAC = macFromString('02:00:00:00:01:0b')!;

/**
 * Stacks A (198.18.0.1, fd00::1) and B (.2, ::2) on a learning switch with a free third port;
 * `extra` is added to both stacks' configs.
 */
export function world(seed: number, loss = 0, extra: Partial<StackConfig> = {}) {
  const net = new Network({ seed });
  const a = new StackNode({
    ...extra,
    mac: A_MAC,
    addresses: [cidrFromString('198.18.0.1/24')!, cidrFromString('fd00::1/64')!],
  });
  const b = new StackNode({
    ...extra,
    mac: B_MAC,
    addresses: [cidrFromString('198.18.0.2/24')!, cidrFromString('fd00::2/64')!],
  });
  const sw = net.attach(new LearningSwitch({ ports: 3 }), 'sw');
  const ha = net.attach(a, 'a');
  const hb = net.attach(b, 'b');
  net.connect(ha, 0, sw, 0, { latencyUs: 200, bandwidthBps: 1e9, loss });
  net.connect(hb, 0, sw, 1, { latencyUs: 200, bandwidthBps: 1e9, loss });
  return { net, a, b, sw, swPort: 2 };
}

/** An app that sends `n` pattern bytes on each connection, reads and checks the peer's, then closes. */
export function streamApp(node: StackNode, n: number, stream: number, peerStream: number) {
  const st = new Map<StackConnection, { sent: number; got: number; bad: number; closed: boolean }>();
  const drive = (c: StackConnection) => {
    let s = st.get(c);
    if (!s) {
      s = { sent: 0, got: 0, bad: -1, closed: false };
      st.set(c, s);
    }
    const t = c.tcp;
    let acted = false;
    while (s.sent < n && t.writable > 0) {
      const chunk = new Uint8Array(Math.min(n - s.sent, t.writable, 32768));
      fillPattern(stream, s.sent, chunk);
      s.sent += t.write(chunk);
      acted = true;
    }
    if (s.sent === n && !s.closed) {
      t.close();
      s.closed = true;
      acted = true;
    }
    for (let d = t.read(); d; d = t.read()) {
      const bad = checkPattern(peerStream, s.got, d);
      if (bad >= 0 && s.bad < 0) s.bad = s.got + bad;
      s.got += d.length;
      acted = true;
    }
    // Only real work wakes the stack again (a wake for nothing would spin at the same instant).
    if (acted) node.stack.touch(c);
  };
  node.onAccept = (c) => drive(c);
  node.onChange = (c) => drive(c);
  return { st, drive };
}
