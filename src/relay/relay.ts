/**
 * The TCP relay (`takeover relay`, README "Relay"): an application on our node:net API
 * (docs/ARCHITECTURE.md §14), so both of its legs are connections of our
 * stack, replicated like any other, and survive a take-over.
 *
 * For each client connection a frontend accepts, a server of its backend is chosen (balance,
 * health, backup), a server leg opened from the pair's floating `source` address (retried on
 * other servers on refusal or timeout, then the client is closed), an optional PROXY header sent,
 * and bytes flow both ways. A byte read from one leg is written to the other in the same turn
 * (`'data'` → `write`), so each batch the standby acknowledges holds both: the relay keeps
 * nothing the standby lacks, and needs no checkpoint. Back-pressure pauses the reading leg. As
 * HAProxy's TCP mode: a FIN passes as a half-close; a reset, an error or an idle timeout of one leg
 * resets the other.
 *
 * The two legs carry a restore tag (`Socket.setRestoreTag`) naming their session: after a
 * take-over the client leg comes back through its frontend's server and the server leg through
 * `net.onRestored`, and the relay pairs them again by that name; a server leg that was still
 * connecting at the failure finishes its connect on the new node (its SYN was replicated before
 * it left). A leg whose partner did not come back is closed (a client still open is reset).
 *
 * Health checks (HAProxy's `check`, `tcp-check send/expect`) run only while this node serves
 * (`serving()`): a standby's stack is muted. A node that becomes active starts with every server
 * up, as HAProxy does, and the checks take them down within `fall` intervals.
 */
import { randomBytes } from 'node:crypto';
import type { ClockTimer, NetApi, Server, Socket } from '../api/index.ts';
import { ipFromString, ipToString, isV4 } from '../stack/ip.ts';
import { candidates, pick, type ServerState } from './balance.ts';
import type { BackendConfig, FrontendConfig, HealthConfig, RelayConfig } from './config.ts';
import { proxyHeader } from './proxy.ts';

export interface RelayOptions {
  log: (line: string) => void;
  /** Whether this node is the active one (health checks run only then). Default: always. */
  serving?: () => boolean;
}

/** One server of one backend, as `takeover status` shows it. */
export interface ServerStatus {
  backend: string;
  name: string;
  address: string;
  up: boolean;
  backup: boolean;
  active: number;
  total: number;
  connectFailures: number;
  checks: { ok: number; failed: number; last: string | null };
}

export interface FrontendStatus {
  name: string;
  active: number;
  total: number;
  refused: number;
}

export interface RelayStatus {
  frontends: FrontendStatus[];
  servers: ServerStatus[];
  /** Sessions paired again after a take-over, and legs reset because their partner was lost. */
  restored: { paired: number; orphaned: number };
}

/** A restore tag: the session's name and which leg this is. */
interface Tag {
  relay: string;
  leg: 'client' | 'server';
  backend: string;
  server: string;
}

function isTag(v: unknown): v is Tag {
  const t = v as Tag;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.relay === 'string' &&
    (t.leg === 'client' || t.leg === 'server') &&
    typeof t.backend === 'string' &&
    typeof t.server === 'string'
  );
}

interface ServerEntry extends ServerState {
  readonly backend: BackendRt;
  total: number;
  connectFailures: number;
  rises: number;
  falls: number;
  checksOk: number;
  checksFailed: number;
  lastCheck: string | null;
}

interface BackendRt {
  cfg: BackendConfig;
  servers: ServerEntry[];
}

interface FrontendRt {
  cfg: FrontendConfig;
  active: number;
  total: number;
  refused: number;
}

export class Relay {
  private readonly backends = new Map<string, BackendRt>();
  private readonly frontends: FrontendRt[] = [];
  private readonly servers: Server[] = [];
  private readonly checkTimers: ClockTimer[] = [];
  /** Names sessions: a prefix of this process, then a counter. */
  private readonly prefix = randomBytes(4).toString('hex');
  private next = 0;
  /** Restored legs waiting for their partner (by session name). */
  private readonly unpaired = new Map<string, { leg: Socket; tag: Tag }>();
  private sweepQueued = false;
  readonly restored = { paired: 0, orphaned: 0 };
  private closed = false;

  constructor(
    private readonly net: NetApi,
    private readonly cfg: RelayConfig,
    private readonly o: RelayOptions,
  ) {
    for (const b of cfg.backends) {
      const rt: BackendRt = { cfg: b, servers: [] };
      rt.servers = b.servers.map((s) => ({
        cfg: s,
        backend: rt,
        up: true,
        active: 0,
        current: 0,
        total: 0,
        connectFailures: 0,
        rises: 0,
        falls: 0,
        checksOk: 0,
        checksFailed: 0,
        lastCheck: null,
      }));
      this.backends.set(b.name, rt);
    }
  }

