import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LearningSwitch, Network, type NodeHandle, Recorder } from '../../../src/link/sim/index.ts';
import { MAC_BROADCAST, type MacAddr, macFromString, writeMac } from '../../../src/wire/address.ts';

const A = macFromString('02:00:00:00:00:0a')!;
const B = macFromString('02:00:00:00:00:0b')!;
const C = macFromString('02:00:00:00:00:0c')!;
const D = macFromString('02:00:00:00:00:0d')!;
const VIP_MAC = macFromString('00:00:5e:00:01:07')!;
const MCAST = macFromString('01:00:5e:00:00:01')!;

function eth(dst: MacAddr, src: MacAddr, tag = 0): Uint8Array {
  const f = new Uint8Array(60);
  writeMac(f, 0, dst);
  writeMac(f, 6, src);
  f[12] = 0x08;
  f[13] = 0x06;
  f[14] = tag;
  return f;
}

/** Three hosts on ports 0, 1, 2 of a 4-port switch (port 3 unconnected), 10 µs links. */
function lan(ageingUs?: number) {
  const net = new Network({ seed: 1 });
  const sw = net.attach(new LearningSwitch({ ports: 4, ageingUs }), 'sw');
  const hosts: NodeHandle<Recorder>[] = [];
  for (let i = 0; i < 3; i++) {
    const h = net.attach(new Recorder(), `h${i}`);
    net.connect(h, 0, sw, i, { latencyUs: 10 });
    hosts.push(h);
  }
  const got = () => hosts.map((h) => h.node.received.map((r) => r.frame[14]));
  const clear = () => {
    for (const h of hosts) h.node.clear();
  };
  return { net, sw, hosts, got, clear };
}

