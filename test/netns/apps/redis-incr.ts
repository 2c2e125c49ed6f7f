/**
 * The relay's correctness client for Redis (issue 13): `conns` kernel connections through the
 * relay each send `INCR <key>` with `depth` commands in flight, until told `stop` on stdin. Every
 * reply must be an integer, each connection's replies strictly increasing; a reset, an error or
 * a closed connection is a failure (a relay that loses or repeats a command shows in the total).
 * At the end one more connection reads `GET <key>`: it must equal the replies counted. Prints
 * `started` once every connection is up, then one JSON line: {ok, replies, final, maxGapMs, errors}.
 *
 *   node --import tsx redis-incr.ts <host> <port> <key> <conns> <depth>
 */
import net from 'node:net';

const [host, portText, key, connsText, depthText] = process.argv.slice(2);
const port = Number(portText);
const conns = Number(connsText);
const depth = Number(depthText);
const errors: string[] = [];
let replies = 0;
let stopping = false;
let maxGapMs = 0;
const cmd = Buffer.from(`*2\r\n$4\r\nINCR\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`);

/** Integer replies (`:N\r\n`) out of a byte stream; anything else is an error. */
class Replies {
  private buf = '';
  push(d: Buffer, each: (n: number) => void, bad: (line: string) => void): void {
    this.buf += d.toString('latin1');
    for (let i = this.buf.indexOf('\r\n'); i >= 0; i = this.buf.indexOf('\r\n')) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      if (line.startsWith(':')) each(Number(line.slice(1)));
      else bad(line);
    }
  }
}

function run(i: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const r = new Replies();
    let inFlight = 0;
    let last = 0;
    let lastAt = 0;
    let ended = false;
    const fill = () => {
      while (!stopping && inFlight < depth) {
        s.write(cmd);
        inFlight++;
      }
      if (stopping && inFlight === 0 && !ended) {
        ended = true;
        s.end();
      }
    };
    states[i] = () =>
      `#${i} ${inFlight} in flight, last ${last}, ${Math.round(performance.now() - lastAt)} ms ago${ended ? ', ended' : ''}`;
    s.on('connect', () => {
      lastAt = performance.now();
      started++;
      if (started === conns) console.log('started');
      fill();
    });
    s.on('data', (d) => {
      const t = performance.now();
      maxGapMs = Math.max(maxGapMs, t - lastAt);
      lastAt = t;
      r.push(
        d,
        (n) => {
          inFlight--;
          replies++;
          if (!(n > last)) errors.push(`conn ${i}: reply ${n} after ${last}`);
          last = n;
        },
        (line) => errors.push(`conn ${i}: not an integer reply: ${line.slice(0, 80)}`),
      );
      fill();
    });
    s.on('error', (e: NodeJS.ErrnoException) => errors.push(`conn ${i}: ${e.code ?? e.message}`));
    s.on('close', () => {
      if (!ended) errors.push(`conn ${i}: closed by the other side with ${inFlight} command(s) unanswered`);
      resolve();
    });
  });
}

let started = 0;
/** Each connection's state, for the progress lines on stderr. */
const states: (() => string)[] = [];
setInterval(() => console.error(`replies ${replies}: ${states.map((f) => f()).join('; ')}`), 2000).unref();

function get(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let buf = '';
    s.on('connect', () => s.write(`*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`));
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const m = /^\$\d+\r\n(\d+)\r\n/.exec(buf);
      if (m) {
        s.end();
        resolve(Number(m[1]));
      }
    });
    s.on('error', (e) => {
      errors.push(`GET: ${e.message}`);
      resolve(Number.NaN);
    });
  });
}

process.stdin.on('data', (d) => {
  if (d.toString().includes('stop')) {
    stopping = true;
  }
});

const all = Array.from({ length: conns }, (_, i) => run(i));
const hardStop = setTimeout(() => {
  errors.push('did not finish within 10 minutes');
  process.exit(1);
}, 600_000);
await Promise.all(all);
const final = await get();
clearTimeout(hardStop);
if (final !== replies) errors.push(`GET ${key} = ${final}, but ${replies} INCR replies were received`);
console.log(
  JSON.stringify({
    ok: errors.length === 0,
    replies,
    final,
    maxGapMs: Math.round(maxGapMs),
    errors: errors.slice(0, 20),
  }),
);
process.exit(0);
