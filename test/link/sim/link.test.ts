import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PcapWriter, parsePcap } from '../../../src/link/pcap.ts';
import { type LinkOptions, Network, Recorder } from '../../../src/link/sim/index.ts';
import { readU32, writeU32 } from '../../../src/wire/bytes.ts';
import { isWireError } from '../../../src/wire/error.ts';

/** A frame of `len` bytes carrying the number `id` in bytes 14-17 (after an Ethernet header). */
function numbered(id: number, len = 64): Uint8Array {
  const f = new Uint8Array(len);
  f.fill(0xff, 0, 6);
  f.set([0x02, 0, 0, 0, 0, 1, 0x88, 0xb5], 6);
  writeU32(f, 14, id);
  return f;
}

function idOf(f: Uint8Array): number {
  return readU32(f, 14);
}

function pair(opts: LinkOptions, seed = 1) {
  const net = new Network({ seed });
  const a = net.attach(new Recorder(), 'a');
  const b = net.attach(new Recorder(), 'b');
  const link = net.connect(a, 0, b, 0, opts);
  return { net, a, b, link };
}

function differingBits(x: Uint8Array, y: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    let d = x[i] ^ y[i];
    while (d) {
      n += d & 1;
      d >>>= 1;
    }
  }
  return n;
}

function checkConservation(link: ReturnType<typeof pair>['link']): void {
  for (const d of [link.ab, link.ba]) {
    const s = d.stats;
    const dropped = s.dropped.loss + s.dropped.queue + s.dropped.partition + s.dropped.down;
    assert.equal(s.sent + s.duplicated, s.delivered + dropped, `${d.name}: frames appear or vanish`);
  }
}

describe('latency and bandwidth', () => {
  test('a 1500-byte frame at 1 Gbit/s takes 12 µs to serialise; back-to-back frames queue', () => {
    const { net, a, b, link } = pair({ latencyUs: 100, bandwidthBps: 1e9 });
    assert.equal(link.ab.serialisationUs(1500), 12);
    for (let i = 0; i < 3; i++) a.node.send(0, numbered(i, 1500));
    assert.equal(link.ab.queuedFrames, 3);
    assert.equal(link.ab.queuedBytes, 4500);
    net.runUntilIdle();
    assert.deepEqual(
      b.node.received.map((r) => r.at),
      [112, 124, 136],
    );
    assert.deepEqual(
      b.node.received.map((r) => idOf(r.frame)),
      [0, 1, 2],
    );
    // After an idle gap the transmitter starts at once again.
    net.at(1000, () => a.node.send(0, numbered(3, 1500)));
    net.runUntilIdle();
    assert.equal(b.node.received[3].at, 1112);
    assert.equal(link.ab.queuedFrames, 0);
  });

  test('64 bytes at 100 Mbit/s take 5.12 µs; infinite bandwidth adds only latency', () => {
    const { net, a, b, link } = pair({ latencyUs: 7, ab: { bandwidthBps: 100e6 } });
    a.node.send(0, numbered(0, 64));
    b.node.send(0, numbered(1, 64));
    assert.equal(link.ab.serialisationUs(64), 5.12);
    net.runUntilIdle();
    // Fractional microseconds are plain doubles: 5.12 + 7 is 12.120000000000001.
    assert.ok(Math.abs(b.node.received[0].at - 12.12) < 1e-9);
    assert.equal(a.node.received[0].at, 7);
  });

  test('the frame is copied on send: the sender may reuse its buffer', () => {
    const { net, a, b } = pair({ latencyUs: 10 });
    const buf = numbered(42);
    a.node.send(0, buf);
    buf.fill(0);
    net.runUntilIdle();
    assert.equal(idOf(b.node.received[0].frame), 42);
  });
});

