/**
 * Generic segmentation offload: with `gsoMaxFrame` the stack hands the link one big frame per
 * run of segments and the link cuts it (here in software, as the kernel does behind a TAP). What
 * reaches the wire must be exactly what the stack sends without GSO: the same frames, byte for
 * byte, in the same order, over a lossy link where recovery, SACK and FIN are in play.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { segmentTcpFrame } from '../../src/link/gso.ts';
import { ipFromString } from '../../src/stack/ip.ts';
import type { StackConnection } from '../../src/stack/stack.ts';
import { readU16 } from '../../src/wire/bytes.ts';
import { isWireError } from '../../src/wire/error.ts';
import { parseFrame } from '../../src/wire/frame.ts';
import { forEachSeed } from '../support/seeds.ts';
import { streamApp, world } from '../support/stack-sim.ts';

const BYTES = 300_000;

function run(seed: number, addr: string, gso: boolean, loss: number) {
  const w = world(seed, loss, gso ? { gsoMaxFrame: 65535 + 14 } : {});
  w.a.sent = [];
  w.b.sent = [];
  const appA = streamApp(w.a, BYTES, 1, 2);
  const appB = streamApp(w.b, BYTES, 2, 1);
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
  const sb = appB.st.get([...appB.st.keys()][0])!;
  assert.equal(sa.got, BYTES);
  assert.equal(sb.got, BYTES);
  assert.equal(sa.bad, -1);
  assert.equal(sb.bad, -1);
  const digest = (frames: Uint8Array[]) => {
    const h = createHash('sha256');
    for (const f of frames) h.update(f);
    return h.digest('hex');
  };
  return {
    a: digest(w.a.sent),
    b: digest(w.b.sent),
    frames: w.a.sent.length + w.b.sent.length,
    gsoFrames: w.a.stack.counters.gsoFrames + w.b.stack.counters.gsoFrames,
    badGso: w.a.badGso + w.b.badGso,
    maxFrame: Math.max(...w.a.sent.map((f) => f.length), ...w.b.sent.map((f) => f.length)),
  };
}

describe('GSO: the stack gathers segments, the link cuts them', () => {
  for (const [family, addr] of [
    ['IPv4', '198.18.0.2'],
    ['IPv6', 'fd00::2'],
  ] as const) {
    test(`${family}: the wire carries the same frames with and without GSO (0 % and 2 % loss)`, () => {
      for (const loss of [0, 0.02]) {
        const plain = run(7, addr, false, loss);
        const gso = run(7, addr, true, loss);
        assert.equal(gso.badGso, 0, 'every GSO frame was well-formed, partial checksum included');
        assert.ok(gso.gsoFrames > 10, `GSO was used (${gso.gsoFrames} frames)`);
        assert.equal(plain.gsoFrames, 0);
        assert.ok(
          gso.maxFrame <= 1514,
          `no piece exceeds the MTU (${gso.maxFrame}, plain ${plain.maxFrame})`,
        );
        assert.equal(gso.frames, plain.frames);
        assert.equal(gso.a, plain.a, `A's frames identical (loss ${loss})`);
        assert.equal(gso.b, plain.b, `B's frames identical (loss ${loss})`);
      }
    });
  }

  test('20 seeds at 3 % loss: same wire with and without GSO', () => {
    forEachSeed(20, (seed) => {
      const plain = run(seed, seed % 2 ? 'fd00::2' : '198.18.0.2', false, 0.03);
      const gso = run(seed, seed % 2 ? 'fd00::2' : '198.18.0.2', true, 0.03);
      assert.equal(gso.badGso, 0);
      assert.equal(gso.a, plain.a);
      assert.equal(gso.b, plain.b);
    });
  });
});

describe('segmentTcpFrame', () => {
  test('refuses what is not a GSO TCP frame; pieces parse with good checksums', () => {
    const w = world(1, 0, { gsoMaxFrame: 65535 + 14 });
    const frames: { f: Uint8Array; size: number }[] = [];
    // Capture the stack's GSO frames before the link cuts them.
    const orig = w.a.stack as unknown as { transmit: (f: Uint8Array, s?: number) => void };
    const inner = orig.transmit;
    orig.transmit = (f, s) => {
      if (s !== undefined) frames.push({ f: f.slice(), size: s });
      inner(f, s);
    };
    const appA = streamApp(w.a, 200_000, 1, 2);
    streamApp(w.b, 0, 2, 1);
    w.b.stack.listen(80, { onAccept: () => {} });
    w.net.at(0, (now) => {
      appA.drive(w.a.stack.connect(ipFromString('198.18.0.2')!, 80, now));
      w.a.handle.wake();
    });
    w.net.run({ until: 30_000_000 });
    assert.ok(frames.length > 0);
    const { f, size } = frames[frames.length >> 1];
    assert.ok(f.length > 1514);
    const pieces = segmentTcpFrame(f, size)!;
    assert.ok(pieces.length > 1);
    for (const p of pieces) {
      const parsed = parseFrame(p);
      assert.ok(!isWireError(parsed), 'piece parses (checksums verified)');
    }
    // A wrong partial checksum, a bad segment size, a non-TCP frame: refused.
    const bad = f.slice();
    const at = 14 + 20 + 16;
    bad[at] ^= 0x40;
    assert.equal(segmentTcpFrame(bad, size), undefined);
    assert.equal(segmentTcpFrame(f, 0), undefined);
    const udp = f.slice();
    udp[14 + 9] = 17;
    assert.equal(segmentTcpFrame(udp, size), undefined);
    assert.equal(segmentTcpFrame(f.subarray(0, 40), size), undefined);
    assert.equal(readU16(pieces[0], 14 + 2), pieces[0].length - 14);
  });
});
