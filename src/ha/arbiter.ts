/**
 * The arbiter (docs/ARCHITECTURE.md §5, §7): when the two nodes of a pair cannot hear each
 * other, it decides which one may be active. One record per pair, held by a strongly consistent
 * store (etcd, `arbiter-etcd.ts`; `MemoryArbiter` below for the simulator and tests):
 *
 *     { "epoch": 7, "active": "node-a", "standby": { "node": "node-b", "session": 3 } }
 *
 * "node-a may be active at epoch 7, and node-b, holding the mirror of replication session 3, is
 * entitled to take over from it". The epoch is the fencing token: every epoch is handed out by
 * exactly one successful write, so no two nodes are ever active at one epoch. Every change is a
 * compare-and-swap, so of two nodes racing (a take-over against a drop) exactly one wins:
 *
 * | intent    | who                                   | record before       | record after       |
 * |-----------|---------------------------------------|---------------------|--------------------|
 * | start     | a node that becomes active unaided    | absent              | {m+1, A, null}     |
 * |           | (startup, no active peer heard)       | {e, A, null}        | {e+1, A, null}     |
 * |           | ... after a wait ("steal")            | {e, A, s}, {e,X,{A}}| {e+1, A, null}     |
 * | register  | the active, once its standby synced   | {e, A, any}         | {e, A, {B, n}}     |
 * | drop      | the active, before it serves alone    | {e, A, {B, n}}      | {e, A, null}       |
 * | takeover  | the standby, the active gone          | {e, A, {B, n}}      | {e+1, B, null}     |
 *
 * (m: the highest epoch the starting node knows, so an erased key never reissues an epoch.)
 * A node that cannot reach the store cannot change the record, so it cannot act: it waits
 * (consistency over availability). A healthy pair never touches the store between transitions.
 *
 * Why the standby's replication session is in the record: the entitlement belongs to one mirror,
 * not to a node name. `{e, A, {B, 3}}` → dropped → B bootstraps again → `{e, A, {B, 4}}`: a B
 * still holding session 3's mirror compares against `{e, A, {B, 3}}` and loses. It also makes
 * the take-over one round trip: the standby compares the stored value with the record it knows
 * (epoch, its active, itself, its session) instead of reading a revision first, and no value
 * repeats (A-B-A), since each registration names a new (epoch, session).
 *
 * Why no etcd lease (TTL): the right to *send* is already a lease, granted by the standby and
 * checked on the output path (node.ts); the record decides who may *become* active. A TTL would
 * put the store on the steady-state path and its expiry on the store's clock. The old active
 * learns it lost when its own `drop` fails, and it cannot have sent meanwhile: its lease, which
 * only the standby renews, had run out before the standby tried to take over.
 *
 * `plan` decides (pure); `arbitrate` runs one intent against an `Arbiter` (the real-time
 * driver's job), `arbitrateNow` on a `MemoryArbiter` at one instant (the simulator's); the HA
 * node, which does no I/O, states intents and takes each verdict with `now`.
 */

/** The standby entitled to take over: its node id and the replication session it synced. */
export interface ArbiterStandby {
  node: string;
  session: number;
}

/** Which node may be active at which epoch, and which standby may take over from it. */
export interface ArbiterRecord {
  epoch: number;
  active: string;
  standby: ArbiterStandby | null;
}

/** A record as stored, with the store's revision of that write (etcd's mod_revision). */
export interface ArbiterState extends ArbiterRecord {
  revision: string;
}

/**
 * What a swap compares with: the key must be absent; or unchanged since the caller read it
 * (revision); or hold exactly this record (value; what a standby that knows its entitlement
 * uses, sparing a read).
 */
export type Expect = { absent: true } | { revision: string } | { value: ArbiterRecord };

/** `ok: false`: the comparison failed and nothing was written; `current` is what is there. */
export type SwapResult = { ok: true; revision: string } | { ok: false; current: ArbiterState | undefined };

/**
 * The store. Every call settles within `timeoutMs` (plus event-loop delay): it resolves with an
 * answer, or rejects with an `ArbiterError`; it never hangs.
 * - `read()`: the record (linearizable: no older than any write acknowledged before the call),
 *   or undefined if there is none.
 * - `swap(expect, next)`: writes `next` if and only if the comparison holds, atomically. `ok:
 *   true` means written (the revision is the write's); `ok: false` means not written, with the
 *   record that made it fail. A rejection whose `maybeApplied` is set leaves the outcome
 *   unknown: read again (a write that landed is recognisable, see `arbitrate`).
 * - `close()`: releases the connections; later calls reject with kind 'closed'.
 */
