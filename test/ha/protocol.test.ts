import assert from 'node:assert/strict';
import {
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  type KeyObject,
} from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type ChannelEvent,
  type ChannelOptions,
  checkKeys,
  HELLO_TAG_BYTES,
  KEY_ID_BYTES,
  keyId,
  MAX_KEYS,
  MESSAGE_HEADER_BYTES,
  MESSAGE_MIN_LENGTH,
  MIN_KEY_BYTES,
  PROTOCOL_VERSION,
  SecureChannel,
  TAG_BYTES,
} from '../../src/ha/protocol.ts';
import { Rng } from '../../src/link/sim/rng.ts';
import { readU32, writeU32 } from '../../src/wire/bytes.ts';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
const OTHER_KEY = Uint8Array.from({ length: 32 }, (_, i) => (i * 53 + 7) & 0xff);
const NEW_KEY = Uint8Array.from({ length: 32 }, (_, i) => (i * 29 + 3) & 0xff);

/** Offsets in a version-2 hello and message header (protocol.ts "Wire layout"). */
const HELLO_SHARE_AT = 22;
const HELLO_ID_LENGTH_AT = 54;
const AT_FLAGS = 5;
const AT_COUNTER = 11;

/** The key a hello's tags are made with (protocol.ts: HKDF-SHA256(psk, "", "takeover v2 hello")). */
function helloKey(psk: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', psk, new Uint8Array(0), 'takeover v2 hello', 32));
}

/** Replaces every tag of a hello by a fresh one over its (edited) body, made with `keys` in order. */
function resign(h: Uint8Array, keys: Uint8Array[]): Uint8Array {
  const bodyLength = h.length - HELLO_TAG_BYTES * keys.length;
  const out = h.slice();
  keys.forEach((k, i) => {
    out.set(
      createHmac('sha256', helloKey(k)).update(out.subarray(0, bodyLength)).digest(),
      bodyLength + HELLO_TAG_BYTES * i,
    );
  });
  return out;
}

/** True when `needle` occurs in `hay` (a byte-wise search). */
function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.length).includes(Buffer.from(needle));
}

function initiator(seed: number, extra: Partial<ChannelOptions> = {}): SecureChannel {
  return new SecureChannel({
    keys: [KEY],
    nodeId: 'node-a',
    initiator: true,
    rng: new Rng(seed).derive('a'),
    ...extra,
  });
}

function responder(seed: number, extra: Partial<ChannelOptions> = {}): SecureChannel {
  return new SecureChannel({
    keys: [KEY],
    nodeId: 'node-b',
    initiator: false,
    rng: new Rng(seed).derive('b'),
    ...extra,
  });
}

/** An initiator `a` and a responder `b` that have exchanged hellos. */
function pair(seed = 1, extra: Partial<ChannelOptions> = {}): { a: SecureChannel; b: SecureChannel } {
  const a = initiator(seed, extra);
  const b = responder(seed, extra);
  const ha = a.hello();
  const hb = b.hello();
  const id = a.keyIds.find((k) => b.keyIds.includes(k));
  assert.deepEqual(b.feed(ha), [{ kind: 'ready', peerId: 'node-a', keyId: id }]);
  assert.deepEqual(a.feed(hb), [{ kind: 'ready', peerId: 'node-b', keyId: id }]);
  return { a, b };
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = rng.nextU32();
    for (let k = 0; k < 4 && i + k < n; k++) b[i + k] = v >>> (8 * k);
  }
  return b;
}

/** Feeds `stream` in pieces of 0..maxPiece bytes (empty pieces included) and collects the events. */
function feedSplit(ch: SecureChannel, stream: Uint8Array, rng: Rng, maxPiece: number): ChannelEvent[] {
  const events: ChannelEvent[] = [];
  let i = 0;
  while (i < stream.length) {
    const k = Math.min(stream.length - i, rng.int(0, maxPiece));
    events.push(...ch.feed(stream.subarray(i, i + k)));
    i += k;
  }
  return events;
}

function messagesOf(events: ChannelEvent[]): { type: number; epoch: number; payload: Uint8Array }[] {
  return events.flatMap((e) =>
    e.kind === 'message' ? [{ type: e.type, epoch: e.epoch, payload: e.payload }] : [],
  );
}

/** The reason of the one error among `events`, which must be the last event. */
function theError(events: ChannelEvent[]): string {
  const errors = events.filter((e) => e.kind === 'error');
  assert.equal(errors.length, 1, `expected one error, got ${JSON.stringify(events.map((e) => e.kind))}`);
  const last = events[events.length - 1];
  assert.equal(last.kind, 'error', 'the error is the last event');
  return last.kind === 'error' ? last.reason : '';
}

