/**
 * The pulse: heartbeats and lease grants between the two nodes on a thread of their own (UDP on
 * the replication addresses), so that a main thread busy for a while (a long turn, a GC pause)
 * neither loses its lease nor looks dead, while a process that is killed, stopped (SIGSTOP, a VM
 * freeze) or loses power falls silent at once: its worker stops with it. A watchdog stops the
 * beat of an active whose main thread has not run a turn for `watchdogUs` (default 1 s), so a
 * hung process is taken over too.
 *
 * Same protocol as the replication link's heartbeats (src/ha/node.ts, "The lease"): the active
 * sends its clock; the standby that follows it answers at once with that value echoed (a grant)
 * and promises not to take over until a lease after its answer; the active holds the lease until
 * echo + lease. The main thread reads the grants and promises from a shared array and folds them
 * into HaNode's (`SideChannel`). Packets carry an HMAC-SHA256 tag (the beacon key, from the PSK)
 * and a per-process nonce; heartbeats must come with increasing clocks per nonce (replay).
 *
 * All times in the shared array are CLOCK_MONOTONIC microseconds (each thread converts with its
 * own performance.now() offset). Float64 slots are written whole by one side each (aligned 8-byte
 * stores are not torn on the machines Node runs on).
 */
import { Worker } from 'node:worker_threads';
import { monotonicOffsetUs } from '../link/clock.ts';

/** Slots of the shared array. */
export const S = {
  /** 0 none, 1 active, 2 standby (main writes). */
  role: 0,
  epoch: 1,
  /** Main's last turn (main writes). */
  mainTick: 2,
  /** Active: the lease granted through the pulse (worker writes). */
  leaseUntil: 3,
  /** Standby: what it promised through the pulse (worker writes). */
  grantedUntil: 4,
  /** The last valid packet from the peer (worker writes). */
  lastHeard: 5,
  leaseUs: 6,
  watchdogUs: 7,
} as const;

export interface PulseOptions {
  nodeId: string;
  /** HMAC key (the beacon key, derived from the replication PSK). */
  key: Uint8Array;
  listen: { host: string; port: number };
  peer: { host: string; port: number };
  heartbeatUs: number;
  leaseUs: number;
  watchdogUs?: number;
  log?(line: string): void;
}

/** What HaNode reads of a side channel (times on the driver's clock, µs). */
export interface SideChannel {
  leaseUntil(): number;
  grantedUntil(): number;
  lastHeard(): number;
  setRole(role: 'active' | 'standby' | 'none', epoch: number): void;
}

const WORKER = `
const { createHmac, randomBytes, timingSafeEqual } = require('node:crypto');
const dgram = require('node:dgram');
const { parentPort, workerData: d } = require('node:worker_threads');
const shared = new Float64Array(d.shared);
const key = Buffer.from(d.key);
let best = Infinity, off = 0n;
for (let k = 0; k < 64; k++) {
  const a = process.hrtime.bigint(), p = performance.now(), b = process.hrtime.bigint();
  if (Number(b - a) < best) { best = Number(b - a); off = a + (b - a) / 2n - BigInt(Math.round(p * 1e6)); }
}
const offset = Number(off / 1000n);
const now = () => performance.now() * 1000 + offset;
const nonce = randomBytes(8);
const id = Buffer.from(d.nodeId, 'utf8');
const MAGIC = Buffer.from('TKPL');
const HB = 1, GRANT = 2, TAG = 16;
const seen = new Map();
const counters = { sent: 0, heard: 0, refused: 0, grants: 0 };
function packet(type, epoch, sentAt, echo) {
  const b = Buffer.alloc(34 + id.length + TAG);
  MAGIC.copy(b, 0);
  b[4] = type;
  b.writeUInt32BE(epoch >>> 0, 5);
  b.writeDoubleBE(sentAt, 9);
  b.writeDoubleBE(echo, 17);
  nonce.copy(b, 25);
  b[33] = id.length;
  id.copy(b, 34);
  const n = 34 + id.length;
  createHmac('sha256', key).update(b.subarray(0, n)).digest().copy(b, n, 0, TAG);
  return b;
}
const sock = dgram.createSocket({ type: d.listen.host.includes(':') ? 'udp6' : 'udp4' });
sock.on('error', (e) => parentPort.postMessage({ log: 'pulse: ' + e.message }));
sock.on('message', (b) => {
  if (b.length < 34 + TAG || !b.subarray(0, 4).equals(MAGIC)) { counters.refused++; return; }
  const n = 34 + b[33];
  if (b.length < n + TAG) { counters.refused++; return; }
  const want = createHmac('sha256', key).update(b.subarray(0, n)).digest().subarray(0, TAG);
  if (!timingSafeEqual(want, b.subarray(n, n + TAG))) { counters.refused++; return; }
  if (b.subarray(34, n).toString('utf8') === d.nodeId) { counters.refused++; return; }
  const type = b[4], epoch = b.readUInt32BE(5), sentAt = b.readDoubleBE(9), echo = b.readDoubleBE(17);
  const t = now();
  const role = shared[${S.role}];
  if (type === HB) {
    const k = b.subarray(25, 33).toString('hex');
    const last = seen.get(k);
    if (last !== undefined && sentAt <= last) { counters.refused++; return; }
    if (seen.size > 16) seen.clear();
    seen.set(k, sentAt);
    counters.heard++;
    // A standby answers the active it follows at once: a grant, and a promise not to take over
    // until a lease from now (its main thread reads the promise before any take-over).
    if (role === 2 && epoch === shared[${S.epoch}]) {
      shared[${S.lastHeard}] = Math.max(shared[${S.lastHeard}], t);
      shared[${S.grantedUntil}] = Math.max(shared[${S.grantedUntil}], t + shared[${S.leaseUs}]);
      counters.grants++;
      sock.send(packet(GRANT, epoch, t, sentAt), d.peer.port, d.peer.host);
    }
    return;
  }
  if (type === GRANT) {
    counters.heard++;
    if (role === 1 && epoch === shared[${S.epoch}] && Number.isFinite(echo) && echo <= t) {
      shared[${S.lastHeard}] = Math.max(shared[${S.lastHeard}], t);
      shared[${S.leaseUntil}] = Math.max(shared[${S.leaseUntil}], echo + shared[${S.leaseUs}]);
    }
    return;
  }
  counters.refused++;
});
function beat() {
  const t = now();
  if (shared[${S.role}] === 1 && t - shared[${S.mainTick}] < shared[${S.watchdogUs}]) {
    counters.sent++;
    sock.send(packet(HB, shared[${S.epoch}], t, NaN), d.peer.port, d.peer.host);
  }
}
sock.bind(d.listen.port, d.listen.host, () => {
  const timer = setInterval(beat, Math.max(1, Math.round(d.heartbeatUs / 1000)));
  parentPort.on('message', (m) => {
    if (m.stats) parentPort.postMessage({ stats: { ...counters } });
    if (m.stop) { clearInterval(timer); sock.close(() => parentPort.postMessage({ stopped: true })); }
  });
  parentPort.postMessage({ ready: true });
});
`;

