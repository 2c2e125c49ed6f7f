/**
 * The replication link's framing (docs/ARCHITECTURE.md §4): authenticated, encrypted, versioned
 * messages between the active and the standby over an ordinary reliable byte stream (a kernel
 * TCP socket in production, a simulated pipe in tests). Pure: no I/O, no clock; the handshake's
 * nonce and ephemeral key come from the injected `RandomSource` (in production `CryptoRandom`
 * from api/runtime.ts).
 *
 * Each side writes `hello()` as soon as the stream is up, passes everything it reads to `feed`,
 * and after the 'ready' event frames its records with `seal`. Anything that fails a check ends
 * the channel with one 'error' event whose reason is a sentence for the log; the caller closes
 * the stream and reconnects (a fresh channel, so fresh nonces, ephemeral keys and session keys).
 *
 * Wire layout (big-endian), protocol version 2:
 *
 *   hello    'TKOV' | u8 version | u8 flags (bit 0: initiator) | 16-byte nonce
 *            | 32-byte X25519 share | u8 idLength (1..64) | node id (UTF-8)
 *            | u8 keyCount (1..8) | keyCount × 4-byte key id
 *            | keyCount × HMAC-SHA256(helloKey(psk_i), body)        body = everything before the tags
 *   message  u32 length (of everything after it) | u8 version | u8 flags (bit 0: key phase)
 *            | u8 type | u32 epoch | u64 counter | AES-256-GCM(payload) | 16-byte GCM tag
 *
 *   keyId(psk)     = the first 4 bytes of SHA-256(psk)   (`echo $HEX | xxd -r -p | sha256sum`)
 *   helloKey(psk)  = HKDF-SHA256(ikm = psk, salt = "", info = "takeover v2 hello")
 *   session psk    = the first key of the initiator's list that the responder also holds
 *   transcript     = SHA-256(initiator's hello body || responder's hello body)
 *   key_i->r[0]    = HKDF-SHA256(ikm = psk || X25519(ours, theirs), salt = transcript,
 *                                info = "takeover v2 initiator->responder"), 32 bytes
 *   key_r->i[0]    = the same with info "takeover v2 responder->initiator"
 *   key[n+1]       = HKDF-SHA256(ikm = key[n], salt = "", info = "takeover v2 key update")
 *   GCM nonce      = 4 zero bytes || the message's u64 counter;  associated data = the 19-byte
 *                    header (length, version, flags, type, epoch, counter)
 *
 * Why AES-256-GCM: the nodes are x86-64 servers with AES-NI and carry-less multiply (this
 * project's machine also has VAES). Measured there through node:crypto, one cipher per message
 * as here, GCM beats ChaCha20-Poly1305 at every size from 64 B to 1 MiB (5 to 20 %), and OpenSSL
 * alone does 3.3 GB/s against 2.1 GB/s on 16 KiB (`openssl speed -evp`). ChaCha20-Poly1305 would
 * be the choice on CPUs without AES instructions, where GCM is slow and not constant-time.
 *
 * Why each piece is there:
 * - Hello tags: a peer without a key we hold is refused before anything else happens. One tag per
 *   key the sender holds lets two nodes that are part-way through a key rotation (one holding
 *   [new, old], the other [old]) agree on a key without another round trip. The receiver checks
 *   the tag of every key it holds; the tags cover the whole body, key ids included, so no key can
 *   be struck from the offer without breaking every tag (no downgrade to an older key than the
 *   first one, in the initiator's order, that both hold).
 * - The initiator flag must differ from ours, so our own hello reflected back (or two nodes both
 *   configured as initiator) is refused too.
 * - Ephemeral X25519 shares, mixed into the session keys with the PSK: forward secrecy. Someone
 *   who later obtains the key file (a backup, a decommissioned node) cannot decrypt recorded
 *   sessions; the PSK authenticates, the shares make the keys unrecoverable once both nodes
 *   dropped them.
 * - Keys from the transcript (both nonces, both shares, both node ids, both key lists, flags,
 *   version): each side's fresh nonce and share alone make the keys new, so messages recorded
 *   from an earlier session do not open in this one, whoever replays them.
 * - One key per direction: a message we sent, reflected back to us, does not open.
 * - The header as associated data: the length, version, key phase, type, epoch and counter cannot
 *   be changed without the message failing, though they travel in clear (the framing needs them).
 * - Counter, exactly previous + 1 from 1 in each direction, checked after the tag: a replayed,
 *   dropped or reordered message is refused with that reason. The stream is reliable, so any gap
 *   means tampering or a bug. The counter is also the GCM nonce: never repeated under one key
 *   since each direction has its own key and every session its own keys.
 * - Key update (a ratchet, as QUIC's key phase, RFC 9001 6): after `keyUpdateMessages` messages
 *   or `keyUpdateBytes` payload bytes under one key (or on `requestKeyUpdate()`) the sender moves
 *   to the next key and flips the key-phase bit; the receiver sees the flip and follows. The old
 *   key is overwritten, so a key taken from memory later does not open earlier traffic. The
 *   default bounds (2^20 messages, 1 GiB) keep AES-GCM's distinguishing advantage per key below
 *   2^-70, far inside the limits of RFC 9001 6.6.
 * - Version in every message, checked before the tag, so a peer running another release gets a
 *   reason naming both versions instead of "authentication failed".
 *
 * Limits, stated so that callers do not assume more:
 * - What travels in clear: the hello (node ids, key ids, nonces, shares) and each message's
 *   header (length, type, epoch, counter); an observer learns message sizes and timing.
 * - 'ready' proves the hello was made with a key we hold, not that it is fresh: a recorded hello
 *   can be replayed. The replayer still cannot produce a single message (it lacks the ephemeral
 *   key behind the share), so liveness is proven by the peer's first message (a heartbeat).
 * - Someone holding a PSK that a node still accepts can act as a peer; forward secrecy protects
 *   traffic recorded before, not a session such a person takes part in. Rotating keys
 *   (`ReplicationTransport.setKeys`) applies to new sessions; a session keeps its keys until the
 *   link reconnects.
 * - Nonces and shares must be unpredictable and never repeat. A seeded generator replayed on both
 *   nodes yields the same session keys, and with them cross-session replay.
 * - Before the hello's tag is checked an unauthenticated peer can make us buffer a hello (at most
 *   408 bytes); before a message's tag, one message of up to `maxMessageBytes`. Length fields
 *   above it fail at once, without waiting for or allocating the body. Each connection costs us
 *   our own hello before any check: one X25519 key pair and one HMAC per key we hold.
 * - The epoch is carried and authenticated but not judged here: fencing (docs/ARCHITECTURE.md
 *   §6) belongs to the caller, which knows the current epoch.
 * - A stream that ends between messages looks like a quiet peer (heartbeats catch that); one that
 *   ends inside a message leaves `pendingBytes > 0` for the caller to log.
 */

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  type KeyObject,
  timingSafeEqual,
} from 'node:crypto';
import type { RandomSource } from '../tcp/connection.ts';
import { readU32, toHex, writeU32 } from '../wire/bytes.ts';

