/**
 * Small shared pieces for benchmarks: timing loops, tables, and the --json switch.
 * Each benchmark prints a human table, or with --json exactly one JSON object on stdout.
 */

export interface BenchOptions {
  json: boolean;
  /** Remaining command-line words after the benchmark's name. */
  args: string[];
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
