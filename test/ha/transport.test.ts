/**
 * The replication transport over real kernel TCP on 127.0.0.1: two ReplicationTransports, the
 * second dialling the first through a recording proxy (the first dials a closed port, so the
 * proxied link is the only one). What the proxy sees is what an observer of the replication
 * network sees.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { CryptoRandom } from '../../src/api/runtime.ts';
import type { PeerLink } from '../../src/ha/node.ts';
import { keyId } from '../../src/ha/protocol.ts';
import { ReplicationTransport, type TransportOptions } from '../../src/ha/transport.ts';

const HOST = '127.0.0.1';
const OLD = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
const NEW = Uint8Array.from({ length: 32 }, (_, i) => (i * 29 + 3) & 0xff);
const OTHER = Uint8Array.from({ length: 32 }, (_, i) => (i * 53 + 7) & 0xff);

/** A TCP relay to `target` that records every byte in both directions and can cut its links. */
class Relay {
  readonly seen: Buffer[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;

  constructor(target: number) {
    this.server = net.createServer((down) => {
      const up = net.connect({ host: HOST, port: target });
      for (const [from, to] of [
        [down, up],
        [up, down],
      ]) {
        this.sockets.add(from);
        from.on('data', (b: Buffer) => {
          this.seen.push(Buffer.from(b));
          to.write(b);
        });
        from.on('error', () => {});
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
      }
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, HOST, resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Ends every relayed connection at once, as a cable pulled out and plugged back in. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  get bytes(): Buffer {
    return Buffer.concat(this.seen);
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A port nothing listens on (bound by the kernel's choice, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, HOST, resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface Node {
  t: ReplicationTransport;
  logs: string[];
  got: { type: number; epoch: number; payload: Buffer }[];
  opened: number;
  link: PeerLink | undefined;
}

function node(
  nodeId: string,
  keys: Uint8Array[],
  peerPort: number,
  extra: Partial<TransportOptions> = {},
): Node {
  const n: Node = {
    t: undefined as unknown as ReplicationTransport,
    logs: [],
    got: [],
    opened: 0,
    link: undefined,
  };
  n.t = new ReplicationTransport({
    nodeId,
    keys,
    listen: { host: HOST, port: 0 },
    peer: { host: HOST, port: peerPort },
    rng: new CryptoRandom(),
    redialMs: 20,
    onOpen: (link) => {
      n.opened++;
      n.link = link;
    },
    onMessage: (_link, type, epoch, payload) => n.got.push({ type, epoch, payload: Buffer.from(payload) }),
    onClose: (link) => {
      if (n.link === link) n.link = undefined;
    },
    log: (line) => n.logs.push(line),
    ...extra,
  });
  return n;
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** `a` listens; `b` dials `a` through a recording proxy. */
async function linkedPair(
  aKeys: Uint8Array[],
  bKeys: Uint8Array[],
  extra: Partial<TransportOptions> = {},
): Promise<{ a: Node; b: Node; proxy: Relay; stop: () => Promise<void> }> {
  const a = node('a', aKeys, await closedPort(), extra);
  await a.t.start();
  const proxy = new Relay(a.t.port!);
  const b = node('b', bKeys, await proxy.listen(), extra);
  await b.t.start();
  const stop = async () => {
    await Promise.all([a.t.stop(), b.t.stop()]);
    await proxy.close();
  };
  cleanups.push(stop);
  return { a, b, proxy, stop };
}

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups) await c();
});

describe('replication transport over loopback kernel TCP', () => {
  test('messages cross both ways intact, and no plaintext crosses the wire', async () => {
    const { a, b, proxy, stop } = await linkedPair([OLD], [OLD]);
    await until('both ends linked', () => a.link !== undefined && b.link !== undefined);
    const secret = Buffer.from('PUT /vault/42 card=4111111111111111 cvv=123 '.repeat(40));
    a.link!.send(7, 3, secret);
    b.link!.send(8, 3, secret);
    await until('both messages', () => a.got.length === 1 && b.got.length === 1);
    assert.deepEqual(b.got[0], { type: 7, epoch: 3, payload: secret });
    assert.deepEqual(a.got[0], { type: 8, epoch: 3, payload: secret });
    const wire = proxy.bytes;
    assert.ok(wire.includes(Buffer.from('TKOV')), 'the proxy saw the hellos');
    assert.ok(wire.length > 2 * secret.length, 'and both messages');
    for (let i = 0; i + 8 <= 48; i++)
      assert.ok(!wire.includes(secret.subarray(i, i + 8)), `plaintext bytes ${i}..${i + 8} on the wire`);
    assert.ok(!wire.includes(Buffer.from(OLD)), 'the key is not on the wire');
    assert.equal(a.t.session?.keyId, keyId(OLD));
    assert.equal(a.t.session?.peerId, 'b');
    assert.equal(b.t.session?.peerId, 'a');
    await stop();
  });

  test('key rotation without a restart: [new, old] with [old], then new on both, then old removed; an unknown key is refused once in the log', async () => {
    const { a, b, proxy, stop } = await linkedPair([NEW, OLD], [OLD]);
    await until('linked with the old key', () => a.link !== undefined && b.link !== undefined);
    assert.equal(a.t.session?.keyId, keyId(OLD));
    assert.equal(b.t.session?.keyId, keyId(OLD));
    assert.ok(
      a.logs.some((l) => l.includes(`uses key ${keyId(OLD)}, not this node's current key ${keyId(NEW)}`)),
      a.logs.join('\n'),
    );

    // Step 1 on b (SIGHUP after adding the new key first): the link that is up is left alone.
    assert.deepEqual(b.t.setKeys([NEW, OLD]), [keyId(NEW), keyId(OLD)]);
    assert.deepEqual(b.t.keyIds, [keyId(NEW), keyId(OLD)]);
    assert.equal(b.t.session?.keyId, keyId(OLD));
    b.link!.send(1, 1, Buffer.from('still up'));
    await until('a message on the old session', () => a.got.length === 1);
    // The next link (b dials, so b's order decides) uses the new key.
    proxy.cut();
    await until('relinked with the new key', () => a.t.session?.keyId === keyId(NEW) && b.link !== undefined);
    assert.equal(b.t.session?.keyId, keyId(NEW));

    // Step 2: the old key removed on both.
    a.t.setKeys([NEW]);
    b.t.setKeys([NEW]);
    proxy.cut();
    const opened = a.opened;
    await until('relinked', () => a.opened > opened && a.t.session !== undefined);
    assert.equal(a.t.session?.keyId, keyId(NEW));

    // A bad list is refused and the keys stay.
    assert.throws(() => b.t.setKeys([]), RangeError);
    assert.throws(() => b.t.setKeys([NEW, new Uint8Array(8)]), /at least 16 bytes/);
    assert.deepEqual(b.t.keyIds, [keyId(NEW)]);

    // A peer with only a key `a` does not hold: refused at every redial, logged once per end.
    b.t.setKeys([OTHER]);
    proxy.cut();
    await until(
      'a few refused redials',
      () => a.logs.filter((l) => l.includes('no pre-shared key')).length > 0,
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.t.session, undefined);
    const refusals = (n: Node) => n.logs.filter((l) => l.includes('no pre-shared key in common'));
    assert.equal(refusals(a).length, 1, a.logs.join('\n'));
    assert.equal(refusals(b).length, 1, b.logs.join('\n'));
    assert.match(
      refusals(a)[0],
      new RegExp(`the peer offers key ${keyId(OTHER)}, this node holds ${keyId(NEW)}`),
    );
    // Putting the key back heals the link with no restart.
    b.t.setKeys([NEW]);
    await until('relinked after the fix', () => a.t.session?.keyId === keyId(NEW));
    await stop();
  });

  test('session keys move on after a bound of messages, and after keyUpdateMs', async () => {
    const { a, b, stop } = await linkedPair([OLD], [OLD], { keyUpdateMessages: 4 });
    await until('linked', () => a.link !== undefined && b.link !== undefined);
    for (let i = 0; i < 20; i++) a.link!.send(1, 1, Buffer.from([i]));
    for (let i = 0; i < 10; i++) b.link!.send(2, 1, Buffer.from([i]));
    await until('all messages', () => b.got.length === 20 && a.got.length === 10);
    assert.deepEqual(
      b.got.map((m) => m.payload[0]),
      Array.from({ length: 20 }, (_, i) => i),
    );
    // 20 messages, 4 per key: keys move before messages 5, 9, 13 and 17; 10 messages: 5 and 9.
    assert.equal(a.t.session?.counters.keyUpdatesOut, 4);
    assert.equal(b.t.session?.counters.keyUpdatesIn, 4);
    assert.equal(b.t.session?.counters.keyUpdatesOut, 2);
    assert.equal(a.t.session?.counters.keyUpdatesIn, 2);
    await stop();

    const timed = await linkedPair([OLD], [OLD], { keyUpdateMs: 100 });
    await until('linked', () => timed.a.link !== undefined && timed.b.link !== undefined);
    timed.a.link!.send(1, 1, Buffer.from('before'));
    await new Promise((r) => setTimeout(r, 300));
    timed.a.link!.send(1, 1, Buffer.from('after'));
    await until('both messages', () => timed.b.got.length === 2);
    assert.equal(
      timed.a.t.session?.counters.keyUpdatesOut,
      1,
      'one update: requested on a tick, used by the next seal',
    );
    assert.equal(timed.b.t.session?.counters.keyUpdatesIn, 1);
    await timed.stop();
  });
});
