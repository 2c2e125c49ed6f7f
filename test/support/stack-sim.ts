/**
 * Two stacks on a simulated switch, and a streaming application for them (StackNode itself lives
 * in src/stack/sim-node.ts: the demo's client is one).
 */
import { LearningSwitch, Network } from '../../src/link/sim/index.ts';
import { cidrFromString } from '../../src/stack/ip.ts';
import { StackNode } from '../../src/stack/sim-node.ts';
import type { StackConfig, StackConnection } from '../../src/stack/stack.ts';
import { macFromString } from '../../src/wire/address.ts';
import { checkPattern, fillPattern } from './tcp-sim.ts';

export { StackNode };

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
