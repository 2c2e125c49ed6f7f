/**
 * The failover half of `bench relay` (issue 13): each workload runs back to back, run after run,
 * while a pair fails `n` times and is repaired after each failure; every run is judged by what
 * its client saw. Run against our relay pair (kill -9 of the active relay, restarted; it rejoins
 * as standby and syncs before the next kill) and against the pair users run today (two HAProxy
 * hosts behind a keepalived VRRP address; the master host fails: haproxy and keepalived killed,
 * its link down), with the same workloads, clients and failure count.
 */
import type { Host, Spawned } from '../test/netns/harness.ts';

/** A pair of relays, as the workloads see it: one failure at a time, each repaired. */
export interface FailingPair {
  /** The failure: returns once the pair serves again (its survivor active) or it gave up waiting. */
  fail(): Promise<void>;
  /** The failed node back in the pair (for ours: restarted and synced). */
  repair(): Promise<void>;
}

/** What one run of a workload's client saw. */
export interface Seen {
  ok: boolean;
  line: string;
}

/** One workload: `run` starts its client once, bounded in time, and judges what it saw. */
export interface Workload {
  name: string;
  run(): Promise<Seen>;
}

/** What one workload saw through `n` failures of one pair. */
export interface UnderFailures {
  workload: string;
  failures: number;
  /** Failures that happened while a run of the workload was in flight. */
  failuresDuringRuns: number;
  runs: number;
  /** Runs whose client saw something wrong (an error, a reset, a wrong result, a hang). */
  brokenRuns: number;
  /** The first broken runs' lines (at most three). */
  examples: string[];
  /** Extra checks of the workload's end state (PostgreSQL's balances), each a line. */
  checks: string[];
}

/**
 * Runs `w` back to back while `pair` fails `n` times (the first failure 2 s into the first run,
 * then each after the repair of the last and `gapMs`); stops starting runs once the failures are
 * done, and waits for the run in flight.
 */