describe('handshake', () => {
  test('both sides become ready and learn the peer id, whichever hello is fed first', () => {
    const a = initiator(1);
    const b = responder(1);
    assert.equal(a.ready, false);
    assert.equal(a.peerId, undefined);
    // b hears a before writing its own hello: its nonce exists from construction.
    assert.deepEqual(b.feed(a.hello()), [{ kind: 'ready', peerId: 'node-a', keyId: keyId(KEY) }]);
    assert.deepEqual(a.feed(b.hello()), [{ kind: 'ready', peerId: 'node-b', keyId: keyId(KEY) }]);
    assert.ok(a.ready && b.ready);
    assert.equal(a.peerId, 'node-b');
    assert.equal(b.peerId, 'node-a');
    // Both derived the same session key: a message goes each way.
    assert.equal(messagesOf(b.feed(a.seal(1, 0, Uint8Array.of(1)))).length, 1);
    assert.equal(messagesOf(a.feed(b.seal(1, 0, Uint8Array.of(2)))).length, 1);
  });

  test('hello layout: magic, version, flags, nonce, share, id, key ids, tags; hello() repeats the same bytes', () => {
    const a = initiator(1, { keys: [NEW_KEY, KEY] });
    const h = a.hello();
    assert.equal(PROTOCOL_VERSION, 2);
    assert.equal(
      h.length,
      4 + 1 + 1 + 16 + 32 + 1 + 'node-a'.length + 1 + 2 * (KEY_ID_BYTES + HELLO_TAG_BYTES),
    );
    assert.deepEqual([...h.subarray(0, 4)], [0x54, 0x4b, 0x4f, 0x56]);
    assert.equal(h[4], PROTOCOL_VERSION);
    assert.equal(h[5], 1);
    assert.equal(h[HELLO_ID_LENGTH_AT], 6);
    assert.equal(new TextDecoder().decode(h.subarray(55, 61)), 'node-a');
    assert.equal(h[61], 2, 'two keys offered');
    assert.equal(Buffer.from(h.subarray(62, 66)).toString('hex'), keyId(NEW_KEY), 'the current key first');
    assert.equal(Buffer.from(h.subarray(66, 70)).toString('hex'), keyId(KEY));
    // Each tag is HMAC-SHA256 under its key's hello key over everything before the tags.
    assert.deepEqual(resign(h, [NEW_KEY, KEY]), h);
    // Neither key appears on the wire.
    assert.ok(!contains(h, KEY) && !contains(h, NEW_KEY));
    assert.equal(responder(1).hello()[5], 0);
    assert.deepEqual(a.hello(), h);
    assert.equal(a.counters.bytesOut, h.length, 'a repeated hello() is counted once');
    // The nonce and the X25519 share come from the injected source: another seed, other ones.
    const h2 = initiator(2).hello();
    assert.notDeepEqual(h2.subarray(6, 22), h.subarray(6, 22));
    assert.notDeepEqual(
      h2.subarray(HELLO_SHARE_AT, HELLO_SHARE_AT + 32),
      h.subarray(HELLO_SHARE_AT, HELLO_SHARE_AT + 32),
    );
  });

  test('a key id is the first 4 bytes of SHA-256 of the key, in hex', () => {
    // printf '\x00\x01...\x0f' | sha256sum: be45cb2605bf36bebde684841a28f0fd43c69850a3dce5fedba69928ee3a8991
    assert.equal(keyId(Uint8Array.from({ length: 16 }, (_, i) => i)), 'be45cb26');
  });

  test('a hello fed byte by byte, then a message in the same chunk as its end', () => {
    const a = initiator(3);
    const b = responder(3);
    a.feed(b.hello());
    const h = a.hello();
    for (let i = 0; i < h.length - 1; i++) assert.deepEqual(b.feed(h.subarray(i, i + 1)), []);
    const m = a.seal(7, 9, Uint8Array.of(1, 2, 3));
    const events = b.feed(concat([h.subarray(h.length - 1), m]));
    assert.deepEqual(
      events.map((e) => e.kind),
      ['ready', 'message'],
    );
  });

  test('a non-ASCII node id up to 64 bytes', () => {
    const prefix = 'nœud-β-';
    const id = prefix + 'x'.repeat(64 - new TextEncoder().encode(prefix).length);
    assert.equal(new TextEncoder().encode(id).length, 64);
    const a = new SecureChannel({ keys: [KEY], nodeId: id, initiator: true, rng: new Rng(4) });
    const b = responder(4);
    assert.deepEqual(b.feed(a.hello()), [{ kind: 'ready', peerId: id, keyId: keyId(KEY) }]);
  });

  test('wrong key: refused at the hello, naming both key ids', () => {
    const a = initiator(1);
    const b = responder(1, { keys: [OTHER_KEY] });
    const reason = theError(b.feed(a.hello()));
    assert.equal(
      reason,
      `hello: no pre-shared key in common: the peer offers key ${keyId(KEY)}, this node holds ${keyId(OTHER_KEY)} ` +
        "(a key's id is the first 8 hex digits of its SHA-256); add the same key to both key files and send SIGHUP.",
    );
    assert.equal(b.ready, false);
    // And the other way round, from the initiator's side.
    assert.match(
      theError(a.feed(responder(1, { keys: [OTHER_KEY] }).hello())),
      /no pre-shared key in common/,
    );
  });

  test('a hello claiming a key we hold but signed with another is refused', () => {
    // Someone who knows the id (it is public) but not the key.
    const forged = resign(initiator(1).hello(), [OTHER_KEY]);
    assert.equal(
      theError(responder(1).feed(forged)),
      `hello: authentication failed with key ${keyId(KEY)}: the hello was forged or corrupted ` +
        '(or the peer holds another key with the same id).',
    );
  });

  test('any flipped byte of a hello is refused before ready', () => {
    const h = initiator(1, { keys: [NEW_KEY, KEY] }).hello();
    for (let pos = 0; pos < h.length; pos++) {
      const bad = h.slice();
      bad[pos] ^= 0x10;
      const b = responder(1, { keys: [KEY, NEW_KEY] });
      const events = b.feed(bad);
      assert.equal(b.ready, false, `byte ${pos}`);
      // A length field made larger leaves the hello incomplete: it waits, delivering nothing.
      assert.ok(
        events.every((e) => e.kind === 'error'),
        `byte ${pos}`,
      );
      if (events.length === 0) assert.ok(b.pendingBytes > 0, `byte ${pos}`);
    }
  });

  test('version mismatch in the hello: the reason names both versions', () => {
    const h = initiator(1).hello();
    h[4] = PROTOCOL_VERSION + 1;
    const reason = theError(responder(1).feed(h));
    assert.match(reason, new RegExp(`version ${PROTOCOL_VERSION + 1}\\b`));
    assert.match(reason, new RegExp(`version ${PROTOCOL_VERSION}\\b`));
  });

  test('a stranger is refused at its first wrong byte', () => {
    const b = responder(1);
    const reason = theError(b.feed(new TextEncoder().encode('G')));
    assert.match(reason, /bad magic 0x47 .*not a takeover/);
  });

  test('node id length 0 or above 64 is refused before the MAC', () => {
    for (const len of [0, 65, 255]) {
      const h = initiator(1).hello();
      h[HELLO_ID_LENGTH_AT] = len;
      assert.match(theError(responder(1).feed(h)), new RegExp(`node id length ${len} is outside 1\\.\\.64`));
    }
  });

  test('two initiators, or our own hello reflected back, are refused', () => {
    const a1 = initiator(1);
    const a2 = new SecureChannel({ keys: [KEY], nodeId: 'node-c', initiator: true, rng: new Rng(2) });
    assert.match(theError(a1.feed(a2.hello())), /also claims to be the initiator/);
    const b = responder(1);
    assert.match(theError(b.feed(b.hello())), /also claims to be the responder/);
  });

  test('unknown flag bits are refused (after the MAC verified)', () => {
    const a = initiator(1);
    const h = a.hello();
    // Re-sign a hello with flags 0x81 to show it is the flag, not the tag, that is refused.
    const edited = h.slice();
    edited[5] = 0x81;
    assert.match(theError(responder(1).feed(resign(edited, [KEY]))), /unknown flags 0x81/);
  });

  test('a low-order X25519 share (all zeros) is refused, even in a hello signed with the key', () => {
    const edited = initiator(1).hello();
    edited.fill(0, HELLO_SHARE_AT, HELLO_SHARE_AT + 32);
    assert.equal(
      theError(responder(1).feed(resign(edited, [KEY]))),
      "hello: the peer's X25519 key share is invalid.",
    );
  });

  test('a key offered twice, or a key count of 0 or above 8, is refused', () => {
    const h = initiator(1, { keys: [NEW_KEY, KEY] }).hello();
    const dup = h.slice();
    dup.copyWithin(66, 62, 66);
    assert.equal(theError(responder(1).feed(dup)), `hello: key id ${keyId(NEW_KEY)} is offered twice.`);
    for (const count of [0, MAX_KEYS + 1]) {
      const bad = h.slice();
      bad[61] = count;
      assert.equal(theError(responder(1).feed(bad)), `hello: key count ${count} is outside 1..8.`);
    }
  });
});