/** The version this node speaks, in every hello and every message (1: HMAC only, in clear). */
export const PROTOCOL_VERSION = 2;
/** Shortest pre-shared key accepted: 128 bits. */
export const MIN_KEY_BYTES = 16;
/** Most pre-shared keys a node holds at once (the current one and those it still accepts). */
export const MAX_KEYS = 8;
/** Bytes of a key id in the hello: the first bytes of SHA-256 of the key. */
export const KEY_ID_BYTES = 4;
/** Longest node id, in UTF-8 bytes (it has a one-byte length field, kept short for logs). */
export const MAX_NODE_ID_BYTES = 64;
/** Default bound on a message's length field: one tick's batch must fit. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Bytes of a message's header, length field included: length, version, flags, type, epoch, counter. */
export const MESSAGE_HEADER_BYTES = 19;
/** Bytes of the AES-256-GCM tag that ends every message. */
export const TAG_BYTES = 16;
/** Bytes of each HMAC-SHA256 tag that ends a hello. */
export const HELLO_TAG_BYTES = 32;
/** The smallest possible length field (an empty payload): what follows the length, minus the payload. */
export const MESSAGE_MIN_LENGTH = MESSAGE_HEADER_BYTES - 4 + TAG_BYTES;
/** Messages sealed under one key before the sender moves to the next (default). */
export const DEFAULT_KEY_UPDATE_MESSAGES = 2 ** 20;
/** Payload bytes sealed under one key before the sender moves to the next (default: 1 GiB). */
export const DEFAULT_KEY_UPDATE_BYTES = 2 ** 30;
/** Largest `keyUpdateBytes` accepted: 2^32 AES blocks, where GCM's advantage reaches 2^-64. */
export const MAX_KEY_UPDATE_BYTES = 2 ** 36;

