/**
 * The replication link's framing (DESIGN.md "Replication"): authenticated, versioned messages
 * between the active and the standby over an ordinary reliable byte stream (a kernel TCP socket
 * in production, a simulated pipe in tests). Pure: no I/O, no clock; the handshake nonce comes
 * from the injected `RandomSource` (in production `CryptoRandom` from api/runtime.ts).
 *
 * Each side writes `hello()` as soon as the stream is up, passes everything it reads to `feed`,
 * and after the 'ready' event frames its records with `seal`. Anything that fails a check ends
 * the channel with one 'error' event whose reason is a sentence for the log; the caller closes
 * the stream and reconnects (a fresh channel, so fresh nonces).
 *
 * Wire layout (big-endian):
 *
 *   hello    'TKOV' | u8 version | u8 flags (bit 0: initiator) | 16-byte nonce
 *            | u8 idLength (1..64) | node id (UTF-8) | HMAC-SHA256(psk, all preceding hello bytes)
 *   message  u32 length (of everything after it) | u8 version | u8 type | u32 epoch
 *            | u64 counter | payload | HMAC-SHA256(sessionKey, direction || header || payload)
 *
 *   sessionKey = HMAC-SHA256(psk, "takeover-session-v1" || initiatorNonce || responderNonce
 *                            || u8 len || initiatorId || u8 len || responderId)
 *   direction  = 1 for initiator -> responder, 2 for responder -> initiator
 *
 * "header" in the message MAC is the 18 bytes from the length field to the counter, so every
 * byte before the MAC is authenticated.
 *
 * Why each piece is there:
 * - Hello MAC: a peer without the key is refused before anything else happens; the initiator
 *   flag must differ from ours, so our own hello reflected back (or two nodes both configured as
 *   initiator) is refused too.
 * - Session key over both nonces: each side's fresh nonce alone makes the key new, so messages
 *   recorded from an earlier session do not verify in this one, whoever replays them.
 * - Direction byte: both directions share the session key; without it a message we sent could be
 *   reflected back to us and verify.
 * - Counter, exactly previous + 1 from 1 in each direction: a replayed, dropped or reordered
 *   message is refused. The stream is reliable, so any gap means tampering or a bug.
 * - Version in every message, checked before the MAC, so a peer running another release gets a
 *   reason naming both versions instead of "authentication failed".
 *
 * Limits, stated so that callers do not assume more:
 * - No confidentiality: payloads travel in clear. Run the link on a private network (or under
 *   TLS/IPsec) if the replicated bytes are secret.
 * - 'ready' proves the hello was made with the key, not that it is fresh: a recorded hello can be
 *   replayed. The replayer still cannot produce a single message (the session key binds our
 *   fresh nonce), so liveness is proven by the peer's first message (a heartbeat), not by 'ready'.
 * - Nonces must be unpredictable and never repeat. A seeded generator replayed on both nodes
 *   yields the same session key, and with it cross-session replay.
 * - Before the MAC is checked an unauthenticated peer can make us buffer one message of up to
 *   `maxMessageBytes` (a hello is at most 119 bytes). Length fields above it fail at once,
 *   without waiting for or allocating the body.
 * - The epoch is carried and authenticated but not judged here: fencing (DESIGN.md "Take-over",
 *   step 2) belongs to the caller, which knows the current epoch.
 * - A stream that ends between messages looks like a quiet peer (heartbeats catch that); one that
 *   ends inside a message leaves `pendingBytes > 0` for the caller to log.
 */

import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import type { RandomSource } from '../tcp/connection.ts';
import { readU32, toHex, writeU32 } from '../wire/bytes.ts';