describe('LearningSwitch', () => {
  test('floods broadcast and unknown unicast to every other port, then forwards known unicast', () => {
    const { net, sw, hosts, got, clear } = lan();
    hosts[0].node.send(0, eth(MAC_BROADCAST, A, 1));
    net.runUntilIdle();
    assert.deepEqual(got(), [[], [1], [1]]);
    assert.deepEqual(sw.node.macTable(net.now), [{ mac: A, port: 0, lastSeen: 10 }]);
    clear();
    // B -> A: A is known on port 0, so only host 0 gets it; B is learned on port 1.
    hosts[1].node.send(0, eth(A, B, 2));
    net.runUntilIdle();
    assert.deepEqual(got(), [[2], [], []]);
    clear();
    // C -> D: D unknown, flooded to ports 0 and 1 (and not to unconnected port 3).
    hosts[2].node.send(0, eth(D, C, 3));
    net.runUntilIdle();
    assert.deepEqual(got(), [[3], [3], []]);
    assert.equal(sw.txUnconnected, 0);
    clear();
    // A -> C now known.
    hosts[0].node.send(0, eth(C, A, 4));
    net.runUntilIdle();
    assert.deepEqual(got(), [[], [], [4]]);
    assert.deepEqual(
      sw.node.macTable(net.now).map((e) => [e.mac, e.port]),
      [
        [A, 0],
        [B, 1],
        [C, 2],
      ],
    );
    assert.deepEqual(sw.node.stats, {
      received: 4,
      forwarded: 2,
      flooded: 2,
      filtered: 0,
      runts: 0,
      aged: 0,
      moves: 0,
    });
  });

  test('multicast destinations are flooded; multicast sources are not learned', () => {
    const { net, sw, hosts, got } = lan();
    hosts[1].node.send(0, eth(MCAST, B, 5));
    hosts[2].node.send(0, eth(A, MCAST, 6));
    net.runUntilIdle();
    assert.deepEqual(got(), [[5, 6], [6], [5]]);
    assert.deepEqual(
      sw.node.macTable(net.now).map((e) => e.mac),
      [B],
    );
  });

  test('never sends back out the ingress port: a destination learned there is filtered', () => {
    const { net, sw, hosts, got } = lan();
    hosts[0].node.send(0, eth(MAC_BROADCAST, D, 1)); // D learned on port 0
    net.runUntilIdle();
    hosts[0].node.send(0, eth(D, A, 2));
    net.runUntilIdle();
    assert.deepEqual(got(), [[], [1], [1]]);
    assert.equal(sw.node.stats.filtered, 1);
  });

  test('entries age out after ageingUs (exactly) and unicast is flooded again', () => {
    const { net, sw, hosts, got, clear } = lan(1_000_000);
    hosts[0].node.send(0, eth(MAC_BROADCAST, A, 1)); // A learned at t = 10
    net.runUntilIdle();
    clear();
    net.at(500_000, () => hosts[1].node.send(0, eth(A, B, 2)));
    net.run({ until: 600_000 });
    assert.deepEqual(got(), [[2], [], []]);
    // Arrives at the switch at t = 10 + 1_000_000: exactly the ageing time after A was seen.
    net.at(1_000_000, () => hosts[1].node.send(0, eth(A, B, 3)));
    net.runUntilIdle();
    assert.deepEqual(got(), [[2, 3], [], [3]]);
    assert.equal(sw.node.stats.aged, 1);
    assert.equal(sw.node.lookup(A, net.now), undefined);
    // B was refreshed at t = 1_000_010, so it is still there at 1_500_000 and gone at 2_000_010.
    assert.equal(sw.node.lookup(B, 1_500_000), 1);
    assert.deepEqual(sw.node.macTable(2_000_010), []);
  });

  test('a MAC that moves is re-learned: gratuitous ARP from the new active takes the VIP', () => {
    const { net, sw, hosts, got, clear } = lan();
    // The active (host 0) owns the VIP MAC; the client (host 1) talks to it.
    hosts[0].node.send(0, eth(MAC_BROADCAST, VIP_MAC, 1));
    net.runUntilIdle();
    hosts[1].node.send(0, eth(VIP_MAC, B, 2));
    net.runUntilIdle();
    assert.deepEqual(got(), [[2], [1], [1]]);
    clear();
    // The standby (host 2) takes over: gratuitous ARP, broadcast, source = VIP MAC.
    hosts[2].node.send(0, eth(MAC_BROADCAST, VIP_MAC, 3));
    net.runUntilIdle();
    assert.equal(sw.node.lookup(VIP_MAC, net.now), 2);
    assert.equal(sw.node.stats.moves, 1);
    hosts[1].node.send(0, eth(VIP_MAC, B, 4));
    net.runUntilIdle();
    assert.deepEqual(got(), [[3], [3], [4]]);
  });

  test('runts are dropped and counted; flush forgets everything', () => {
    const { net, sw, hosts, got } = lan();
    hosts[0].node.send(0, new Uint8Array(13));
    hosts[0].node.send(0, eth(MAC_BROADCAST, A, 1));
    net.runUntilIdle();
    assert.equal(sw.node.stats.runts, 1);
    assert.deepEqual(got(), [[], [1], [1]]);
    sw.node.flush();
    assert.deepEqual(sw.node.macTable(net.now), []);
  });

  test('two switches in a row learn across the trunk', () => {
    const net = new Network({ seed: 2 });
    const s1 = net.attach(new LearningSwitch({ ports: 3 }), 's1');
    const s2 = net.attach(new LearningSwitch({ ports: 3 }), 's2');
    const a = net.attach(new Recorder(), 'a');
    const b = net.attach(new Recorder(), 'b');
    const c = net.attach(new Recorder(), 'c');
    net.connect(s1, 2, s2, 2, { latencyUs: 5 });
    net.connect(a, 0, s1, 0);
    net.connect(b, 0, s2, 0);
    net.connect(c, 0, s2, 1);
    a.node.send(0, eth(MAC_BROADCAST, A, 1));
    net.runUntilIdle();
    b.node.send(0, eth(A, B, 2));
    net.runUntilIdle();
    assert.deepEqual(
      a.node.received.map((r) => r.frame[14]),
      [2],
    );
    assert.deepEqual(
      c.node.received.map((r) => r.frame[14]),
      [1],
    );
    assert.equal(s1.node.lookup(B, net.now), 2);
    assert.equal(s2.node.lookup(A, net.now), 2);
  });

  test('bad options are refused', () => {
    assert.throws(() => new LearningSwitch({ ports: 0 }), /ports/);
    assert.throws(() => new LearningSwitch({ ports: 2, ageingUs: 0 }), /ageingUs/);
  });
});
