/**
 * The nemesis load: kernel-socket clients (node:net, run in the client namespace) that check
 * every byte they get and time every wait, for the checker (checker.ts) to judge.
 *
 *   node --import tsx client.ts '<ClientConfig as JSON>'
 *
 * Workloads, all at once, on the VIP:
 * - `echo` streams to port 7, paced (a chunk every `echoEveryMs`), both ways, every byte of the
 *   answer checked against the self-locating stream (stream.ts): lost, duplicated, corrupted;
 * - `rr` request/response connections to port 7: a message of 64..1400 bytes, its echo in full,
 *   a think time, again;
 * - `http` keep-alive connections to port 80: GET /bytes/<n>, the body checked, a think time;
 * - new connections every `newConnEveryMs` (alternately rr and http) that stay open and keep
 *   asking until the end: those opened during a fault must live on after it.
 *
 * Stdin commands (one a line): `phase <name>` (waits are also counted per phase), `newconns <ms>`
 * (0: none), `storm <n>` (opens n idle echo connections, each echoes one byte, then prints
 * `storm-ready <n>`), `storm-reset` (resets them all at once, SO_LINGER 0, and prints
 * `storm-reset`), `stop` (no new requests; waits up to `drainMs` for what is owed, closes every
 * connection, prints `result <ClientReport as JSON>` and exits).
 *
 * A connection *waits* while it is owed bytes (a request or stream bytes not yet echoed, a
 * response not complete, a connect not answered); its stall is its longest wait.
 */
import net from 'node:net';
import { HTTP_PATTERN } from '../../../examples/http.ts';
import { checkPattern } from '../../../src/link/sim/pattern.ts';
import { locatePattern, StreamChecker, streamBytes } from './stream.ts';

export interface ClientConfig {
  host: string;
  seed: number;
  echo: number;
  echoChunk: number;
  echoEveryMs: number;
  rr: number;
  http: number;
  httpMaxBytes: number;
  thinkMs: number;
  newConnEveryMs: number;
  /** Think time of the connections opened during the run (they add up: keep them light). */
  newThinkMs: number;
  newConnMax: number;
  connectTimeoutMs: number;
  drainMs: number;
}

/** Counts per kind: connections (or events) that saw it. */
export type Kinds = Record<string, number>;

export interface ClientReport {
  connections: number;
  /** Connections opened on the `newconns` schedule (during the run, faults included). */
  newConnections: number;
  bytes: number;
  kinds: Kinds;
  lostBytes: number;
  duplicatedBytes: number;
  /** The first anomalies, one sentence each. */
  examples: string[];
  /** The longest wait of any connection (ms), and per phase (by the phase it ended in). */
  stallMs: number;
  phaseStallMs: Record<string, number>;
  /** Each connection's longest wait (ms), for a distribution. */
  connStallsMs: number[];
  /** The connection that waited longest: its name, the wait, the phase it ended in. */
  worst: string;
  /** The longest wait of the connections open from the start (not those opened during the run). */
  establishedStallMs: number;
  /** Per connection open from the start, its longest wait in each phase (ms). */
  initialPhaseStallsMs: Record<string, number>[];
  /** The same connections: when (wall clock, ms) each phase's longest wait ended. */
  initialPhaseStallEnds: Record<string, number>[];
  storm: { opened: number; reset: number };
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as ClientConfig;
const ECHO_PORT = 7;
const HTTP_PORT = 80;

/** mulberry32: the client's think times and sizes replay with the seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(cfg.seed);
const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

const kinds: Kinds = {};
const examples: string[] = [];
let lostBytes = 0;
let duplicatedBytes = 0;
let totalBytes = 0;
let phase = 'start';
const phaseStallMs: Record<string, number> = {};
let stopping = false;

function anomaly(kind: string, example: string): void {
  kinds[kind] = (kinds[kind] ?? 0) + 1;
  if (examples.length < 12) examples.push(`${kind}: ${example}`);
}

/** One client connection: its waits, its end. */
abstract class Conn {
  readonly s: net.Socket;
  private waitingSince: number | undefined;
  maxWaitMs = 0;
  /** The phase the longest wait ended in. */
  maxWaitPhase = '';
  /** The longest wait that ended in each phase. */
  readonly phaseMax: Record<string, number> = {};
  /** When (wall clock, ms) the longest wait of each phase ended: which part of a fault it was. */
  readonly phaseMaxEnd: Record<string, number> = {};
  connected = false;
  closed = false;
  /** The client ended it (FIN sent): an end from the server before that is unexpected. */
  ending = false;
  failed = false;
  private connectTimer: NodeJS.Timeout | undefined;
  protected thinkTimer: NodeJS.Timeout | undefined;
  readonly closedP: Promise<void>;

