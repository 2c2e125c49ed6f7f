/**
 * Two stacks on the simulated network through a learning switch: neighbour resolution (ARP,
 * NDP), TCP both ways over IPv4 and IPv6, RST for a closed port, ICMP echo, and garbage input.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Recorder } from '../../src/link/sim/index.ts';
import { ipFromString } from '../../src/stack/ip.ts';
import type { StackConnection } from '../../src/stack/stack.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { macFromString } from '../../src/wire/address.ts';
import { isWireError } from '../../src/wire/error.ts';
import { parseFrame } from '../../src/wire/frame.ts';
import { ICMP_ECHO_REQUEST } from '../../src/wire/icmpv4.ts';
import { encode, frame, icmpv4, ipv4 } from '../support/build.ts';
import { B_MAC, streamApp, world } from '../support/stack-sim.ts';

describe('two stacks on the simulator', () => {
  for (const [family, addr] of [
    ['IPv4', '198.18.0.2'],
    ['IPv6', 'fd00::2'],
  ] as const) {
    test(`${family}: neighbour resolution, then 300 kB each way byte-exact over 2 % loss, clean close`, () => {
      const w = world(1, 0.02);
      const appA = streamApp(w.a, 300_000, 1, 2);
      const appB = streamApp(w.b, 300_000, 2, 1);
      w.b.stack.listen(80, { onAccept: () => {} });
      let client: StackConnection | undefined;
      w.net.at(0, (now) => {
        client = w.a.stack.connect(ipFromString(addr)!, 80, now);
        appA.drive(client);
        w.a.handle.wake();
      });
      w.net.run({ until: 120_000_000 });
      assert.ok(client);
      const sa = appA.st.get(client)!;
      const [server] = [...appB.st.keys()];
      const sb = appB.st.get(server)!;
      assert.equal(sa.got, 300_000);
      assert.equal(sb.got, 300_000);
      assert.equal(sa.bad, -1);
      assert.equal(sb.bad, -1);
      assert.equal(client.tcp.error, undefined);
      assert.equal(w.a.stack.connectionCount + w.b.stack.connectionCount, 0, 'both closed and removed');
      assert.ok(w.a.stack.neighbors.size >= 1 && w.b.stack.neighbors.size >= 1);
    });
  }

  test('a SYN to a closed port draws a RST: ECONNREFUSED', () => {
    const w = world(2);
    let c: StackConnection | undefined;
    w.net.at(0, (now) => {
      c = w.a.stack.connect(ipFromString('198.18.0.2')!, 81, now);
      w.a.handle.wake();
    });
    w.net.run({ until: 2_000_000 });
    assert.equal(c?.tcp.state, TcpState.Closed);
    assert.equal(c?.tcp.error, 'ECONNREFUSED');
    assert.equal(w.b.stack.counters.tcpRstSent, 1);
  });

  test('ICMP echo is answered; garbage is counted and dropped', () => {
    const w = world(3);
    const probe = new Recorder();
    const hp = w.net.attach(probe, 'probe');
    const sw = [...[w.sw]][0];
    w.net.connect(hp, 0, sw, 2, { latencyUs: 100 });
    const PROBE_MAC = macFromString('02:00:00:00:01:0c')!;
    w.net.at(0, () => {
      // Teach B the probe's MAC with an ARP-less trick: B replies to the frame's source only after
      // resolving it, so send a ping and let B ARP for us; the recorder does not answer ARP, so
      // instead use B's cache via a gratuitous-style request first.
      hp.send(
        0,
        encode(
          frame(B_MAC, PROBE_MAC, {
            arp: {
              op: 1,
              senderMac: PROBE_MAC,
              senderIp: ipFromString('198.18.0.9') as number,
              targetMac: 0,
              targetIp: ipFromString('198.18.0.2') as number,
            },
          }),
        ),
      );
      hp.send(
        0,
        encode(
          frame(B_MAC, PROBE_MAC, {
            ipv4: ipv4({
              src: ipFromString('198.18.0.9') as number,
              dst: ipFromString('198.18.0.2') as number,
            }),
            icmpv4: icmpv4({ type: ICMP_ECHO_REQUEST, ident: 7, seqNo: 1, data: new Uint8Array(32).fill(9) }),
          }),
        ),
      );
      for (let i = 0; i < 50; i++)
        hp.send(0, new Uint8Array([2, 0, 0, 0, 1, 0x0b, 1, 2, 3, 4, 5, 6, 8, 0, i, 7]));
    });
    w.net.run({ until: 1_000_000 });
    const got = probe.received.map((f) => parseFrame(f.frame)).filter((f) => !isWireError(f));
    assert.ok(
      got.some((f) => !isWireError(f) && f.arp?.op === 2),
      'ARP reply',
    );
    assert.ok(
      got.some((f) => !isWireError(f) && f.icmpv4?.type === 0 && f.icmpv4.ident === 7),
      'echo reply',
    );
    assert.equal(w.b.stack.counters.echoReplies, 1);
    assert.ok(w.b.stack.counters.malformed >= 50);
  });
});
