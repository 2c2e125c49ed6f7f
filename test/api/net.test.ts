/**
 * The node:net surface over two stacks joined by an in-memory link (no root needed): events and
 * their order, backpressure, half-close, errors named as node:net names them, node:http.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, describe, test } from 'node:test';
import type { Runtime, Socket } from '../../src/api/index.ts';
import { runtimePair as pair } from './pair.ts';

const runtimes: Runtime[] = [];
after(async () => {
  for (const r of runtimes) await r.close();
});

function collect(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return once(s, 'end').then(() => Buffer.concat(parts));
}

describe('node:net shape over our stack', () => {
  test('echo: connect/ready/data/end/close in node order, addresses, bytes counted', async () => {
    const { a, b, rts } = pair();
    runtimes.push(...rts);
    const server = b.createServer((s) => s.pipe(s));
    server.listen(7);
    await once(server, 'listening');
    assert.deepEqual(server.address(), { address: '0.0.0.0', family: 'IPv4', port: 7 });
    const events: string[] = [];
    const c = a.connect(7, '198.18.0.2');
    for (const e of ['connect', 'ready', 'end', 'close']) c.on(e, () => events.push(e));
    await once(c, 'connect');
    assert.equal(c.remoteAddress, '198.18.0.2');
    assert.equal(c.remotePort, 7);
    assert.equal(c.remoteFamily, 'IPv4');
    assert.equal(c.localAddress, '198.18.0.1');
    const payload = Buffer.alloc(300_000, 7);
    const got = collect(c);
    const closed = once(c, 'close');
    c.end(payload);
    assert.deepEqual(await got, payload);
    await closed;
    assert.deepEqual(events, ['connect', 'ready', 'end', 'close']);
    assert.equal(c.bytesWritten, 300_000);
    assert.equal(c.bytesRead, 300_000);
    server.close();
    await once(server, 'close');
  });

  test('IPv6 and backpressure: write() returns false, drain follows, nothing lost', async () => {
    const { a, b, rts } = pair();
    runtimes.push(...rts);
    const received: Buffer[] = [];
    const done = new Promise<number>((resolve) => {
      b.createServer((s) => {
        s.pause();
        // A slow reader: the sender must see backpressure.
        setTimeout(() => s.resume(), 200);
        s.on('data', (d: Buffer) => received.push(d));
        s.on('end', () => {
          resolve(received.reduce((n, d) => n + d.length, 0));
          s.end();
        });
      }).listen(9);
    });
    const c = a.connect({ port: 9, host: 'fd00::2' });
    await once(c, 'connect');
    let sawFalse = false;
    let written = 0;
    const chunk = Buffer.alloc(1 << 20, 1);
    while (written < 12 << 20) {
      written += chunk.length;
      if (!c.write(chunk)) {
        sawFalse = true;
        await once(c, 'drain');
      }
    }
    c.end();
    assert.ok(sawFalse, 'write() signalled backpressure');
    assert.equal(await done, written);
  });

  test('ECONNREFUSED for a closed port, with node:net error fields', async () => {
    const { a, rts } = pair();
    runtimes.push(...rts);
    const c = a.connect(81, '198.18.0.2');
    const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException & { address: string; port: number }];
    assert.equal(err.code, 'ECONNREFUSED');
    assert.equal(err.syscall, 'connect');
    assert.equal(err.address, '198.18.0.2');
    assert.equal(err.port, 81);
  });

  test('half-close with allowHalfOpen: the server answers after the client ends', async () => {
    const { a, b, rts } = pair();
    runtimes.push(...rts);
    b.createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
      });
      s.on('end', () => s.end(`got ${n}`));
    }).listen(5);
    const c = a.connect(5, '198.18.0.2');
    const got = collect(c);
    c.end(Buffer.alloc(5000));
    assert.equal((await got).toString(), 'got 5000');
  });

  test('node:http serves over our sockets', async () => {
    const { a, b, rts } = pair();
    runtimes.push(...rts);
    const web = http.createServer((req, res) => res.end(`hello ${req.url}`));
    b.createServer((s) => web.emit('connection', s)).listen(8080);
    const c = a.connect(8080, '198.18.0.2');
    const got = collect(c);
    c.write('GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const text = (await got).toString();
    assert.match(text, /^HTTP\/1\.1 200 OK/);
    assert.match(text, /hello \/x$/);
  });

  test('listen twice on a port: EADDRINUSE as an error event', async () => {
    const { b, rts } = pair();
    runtimes.push(...rts);
    b.createServer().listen(22);
    const s2 = b.createServer().listen(22);
    const [err] = (await once(s2, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'EADDRINUSE');
  });
});