export async function underFailures(
  pair: FailingPair,
  w: Workload,
  n: number,
  log: (s: string) => void,
  gapMs = 1000,
): Promise<UnderFailures> {
  const runs: { start: number; end: number; seen: Seen }[] = [];
  const failures: number[] = [];
  let done = false;
  const workload = (async () => {
    // Bounded: the failures end, and every run is bounded by its own timeout.
    for (let i = 0; i < 10_000 && (!done || runs.length === 0); i++) {
      const start = performance.now();
      const seen = await w.run();
      const end = performance.now();
      runs.push({ start, end, seen });
      log(`    ${w.name} run ${runs.length}: ${seen.line}`);
      // A client that fails at once (nothing answers the address yet) is not restarted in a spin.
      if (end - start < 1000) await sleep(500);
    }
  })();
  try {
    await sleep(2000);
    for (let i = 0; i < n; i++) {
      failures.push(performance.now());
      await pair.fail();
      await pair.repair();
      await sleep(gapMs);
    }
  } finally {
    // A failure that throws ends the runs too (each bounded), then propagates.
    done = true;
    await workload;
  }
  const broken = runs.filter((r) => !r.seen.ok);
  return {
    workload: w.name,
    failures: n,
    failuresDuringRuns: failures.filter((t) => runs.some((r) => r.start <= t && t <= r.end)).length,
    runs: runs.length,
    brokenRuns: broken.length,
    examples: broken.slice(0, 3).map((r) => r.seen.line),
    checks: [],
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs a client to its end, bounded by `timeoutMs` (then killed: `code` null). */
async function bounded(
  client: Host,
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p: Spawned = client.spawn(cmd, args);
  let timer: NodeJS.Timeout | undefined;
  const { code } = await Promise.race([
    p.exited,
    new Promise<{ code: null }>((r) => {
      timer = setTimeout(() => r({ code: null }), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (code === null) p.kill('SIGKILL');
  return { code, ...p.output() };
}

/** The first line of a client's output that says something went wrong. */
export const errorLine = (text: string) =>
  text
    .replace(/\r/g, '\n')
    .split('\n')
    .find((l) => /error|reset|lost|abort|refused|fail|closed|timed out|terminat/i.test(l))
    ?.trim() ?? '';

/**
 * pgbench -c 8 -j 2 -T `seconds` (TPC-B) with -n (no vacuum, so the history table keeps every
 * run's rows for the balance check): no failed transaction, no aborted client.
 */
export function pgbench(client: Host, host: string, seconds: number): Workload {
  return {
    name: 'pgbench',
    async run() {
      const { code, stdout, stderr } = await bounded(
        client,
        'pgbench',
        ['-n', '-h', host, '-U', 'postgres', '-c', '8', '-j', '2', '-T', String(seconds), 'postgres'],
        (seconds + 60) * 1000,
      );
      const out = `${stdout}\n${stderr}`;
      const processed = Number(
        /number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? Number.NaN,
      );
      const failed = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0);
      const aborted = (out.match(/client \d+ aborted/g) ?? []).length;
      if (code === null)
        return {
          ok: false,
          line: `pgbench did not finish within 60 s of its end (its connections hung; killed)`,
        };
      const ok = code === 0 && failed === 0 && aborted === 0 && processed > 0;
      const example = errorLine(stderr);
      return {
        ok,
        line: `pgbench exit ${code}, ${processed} transactions, ${failed} failed, ${aborted} of 8 clients aborted${example ? ` (${example})` : ''}`,
      };
    },
  };
}

/** curl of the file at `/big` at `rateMB` MB/s, hashed as it arrives: exit 0 and the sha256 `want`. */
export function curl(client: Host, host: string, mb: number, rateMB: number, want: string): Workload {
  const limitS = Math.ceil(mb / rateMB) + 120;
  return {
    name: 'curl',
    async run() {
      const r = await bounded(
        client,
        'bash',
        [
          '-c',
          'set -o pipefail; curl -sS --max-time "$1" --limit-rate "$2" "$3" | sha256sum',
          'curl',
          String(limitS),
          `${rateMB}M`,
          `http://${host}/big`,
        ],
        (limitS + 10) * 1000,
      );
      const sha = r.stdout.split(' ')[0].trim();
      const ok = r.code === 0 && sha === want;
      if (r.code === null) return { ok, line: `curl did not finish within ${limitS + 10} s (killed)` };
      return {
        ok,
        line: `curl of ${mb} MB exit ${r.code}, sha256 ${sha === want ? 'matches' : `differs (${sha.slice(0, 12)}…)`}${ok ? '' : ` (${errorLine(r.stderr)})`}`,
      };
    },
  };
}

/** redis-benchmark -P 16 -c 50 -n `requests` (GET): finished, no error. */
export function redisBench(client: Host, host: string, requests: number): Workload {
  return {
    name: 'redis-benchmark',
    async run() {
      const r = await bounded(
        client,
        'redis-benchmark',
        ['-h', host, '-P', '16', '-c', '50', '-n', String(requests), '-t', 'get', '-q'],
        150_000,
      );
      const err = errorLine(`${r.stdout}\n${r.stderr}`);
      const rate = /GET: ([\d.]+) requests per second/.exec(r.stdout.replace(/\r/g, '\n'))?.[1];
      const ok = r.code === 0 && err === '' && rate !== undefined;
      if (r.code === null)
        return { ok, line: 'redis-benchmark did not finish within 150 s (its connections hung; killed)' };
      return {
        ok,
        line: `redis-benchmark exit ${r.code}${err ? `: ${err}` : `, ${requests} requests, no error, ${rate} GET/s`}`,
      };
    },
  };
}

/** iperf3 for `seconds` (`-R`: the server sends): completes, no error. */
export function iperf3(client: Host, host: string, seconds: number, reverse: boolean): Workload {
  return {
    name: reverse ? 'iperf3 -R' : 'iperf3',
    async run() {
      const r = await bounded(
        client,
        'iperf3',
        ['-c', host, '-p', '5201', '-t', String(seconds), '-f', 'm', ...(reverse ? ['-R'] : [])],
        (seconds + 60) * 1000,
      );
      const err = errorLine(`${r.stdout}\n${r.stderr}`);
      const rate = /([\d.]+) Mbits\/sec\s+\d*\s*receiver/.exec(r.stdout)?.[1];
      const ok = r.code === 0 && err === '' && rate !== undefined;
      if (r.code === null)
        return { ok, line: `iperf3 did not finish within 60 s of its end (its connections hung; killed)` };
      return { ok, line: `iperf3 exit ${r.code}${err ? `: ${err}` : `, ${rate} Mbit/s received`}` };
    },
  };
}

/** One line per workload result. */
export function failuresLine(r: UnderFailures): string {
  return `${r.workload}: ${r.runs} run(s) through ${r.failures} failures (${r.failuresDuringRuns} during a run): ${r.brokenRuns} broken${r.examples.length ? ` (${r.examples.join('; ')})` : ''}${r.checks.length ? `; ${r.checks.join('; ')}` : ''}`;
}