  constructor(
    readonly name: string,
    port: number,
    /** Think time between requests (ms). */
    protected readonly think = cfg.thinkMs,
  ) {
    this.s = net.connect({ host: cfg.host, port });
    this.s.setNoDelay(true);
    this.wait();
    this.connectTimer = setTimeout(() => {
      if (this.connected) return;
      this.fail('connect-timeout', `no answer to the connect in ${cfg.connectTimeoutMs} ms`);
    }, cfg.connectTimeoutMs);
    this.s.on('connect', () => {
      this.connected = true;
      clearTimeout(this.connectTimer);
      this.onConnect();
    });
    this.s.on('data', (d: Buffer) => {
      totalBytes += d.length;
      if (this.failed) return;
      // The wait this arrival ends is measured before the data is taken in: taking it in may
      // complete a response (no longer waiting) or send the next request (waiting anew).
      const now = performance.now();
      this.arrived(now);
      this.onData(d);
      this.waitingSince = this.owed() > 0 ? now : undefined;
    });
    this.s.on('end', () => {
      if (!this.ending && !this.failed) {
        const owed = this.owed();
        this.fail('eof', `the server ended the connection (${owed} bytes still owed)`);
      }
    });
    this.s.on('error', (e: NodeJS.ErrnoException) => {
      if (this.failed) return;
      const kind =
        e.code === 'ECONNRESET' || e.code === 'EPIPE'
          ? 'reset'
          : e.code === 'ECONNREFUSED'
            ? 'refused'
            : e.code === 'ETIMEDOUT'
              ? 'timeout'
              : 'error';
      this.fail(
        kind,
        `${e.code ?? e.message} (${this.connected ? `${this.owed()} bytes owed` : 'connecting'})`,
      );
    });
    this.closedP = new Promise((resolve) =>
      this.s.once('close', () => {
        this.closed = true;
        clearTimeout(this.connectTimer);
        clearTimeout(this.thinkTimer);
        resolve();
      }),
    );
  }

  protected abstract onConnect(): void;
  protected abstract onData(d: Buffer): void;
  /** Bytes the server still owes this connection. */
  abstract owed(): number;
  /** No new request; resolves when nothing is owed (or never). */
  abstract quiesce(): void;

  protected wait(): void {
    this.waitingSince ??= performance.now();
  }

  /** Bytes arrived at `now`: the wait they end, if one was under way, is measured. */
  private arrived(now: number): void {
    if (this.waitingSince !== undefined) {
      const w = now - this.waitingSince;
      if (w > (this.phaseMax[phase] ?? -1)) {
        this.phaseMax[phase] = w;
        this.phaseMaxEnd[phase] = Date.now();
      }
      if (w > this.maxWaitMs) {
        this.maxWaitMs = w;
        this.maxWaitPhase = phase;
      }
      phaseStallMs[phase] = Math.max(phaseStallMs[phase] ?? 0, w);
    }
  }