describe('messages', () => {
  test('many messages of random sizes (0 to 1 MiB), both ways, random splits: type, epoch and bytes intact', () => {
    const rng = new Rng(42);
    const { a, b } = pair(42);
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const sent: { type: number; epoch: number; payload: Uint8Array }[] = [];
      const sizes = [0, 1, 1 << 20, 65536 - MESSAGE_HEADER_BYTES - TAG_BYTES, 0];
      for (let i = 0; i < 150; i++) sizes.push(rng.chance(0.8) ? rng.int(0, 2000) : rng.int(2000, 200_000));
      const frames: Uint8Array[] = [];
      for (const size of sizes) {
        const m = { type: rng.int(0, 255), epoch: rng.nextU32(), payload: randomBytes(rng, size) };
        sent.push(m);
        frames.push(from.seal(m.type, m.epoch, m.payload));
      }
      const got = messagesOf(feedSplit(to, concat(frames), rng, 70_000));
      assert.equal(got.length, sent.length);
      for (let i = 0; i < sent.length; i++) assert.deepEqual(got[i], sent[i], `message ${i + 1}`);
      assert.equal(to.counters.messagesIn, sent.length);
      assert.equal(from.counters.messagesOut, sent.length);
      assert.equal(to.pendingBytes, 0);
    }
    assert.equal(a.counters.bytesOut, b.counters.bytesIn);
    assert.equal(b.counters.bytesOut, a.counters.bytesIn);
  });

  test('byte-by-byte feeding, extreme type and epoch values', () => {
    const { a, b } = pair(5);
    const cases = [
      { type: 0, epoch: 0, payload: new Uint8Array(0) },
      { type: 255, epoch: 0xffffffff, payload: Uint8Array.of(0xff) },
      { type: 17, epoch: 3, payload: randomBytes(new Rng(5), 3000) },
    ];
    for (const c of cases) {
      const f = a.seal(c.type, c.epoch, c.payload);
      assert.equal(readU32(f, 0), f.length - 4);
      const events: ChannelEvent[] = [];
      for (let i = 0; i < f.length; i++) events.push(...b.feed(f.subarray(i, i + 1)));
      assert.deepEqual(messagesOf(events), [c]);
      assert.equal(events.length, 1);
    }
  });

  test('a payload is a copy: reusing the fed bytes later does not change it', () => {
    const { a, b } = pair(6);
    const f = a.seal(1, 1, Uint8Array.of(10, 20, 30));
    const [m] = messagesOf(b.feed(f));
    f.fill(0);
    assert.deepEqual([...m.payload], [10, 20, 30]);
  });

  test('truncated input: no event and no error until the rest arrives', () => {
    const { a, b } = pair(7);
    const f = a.seal(2, 5, randomBytes(new Rng(7), 500));
    assert.deepEqual(b.feed(f.subarray(0, 3)), [], 'not even a whole length field');
    assert.deepEqual(b.feed(f.subarray(3, f.length - 1)), [], 'all but the last tag byte');
    assert.equal(b.pendingBytes, f.length - 1);
    assert.equal(b.error, undefined);
    assert.equal(messagesOf(b.feed(f.subarray(f.length - 1))).length, 1);
    assert.equal(b.pendingBytes, 0);
  });
});

