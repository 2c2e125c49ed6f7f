/**
 * `takeover node --config <file>`: one node of an active/standby pair on a real network. It opens
 * the TAP device, runs the stack behind a mute switch (a standby is silent on the wire), hosts
 * the application module on it, replicates over kernel TCP to its peer, and answers `takeover
 * status` on a unix socket. Prints `ready role=<role>` on stdout once serving or mirroring.
 *
 * The application module's default export is called with node:net's shape bound to our stack:
 *
 *   export default function app(net: NetApi, options: Record<string, unknown>): void {
 *     net.createServer((s) => s.pipe(s)).listen(7);
 *   }
 */

import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { createServer, type Server as UnixServer } from 'node:net';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { installProcessGuard, netApi } from '../api/index.ts';
import { CryptoRandom, monotonicUs, Runtime } from '../api/runtime.ts';
import { type ArbiterState, arbitrate, describeRecord } from '../ha/arbiter.ts';
import { beaconKey } from '../ha/beacon.ts';
import { bindHa } from '../ha/bind.ts';
import { HaNode, type TakeoverCause } from '../ha/node.ts';
import { Pulse } from '../ha/pulse.ts';
import { ReplicationTransport } from '../ha/transport.ts';
import { GatedDevice } from '../link/gate.ts';
import { FenceError, KernelFence } from '../link/tap/fence.ts';
import { TapDevice } from '../link/tap/index.ts';
import { loadRelayConfig, type RelayNodeConfig } from '../relay/config.ts';
import { Relay, type RelayStatus } from '../relay/relay.ts';
import { ConfigError, loadNodeConfig, type NodeConfig, readKeyFile } from './config.ts';
import { type LogFormat, nodeLogger } from './log.ts';

export interface NodeStatus {
  nodeId: string;
  role: string;
  epoch: number;
  mode: string;
  /** Active: a standby is attached and holding. Standby: the link to the active is up. */
  peer: 'attached' | 'linked' | 'none';
  /** Standby: a bootstrap has been applied (it can take over). */
  synced: boolean;
  degraded: boolean;
  connections: number;
  /** The process's resident memory: a killed process's kernel frees it before closing its sockets. */
  rssMB: number;
  replication: { lsn: number; inFlight: number; batches: number; bytes: number; lagBatches: number };
  /** Take-overs this process made. */
  takeovers?: number;
  mirror: { connections: number; bytes: number; lsn: number };
  lastTakeover: {
    at: string;
    /** What told this node the active was gone, and when after the active's last word. */
    cause: TakeoverCause;
    detectionMs: number;
    /**
     * Of the restored connections that had output unacknowledged at the take-over, the `resumed`
     * ones whose peer acknowledged more within 10 s, and the longest time from the active's last
     * word to that; null until one does.
     */
    stallMs: number | null;
    resumed: number;
    connections: number;
    epoch: number;
    /** How long restoring every connection took. */
    restoreMs: number;
    /** Each resumed connection's wait from the active's last word, in the order they resumed. */
    resumeMs: number[];
  } | null;
  /**
   * The right to send (src/ha/node.ts): 'held' (granted by the standby, valid), 'expired',
   * 'alone' (serving without a standby that could take over), 'none' (not active); how the kernel
   * enforces it ('tcx' | 'tc', or why it does not: the userspace check remains).
   */
  lease?: { state: string; kernelFence: string; lapses: number; framesHeld: number; framesDropped: number };
  /**
   * The last planned switchover this node handed over (as the active): when it was asked, the
   * epoch it handed over, the connections, and how long output was held until the standby held
   * everything.
   */
  lastSwitchover?: { at: string; epoch: number; connections: number; heldMs: number } | null;
  /** Times this node was superseded (a later epoch) and rejoined as standby; the last. */
  fences?: { count: number; last: { at: string; epoch: number; reason: string; dropped: number } | null };
  /** Beacons on the data link: sent, accepted, refused (forged, replayed), grants given. */
  beacons?: { sent: number; heard: number; refused: number; grants: number };
  /** `takeover relay`: frontends and servers (health, connections), restored pairs. */
  relay?: RelayStatus;
  /** The etcd arbiter, when configured: where, what it holds (last read), and its verdicts. */
  arbiter?: {
    name: string;
    record: string;
    asked: number;
    won: number;
    lost: number;
    unavailable: number;
    last: string | null;
  };
  /**
   * What the application's failures cost (src/api/isolation.ts): connections reset because it
   * threw for them, or because their socket's 'error' had no listener; of those, connections a
   * take-over had restored (dropped, not retried); exceptions tied to no connection; the last.
   */
  isolation?: {
    appErrors: number;
    socketErrors: number;
    restoredDropped: number;
    unattributed: number;
    last: string | null;
  };
}

