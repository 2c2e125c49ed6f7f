/**
 * `npm run bench -- ha-sim [--seeds N] [--from S] [--json]`: the simulator take-over property
 * (test/ha/takeover-seeds-*.test.ts run 1,000 seeds) over many more seeds: each seed a client and an
 * active/standby pair with 1-200 connections of echo, download and request/response traffic, loss,
 * reordering and duplication, the active crashed at a random instant; every stream byte-exact, no
 * RST, no error, no frame from a non-active node. Prints failures (with replay commands) and
 * seeds per second.
 */
import { check, randomScenario } from '../test/support/ha-scenario.ts';
import { type BenchOptions, benchFlags } from './harness.ts';

export async function run(o: BenchOptions): Promise<number> {
  const { seeds, from } = benchFlags(o, { seeds: { default: 10_000, min: 0 }, from: { default: 1, min: 0 } });
  const t0 = performance.now();
  const failures: { seed: number; error: string }[] = [];
  let connections = 0;
  let live = 0;
  let restored = 0;
  for (let seed = from; seed < from + seeds; seed++) {
    const s = randomScenario(seed);
    try {
      const r = check(s);
      connections += r.conns.length;
      const n = r.b.ha.takeovers[0]?.connections ?? 0;
      restored += n;
      if (n > 0) live++;
    } catch (e) {
      failures.push({ seed, error: (e as Error).message.split('\n')[0] });
      if (!o.json)
        console.error(
          `seed ${seed} failed (replay: SEED=${seed} npm test -- test/ha/takeover-seeds-1.test.ts): ${(e as Error).message.split('\n')[0]}`,
        );
    }
    if (!o.json && (seed - from + 1) % 1000 === 0) console.error(`${seed - from + 1}/${seeds} seeds …`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const result = {
    seeds,
    failures: failures.length,
    connections,
    takeoversWithLiveConnections: live,
    connectionsRestored: restored,
    seconds,
    seedsPerSecond: seeds / seconds,
    failed: failures.slice(0, 20),
  };
  if (o.json) console.log(JSON.stringify(result));
  else
    console.log(
      `${seeds} seeds, ${failures.length} failures; ${connections} client connections, ${live} take-overs with live connections (${restored} connections restored); ${seconds.toFixed(1)} s (${result.seedsPerSecond.toFixed(1)} seeds/s)`,
    );
  return failures.length === 0 ? 0 : 1;
}