describe('rejected messages', () => {
  test('any corrupted byte of a small message is refused, none delivered', () => {
    const rng = new Rng(8);
    const payload = randomBytes(rng, 100);
    // maxMessageBytes small enough that a corrupted length field either fails at once or is
    // satisfied by the three frames that follow.
    const opts = { maxMessageBytes: 400 };
    const probe = pair(8, opts);
    const frameLength = probe.a.seal(1, 1, payload).length;
    for (let pos = 0; pos < frameLength; pos++) {
      const { a, b } = pair(8, opts);
      const frames = [1, 2, 3, 4].map((i) => a.seal(1, i, payload));
      const bad = frames[0].slice();
      bad[pos] ^= rng.int(1, 255);
      const events = b.feed(concat([bad, ...frames.slice(1)]));
      assert.equal(messagesOf(events).length, 0, `byte ${pos}`);
      const reason = theError(events);
      if (pos >= 4)
        assert.match(reason, pos === 4 ? /protocol version/ : /^message 1: authentication failed/);
      else assert.match(reason, /^message 1: (authentication failed|length)/);
    }
  });

  test('sampled corrupted bytes of a 64 KiB message (header, payload, tag) are refused', () => {
    const rng = new Rng(9);
    const payload = randomBytes(rng, 65536);
    const opts = { maxMessageBytes: 70_000 };
    const { a } = pair(9, opts);
    const len = a.seal(0, 0, payload).length;
    const positions = new Set<number>();
    for (let i = 0; i < MESSAGE_HEADER_BYTES; i++) positions.add(i);
    for (let i = len - TAG_BYTES; i < len; i++) positions.add(i);
    while (positions.size < 150) positions.add(rng.int(0, len - 1));
    for (const pos of positions) {
      const { a, b } = pair(9, opts);
      const f1 = a.seal(3, 4, payload);
      const f2 = a.seal(3, 4, payload);
      f1[pos] ^= rng.int(1, 255);
      const events = feedSplit(b, concat([f1, f2]), rng, 65536);
      assert.equal(messagesOf(events).length, 0, `byte ${pos}`);
      theError(events);
    }
  });

  test('version mismatch in a message: the reason names both versions', () => {
    const { a, b } = pair(10);
    const f = a.seal(1, 1, Uint8Array.of(1));
    f[4] = 9;
    // Judged as soon as the version byte arrives, before the body.
    const reason = theError(b.feed(f.subarray(0, 5)));
    assert.equal(reason, `message 1: protocol version 9, this node speaks version ${PROTOCOL_VERSION}.`);
  });

  test('a replayed message is refused, naming the expected and received counters', () => {
    const { a, b } = pair(11);
    const m1 = a.seal(1, 1, Uint8Array.of(1));
    const m2 = a.seal(1, 1, Uint8Array.of(2));
    assert.equal(messagesOf(b.feed(concat([m1, m2]))).length, 2);
    assert.equal(
      theError(b.feed(m1)),
      'message 3: expected counter 3, got 1 (a replayed, dropped or reordered message).',
    );
  });

  test('a dropped or reordered message is refused', () => {
    const { a, b } = pair(12);
    a.seal(1, 1, Uint8Array.of(1)); // never delivered
    const m2 = a.seal(1, 1, Uint8Array.of(2));
    assert.match(theError(b.feed(m2)), /^message 1: expected counter 1, got 2 /);
  });

  test('a message from an earlier session does not verify in a new one (fresh nonces and shares)', () => {
    const s1 = pair(13);
    const s2 = pair(14);
    const old = s1.a.seal(1, 1, Uint8Array.of(1));
    assert.equal(
      theError(s2.b.feed(old)),
      'message 1: authentication failed (forged, corrupted, reflected, or from another session or key phase).',
    );
    // The protection is the nonces: with the same ones (a replayed seed) it would verify, which is
    // why production needs an unpredictable RandomSource.
    const s3 = pair(13);
    assert.equal(messagesOf(s3.b.feed(old)).length, 1);
  });

  test('our own message reflected back to us is refused', () => {
    const { a } = pair(15);
    const m = a.seal(1, 1, Uint8Array.of(1));
    assert.match(theError(a.feed(m)), /^message 1: authentication failed/);
  });

  test('an absurd length fails at once, without waiting for (or allocating) the body', () => {
    const { b } = pair(16);
    const before = process.memoryUsage().arrayBuffers;
    assert.match(
      theError(b.feed(Uint8Array.of(0xff, 0xff, 0xff, 0xff))),
      /length 4294967295 exceeds maxMessageBytes/,
    );
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 << 20);

    const small = pair(16, { maxMessageBytes: 1000 });
    const h = new Uint8Array(4);
    writeU32(h, 0, 1001);
    assert.equal(theError(small.b.feed(h)), 'message 1: length 1001 exceeds maxMessageBytes 1000.');
    writeU32(h, 0, MESSAGE_MIN_LENGTH - 1);
    assert.match(theError(pair(16).b.feed(h)), /length 30 is below the minimum 31/);
  });

  test('after an error nothing more comes out, and the rest is counted as rejected', () => {
    const { a, b } = pair(17);
    const good = a.seal(1, 1, Uint8Array.of(1));
    const bad = good.slice();
    bad[bad.length - 1] ^= 1;
    theError(b.feed(bad));
    assert.equal(b.counters.rejected, 1);
    assert.equal(b.ready, false);
    assert.match(b.error ?? '', /authentication failed/);
    assert.deepEqual(b.feed(good), []);
    assert.deepEqual(b.feed(a.seal(1, 1, Uint8Array.of(2))), []);
    assert.equal(b.counters.rejected, 3);
    assert.equal(b.counters.messagesIn, 0);
    assert.throws(() => b.seal(1, 1, Uint8Array.of(1)), /the channel failed/);
  });
});