export class Pulse implements SideChannel {
  private readonly shared: Float64Array;
  /** Add to the driver's clock (performance.now() µs) for CLOCK_MONOTONIC µs. */
  private readonly offset = monotonicOffsetUs();
  stats = { sent: 0, heard: 0, refused: 0, grants: 0 };

  private constructor(
    private readonly worker: Worker,
    buf: SharedArrayBuffer,
  ) {
    this.shared = new Float64Array(buf);
    worker.on('message', (m: { stats?: Pulse['stats'] }) => {
      if (m.stats) this.stats = m.stats;
    });
  }

  /** Binds the UDP socket in a new thread; rejects with one sentence when it cannot. */
  static async start(o: PulseOptions): Promise<Pulse> {
    const buf = new SharedArrayBuffer(8 * 8);
    const shared = new Float64Array(buf);
    shared[S.leaseUntil] = Number.NEGATIVE_INFINITY;
    shared[S.grantedUntil] = Number.NEGATIVE_INFINITY;
    shared[S.lastHeard] = Number.NEGATIVE_INFINITY;
    shared[S.leaseUs] = o.leaseUs;
    shared[S.watchdogUs] = o.watchdogUs ?? 1_000_000;
    const worker = new Worker(WORKER, {
      eval: true,
      name: 'pulse',
      workerData: {
        shared: buf,
        key: o.key,
        nodeId: o.nodeId,
        listen: o.listen,
        peer: o.peer,
        heartbeatUs: o.heartbeatUs,
      },
    });
    const p = new Pulse(worker, buf);
    p.tick();
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; log?: string }) => {
        if (m.ready) {
          worker.off('message', onMsg);
          worker.on('message', (x: { log?: string }) => {
            if (x.log) o.log?.(x.log);
          });
          resolve();
        } else if (m.log) {
          worker.off('message', onMsg);
          void worker.terminate();
          reject(
            new Error(
              `the pulse cannot use UDP ${o.listen.host}:${o.listen.port} (${m.log}); use the replication address of this host with that port free for UDP.`,
            ),
          );
        }
      };
      worker.on('message', onMsg);
      worker.once('error', reject);
    });
    worker.unref();
    return p;
  }

  private fromMono(t: number): number {
    return t - this.offset;
  }

  /** The main thread ran a turn: the watchdog's food. */
  tick(): void {
    this.shared[S.mainTick] = performance.now() * 1000 + this.offset;
  }

  setRole(role: 'active' | 'standby' | 'none', epoch: number): void {
    const r = role === 'active' ? 1 : role === 'standby' ? 2 : 0;
    // A lease is for one role and epoch; a standby's promises stand whatever it becomes.
    if (this.shared[S.role] !== r || this.shared[S.epoch] !== epoch)
      this.shared[S.leaseUntil] = Number.NEGATIVE_INFINITY;
    this.shared[S.epoch] = epoch;
    this.shared[S.role] = r;
  }

  leaseUntil(): number {
    return this.fromMono(this.shared[S.leaseUntil]);
  }

  grantedUntil(): number {
    return this.fromMono(this.shared[S.grantedUntil]);
  }

  lastHeard(): number {
    return this.fromMono(this.shared[S.lastHeard]);
  }

  /** Refreshes `stats` from the worker (asynchronously). */
  poll(): void {
    this.worker.postMessage({ stats: true });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 500);
      this.worker.once('message', () => {
        clearTimeout(t);
        resolve();
      });
      this.worker.postMessage({ stop: true });
    });
    await this.worker.terminate();
  }
}
