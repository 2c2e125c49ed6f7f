import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { PcapWriter } from '../../../src/link/pcap.ts';
import {
  LearningSwitch,
  type Link,
  Network,
  type NodeHandle,
  type SimNode,
} from '../../../src/link/sim/index.ts';
import { MAC_BROADCAST, type MacAddr, readMac, writeMac } from '../../../src/wire/address.ts';
import { forEachSeed } from '../../support/seeds.ts';

/**
 * A chatty host: at random intervals sends a frame of random size to a random peer (sometimes
 * broadcast), and answers every unicast frame addressed to it with a short echo. The echo makes
 * later traffic depend on what earlier faults did.
 */
class Chatter implements SimNode {
  handle!: NodeHandle;
  nextSend = 0;
  sent = 0;
  received = 0;

  constructor(
    readonly mac: MacAddr,
    readonly peers: MacAddr[],
    readonly budget: number,
  ) {}

  attach(h: NodeHandle): void {
    this.handle = h;
    this.nextSend = h.rng.int(0, 500);
  }

  receive(port: number, frame: Uint8Array): void {
    this.received++;
    if (frame.length >= 14 && readMac(frame, 0) === this.mac && frame[14] === 1) {
      const reply = new Uint8Array(64);
      writeMac(reply, 0, readMac(frame, 6));
      writeMac(reply, 6, this.mac);
      reply[12] = 0x88;
      reply[13] = 0xb5;
      reply[14] = 2;
      reply.set(frame.subarray(15, 40), 15);
      this.handle.send(port, reply);
    }
  }

  pollAt(): number | undefined {
    return this.sent < this.budget ? this.nextSend : undefined;
  }

  poll(now: number): void {
    const rng = this.handle.rng;
    const len = rng.int(60, 1514);
    const f = new Uint8Array(len);
    writeMac(f, 0, rng.chance(0.05) ? MAC_BROADCAST : rng.pick(this.peers));
    writeMac(f, 6, this.mac);
    f[12] = 0x88;
    f[13] = 0xb5;
    f[14] = 1;
    for (let i = 15; i < len; i += 4) f[i] = rng.nextU32();
    this.handle.send(0, f);
    this.sent++;
    this.nextSend = now + rng.int(1, 400);
  }
}

interface Outcome {
  hash: string;
  links: Link[];
  chatters: Chatter[];
  events: number;
}

function busyRun(seed: number, framesPerHost = 300): Outcome {
  const net = new Network({ seed });
  const sw = net.attach(new LearningSwitch({ ports: 4, ageingUs: 50_000 }), 'sw');
  const macs = [1, 2, 3, 4].map((i) => 0x0200_0000_0000 + i);
  const chatters: Chatter[] = [];
  const links: Link[] = [];
  const pcaps: PcapWriter[] = [];
  for (let i = 0; i < 4; i++) {
    const c = new Chatter(
      macs[i],
      macs.filter((m) => m !== macs[i]),
      framesPerHost,
    );
    chatters.push(c);
    const h = net.attach(c, `host${i}`);
    const pcap = new PcapWriter({ nanosecond: i % 2 === 1 });
    pcaps.push(pcap);
    links.push(
      net.connect(h, 0, sw, i, {
        latencyUs: 20 + i * 7,
        bandwidthBps: 50e6,
        queueFrames: 6,
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        reorderDelayUs: [10, 300],
        corrupt: 0.02,
        corruptBits: 3,
        schedule:
          i === 2
            ? [
                { at: 20_000, up: false },
                { at: 35_000, up: true },
              ]
            : undefined,
        capture: pcap,
        captureAt: i === 3 ? 'send' : 'deliver',
      }),
    );
  }
  net.run({ until: 1_000_000 });
  const hash = createHash('sha256');
  for (const p of pcaps) hash.update(p.toBuffer());
  return { hash: hash.digest('hex'), links, chatters, events: net.eventsProcessed };
}

describe('determinism', () => {
  test('one seed, two runs of a busy lossy scenario: byte-identical pcaps; another seed differs', () => {
    const one = busyRun(1234);
    const two = busyRun(1234);
    const other = busyRun(1235);
    assert.equal(one.hash, two.hash);
    assert.equal(one.events, two.events);
    assert.notEqual(one.hash, other.hash);
    // The scenario really is busy and lossy.
    if (process.env.SIM_DEBUG) console.log(JSON.stringify(one.links.map((l) => [l.ab.stats, l.ba.stats])));
    const total = (f: (l: Link) => number) => one.links.reduce((s, l) => s + f(l), 0);
    assert.ok(total((l) => l.ab.stats.sent + l.ba.stats.sent) > 2000);
    assert.ok(total((l) => l.ab.stats.dropped.loss + l.ba.stats.dropped.loss) > 50);
    assert.ok(total((l) => l.ab.stats.dropped.queue + l.ba.stats.dropped.queue) > 0);
    assert.ok(total((l) => l.ab.stats.dropped.partition + l.ba.stats.dropped.partition) > 0);
    assert.ok(total((l) => l.ab.stats.duplicated + l.ba.stats.duplicated) > 0);
    assert.ok(total((l) => l.ab.stats.reordered + l.ba.stats.reordered) > 0);
    assert.ok(total((l) => l.ab.stats.corrupted + l.ba.stats.corrupted) > 0);
  });

  test('seeded property: every link conserves frames and every host sent its budget', () => {
    forEachSeed(
      12,
      (seed) => {
        const o = busyRun(seed, 100);
        for (const l of o.links)
          for (const d of [l.ab, l.ba]) {
            const s = d.stats;
            const dropped = s.dropped.loss + s.dropped.queue + s.dropped.partition + s.dropped.down;
            assert.equal(s.sent + s.duplicated, s.delivered + dropped, d.name);
          }
        for (const c of o.chatters) assert.equal(c.sent, 100);
      },
      { file: import.meta.url },
    );
  });
});