  /** Listens on every bind and starts the health checks. */
  async start(): Promise<void> {
    this.net.onRestored((s) => this.restoredLeg(s));
    for (const f of this.cfg.frontends) {
      const fr: FrontendRt = { cfg: f, active: 0, total: 0, refused: 0 };
      this.frontends.push(fr);
      for (const b of f.bind) {
        const srv = this.net.createServer({ allowHalfOpen: true }, (c) => this.accepted(fr, c));
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(b.port, ipToString(b.host), () => resolve());
        });
        this.servers.push(srv);
      }
    }
    for (const b of this.backends.values()) {
      const h = b.cfg.health;
      if (h) for (const s of b.servers) this.scheduleCheck(s, h, Math.random() * h.intervalMs);
    }
  }

  close(): void {
    this.closed = true;
    for (const t of this.checkTimers) this.net.clock.clearTimeout(t);
    for (const s of this.servers) s.close();
  }

  status(): RelayStatus {
    const servers: ServerStatus[] = [];
    for (const b of this.backends.values())
      for (const s of b.servers)
        servers.push({
          backend: b.cfg.name,
          name: s.cfg.name,
          address: `${isV4(s.cfg.host) ? ipToString(s.cfg.host) : `[${ipToString(s.cfg.host)}]`}:${s.cfg.port}`,
          up: s.up,
          backup: s.cfg.backup,
          active: s.active,
          total: s.total,
          connectFailures: s.connectFailures,
          checks: { ok: s.checksOk, failed: s.checksFailed, last: s.lastCheck },
        });
    return {
      frontends: this.frontends.map((f) => ({
        name: f.cfg.name,
        active: f.active,
        total: f.total,
        refused: f.refused,
      })),
      servers,
      restored: { ...this.restored },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Sessions

  private accepted(f: FrontendRt, client: Socket): void {
    client.on('error', () => {});
    // A restored client leg with no tag reached the old node's stack but not its relay (it was
    // still in its handshake, or accepted in the very turn of the failure): no server leg was
    // opened for it and nothing was read from it, so it starts here as a new session.
    const fresh = client.restored && client.restoreTag === undefined && client.readyState === 'open';
    if (client.restored && !fresh) {
      this.restoredLeg(client, f);
      return;
    }
    if (fresh)
      this.o.log(`relay: ${describe(client)} was restored before its relay session began: starting it`);
    if (f.active >= f.cfg.maxconn) {
      f.refused++;
      client.resetAndDestroy();
      return;
    }
    f.active++;
    f.total++;
    client.once('close', () => f.active--);
    // Nothing is read from the client until its server leg is up.
    client.pause();
    const b = this.backends.get(f.cfg.backend)!;
    this.connect(b, client, `${this.prefix}-${this.next++}`, new Set(), b.cfg.retries);
  }

  /** Opens a server leg for `client`: a server not tried yet, then `retries` more. */
  private connect(b: BackendRt, client: Socket, id: string, tried: Set<ServerState>, retries: number): void {
    if (client.destroyed) return;
    let list = candidates(b.servers, tried);
    // Every server tried once: a retry may go to one tried already (HAProxy redispatches too).
    if (list.length === 0 && tried.size > 0) list = candidates(b.servers, new Set());
    if (list.length === 0) {
      this.o.log(`relay: backend ${b.cfg.name} has no server up: closing ${describe(client)}`);
      client.end();
      return;
    }
    const s = pick(list, b.cfg.balance, client.remoteAddress ?? '') as ServerEntry;
    tried.add(s);
    const source = this.cfg.source.find((a) => isV4(a) === isV4(s.cfg.host))!;
    const server = this.net.connect({
      host: ipToString(s.cfg.host),
      port: s.cfg.port,
      localAddress: ipToString(source),
    });
    // Both tags in the turn the SYN is made: a standby holds both legs, paired, or neither; a
    // take-over while the leg is still connecting finishes the connect (`established`).
    const tag: Tag = { relay: id, leg: 'server', backend: b.cfg.name, server: s.cfg.name };
    server.setRestoreTag(tag);
    client.setRestoreTag({ ...tag, leg: 'client' });
    this.established(b, s, client, server, (why) => {
      if (retries > 0 && !client.destroyed) {
        this.o.log(`relay: ${b.cfg.name}/${s.cfg.name} ${why}: retrying on another server`);
        this.connect(b, client, id, tried, retries - 1);
      } else {
        this.o.log(`relay: ${b.cfg.name}/${s.cfg.name} ${why}, no retry left: closing ${describe(client)}`);
        client.end();
      }
    });
  }

  /**
   * Waits (at most the connect timeout) for `server` to connect, then sends the PROXY header if
   * the backend wants one and none went out yet, and relays; `retry` hears a refusal or timeout.
   */
  private established(
    b: BackendRt,
    s: ServerEntry,
    client: Socket,
    server: Socket,
    retry: (why: string) => void,
  ): void {
    const up = () => {
      if (client.destroyed) {
        server.destroy();
        return;
      }
      const remote = ipFromString(client.remoteAddress ?? '');
      const local = ipFromString(client.localAddress ?? '');
      // The header is the leg's first bytes: a restored leg that sent any has sent it.
      if (
        b.cfg.proxyProtocol !== 'off' &&
        remote !== undefined &&
        local !== undefined &&
        server.bytesWritten === 0
      )
        server.write(
          proxyHeader(b.cfg.proxyProtocol, {
            client: remote,
            clientPort: client.remotePort ?? 0,
            local,
            localPort: client.localPort ?? 0,
          }),
        );
      this.wire(client, server, s);
    };
    if (server.readyState !== 'opening') {
      up();
      return;
    }
    let settled = false;
    const timer = this.net.clock.setTimeout(() => fail('timeout'), this.cfg.timeouts.connectMs);
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      this.net.clock.clearTimeout(timer);
      server.destroy();
      s.connectFailures++;
      retry(why);
    };
    server.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    server.once('connect', () => {
      if (settled) return;
      settled = true;
      this.net.clock.clearTimeout(timer);
      up();
    });
  }

  /** Bytes both ways, FIN as half-close, a reset or timeout of one leg resetting the other. */
  private wire(client: Socket, server: Socket, s: ServerEntry | undefined): void {
    if (s) {
      s.active++;
      s.total++;
    }
    let done = false;
    const finish = () => {
      if (done || !s) return;
      done = true;
      s.active--;
    };
    client.on('error', () => server.resetAndDestroy());
    server.on('error', () => client.resetAndDestroy());
    client.on('data', (d: Buffer) => {
      if (!server.write(d)) client.pause();
    });
    server.on('data', (d: Buffer) => {
      if (!client.write(d)) server.pause();
    });
    server.on('drain', () => client.resume());
    client.on('drain', () => server.resume());
    client.on('end', () => server.end());
    server.on('end', () => client.end());
    client.on('close', (hadError: boolean) => {
      finish();
      if (hadError) server.resetAndDestroy();
    });
    server.on('close', (hadError: boolean) => {
      finish();
      if (hadError) client.resetAndDestroy();
    });
    const t = this.cfg.timeouts;
    if (t.clientMs > 0)
      client.setTimeout(t.clientMs, () => {
        client.resetAndDestroy();
        server.resetAndDestroy();
      });
    if (t.serverMs > 0)
      server.setTimeout(t.serverMs, () => {
        server.resetAndDestroy();
        client.resetAndDestroy();
      });
    client.resume();
    server.resume();
  }

  /** A leg restored by a take-over: paired with its partner when that one comes back too. */
  private restoredLeg(leg: Socket, from?: FrontendRt): void {
    leg.on('error', () => {});
    const tag = leg.restoreTag;
    if (!isTag(tag)) {
      // A health check, or a client whose server leg never connected: nothing to resume.
      this.orphan(leg, from ? 'client' : 'server');
      return;
    }
    leg.pause();
    const other = this.unpaired.get(tag.relay);
    if (!other) {
      this.unpaired.set(tag.relay, { leg, tag });
      this.queueSweep();
      return;
    }
    this.unpaired.delete(tag.relay);
    const [client, server] = tag.leg === 'client' ? [leg, other.leg] : [other.leg, leg];
    const b = this.backends.get(tag.backend);
    const s = b?.servers.find((x) => x.cfg.name === tag.server);
    this.restored.paired++;
    const f = this.frontends.find((x) => x.cfg.backend === tag.backend);
    if (f) {
      f.active++;
      f.total++;
      client.once('close', () => f.active--);
    }
    // A server the config no longer names (it changed across the take-over) still relays, uncounted.
    if (!b || !s) {
      this.wire(client, server, undefined);
      return;
    }
    // Connected, or still connecting at the failure: the connect goes on here, with its timeout
    // and, should it fail, the backend's retries (nothing was read from the client yet).
    this.established(b, s, client, server, (why) => {
      if (b.cfg.retries > 0 && !client.destroyed) {
        this.o.log(`relay: ${b.cfg.name}/${s.cfg.name} ${why} after a take-over: retrying on another server`);
        this.connect(b, client, tag.relay, new Set([s]), b.cfg.retries - 1);
      } else {
        this.o.log(
          `relay: ${b.cfg.name}/${s.cfg.name} ${why} after a take-over: closing ${describe(client)}`,
        );
        client.end();
      }
    });
  }

  /**
   * A restored leg with nothing to relay to: a client still waiting is reset; a server leg, or a
   * leg that was closing already (its session ended before the take-over), is closed with a FIN.
   */
  private orphan(leg: Socket, side: 'client' | 'server'): void {
    this.restored.orphaned++;
    const open = leg.readyState === 'open' || leg.readyState === 'opening';
    if (side === 'client' && open) {
      // The client may wait for an answer that will not come: tell it now.
      leg.resetAndDestroy();
      return;
    }
    // A server sees its client leave (a FIN), as when a client closes; a closing leg finishes:
    // what it still owes goes out, what comes in is read and dropped (a RST would say data was
    // lost). Bounded: a peer that never closes is let go after a minute.
    leg.resume();
    leg.end();
    this.net.clock.setTimeout(() => leg.destroy(), 60_000).unref?.();
  }

  /** After the take-over's restore: legs whose partner never came are let go (`orphan`). */
  private queueSweep(): void {
    if (this.sweepQueued) return;
    this.sweepQueued = true;
    this.net.clock.setImmediate(() => {
      this.sweepQueued = false;
      for (const [id, { leg, tag }] of this.unpaired) {
        this.unpaired.delete(id);
        this.o.log(`relay: restored ${tag.leg} leg of ${tag.backend}/${tag.server} without its partner`);
        this.orphan(leg, tag.leg);
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // Health checks

  private scheduleCheck(s: ServerEntry, h: HealthConfig, delayMs: number): void {
    if (this.closed) return;
    const t = this.net.clock.setTimeout(() => {
      const i = this.checkTimers.indexOf(t);
      if (i >= 0) this.checkTimers.splice(i, 1);
      this.check(s, h);
    }, delayMs);
    t.unref?.();
    this.checkTimers.push(t);
  }

  private check(s: ServerEntry, h: HealthConfig): void {
    const serving = this.o.serving?.() ?? true;
    if (!serving) {
      // A standby's stack is muted: it checks nothing, and starts with every server up.
      s.up = true;
      s.rises = 0;
      s.falls = 0;
      this.scheduleCheck(s, h, h.intervalMs);
      return;
    }
    const source = this.cfg.source.find((a) => isV4(a) === isV4(s.cfg.host))!;
    const sock = this.net.connect({
      host: ipToString(s.cfg.host),
      port: s.cfg.port,
      localAddress: ipToString(source),
    });
    let got = '';
    let settled = false;
    const end = (ok: boolean, why: string) => {
      if (settled) return;
      settled = true;
      this.net.clock.clearTimeout(timer);
      // A passed check closes with a FIN (no RST reaches a healthy server from us); a failed one
      // is reset.
      if (ok) {
        sock.end();
        this.net.clock.setTimeout(() => sock.destroy(), 2000).unref?.();
      } else sock.resetAndDestroy();
      this.checked(s, h, ok, why);
      this.scheduleCheck(s, h, h.intervalMs);
    };
    const timer = this.net.clock.setTimeout(
      () => end(false, `no ${h.expect ? 'expected reply' : 'connection'} within ${h.timeoutMs} ms`),
      h.timeoutMs,
    );
    sock.on('error', (e: NodeJS.ErrnoException) => end(false, e.code ?? e.message));
    sock.on('connect', () => {
      if (h.send !== undefined) sock.write(h.send);
      if (h.expect === undefined) end(true, 'connected');
    });
    sock.on('data', (d: Buffer) => {
      got = (got + d.toString('latin1')).slice(-8192);
      if (h.expect !== undefined && got.includes(h.expect)) end(true, 'expected reply');
    });
    sock.on('end', () => end(false, 'closed before the expected reply'));
  }

  private checked(s: ServerEntry, h: HealthConfig, ok: boolean, why: string): void {
    s.lastCheck = `${ok ? 'ok' : 'failed'}: ${why}`;
    if (ok) {
      s.checksOk++;
      s.falls = 0;
      if (!s.up && ++s.rises >= h.rise) {
        s.up = true;
        s.rises = 0;
        this.o.log(`relay: server ${s.backend.cfg.name}/${s.cfg.name} is up (${h.rise} check(s) passed)`);
      }
    } else {
      s.checksFailed++;
      s.rises = 0;
      if (s.up && ++s.falls >= h.fall) {
        s.up = false;
        s.falls = 0;
        this.o.log(
          `relay: server ${s.backend.cfg.name}/${s.cfg.name} is down (${h.fall} check(s) failed: ${why})`,
        );
      }
    }
  }
}

function describe(s: Socket): string {
  return `the connection from ${s.remoteAddress}:${s.remotePort}`;
}