const MAGIC = new Uint8Array([0x54, 0x4b, 0x4f, 0x56]); // 'TKOV'
const NONCE_BYTES = 16;
const SHARE_BYTES = 32;
const FLAG_INITIATOR = 0x01;
const FLAG_KEY_PHASE = 0x01;
/** Offsets in the hello. */
const HELLO_NONCE_AT = 6;
const HELLO_SHARE_AT = HELLO_NONCE_AT + NONCE_BYTES;
/** Magic, version, flags, nonce, share, id length: what must arrive before the id's length is known. */
const HELLO_FIXED = HELLO_SHARE_AT + SHARE_BYTES + 1;
/** Offsets in a message's header. */
const AT_VERSION = 4;
const AT_FLAGS = 5;
const AT_TYPE = 6;
const AT_EPOCH = 7;
const AT_COUNTER = 11;
const CIPHER = 'aes-256-gcm';
const KEY_BYTES = 32;
const GCM_NONCE_BYTES = 12;
const INFO_HELLO = 'takeover v2 hello';
const INFO_I_TO_R = 'takeover v2 initiator->responder';
const INFO_R_TO_I = 'takeover v2 responder->initiator';
const INFO_UPDATE = 'takeover v2 key update';
/** DER prefixes wrapping a raw X25519 private key (PKCS#8) and public key (SPKI), RFC 8410. */
const X25519_PKCS8_PREFIX = Uint8Array.of(
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
);
const X25519_SPKI_PREFIX = Uint8Array.of(
  0x30,
  0x2a,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x03,
  0x21,
  0x00,
);
const TWO_32 = 0x1_0000_0000;
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });

/** How one end of the link is configured; the constructor validates it. */
export interface ChannelOptions {
  /**
   * The pre-shared keys this node holds, each at least MIN_KEY_BYTES long, the current one
   * first: a session uses the first key of the initiator's list that the responder also holds.
   */
  keys: readonly Uint8Array[];
  /** This node's name (1..64 bytes of UTF-8), sent in the hello and bound into the session keys. */
  nodeId: string;
  /** True on the side that connected. Exactly one side of a link is the initiator. */
  initiator: boolean;
  /** Source of the handshake nonce and ephemeral key; unpredictable in production (`CryptoRandom`). */
  rng: RandomSource;
  /**
   * Largest length field accepted (and sealed): the payload plus MESSAGE_MIN_LENGTH. Default
   * 64 MiB. It bounds what an unauthenticated peer can make us buffer.
   */
  maxMessageBytes?: number;
  /** Messages sealed under one key before moving to the next: 1..2^32, default 2^20. */
  keyUpdateMessages?: number;
  /**
   * Payload bytes sealed under one key before moving to the next: 1..2^36, default 2^30. A
   * larger message than this goes alone under a fresh key.
   */
  keyUpdateBytes?: number;
}