describe('confidentiality', () => {
  test('a known plaintext does not appear in the sealed bytes, and sealing it twice gives two ciphertexts', () => {
    const { a, b } = pair(30);
    const secret = new TextEncoder().encode(
      'GET /account/4242?pin=1234 HTTP/1.1\r\nCookie: session=s3cr3t\r\n\r\n',
    );
    const payload = concat([secret, secret, secret]);
    const f1 = a.seal(4, 7, payload);
    const f2 = a.seal(4, 7, payload);
    assert.equal(
      f1.length,
      MESSAGE_HEADER_BYTES + payload.length + TAG_BYTES,
      'no padding: header, ciphertext, tag',
    );
    // No run of 8 plaintext bytes survives anywhere in either frame.
    for (const f of [f1, f2])
      for (let i = 0; i + 8 <= secret.length; i++)
        assert.ok(!contains(f, secret.subarray(i, i + 8)), `plaintext bytes ${i}..${i + 8} leaked`);
    const body = (f: Uint8Array) => f.subarray(MESSAGE_HEADER_BYTES, MESSAGE_HEADER_BYTES + payload.length);
    assert.notDeepEqual(body(f1), body(f2), 'a fresh nonce (the counter) per message');
    // The header stays in clear (the framing needs it) and is authenticated.
    assert.equal(readU32(f1, 0), f1.length - 4);
    assert.equal(f1[6], 4);
    assert.equal(readU32(f1, 7), 7);
    assert.equal(readU32(f1, AT_COUNTER + 4), 1);
    assert.equal(readU32(f2, AT_COUNTER + 4), 2);
    const got = messagesOf(b.feed(concat([f1, f2])));
    assert.deepEqual(got, [
      { type: 4, epoch: 7, payload },
      { type: 4, epoch: 7, payload },
    ]);
  });

  test('an all-zero payload does not come out as a pattern either (each direction its own key)', () => {
    const { a, b } = pair(31);
    const zeros = new Uint8Array(4096);
    const fa = a.seal(1, 1, zeros);
    const fb = b.seal(1, 1, zeros);
    const ca = fa.subarray(MESSAGE_HEADER_BYTES, MESSAGE_HEADER_BYTES + 4096);
    const cb = fb.subarray(MESSAGE_HEADER_BYTES, MESSAGE_HEADER_BYTES + 4096);
    assert.ok(!contains(ca, new Uint8Array(16)), 'no zero block in the ciphertext');
    // Same counter (1), same plaintext, both directions: different keys give different bytes.
    assert.notDeepEqual(ca, cb);
    // Bytes are spread: every value occurs (4096 random-looking bytes miss one with p < 1e-6).
    assert.equal(new Set(ca).size, 256);
  });
});

describe('replay, reflection and forgery across sessions and phases', () => {
  test('a recorded session replayed to a fresh responder: the hello passes, the first message is refused', () => {
    const a = initiator(32);
    const b = responder(32);
    const recorded = [a.hello()];
    a.feed(b.hello());
    for (let i = 0; i < 3; i++) recorded.push(a.seal(1, 1, Uint8Array.of(i)));
    assert.equal(messagesOf(b.feed(concat(recorded))).length, 3);
    // The replayer cannot answer as the initiator: the new responder's share and nonce differ.
    const victim = responder(33);
    const events = victim.feed(concat(recorded));
    assert.equal(events[0].kind, 'ready', 'a hello proves a key, not freshness (protocol.ts "Limits")');
    assert.match(theError(events), /^message 1: authentication failed/);
    assert.equal(messagesOf(events).length, 0);
  });

  test('a message spliced from another session with the same key and counter is refused', () => {
    const s1 = pair(34);
    const s2 = pair(35);
    const m1 = s1.a.seal(1, 1, Uint8Array.of(1));
    s2.a.seal(1, 1, Uint8Array.of(1));
    // Same key, same counter 1, same header: only the session keys differ.
    assert.match(theError(s2.b.feed(m1)), /^message 1: authentication failed/);
  });

  test('a truncated frame (length field shortened to match) is refused', () => {
    const { a, b } = pair(36);
    const f = a.seal(1, 1, randomBytes(new Rng(36), 100));
    const cut = f.slice(0, f.length - 1);
    writeU32(cut, 0, cut.length - 4);
    assert.match(theError(b.feed(cut)), /^message 1: authentication failed/);
  });

  test('a message whose header (type, epoch, counter, key phase) is rewritten is refused', () => {
    const edits: [string, (f: Uint8Array) => void][] = [
      [
        'type',
        (f) => {
          f[6] ^= 1;
        },
      ],
      ['epoch', (f) => writeU32(f, 7, 99)],
      [
        'counter',
        (f) => {
          f[AT_COUNTER + 7] ^= 1;
        },
      ],
      [
        'key phase',
        (f) => {
          f[AT_FLAGS] ^= 1;
        },
      ],
      [
        'reserved flag',
        (f) => {
          f[AT_FLAGS] ^= 0x80;
        },
      ],
    ];
    for (const [what, edit] of edits) {
      const { a, b } = pair(37);
      const f = a.seal(1, 1, Uint8Array.of(1, 2, 3));
      edit(f);
      assert.match(theError(b.feed(f)), /^message 1: authentication failed/, what);
    }
  });

  test('our own message reflected back is refused in both directions, and a reflected hello too', () => {
    const { a, b } = pair(38);
    assert.match(theError(b.feed(b.seal(1, 1, Uint8Array.of(1)))), /^message 1: authentication failed/);
    assert.match(theError(a.feed(a.seal(1, 1, Uint8Array.of(1)))), /^message 1: authentication failed/);
  });
});

