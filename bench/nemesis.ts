/**
 * `npm run bench -- nemesis [--runs N] [--scenario S[,S…]] [--seed N] [--json]` (root): the
 * nemesis suite (issue 12) on a real network of namespaces with kernel clients. Every scenario
 * injects one fault (kill -9, host crash, SIGSTOP, blip, partitions, standby churn, RST storm,
 * clock step) into the pair under client load; the checker judges each run only from what the
 * clients saw (their byte-exact streams, their capture) and the nodes' liveness, and reports
 * anomalies by kind (test/netns/nemesis/runner.ts lists them).
 *
 * --runs N     runs of each scenario (default 2), interleaved: every scenario once, then again
 * --scenario   only these scenarios (comma-separated)
 * --seed N     seed of the first run (run i has seed N + i); a run prints its scenario and seed,
 *              and `--scenario S --seed N --runs 1` replays its choices
 * --heartbeat-ms, --timeout-ms   the nodes' replication timing (default, or `default`: the
 *              node's config defaults, 10 and 50 ms)
 * --arbiter    the pair with an etcd arbiter (README "Partitions"); adds the node-split scenario
 * --relay      a `takeover relay` pair in front of the same apps on the kernel's TCP (a backend
 *              namespace); the servers' side is judged too (no RST, no frame from a stale node)
 *
 * Prints a table per scenario (runs, violations, stall p50/p99: of each run's longest wait of one
 * connection for its next bytes) and every run with an anomaly; with --json one line:
 * {"runs","violations","failedRuns","seed","scenarios":{name:{"runs","violations","stallMsP50",
 * "stallMsP99","kinds":{kind:count}}},"failures":[{scenario,seed,kinds,examples}]}.
 * NEMESIS_KEEP=1 keeps the directory with each run's capture, node log and result; without it, a
 * run with an anomaly is kept alone (its path printed): a 1-in-300 event may not replay.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CUT_TOOLS, rootSkipReason } from '../test/netns/harness.ts';
import { describeRun, Nemesis, type RunResult } from '../test/netns/nemesis/runner.ts';
import { PLAIN_SCENARIOS, SCENARIO_NAMES } from '../test/netns/nemesis/scenarios.ts';
import { type BenchOptions, benchFlags, printTable, UsageError } from './harness.ts';

interface Flags {
  runs: number;
  scenarios: string[];
  seed: number;
  /** undefined: the suite's (20/100); null: the node's defaults. */
  heartbeatMs?: number | null;
  timeoutMs?: number | null;
  arbiter: boolean;
  relay: boolean;
}

/** A timing flag: a positive whole number of ms, `default` (the node's own: null), or unset. */
function timing(name: string, v: string | undefined): number | null | undefined {
  if (v === undefined) return undefined;
  if (v === 'default') return null;
  const n = Number(v);
  if (!(Number.isSafeInteger(n) && n > 0))
    throw new UsageError(`--${name} takes a positive whole number or 'default' (the node's own), got ${v}`);
  return n;
}

function parse(o: BenchOptions): Flags {
  const v = benchFlags(
    o,
    { runs: { default: 2 }, seed: { default: Math.floor(Math.random() * 1e6), min: 0 } },
    ['arbiter', 'relay'],
    ['scenario', 'heartbeat-ms', 'timeout-ms'],
  );
  const f: Flags = {
    runs: v.runs,
    seed: v.seed,
    scenarios: [],
    heartbeatMs: timing('heartbeat-ms', v['heartbeat-ms']),
    timeoutMs: timing('timeout-ms', v['timeout-ms']),
    arbiter: v.arbiter,
    relay: v.relay,
  };
  if (v.scenario !== undefined) {
    const names = v.scenario.split(',').filter(Boolean);
    const bad = names.filter((s) => !SCENARIO_NAMES.includes(s));
    if (names.length === 0 || bad.length > 0)
      throw new UsageError(
        `--scenario takes one or more of ${SCENARIO_NAMES.join(', ')}${bad.length ? `; unknown: ${bad.join(', ')}` : ''}`,
      );
    f.scenarios = names;
  }
  const plain = PLAIN_SCENARIOS.map((s) => s.name);
  if (f.scenarios.length === 0) f.scenarios = f.arbiter ? SCENARIO_NAMES : plain;
  const needs = f.scenarios.filter((s) => !f.arbiter && !plain.includes(s));
  if (needs.length > 0) throw new UsageError(`${needs.join(', ')} needs the etcd arbiter: add --arbiter`);
  return f;
}

interface ScenarioSummary {
  runs: number;
  violations: number;
  /** Of each run's longest wait of one connection (connects during the fault included). */
  stallMsP50: number;
  stallMsP99: number;
  /** The same, of the connections open before the fault only. */
  establishedStallMsP50: number;
  establishedStallMsP99: number;
  /** Scenarios with an added-stall target (standby-churn, switchover): what the fault added (runner.ts). */
  addedStallMsP50?: number;
  addedStallMsP99?: number;
  kinds: Record<string, number>;
}