export interface Arbiter {
  /** For logs and status: what and where ("etcd http://10.0.0.5:2379 /takeover/pair1/owner"). */
  readonly name: string;
  readonly timeoutMs: number;
  read(): Promise<ArbiterState | undefined>;
  swap(expect: Expect, next: ArbiterRecord): Promise<SwapResult>;
  close(): Promise<void>;
}

/**
 * - `unavailable`: no store answered (refused, unreachable, no leader); a swap was not applied
 *   unless `maybeApplied`.
 * - `timeout`: no answer within `timeoutMs`; a swap may have been applied.
 * - `rejected`: the store answered with an error (permission, authentication): not applied.
 * - `corrupt`: the key holds something that is not a record (the message says how to clear it).
 * - `closed`: the arbiter was closed.
 */
export type ArbiterErrorKind = 'unavailable' | 'timeout' | 'rejected' | 'corrupt' | 'closed';

export class ArbiterError extends Error {
  override readonly name = 'ArbiterError';

  constructor(
    readonly kind: ArbiterErrorKind,
    message: string,
    /** A swap's request may have reached the store: the write may have happened. */
    readonly maybeApplied = false,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// The record's encoding

/** Node ids as the config allows them (src/cli/config.ts). */
const NODE_ID = /^[A-Za-z0-9_.-]{1,32}$/;

/** A problem with a record to write (a caller's bug), or undefined. */
export function checkRecord(r: ArbiterRecord): string | undefined {
  if (!Number.isSafeInteger(r.epoch) || r.epoch < 1) return `epoch must be an integer ≥ 1, not ${r.epoch}`;
  if (typeof r.active !== 'string' || !NODE_ID.test(r.active))
    return `active must be a node id, not ${r.active}`;
  if (r.standby === null) return undefined;
  const s = r.standby;
  if (typeof s !== 'object' || typeof s.node !== 'string' || !NODE_ID.test(s.node))
    return `standby.node must be a node id, not ${s?.node}`;
  if (s.node === r.active) return `standby.node must differ from active (${s.node})`;
  if (!Number.isSafeInteger(s.session) || s.session < 0)
    return `standby.session must be an integer ≥ 0, not ${s.session}`;
  return undefined;
}

/** The stored bytes of a record: one canonical spelling (value comparisons compare bytes). */
export function encodeRecord(r: ArbiterRecord): string {
  const standby = r.standby === null ? null : { node: r.standby.node, session: r.standby.session };
  return JSON.stringify({ epoch: r.epoch, active: r.active, standby });
}

/** A stored value as a record, or why it is not one. Unknown fields are ignored. */
export function decodeRecord(text: string): ArbiterRecord | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  const s = o.standby;
  let standby: ArbiterStandby | null = null;
  if (s !== null) {
    if (typeof s !== 'object' || s === undefined || Array.isArray(s))
      return 'standby is neither null nor an object';
    const so = s as Record<string, unknown>;
    standby = { node: so.node as string, session: so.session as number };
  }
  const r: ArbiterRecord = { epoch: o.epoch as number, active: o.active as string, standby };
  return checkRecord(r) ?? r;
}

/** Same owner, epoch and entitlement (revisions and spelling aside). */
export function sameRecord(a: ArbiterRecord | undefined, b: ArbiterRecord | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.epoch !== b.epoch || a.active !== b.active) return false;
  if (a.standby === null || b.standby === null) return a.standby === b.standby;
  return a.standby.node === b.standby.node && a.standby.session === b.standby.session;
}

/** One line for logs: "epoch 7: node-a active, node-b (session 3) may take over". */
export function describeRecord(r: ArbiterRecord | undefined): string {
  if (r === undefined) return 'no record';
  const s =
    r.standby === null
      ? 'no standby may take over'
      : `${r.standby.node} (session ${r.standby.session}) may take over`;
  return `epoch ${r.epoch}: ${r.active} active, ${s}`;
}

// ---------------------------------------------------------------------------------------------
// Intents: what a node wants, decided against what is stored

/**
 * - `start`: become active without a take-over (first start, or a restart that heard no active
 *   peer). `minEpoch`: the highest epoch this node knows (0 if none). A record naming a previous
 *   life of ours, as active with an entitled standby or as the entitled standby, answers `wait`
 *   unless `steal`: that standby holds the connections, or that active may still live; give
 *   them their chance first (see the plan's comment). A record where we are neither is `lost`.
 * - `register`: the active (at `epoch`) names the standby that has synced `standby.session`.
 * - `drop`: the active (at `epoch`) withdraws its standby's entitlement, before serving alone.
 * - `takeover`: the standby, entitled by `{epoch, from, {node, session}}`, takes epoch + 1.
 */
