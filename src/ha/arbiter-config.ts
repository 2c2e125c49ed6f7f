/**
 * The etcd arbiter's options and defaults (README "Partitions"), without the etcd client: the
 * node config's `arbiter` section is declared in `src/cli/config.ts` (zod), `arbiter-etcd.ts`
 * connects with what it returns.
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

/** The record's key: `<prefix>/<cluster>/owner`. */
export function etcdKey(prefix: string, cluster: string): string {
  return `${prefix}/${cluster}/owner`;
}
