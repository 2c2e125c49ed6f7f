/**
 * The client of `npm run bench -- throughput`: kernel TCP (node:net) in a client namespace,
 * measuring one server address at a time against the services of services.ts.
 *
 * Command mode (no arguments): prints `ready`, then reads one JSON command a line on stdin and
 * answers each with one JSON line on stdout, so the benchmark can sample the server's CPU right
 * before and after each measurement without paying this process's start-up each time:
 *
 *   {"op":"download","host":"198.18.0.2","bytes":200000000}   port 19: "<bytes>\n", read to end
 *   {"op":"upload","host":"198.18.0.2","bytes":200000000}     port 9: stream, end, "<bytes> <sha>"
 *   {"op":"latency","host":"198.18.0.2","count":20000,"warmup":1000}   port 7: 1-byte ping-pong
 *
 * One-shot: `node --import tsx bench-client.ts <op> <host> [bytes|count]` prints one JSON line.
 *
 * MB/s is payload bytes / 1e6 over the wall time from connect() to the end (download: the
 * server's FIN; upload: the sink's answer). Every command may carry `timeoutMs`.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { bodyChunk } from './body.ts';

export interface Command {
  op: 'download' | 'upload' | 'latency';
  host: string;
  bytes?: number;
  count?: number;
  warmup?: number;
  timeoutMs?: number;
}

export interface TransferResult {
  op: 'download' | 'upload';
  ok: true;
  host: string;
  bytes: number;
  seconds: number;
  mbPerS: number;
  /** This client's own CPU over the transfer, % of one core. */
  clientCpuPct: number;
}

export interface LatencyResult {
  op: 'latency';
  ok: true;
  host: string;
  count: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  minUs: number;
  maxUs: number;
}

export interface Failure {
  op: string;
  ok: false;
  host: string;
  error: string;
}

export type Result = TransferResult | LatencyResult | Failure;

const DOWNLOAD_PORT = 19;
const UPLOAD_PORT = 9;
const ECHO_PORT = 7;
/** What an upload writes, over and over (the sink hashes it; we hash the same bytes beforehand). */
const BLOCK = bodyChunk(0, 1 << 20);

/** A default bound: 5 MB/s at the least, and never under 20 s. */
function defaultTimeout(bytes: number): number {
  return Math.max(20_000, Math.ceil(bytes / 5e6) * 1000);
}

function cpuPct(before: NodeJS.CpuUsage, seconds: number): number {
  const d = process.cpuUsage(before);
  return seconds > 0 ? ((d.user + d.system) / 1e6 / seconds) * 100 : 0;
}

/** Runs `body` with a deadline: the socket it registers is destroyed and the promise rejects. */
function bounded<T>(
  what: string,
  timeoutMs: number,
  body: (resolve: (v: T) => void, reject: (e: Error) => void, own: (s: net.Socket) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let sock: net.Socket | undefined;
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(
      () =>
        finish(() => {
          sock?.destroy();
          reject(new Error(`${what}: no end within ${timeoutMs} ms`));
        }),
      timeoutMs,
    );
    body(
      (v) => finish(() => resolve(v)),
      (e) =>
        finish(() => {
          sock?.destroy();
          reject(e);
        }),
      (s) => {
        sock = s;
      },
    );
  });
}

function download(host: string, bytes: number, timeoutMs = defaultTimeout(bytes)): Promise<TransferResult> {
  return bounded(`download of ${bytes} bytes from ${host}`, timeoutMs, (resolve, reject, own) => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let got = 0;
    const s = net.connect({ host, port: DOWNLOAD_PORT });
    own(s);
    s.on('connect', () => s.write(`${bytes}\n`));
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    s.on('end', () => {
      const seconds = (performance.now() - t0) / 1000;
      if (got !== bytes) {
        reject(new Error(`download from ${host}: ${got} bytes arrived, ${bytes} asked for`));
        return;
      }
      resolve({
        op: 'download',
        ok: true,
        host,
        bytes,
        seconds,
        mbPerS: bytes / 1e6 / seconds,
        clientCpuPct: cpuPct(cpu0, seconds),
      });
    });
    s.on('error', (e) => reject(new Error(`download from ${host}: ${e.message}`)));
  });
}

const shaCache = new Map<number, string>();

/** sha256 of what `upload(bytes)` sends: BLOCK repeated, the last one cut short. */
function uploadSha(bytes: number): string {
  let v = shaCache.get(bytes);
  if (v === undefined) {
    const h = createHash('sha256');
    for (let at = 0; at < bytes; at += BLOCK.length)
      h.update(BLOCK.subarray(0, Math.min(BLOCK.length, bytes - at)));
    v = h.digest('hex');
    shaCache.set(bytes, v);
  }
  return v;
}