export type ArbiterIntent =
  | { kind: 'start'; node: string; minEpoch: number; steal: boolean }
  | { kind: 'register'; node: string; epoch: number; standby: ArbiterStandby }
  | { kind: 'drop'; node: string; epoch: number }
  | { kind: 'takeover'; node: string; epoch: number; from: string; session: number };

export type Plan =
  | { kind: 'swap'; expect: Expect; next: ArbiterRecord }
  /** The record already says what the intent wants (our own write, perhaps unconfirmed). */
  | { kind: 'done' }
  | { kind: 'lost'; reason: string }
  | { kind: 'wait'; reason: string };

/** The record a take-over compares with: the standby's entitlement as it knows it. */
export function entitlement(i: Extract<ArbiterIntent, { kind: 'takeover' }>): ArbiterRecord {
  return { epoch: i.epoch, active: i.from, standby: { node: i.node, session: i.session } };
}

/** What `intent` should write given the stored record (`current`), if anything. Pure. */
export function plan(intent: ArbiterIntent, current: ArbiterState | undefined): Plan {
  const me = intent.node;
  const c = current;
  switch (intent.kind) {
    case 'start': {
      if (c === undefined)
        return {
          kind: 'swap',
          expect: { absent: true },
          next: { epoch: intent.minEpoch + 1, active: me, standby: null },
        };
      // A new life always takes a new epoch: its sessions restart from 0, and a standby must
      // never mistake them for its mirror's.
      const next = { epoch: Math.max(c.epoch, intent.minEpoch) + 1, active: me, standby: null };
      const bump: Plan = { kind: 'swap', expect: { revision: c.revision }, next };
      if (c.active === me && c.standby === null) return bump;
      if (c.active === me || c.standby?.node === me) {
        // Active, a previous life of ours may have left an entitled standby holding every
        // connection: let it take over first. Standby, a previous life of ours was entitled and
        // the active never dropped it: it may be gone. Either way the other node's output is
        // bounded by the lease only the entitled standby renews, so once it has had its chance
        // (`steal`), taking the record cannot make two senders.
        if (intent.steal) return bump;
        const who =
          c.active === me
            ? `${c.standby!.node} may take over from`
            : `we were entitled to take over from ${c.active} in`;
        return { kind: 'wait', reason: `${who} a previous life of ours (${describeRecord(c)})` };
      }
      // Another node is active, serving alone or with another standby: never ours to take.
      return { kind: 'lost', reason: `${c.active} owns the pair (${describeRecord(c)})` };
    }
    case 'register':
    case 'drop': {
      if (c === undefined) return { kind: 'lost', reason: 'the record is gone' };
      if (c.active !== me || c.epoch !== intent.epoch)
        return { kind: 'lost', reason: `we are not active at epoch ${intent.epoch} (${describeRecord(c)})` };
      const next: ArbiterRecord = {
        epoch: c.epoch,
        active: me,
        standby: intent.kind === 'drop' ? null : intent.standby,
      };
      if (sameRecord(c, next)) return { kind: 'done' };
      return { kind: 'swap', expect: { revision: c.revision }, next };
    }
    case 'takeover': {
      const next: ArbiterRecord = { epoch: intent.epoch + 1, active: me, standby: null };
      if (sameRecord(c, next)) return { kind: 'done' };
      // The value compared equal in meaning but not in bytes (another version's spelling).
      if (c !== undefined && sameRecord(c, entitlement(intent)))
        return { kind: 'swap', expect: { revision: c.revision }, next };
      return { kind: 'lost', reason: `not entitled to take over (${describeRecord(c)})` };
    }
  }
}

/**
 * - `won`: the record now says what the intent wanted (`state`, with its revision): act on it
 *   (become active at `state.epoch`, treat the standby as entitled, serve alone).
 * - `lost`: another node's claim stands (`current`): a starting node joins as standby, an
 *   active fences, a standby resyncs.
 * - `wait` (start only): a standby may take over from a previous life of ours; ask again later,
 *   with `steal` once it has had its chance.
 * - `unavailable`: the store did not answer; nothing may be assumed either way (if
 *   `error.maybeApplied`, the write may have landed). Retry later: the same intent recognises its
 *   own landed write ('done'), except `start`, which then takes one more epoch (harmless).
 */
export type Verdict =
  | { kind: 'won'; state: ArbiterState }
  | { kind: 'lost'; current: ArbiterState | undefined; reason: string }
  | { kind: 'wait'; current: ArbiterState; reason: string }
  | { kind: 'unavailable'; error: ArbiterError };

