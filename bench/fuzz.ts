/**
 * `npm run bench -- fuzz [--cases N] [--seed S] [--json]`: millions of mutated and random inputs
 * into every wire parser (see test/support/fuzz.ts for what a case checks). Exits non-zero and
 * prints the failing input on the first failure. The baseline beside the figure is the same
 * number of cases with the parsers replaced by a no-op, i.e. the cost of generating inputs.
 */
import { toHex } from '../src/wire/bytes.ts';
import { WireError } from '../src/wire/error.ts';
import { FuzzFailure, fuzzTargets, runFuzz } from '../test/support/fuzz.ts';
import { type BenchOptions, benchFlags, formatRate, printTable } from './harness.ts';

export async function run(o: BenchOptions): Promise<number> {
  const { cases, seed } = benchFlags(o, {
    cases: { default: 2_000_000, min: 0 },
    seed: { default: Date.now() % 1_000_000_007, min: 0 },
  });
  const targets = fuzzTargets();
  let stats: ReturnType<typeof runFuzz>;
  try {
    stats = runFuzz({ seed, cases, guardEvery: 16, targets });
  } catch (e) {
    if (e instanceof FuzzFailure) {
      console.error(
        `FAIL ${e.message}\n  target ${e.target}, seed ${e.seed}, case ${e.caseNo}\n  input ${toHex(e.input)}`,
      );
      if (o.json)
        console.log(
          JSON.stringify({ bench: 'fuzz', seed, failed: true, target: e.target, message: e.message }),
        );
      return 1;
    }
    throw e;
  }
  const refused = new WireError('bench', 'unsupported', 'no-op parser');
  const noop = targets.map((t) => ({ ...t, parse: () => refused }));
  const base = runFuzz({ seed, cases: Math.min(cases, 500_000), guardEvery: 1 << 30, targets: noop });
  const rate = stats.cases / stats.seconds;
  const genRate = base.cases / base.seconds;
  if (o.json) {
    console.log(
      JSON.stringify({
        bench: 'fuzz',
        seed,
        failed: false,
        cases: stats.cases,
        accepted: stats.accepted,
        rejected: stats.rejected,
        guarded: stats.guarded,
        casesPerSec: Math.round(rate),
        generateOnlyPerSec: Math.round(genRate),
        maxCaseMs: stats.maxCaseMs,
        byTarget: stats.byTarget,
      }),
    );
  } else {
    printTable(
      ['parser', 'cases', 'accepted'],
      Object.entries(stats.byTarget).map(([k, v]) => [k, v.cases, v.accepted]),
    );
    console.log(
      `\n${stats.cases} cases (seed ${seed}), ${stats.guarded} with out-of-range guard, 0 failures; ` +
        `${formatRate(rate)} (input generation alone: ${formatRate(genRate)}); slowest case ${stats.maxCaseMs.toFixed(2)} ms`,
    );
  }
  return 0;
}