/** The version this node speaks, in every hello and every message. */
export const PROTOCOL_VERSION = 1;
/** Shortest pre-shared key accepted: 128 bits. */
export const MIN_KEY_BYTES = 16;
/** Longest node id, in UTF-8 bytes (it has a one-byte length field, kept short for logs). */
export const MAX_NODE_ID_BYTES = 64;
/** Default bound on a message's length field: one tick's batch must fit. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Bytes of a message's header, length field included: length, version, type, epoch, counter. */
export const MESSAGE_HEADER_BYTES = 18;
/** Bytes of the HMAC-SHA256 tag that ends every hello and every message. */
export const MAC_BYTES = 32;
/** The smallest possible length field (an empty payload): what follows the length, minus the payload. */
export const MESSAGE_MIN_LENGTH = MESSAGE_HEADER_BYTES - 4 + MAC_BYTES;

const MAGIC = new Uint8Array([0x54, 0x4b, 0x4f, 0x56]); // 'TKOV'
const NONCE_BYTES = 16;
const FLAG_INITIATOR = 0x01;
/** Magic, version, flags, nonce, id length: what must arrive before the hello's length is known. */
const HELLO_FIXED = 4 + 1 + 1 + NONCE_BYTES + 1;
const SESSION_LABEL = new TextEncoder().encode('takeover-session-v1');
const DIR_INITIATOR_TO_RESPONDER = new Uint8Array([1]);
const DIR_RESPONDER_TO_INITIATOR = new Uint8Array([2]);
const TWO_32 = 0x1_0000_0000;
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });

/** How one end of the link is configured; the constructor validates it. */
export interface ChannelOptions {
  /** The pre-shared key, at least MIN_KEY_BYTES long; both nodes hold the same one. */
  key: Uint8Array;
  /** This node's name (1..64 bytes of UTF-8), sent in the hello and bound into the session key. */
  nodeId: string;
  /** True on the side that connected. Exactly one side of a link is the initiator. */
  initiator: boolean;
  /** Source of the handshake nonce; must be unpredictable in production (`CryptoRandom`). */
  rng: RandomSource;
  /**
   * Largest length field accepted (and sealed): the payload plus MESSAGE_MIN_LENGTH. Default
   * 64 MiB. It bounds what an unauthenticated peer can make us buffer.
   */
  maxMessageBytes?: number;
}

/** What `feed` reports, in stream order. */
export type ChannelEvent =
  /** The peer's hello verified; `seal` may be used from now on. */
  | { kind: 'ready'; peerId: string }
  /** One authenticated message, in order. `payload` is a fresh copy the receiver may keep. */
  | { kind: 'message'; type: number; epoch: number; payload: Uint8Array }
  /** Fatal: the caller closes the stream; the channel produces no event after this one. */
  | { kind: 'error'; reason: string };

/** What went through the channel; the object is live (read it whenever). */
export interface ChannelCounters {
  /** Authenticated messages delivered by `feed`. */
  messagesIn: number;
  /** Messages framed by `seal`. */
  messagesOut: number;
  /** Bytes handed to `feed` until the channel failed (the hello included). */
  bytesIn: number;
  /** Bytes returned by `hello` (once) and `seal`. */
  bytesOut: number;
  /** The fatal rejection (0 or 1) plus every `feed` call ignored after it. */
  rejected: number;
}

/**
 * Chunks small enough to be copied into a shared block rather than kept as they are: a peer
 * trickling single bytes must not make us hold one object per byte.
 */
const COALESCE_BELOW = 512;
const BLOCK_BYTES = 16 * 1024;
const EMPTY = new Uint8Array(0);

/**
 * The bytes received but not yet framed, as a list of chunks. Framing a message copies each of
 * its bytes once, however the stream was split; concatenating on every `feed` would be quadratic
 * in the message size.
 */
class ByteQueue {
  length = 0;
  private chunks: Uint8Array[] = [];
  /** Index in `chunks` of the first live chunk. */
  private first = 0;
  /** Bytes of `chunks[first]` already taken. */
  private offset = 0;
  /** The block small chunks are copied into, its used prefix, and whether the last chunk is a view of it. */
  private block: Uint8Array | undefined;
  private blockUsed = 0;
  private tailInBlock = false;
  private tailStart = 0;