describe('key schedule', () => {
  /** What a third party computes from a recorded handshake: the documented derivation. */
  function thirdParty(ha: Uint8Array, hb: Uint8Array, psk: Uint8Array, dh: Uint8Array) {
    const body = (h: Uint8Array) => h.subarray(0, h.length - HELLO_TAG_BYTES * h[h[HELLO_ID_LENGTH_AT] + 55]);
    const transcript = createHash('sha256').update(body(ha)).update(body(hb)).digest();
    const ikm = concat([psk, dh]);
    return new Uint8Array(hkdfSync('sha256', ikm, transcript, 'takeover v2 initiator->responder', 32));
  }

  /** Opens a sealed frame with AES-256-GCM under `key` as protocol.ts describes, or undefined. */
  function open(frame: Uint8Array, key: Uint8Array): Uint8Array | undefined {
    const header = frame.subarray(0, MESSAGE_HEADER_BYTES);
    const iv = new Uint8Array(12);
    iv.set(header.subarray(AT_COUNTER, AT_COUNTER + 8), 4);
    const d = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    d.setAAD(header);
    d.setAuthTag(frame.subarray(frame.length - TAG_BYTES));
    const plain = d.update(frame.subarray(MESSAGE_HEADER_BYTES, frame.length - TAG_BYTES));
    try {
      d.final();
      return new Uint8Array(plain);
    } catch {
      return undefined;
    }
  }

  /** The X25519 private key a channel draws from `rng` (its nonce first, then 32 bytes). */
  function privateShare(rng: Rng): KeyObject {
    for (let i = 0; i < 4; i++) rng.nextU32();
    const raw = new Uint8Array(32);
    for (let i = 0; i < 32; i += 4) writeU32(raw, i, rng.nextU32());
    const prefix = Buffer.from('302e020100300506032b656e04220420', 'hex');
    return createPrivateKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'pkcs8' });
  }

  test('the documented derivation is exact: psk and the X25519 secret open a recorded message', () => {
    const { a } = pair(60);
    const ha = initiator(60).hello();
    const hb = responder(60).hello();
    const secret = new TextEncoder().encode('replicated bytes');
    const frame = a.seal(1, 1, secret);
    const share = hb.subarray(HELLO_SHARE_AT, HELLO_SHARE_AT + 32);
    const publicKey = createPublicKey({
      key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), share]),
      format: 'der',
      type: 'spki',
    });
    const dh = diffieHellman({ privateKey: privateShare(new Rng(60).derive('a')), publicKey });
    assert.deepEqual(open(frame, thirdParty(ha, hb, KEY, dh)), secret);
  });

  test('forward secrecy: the pre-shared key and the recorded hellos alone do not open a message', () => {
    const { a } = pair(61);
    const ha = initiator(61).hello();
    const hb = responder(61).hello();
    const frame = a.seal(1, 1, new TextEncoder().encode('replicated bytes'));
    // Everything but the X25519 secret: the key file, both hellos, a guess of an all-zero secret.
    assert.equal(open(frame, thirdParty(ha, hb, KEY, new Uint8Array(0))), undefined);
    assert.equal(open(frame, thirdParty(ha, hb, KEY, new Uint8Array(32))), undefined);
  });

  test('both node ids are bound into the keys: same key, nonces and shares, another peer id, no interop', () => {
    const s1 = pair(62);
    const a2 = initiator(62);
    const c = responder(62, { nodeId: 'node-c' });
    c.feed(a2.hello());
    a2.feed(c.hello());
    // Same seeds: the nonces and shares are those of s1; only the responder's id differs.
    assert.match(theError(c.feed(s1.a.seal(1, 1, Uint8Array.of(1)))), /authentication failed/);
  });
});

describe('key update', () => {
  /** The key-phase bit of each frame. */
  const phases = (frames: Uint8Array[]) => frames.map((f) => f[AT_FLAGS]);

  test('after keyUpdateMessages messages each direction moves to its next key; the receiver follows', () => {
    const { a, b } = pair(40, { keyUpdateMessages: 3 });
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const frames = Array.from({ length: 10 }, (_, i) => from.seal(2, 1, Uint8Array.of(i)));
      assert.deepEqual(phases(frames), [0, 0, 0, 1, 1, 1, 0, 0, 0, 1]);
      const got = messagesOf(feedSplit(to, concat(frames), new Rng(40), 30));
      assert.deepEqual(
        got.map((m) => m.payload[0]),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      );
      assert.equal(from.counters.keyUpdatesOut, 3);
      assert.equal(to.counters.keyUpdatesIn, 3);
    }
  });

  test('after keyUpdateBytes payload bytes; a message larger than the bound goes alone under a fresh key', () => {
    const { a, b } = pair(41, { keyUpdateBytes: 1000 });
    const sizes = [400, 400, 400, 1500, 1500, 10, 990, 1];
    const frames = sizes.map((n) => a.seal(1, 1, new Uint8Array(n)));
    // 400+400 fit, +400 would not; 1500 alone; 1500 alone; 10+990 fit exactly; +1 does not.
    assert.deepEqual(phases(frames), [0, 0, 1, 0, 1, 0, 0, 1]);
    assert.deepEqual(
      messagesOf(b.feed(concat(frames))).map((m) => m.payload.length),
      sizes,
    );
  });

  test('requestKeyUpdate moves the next message to the next key, once', () => {
    const { a, b } = pair(42);
    const f1 = a.seal(1, 1, Uint8Array.of(1));
    a.requestKeyUpdate();
    const f2 = a.seal(1, 1, Uint8Array.of(2));
    const f3 = a.seal(1, 1, Uint8Array.of(3));
    assert.deepEqual(phases([f1, f2, f3]), [0, 1, 1]);
    assert.equal(messagesOf(b.feed(concat([f1, f2, f3]))).length, 3);
    assert.equal(b.counters.keyUpdatesIn, 1);
  });

  test('the old key is erased: its bytes are zeroed, and a message of the earlier phase no longer opens', () => {
    const { a, b } = pair(43, { keyUpdateMessages: 2 });
    type Inside = { send: { key: Uint8Array }; recv: { key: Uint8Array } };
    const sendKey0 = (a as unknown as Inside).send.key;
    const recvKey0 = (b as unknown as Inside).recv.key;
    assert.ok(sendKey0.some((x) => x !== 0));
    const m1 = a.seal(1, 1, Uint8Array.of(1));
    const m2 = a.seal(1, 1, Uint8Array.of(2));
    const m3 = a.seal(1, 1, Uint8Array.of(3)); // phase 1
    assert.ok(
      sendKey0.every((x) => x === 0),
      "the sender's old key is zeroed",
    );
    assert.equal(messagesOf(b.feed(concat([m1, m2, m3]))).length, 3);
    assert.ok(
      recvKey0.every((x) => x === 0),
      "the receiver's old key is zeroed",
    );
    // m1 replayed now: its phase bit says "next key", and under that key it does not open.
    assert.match(theError(b.feed(m1)), /^message 4: authentication failed/);
  });

  test('a replay inside the current phase is still named a replay', () => {
    const { a, b } = pair(44, { keyUpdateMessages: 2 });
    const frames = [1, 2, 3].map((i) => a.seal(1, 1, Uint8Array.of(i)));
    assert.equal(messagesOf(b.feed(concat(frames))).length, 3);
    assert.equal(
      theError(b.feed(frames[2])),
      'message 4: expected counter 4, got 3 (a replayed, dropped or reordered message).',
    );
  });

  test('a forged message with a flipped phase does not move the receiver to the next key', () => {
    const { a, b } = pair(45);
    const good = a.seal(1, 1, Uint8Array.of(1));
    const forged = good.slice();
    forged[AT_FLAGS] ^= 1;
    const events = b.feed(forged);
    theError(events);
    assert.equal(b.counters.keyUpdatesIn, 0);
  });
});

