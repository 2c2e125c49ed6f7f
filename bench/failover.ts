/**
 * `npm run bench -- failover [--json] [--runs N] [--mb N] [--idle N] [--dl-mb N] [--pings N]`
 * (root): session take-over on a real network, as issue 5 asks.
 *
 * 1. Throughput and latency through the VIP with sync replication (a standby attached), then the
 *    same standalone (the standby stopped: the active serves alone): download MB/s from the
 *    download example and 1-byte request/response round trips on the echo example, kernel client.
 * 2. `--runs` take-overs (default 20): an echo stream both ways (`--mb`, default 50 MB each way),
 *    200 HTTP keep-alive connections and a curl download; SIGKILL of the active once they flow;
 *    every byte checked, the client's capture checked for RST; the killed node restarted as
 *    standby, synced, and killed in its turn next run. Stall = the longest any one client
 *    connection waited for its next bytes across the take-over (the echo stream, or any of the
 *    200 HTTP connections; not the gap in bytes reaching the client process as a whole, which
 *    other connections' bytes would fill).
 * 3. `--idle` (default 10,000) idle connections, the active killed, the time the standby takes to
 *    restore them all; then one byte on each must come back.
 *
 * Prints a table, or with --json one line: {"runs","failures","resets","bytesVerified",
 * "stallMsP50","stallMsP99","connections","detectionTimeoutMs", ...}.
 *
 * HA_DEBUG=1 logs each take-over's detail (each client's longest wait, the survivor's TAP
 * counters and take-over log); HA_KEEP=1 keeps the directory with the client captures.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LatencyResult, Result, TransferResult } from '../test/netns/apps/bench-client.ts';
import { launch } from '../test/netns/apps/launch.ts';
import { type ClientResult, HaPair, type RoundOutcome, VIP } from '../test/netns/ha-pair.ts';
import { rootSkipReason, Topology, waitUntil } from '../test/netns/harness.ts';
import { type BenchOptions, benchFlags, printTable } from './harness.ts';

const apps = new URL('../test/netns/apps/', import.meta.url).pathname;

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

interface Perf {
  downloadMBps: number;
  p50Us: number;
  p99Us: number;
}

async function oneShot(pair: HaPair, args: string[], timeoutMs: number): Promise<Result> {
  const p = launch(pair.client, 'bench-client.ts', args);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.exited,
    new Promise((_r, rej) => {
      timer = setTimeout(
        () => rej(new Error(`bench client ${args.join(' ')}: no answer in ${timeoutMs} ms`)),
        timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  const line = p.output().stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Result;
}

async function perf(pair: HaPair, mb: number, pings: number): Promise<Perf> {
  const d = await oneShot(pair, ['download', VIP, String(mb * 1e6)], 120_000);
  if (!d.ok) throw new Error(`download: ${(d as { error: string }).error}\n${pair.logs()}`);
  const l = await oneShot(pair, ['latency', VIP, String(pings)], 120_000);
  if (!l.ok) throw new Error(`latency: ${(l as { error: string }).error}\n${pair.logs()}`);
  const lr = l as LatencyResult;
  return { downloadMBps: (d as TransferResult).mbPerS, p50Us: lr.p50Us, p99Us: lr.p99Us };
}

export async function run(o: BenchOptions): Promise<number> {
  const skip = rootSkipReason(['curl']);
  if (skip) {
    console.error(`bench failover: ${skip}`);
    return 2;
  }
  const f = benchFlags(o, {
    runs: { default: 20 },
    mb: { default: 50, min: 0, real: true },
    idle: { default: 10_000, min: 0 },
    'dl-mb': { default: 200, min: 0, real: true },
    pings: { default: 10_000, min: 0 },
  });
  const { runs, pings } = f;
  const echoMb = f.mb;
  const idleConns = f.idle;
  const dlMb = f['dl-mb'];
  const log = (s: string) => {
    if (!o.json) console.error(s);
  };
  const dir = mkdtempSync(join(tmpdir(), 'takeover-bench-'));
  const topo = await Topology.create({ prefix: 'tkb' });
  try {
    const pair = await HaPair.create(topo, dir);
    await pair.start('a');
    await pair.start('b');
    await pair.synced('b');

    log(`sync replication: download ${dlMb} MB and ${pings} pings through the VIP …`);
    const sync = await perf(pair, dlMb, pings);

    const outcomes: RoundOutcome[] = [];
    let victim = 'a';
    let survivor = 'b';
    for (let i = 1; i <= runs; i++) {
      log(`take-over ${i}/${runs}: kill -9 of ${victim} …`);
      const r = await pair.round(victim, survivor, i, {
        echoBytes: echoMb * 1e6,
        httpConnections: 200,
        httpRequests: 20,
        curlBytes: 20_000_000,
      });
      outcomes.push(r);
      if (r.failures.length > 0) log(`  FAILED: ${r.failures[0]}`);
      else log(`  stall ${r.stallMs} ms (${r.detail}), ${r.restored} connections restored`);
      await pair.start(victim);
      await pair.synced(victim);
      [victim, survivor] = [survivor, victim];
    }

    let restore: { connections: number; restoreMs: number; echoedAllMs: number; ok: boolean } | undefined;
    if (idleConns > 0) {
      log(`restore: ${idleConns} idle connections, kill -9 of ${victim} …`);
      const idle = pair.client.spawn('sh', [
        '-c',
        `ulimit -n ${idleConns + 1024} && exec ${process.execPath} --import tsx ${apps}ha-client.ts idle ${VIP} 7 ${idleConns}`,
      ]);
      await waitUntil('the idle connections to open', () => idle.output().stdout.includes('started'), {
        timeoutMs: 120_000,
        tries: 2400,
        intervalMs: 50,
      });
      await waitUntil(
        'the standby to mirror them all',
        async () => (await pair.status(survivor)).mirror.connections >= idleConns,
        { timeoutMs: 60_000, tries: 1200, intervalMs: 50 },
      );
      pair.kill(victim);
      const st = await waitUntil(
        `${survivor} to take over`,
        async () => {
          const s = await pair.status(survivor);
          return s.role === 'active' && s.lastTakeover ? s : undefined;
        },
        { timeoutMs: 30_000, tries: 600, intervalMs: 50 },
      );
      process.kill(idle.pid!, 'SIGUSR1');
      const r: ClientResult = await pair.result(idle, 'idle client', 60_000);
      restore = {
        connections: st.lastTakeover!.connections,
        restoreMs: st.lastTakeover!.restoreMs,
        echoedAllMs: r.maxGapMs,
        ok: r.ok && st.lastTakeover!.connections >= idleConns,
      };
      await pair.start(victim);
      await pair.synced(victim);
      [victim, survivor] = [survivor, victim];
    }

    log('standalone: the standby stopped, the active serves alone …');
    process.kill(-pair.procs.get(survivor)!.pid!, 'SIGTERM');
    await waitUntil('the active to serve alone', async () => (await pair.status(victim)).degraded, {
      timeoutMs: 30_000,
      tries: 600,
      intervalMs: 50,
    });
    const alone = await perf(pair, dlMb, pings);

    const stalls = outcomes.map((r) => r.stallMs);
    const failures = outcomes.filter((r) => r.failures.length > 0).length + (restore && !restore.ok ? 1 : 0);
    const result = {
      runs,
      failures,
      resets: outcomes.reduce((n, r) => n + r.resets, 0),
      bytesVerified: outcomes.reduce((n, r) => n + r.bytesVerified, 0),
      stallMsP50: percentile(stalls, 50),
      stallMsP99: percentile(stalls, 99),
      stallMsMax: Math.max(0, ...stalls),
      /** Every take-over's stall, in run order. */
      stallsMs: stalls,
      /** The same stall as the new active's `status` reports it (its restored connections moving again). */
      nodeStallMsP99: percentile(
        outcomes.map((r) => r.nodeStallMs ?? 0),
        99,
      ),
      connections: outcomes[0]?.connections ?? 0,
      detectionTimeoutMs: pair.timeoutMs,
      sync,
      standalone: alone,
      syncOverStandalone: {
        download: sync.downloadMBps / alone.downloadMBps,
        p50: sync.p50Us / alone.p50Us,
        p99: sync.p99Us / alone.p99Us,
      },
      restore,
    };
    if (o.json) console.log(JSON.stringify(result));
    else {
      console.log(
        `\n${runs} take-overs (kill -9 of the active; echo ${echoMb} MB each way + 200 HTTP keep-alive connections + curl each), detection timeout ${pair.timeoutMs} ms:`,
      );
      printTable(
        ['failures', 'resets', 'bytes verified', 'stall p50 ms', 'stall p99 ms', 'stall max ms'],
        [
          [
            failures,
            result.resets,
            result.bytesVerified,
            result.stallMsP50,
            result.stallMsP99,
            result.stallMsMax,
          ],
        ],
      );
      console.log('\nthrough the VIP, kernel client, same run:');
      printTable(
        ['', 'sync replication', 'standalone', 'ratio'],
        [
          [
            'download MB/s',
            sync.downloadMBps.toFixed(1),
            alone.downloadMBps.toFixed(1),
            `${result.syncOverStandalone.download.toFixed(2)}×`,
          ],
          [
            '1-byte RTT p50 µs',
            sync.p50Us.toFixed(0),
            alone.p50Us.toFixed(0),
            `${result.syncOverStandalone.p50.toFixed(2)}×`,
          ],
          [
            '1-byte RTT p99 µs',
            sync.p99Us.toFixed(0),
            alone.p99Us.toFixed(0),
            `${result.syncOverStandalone.p99.toFixed(2)}×`,
          ],
        ],
      );
      if (restore)
        console.log(
          `\nrestore of ${restore.connections} idle connections: ${restore.restoreMs.toFixed(1)} ms; one byte on each echoed back within ${restore.echoedAllMs} ms (${restore.ok ? 'all' : 'NOT all'})`,
        );
    }
    return failures === 0 ? 0 : 1;
  } finally {
    await topo.destroy();
    if (process.env.HA_KEEP) console.error(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