  /** Keeps a reference to `b` (chunks of 512 bytes and more are not copied). */
  push(b: Uint8Array): void {
    const n = b.length;
    if (n === 0) return;
    this.length += n;
    if (n >= COALESCE_BELOW) {
      this.chunks.push(b);
      this.tailInBlock = false;
      return;
    }
    if (this.block === undefined || this.blockUsed + n > BLOCK_BYTES) {
      this.block = new Uint8Array(BLOCK_BYTES);
      this.blockUsed = 0;
      this.tailInBlock = false;
    }
    this.block.set(b, this.blockUsed);
    this.blockUsed += n;
    if (this.tailInBlock) {
      // Widen the last chunk's view; `offset` stays valid since the view's start is unchanged.
      this.chunks[this.chunks.length - 1] = this.block.subarray(this.tailStart, this.blockUsed);
    } else {
      this.tailStart = this.blockUsed - n;
      this.chunks.push(this.block.subarray(this.tailStart, this.blockUsed));
      this.tailInBlock = true;
    }
  }

  /** The byte at index `i` from the front; the caller ensures `i < length`. Cheap for small `i`. */
  byteAt(i: number): number {
    let c = this.first;
    let o = this.offset + i;
    while (o >= this.chunks[c].length) {
      o -= this.chunks[c].length;
      c++;
    }
    return this.chunks[c][o];
  }

  /** Big-endian u32 at index `i`; the caller ensures `i + 4 <= length`. */
  u32At(i: number): number {
    return (
      ((this.byteAt(i) << 24) |
        (this.byteAt(i + 1) << 16) |
        (this.byteAt(i + 2) << 8) |
        this.byteAt(i + 3)) >>>
      0
    );
  }

  /** Removes the first `n` bytes (`n <= length`) into a new array. */
  take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const ch = this.chunks[this.first];
      const k = Math.min(ch.length - this.offset, n - filled);
      out.set(ch.subarray(this.offset, this.offset + k), filled);
      filled += k;
      this.offset += k;
      if (this.offset === ch.length) {
        this.chunks[this.first] = EMPTY; // let the chunk be collected
        this.first++;
        this.offset = 0;
      }
    }
    this.length -= n;
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
      this.tailInBlock = false;
    } else if (this.first >= 1024 && this.first * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.first = 0;
    this.offset = 0;
    this.length = 0;
    this.block = undefined;
    this.blockUsed = 0;
    this.tailInBlock = false;
  }
}