  /** The connection ended in an anomaly: count it once, stop checking it. */
  fail(kind: string, why: string): void {
    if (this.failed) return;
    this.failed = true;
    anomaly(kind, `${this.name}: ${why}`);
    // What it was still owed never arrives: lost to the client, whatever the kind.
    lostBytes += this.owed();
    this.s.destroy();
  }
}

/** An echo stream: a chunk every `echoEveryMs`, the answer checked byte by byte. */
class EchoStream extends Conn {
  private sent = 0;
  private readonly check: StreamChecker;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    name: string,
    readonly key: number,
  ) {
    super(name, ECHO_PORT);
    this.check = new StreamChecker(key, name);
  }

  protected onConnect(): void {
    const tick = () => {
      if (stopping || this.failed) return;
      if (this.s.writableLength < 1 << 20) {
        this.s.write(streamBytes(this.key, this.sent, cfg.echoChunk));
        this.sent += cfg.echoChunk;
        this.wait();
      }
      this.timer = setTimeout(tick, cfg.echoEveryMs);
    };
    tick();
  }

  protected onData(d: Buffer): void {
    this.check.push(d);
  }

  owed(): number {
    return Math.max(0, this.sent - this.check.high);
  }

  quiesce(): void {
    clearTimeout(this.timer);
  }

  get damage() {
    this.check.end();
    return this.check.damage;
  }
}

/** Request/response on the echo port: a message, its echo in full, a think time. */
class EchoRR extends Conn {
  private sent = 0;
  private readonly check: StreamChecker;

  constructor(
    name: string,
    readonly key: number,
    think?: number,
  ) {
    super(name, ECHO_PORT, think);
    this.check = new StreamChecker(key, name);
  }

  protected onConnect(): void {
    this.ask();
  }

  private ask(): void {
    if (stopping || this.failed) return;
    const n = between(64, 1400);
    this.s.write(streamBytes(this.key, this.sent, n));
    this.sent += n;
    this.wait();
  }

  protected onData(d: Buffer): void {
    this.check.push(d);
    if (this.check.high >= this.sent) {
      this.thinkTimer = setTimeout(() => this.ask(), between(this.think / 2, this.think * 2));
    }
  }

  owed(): number {
    return Math.max(0, this.sent - this.check.high);
  }

  quiesce(): void {
    clearTimeout(this.thinkTimer);
  }

  get damage() {
    this.check.end();
    return this.check.damage;
  }
}

/** HTTP/1.1 keep-alive: GET /bytes/<n>, the head and body checked, a think time. */
class HttpConn extends Conn {
  private size = 0;
  /** Body bytes read of the current response; -1 while reading the head. */
  private body = -1;
  private head = '';
  private asked = false;
  answered = 0;

  constructor(name: string, think?: number) {
    super(name, HTTP_PORT, think);
  }

  protected onConnect(): void {
    this.ask();
  }

  private ask(): void {
    if (stopping || this.failed) return;
    this.size = between(1, cfg.httpMaxBytes);
    this.s.write(`GET /bytes/${this.size} HTTP/1.1\r\nHost: ${cfg.host}\r\n\r\n`);
    this.asked = true;
    this.body = -1;
    this.head = '';
    this.wait();
  }

