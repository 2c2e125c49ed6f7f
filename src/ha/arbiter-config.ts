/**
 * The node config's `arbiter` section (README "Partitions"), checked without loading the etcd
 * client: `src/cli/config.ts` uses it, `arbiter-etcd.ts` connects with what it returns.
 */

export interface EtcdArbiterOptions {
  /** Client URLs of the etcd members, `http://host:port`. */
  endpoints: string[];
  /** Key prefix shared by every pair using this etcd (default "/takeover"). */
  prefix?: string;
  /** This pair's name: both nodes of a pair use the same one, and no other pair does. */
  cluster: string;
  /** Bound on every call (default 500 ms). */
  timeoutMs?: number;
}

export const ETCD_DEFAULTS = Object.freeze({ prefix: '/takeover', timeoutMs: 500 });

const CLUSTER = /^[A-Za-z0-9_.-]{1,64}$/;
const PREFIX = /^(\/[A-Za-z0-9_.-]+)+$/;
const ENDPOINT = /^http:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/;

/** The record's key: `<prefix>/<cluster>/owner`. */
export function etcdKey(prefix: string, cluster: string): string {
  return `${prefix}/${cluster}/owner`;
}

/**
 * Validates the node config's `arbiter` object: `{ "etcd": { endpoints, prefix?, cluster,
 * timeoutMs? } }`. Returns the options, or every problem as one sentence each, in the words of
 * src/cli/config.ts (`config field "arbiter.etcd.cluster": …`).
 */
export function etcdArbiterConfig(raw: unknown, path = 'arbiter'): EtcdArbiterOptions | string[] {
  const errors: string[] = [];
  const fail = (field: string, text: string, example: string): void => {
    errors.push(`config field "${field}": ${text}. Example: ${example}.`);
  };
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  const ex = '{"etcd": {"endpoints": ["http://10.0.0.5:2379"], "cluster": "pair1"}}';
  if (!isObj(raw)) {
    fail(path, 'must be an object naming the arbiter', ex);
    return errors;
  }
  for (const k of Object.keys(raw))
    if (k !== 'etcd') fail(`${path}.${k}`, 'unknown field; the only arbiter is "etcd"', ex);
  const e = raw.etcd;
  const p = `${path}.etcd`;
  if (!isObj(e)) {
    fail(p, e === undefined ? 'missing; it is required' : 'must be an object', ex);
    return errors;
  }
  const known = ['endpoints', 'prefix', 'cluster', 'timeoutMs'];
  for (const k of Object.keys(e))
    if (!known.includes(k))
      fail(`${p}.${k}`, `unknown field; the fields here are ${known.map((f) => `"${f}"`).join(', ')}`, ex);
  const ep = e.endpoints;
  const epEx = '["http://10.0.0.5:2379", "http://10.0.0.6:2379", "http://10.0.0.7:2379"]';
  if (!Array.isArray(ep) || ep.length === 0)
    fail(`${p}.endpoints`, 'must be a non-empty array of etcd client URLs', epEx);
  else
    ep.forEach((u, i) => {
      if (typeof u !== 'string' || !ENDPOINT.test(u))
        fail(
          `${p}.endpoints[${i}]`,
          `must be "http://host:port" (an etcd client URL; TLS is not supported yet); got ${JSON.stringify(u)}`,
          '"http://10.0.0.5:2379"',
        );
    });
  const prefix = e.prefix ?? ETCD_DEFAULTS.prefix;
  if (typeof prefix !== 'string' || !PREFIX.test(prefix))
    fail(
      `${p}.prefix`,
      `must be "/name" or "/a/b" (A-Z a-z 0-9 _ . -, no trailing "/"); got ${JSON.stringify(prefix)}`,
      '"/takeover"',
    );
  const cluster = e.cluster;
  if (typeof cluster !== 'string' || !CLUSTER.test(cluster))
    fail(
      `${p}.cluster`,
      `${cluster === undefined ? 'missing; it is required' : `must be 1 to 64 characters of A-Z a-z 0-9 _ . -; got ${JSON.stringify(cluster)}`} (the pair's name, the same on both nodes)`,
      '"pair1"',
    );
  const t = e.timeoutMs ?? ETCD_DEFAULTS.timeoutMs;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 10 || t > 60_000)
    fail(`${p}.timeoutMs`, `must be an integer from 10 to 60000; got ${JSON.stringify(t)}`, '500');
  if (errors.length > 0) return errors;
  return {
    endpoints: ep as string[],
    prefix: prefix as string,
    cluster: cluster as string,
    timeoutMs: t as number,
  };
}