/** What `feed` reports, in stream order. */
export type ChannelEvent =
  /** The peer's hello verified; `seal` may be used from now on. `keyId`: the agreed pre-shared key. */
  | { kind: 'ready'; peerId: string; keyId: string }
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
  /** Times the peer moved to its next key (seen as a flipped key-phase bit), and times we did. */
  keyUpdatesIn: number;
  keyUpdatesOut: number;
}

/**
 * The id a key is known by in hellos and logs: the first 4 bytes of SHA-256 of the key, in hex.
 * Publishing it costs nothing: the hello's tags already let anyone test a guessed key offline,
 * which is why keys must be random (`openssl rand -hex 32`), not passwords.
 */
export function keyId(key: Uint8Array): string {
  return createHash('sha256')
    .update(key)
    .digest('hex')
    .slice(0, KEY_ID_BYTES * 2);
}

/**
 * Throws RangeError unless `keys` is a usable key list: 1..MAX_KEYS byte arrays of at least
 * MIN_KEY_BYTES, no two with the same id (the same key twice, or an id collision).
 */
export function checkKeys(keys: readonly Uint8Array[]): void {
  if (!Array.isArray(keys) || keys.length < 1 || keys.length > MAX_KEYS)
    throw new RangeError(
      `SecureChannel: give 1 to ${MAX_KEYS} pre-shared keys (the current one first), got ` +
        `${Array.isArray(keys) ? keys.length : 'no list'}.`,
    );
  const seen = new Set<string>();
  for (const [i, key] of keys.entries()) {
    if (!(key instanceof Uint8Array) || key.length < MIN_KEY_BYTES) {
      const got = key instanceof Uint8Array ? `${key.length} bytes` : 'not a byte array';
      throw new RangeError(
        `SecureChannel: pre-shared key ${i + 1} is ${got}; it must be at least ${MIN_KEY_BYTES} bytes ` +
          '(generate one with `openssl rand -hex 32` and give both nodes the same key).',
      );
    }
    const id = keyId(key);
    if (seen.has(id))
      throw new RangeError(`SecureChannel: key ${i + 1} (id ${id}) is listed twice; list each key once.`);
    seen.add(id);
  }
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

function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, KEY_BYTES));
}