  protected onData(d: Buffer): void {
    let off = 0;
    while (off < d.length && !this.failed) {
      if (!this.asked) {
        this.fail('unasked', `${d.length - off} bytes arrived with no request outstanding`);
        return;
      }
      if (this.body < 0) {
        const text = this.head + d.toString('latin1', off);
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) {
          this.head = text;
          if (this.head.length > 4096) this.fail('corrupted', 'a response head longer than 4 KiB');
          return;
        }
        const status = text.slice(0, 12);
        if (status !== 'HTTP/1.1 200') {
          this.fail('bad-response', `status line ${JSON.stringify(text.slice(0, 40))}`);
          return;
        }
        off += end + 4 - this.head.length;
        this.head = '';
        this.body = 0;
        continue;
      }
      const n = Math.min(this.size - this.body, d.length - off);
      const part = d.subarray(off, off + n);
      const bad = checkPattern(HTTP_PATTERN, this.body, part);
      if (bad >= 0) {
        const at = this.body + bad;
        const from = locatePattern(HTTP_PATTERN, d, off + bad, at);
        if (from === undefined) this.fail('corrupted', `body byte ${at} of ${this.size} belongs nowhere`);
        else if (from < at) {
          duplicatedBytes += at - from;
          this.fail('duplicated', `body bytes from ${from} arrived again at ${at} (of ${this.size})`);
        } else {
          lostBytes += from - at;
          this.fail('lost', `body bytes ${at}..${from} of ${this.size} skipped`);
        }
        return;
      }
      this.body += n;
      off += n;
      if (this.body === this.size) {
        this.answered++;
        this.asked = false;
        this.body = -1;
        this.thinkTimer = setTimeout(() => this.ask(), between(this.think / 2, this.think * 2));
      }
    }
  }

  owed(): number {
    if (!this.asked) return 0;
    return this.body < 0 ? this.size + 1 : this.size - this.body;
  }

  quiesce(): void {
    clearTimeout(this.thinkTimer);
  }
}

const conns: Conn[] = [];
let keys = 1;
let newConns = 0;
let newConnTimer: NodeJS.Timeout | undefined;

function openNew(): void {
  if (stopping || newConns >= cfg.newConnMax) return;
  newConns++;
  const c =
    newConns % 2 === 1
      ? new EchoRR(`new rr #${newConns}`, 0x40000 + keys++, cfg.newThinkMs)
      : new HttpConn(`new http #${newConns}`, cfg.newThinkMs);
  conns.push(c);
}

function scheduleNew(everyMs: number): void {
  clearInterval(newConnTimer);
  newConnTimer = undefined;
  if (everyMs > 0) newConnTimer = setInterval(openNew, everyMs);
}

for (let i = 0; i < cfg.echo; i++) conns.push(new EchoStream(`echo #${i + 1}`, 0x10000 + keys++));
for (let i = 0; i < cfg.rr; i++) conns.push(new EchoRR(`rr #${i + 1}`, 0x20000 + keys++));
for (let i = 0; i < cfg.http; i++) conns.push(new HttpConn(`http #${i + 1}`));
const initial = [...conns];

// `started` once every first connection is up (bounded: the checker counts those that never are).
const startedAt = performance.now();
const startPoll = setInterval(() => {
  if (initial.every((c) => c.connected || c.failed) || performance.now() - startedAt > cfg.connectTimeoutMs) {
    clearInterval(startPoll);
    console.log('started');
    scheduleNew(cfg.newConnEveryMs);
  }
}, 10);

// The RST storm: idle echo connections, then a reset of them all in one synchronous loop.
const storm: net.Socket[] = [];
const stormStat = { opened: 0, reset: 0 };

async function openStorm(n: number): Promise<void> {
  const BATCH = 100;
  for (let i = 0; i < n && !stopping; i += BATCH) {
    const batch: Promise<void>[] = [];
    for (let k = i; k < Math.min(n, i + BATCH); k++) {
      batch.push(
        new Promise<void>((resolve) => {
          const s = net.connect({ host: cfg.host, port: ECHO_PORT });
          const timer = setTimeout(() => {
            anomaly('connect-timeout', `storm #${k}: no echo in ${cfg.connectTimeoutMs} ms`);
            s.destroy();
            resolve();
          }, cfg.connectTimeoutMs);
          s.once('connect', () => s.write(Buffer.of(0x2a)));
          s.once('data', () => {
            clearTimeout(timer);
            stormStat.opened++;
            storm.push(s);
            resolve();
          });
          s.on('error', (e: NodeJS.ErrnoException) => {
            if (storm.includes(s)) return; // after our reset: ours
            clearTimeout(timer);
            anomaly(e.code === 'ECONNREFUSED' ? 'refused' : 'reset', `storm #${k}: ${e.code ?? e.message}`);
            resolve();
          });
        }),
      );
    }
    await Promise.all(batch);
  }
  console.log(`storm-ready ${stormStat.opened}`);
}