describe('key rotation (several pre-shared keys)', () => {
  /** Handshake of an initiator holding `ik` with a responder holding `rk`: both events lists. */
  function handshake(ik: Uint8Array[], rk: Uint8Array[], seed = 50) {
    const a = initiator(seed, { keys: ik });
    const b = responder(seed, { keys: rk });
    return { a, b, atB: b.feed(a.hello()), atA: a.feed(b.hello()) };
  }

  test('a peer with [new, old] talks to a peer with [old], either side dialling: the old key is used', () => {
    for (const [ik, rk] of [
      [[NEW_KEY, KEY], [KEY]],
      [[KEY], [NEW_KEY, KEY]],
    ]) {
      const { a, b, atA, atB } = handshake(ik, rk);
      assert.deepEqual(atB, [{ kind: 'ready', peerId: 'node-a', keyId: keyId(KEY) }]);
      assert.deepEqual(atA, [{ kind: 'ready', peerId: 'node-b', keyId: keyId(KEY) }]);
      assert.deepEqual(messagesOf(b.feed(a.seal(1, 1, Uint8Array.of(7)))).length, 1);
      assert.deepEqual(messagesOf(a.feed(b.seal(1, 1, Uint8Array.of(8)))).length, 1);
    }
  });

  test("both holding both keys: the initiator's first one is used, whatever the responder's order", () => {
    const cases: [Uint8Array[], Uint8Array[], Uint8Array][] = [
      [[KEY, NEW_KEY], [KEY, NEW_KEY], KEY], // step 1: new added on both, old still current
      [[NEW_KEY, KEY], [KEY, NEW_KEY], NEW_KEY], // step 2, half done
      [[KEY, NEW_KEY], [NEW_KEY, KEY], KEY],
      [[NEW_KEY, KEY], [NEW_KEY], NEW_KEY], // step 3, half done
      [[NEW_KEY], [NEW_KEY, KEY], NEW_KEY],
    ];
    for (const [ik, rk, used] of cases) {
      const { a, b, atA, atB } = handshake(ik, rk);
      assert.equal(atA[0].kind === 'ready' && atA[0].keyId, keyId(used));
      assert.equal(atB[0].kind === 'ready' && atB[0].keyId, keyId(used));
      assert.equal(a.keyId, keyId(used));
      assert.equal(messagesOf(b.feed(a.seal(1, 1, Uint8Array.of(1)))).length, 1);
    }
  });

  test('the session keys depend on the key used: the same hellos with another shared key do not interoperate', () => {
    // Same seeds, so the same nonces and shares: only the key differs.
    const s1 = handshake([KEY], [KEY], 51);
    const s2 = handshake([NEW_KEY], [NEW_KEY], 51);
    assert.match(theError(s2.b.feed(s1.a.seal(1, 1, Uint8Array.of(1)))), /authentication failed/);
  });

  test('a peer whose only key we do not hold is refused on both sides', () => {
    const { atA, atB } = handshake([NEW_KEY], [KEY, OTHER_KEY]);
    assert.match(
      theError(atB),
      new RegExp(
        `no pre-shared key in common: the peer offers key ${keyId(NEW_KEY)}, this node holds ${keyId(KEY)}, ${keyId(OTHER_KEY)}`,
      ),
    );
    assert.match(
      theError(atA),
      new RegExp(
        `the peer offers keys ${keyId(KEY)}, ${keyId(OTHER_KEY)}, this node holds ${keyId(NEW_KEY)}`,
      ),
    );
  });

  test('no downgrade: striking the new key from an offer breaks the remaining tag', () => {
    const h = initiator(52, { keys: [NEW_KEY, KEY] }).hello();
    // Rebuild the hello as if it offered only KEY, keeping KEY's original tag.
    const bodyLength = h.length - 2 * HELLO_TAG_BYTES;
    const stripped = concat([
      h.subarray(0, 61),
      Uint8Array.of(1),
      h.subarray(66, 70),
      h.subarray(bodyLength + HELLO_TAG_BYTES),
    ]);
    assert.match(
      theError(responder(52, { keys: [NEW_KEY, KEY] }).feed(stripped)),
      /authentication failed with key/,
    );
  });
});