describe('transmit queue', () => {
  test('tail drop by frame count; the queue drains at line rate', () => {
    // 1000 bytes at 1 Mbit/s = 8000 µs each.
    const { net, a, b, link } = pair({ bandwidthBps: 1e6, queueFrames: 3, latencyUs: 1 });
    for (let i = 0; i < 10; i++) a.node.send(0, numbered(i, 1000));
    assert.equal(link.ab.stats.dropped.queue, 7);
    net.run({ until: 8001 });
    assert.equal(b.node.received.length, 1);
    // One frame left the queue: one more fits.
    a.node.send(0, numbered(10, 1000));
    a.node.send(0, numbered(11, 1000));
    assert.equal(link.ab.stats.dropped.queue, 8);
    net.runUntilIdle();
    assert.deepEqual(
      b.node.received.map((r) => [idOf(r.frame), r.at]),
      [
        [0, 8001],
        [1, 16001],
        [2, 24001],
        [10, 32001],
      ],
    );
    checkConservation(link);
  });

  test('tail drop by bytes', () => {
    const { net, a, b, link } = pair({ bandwidthBps: 1e6, queueBytes: 2500 });
    for (let i = 0; i < 4; i++) a.node.send(0, numbered(i, 1000));
    a.node.send(0, numbered(4, 400)); // 2000 + 400 <= 2500: fits
    assert.equal(link.ab.stats.dropped.queue, 2);
    net.runUntilIdle();
    assert.deepEqual(
      b.node.received.map((r) => idOf(r.frame)),
      [0, 1, 4],
    );
  });

  test('with infinite bandwidth nothing queues, so nothing is tail-dropped', () => {
    const { net, a, b, link } = pair({ queueFrames: 1 });
    for (let i = 0; i < 5; i++) a.node.send(0, numbered(i));
    net.runUntilIdle();
    assert.equal(b.node.received.length, 5);
    assert.equal(link.ab.stats.dropped.queue, 0);
  });
});

