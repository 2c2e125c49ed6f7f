/**
 * Prometheus metrics of a running node (prom-client), served over HTTP at `admin.listen`
 * (`GET /metrics`). Every value is read from the node's status and the stack's counters at
 * scrape time, so nothing on the hot path pays for it; the one thing observed as it happens is
 * the replication commit latency (a histogram fed by the replicator's acknowledgments).
 */
import { createServer, type Server } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { StackCounters } from '../stack/stack.ts';
import type { HostPort } from './config.ts';
import { dashboardPage } from './dashboard.ts';
import type { NodeStatus } from './node.ts';

/** What the metrics read at each scrape. */
export interface MetricsSource {
  status(): NodeStatus;
  stack(): StackCounters;
}

export const ROLES = ['candidate', 'active', 'standby', 'fenced'] as const;
export const LEASE_STATES = ['held', 'expired', 'alone', 'none'] as const;

/** Stack counters exported as drops, by reason (the rest are traffic, exported apart). */
const DROP_REASONS: (keyof StackCounters)[] = [
  'malformed',
  'notForUs',
  'unsupported',
  'optionsDiscarded',
  'optionsRejected',
  'icmpUnmatched',
  'icmpOutOfWindow',
  'icmpBadMtu',
  'synDropped',
  'noRoute',
  'neighborDrops',
  'lateSegments',
];

export interface NodeMetrics {
  registry: Registry;
  /** Feed with each batch's time from being sent to its acknowledgment (µs). */
  commitLatency(us: number): void;
}

