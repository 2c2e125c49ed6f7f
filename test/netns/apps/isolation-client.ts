/**
 * Kernel-socket clients for the isolation tests (node:net, run in a client namespace). Each
 * prints `started` when its connections are up and one JSON line at the end.
 *
 *   stream <host> <port> <MB/s>        one echo stream, paced, every byte checked; on SIGUSR1 it
 *                                      stops sending, waits for the last echoed byte and ends:
 *                                      {ok, bytes, maxGapMs, errors}
 *   rst <host> <ports> <conns> [hold]  `conns` connections spread over the comma-separated
 *                                      ports; each sends 1,000 bytes and, once its echo has
 *                                      started, another 1,000 and resets (SO_LINGER 0: node's
 *                                      resetAndDestroy) with the second echo due: all at once.
 *                                      With `hold`, they wait for SIGUSR1 first (a take-over in
 *                                      between): {opened, reset, errors}
 *   poison <host> <port> <line>        sends <line> and waits for the connection to end:
 *                                      {outcome: 'reset' | 'end' | <code>, ms, answer}
 *
 * Every wait is bounded (the process exits 1 with what it has after 120 s).
 */
import net from 'node:net';
import { checkPattern, fillPattern } from '../../../src/link/sim/pattern.ts';

const [mode, host, portText, ...rest] = process.argv.slice(2);
const STREAM = 12;
const BATCH = 200;

setTimeout(() => {
  console.log(JSON.stringify({ ok: false, errors: [`${mode}: no result in 120 s`] }));
  process.exit(1);
}, 120_000).unref();

function done(result: Record<string, unknown>, ok: boolean): void {
  console.log(JSON.stringify(result));
  process.exit(ok ? 0 : 1);
}

function stream(port: number, mbPerS: number): void {
  const s = net.connect(port, host);
  const errors: string[] = [];
  let sent = 0;
  let got = 0;
  let stopping = false;
  let blocked = false;
  let lastAt = 0;
  let maxGapMs = 0;
  const perTick = Math.max(1, Math.round((mbPerS * 1e6) / 100));
  const tick = setInterval(() => {
    if (stopping || blocked) return;
    const chunk = Buffer.allocUnsafe(perTick);
    fillPattern(STREAM, sent, chunk);
    sent += chunk.length;
    if (!s.write(chunk)) {
      blocked = true;
      s.once('drain', () => {
        blocked = false;
      });
    }
  }, 10);
  const finish = () => {
    clearInterval(tick);
    if (got !== sent) errors.push(`echo: got ${got} of ${sent}`);
    done(
      { ok: errors.length === 0, bytes: got, maxGapMs: Math.round(maxGapMs), errors },
      errors.length === 0,
    );
  };
  s.on('connect', () => {
    lastAt = performance.now();
    console.log('started');
  });
  s.on('data', (d: Buffer) => {
    const t = performance.now();
    maxGapMs = Math.max(maxGapMs, t - lastAt);
    lastAt = t;
    const bad = checkPattern(STREAM, got, d);
    if (bad >= 0 && errors.length < 5) errors.push(`echo: byte ${got + bad} differs`);
    got += d.length;
    if (stopping && got >= sent) s.end();
  });
  s.on('error', (e) => errors.push(`echo: ${e.message}`));
  s.on('close', finish);
  process.on('SIGUSR1', () => {
    stopping = true;
    clearInterval(tick);
    if (got >= sent) s.end();
  });
}

function rst(ports: number[], conns: number, hold: boolean): void {
  const errors: string[] = [];
  const sockets: net.Socket[] = [];
  let ready = 0;
  let reset = 0;
  const resetAll = () => {
    for (const s of sockets) {
      // Mid-stream: 1,000 more bytes, and the reset as soon as the kernel has them.
      s.write(Buffer.alloc(1000, 0x52), () => {
        s.resetAndDestroy();
        if (++reset === sockets.length) setTimeout(() => done({ opened: ready, reset, errors }, true), 200);
      });
    }
  };
  const open = () => {
    const until = Math.min(conns, sockets.length + BATCH);
    while (sockets.length < until) {
      const s = net.connect(ports[sockets.length % ports.length], host);
      let echoed = false;
      s.on('connect', () => s.write(Buffer.alloc(1000, 0x41)));
      s.on('data', () => {
        if (echoed) return;
        echoed = true;
        ready++;
        if (ready === conns) {
          if (hold) {
            console.log('started');
            process.on('SIGUSR1', resetAll);
          } else resetAll();
        } else if (ready === sockets.length) open();
      });
      s.on('error', (e) => {
        if (errors.length < 5) errors.push(e.message);
      });
      sockets.push(s);
    }
  };
  open();
}

function poison(port: number, line: string): void {
  const t0 = performance.now();
  const s = net.connect(port, host);
  let answer = '';
  s.on('connect', () => {
    console.log('started');
    s.write(`${line}\n`);
  });
  s.on('data', (d: Buffer) => {
    answer += d.toString();
  });
  const end = (outcome: string) => done({ outcome, ms: Math.round(performance.now() - t0), answer }, true);
  s.on('error', (e: NodeJS.ErrnoException) => end(e.code === 'ECONNRESET' ? 'reset' : String(e.code)));
  s.on('end', () => end('end'));
}

if (mode === 'stream') stream(Number(portText), Number(rest[0]));
else if (mode === 'rst') rst(portText.split(',').map(Number), Number(rest[0]), rest[1] === 'hold');
else if (mode === 'poison') poison(Number(portText), rest.join(' '));
else {
  console.error('usage: isolation-client.ts stream|rst|poison <host> <port(s)> ...');
  process.exit(2);
}