/** One call an intent makes of the store, and what it gets back. */
type Step = { op: 'read' } | { op: 'swap'; expect: Expect; next: ArbiterRecord };

/**
 * An intent's calls: a read and a swap (a take-over swaps at once, comparing values: one round
 * trip), and if the swap is refused, one more decision on the record that refused it. Written
 * once as a generator, driven by `arbitrate` (awaiting an `Arbiter`) and by `arbitrateNow`
 * (a `MemoryArbiter`'s synchronous core, for the simulator).
 */
function* steps(intent: ArbiterIntent): Generator<Step, Verdict, unknown> {
  let current: ArbiterState | undefined;
  let p: Plan;
  if (intent.kind === 'takeover') {
    p = {
      kind: 'swap',
      expect: { value: entitlement(intent) },
      next: { epoch: intent.epoch + 1, active: intent.node, standby: null },
    };
  } else {
    current = (yield { op: 'read' }) as ArbiterState | undefined;
    p = plan(intent, current);
  }
  for (let swaps = 0; ; swaps++) {
    if (p.kind === 'done') return { kind: 'won', state: current! };
    if (p.kind === 'lost') return { kind: 'lost', current, reason: p.reason };
    if (p.kind === 'wait') return { kind: 'wait', current: current!, reason: p.reason };
    const r = (yield { op: 'swap', expect: p.expect, next: p.next }) as SwapResult;
    if (r.ok) return { kind: 'won', state: { ...p.next, revision: r.revision } };
    current = r.current;
    const again = plan(intent, current);
    // Two refusals: someone keeps writing; what we read is what beat us.
    if (swaps >= 1 && again.kind === 'swap')
      return {
        kind: 'lost',
        current,
        reason: `the record changed under us twice (${describeRecord(current)})`,
      };
    p = again;
  }
}

/**
 * Runs one intent against the store (see `steps`). Settles within 3 × `timeoutMs` (a take-over
 * within 2 ×). Throws only a caller's bug; a store failure is the verdict `unavailable`.
 */
export async function arbitrate(a: Arbiter, intent: ArbiterIntent): Promise<Verdict> {
  const g = steps(intent);
  try {
    let r = g.next();
    while (!r.done) {
      const s = r.value;
      r = g.next(s.op === 'read' ? await a.read() : await a.swap(s.expect, s.next));
    }
    return r.value;
  } catch (e) {
    if (e instanceof ArbiterError) return { kind: 'unavailable', error: e };
    throw e;
  }
}

/**
 * `arbitrate` at one instant, on a `MemoryArbiter`'s synchronous core with its `fault` (not its
 * latency: a simulator delivers the verdict when it likes). For a driver whose clock is virtual
 * and whose event loop does not turn while it runs (src/ha/sim.ts).
 */
