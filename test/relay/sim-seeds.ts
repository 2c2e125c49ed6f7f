/**
 * The relay pair on the simulator over many seeds (issue 13: "a relay pair with a simulated
 * backend server over ≥ 1,000 seeds: crash anywhere, loss, reordering; both legs byte-exact, no
 * RST on either side"), split over several test files so that the runner spreads them over the
 * cores: file `part` of `parts` runs the seeds s with s % parts === part.
 *
 * Environment: SEEDS=n runs seeds 1..n in all (default 1000), SEED=n only seed n (the replay).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomRelayScenario, relayScenarioFailures, runRelayScenario } from '../../src/sim/relay-pair.ts';
import { forEachSeedAsync } from '../support/seeds.ts';

export function relaySeeds(part: number, parts: number, file: string): void {
  test(`relay pair, seeds ≡ ${part} mod ${parts}: crash anywhere (twice, restarted), loss, reordering, v4/v6 clients: both legs exact, no RST`, async () => {
    let runs = 0;
    let live = 0;
    let paired = 0;
    let total = 0;
    await forEachSeedAsync(
      Number(process.env.SEEDS ?? 1000),
      async (seed) => {
        total++;
        if (seed % parts !== part && process.env.SEED === undefined) return;
        const s = randomRelayScenario(seed);
        const r = await runRelayScenario(s);
        const failures = relayScenarioFailures(s, r);
        const logs = r.nodes
          .flatMap((n) => n.logs)
          .sort((x, y) => Number.parseFloat(x) - Number.parseFloat(y))
          .slice(-20)
          .join('\n');
        assert.deepEqual(failures, [], `${JSON.stringify(s)}\n${logs}`);
        runs++;
        if (r.nodes.some((n) => n.ha.takeovers.some((t) => t.connections > 0))) live++;
        paired += r.nodes.reduce((n, x) => n + x.relay.status().restored.paired, 0);
      },
      { file },
    );
    // The crash instants must hit live sessions often, or the property says little.
    if (runs >= 50) {
      assert.ok(live >= runs * 0.5, `only ${live} of ${runs} runs took over live connections`);
      assert.ok(paired >= runs, `only ${paired} sessions paired again in ${runs} runs`);
    }
    assert.ok(total > 0);
  });
}
