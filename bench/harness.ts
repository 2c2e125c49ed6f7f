/**
 * Small shared pieces for benchmarks: timing loops, tables, flags, and the --json switch.
 * Each benchmark prints a human table, or with --json exactly one JSON object on stdout.
 */
import { parseArgs } from 'node:util';
import { flagError } from '../src/cli/flags.ts';

export interface BenchOptions {
  json: boolean;
  /** Remaining command-line words after the benchmark's name. */
  args: string[];
}

/** A wrong flag: bench/main.ts prints it with the benchmark's usage line and exits 2. */
export class UsageError extends Error {}

/** A numeric flag: its default and the least value it takes (integers unless `real`). */
export interface NumberFlag {
  default: number;
  min?: number;
  real?: boolean;
}

/**
 * The benchmark's flags, on node:util parseArgs (strict: an unknown or misspelled flag is an
 * error, not silently ignored): `numbers` each `--name N`, `switches` each `--name` alone,
 * `strings` each `--name text`. Throws UsageError naming the flag and what it takes.
 */
export function benchFlags<N extends string, B extends string = never, S extends string = never>(
  o: BenchOptions,
  numbers: Record<N, NumberFlag>,
  switches: readonly B[] = [],
  strings: readonly S[] = [],
): { [k in N]: number } & { [k in B]: boolean } & { [k in S]: string | undefined } {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const k of [...Object.keys(numbers), ...strings]) options[k] = { type: 'string' };
  for (const k of switches) options[k] = { type: 'boolean' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: o.args, options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError(flagError(e));
  }
  const out: Record<string, number | boolean | string | undefined> = {};
  for (const [k, spec] of Object.entries(numbers) as [string, NumberFlag][]) {
    const text = values[k];
    if (text === undefined) {
      out[k] = spec.default;
      continue;
    }
    const v = Number(text);
    const min = spec.min ?? 1;
    if (text === '' || !Number.isFinite(v) || v < min || (!spec.real && !Number.isInteger(v)))
      throw new UsageError(
        `--${k} takes ${spec.real ? 'a number' : 'a whole number'} of at least ${min}, got ${JSON.stringify(text)}`,
      );
    out[k] = v;
  }
  for (const k of switches) out[k] = values[k] === true;
  for (const k of strings) out[k] = values[k] as string | undefined;
  return out as { [k in N]: number } & { [k in B]: boolean } & { [k in S]: string | undefined };
}

export interface Rate {
  /** Operations per second. */
  perSecond: number;
  ops: number;
  seconds: number;
}

/**
 * Runs `fn(n)` (which performs n operations) in growing batches until `minMs` of wall time has
 * been spent after a warm-up, and returns the best batch rate (the least disturbed by the other
 * tenant of this 2-core machine, GC pauses included in every batch).
 */
export function measureRate(fn: (n: number) => void, minMs = 1000): Rate {
  let n = 1000;
  // Warm-up: let the JIT settle on the hot path.
  const warmEnd = performance.now() + Math.min(300, minMs / 3);
  while (performance.now() < warmEnd) fn(n);
  let best = 0;
  let totalOps = 0;
  let totalMs = 0;
  while (totalMs < minMs) {
    const t0 = performance.now();
    fn(n);
    const dt = performance.now() - t0;
    totalOps += n;
    totalMs += dt;
    if (dt < 50) n *= 2;
    else best = Math.max(best, (n / dt) * 1000);
  }
  if (best === 0) best = (totalOps / totalMs) * 1000;
  return { perSecond: best, ops: totalOps, seconds: totalMs / 1000 };
}

export function formatRate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M/s`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k/s`;
  return `${x.toFixed(0)} /s`;
}

/** Prints rows as an aligned text table. */
export function printTable(header: string[], rows: (string | number)[][]): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  for (const [k, r] of cells.entries()) {
    console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
    if (k === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}