/**
 * Runs the node until a signal; returns the exit code for a startup failure. `relay`: the
 * application is the TCP relay (`takeover relay`), configured in the same file.
 */
export async function runNode(
  configPath: string,
  kind: 'node' | 'relay' = 'node',
  opts: { logFormat?: LogFormat } = {},
): Promise<number> {
  const cfg: NodeConfig | RelayNodeConfig | ConfigError =
    kind === 'relay' ? loadRelayConfig(configPath) : loadNodeConfig(configPath);
  if (cfg instanceof ConfigError) {
    console.error(cfg.message);
    return 2;
  }
  const log = nodeLogger(cfg.nodeId, opts.logFormat ?? 'pretty');
  let tap: TapDevice;
  try {
    tap = await TapDevice.open({ name: cfg.tap.name, mtu: cfg.tap.mtu, netns: cfg.tap.netns });
  } catch (e) {
    console.error((e as Error).message);
    return 1;
  }
  // The kernel enforces the lease too, where it can (Linux 6.6+ TCX, or tc; root): a frame written
  // after the deadline is dropped as it enters the kernel, whatever paused us before write(2).
  let fence: KernelFence | undefined;
  let fenceMode = 'off';
  try {
    fence = KernelFence.attach({ ifname: tap.name, netns: cfg.tap.netns });
    fenceMode = fence.info.mode;
  } catch (e) {
    if (!(e instanceof FenceError)) throw e;
    fenceMode = `off: ${e.message}`;
  }
  const gate = new GatedDevice(tap, monotonicUs);
  // The lease is checked again right before each write(2): a pause between send and flush.
  tap.writeGuard = () => gate.mayEmit;
  const rng = new CryptoRandom();
  const rt = new Runtime(
    gate,
    {
      mac: cfg.mac,
      addresses: cfg.vip,
      mtu: tap.mtu,
      tcp: cfg.tcp,
      gateway4: cfg.gateway4,
      gateway6: cfg.gateway6,
    },
    rng,
  );
  const wallAt = new Map<number, string>();
  // Heartbeats and grants on a thread of their own (UDP on the replication addresses): a busy
  // main thread keeps its lease and does not look dead; a stopped or killed process goes silent.
  let pulse: Pulse | undefined;
  try {
    pulse = await Pulse.start({
      nodeId: cfg.nodeId,
      key: beaconKey(cfg.replication.key),
      listen: cfg.replication.listen,
      peer: cfg.replication.peer,
      heartbeatUs: cfg.replication.heartbeatMs * 1000,
      leaseUs: cfg.replication.timeoutMs * 1000,
      log,
    });
  } catch (e) {
    log(`${(e as Error).message} Running without it: a main thread busy for a lease looks dead.`);
  }
  // The witness for partitions (README "Partitions"): read once now, which connects and tells the
  // operator at once whether the endpoints are right, then every few seconds for the status,
  // which also keeps the connection warm for a take-over's one round trip.
  // Loaded only when configured: the etcd client (gRPC, protobufs) takes half a second to load.
  const arb = cfg.arbiter
    ? new (await import('../ha/arbiter-etcd.ts')).EtcdArbiter(cfg.arbiter.etcd)
    : undefined;
  let arbRecord = 'not read yet';
  const readArbiter = async (): Promise<void> => {
    if (!arb) return;
    try {
      const r: ArbiterState | undefined = await arb.read();
      arbRecord = describeRecord(r);
    } catch (e) {
      arbRecord = `unreadable: ${(e as Error).message}`;
    }
  };
  if (arb) {
    await readArbiter();
    log(`arbiter ${arb.name}: ${arbRecord}`);
  }
  const arbTimer = arb ? setInterval(() => void readArbiter(), 5000) : undefined;
  arbTimer?.unref();
  gate.sharedLease = pulse ? () => pulse.leaseUntil() : undefined;
  gate.onExtend = (until) => fence?.setDeadlineUs(until);
  // Prometheus metrics (admin.listen), loaded only when configured.
  let metrics: import('./metrics.ts').NodeMetrics | undefined;
  const ha = new HaNode(
    {
      nodeId: cfg.nodeId,
      role: cfg.role,
      mode: cfg.replication.mode,
      heartbeatUs: cfg.replication.heartbeatMs * 1000,
      timeoutUs: cfg.replication.timeoutMs * 1000,
      degraded: cfg.degraded,
      beaconKey: beaconKey(cfg.replication.key),
      beaconKeysAccepted: (cfg.replication.keys ?? []).slice(1).map(beaconKey),
      nonce: new Uint8Array(randomBytes(8)),
      // Acting on silence needs evidence the data link works: only a listening standby hears it.
      dataLinkProof: cfg.snoop,
      side: pulse,
    },
    rt.stack,
    {
      setMuted: (m) => gate.setMuted(m),
      setLease: (until) => {
        fence?.setDeadlineUs(until);
        gate.setLease(until);
      },
      sendBeacon: (f) => gate.sendControl(f),
      wake: () => rt.kick(),
      committed: (us) => metrics?.commitLatency(us),
      restored: (conns, now) => {
        wallAt.set(now, new Date().toISOString());
        // The kick-start and the announcement leave first: clients need not wait for the
        // application to adopt every connection.
        const kick = rt.flushOutput();
        const t1 = performance.now();
        rt.adoptRestored(conns.map((x) => x.c));
        log(
          `take-over: kick-start built in ${kick.pollMs.toFixed(1)} ms and written in ${kick.writeMs.toFixed(1)} ms, ${conns.length} connection(s) adopted by the application in ${(performance.now() - t1).toFixed(1)} ms`,
        );
      },
      log,
      clock: monotonicUs,
      arbitrate: arb
        ? (intent) => {
            void arbitrate(arb, intent).then(
              (v) => {
                ha.arbiterVerdict(intent, v, monotonicUs());
                rt.kick();
              },
              (e: unknown) => log(`arbiter: ${intent.kind} failed: ${(e as Error).message}`),
            );
          }
        : undefined,
    },
    monotonicUs(),
  );
  bindHa(rt, ha, gate, cfg.nodeId, { snoop: cfg.snoop, tick: () => pulse?.tick() });

  const transport = new ReplicationTransport({
    nodeId: cfg.nodeId,
    key: cfg.replication.key,
    keys: cfg.replication.keys,
    listen: cfg.replication.listen,
    peer: cfg.replication.peer,
    rng,
    onOpen: (link) => {
      ha.linkOpened(link, monotonicUs());
      rt.kick();
    },
    onMessage: (_link, type, epoch, payload) => {
      ha.message(type, epoch, payload, monotonicUs());
      rt.kick();
    },
    onClose: (link) => {
      ha.linkClosed(link, monotonicUs());
      rt.kick();
    },
    log,
  });

  let relay: Relay | undefined;
  try {
    rt.isolation.log = log;
    if (kind === 'relay') {
      relay = new Relay(netApi(rt), (cfg as RelayNodeConfig).relay, {
        log,
        serving: () => ha.role === 'active',
      });
      await relay.start();
    } else {
      const mod = (await import(pathToFileURL(cfg.app.module).href)) as {
        default?: (net: ReturnType<typeof netApi>, options: Record<string, unknown>) => unknown;
      };
      if (typeof mod.default !== 'function')
        throw new Error(
          `app.module ${cfg.app.module} has no default export function (net, options) => void.`,
        );
      await mod.default(netApi(rt), cfg.app.options);
    }
    await transport.start();
  } catch (e) {
    console.error((e as Error).message);
    await rt.close();
    return 1;
  }
  // From here on, no client and no exception of the application takes the node down: what
  // escapes a connection's callbacks resets that connection (src/api/isolation.ts).
  installProcessGuard(rt.isolation);

  const status = (): NodeStatus => {
    const rep = ha.replicator;
    const last = ha.takeovers[ha.takeovers.length - 1];
    const lastFence = ha.fences[ha.fences.length - 1];
    const lastSwitch = ha.switchovers[ha.switchovers.length - 1];
    const wallOf = (us: number) => new Date(Date.now() - (monotonicUs() - us) / 1000).toISOString();
    return {
      nodeId: cfg.nodeId,
      role: ha.role,
      epoch: ha.epoch,
      mode: ha.mode,
      peer: ha.standbyAttached ? 'attached' : ha.linkUp ? 'linked' : 'none',
      synced: ha.mirror.synced,
      degraded: ha.role === 'active' && !ha.standbyAttached,
      connections: rt.stack.connectionCount,
      rssMB: Math.round(process.memoryUsage.rss() / 1e6),
      replication: {
        lsn: rep?.lastLsn ?? 0,
        inFlight: rep?.inFlight ?? 0,
        batches: rep?.counters.batches ?? 0,
        bytes: rep?.counters.bytes ?? 0,
        lagBatches: rep?.inFlight ?? 0,
      },
      mirror: { connections: ha.mirror.conns.size, bytes: ha.mirror.bytes, lsn: ha.mirror.lsn },
      takeovers: ha.takeovers.length,
      lastTakeover: last
        ? {
            at: wallAt.get(last.at) ?? '',
            cause: last.cause,
            detectionMs: Math.round((last.at - last.lastHeardAt) / 100) / 10,
            stallMs: last.stallUs === undefined ? null : Math.round(last.stallUs / 100) / 10,
            resumed: last.resumed,
            connections: last.connections,
            epoch: last.epoch,
            restoreMs: last.restoreUs / 1000,
            resumeMs: last.resumeUs.map((us) => Math.round(us / 100) / 10),
          }
        : null,
      isolation: { ...rt.isolation.counters, last: rt.isolation.last ?? null },
      lease: {
        state: ha.leaseState(monotonicUs()),
        kernelFence: fenceMode,
        lapses: ha.beacons.leaseLapses,
        framesHeld: gate.counters.leaseHeld,
        framesDropped: gate.counters.leaseDropped + (fence?.drops() ?? 0),
      },
      lastSwitchover: lastSwitch
        ? {
            at: wallOf(lastSwitch.at),
            epoch: lastSwitch.epoch,
            connections: lastSwitch.connections,
            heldMs: Math.round((lastSwitch.handedAt - lastSwitch.at) / 100) / 10,
          }
        : null,
      fences: {
        count: ha.fences.length,
        last: lastFence
          ? {
              at: wallOf(lastFence.at),
              epoch: lastFence.epoch,
              reason: lastFence.reason,
              dropped: lastFence.dropped,
            }
          : null,
      },
      beacons: {
        sent: ha.beacons.sent,
        heard: ha.beacons.heard,
        refused: ha.beacons.refused,
        grants: ha.beacons.grants,
      },
      arbiter: arb
        ? {
            name: arb.name,
            record: arbRecord,
            asked: ha.arbiter.asked,
            won: ha.arbiter.won,
            lost: ha.arbiter.lost,
            unavailable: ha.arbiter.unavailable,
            last: ha.arbiter.last
              ? `${ha.arbiter.last.intent}: ${ha.arbiter.last.verdict} (${ha.arbiter.last.why})`
              : null,
          }
        : undefined,
      relay: relay?.status(),
    };
  };
  const switchover = (): string => {
    const why = ha.switchover(monotonicUs());
    rt.kick();
    return why === undefined ? 'ok\n' : `refused: ${why}\n`;
  };
  const statusServer = await serveStatus(cfg.status.socket, { status, switchover }, log);
  let metricsServer: HttpServer | undefined;
  if (cfg.admin) {
    const { nodeMetrics, serveMetrics } = await import('./metrics.ts');
    metrics = nodeMetrics({ status, stack: () => rt.stack.counters });
    metricsServer = await serveMetrics(cfg.admin.listen, metrics.registry, log, status);
    if (metricsServer) {
      const at = `http://${cfg.admin.listen.host.includes(':') ? `[${cfg.admin.listen.host}]` : cfg.admin.listen.host}:${cfg.admin.listen.port}`;
      log(`dashboard at ${at}/, metrics at ${at}/metrics`);
    }
  }

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log('stopping');
    // A standby tells its active first, which then serves alone at once (no hold for it).
    ha.leave(monotonicUs());
    statusServer?.close();
    metricsServer?.close();
    rmSync(cfg.status.socket, { force: true });
    await transport.stop();
    await pulse?.close();
    if (arbTimer) clearInterval(arbTimer);
    await arb?.close();
    relay?.close();
    fence?.close();
    await rt.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  // SIGHUP re-reads replication.keyFile (key rotation without a restart, README "Replication
  // link"): new replication links use the keys, the link that is up keeps its session, and a bad
  // file leaves the keys as they were.
  process.on('SIGHUP', () => {
    const file = cfg.replication.keyFile;
    if (file === undefined) {
      log('SIGHUP: the replication key is given inline (replication.key), there is no key file to re-read.');
      return;
    }
    let ids: string[];
    try {
      const keys = readKeyFile(file);
      if (typeof keys === 'string') throw new Error(keys);
      ids = transport.setKeys(keys);
      ha.setBeaconKeys(keys.map(beaconKey));
    } catch (e) {
      log(`SIGHUP: replication.keyFile not reloaded, the current keys stay in use: ${(e as Error).message}.`);
      return;
    }
    const also = ids.length > 1 ? `, also accepting ${ids.slice(1).join(', ')}` : '';
    log(`SIGHUP: replication keys reloaded from ${file}: current ${ids[0]}${also}; new links use them.`);
  });
  log(
    `up: ${cfg.role} configured, TAP ${tap.name}, replication ${cfg.replication.mode}, lease ${cfg.replication.timeoutMs} ms, kernel fence ${fenceMode}`,
  );
  console.log(`ready role=${ha.role}`);
  return 0;
}