function hmac(key: KeyObject, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Constant-time comparison of an expected tag with the received one (same length by construction). */
function tagsEqual(expected: Uint8Array, received: Uint8Array): boolean {
  return expected.length === received.length && timingSafeEqual(expected, received);
}

function isByteRangeInt(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}

/**
 * One end of the replication link: handshake, then sealed messages both ways. A channel serves
 * one stream; after an error or a reconnect, make a new one.
 */
export class SecureChannel {
  private readonly psk: KeyObject;
  private readonly nodeIdBytes: Uint8Array;
  private readonly initiator: boolean;
  private readonly nonce: Uint8Array;
  private readonly maxMessageBytes: number;
  private readonly sendDir: Uint8Array;
  private readonly recvDir: Uint8Array;
  private readonly queue = new ByteQueue();
  private readonly stats: ChannelCounters = {
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    rejected: 0,
  };
  private helloBytes: Uint8Array | undefined;
  private sessionKey: KeyObject | undefined;
  private peer: string | undefined;
  private failure: string | undefined;
  /** Counter of the last message sealed / accepted (each direction starts at 1). */
  private sent = 0;
  private received = 0;

  /**
   * Throws RangeError for a short key, a node id outside 1..64 UTF-8 bytes, or a
   * `maxMessageBytes` that is not an integer in MESSAGE_MIN_LENGTH..2^32-1: configuration
   * mistakes, reported before any byte goes out.
   */
  constructor(opts: ChannelOptions) {
    if (!(opts.key instanceof Uint8Array) || opts.key.length < MIN_KEY_BYTES) {
      const got = opts.key instanceof Uint8Array ? `${opts.key.length} bytes` : 'not a byte array';
      throw new RangeError(
        `SecureChannel: the pre-shared key is ${got}; it must be at least ${MIN_KEY_BYTES} bytes ` +
          '(generate one with `openssl rand -hex 32` and give both nodes the same key).',
      );
    }
    const id = typeof opts.nodeId === 'string' ? new TextEncoder().encode(opts.nodeId) : EMPTY;
    if (id.length < 1 || id.length > MAX_NODE_ID_BYTES)
      throw new RangeError(
        `SecureChannel: the node id must be 1 to ${MAX_NODE_ID_BYTES} bytes of UTF-8, got ${id.length}; ` +
          'choose a short name such as "node-a".',
      );
    const max = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(max) || max < MESSAGE_MIN_LENGTH || max >= TWO_32)
      throw new RangeError(
        `SecureChannel: maxMessageBytes must be an integer from ${MESSAGE_MIN_LENGTH} to ${TWO_32 - 1}, got ${max}.`,
      );
    this.psk = createSecretKey(Uint8Array.from(opts.key));
    this.nodeIdBytes = id;
    this.initiator = opts.initiator;
    this.maxMessageBytes = max;
    this.sendDir = opts.initiator ? DIR_INITIATOR_TO_RESPONDER : DIR_RESPONDER_TO_INITIATOR;
    this.recvDir = opts.initiator ? DIR_RESPONDER_TO_INITIATOR : DIR_INITIATOR_TO_RESPONDER;
    // Drawn now, not in hello(): the peer's hello may be fed before ours is written.
    this.nonce = new Uint8Array(NONCE_BYTES);
    for (let i = 0; i < NONCE_BYTES; i += 4) writeU32(this.nonce, i, opts.rng.nextU32());
  }

  /** True once the peer's hello verified (and until the channel fails). */
  get ready(): boolean {
    return this.sessionKey !== undefined && this.failure === undefined;
  }

  /** The peer's node id, from its verified hello. */
  get peerId(): string | undefined {
    return this.peer;
  }

  /** Live traffic and rejection counts, for metrics. */
  get counters(): Readonly<ChannelCounters> {
    return this.stats;
  }

  /** Bytes received but not yet part of a complete hello or message. */
  get pendingBytes(): number {
    return this.queue.length;
  }

  /** Why the channel failed (the reason of its 'error' event), if it did. */
  get error(): string | undefined {
    return this.failure;
  }

  /**
   * The bytes to write before anything else; both sides send theirs at once on connect, without
   * waiting for the peer's. Calling it again returns the same bytes.
   */
  hello(): Uint8Array {
    if (this.helloBytes === undefined) {
      const id = this.nodeIdBytes;
      const b = new Uint8Array(HELLO_FIXED + id.length + MAC_BYTES);
      b.set(MAGIC, 0);
      b[4] = PROTOCOL_VERSION;
      b[5] = this.initiator ? FLAG_INITIATOR : 0;
      b.set(this.nonce, 6);
      b[HELLO_FIXED - 1] = id.length;
      b.set(id, HELLO_FIXED);
      b.set(hmac(this.psk, b.subarray(0, HELLO_FIXED + id.length)), HELLO_FIXED + id.length);
      this.helloBytes = b;
      this.stats.bytesOut += b.length;
    }
    return this.helloBytes.slice();
  }

  /**
   * Takes bytes read from the stream, split anywhere, and returns what they complete. Never
   * throws: hostile or broken input ends in one 'error' event, after which every call returns [].
   * Keeps a reference to `bytes` until the message they belong to is complete, so do not reuse
   * the array (socket 'data' chunks are never reused).
   */
  feed(bytes: Uint8Array): ChannelEvent[] {
    if (this.failure !== undefined) {
      this.stats.rejected++;
      return [];
    }
    const events: ChannelEvent[] = [];
    try {
      this.stats.bytesIn += bytes.length;
      this.queue.push(bytes);
      if (this.sessionKey === undefined && !this.readHello(events)) return events;
      while (this.readMessage(events));
    } catch (e) {
      // Unreachable for Uint8Array input; kept so that no input at all escapes as an exception.
      this.fail(events, `internal error on input: ${e instanceof Error ? e.message : String(e)}`);
    }
    return events;
  }

  /**
   * Frames one message. `type` is 0..255, `epoch` 0..2^32-1. Throws Error before 'ready' or after
   * a failure, RangeError for out-of-range fields or a payload over `maxMessageBytes`: all of
   * these are bugs in the caller, not conditions of the network.
   */
  seal(type: number, epoch: number, payload: Uint8Array): Uint8Array {
    if (this.failure !== undefined)
      throw new Error(`SecureChannel.seal: the channel failed (${this.failure}); close it and reconnect.`);
    if (this.helloBytes === undefined)
      throw new Error('SecureChannel.seal: write hello() to the stream before any message.');
    const key = this.sessionKey;
    if (key === undefined)
      throw new Error("SecureChannel.seal: the handshake is not done; wait for the 'ready' event.");
    if (!isByteRangeInt(type, 0xff))
      throw new RangeError(`SecureChannel.seal: type must be 0..255, got ${type}.`);
    if (!isByteRangeInt(epoch, TWO_32 - 1))
      throw new RangeError(`SecureChannel.seal: epoch must be 0..${TWO_32 - 1}, got ${epoch}.`);
    const length = MESSAGE_MIN_LENGTH + payload.length;
    if (length > this.maxMessageBytes)
      throw new RangeError(
        `SecureChannel.seal: a ${payload.length}-byte payload exceeds maxMessageBytes ` +
          `(${this.maxMessageBytes}, of which ${MESSAGE_MIN_LENGTH} are framing); split the batch.`,
      );
    if (this.sent >= Number.MAX_SAFE_INTEGER)
      throw new Error('SecureChannel.seal: the message counter is exhausted; reconnect.');
    const counter = ++this.sent;
    const macAt = MESSAGE_HEADER_BYTES + payload.length;
    const out = new Uint8Array(macAt + MAC_BYTES);
    writeU32(out, 0, length);
    out[4] = PROTOCOL_VERSION;
    out[5] = type;
    writeU32(out, 6, epoch);
    writeU32(out, 10, Math.floor(counter / TWO_32));
    writeU32(out, 14, counter >>> 0);
    out.set(payload, MESSAGE_HEADER_BYTES);
    out.set(hmac(key, this.sendDir, out.subarray(0, macAt)), macAt);
    this.stats.messagesOut++;
    this.stats.bytesOut += out.length;
    return out;
  }

  private fail(events: ChannelEvent[], reason: string): false {
    this.failure = reason;
    this.stats.rejected++;
    this.queue.clear();
    events.push({ kind: 'error', reason });
    return false;
  }

  /**
   * Parses the peer's hello once it is complete. Magic, version and id length are judged as soon
   * as they arrive (they are needed to frame the hello, and a stranger should hear "not a
   * takeover peer" at once); everything else only after the MAC verified. Returns true when the
   * handshake is done.
   */
  private readHello(events: ChannelEvent[]): boolean {
    const q = this.queue;
    for (let i = 0; i < MAGIC.length && i < q.length; i++)
      if (q.byteAt(i) !== MAGIC[i]) {
        const seen: number[] = [];
        for (let k = 0; k < MAGIC.length && k < q.length; k++) seen.push(q.byteAt(k));
        return this.fail(
          events,
          `hello: bad magic 0x${toHex(Uint8Array.from(seen))} (expected 0x${toHex(MAGIC)}, 'TKOV'): ` +
            'the peer is not a takeover replication endpoint.',
        );
      }
    if (q.length > 4 && q.byteAt(4) !== PROTOCOL_VERSION)
      return this.fail(
        events,
        `hello: the peer speaks protocol version ${q.byteAt(4)}, this node speaks version ${PROTOCOL_VERSION}; ` +
          'run the same release on both nodes.',
      );
    if (q.length < HELLO_FIXED) return false;
    const idLength = q.byteAt(HELLO_FIXED - 1);
    if (idLength < 1 || idLength > MAX_NODE_ID_BYTES)
      return this.fail(events, `hello: node id length ${idLength} is outside 1..${MAX_NODE_ID_BYTES}.`);
    const macAt = HELLO_FIXED + idLength;
    if (q.length < macAt + MAC_BYTES) return false;
    const h = q.take(macAt + MAC_BYTES);
    if (!tagsEqual(hmac(this.psk, h.subarray(0, macAt)), h.subarray(macAt)))
      return this.fail(
        events,
        'hello: authentication failed: the nodes do not share the same pre-shared key.',
      );
    const flags = h[5];
    if ((flags & ~FLAG_INITIATOR) !== 0)
      return this.fail(events, `hello: unknown flags 0x${flags.toString(16).padStart(2, '0')}.`);
    const peerInitiator = (flags & FLAG_INITIATOR) !== 0;
    if (peerInitiator === this.initiator)
      return this.fail(
        events,
        `hello: the peer also claims to be the ${this.initiator ? 'initiator' : 'responder'} ` +
          '(our own hello reflected back, or both ends configured alike).',
      );
    const peerIdBytes = h.subarray(HELLO_FIXED, macAt);
    let peerId: string;
    try {
      peerId = UTF8_STRICT.decode(peerIdBytes);
    } catch {
      return this.fail(events, 'hello: the peer node id is not valid UTF-8.');
    }
    const peerNonce = h.subarray(6, 6 + NONCE_BYTES);
    const [iNonce, rNonce] = this.initiator ? [this.nonce, peerNonce] : [peerNonce, this.nonce];
    const [iId, rId] = this.initiator ? [this.nodeIdBytes, peerIdBytes] : [peerIdBytes, this.nodeIdBytes];
    const derived = hmac(
      this.psk,
      SESSION_LABEL,
      iNonce,
      rNonce,
      Uint8Array.of(iId.length),
      iId,
      Uint8Array.of(rId.length),
      rId,
    );
    this.sessionKey = createSecretKey(derived);
    this.peer = peerId;
    events.push({ kind: 'ready', peerId });
    return true;
  }

  /**
   * Parses one message if it is complete. The length and version are judged as soon as they
   * arrive, so an absurd length fails before its body is awaited or allocated. Returns true
   * when a message was delivered (call again for the next one).
   */
  private readMessage(events: ChannelEvent[]): boolean {
    const q = this.queue;
    if (q.length < 4) return false;
    const n = this.received + 1;
    const length = q.u32At(0);
    if (length < MESSAGE_MIN_LENGTH)
      return this.fail(events, `message ${n}: length ${length} is below the minimum ${MESSAGE_MIN_LENGTH}.`);
    if (length > this.maxMessageBytes)
      return this.fail(
        events,
        `message ${n}: length ${length} exceeds maxMessageBytes ${this.maxMessageBytes}.`,
      );
    if (q.length > 4 && q.byteAt(4) !== PROTOCOL_VERSION)
      return this.fail(
        events,
        `message ${n}: protocol version ${q.byteAt(4)}, this node speaks version ${PROTOCOL_VERSION}.`,
      );
    if (q.length < 4 + length) return false;
    const m = q.take(4 + length);
    const macAt = m.length - MAC_BYTES;
    if (!tagsEqual(hmac(this.sessionKey!, this.recvDir, m.subarray(0, macAt)), m.subarray(macAt)))
      return this.fail(events, `message ${n}: authentication failed (forged or corrupted).`);
    // Authentic, so the counter is the peer's own: a mismatch is a replay, drop or reorder on the way.
    const hi = readU32(m, 10);
    const lo = readU32(m, 14);
    if (hi !== Math.floor(n / TWO_32) || lo !== n >>> 0) {
      const got = (BigInt(hi) << 32n) | BigInt(lo);
      return this.fail(
        events,
        `message ${n}: expected counter ${n}, got ${got} (a replayed, dropped or reordered message).`,
      );
    }
    this.received = n;
    this.stats.messagesIn++;
    events.push({
      kind: 'message',
      type: m[5],
      epoch: readU32(m, 6),
      payload: m.subarray(MESSAGE_HEADER_BYTES, macAt),
    });
    return true;
  }
}
