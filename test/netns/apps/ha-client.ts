/**
 * A kernel-socket client for the take-over tests (node:net, run in the client namespace). It
 * checks every byte and measures the longest gap in bytes arriving (the stall a take-over
 * causes), then prints one JSON line: {ok, mode, connections, bytes, maxGapMs, maxConnGapMs, errors}:
 * the longest time no byte reached the process, and the longest any one connection waited.
 *
 *   node --import tsx ha-client.ts echo <host> <port> <bytes>       one stream both ways (echo example)
 *   node --import tsx ha-client.ts http <host> <port> <conns> <requests> <size>
 *                                        keep-alive GET /bytes/<size> loops (http example)
 *
 *   node --import tsx ha-client.ts idle <host> <port> <conns>       idle connections to echo; on
 *                                        SIGUSR1 one byte on each must come back
 *
 * Prints `started` once every connection is established.
 */
import net from 'node:net';
import { HTTP_PATTERN } from '../../../examples/http.ts';
import { checkPattern, fillPattern } from '../../../src/link/sim/pattern.ts';

const [mode, host, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);
const ECHO_STREAM = 5;
const errors: string[] = [];
let bytes = 0;
let lastByteAt = 0;
let maxGapMs = 0;
let connected = 0;

/** The longest any one connection waited for its next bytes (from its connect). */
let maxConnGapMs = 0;

/** `n` bytes arrived, on connection `conn` (its own last arrival, updated here). */
function arrived(n: number, conn?: { lastAt: number }): void {
  const t = performance.now();
  if (lastByteAt > 0) maxGapMs = Math.max(maxGapMs, t - lastByteAt);
  lastByteAt = t;
  if (conn) {
    maxConnGapMs = Math.max(maxConnGapMs, t - conn.lastAt);
    conn.lastAt = t;
  }
  bytes += n;
}

function finish(conns: number): void {
  const ok = errors.length === 0;
  console.log(
    JSON.stringify({
      ok,
      mode,
      connections: conns,
      bytes,
      maxGapMs: Math.round(maxGapMs),
      maxConnGapMs: Math.round(maxConnGapMs),
      errors: errors.slice(0, 5),
    }),
  );
  process.exit(ok ? 0 : 1);
}

function echo(total: number): void {
  const s = net.connect(port, host);
  let sent = 0;
  let got = 0;
  const pump = () => {
    while (sent < total) {
      const chunk = Buffer.allocUnsafe(Math.min(65536, total - sent));
      fillPattern(ECHO_STREAM, sent, chunk);
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', pump);
    }
  };
  const conn = { lastAt: 0 };
  s.on('connect', () => {
    conn.lastAt = performance.now();
    console.log('started');
    pump();
  });
  s.on('data', (d: Buffer) => {
    const bad = checkPattern(ECHO_STREAM, got, d);
    if (bad >= 0 && errors.length === 0) errors.push(`echo: byte ${got + bad} differs`);
    got += d.length;
    arrived(d.length, conn);
    if (got >= total) s.end();
  });
  s.on('error', (e) => errors.push(`echo: ${e.message}`));
  s.on('close', () => {
    if (got !== total) errors.push(`echo: got ${got} of ${total}`);
    finish(1);
  });
}

function http(conns: number, requests: number, size: number): void {
  let done = 0;
  for (let i = 0; i < conns; i++) {
    const s = net.connect(port, host);
    let answered = 0;
    let head = '';
    let body = -1;
    const conn = { lastAt: 0 };
    const ask = () => s.write(`GET /bytes/${size} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    s.on('connect', () => {
      if (++connected === conns) console.log('started');
      conn.lastAt = performance.now();
      ask();
    });
    s.on('data', (d: Buffer) => {
      arrived(d.length, conn);
      let off = 0;
      while (off < d.length) {
        if (body < 0) {
          const text = d.toString('latin1', off);
          const end = (head + text).indexOf('\r\n\r\n');
          if (end < 0) {
            head += text;
            return;
          }
          const used = end + 4 - head.length;
          const status = (head + text).slice(0, 12);
          if (status !== 'HTTP/1.1 200') errors.push(`http: status ${status}`);
          head = '';
          body = 0;
          off += used;
          continue;
        }
        const n = Math.min(size - body, d.length - off);
        const bad = checkPattern(HTTP_PATTERN, body, d.subarray(off, off + n));
        if (bad >= 0 && errors.length < 5) errors.push(`http: body byte ${body + bad} differs`);
        body += n;
        off += n;
        if (body === size) {
          body = -1;
          answered++;
          if (answered < requests) ask();
          else s.end();
        }
      }
    });
    s.on('error', (e) => errors.push(`http: ${e.message}`));
    s.on('close', () => {
      if (answered !== requests) errors.push(`http: ${answered} of ${requests} answered`);
      if (++done === conns) finish(conns);
    });
  }
}

/** Opens `conns` idle connections (a few hundred at a time); on SIGUSR1 pings each once. */
function idle(conns: number): void {
  const sockets: net.Socket[] = [];
  let open = 0;
  const batch = () => {
    const until = Math.min(conns, sockets.length + 500);
    while (sockets.length < until) {
      const s = net.connect(port, host);
      s.on('error', (e) => errors.push(`idle: ${e.message}`));
      s.on('connect', () => {
        open++;
        if (open === conns) console.log('started');
        else if (open === sockets.length) batch();
      });
      sockets.push(s);
    }
  };
  batch();
  process.on('SIGUSR1', () => {
    let echoed = 0;
    const t0 = performance.now();
    for (const s of sockets) {
      s.once('data', (d: Buffer) => {
        arrived(d.length);
        if (d.length !== 1 || d[0] !== 0x2a) errors.push('idle: wrong echo');
        if (++echoed === conns) {
          maxGapMs = performance.now() - t0;
          for (const x of sockets) x.destroy();
          finish(conns);
        }
      });
      s.write(Buffer.of(0x2a));
    }
  });
}

if (mode === 'echo') echo(Number(rest[0]));
else if (mode === 'idle') idle(Number(rest[0]));
else if (mode === 'http') http(Number(rest[0]), Number(rest[1]), Number(rest[2]));
else {
  console.error(
    'usage: ha-client.ts echo <host> <port> <bytes> | http <host> <port> <conns> <requests> <size>',
  );
  process.exit(2);
}