/** What the status socket answers: `status` (the JSON), `switchover` (`ok` or `refused: why`). */
export interface StatusCommands {
  status: () => NodeStatus;
  switchover: () => string;
}

/** The longest request line the status socket reads, and how long it waits for one. */
const REQUEST_MAX = 64;
const REQUEST_TIMEOUT_MS = 5000;

/**
 * The status socket (mode 0600: a switchover moves every connection, so only the node's user may
 * ask): one request line per connection, `status` or `switchover`; a client that sends nothing
 * and ends gets the status (`nc -U`).
 */
export async function serveStatus(
  path: string,
  commands: StatusCommands,
  log: (line: string) => void,
): Promise<UnixServer | undefined> {
  try {
    mkdirSync(dirname(path), { recursive: true });
    rmSync(path, { force: true });
  } catch (e) {
    log(`status socket ${path}: ${(e as Error).message}; takeover status will not answer`);
    return undefined;
  }
  const server = createServer((s) => {
    s.on('error', () => {});
    s.setTimeout(REQUEST_TIMEOUT_MS, () => s.destroy());
    let text = '';
    let answered = false;
    const answer = (line: string) => {
      if (answered) return;
      answered = true;
      const cmd = line.trim();
      if (cmd === '' || cmd === 'status') s.end(`${JSON.stringify(commands.status())}\n`);
      else if (cmd === 'switchover') {
        log('status socket: switchover asked');
        s.end(commands.switchover());
      } else
        s.end(
          `refused: unknown command ${JSON.stringify(cmd.slice(0, REQUEST_MAX))}: say status or switchover\n`,
        );
    };
    s.on('data', (d) => {
      text += d.toString('latin1');
      const nl = text.indexOf('\n');
      if (nl >= 0) answer(text.slice(0, nl));
      else if (text.length > REQUEST_MAX) answer(text);
    });
    s.on('end', () => answer(text));
  });
  return new Promise((resolve) => {
    server.once('error', (e) => {
      log(`status socket ${path}: ${e.message}; takeover status will not answer`);
      resolve(undefined);
    });
    server.listen(path, () => {
      try {
        chmodSync(path, 0o600);
      } catch (e) {
        log(`status socket ${path}: ${(e as Error).message}; it keeps the default mode`);
      }
      resolve(server);
    });
  });
}