export function percentile(xs: number[], p: number): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export async function run(o: BenchOptions): Promise<number> {
  const f = parse(o);
  const skip = rootSkipReason([...CUT_TOOLS, 'ss']);
  if (skip) {
    console.error(`bench nemesis: ${skip}`);
    return 2;
  }
  const log = (s: string) => {
    if (!o.json) console.error(s);
  };
  const dir = mkdtempSync(join(tmpdir(), 'takeover-nemesis-'));
  const results: RunResult[] = [];
  let nem: Nemesis | undefined;
  try {
    nem = await Nemesis.create({
      dir,
      log,
      heartbeatMs: f.heartbeatMs,
      timeoutMs: f.timeoutMs,
      arbiter: f.arbiter,
      relay: f.relay,
    });
    const total = f.runs * f.scenarios.length;
    for (let r = 0; r < f.runs; r++)
      for (const s of f.scenarios) {
        const seed = f.seed + results.length;
        log(`run ${results.length + 1}/${total}: ${s} seed ${seed} …`);
        const res = await nem.run(s, seed);
        results.push(res);
        log(`  ${describeRun(res)}`);
        if (res.violations > 0) {
          for (const e of res.examples.slice(0, 4)) log(`    ${e}`);
          if (!process.env.NEMESIS_KEEP) {
            const kept = join(tmpdir(), `takeover-nemesis-${s}-${seed}-${process.pid}`);
            cpSync(join(dir, `run-${res.index}`), kept, { recursive: true });
            console.error(`    kept its capture and logs in ${kept}`);
          }
        }
      }
  } finally {
    await nem?.destroy();
    if (process.env.NEMESIS_KEEP) console.error(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }

  const scenarios: Record<string, ScenarioSummary> = {};
  for (const s of f.scenarios) {
    const rs = results.filter((r) => r.scenario === s);
    const kinds: Record<string, number> = {};
    for (const r of rs) for (const [k, n] of Object.entries(r.kinds)) kinds[k] = (kinds[k] ?? 0) + n;
    scenarios[s] = {
      runs: rs.length,
      violations: rs.reduce((n, r) => n + r.violations, 0),
      stallMsP50: percentile(
        rs.map((r) => r.stallMs),
        50,
      ),
      stallMsP99: percentile(
        rs.map((r) => r.stallMs),
        99,
      ),
      establishedStallMsP50: percentile(
        rs.map((r) => r.establishedStallMs),
        50,
      ),
      establishedStallMsP99: percentile(
        rs.map((r) => r.establishedStallMs),
        99,
      ),
      ...(rs.some((r) => r.addedStallMs !== undefined)
        ? {
            addedStallMsP50: percentile(
              rs.map((r) => r.addedStallMs ?? Number.NaN),
              50,
            ),
            addedStallMsP99: percentile(
              rs.map((r) => r.addedStallMs ?? Number.NaN),
              99,
            ),
          }
        : {}),
      kinds,
    };
  }
  const failed = results.filter((r) => r.violations > 0);
  const out = {
    runs: results.length,
    violations: results.reduce((n, r) => n + r.violations, 0),
    failedRuns: failed.length,
    seed: f.seed,
    scenarios,
    failures: failed.map((r) => ({
      scenario: r.scenario,
      seed: r.seed,
      kinds: r.kinds,
      examples: r.examples,
    })),
  };
  if (o.json) console.log(JSON.stringify(out));
  else {
    console.log(
      `\nnemesis: ${out.runs} runs from seed ${f.seed}; stall = the longest one client connection waited for its next bytes in a run`,
    );
    printTable(
      [
        'scenario',
        'runs',
        'violations',
        'runs with',
        'stall p50 ms',
        'stall p99 ms',
        'established p50/p99 ms',
        'anomalies by kind',
      ],
      Object.entries(scenarios).map(([name, s]) => [
        name,
        s.runs,
        s.violations,
        failed.filter((r) => r.scenario === name).length,
        s.stallMsP50,
        s.stallMsP99,
        `${s.establishedStallMsP50}/${s.establishedStallMsP99}`,
        Object.entries(s.kinds)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ') || '-',
      ]),
    );
    if (failed.length > 0) {
      console.log('\nruns with anomalies (replay: --scenario <name> --seed <seed> --runs 1):');
      for (const r of failed) {
        console.log(`- ${describeRun(r)}`);
        for (const e of r.examples.slice(0, 6)) console.log(`    ${e}`);
      }
    }
  }
  return failed.length === 0 ? 0 : 1;
}
