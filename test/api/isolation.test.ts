/**
 * Isolation (docs/ARCHITECTURE.md §8, issue 12) on two stacks joined in memory: a client's
 * RST, an exception of the application on one connection, a socket with no 'error' listener, a
 * restored connection that fails again. Each costs that connection (reset, counted), never the
 * process, and the other connections stay byte-exact. The exceptions that escape asynchronously
 * (timers, promises, deferred stream callbacks) reach the process guard: those cases run in a
 * child process (guarded-node.ts), as node:test fails a test on any uncaught exception.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import examples from '../../examples/all.ts';
import type { NetApi, Runtime, Socket } from '../../src/api/index.ts';
import { checkPattern, fillPattern } from '../../src/link/sim/pattern.ts';
import type { LogEvent } from '../../src/log.ts';
import type { StackConnection } from '../../src/stack/stack.ts';
import isolationApp from '../netns/apps/isolation-app.ts';
import { runtimePair } from './pair.ts';

const runtimes: Runtime[] = [];
after(async () => {
  for (const r of runtimes) await r.close();
});

/** The pair, with the server's isolation log kept (`logs`, `events`) instead of written to stderr. */
function pair(): { a: NetApi; b: NetApi; ra: Runtime; rb: Runtime; logs: string[]; events: LogEvent[] } {
  const p = runtimePair();
  runtimes.push(...p.rts);
  const logs: string[] = [];
  const events: LogEvent[] = [];
  p.rts[1].isolation.log = (line, fields) => {
    logs.push(line);
    if (fields) events.push(fields);
  };
  return { a: p.a, b: p.b, ra: p.rts[0], rb: p.rts[1], logs, events };
}

const STREAM = 11;

/** Streams `total` pattern bytes to an echo and checks every byte that comes back. */
function echoStream(net: NetApi, port: number, total: number): Promise<{ got: number; bad: number }> {
  const s = net.connect(port, '198.18.0.2');
  let sent = 0;
  let got = 0;
  let bad = -1;
  const pump = () => {
    while (sent < total) {
      const chunk = Buffer.allocUnsafe(Math.min(16_384, total - sent));
      fillPattern(STREAM, sent, chunk);
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', pump);
    }
  };
  s.on('connect', pump);
  s.on('data', (d: Buffer) => {
    const at = checkPattern(STREAM, got, d);
    if (at >= 0 && bad < 0) bad = got + at;
    got += d.length;
    if (got >= total) s.end();
  });
  return new Promise((resolve, reject) => {
    s.on('error', reject);
    s.on('close', () => resolve({ got, bad }));
  });
}

/** What a client saw at the end: 'reset' (ECONNRESET), 'end' (a FIN), or another error code. */
function outcome(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNRESET' ? 'reset' : String(e.code)));
    s.on('end', () => resolve('end'));
  });
}

/** Connects, and resolves with the socket once `text` came back. */
async function ask(net: NetApi, port: number, line: string): Promise<{ s: Socket; answer: Promise<string> }> {
  const s = net.connect(port, '198.18.0.2');
  await once(s, 'connect');
  let text = '';
  const answer = new Promise<string>((resolve) => {
    s.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.endsWith('\n')) resolve(text);
    });
  });
  s.write(line);
  return { s, answer };
}

