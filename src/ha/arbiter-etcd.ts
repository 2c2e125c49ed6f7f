/**
 * The arbiter on a real etcd (v3 API, gRPC, through the `etcd3` client): the record of
 * `arbiter.ts` under one key, `<prefix>/<cluster>/owner`, every change one etcd transaction
 *
 *     if  mod_revision(key) == r      (or create_revision == 0: absent; or value == bytes)
 *     then put(key, next)  else get(key)
 *
 * so a refused swap also returns what refused it, in the same round trip. Reads are
 * linearizable (etcd's default), so a read never shows a record older than an acknowledged write.
 *
 * Every call is bounded by `timeoutMs`: the gRPC deadline, and a timer of ours in case a
 * deadline does not fire (a name that does not resolve, a stuck channel). The client's own
 * retries and circuit breakers are off: one attempt per call, and a call is tried on the next
 * endpoint only when it certainly never left (no connection to that endpoint), since a retried
 * swap could apply twice or hide its first outcome. An endpoint that failed is tried last next
 * time; its channel is rebuilt (no gRPC reconnect back-off after an etcd restart).
 *
 * A new arbiter connects on its first call (a few ms idle; hundreds on a loaded machine): read
 * once at start, which also tells the operator at once whether the endpoints are right, and
 * keep reading every few seconds for status, so the take-over's swap finds a warm connection.
 */
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  type IOptions,
} from 'etcd3';
import {
  type Arbiter,
  ArbiterError,
  type ArbiterRecord,
  type ArbiterState,
  checkRecord,
  corruptError,
  decodeRecord,
  type Expect,
  encodeRecord,
  type SwapResult,
  timeoutError,
} from './arbiter.ts';
import { ETCD_DEFAULTS, type EtcdArbiterOptions, etcdKey } from './arbiter-config.ts';

export { ETCD_DEFAULTS, type EtcdArbiterOptions, etcdKey } from './arbiter-config.ts';

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/** A fault-handling policy that runs the call once: no retry, no circuit breaker. */
const ONCE = {
  onSuccess: () => ({ dispose() {} }),
  onFailure: () => ({ dispose() {} }),
  execute: <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
} as unknown as Policy;

/** Our own timer fired before the call settled. */
const LATE = Symbol('late');

