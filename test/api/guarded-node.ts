/**
 * A node with the process guard installed, as `takeover node` installs it, on the in-memory pair;
 * run by isolation.test.ts in a child process (node:test treats any uncaught exception in its own
 * process as a failed test, so the guard cannot be tried there).
 *
 *   node --import tsx guarded-node.ts async      prints one JSON line: what each client saw,
 *                                                the streams' byte checks, the counters
 *   node --import tsx guarded-node.ts internal   the stack throws: the guard exits 70
 */
import { once } from 'node:events';
import { installProcessGuard, type NetApi, type Socket } from '../../src/api/index.ts';
import { checkPattern, fillPattern } from '../../src/link/sim/pattern.ts';
import isolationApp from '../netns/apps/isolation-app.ts';
import { runtimePair } from './pair.ts';

const scenario = process.argv[2];
const { a, b, rts } = runtimePair();
const [, rb] = rts;
installProcessGuard(rb.isolation);
const watchdog = setTimeout(() => {
  console.error('guarded-node: scenario did not finish in 30 s');
  process.exit(3);
}, 30_000);

function stream(net: NetApi, port: number, total: number): Promise<{ got: number; bad: number }> {
  const s = net.connect(port, '198.18.0.2');
  let sent = 0;
  let got = 0;
  let bad = -1;
  const pump = () => {
    while (sent < total) {
      const chunk = Buffer.allocUnsafe(Math.min(16_384, total - sent));
      fillPattern(3, sent, chunk);
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', pump);
    }
  };
  s.on('connect', pump);
  s.on('data', (d: Buffer) => {
    const at = checkPattern(3, got, d);
    if (at >= 0 && bad < 0) bad = got + at;
    got += d.length;
    if (got >= total) s.end();
  });
  s.on('error', () => {});
  return new Promise((resolve) => s.on('close', () => resolve({ got, bad })));
}

function outcome(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNRESET' ? 'reset' : String(e.code)));
    s.on('end', () => resolve('end'));
  });
}

/** Sends `what` to port 10 and ends; resolves with how the connection ended for the client. */
async function trigger(what: string): Promise<string> {
  const s = a.connect(10, '198.18.0.2');
  await once(s, 'connect');
  const end = outcome(s);
  s.resume();
  s.write(what);
  if (what === 'endHandler' || what === 'microtask') s.end();
  return end;
}

async function asyncScenario(): Promise<void> {
  isolationApp(b);
  // Failures that escape the runtime's call: each in its own connection's scope but one.
  b.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      const what = d.toString();
      if (what === 'timer')
        setTimeout(() => {
          throw new Error('timer');
        }, 20);
      else if (what === 'rejection')
        void (async () => {
          await new Promise((r) => setTimeout(r, 20));
          throw new Error('rejection');
        })();
      else if (what === 'endHandler')
        s.on('end', () => {
          throw new Error("'end' handler");
        });
      else if (what === 'microtask')
        // Not attributable: queueMicrotask's callback throws after its async scope has closed.
        queueMicrotask(() => {
          throw new Error('microtask');
        });
    });
  }).listen(10);
  // And one at the application's top level, belonging to no connection.
  setTimeout(() => {
    throw new Error('top level');
  }, 10);
  const streams = Promise.all([stream(a, 7, 1_000_000), stream(a, 7, 1_000_000)]);
  const outcomes = {
    timer: await trigger('timer'),
    rejection: await trigger('rejection'),
    endHandler: await trigger('endHandler'),
    microtask: await trigger('microtask'),
  };
  const s = a.connect(9, '198.18.0.2');
  let after = '';
  s.on('data', (d: Buffer) => {
    after += d.toString();
  });
  s.end('echo ok\n');
  await once(s, 'close');
  console.log(JSON.stringify({ outcomes, streams: await streams, counters: rb.isolation.counters, after }));
}

async function internalScenario(): Promise<void> {
  isolationApp(b);
  rb.stack.poll = () => {
    throw new Error('stack bug');
  };
  rb.kick();
  await new Promise((r) => setTimeout(r, 5000));
  console.error('guarded-node: the guard did not exit');
  process.exit(4);
}

try {
  if (scenario === 'async') await asyncScenario();
  else if (scenario === 'internal') await internalScenario();
  else throw new Error(`unknown scenario ${scenario}`);
} finally {
  clearTimeout(watchdog);
  for (const r of rts) await r.close();
}
process.exit(0);