function resetStorm(): void {
  for (const s of storm) {
    s.resetAndDestroy();
    stormStat.reset++;
  }
  storm.length = 0;
  console.log('storm-reset');
}

async function stop(): Promise<void> {
  stopping = true;
  scheduleNew(0);
  for (const c of conns) c.quiesce();
  const deadline = performance.now() + cfg.drainMs;
  // What is owed, and connects under way (a SYN lost in a take-over is retried after 1 s, 3 s …).
  while (performance.now() < deadline && conns.some((c) => !c.failed && (!c.connected || c.owed() > 0)))
    await new Promise((r) => setTimeout(r, 20));
  for (const c of conns) {
    if (c.failed) continue;
    if (!c.connected) c.fail('connect-timeout', 'still connecting at the end of the run');
    else if (c.owed() > 0) {
      c.fail('lost', `${c.owed()} bytes still owed ${cfg.drainMs} ms after the load stopped`);
    }
  }
  for (const c of conns) {
    if (c.failed) continue;
    c.ending = true;
    c.s.end();
  }
  await Promise.race([Promise.all(conns.map((c) => c.closedP)), new Promise((r) => setTimeout(r, 3000))]);
  for (const c of conns) {
    if (!c.closed && !c.failed) c.fail('close-timeout', 'no FIN from the server within 3 s of ours');
    c.s.destroy();
  }
  for (const s of storm) s.destroy();
  for (const c of conns) {
    if (!(c instanceof EchoStream || c instanceof EchoRR)) continue;
    const d = c.damage;
    if (d.duplicated > 0) anomaly('duplicated', d.events.join('; '));
    if (d.lost > 0) anomaly('lost', d.events.join('; '));
    if (d.corrupted > 0) anomaly('corrupted', d.events.join('; '));
    duplicatedBytes += d.duplicated;
    lostBytes += d.lost;
  }
  const report: ClientReport = {
    connections: conns.length,
    newConnections: newConns,
    bytes: totalBytes,
    kinds,
    lostBytes,
    duplicatedBytes,
    examples,
    stallMs: Math.round(Math.max(0, ...conns.map((c) => c.maxWaitMs))),
    phaseStallMs: Object.fromEntries(Object.entries(phaseStallMs).map(([k, v]) => [k, Math.round(v)])),
    connStallsMs: conns.map((c) => Math.round(c.maxWaitMs)),
    establishedStallMs: Math.round(Math.max(0, ...initial.map((c) => c.maxWaitMs))),
    initialPhaseStallsMs: initial.map((c) =>
      Object.fromEntries(Object.entries(c.phaseMax).map(([k, v]) => [k, Math.round(v)])),
    ),
    initialPhaseStallEnds: initial.map((c) => ({ ...c.phaseMaxEnd })),
    worst: ((w) => (w ? `${w.name} waited ${Math.round(w.maxWaitMs)} ms (${w.maxWaitPhase})` : ''))(
      [...conns].sort((x, y) => y.maxWaitMs - x.maxWaitMs)[0],
    ),
    storm: stormStat,
  };
  console.log(`result ${JSON.stringify(report)}`);
  process.exit(0);
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  input += d;
  for (let nl = input.indexOf('\n'); nl >= 0; nl = input.indexOf('\n')) {
    const [cmd, arg] = input.slice(0, nl).trim().split(/\s+/);
    input = input.slice(nl + 1);
    if (cmd === 'phase') phase = arg ?? 'unnamed';
    else if (cmd === 'newconns') scheduleNew(Number(arg));
    else if (cmd === 'storm') void openStorm(Number(arg));
    else if (cmd === 'storm-reset') resetStorm();
    else if (cmd === 'stop') void stop();
  }
});
// The harness went away: stop, report, exit (never linger in the namespace).
process.stdin.on('end', () => void stop());