function upload(host: string, bytes: number, timeoutMs = defaultTimeout(bytes)): Promise<TransferResult> {
  // Hashed before the clock starts: the transfer is timed, not our hashing.
  const want = `${bytes} ${uploadSha(bytes)}`;
  return bounded(`upload of ${bytes} bytes to ${host}`, timeoutMs, (resolve, reject, own) => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let at = 0;
    let answer = '';
    const s = net.connect({ host, port: UPLOAD_PORT });
    own(s);
    const more = () => {
      while (at < bytes) {
        const n = Math.min(BLOCK.length, bytes - at);
        at += n;
        if (!s.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
          s.once('drain', more);
          return;
        }
      }
      s.end();
    };
    more();
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      answer += d;
      const nl = answer.indexOf('\n');
      if (nl < 0) return;
      const seconds = (performance.now() - t0) / 1000;
      const line = answer.slice(0, nl);
      if (line !== want) {
        reject(new Error(`upload to ${host}: the sink answered '${line}', expected '${want}'`));
        return;
      }
      resolve({
        op: 'upload',
        ok: true,
        host,
        bytes,
        seconds,
        mbPerS: bytes / 1e6 / seconds,
        clientCpuPct: cpuPct(cpu0, seconds),
      });
      s.destroy();
    });
    s.on('end', () =>
      reject(new Error(`upload to ${host}: the sink closed without an answer ('${answer}')`)),
    );
    s.on('error', (e) => reject(new Error(`upload to ${host}: ${e.message}`)));
  });
}

function percentile(sorted: Float64Array, p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

function latency(
  host: string,
  count: number,
  warmup: number,
  timeoutMs = 20_000 + (count + warmup) * 2,
): Promise<LatencyResult> {
  return bounded(`${count} echoes from ${host}`, timeoutMs, (resolve, reject, own) => {
    const samples = new Float64Array(count);
    const one = Buffer.from([0x2a]);
    let i = -warmup;
    let t0 = 0;
    const s = net.connect({ host, port: ECHO_PORT });
    own(s);
    s.setNoDelay(true);
    const ping = () => {
      t0 = performance.now();
      s.write(one);
    };
    s.on('connect', ping);
    s.on('data', (d: Buffer) => {
      const t = performance.now();
      if (d.length !== 1) {
        reject(new Error(`echo from ${host}: ${d.length} bytes came back for a 1-byte request`));
        return;
      }
      if (i >= 0) samples[i] = (t - t0) * 1000;
      i++;
      if (i < count) {
        ping();
        return;
      }
      s.destroy();
      const sorted = samples.slice().sort();
      let sum = 0;
      for (const v of sorted) sum += v;
      resolve({
        op: 'latency',
        ok: true,
        host,
        count,
        p50Us: percentile(sorted, 0.5),
        p99Us: percentile(sorted, 0.99),
        meanUs: sum / count,
        minUs: sorted[0],
        maxUs: sorted[count - 1],
      });
    });
    s.on('end', () => reject(new Error(`echo from ${host}: closed after ${i + warmup} echoes`)));
    s.on('error', (e) => reject(new Error(`echo from ${host}: ${e.message}`)));
  });
}

async function perform(c: Command): Promise<Result> {
  try {
    if (c.op === 'download') return await download(c.host, c.bytes ?? 200e6, c.timeoutMs);
    if (c.op === 'upload') return await upload(c.host, c.bytes ?? 200e6, c.timeoutMs);
    if (c.op === 'latency') return await latency(c.host, c.count ?? 20_000, c.warmup ?? 1000, c.timeoutMs);
    return { op: String(c.op), ok: false, host: String(c.host), error: `unknown op '${String(c.op)}'` };
  } catch (e) {
    return { op: c.op, ok: false, host: c.host, error: (e as Error).message };
  }
}

async function commandMode(): Promise<void> {
  let buffered = '';
  let queue = Promise.resolve();
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d: string) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line === '') continue;
      queue = queue.then(async () => {
        let r: Result;
        try {
          r = await perform(JSON.parse(line) as Command);
        } catch (e) {
          r = { op: '?', ok: false, host: '?', error: `bad command '${line}': ${(e as Error).message}` };
        }
        process.stdout.write(`${JSON.stringify(r)}\n`);
      });
    }
  });
  process.stdin.on('end', () => {
    void queue.then(() => process.exit(0));
  });
  console.log('ready');
}

const [op, host, n] = process.argv.slice(2);
if (op === undefined) await commandMode();
else {
  const num = n === undefined ? undefined : Number(n);
  const r = await perform({ op: op as Command['op'], host, bytes: num, count: num });
  console.log(JSON.stringify(r));
  process.exitCode = r.ok ? 0 : 1;
}
