/**
 * The dashboard (src/cli/dashboard.ts) in headless Chromium: the live page a node serves at its
 * admin address loads without console errors and its plots fill from `status.json` as the node
 * changes; `takeover demo --report` writes a page whose take-over timeline and traffic plot hold
 * the simulated run. Skips with the reason where Debian's chromium is missing.
 * TAKEOVER_SCREENSHOTS=DIR keeps a PNG of each page there (the README's picture).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { reportPage } from '../../src/cli/dashboard.ts';
import { runDemo } from '../../src/cli/demo.ts';
import { nodeMetrics, serveMetrics } from '../../src/cli/metrics.ts';
import type { NodeStatus } from '../../src/cli/node.ts';
import type { StackCounters } from '../../src/stack/stack.ts';
import { browserSkipReason, viewDashboard } from '../support/browser.ts';

const skip = browserSkipReason();
const dir = mkdtempSync(join(tmpdir(), 'takeover-dashboard-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const shots = process.env.TAKEOVER_SCREENSHOTS;

/** A node's status as `takeover status --json` gives it; `n` moves the live values. */
function status(n: number): NodeStatus {
  return {
    nodeId: 'b',
    role: 'active',
    epoch: 4,
    mode: 'sync',
    peer: 'attached',
    synced: true,
    degraded: false,
    connections: 100 + n * 3,
    rssMB: 90,
    replication: {
      lsn: 1000 + n,
      inFlight: n % 3,
      batches: 1000 + n,
      bytes: 1e6 + n * 1e4,
      lagBatches: n % 4,
    },
    mirror: { connections: 0, bytes: 0, lsn: 0 },
    takeovers: 1,
    lastTakeover: {
      at: '2026-12-05T10:00:00.000Z',
      cause: 'link closed',
      detectionMs: 21.5,
      stallMs: 96,
      resumed: 5,
      connections: 6,
      epoch: 4,
      restoreMs: 3.2,
      resumeMs: [40, 52, 61, 75, 96],
    },
    lease: { state: 'held', kernelFence: 'tcx', lapses: 0, framesHeld: 0, framesDropped: 0 },
  };
}

describe('the dashboard in headless Chromium', { skip }, () => {
  test("a node's admin address serves the live page: no console error, the plots follow status.json, the last take-over's timeline", async () => {
    let polls = 0;
    const m = nodeMetrics({ status: () => status(polls), stack: () => ({}) as StackCounters });
    const server = await serveMetrics(
      { host: '127.0.0.1', port: 0 },
      m.registry,
      () => {},
      () => status(++polls),
    );
    assert.ok(server);
    try {
      const port = (server.address() as AddressInfo).port;
      const v = await viewDashboard(`http://127.0.0.1:${port}/`, {
        minUpdates: 4,
        screenshot: shots ? join(shots, 'dashboard.png') : undefined,
      });
      assert.deepEqual(v.errors, []);
      // The page and its status, nothing from elsewhere.
      assert.ok(
        v.requests.every((u) => u.startsWith(`http://127.0.0.1:${port}/`)),
        v.requests.join(' '),
      );
      assert.ok(polls >= 4, `the page polled status.json ${polls} time(s)`);
      const [t, conns] = v.plots.connections;
      assert.ok(t.length >= 4 && conns.length === t.length, JSON.stringify(v.plots.connections));
      // What the node said at each poll, in order: 100 + 3n, rising.
      for (let i = 1; i < conns.length; i++) assert.equal((conns[i] as number) - (conns[i - 1] as number), 3);
      assert.equal(v.plots.lag.length, 3);
      assert.ok(v.plots.lag[1].every((x) => typeof x === 'number'));
      // The take-over timeline: one step per resumed connection, from 0 to all 5.
      const [xs, ys] = v.plots.takeover;
      assert.deepEqual(xs.slice(1, 6), [40, 52, 61, 75, 96]);
      assert.equal(ys[ys.length - 1], 5);
      assert.match(v.text, /role\s+active/);
      assert.match(v.text, /epoch\s+4/);
      assert.match(
        v.text,
        /6 connection\(s\) restored in 3\.2 ms, 21\.5 ms after the active's last word \(link closed\)/,
      );
    } finally {
      server.close();
    }
  });

  test('takeover demo --report writes a page that needs no network: the timeline and the traffic of the simulated run', async () => {
    const file = join(dir, 'report.html');
    const out: string[] = [];
    assert.equal(await runDemo(['--json', '--report', file], (l) => out.push(l)), 0, out.join('\n'));
    const r = JSON.parse(out[0]) as { connections: number; takeoverAtMs: number; crashAtMs: number };
    const html = readFileSync(file, 'utf8');
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href="(?!data:)/i);
    const v = await viewDashboard(`file://${file}`, {
      screenshot: shots ? join(shots, 'demo-report.png') : undefined,
    });
    assert.deepEqual(v.errors, []);
    // Nothing fetched: the page is the only request.
    assert.deepEqual(v.requests, [`file://${file}`]);
    const [xs, ys] = v.plots.takeover;
    // Every connection open at the take-over moved again, after it.
    const resumed = ys[ys.length - 1] as number;
    assert.ok(resumed >= 1 && resumed <= r.connections, `resumed ${resumed}`);
    for (const x of xs.slice(1, 1 + resumed)) assert.ok((x as number) >= r.takeoverAtMs - r.crashAtMs);
    const [, kb] = v.plots.throughput;
    assert.ok(kb.length > 50 && kb.some((x) => (x as number) > 0), 'the traffic plot holds the run');
    assert.match(v.text, /PASS: \d+ connection\(s\), \d+ bytes verified byte-exact, 0 reset\(s\)/);
  });

  test('the page is safe with hostile text: a title is escaped', () => {
    const html = reportPage({
      title: '<img src=x onerror=alert(1)>',
      verdict: 'x',
      timeline: { origin: 'the kill', takeoverMs: 1, restoreMs: 0, resumeMs: [], summary: '</script><b>' },
      throughput: { startMs: 0, binMs: 1, bytes: [] },
    });
    assert.doesNotMatch(html, /<img src=x/);
    assert.doesNotMatch(html, /<\/script><b>/);
  });
});