function hmac(key: Uint8Array, data: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Constant-time comparison of an expected tag with the received one (same length by construction). */
function tagsEqual(expected: Uint8Array, received: Uint8Array): boolean {
  return expected.length === received.length && timingSafeEqual(expected, received);
}

function isByteRangeInt(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** The GCM nonce of a message: 4 zero bytes and the header's 8-byte counter. */
function gcmNonce(header: Uint8Array): Uint8Array {
  const iv = new Uint8Array(GCM_NONCE_BYTES);
  iv.set(header.subarray(AT_COUNTER, AT_COUNTER + 8), GCM_NONCE_BYTES - 8);
  return iv;
}

/** One pre-shared key as the channel holds it until the handshake is done. */
interface HeldKey {
  id: string;
  psk: Buffer;
  helloKey: Buffer;
}

/** One direction's key chain: the current key, its phase bit, and what was sealed under it. */
interface Direction {
  key: Buffer;
  phase: number;
  messages: number;
  bytes: number;
}

/**
 * One end of the replication link: handshake, then sealed messages both ways. A channel serves
 * one stream; after an error or a reconnect, make a new one.
 */
export class SecureChannel {
  private readonly initiator: boolean;
  private readonly maxMessageBytes: number;
  private readonly keyUpdateMessages: number;
  private readonly keyUpdateBytes: number;
  private readonly queue = new ByteQueue();
  private readonly stats: ChannelCounters = {
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    rejected: 0,
    keyUpdatesIn: 0,
    keyUpdatesOut: 0,
  };
  /** Held until the handshake ends (then erased): the keys, our ephemeral X25519 key. */
  private held: HeldKey[];
  private readonly ids: string[];
  private ephemeral: { raw: Uint8Array; key: KeyObject } | undefined;
  /** Our hello, built at construction: its body is part of the transcript. */
  private readonly helloBytes: Uint8Array;
  private readonly helloBodyLength: number;
  private helloWritten = false;
  private send: Direction | undefined;
  private recv: Direction | undefined;
  private agreedKeyId: string | undefined;
  private peer: string | undefined;
  private failure: string | undefined;
  private updateRequested = false;
  /** Counter of the last message sealed / accepted (each direction starts at 1). */
  private sent = 0;
  private received = 0;

  /**
   * Throws RangeError for a bad key list (see `checkKeys`), a node id outside 1..64 UTF-8
   * bytes, a `maxMessageBytes` that is not an integer in MESSAGE_MIN_LENGTH..2^32-1, or key
   * update bounds out of range: configuration mistakes, reported before any byte goes out.
   */
  constructor(opts: ChannelOptions) {
    checkKeys(opts.keys);
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
    const updMessages = opts.keyUpdateMessages ?? DEFAULT_KEY_UPDATE_MESSAGES;
    if (!Number.isInteger(updMessages) || updMessages < 1 || updMessages > TWO_32)
      throw new RangeError(
        `SecureChannel: keyUpdateMessages must be an integer from 1 to 2^32, got ${updMessages}.`,
      );
    const updBytes = opts.keyUpdateBytes ?? DEFAULT_KEY_UPDATE_BYTES;
    if (!Number.isInteger(updBytes) || updBytes < 1 || updBytes > MAX_KEY_UPDATE_BYTES)
      throw new RangeError(
        `SecureChannel: keyUpdateBytes must be an integer from 1 to 2^36, got ${updBytes}.`,
      );
    this.initiator = opts.initiator;
    this.maxMessageBytes = max;
    this.keyUpdateMessages = updMessages;
    this.keyUpdateBytes = updBytes;
    this.held = opts.keys.map((k) => {
      const psk = Buffer.from(k);
      return { id: keyId(psk), psk, helloKey: hkdf(psk, EMPTY, INFO_HELLO) };
    });
    this.ids = this.held.map((k) => k.id);

    // Drawn now, not in hello(): the peer's hello may be fed before ours is written.
    const random = (n: number) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i += 4) writeU32(b, i, opts.rng.nextU32());
      return b;
    };
    const nonce = random(NONCE_BYTES);
    const raw = random(SHARE_BYTES);
    const priv = createPrivateKey({
      key: Buffer.from(concatBytes(X25519_PKCS8_PREFIX, raw)),
      format: 'der',
      type: 'pkcs8',
    });
    const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
    this.ephemeral = { raw, key: priv };

    const bodyLength = HELLO_FIXED + id.length + 1 + KEY_ID_BYTES * this.held.length;
    const b = new Uint8Array(bodyLength + HELLO_TAG_BYTES * this.held.length);
    b.set(MAGIC, 0);
    b[4] = PROTOCOL_VERSION;
    b[5] = this.initiator ? FLAG_INITIATOR : 0;
    b.set(nonce, HELLO_NONCE_AT);
    b.set(spki.subarray(spki.length - SHARE_BYTES), HELLO_SHARE_AT);
    b[HELLO_FIXED - 1] = id.length;
    b.set(id, HELLO_FIXED);
    let o = HELLO_FIXED + id.length;
    b[o++] = this.held.length;
    for (const k of this.held) {
      b.set(Buffer.from(k.id, 'hex'), o);
      o += KEY_ID_BYTES;
    }
    const body = b.subarray(0, bodyLength);
    for (const k of this.held) {
      b.set(hmac(k.helloKey, body), o);
      o += HELLO_TAG_BYTES;
    }
    this.helloBytes = b;
    this.helloBodyLength = bodyLength;
  }

  /** True once the peer's hello verified (and until the channel fails). */
  get ready(): boolean {
    return this.send !== undefined && this.failure === undefined;
  }

  /** The peer's node id, from its verified hello. */
  get peerId(): string | undefined {
    return this.peer;
  }

  /** The id of the pre-shared key this session was made with, once ready. */
  get keyId(): string | undefined {
    return this.agreedKeyId;
  }

  /** The ids of the keys this channel offers, the current one first. */
  get keyIds(): readonly string[] {
    return this.ids;
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
    if (!this.helloWritten) {
      this.helloWritten = true;
      this.stats.bytesOut += this.helloBytes.length;
    }
    return this.helloBytes.slice();
  }

  /**
   * Makes the next `seal` move to the next key (a time-based bound is the caller's: it has the
   * clock). Without it, keys move after `keyUpdateMessages` messages or `keyUpdateBytes` bytes.
   */
  requestKeyUpdate(): void {
    this.updateRequested = true;
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
      if (this.recv === undefined && !this.readHello(events)) return events;
      while (this.readMessage(events));
    } catch (e) {
      // Unreachable for Uint8Array input; kept so that no input at all escapes as an exception.
      this.fail(events, `internal error on input: ${e instanceof Error ? e.message : String(e)}`);
    }
    return events;
  }

  /**
   * Encrypts and frames one message. `type` is 0..255, `epoch` 0..2^32-1. Throws Error before
   * 'ready' or after a failure, RangeError for out-of-range fields or a payload over
   * `maxMessageBytes`: all of these are bugs in the caller, not conditions of the network.
   */
  seal(type: number, epoch: number, payload: Uint8Array): Uint8Array {
    if (this.failure !== undefined)
      throw new Error(`SecureChannel.seal: the channel failed (${this.failure}); close it and reconnect.`);
    if (!this.helloWritten)
      throw new Error('SecureChannel.seal: write hello() to the stream before any message.');
    const dir = this.send;
    if (dir === undefined)
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
    if (
      this.updateRequested ||
      dir.messages >= this.keyUpdateMessages ||
      (dir.messages > 0 && dir.bytes + payload.length > this.keyUpdateBytes)
    ) {
      ratchet(dir);
      this.updateRequested = false;
      this.stats.keyUpdatesOut++;
    }
    const counter = ++this.sent;
    const tagAt = MESSAGE_HEADER_BYTES + payload.length;
    const out = new Uint8Array(tagAt + TAG_BYTES);
    writeU32(out, 0, length);
    out[AT_VERSION] = PROTOCOL_VERSION;
    out[AT_FLAGS] = dir.phase;
    out[AT_TYPE] = type;
    writeU32(out, AT_EPOCH, epoch);
    writeU32(out, AT_COUNTER, Math.floor(counter / TWO_32));
    writeU32(out, AT_COUNTER + 4, counter >>> 0);
    const header = out.subarray(0, MESSAGE_HEADER_BYTES);
    const cipher = createCipheriv(CIPHER, dir.key, gcmNonce(header), { authTagLength: TAG_BYTES });
    cipher.setAAD(header);
    out.set(cipher.update(payload), MESSAGE_HEADER_BYTES);
    cipher.final();
    out.set(cipher.getAuthTag(), tagAt);
    dir.messages++;
    dir.bytes += payload.length;
    this.stats.messagesOut++;
    this.stats.bytesOut += out.length;
    return out;
  }

  private fail(events: ChannelEvent[], reason: string): false {
    this.failure = reason;
    this.stats.rejected++;
    this.queue.clear();
    this.eraseHandshake();
    for (const d of [this.send, this.recv]) d?.key.fill(0);
    events.push({ kind: 'error', reason });
    return false;
  }

  /** Overwrites what only the handshake needs: the pre-shared keys and our ephemeral key. */
  private eraseHandshake(): void {
    for (const k of this.held) {
      k.psk.fill(0);
      k.helloKey.fill(0);
    }
    this.held = [];
    this.ephemeral?.raw.fill(0);
    this.ephemeral = undefined;
  }

  /**
   * Parses the peer's hello once it is complete. Magic, version, id length and key count are
   * judged as soon as they arrive (they are needed to frame the hello, and a stranger should hear
   * "not a takeover peer" at once); the key offer once the hello is whole; everything else only
   * after the tags of the keys we hold verified. Returns true when the handshake is done.
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
    const countAt = HELLO_FIXED + idLength;
    if (q.length <= countAt) return false;
    const count = q.byteAt(countAt);
    if (count < 1 || count > MAX_KEYS)
      return this.fail(events, `hello: key count ${count} is outside 1..${MAX_KEYS}.`);
    const bodyLength = countAt + 1 + KEY_ID_BYTES * count;
    if (q.length < bodyLength + HELLO_TAG_BYTES * count) return false;
    const h = q.take(bodyLength + HELLO_TAG_BYTES * count);
    const body = h.subarray(0, bodyLength);
    const offered: string[] = [];
    for (let i = 0; i < count; i++) {
      const at = countAt + 1 + KEY_ID_BYTES * i;
      const id = toHex(h.subarray(at, at + KEY_ID_BYTES));
      if (offered.includes(id)) return this.fail(events, `hello: key id ${id} is offered twice.`);
      offered.push(id);
    }
    // The initiator's preference decides; both ends compute the same answer from the two lists.
    const [first, second] = this.initiator ? [this.ids, offered] : [offered, this.ids];
    const agreed = first.find((id) => second.includes(id));
    if (agreed === undefined)
      return this.fail(
        events,
        `hello: no pre-shared key in common: the peer offers key${count > 1 ? 's' : ''} ${offered.join(', ')}, ` +
          `this node holds ${this.ids.join(', ')} (a key's id is the first 8 hex digits of its SHA-256); ` +
          'add the same key to both key files and send SIGHUP.',
      );
    // Every tag we can check is checked, so that no byte of the hello goes unauthenticated
    // when we hold all the keys offered (the tags of keys we lack are beyond our reach).
    for (const [i, id] of offered.entries()) {
      const k = this.held.find((x) => x.id === id);
      const tagAt = bodyLength + HELLO_TAG_BYTES * i;
      if (k !== undefined && !tagsEqual(hmac(k.helloKey, body), h.subarray(tagAt, tagAt + HELLO_TAG_BYTES)))
        return this.fail(
          events,
          `hello: authentication failed with key ${id}: the hello was forged or corrupted ` +
            '(or the peer holds another key with the same id).',
        );
    }
    const mine = this.held.find((k) => k.id === agreed)!;
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
    let peerId: string;
    try {
      peerId = UTF8_STRICT.decode(h.subarray(HELLO_FIXED, countAt));
    } catch {
      return this.fail(events, 'hello: the peer node id is not valid UTF-8.');
    }
    let shared: Buffer;
    try {
      const share = h.subarray(HELLO_SHARE_AT, HELLO_SHARE_AT + SHARE_BYTES);
      const publicKey = createPublicKey({
        key: Buffer.from(concatBytes(X25519_SPKI_PREFIX, share)),
        format: 'der',
        type: 'spki',
      });
      shared = diffieHellman({ privateKey: this.ephemeral!.key, publicKey });
    } catch {
      // OpenSSL refuses a low-order point (an all-zero shared secret).
      return this.fail(events, "hello: the peer's X25519 key share is invalid.");
    }
    const ours = this.helloBytes.subarray(0, this.helloBodyLength);
    const [iBody, rBody] = this.initiator ? [ours, body] : [body, ours];
    const transcript = createHash('sha256').update(iBody).update(rBody).digest();
    const ikm = Buffer.concat([mine.psk, shared]);
    const iToR = hkdf(ikm, transcript, INFO_I_TO_R);
    const rToI = hkdf(ikm, transcript, INFO_R_TO_I);
    ikm.fill(0);
    shared.fill(0);
    this.eraseHandshake();
    const [sendKey, recvKey] = this.initiator ? [iToR, rToI] : [rToI, iToR];
    this.send = { key: sendKey, phase: 0, messages: 0, bytes: 0 };
    this.recv = { key: recvKey, phase: 0, messages: 0, bytes: 0 };
    this.agreedKeyId = agreed;
    this.peer = peerId;
    events.push({ kind: 'ready', peerId, keyId: agreed });
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
    if (q.length > AT_VERSION && q.byteAt(AT_VERSION) !== PROTOCOL_VERSION)
      return this.fail(
        events,
        `message ${n}: protocol version ${q.byteAt(AT_VERSION)}, this node speaks version ${PROTOCOL_VERSION}.`,
      );
    if (q.length < 4 + length) return false;
    const m = q.take(4 + length);
    const dir = this.recv!;
    const flags = m[AT_FLAGS];
    // A flipped key-phase bit: the peer moved to its next key (the stream is in order, so by
    // exactly one step). Try it without committing: a forgery must not move our chain.
    const next = (flags & FLAG_KEY_PHASE) !== dir.phase ? hkdf(dir.key, EMPTY, INFO_UPDATE) : undefined;
    const tagAt = m.length - TAG_BYTES;
    const header = m.subarray(0, MESSAGE_HEADER_BYTES);
    let payload: Uint8Array;
    try {
      const d = createDecipheriv(CIPHER, next ?? dir.key, gcmNonce(header), { authTagLength: TAG_BYTES });
      d.setAAD(header);
      d.setAuthTag(m.subarray(tagAt));
      const plain = d.update(m.subarray(MESSAGE_HEADER_BYTES, tagAt));
      d.final(); // throws when the tag does not verify; nothing is delivered before it
      payload = new Uint8Array(plain.buffer, plain.byteOffset, plain.length);
    } catch {
      next?.fill(0);
      return this.fail(
        events,
        `message ${n}: authentication failed (forged, corrupted, reflected, or from another session or key phase).`,
      );
    }
    if ((flags & ~FLAG_KEY_PHASE) !== 0) {
      next?.fill(0);
      return this.fail(events, `message ${n}: unknown flags 0x${flags.toString(16).padStart(2, '0')}.`);
    }
    // Authentic, so the counter is the peer's own: a mismatch is a replay, drop or reorder on the way.
    const hi = readU32(m, AT_COUNTER);
    const lo = readU32(m, AT_COUNTER + 4);
    if (hi !== Math.floor(n / TWO_32) || lo !== n >>> 0) {
      next?.fill(0);
      const got = (BigInt(hi) << 32n) | BigInt(lo);
      return this.fail(
        events,
        `message ${n}: expected counter ${n}, got ${got} (a replayed, dropped or reordered message).`,
      );
    }
    if (next !== undefined) {
      dir.key.fill(0);
      dir.key = next;
      dir.phase ^= FLAG_KEY_PHASE;
      dir.messages = 0;
      dir.bytes = 0;
      this.stats.keyUpdatesIn++;
    }
    dir.messages++;
    dir.bytes += payload.length;
    this.received = n;
    this.stats.messagesIn++;
    events.push({ kind: 'message', type: m[AT_TYPE], epoch: readU32(m, AT_EPOCH), payload });
    return true;
  }
}

/** Moves a direction to its next key and erases the old one. */
function ratchet(dir: Direction): void {
  const next = hkdf(dir.key, EMPTY, INFO_UPDATE);
  dir.key.fill(0);
  dir.key = next;
  dir.phase ^= FLAG_KEY_PHASE;
  dir.messages = 0;
  dir.bytes = 0;
}
