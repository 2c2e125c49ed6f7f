/**
 * Server choice for a new connection (HAProxy's `balance`): smooth weighted round robin (as
 * nginx's), least connections per weight, or a hash of the client's address over the weights.
 * Backup servers take connections only when no other server is up. Pure: the health and the
 * connection counts are the caller's.
 */
import type { ServerConfig } from './config.ts';

export interface ServerState {
  readonly cfg: ServerConfig;
  up: boolean;
  /** Relayed connections open now. */
  active: number;
  /** Smooth weighted round robin's running weight. */
  current: number;
}

/** The servers a new connection may go to: the up non-backup ones, else the up backups. */
export function candidates(
  servers: readonly ServerState[],
  exclude: ReadonlySet<ServerState>,
): ServerState[] {
  const ok = (s: ServerState) => s.up && s.cfg.weight > 0 && !exclude.has(s);
  const main = servers.filter((s) => ok(s) && !s.cfg.backup);
  return main.length > 0 ? main : servers.filter((s) => ok(s) && s.cfg.backup);
}

/** FNV-1a of a client address's text, for `source`. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Picks one of `list` (non-empty) by `balance`; `client` is the client's address (for `source`). */
export function pick(
  list: readonly ServerState[],
  balance: 'roundrobin' | 'leastconn' | 'source',
  client: string,
): ServerState {
  if (balance === 'leastconn') {
    let best = list[0];
    for (const s of list) if (s.active * best.cfg.weight < best.active * s.cfg.weight) best = s;
    return best;
  }
  if (balance === 'source') {
    const total = list.reduce((n, s) => n + s.cfg.weight, 0);
    let x = hash(client) % total;
    for (const s of list) {
      if (x < s.cfg.weight) return s;
      x -= s.cfg.weight;
    }
    return list[list.length - 1];
  }
  let total = 0;
  let best = list[0];
  for (const s of list) {
    s.current += s.cfg.weight;
    total += s.cfg.weight;
    if (s.current > best.current) best = s;
  }
  best.current -= total;
  return best;
}