describe('programming errors throw', () => {
  test('seal before ready, or before hello()', () => {
    const a = initiator(1);
    a.hello();
    assert.throws(() => a.seal(1, 1, new Uint8Array(0)), {
      name: 'Error',
      message: /wait for the 'ready' event/,
    });
    const b = responder(1);
    b.feed(initiator(1).hello());
    assert.equal(b.ready, true);
    assert.throws(() => b.seal(1, 1, new Uint8Array(0)), /write hello\(\) to the stream before any message/);
  });

  test('a bad key list, node id, maxMessageBytes or key update bound: RangeError saying what to do', () => {
    const base = { nodeId: 'n', initiator: true, rng: new Rng(1) };
    assert.throws(() => new SecureChannel({ ...base, keys: [KEY, new Uint8Array(MIN_KEY_BYTES - 1)] }), {
      name: 'RangeError',
      message: /pre-shared key 2 is 15 bytes; it must be at least 16 bytes .*openssl rand/,
    });
    assert.doesNotThrow(() => new SecureChannel({ ...base, keys: [new Uint8Array(MIN_KEY_BYTES)] }));
    assert.throws(() => new SecureChannel({ ...base, keys: [] }), /give 1 to 8 pre-shared keys .*got 0/);
    const nine = Array.from({ length: 9 }, (_, i) => new Uint8Array(16).fill(i));
    assert.throws(() => checkKeys(nine), /give 1 to 8 pre-shared keys .*got 9/);
    assert.doesNotThrow(() => checkKeys(nine.slice(1)));
    assert.throws(() => checkKeys([KEY, NEW_KEY, KEY.slice()]), {
      name: 'RangeError',
      message: new RegExp(`key 3 \\(id ${keyId(KEY)}\\) is listed twice`),
    });
    assert.throws(() => new SecureChannel({ ...base, keys: [KEY], nodeId: '' }), {
      name: 'RangeError',
      message: /node id must be 1 to 64 bytes of UTF-8, got 0/,
    });
    assert.throws(() => new SecureChannel({ ...base, keys: [KEY], nodeId: 'é'.repeat(33) }), /got 66/);
    for (const m of [0, 30, 1.5, 2 ** 32])
      assert.throws(() => new SecureChannel({ ...base, keys: [KEY], maxMessageBytes: m }), RangeError);
    for (const m of [0, 1.5, 2 ** 32 + 1])
      assert.throws(
        () => new SecureChannel({ ...base, keys: [KEY], keyUpdateMessages: m }),
        /keyUpdateMessages/,
      );
    for (const m of [0, 2 ** 36 + 1])
      assert.throws(() => new SecureChannel({ ...base, keys: [KEY], keyUpdateBytes: m }), /keyUpdateBytes/);
  });

  test('seal: type, epoch and payload size out of range', () => {
    const { a } = pair(18, { maxMessageBytes: 100 });
    assert.throws(() => a.seal(256, 0, new Uint8Array(0)), RangeError);
    assert.throws(() => a.seal(-1, 0, new Uint8Array(0)), RangeError);
    assert.throws(() => a.seal(0, 2 ** 32, new Uint8Array(0)), RangeError);
    assert.throws(() => a.seal(0, 0, new Uint8Array(70)), /70-byte payload exceeds maxMessageBytes \(100/);
    assert.doesNotThrow(() => a.seal(0, 0, new Uint8Array(69)));
    assert.equal(a.counters.messagesOut, 1, 'refused seals consume no counter');
  });
});

describe('hostile input', () => {
  test('random garbage at any stage, split anywhere, never throws and ends in at most one error', () => {
    const magic = Uint8Array.of(0x54, 0x4b, 0x4f, 0x56, PROTOCOL_VERSION);
    fc.assert(
      fc.property(
        fc.constantFrom('fresh', 'magic', 'ready', 'framed'),
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.nat(700), { maxLength: 8 }),
        fc.integer({ min: MESSAGE_MIN_LENGTH, max: 700 }),
        (stage, junk, cuts, length) => {
          const ch =
            stage === 'fresh' || stage === 'magic' ? responder(1) : pair(1, { maxMessageBytes: 700 }).b;
          let stream: Uint8Array = junk;
          if (stage === 'magic') stream = concat([magic, junk]);
          if (stage === 'framed') {
            const h = new Uint8Array(5);
            writeU32(h, 0, length);
            h[4] = PROTOCOL_VERSION;
            stream = concat([h, junk]);
          }
          const points = [0, ...cuts.filter((c) => c < stream.length).sort((x, y) => x - y), stream.length];
          const events: ChannelEvent[] = [];
          for (let i = 1; i < points.length; i++)
            events.push(...ch.feed(stream.subarray(points[i - 1], points[i])));
          assert.equal(messagesOf(events).length, 0);
          const errors = events.filter((e) => e.kind === 'error').length;
          assert.ok(errors <= 1);
          if (errors === 1) {
            assert.equal(events[events.length - 1].kind, 'error');
            assert.deepEqual(ch.feed(junk), []);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('a real stream with corrupted bytes delivers exactly the messages before the damage', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rng = new Rng(seed).derive('mutate');
      const a = initiator(seed, { maxMessageBytes: 5000 });
      const b = responder(seed, { maxMessageBytes: 5000 });
      a.feed(b.hello());
      const parts = [a.hello()];
      const sent: Uint8Array[] = [];
      const n = rng.int(1, 8);
      for (let i = 0; i < n; i++) {
        sent.push(randomBytes(rng, rng.int(0, 300)));
        parts.push(a.seal(1, seed, sent[i]));
      }
      const ends: number[] = [];
      let o = 0;
      for (const p of parts) {
        o += p.length;
        ends.push(o);
      }
      const stream = concat(parts);
      const hits = rng.int(1, 3);
      let first = stream.length;
      for (let k = 0; k < hits; k++) {
        const pos = rng.int(0, stream.length - 1);
        stream[pos] ^= rng.int(1, 255);
        first = Math.min(first, pos);
      }
      let events: ChannelEvent[];
      try {
        events = feedSplit(b, stream, rng, 200);
      } catch (e) {
        throw new Error(`seed ${seed}: feed threw`, { cause: e });
      }
      const intact = first < ends[0] ? 0 : ends.slice(1).filter((end) => end <= first).length;
      const got = messagesOf(events).map((m) => m.payload);
      assert.deepEqual(got, sent.slice(0, intact), `seed ${seed}: damage at byte ${first}`);
      // The damaged message either failed or is still waiting for bytes its length field promised.
      assert.ok(b.error !== undefined || b.pendingBytes > 0, `seed ${seed}`);
    }
  });

  test('throughput: 50 MB in 64 KiB pieces, and an 8 MB message in 1 KiB pieces, stay linear', () => {
    const { a, b } = pair(19);
    const payload = randomBytes(new Rng(19), 5_000_000);
    const t0 = performance.now();
    let delivered = 0;
    for (let i = 0; i < 10; i++) {
      const f = a.seal(1, i, payload);
      for (let o = 0; o < f.length; o += 65536)
        for (const e of b.feed(f.subarray(o, o + 65536)))
          if (e.kind === 'message') {
            assert.equal(e.payload.length, payload.length);
            assert.equal(e.payload[4_999_999], payload[4_999_999]);
            delivered++;
          }
    }
    const t1 = performance.now();
    assert.equal(delivered, 10);
    const big = a.seal(2, 0, randomBytes(new Rng(20), 8 << 20));
    let got = 0;
    for (let o = 0; o < big.length; o += 1024) got += messagesOf(b.feed(big.subarray(o, o + 1024))).length;
    const t2 = performance.now();
    assert.equal(got, 1);
    assert.ok(t1 - t0 < 2000, `50 MB took ${(t1 - t0).toFixed(0)} ms`);
    assert.ok(t2 - t1 < 1500, `8 MB in 1 KiB pieces took ${(t2 - t1).toFixed(0)} ms`);
  });
});
