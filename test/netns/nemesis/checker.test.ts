/**
 * The nemesis checker's own judgement, without a network: the self-locating streams tell a
 * duplicate from a hole from garbage however the bytes are chunked, an HTTP body's misplaced
 * bytes are located, and the stale-sender rule follows the legitimate senders.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fillPattern } from '../../../src/link/sim/pattern.ts';
import { staleSenders, type VipFrame } from './checker.ts';
import { locate, locatePattern, StreamChecker, streamBytes } from './stream.ts';

const KEY = 0x10001;

/** Feeds `data` to a checker in chunks of the given sizes (cycled). */
function feed(data: Buffer, sizes: number[]): StreamChecker {
  const c = new StreamChecker(KEY, 'test');
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length], data.length - at);
    c.push(data.subarray(at, at + n));
    at += n;
  }
  c.end();
  return c;
}

const CHUNKINGS = [[1], [7], [64, 3, 1500], [100_000]];

describe('self-locating streams', () => {
  it('every offset locates itself, at any alignment', () => {
    for (const at of [0, 1, 7, 8, 9, 1023, 65_535, 1_000_001])
      assert.equal(locate(KEY, streamBytes(KEY, at, 24), 0), at);
    assert.equal(locate(KEY + 1, streamBytes(KEY, 800, 24), 0), undefined, 'another stream does not locate');
    assert.equal(locate(KEY, Buffer.alloc(24, 0x55), 0), undefined);
  });

  it('a clean stream has no damage however it is chunked', () => {
    for (const sizes of CHUNKINGS) {
      const c = feed(streamBytes(KEY, 0, 20_000), sizes);
      assert.deepEqual(c.damage, { duplicated: 0, lost: 0, corrupted: 0, events: [] }, `chunks ${sizes}`);
      assert.equal(c.high, 20_000);
    }
  });

  it('bytes delivered again count as duplicated, not lost', () => {
    // 0..1000, then 600..1000 again, then on to 3000: a replay of 400 bytes.
    const d = Buffer.concat([
      streamBytes(KEY, 0, 1000),
      streamBytes(KEY, 600, 400),
      streamBytes(KEY, 1000, 2000),
    ]);
    for (const sizes of CHUNKINGS) {
      const c = feed(d, sizes);
      assert.equal(c.damage.duplicated, 400, `chunks ${sizes}`);
      assert.equal(c.damage.lost, 0);
      assert.equal(c.damage.corrupted, 0);
      assert.equal(c.high, 3000);
    }
  });

  it('a hole counts as lost', () => {
    const d = Buffer.concat([streamBytes(KEY, 0, 1000), streamBytes(KEY, 1500, 1500)]);
    for (const sizes of CHUNKINGS) {
      const c = feed(d, sizes);
      assert.equal(c.damage.lost, 500, `chunks ${sizes}`);
      assert.equal(c.damage.duplicated, 0);
      assert.equal(c.damage.corrupted, 0);
      assert.match(c.damage.events[0], /bytes 1000\.\.1500 never arrived/);
    }
  });

  it('garbage counts as corrupted and the stream is found again after it', () => {
    const d = Buffer.concat([streamBytes(KEY, 0, 1000), Buffer.alloc(40, 0xee), streamBytes(KEY, 1040, 960)]);
    for (const sizes of CHUNKINGS) {
      const c = feed(d, sizes);
      assert.ok(
        c.damage.corrupted >= 40 && c.damage.corrupted <= 48,
        `chunks ${sizes}: ${c.damage.corrupted}`,
      );
      assert.equal(c.damage.duplicated, 0);
      assert.equal(c.high, 2000);
    }
  });

  it('a truncated stream leaves `high` short (the client counts the rest as owed)', () => {
    const c = feed(streamBytes(KEY, 0, 777), [100]);
    assert.equal(c.high, 777);
  });

  it("an HTTP body's misplaced bytes are located near where they were expected", () => {
    const body = Buffer.alloc(50_000);
    fillPattern(80, 0, body);
    assert.equal(locatePattern(80, body, 30_000, 31_000), 30_000);
    assert.equal(locatePattern(80, body, 1234, 0), 1234);
    assert.equal(locatePattern(80, Buffer.alloc(16, 7), 0, 0), undefined);
  });
});

const frames = (...senders: string[]): VipFrame[] =>
  senders.map((sender, i) => ({ frame: i + 1, t: i / 100, sender, what: 'TCP' }));

describe('stale senders', () => {
  it('one sender, or a clean take-over, is not stale', () => {
    assert.equal(staleSenders(frames('a', 'a', 'a'), ['a']).count, 0);
    assert.equal(staleSenders(frames('a', 'a', 'b', 'b'), ['a', 'b']).count, 0);
    // The new active's first frame may come before the capture saw the old one at all.
    assert.equal(staleSenders(frames('b', 'b'), ['a', 'b']).count, 0);
  });

  it("the old sender after the new sender's first frame is stale, every frame of it", () => {
    const r = staleSenders(frames('a', 'b', 'a', 'b', 'a'), ['a', 'b']);
    assert.equal(r.count, 2);
    assert.match(r.examples[0], /frame 3 .* from a: TCP, after b's first frame 2/);
  });

  it('a later legitimate take-over by the old sender explains its frames', () => {
    assert.equal(staleSenders(frames('a', 'b', 'b', 'a', 'a'), ['a', 'b', 'a']).count, 0);
    // …but not those before it: b's frames after a took over again are stale.
    assert.equal(staleSenders(frames('a', 'b', 'a', 'b'), ['a', 'b', 'a']).count, 1);
  });

  it('a node that never became active, or an unknown MAC, is stale', () => {
    assert.equal(staleSenders(frames('a', 'b', 'a'), ['a']).count, 1);
    assert.equal(staleSenders(frames('a', '02:00:00:00:00:99'), ['a']).count, 1);
  });
});
