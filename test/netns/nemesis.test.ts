/**
 * The nemesis suite (issue 12; STYLE.md "Jepsen and FoundationDB"): every scenario of
 * test/netns/nemesis/scenarios.ts, twice, on one real network of namespaces with kernel clients
 * (kill -9 ping-pongs between the nodes). Each run is judged only from what the clients saw and
 * the nodes' liveness (test/netns/nemesis/runner.ts lists the anomaly kinds); a test fails on any
 * anomaly and prints every run's scenario and seed (`npm run bench -- nemesis --scenario S --seed
 * N --runs 1` replays a run's choices).
 *
 * The same scenarios run once each against a `takeover relay` pair in front of the same apps on
 * the kernel's TCP (`npm run bench -- nemesis --relay`), where the servers' side is judged too.
 *
 * Scenarios that today's code fails are marked todo with what fails: they still run and report.
 * NEMESIS_SEED sets the first seed (default 1); NEMESIS_RUNS the runs per scenario (default 2;
 * NEMESIS_RELAY_RUNS for the relay pair's, default 1);
 * NEMESIS_KEEP=1 keeps the directory with each run's capture, node log and result.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CUT_TOOLS, rootSkipReason } from './harness.ts';
import { describeRun, ETCD_BIN, Nemesis, type RunResult } from './nemesis/runner.ts';
import { PLAIN_SCENARIOS, SCENARIOS, type Scenario } from './nemesis/scenarios.ts';

const skip = rootSkipReason([...CUT_TOOLS, 'ss']);
const RUNS = Number(process.env.NEMESIS_RUNS ?? 2);
const SEED = Number(process.env.NEMESIS_SEED ?? 1);

/**
 * What today's code gets wrong, per scenario (node:test's todo: reported, not failing). Empty:
 * the hand-over of an active cut off its data link, the kernel fence out of a time namespace's
 * offset, and the replicated send stream of restored sockets made the last three pass.
 */
const TODO: Record<string, string> = {};

/** The anomaly kind of a stall over a scenario's target. */
const TARGET = 'stall-over-target';
/**
 * Scenarios whose stall target is reported, not failed: measured at its edge, where a run over it
 * would fail CI a few times in a hundred for a reason outside the pair (2 shared cores).
 */
const TARGET_TODO: Record<string, { node: string; relay: string }> = {
  switchover: {
    node: 'issue 14: `npm run bench -- nemesis --scenario switchover` measured 50-100 ms added (target 20 ms) on the 2026-12-05 machine: the hand-over itself is 1-10 ms, then the new active restores cold (about 60 ms for 64 connections on a first take-over in a process, 10 ms warm) while clients wait',
    relay:
      'issue 14: the same as for a node pair (the switchover target is measured, not met yet: the cold restore dominates)',
  },
  'standby-churn': {
    node: "issue 12: `npm run bench -- nemesis --runs 30` measured 1 run of 30 over the 20 ms target (22 ms, during the new standby's start-up and bootstrap); 14 of 14 within it in the stop's other runs",
    relay:
      "issue 12: `npm run bench -- nemesis --relay --scenario standby-churn` measured 1 run of 28 over the 20 ms target, the active's event loop losing 50 ms twice while the new standby process started on the same 2 cores (before it connected)",
  },
};

/** The scenarios run again on a pair with the etcd arbiter: the split it exists for, and the faults whose take-over it now decides. */
const WITH_ARBITER = ['node-split', 'kill9', 'host-crash', 'repl-partition', 'sigstop', 'switchover'];

function suite(
  title: string,
  scenarios: Scenario[],
  pair: { arbiter?: boolean; relay?: boolean; runs?: number },
  skip: string | false | undefined,
): void {
  const perScenario = pair.runs ?? RUNS;
  describe(title, { skip }, () => {
    let nem: Nemesis | undefined;
    let dir: string;
    let seed = SEED;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'takeover-nemesis-'));
      nem = await Nemesis.create({ dir, arbiter: pair.arbiter, relay: pair.relay });
    });

    after(async () => {
      await nem?.destroy();
      if (process.env.NEMESIS_KEEP) console.log(`kept ${dir}`);
      else if (dir) rmSync(dir, { recursive: true, force: true });
    });

    for (const s of scenarios) {
      test(`${s.name}: ${s.about}`, { todo: TODO[s.name], timeout: 240_000 }, async (t) => {
        assert.ok(nem, 'the pair did not start');
        const runs: RunResult[] = [];
        for (let i = 0; i < perScenario; i++) {
          const r = await nem.run(s.name, seed++);
          t.diagnostic(describeRun(r));
          runs.push(r);
        }
        // The stall target of standby churn is a figure at its edge, not a safety property: judged
        // apart (see TARGET_TODO); every other anomaly fails the test.
        const target = (r: RunResult) => r.kinds[TARGET] ?? 0;
        const todo = TARGET_TODO[s.name]?.[pair.relay ? 'relay' : 'node'];
        if (todo)
          await t.test(`the stall it adds stays within the target`, { todo }, () => {
            assert.deepEqual(
              runs.filter((r) => target(r) > 0).map((r) => `${r.scenario} seed ${r.seed}`),
              [],
            );
          });
        const bad = runs.filter((r) => r.violations - (todo ? target(r) : 0) > 0);
        assert.deepEqual(
          bad.map((r) => `${r.scenario} seed ${r.seed}: ${JSON.stringify(r.kinds)}`),
          [],
          bad
            .map(
              (r) =>
                `${describeRun(r)}\n  ${r.examples.join('\n  ')}\n  nodes:\n    ${r.evidence.join('\n    ')}`,
            )
            .join('\n'),
        );
      });
    }
  });
}

suite('nemesis: one fault at a time under kernel clients (issue 12)', PLAIN_SCENARIOS, {}, skip);
suite(
  'nemesis with the etcd arbiter: the nodes cut apart, and faults whose take-over it decides',
  SCENARIOS.filter((s) => WITH_ARBITER.includes(s.name)),
  { arbiter: true },
  skip ?? (existsSync(ETCD_BIN) ? false : `needs ${ETCD_BIN} (Debian package etcd-server)`),
);
// The same faults against a `takeover relay` pair in front of the same apps on the kernel's TCP
// (issue 13): both legs judged. One run each (NEMESIS_RELAY_RUNS to change) to bound the suite.
suite(
  'nemesis against a relay pair: one fault at a time, the client and the server side judged (issue 13)',
  PLAIN_SCENARIOS,
  { relay: true, runs: Number(process.env.NEMESIS_RELAY_RUNS ?? 1) },
  skip,
);