export function arbitrateNow(m: MemoryArbiter, intent: ArbiterIntent): Verdict {
  const g = steps(intent);
  try {
    let r = g.next();
    while (!r.done) {
      const s = r.value;
      r = g.next(
        s.op === 'read'
          ? m.callNow('read', () => m.readNow())
          : m.callNow('swap', () => m.swapNow(s.expect, s.next)),
      );
    }
    return r.value;
  } catch (e) {
    if (e instanceof ArbiterError) return { kind: 'unavailable', error: e };
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// In memory: the simulator's and the unit tests' store

/** One key as etcd keeps it: the value and its mod revision, under a store-wide revision. */
export class ArbiterStore {
  /** The store's revision (etcd starts at 1; every write takes the next). */
  revision = 1;
  value: string | undefined;
  modRevision = 0;
  writes = 0;

  /** Writes raw bytes, as `etcdctl put` would (a test's corrupt value). */
  put(raw: string): void {
    this.value = raw;
    this.modRevision = ++this.revision;
    this.writes++;
  }

  delete(): void {
    this.value = undefined;
    this.modRevision = 0;
    this.revision++;
  }
}

export interface MemoryArbiterOptions {
  /** Shared by the nodes' arbiters (each node has its own, with its own faults). */
  store?: ArbiterStore;
  timeoutMs?: number;
  /** Round trip: half before the store applies a call, half after. */
  latencyMs?: number;
  /** How to wait (default: a timer). The simulator's driver can pass its own. */
  sleep?: (ms: number) => Promise<void>;
  name?: string;
}

/**
 * What a node's path to the store does:
 * - 'none': answers after `latencyMs`;
 * - 'down': refused at once (a stopped server): `unavailable`, not applied;
 * - 'hang': no answer (a paused server, a cut path): `timeout` after `timeoutMs`, not applied;
 * - 'lose-reply': applied, but the answer is lost: `timeout` after `timeoutMs`.
 */
export type ArbiterFault = 'none' | 'down' | 'hang' | 'lose-reply';

const realSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The store in memory, with etcd's semantics (revisions, create-if-absent, value compare) and
 * injectable faults and latency. `readNow`/`swapNow` are the synchronous core, for a driver
 * that applies a call at a virtual instant of its own.
 */
export class MemoryArbiter implements Arbiter {
  readonly store: ArbiterStore;
  readonly name: string;
  readonly timeoutMs: number;
  latencyMs: number;
  fault: ArbiterFault = 'none';
  private readonly sleep: (ms: number) => Promise<void>;
  private closed = false;

  constructor(o: MemoryArbiterOptions = {}) {
    this.store = o.store ?? new ArbiterStore();
    this.timeoutMs = o.timeoutMs ?? 500;
    this.latencyMs = o.latencyMs ?? 0;
    this.sleep = o.sleep ?? realSleep;
    this.name = o.name ?? 'memory';
  }

  readNow(): ArbiterState | undefined {
    const s = this.store;
    if (s.value === undefined) return undefined;
    const r = decodeRecord(s.value);
    if (typeof r === 'string') throw corruptError(this.name, r);
    return { ...r, revision: String(s.modRevision) };
  }

  swapNow(expect: Expect, next: ArbiterRecord): SwapResult {
    const bad = checkRecord(next);
    if (bad) throw new Error(`arbiter swap: ${bad}`);
    const s = this.store;
    const holds =
      'absent' in expect
        ? s.value === undefined
        : 'revision' in expect
          ? s.value !== undefined && String(s.modRevision) === expect.revision
          : s.value === encodeRecord(expect.value);
    // As etcd's else branch: the current value (corrupt if it is not a record).
    if (!holds) return { ok: false, current: this.readNow() };
    s.put(encodeRecord(next));
    return { ok: true, revision: String(s.modRevision) };
  }

  read(): Promise<ArbiterState | undefined> {
    return this.call('read', () => this.readNow());
  }

  swap(expect: Expect, next: ArbiterRecord): Promise<SwapResult> {
    return this.call('swap', () => this.swapNow(expect, next));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** One call at once, with the path's `fault` as it stands (no latency). */
  callNow<T>(what: 'read' | 'swap', apply: () => T): T {
    if (this.closed) throw new ArbiterError('closed', `arbiter ${this.name}: ${what} after close`);
    if (this.fault === 'down')
      throw new ArbiterError('unavailable', `arbiter ${this.name} refused the connection (${what})`);
    if (this.fault === 'hang') throw timeoutError(this.name, what, this.timeoutMs);
    const out = apply();
    if (this.fault === 'lose-reply') throw timeoutError(this.name, what, this.timeoutMs);
    return out;
  }

  private async call<T>(what: 'read' | 'swap', apply: () => T): Promise<T> {
    if (this.closed) throw new ArbiterError('closed', `arbiter ${this.name}: ${what} after close`);
    if (this.fault === 'down')
      throw new ArbiterError('unavailable', `arbiter ${this.name} refused the connection (${what})`);
    const half = this.latencyMs / 2;
    const timeout = (): ArbiterError => timeoutError(this.name, what, this.timeoutMs);
    if (this.fault === 'hang' || half >= this.timeoutMs) {
      await this.sleep(this.timeoutMs);
      throw timeout();
    }
    if (half > 0) await this.sleep(half);
    if (this.closed) throw new ArbiterError('closed', `arbiter ${this.name}: closed during ${what}`);
    const f = this.fault as ArbiterFault;
    if (f === 'down')
      throw new ArbiterError('unavailable', `arbiter ${this.name} went down during ${what}`, true);
    if (f === 'hang') {
      await this.sleep(this.timeoutMs - half);
      throw timeout();
    }
    const out = apply();
    if (f === 'lose-reply' || this.latencyMs >= this.timeoutMs) {
      await this.sleep(this.timeoutMs - half);
      throw timeout();
    }
    if (half > 0) await this.sleep(half);
    return out;
  }
}

export function timeoutError(name: string, what: 'read' | 'swap', ms: number): ArbiterError {
  const tail = what === 'swap' ? '; the write may or may not have happened: read the record again' : '';
  return new ArbiterError('timeout', `arbiter ${name} did not answer a ${what} within ${ms} ms${tail}`, true);
}

export function corruptError(name: string, why: string): ArbiterError {
  return new ArbiterError(
    'corrupt',
    `arbiter ${name} holds a value that is not a takeover record (${why}); if no node of the pair runs, delete the key and start one node`,
  );
}