describe('isolation: a client cannot take the node down', () => {
  test('RST mid-stream to an echo with no error listener: that connection counted, the node and another stream unharmed', async () => {
    const { a, b, rb, logs, events } = pair();
    isolationApp(b);
    const other = echoStream(a, 7, 2_000_000);
    // A client that sends 1,000 bytes, reads the first echo and resets (SO_LINGER 0), while
    // the careless echo (port 8: s.pipe(s), no 'error' listener) still has bytes to return.
    const r = a.connect(8, '198.18.0.2');
    r.on('error', () => {});
    await once(r, 'connect');
    r.write(Buffer.alloc(1000, 1));
    await once(r, 'data');
    r.resetAndDestroy();
    const o = await other;
    assert.equal(o.bad, -1, `stream byte ${o.bad} differs`);
    assert.equal(o.got, 2_000_000);
    await waitFor(() => rb.isolation.counters.socketErrors === 1, 'the careless echo to count the reset');
    assert.deepEqual(rb.isolation.counters, {
      appErrors: 0,
      socketErrors: 1,
      restoredDropped: 0,
      unattributed: 0,
    });
    assert.match(
      rb.isolation.last ?? '',
      /198\.18\.0\.1:\d+ -> 198\.18\.0\.2:8: 'error' with no listener: read ECONNRESET/,
    );
    // The node still serves.
    const again = await echoStream(a, 8, 10_000);
    assert.deepEqual(again, { got: 10_000, bad: -1 });
    assert.equal(logs.length, 1, `logged once: ${logs.join('\n')}`);
    // One event, with its fields (src/log.ts).
    assert.equal(events.length, 1);
    const { connection, error, ...rest } = events[0];
    assert.match(String(connection), /^198\.18\.0\.1:\d+ -> 198\.18\.0\.2:8$/);
    assert.match(String(error), /^read ECONNRESET/);
    assert.deepEqual(rest, {
      event: 'connection-dropped',
      level: 'warn',
      why: 'socket error without listener',
      restored: false,
    });
  });

  test('the examples listen for errors: a reset on each of echo, download and HTTP is not counted', async () => {
    const { a, b, rb } = pair();
    examples(b);
    for (const [port, request] of [
      [7, Buffer.alloc(1000, 2)],
      [19, '100000000\n'],
      [80, 'GET /bytes/100000000 HTTP/1.1\r\nHost: x\r\n\r\n'],
    ] as const) {
      const s = a.connect(port, '198.18.0.2');
      s.on('error', () => {});
      await once(s, 'connect');
      s.write(request);
      await once(s, 'data');
      s.resetAndDestroy();
    }
    const o = await echoStream(a, 7, 100_000);
    assert.deepEqual(o, { got: 100_000, bad: -1 });
    assert.deepEqual(rb.isolation.counters, {
      appErrors: 0,
      socketErrors: 0,
      restoredDropped: 0,
      unattributed: 0,
    });
  });

  test('the examples bound what a client makes them buffer: a long request line, an endless HTTP head', async () => {
    const { a, b } = pair();
    examples(b);
    const d = a.connect(19, '198.18.0.2');
    const dText = collectText(d);
    d.write('1'.repeat(100));
    assert.equal(await dText, 'bad size\n');
    const h = a.connect(80, '198.18.0.2');
    const hText = collectText(h);
    h.write(`GET /bytes/1 HTTP/1.1\r\n${'X-Pad: y\r\n'.repeat(2000)}`);
    assert.match(await hText, /^HTTP\/1\.1 431 /);
  });

  test('a client socket with no error listener (ECONNREFUSED) is counted, not thrown', async () => {
    const { a, ra } = pair();
    const s = a.connect(81, '198.18.0.2');
    // (not events.once(s, 'close'): that listens for 'error' too)
    await new Promise((resolve) => s.on('close', resolve));
    assert.equal(ra.isolation.counters.socketErrors, 1);
  });
});