describe('faults', () => {
  test('loss rate is near p over many frames', () => {
    const { net, a, b, link } = pair({ latencyUs: 5, loss: 0.1 });
    const n = 20000;
    for (let i = 0; i < n; i++) a.node.send(0, numbered(i));
    net.runUntilIdle();
    const lost = link.ab.stats.dropped.loss;
    assert.ok(Math.abs(lost / n - 0.1) < 0.01, `lost ${lost} of ${n}`);
    assert.equal(b.node.received.length, n - lost);
    checkConservation(link);
    // The surviving frames keep their order (no reordering configured).
    const ids = b.node.received.map((r) => idOf(r.frame));
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1]);
  });

  test('loss 1 drops everything; per-direction settings keep the other way clean', () => {
    const { net, a, b, link } = pair({ ab: { loss: 1 } });
    for (let i = 0; i < 100; i++) {
      a.node.send(0, numbered(i));
      b.node.send(0, numbered(i));
    }
    net.runUntilIdle();
    assert.equal(b.node.received.length, 0);
    assert.equal(a.node.received.length, 100);
    assert.equal(link.ab.stats.dropped.loss, 100);
    assert.equal(link.ba.stats.dropped.loss, 0);
  });

  test('duplication delivers identical extra copies', () => {
    const { net, a, b, link } = pair({ latencyUs: 3, duplicate: 0.3 });
    const n = 5000;
    for (let i = 0; i < n; i++) a.node.send(0, numbered(i));
    net.runUntilIdle();
    const dups = link.ab.stats.duplicated;
    assert.ok(Math.abs(dups / n - 0.3) < 0.03, `${dups} duplicates`);
    assert.equal(b.node.received.length, n + dups);
    const seen = new Map<number, number>();
    for (const r of b.node.received) seen.set(idOf(r.frame), (seen.get(idOf(r.frame)) ?? 0) + 1);
    let twice = 0;
    for (const c of seen.values()) {
      assert.ok(c === 1 || c === 2);
      if (c === 2) twice++;
    }
    assert.equal(twice, dups);
    // Each copy is its own buffer.
    const [x, y] = b.node.received.filter((r) => seen.get(idOf(r.frame)) === 2).map((r) => r.frame);
    assert.notEqual(x.buffer, y.buffer);
    checkConservation(link);
  });

  test('reordering lets later frames overtake delayed ones', () => {
    const run = (reorder: number) => {
      const { net, a, b, link } = pair({ latencyUs: 20, reorder, reorderDelayUs: [50, 500] });
      for (let i = 0; i < 1000; i++) net.at(i * 10, () => a.node.send(0, numbered(i)));
      net.runUntilIdle();
      const ids = b.node.received.map((r) => idOf(r.frame));
      let inversions = 0;
      for (let i = 1; i < ids.length; i++) if (ids[i] < ids[i - 1]) inversions++;
      return { ids, inversions, link };
    };
    const calm = run(0);
    assert.equal(calm.inversions, 0);
    const rough = run(0.2);
    assert.ok(rough.inversions > 100, `${rough.inversions} inversions`);
    assert.ok(Math.abs(rough.link.ab.stats.reordered - 200) < 50);
    // Nothing lost or duplicated: the same set of frames.
    assert.deepEqual(
      rough.ids.slice().sort((x, y) => x - y),
      calm.ids,
    );
  });

  test('corruption flips 1 bit by default, up to corruptBits otherwise, in a copy', () => {
    const one = pair({ corrupt: 1 });
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) {
      const f = numbered(i, 100);
      sent.push(f.slice());
      one.a.node.send(0, f);
    }
    one.net.runUntilIdle();
    for (let i = 0; i < 200; i++) assert.equal(differingBits(sent[i], one.b.node.received[i].frame), 1);
    assert.equal(one.link.ab.stats.corrupted, 200);

    const many = pair({ corrupt: 1, corruptBits: 5 });
    const counts = new Set<number>();
    for (let i = 0; i < 300; i++) many.a.node.send(0, numbered(i, 100));
    many.net.runUntilIdle();
    // No reordering: the i-th frame received is the i-th sent (its id bytes may be corrupted).
    for (const [i, r] of many.b.node.received.entries()) {
      const d = differingBits(numbered(i, 100), r.frame);
      assert.ok(d >= 1 && d <= 5, `${d} bits flipped`);
      counts.add(d);
    }
    assert.ok(counts.size >= 3, `flip counts seen: ${[...counts]}`);
  });

  test('corruption rate: about p of the frames differ, and exactly those are counted', () => {
    const { net, a, b, link } = pair({ corrupt: 0.25 });
    for (let i = 0; i < 4000; i++) a.node.send(0, numbered(i, 200));
    net.runUntilIdle();
    let changed = 0;
    for (let i = 0; i < 4000; i++)
      if (differingBits(numbered(i, 200), b.node.received[i].frame) > 0) changed++;
    assert.equal(changed, link.ab.stats.corrupted);
    assert.ok(Math.abs(changed / 4000 - 0.25) < 0.03, `${changed} corrupted`);
  });

  test('bad options are refused with a sentence', () => {
    assert.throws(() => pair({ loss: 1.5 }), /loss must be a probability/);
    assert.throws(() => pair({ latencyUs: -1 }), /latencyUs/);
    assert.throws(() => pair({ reorderDelayUs: [5, 1] }), /reorderDelayUs/);
    assert.throws(() => pair({ corruptBits: 0 }), /corruptBits/);
    assert.throws(() => pair({ ba: { duplicate: -0.1 } }), /duplicate/);
  });
});

