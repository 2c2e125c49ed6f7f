/**
 * The node's Prometheus metrics (src/cli/metrics.ts): read from the status and the stack's
 * counters at each scrape, the commit latency observed as it happens; served at GET /metrics.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { nodeMetrics, serveMetrics } from '../../src/cli/metrics.ts';
import type { NodeStatus } from '../../src/cli/node.ts';
import type { StackCounters } from '../../src/stack/stack.ts';

function status(over: Partial<NodeStatus> = {}): NodeStatus {
  return {
    nodeId: 'a',
    role: 'active',
    epoch: 7,
    mode: 'sync',
    peer: 'attached',
    synced: false,
    degraded: false,
    connections: 12,
    rssMB: 100,
    replication: { lsn: 40, inFlight: 2, batches: 40, bytes: 123_456, lagBatches: 2 },
    mirror: { connections: 0, bytes: 0, lsn: 0 },
    takeovers: 1,
    lastTakeover: {
      at: '2026-12-03T00:00:00.000Z',
      cause: 'link closed',
      detectionMs: 55,
      stallMs: 120,
      resumed: 3,
      connections: 3,
      epoch: 7,
      restoreMs: 4,
      resumeMs: [80, 95, 120],
    },
    lease: { state: 'held', kernelFence: 'tcx', lapses: 0, framesHeld: 0, framesDropped: 5 },
    ...over,
  };
}

const counters = { framesIn: 1000, framesOut: 900, malformed: 3, tcpRstSent: 1 } as unknown as StackCounters;

/** The value of one series in an exposition text. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no ${series} in\n${text}`);
  return Number(line.split(' ')[1]);
}

describe('Prometheus metrics', () => {
  test('role, lease, connections, replication, take-overs and stack drops come from the node at scrape time', async () => {
    let st = status();
    const m = nodeMetrics({ status: () => st, stack: () => counters });
    let text = await m.registry.metrics();
    assert.equal(value(text, 'takeover_role{role="active"}'), 1);
    assert.equal(value(text, 'takeover_role{role="standby"}'), 0);
    assert.equal(value(text, 'takeover_lease_state{state="held"}'), 1);
    assert.equal(value(text, 'takeover_epoch'), 7);
    assert.equal(value(text, 'takeover_connections'), 12);
    assert.equal(value(text, 'takeover_replication_in_flight_batches'), 2);
    assert.equal(value(text, 'takeover_replication_bytes_total'), 123_456);
    assert.equal(value(text, 'takeover_takeovers_total'), 1);
    assert.equal(value(text, 'takeover_last_takeover_detection_seconds'), 0.055);
    assert.equal(value(text, 'takeover_last_takeover_stall_seconds'), 0.12);
    assert.equal(value(text, 'takeover_lease_frames_dropped_total'), 5);
    assert.equal(value(text, 'takeover_stack_dropped_total{reason="malformed"}'), 3);
    assert.equal(value(text, 'takeover_stack_frames_in_total'), 1000);
    // A later scrape sees the node as it is then (a fenced node that rejoined as standby).
    await new Promise((r) => setTimeout(r, 60));
    st = status({ role: 'standby', synced: true, lease: undefined, takeovers: 1 });
    text = await m.registry.metrics();
    assert.equal(value(text, 'takeover_role{role="standby"}'), 1);
    assert.equal(value(text, 'takeover_role{role="active"}'), 0);
    assert.equal(value(text, 'takeover_lease_state{state="none"}'), 1);
    assert.equal(value(text, 'takeover_standby_synced'), 1);
  });

  test('the commit latency is a histogram of what the replicator reported', async () => {
    const m = nodeMetrics({ status: () => status(), stack: () => counters });
    for (const us of [300, 800, 4000]) m.commitLatency(us);
    const text = await m.registry.metrics();
    assert.equal(value(text, 'takeover_replication_commit_seconds_count'), 3);
    assert.equal(value(text, 'takeover_replication_commit_seconds_bucket{le="0.0005"}'), 1);
    assert.equal(value(text, 'takeover_replication_commit_seconds_bucket{le="0.001"}'), 2);
    assert.equal(value(text, 'takeover_replication_commit_seconds_bucket{le="0.005"}'), 3);
  });

  test('served over HTTP at GET /metrics; anything else is a 404', async () => {
    const m = nodeMetrics({ status: () => status(), stack: () => counters });
    const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, m.registry, () => {});
    assert.ok(server);
    try {
      const port = (server.address() as AddressInfo).port;
      const get = (path: string) =>
        new Promise<{ code: number; body: string; type: string }>((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () =>
              resolve({ code: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }),
            );
          });
          req.on('error', reject);
          req.end();
        });
      const ok = await get('/metrics');
      assert.equal(ok.code, 200);
      assert.match(ok.type, /^text\/plain/);
      assert.equal(value(ok.body, 'takeover_role{role="active"}'), 1);
      assert.match(ok.body, /^process_cpu_user_seconds_total /m);
      assert.equal((await get('/')).code, 404);
    } finally {
      server.close();
    }
  });

  test('a port in use is logged, not thrown', async () => {
    const m = nodeMetrics({ status: () => status(), stack: () => counters });
    const first = await serveMetrics({ host: '127.0.0.1', port: 0 }, m.registry, () => {});
    assert.ok(first);
    const lines: string[] = [];
    try {
      const port = (first.address() as AddressInfo).port;
      const second = await serveMetrics({ host: '127.0.0.1', port }, m.registry, (l) => lines.push(l));
      assert.equal(second, undefined);
      assert.match(lines[0], /EADDRINUSE/);
    } finally {
      first.close();
    }
  });
});