describe('isolation: an exception of the application costs one connection', () => {
  test("a throw in one connection's 'data' handler: that client gets a RST, two other streams stay byte-exact", async () => {
    const { a, b, rb } = pair();
    isolationApp(b);
    const streams = [echoStream(a, 7, 3_000_000), echoStream(a, 8, 3_000_000)];
    const { s, answer } = await ask(a, 9, 'echo hi\n');
    assert.equal(await answer, 'hi\n');
    const end = outcome(s);
    s.write('throw\n');
    // A RST, not a FIN: a FIN would tell the client its answer was complete.
    assert.equal(await end, 'reset');
    for (const o of await Promise.all(streams)) assert.deepEqual(o, { got: 3_000_000, bad: -1 });
    assert.deepEqual(rb.isolation.counters, {
      appErrors: 1,
      socketErrors: 0,
      restoredDropped: 0,
      unattributed: 0,
    });
    assert.match(rb.isolation.last ?? '', /:9: the application threw: poison request 'throw' \(at request /);
  });

  test("a throw in the 'connection' handler: that connection reset, the server keeps accepting", async () => {
    const { a, b, rb } = pair();
    let n = 0;
    b.createServer((s) => {
      if (++n === 1) throw new Error('first connection');
      s.on('error', () => {});
      s.pipe(s);
    }).listen(7);
    const first = a.connect(7, '198.18.0.2');
    assert.equal(await outcome(first), 'reset');
    assert.deepEqual(await echoStream(a, 7, 50_000), { got: 50_000, bad: -1 });
    assert.equal(rb.isolation.counters.appErrors, 1);
  });

  test("a malformed request makes the application's parser throw: that connection reset, counted", async () => {
    const { a, b, rb } = pair();
    b.createServer((s) => {
      s.on('error', () => {});
      s.on('data', (d: Buffer) => s.write(`${JSON.stringify(JSON.parse(d.toString()))}\n`));
    }).listen(7);
    const good = await ask(a, 7, '{"a":1}');
    assert.equal(await good.answer, '{"a":1}\n');
    const bad = a.connect(7, '198.18.0.2');
    await once(bad, 'connect');
    const end = outcome(bad);
    bad.write('{not json');
    assert.equal(await end, 'reset');
    assert.equal(rb.isolation.counters.appErrors, 1);
    assert.match(rb.isolation.last ?? '', /the application threw: .*JSON/);
    // The first connection is unharmed.
    const again = new Promise<string>((resolve) => good.s.once('data', (d: Buffer) => resolve(d.toString())));
    good.s.write('[2]');
    assert.equal(await again, '[2]\n');
  });
});

describe('isolation: a poison pill after a take-over', () => {
  test('a restored connection whose pending request throws again is dropped (restoredDropped), another restored one carries on', async () => {
    const { a, b, rb } = pair();
    // The clients connect and send a request each; the "old node" (a bare listener) accepts
    // them and never answers. Then the connections are handed to the application as a
    // take-over does (Runtime.adoptRestored), each with its last checkpoint.
    const held: StackConnection[] = [];
    const l = rb.listen(9, undefined, 16, (c) => held.push(c));
    const poison = a.connect(9, '198.18.0.2');
    const healthy = a.connect(9, '198.18.0.2');
    await Promise.all([once(poison, 'connect'), once(healthy, 'connect')]);
    await waitFor(() => held.length === 2, 'both connections accepted');
    rb.unlisten(l);
    isolationApp(b);
    const byPort = new Map(held.map((c) => [c.remotePort, c]));
    const cPoison = byPort.get(poison.localPort!)!;
    const cHealthy = byPort.get(healthy.localPort!)!;
    cPoison.restored = { checkpoint: { pending: 'throw' }, skipWrite: 0 };
    cHealthy.restored = { checkpoint: undefined, skipWrite: 0 };
    const end = outcome(poison);
    let text = '';
    const answered = new Promise<void>((resolve) =>
      healthy.on('data', (d: Buffer) => {
        text += d.toString();
        if (text === 'still here\n') resolve();
      }),
    );
    rb.adoptRestored([cPoison, cHealthy]);
    healthy.write('echo still here\n');
    assert.equal(await end, 'reset');
    await answered;
    assert.deepEqual(rb.isolation.counters, {
      appErrors: 1,
      socketErrors: 0,
      restoredDropped: 1,
      unattributed: 0,
    });
    assert.match(rb.isolation.last ?? '', /restored by a take-over: dropped, not retried/);
  });

  test('a restored connection whose peer resets it (the RST that killed the old node) is dropped, not thrown', async () => {
    const { a, b, rb } = pair();
    const held: StackConnection[] = [];
    const l = rb.listen(8, undefined, 16, (c) => held.push(c));
    const r = a.connect(8, '198.18.0.2');
    r.on('error', () => {});
    await once(r, 'connect');
    await waitFor(() => held.length === 1, 'the connection accepted');
    rb.unlisten(l);
    isolationApp(b);
    held[0].restored = { checkpoint: undefined, skipWrite: 0 };
    rb.adoptRestored(held);
    r.resetAndDestroy();
    await waitFor(() => rb.isolation.counters.socketErrors === 1, 'the reset counted');
    assert.deepEqual(rb.isolation.counters, {
      appErrors: 0,
      socketErrors: 1,
      restoredDropped: 1,
      unattributed: 0,
    });
  });
});

describe('isolation: exceptions that escape asynchronously (a guarded node in a child process)', () => {
  test('timer, rejected promise, deferred stream callback: each resets its own connection; a top-level throw is counted; the node serves on', () => {
    const r = child('async');
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
    assert.deepEqual(out.outcomes, {
      timer: 'reset',
      rejection: 'reset',
      endHandler: 'reset',
      microtask: 'end',
    });
    assert.deepEqual(out.streams, [
      { got: 1_000_000, bad: -1 },
      { got: 1_000_000, bad: -1 },
    ]);
    assert.deepEqual(out.counters, { appErrors: 3, socketErrors: 0, restoredDropped: 0, unattributed: 2 });
    assert.equal(out.after, 'ok\n', 'the node answers after all that');
  });

  test("an exception of the runtime itself is not the application's: the guard exits (70), the standby takes over", () => {
    const r = child('internal');
    assert.equal(r.status, 70, `exit ${r.status}: ${r.stderr}`);
    assert.match(
      r.stderr,
      /internal error \(uncaughtException\); exiting so that the standby takes over: stack bug/,
    );
  });
});

function child(scenario: string): { status: number | null; stdout: string; stderr: string } {
  const script = new URL('./guarded-node.ts', import.meta.url).pathname;
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, scenario], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function collectText(s: Socket): Promise<string> {
  let text = '';
  s.on('data', (d: Buffer) => {
    text += d.toString();
  });
  s.on('error', () => {});
  return new Promise((resolve) => s.on('close', () => resolve(text)));
}

async function waitFor(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  for (let i = 0; i < 1000 && Date.now() < until; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`gave up waiting for ${what}`);
}