export function nodeMetrics(src: MetricsSource): NodeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  // One status per scrape: the collect callbacks below run in turn within it.
  let cached: { at: number; st: NodeStatus } | undefined;
  const st = () => {
    const now = performance.now();
    if (!cached || now - cached.at > 50) cached = { at: now, st: src.status() };
    return cached.st;
  };
  /** A gauge read at scrape time. */
  const gauge = (name: string, help: string, read: (s: NodeStatus) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read(st()));
      },
    });
  /** A counter kept elsewhere (monotonic there), exported as it stands. */
  const kept = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  const counter = (name: string, help: string, read: (s: NodeStatus) => number) =>
    kept(name, help, () => read(st()));

  new Gauge({
    name: 'takeover_role',
    help: 'The node role: 1 for the current one',
    labelNames: ['role'],
    registers,
    collect() {
      const r = st().role;
      for (const role of ROLES) this.set({ role }, r === role ? 1 : 0);
    },
  });
  new Gauge({
    name: 'takeover_lease_state',
    help: 'The right to send: held (granted by the standby), expired, alone (no standby could take over), none (not active)',
    labelNames: ['state'],
    registers,
    collect() {
      const s = st().lease?.state ?? 'none';
      for (const state of LEASE_STATES) this.set({ state }, s === state ? 1 : 0);
    },
  });
  gauge('takeover_epoch', 'The epoch this node knows (raised at every take-over)', (s) => s.epoch);
  gauge('takeover_standby_synced', 'Standby: 1 when its mirror can take over', (s) => (s.synced ? 1 : 0));
  gauge('takeover_degraded', 'Active serving with no standby that could take over', (s) =>
    s.degraded ? 1 : 0,
  );
  gauge('takeover_connections', 'TCP connections on the stack', (s) => s.connections);
  gauge('takeover_mirror_connections', 'Standby: connections mirrored', (s) => s.mirror.connections);
  gauge('takeover_mirror_bytes', 'Standby: bytes held in the mirror', (s) => s.mirror.bytes);
  gauge(
    'takeover_replication_in_flight_batches',
    'Batches sent to the standby and not yet acknowledged (the replication lag)',
    (s) => s.replication.inFlight,
  );
  counter('takeover_replication_batches_total', 'Batches sent to standbys', (s) => s.replication.batches);
  counter(
    'takeover_replication_bytes_total',
    'Bytes of batches sent to standbys',
    (s) => s.replication.bytes,
  );
  counter('takeover_takeovers_total', 'Take-overs this process made', (s) => s.takeovers ?? 0);
  gauge(
    'takeover_last_takeover_detection_seconds',
    "The last take-over: from the active's last word to the decision",
    (s) => (s.lastTakeover ? s.lastTakeover.detectionMs / 1000 : Number.NaN),
  );
  gauge('takeover_last_takeover_restore_seconds', 'The last take-over: restoring every connection', (s) =>
    s.lastTakeover ? s.lastTakeover.restoreMs / 1000 : Number.NaN,
  );
  gauge(
    'takeover_last_takeover_stall_seconds',
    "The last take-over: the longest time from the active's last word to a restored connection's peer acknowledging more",
    (s) => (s.lastTakeover?.stallMs != null ? s.lastTakeover.stallMs / 1000 : Number.NaN),
  );
  gauge(
    'takeover_last_takeover_connections',
    'The last take-over: connections restored',
    (s) => s.lastTakeover?.connections ?? 0,
  );
  counter(
    'takeover_fences_total',
    'Times this node was superseded and rejoined as standby',
    (s) => s.fences?.count ?? 0,
  );
  counter('takeover_lease_lapses_total', 'Times the lease ran out while active', (s) => s.lease?.lapses ?? 0);
  counter(
    'takeover_lease_frames_dropped_total',
    'Frames not sent for lack of the lease (gate and kernel fence)',
    (s) => s.lease?.framesDropped ?? 0,
  );
  counter(
    'takeover_beacons_refused_total',
    'Data-link beacons refused (forged, replayed)',
    (s) => s.beacons?.refused ?? 0,
  );
  counter(
    'takeover_app_errors_total',
    'Connections reset because the application threw for them or left an error unhandled',
    (s) => (s.isolation ? s.isolation.appErrors + s.isolation.socketErrors : 0),
  );
  new Counter({
    name: 'takeover_stack_dropped_total',
    help: 'Frames and segments the stack dropped, by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      const c = src.stack();
      this.reset();
      for (const reason of DROP_REASONS) this.inc({ reason }, c[reason] as number);
    },
  });
  const traffic = (name: string, help: string, key: keyof StackCounters) =>
    kept(name, help, () => src.stack()[key] as number);
  traffic('takeover_stack_frames_in_total', 'Frames from the link', 'framesIn');
  traffic('takeover_stack_frames_out_total', 'Frames to the link', 'framesOut');
  traffic('takeover_stack_rst_sent_total', 'TCP RSTs the stack sent', 'tcpRstSent');
  const commit = new Histogram({
    name: 'takeover_replication_commit_seconds',
    help: 'From a batch leaving for the standby to its acknowledgment',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers,
  });
  return { registry, commitLatency: (us) => commit.observe(us / 1e6) };
}

/**
 * Serves the admin address: `GET /metrics` (Prometheus), and with `status` the dashboard
 * (`GET /`, dashboard.ts) and the status it polls (`GET /status.json`, as `takeover status --json`).
 * Undefined (logged) when it cannot listen.
 */
export function serveMetrics(
  listen: HostPort,
  registry: Registry,
  log: (line: string) => void,
  status?: () => unknown,
): Promise<Server | undefined> {
  let page: string | undefined;
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
      );
      return;
    }
    if (status && req.method === 'GET' && path === '/status.json') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(status()));
      return;
    }
    if (status && req.method === 'GET' && (path === '/' || path === '/index.html')) {
      page ??= dashboardPage();
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
      return;
    }
    res
      .writeHead(404, { 'content-type': 'text/plain' })
      .end(status ? 'GET / (dashboard), /status.json, /metrics\n' : 'GET /metrics\n');
  });
  return new Promise((resolve) => {
    server.once('error', (e) => {
      log(`metrics ${listen.host}:${listen.port}: ${e.message}; not served`);
      resolve(undefined);
    });
    server.listen(listen.port, listen.host, () => resolve(server));
  });
}
