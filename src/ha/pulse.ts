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
  /** Unused: the role is the Int32 flag (`ROLE_AT`), read and written with Atomics. */
  role: 0,
  epoch: 1,
  /** Main's last turn (main writes). */
  mainTick: 2,
  /** Active: the lease granted through the pulse (worker writes). */
  leaseUntil: 3,
  /** Unused: the promise is the BigInt64 at `GRANTED_AT`, read and written with Atomics. */
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

/**
 * Byte offsets in the shared buffer, after the eight Float64 slots: the role (0 none, 1 active,
 * 2 standby) as an Int32, and the standby's promise (µs, CLOCK_MONOTONIC) as a BigInt64, both
 * accessed with Atomics (sequentially consistent): the worker publishes a promise, then re-reads
 * the role before it sends the grant; a standby about to take over clears the role, then reads
 * the promise (`freezeGrants`). Either the worker sees the cleared role and sends nothing, or the
 * take-over sees the new promise and waits.
 */
const ROLE_AT = 64;
const GRANTED_AT = 72;
const SHARED_BYTES = 80;
/** The promise before any (a BigInt64 cannot hold -Infinity). */
const NO_PROMISE = -(2n ** 62n);

/** What HaNode reads of a side channel (times on the driver's clock, µs). */
export interface SideChannel {
  leaseUntil(): number;
  grantedUntil(): number;
  lastHeard(): number;
  setRole(role: 'active' | 'standby' | 'none', epoch: number): void;
  /**
   * A standby about to take over: no more grants from now on; returns the last promise made (a
   * take-over must still wait for it). `setRole` resumes them.
   */
  freezeGrants(): number;
}

const WORKER = `
const { createHmac, randomBytes, timingSafeEqual } = require('node:crypto');
const dgram = require('node:dgram');
const { parentPort, workerData: d } = require('node:worker_threads');
const shared = new Float64Array(d.shared, 0, 8);
const flag = new Int32Array(d.shared, ${ROLE_AT}, 1);
const granted = new BigInt64Array(d.shared, ${GRANTED_AT}, 1);
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
// Per sender nonce: the newest clock accepted and when. Entries idle for 10 s are forgotten; while
// the memory is full of recent ones a new nonce is refused (recordings of earlier lives cannot
// flush the memory and open the way to replays of this one).
const seen = new Map();
function fresh(nonce, sentAt, t) {
  const e = seen.get(nonce);
  if (e !== undefined) {
    if (sentAt <= e.last) return false;
    e.last = sentAt; e.at = t;
    return true;
  }
  if (seen.size >= 16) for (const [k, v] of seen) if (v.at < t - 10e6) seen.delete(k);
  if (seen.size >= 16) return false;
  seen.set(nonce, { last: sentAt, at: t });
  return true;
}
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
  if (type !== HB && type !== GRANT) { counters.refused++; return; }
  if (!fresh(b.subarray(25, 33).toString('hex'), sentAt, t)) { counters.refused++; return; }
  const role = Atomics.load(flag, 0);
  if (type === HB) {
    counters.heard++;
    // A standby answers the active it follows at once: a grant, and a promise not to take over
    // until a lease from now. The promise is published first, then the role read again: a
    // standby that began its take-over meanwhile (freezeGrants) sends nothing.
    if (role === 2 && epoch === shared[${S.epoch}]) {
      shared[${S.lastHeard}] = Math.max(shared[${S.lastHeard}], t);
      const until = BigInt(Math.ceil(t + shared[${S.leaseUs}]));
      if (until > Atomics.load(granted, 0)) Atomics.store(granted, 0, until);
      if (Atomics.load(flag, 0) !== 2) return;
      counters.grants++;
      sock.send(packet(GRANT, epoch, t, sentAt), d.peer.port, d.peer.host);
    }
    return;
  }
  {
    counters.heard++;
    if (role === 1 && epoch === shared[${S.epoch}] && Number.isFinite(echo) && echo <= t) {
      shared[${S.lastHeard}] = Math.max(shared[${S.lastHeard}], t);
      shared[${S.leaseUntil}] = Math.max(shared[${S.leaseUntil}], echo + shared[${S.leaseUs}]);
    }
  }
});
function beat() {
  const t = now();
  if (Atomics.load(flag, 0) === 1 && t - shared[${S.mainTick}] < shared[${S.watchdogUs}]) {
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
  private readonly flag: Int32Array;
  private readonly granted: BigInt64Array;
  /** Add to the driver's clock (performance.now() µs) for CLOCK_MONOTONIC µs. */
  private readonly offset = monotonicOffsetUs();
  stats = { sent: 0, heard: 0, refused: 0, grants: 0 };

  private constructor(
    private readonly worker: Worker,
    buf: SharedArrayBuffer,
  ) {
    this.shared = new Float64Array(buf, 0, 8);
    this.flag = new Int32Array(buf, ROLE_AT, 1);
    this.granted = new BigInt64Array(buf, GRANTED_AT, 1);
    worker.on('message', (m: { stats?: Pulse['stats'] }) => {
      if (m.stats) this.stats = m.stats;
    });
  }

  /** Binds the UDP socket in a new thread; rejects with one sentence when it cannot. */
  static async start(o: PulseOptions): Promise<Pulse> {
    const buf = new SharedArrayBuffer(SHARED_BYTES);
    const shared = new Float64Array(buf, 0, 8);
    shared[S.leaseUntil] = Number.NEGATIVE_INFINITY;
    Atomics.store(new BigInt64Array(buf, GRANTED_AT, 1), 0, NO_PROMISE);
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
    if (Atomics.load(this.flag, 0) !== r || this.shared[S.epoch] !== epoch)
      this.shared[S.leaseUntil] = Number.NEGATIVE_INFINITY;
    this.shared[S.epoch] = epoch;
    Atomics.store(this.flag, 0, r);
  }

  freezeGrants(): number {
    Atomics.store(this.flag, 0, 0);
    return this.grantedUntil();
  }

  leaseUntil(): number {
    return this.fromMono(this.shared[S.leaseUntil]);
  }

  grantedUntil(): number {
    const g = Atomics.load(this.granted, 0);
    return g === NO_PROMISE ? Number.NEGATIVE_INFINITY : this.fromMono(Number(g));
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