describe('partitions', () => {
  test('a scheduled partition drops exactly what is sent or arrives during it', () => {
    const { net, a, b, link } = pair({
      latencyUs: 150,
      schedule: [
        { at: 1000, up: false },
        { at: 2000, up: true },
      ],
    });
    for (let t = 0; t <= 3000; t += 100) net.at(t, () => a.node.send(0, numbered(t)));
    net.runUntilIdle();
    const got = b.node.received.map((r) => idOf(r.frame));
    // Sent at 900: arrives at 1050, during the partition. Sent at 1900: dropped at send.
    const want: number[] = [];
    for (let t = 0; t <= 3000; t += 100) if (t + 150 < 1000 || t >= 2000) want.push(t);
    assert.deepEqual(got, want);
    assert.equal(link.ab.stats.dropped.partition, 31 - want.length);
    assert.equal(link.up, true);
    checkConservation(link);
  });

  test('setUp(false) / setUp(true) imperatively, and a one-way partition', () => {
    const { net, a, b, link } = pair({ latencyUs: 10, schedule: [{ at: 500, up: false, dir: 'ba' }] });
    link.setUp(false);
    a.node.send(0, numbered(1));
    net.run({ until: 100 });
    link.setUp(true);
    a.node.send(0, numbered(2));
    net.at(600, () => {
      a.node.send(0, numbered(3));
      b.node.send(0, numbered(4));
    });
    net.runUntilIdle();
    assert.deepEqual(
      b.node.received.map((r) => idOf(r.frame)),
      [2, 3],
    );
    assert.equal(a.node.received.length, 0);
    assert.equal(link.ab.up, true);
    assert.equal(link.ba.up, false);
    assert.equal(link.ba.stats.dropped.partition, 1);
  });
});

describe('crashed receivers and capture', () => {
  test('frames to a crashed node are dropped as "down"; a crashed node sends nothing', () => {
    const { net, a, b, link } = pair({ latencyUs: 10 });
    b.crash();
    a.node.send(0, numbered(1));
    b.node.send(0, numbered(2));
    net.runUntilIdle();
    assert.equal(link.ab.stats.dropped.down, 1);
    assert.equal(b.txWhileDown, 1);
    assert.equal(a.node.received.length, 0);
    b.restart();
    a.node.send(0, numbered(3));
    net.runUntilIdle();
    assert.deepEqual(
      b.node.received.map((r) => idOf(r.frame)),
      [3],
    );
  });

  test('capture as delivered (after loss and corruption, at arrival time) vs as sent', () => {
    const delivered = new PcapWriter();
    const sent = new PcapWriter();
    const one = pair({ latencyUs: 100, ab: { loss: 0.5 }, ba: { corrupt: 1 }, capture: delivered });
    const two = pair({
      latencyUs: 100,
      ab: { loss: 0.5 },
      ba: { corrupt: 1 },
      capture: sent,
      captureAt: 'send',
    });
    for (const { net, a, b } of [one, two]) {
      for (let i = 0; i < 50; i++) net.at(i, () => a.node.send(0, numbered(i)));
      net.at(1000, () => b.node.send(0, numbered(99)));
      net.runUntilIdle();
    }
    const d = parsePcap(delivered.toBuffer());
    const s = parsePcap(sent.toBuffer());
    assert.ok(!isWireError(d) && !isWireError(s));
    assert.equal(s.records.length, 51);
    assert.equal(d.records.length, one.link.ab.stats.delivered + 1);
    assert.ok(d.records.length < 45);
    // As delivered: stamped at arrival, and b->a shows the corrupted bytes.
    assert.equal(d.records[0].tsUs, 100 + idOf(d.records[0].frame));
    assert.equal(differingBits(d.records[d.records.length - 1].frame, numbered(99)), 1);
    // As sent: stamped at send, exact bytes.
    assert.equal(s.records[3].tsUs, 3);
    assert.deepEqual(s.records[50].frame, numbered(99));
    assert.equal(s.records[50].tsUs, 1000);
  });

  test('network.capture() attaches a writer after the fact', () => {
    const { net, a, link } = pair({ latencyUs: 1 });
    const w = new PcapWriter();
    net.capture(link, w);
    a.node.send(0, numbered(7));
    net.runUntilIdle();
    assert.equal(w.records, 1);
    link.capture(undefined);
    a.node.send(0, numbered(8));
    net.runUntilIdle();
    assert.equal(w.records, 1);
  });
});