function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(LATE), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export class EtcdArbiter implements Arbiter {
  readonly name: string;
  readonly key: string;
  readonly timeoutMs: number;
  readonly endpoints: readonly string[];
  private readonly clients: Etcd3[];
  /** The endpoint tried first: the last one that answered. */
  private first = 0;
  private closed = false;

  constructor(o: EtcdArbiterOptions) {
    if (o.endpoints.length === 0) throw new Error('EtcdArbiter: no endpoints');
    this.endpoints = [...o.endpoints];
    this.key = etcdKey(o.prefix ?? ETCD_DEFAULTS.prefix, o.cluster);
    this.timeoutMs = o.timeoutMs ?? ETCD_DEFAULTS.timeoutMs;
    this.name = `etcd ${this.endpoints.join(',')} ${this.key}`;
    this.clients = this.endpoints.map(
      (hosts) =>
        new Etcd3({
          hosts,
          faultHandling: { host: () => ONCE, global: ONCE },
          // Each timeout or lost connection closes the endpoint's channel (etcd3 does, for its
          // recoverable errors), so the next call dials anew; these bound a live channel's back-off.
          grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 },
        }),
    );
  }

  read(): Promise<ArbiterState | undefined> {
    return this.call('read', async (c, deadline) => {
      const res = await c.get(this.key).options({ deadline }).exec();
      const kv = res.kvs[0];
      return kv === undefined ? undefined : this.decode(kv.value, kv.mod_revision);
    });
  }

  swap(expect: Expect, next: ArbiterRecord): Promise<SwapResult> {
    const bad = checkRecord(next);
    if (bad) return Promise.reject(new Error(`arbiter swap: ${bad}`));
    if ('revision' in expect && !/^[1-9][0-9]{0,18}$/.test(expect.revision))
      return Promise.reject(new Error(`arbiter swap: revision ${expect.revision} is not one`));
    const value = encodeRecord(next);
    return this.call('swap', async (c, deadline) => {
      const k = this.key;
      const txn =
        'absent' in expect
          ? c.if(k, 'Create', '==', 0)
          : 'revision' in expect
            ? c.if(k, 'Mod', '==', expect.revision)
            : c.if(k, 'Value', '==', encodeRecord(expect.value));
      const res = await txn.then(c.put(k).value(value)).else(c.get(k)).options({ deadline }).commit();
      // A transaction's header revision is the store's after it: our put's mod_revision.
      if (res.succeeded) return { ok: true, revision: res.header.revision };
      const kv = res.responses[0]?.response_range?.kvs[0];
      return { ok: false, current: kv === undefined ? undefined : this.decode(kv.value, kv.mod_revision) };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.clients) c.close();
  }

  private decode(value: Buffer, modRevision: string): ArbiterState {
    const r = decodeRecord(value.toString('utf8'));
    if (typeof r === 'string') throw corruptError(this.name, `${r}; \`etcdctl del ${this.key}\``);
    return { ...r, revision: modRevision };
  }

  /**
   * One call within `timeoutMs`: on the endpoint that answered last, then on the next ones only
   * while the call certainly never left (no connection), and time remains.
   */
  private async call<T>(what: 'read' | 'swap', run: (c: Etcd3, deadline: Date) => Promise<T>): Promise<T> {
    if (this.closed) throw new ArbiterError('closed', `arbiter ${this.name}: ${what} after close`);
    const end = performance.now() + this.timeoutMs;
    const n = this.clients.length;
    const refused: string[] = [];
    const start = this.first;
    for (let i = 0; i < n; i++) {
      const at = (start + i) % n;
      const left = Math.floor(end - performance.now());
      if (left <= 0) break;
      try {
        const out = await bounded(run(this.clients[at], new Date(Date.now() + left)), left);
        this.first = at;
        return out;
      } catch (e) {
        if (e instanceof ArbiterError) throw e;
        this.first = (at + 1) % n;
        const endpoint = this.endpoints[at];
        if (e === LATE || e instanceof GRPCDeadlineExceededError)
          throw timeoutError(`etcd ${endpoint} ${this.key}`, what, this.timeoutMs);
        if (
          e instanceof EtcdPermissionDeniedError ||
          e instanceof EtcdAuthenticationFailedError ||
          e instanceof GRPCUnauthenticatedError
        )
          throw new ArbiterError(
            'rejected',
            `etcd ${endpoint} refused the ${what} of ${this.key}: ${message(e)}; check its authentication and roles`,
          );
        const notSent = e instanceof GRPCUnavailableError && /No connection established/i.test(message(e));
        if (notSent) {
          refused.push(`${endpoint} (${shortCause(message(e))})`);
          continue;
        }
        // An answer that is an error, or a connection lost mid-call: a swap may have landed.
        throw new ArbiterError(
          'unavailable',
          `etcd ${endpoint} failed the ${what} of ${this.key}: ${message(e)}${what === 'swap' ? '; the write may or may not have happened: read the record again' : ''}`,
          what === 'swap',
        );
      }
    }
    if (refused.length < n)
      throw timeoutError(`etcd ${this.endpoints.join(',')} ${this.key}`, what, this.timeoutMs);
    throw new ArbiterError(
      'unavailable',
      `no etcd endpoint could be reached for the ${what} of ${this.key}: ${refused.join(', ')}; check that etcd runs there and that arbiter.etcd.endpoints is right`,
    );
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** "14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED …" → the cause. */
function shortCause(m: string): string {
  const last = /Last error: (?:Error: )?(.*?)(?:\. Resolution note.*)?$/.exec(m);
  return (last?.[1] ?? m).trim();
}
