/**
 * CLOCK_MONOTONIC from performance.now(). Node's performance.now() is uv_hrtime()
 * (CLOCK_MONOTONIC) minus the thread's time origin, and process.hrtime.bigint() is uv_hrtime()
 * itself, so the offset between them is that origin: per thread (a worker has its own). Measured
 * as the tightest of several hrtime / performance.now / hrtime brackets: error well under a
 * microsecond.
 */
export function performanceToMonotonicNs(): bigint {
  let best = Number.POSITIVE_INFINITY;
  let offset = 0n;
  for (let k = 0; k < 64; k++) {
    const a = process.hrtime.bigint();
    const p = performance.now();
    const b = process.hrtime.bigint();
    const gap = Number(b - a);
    if (gap < best) {
      best = gap;
      offset = a + (b - a) / 2n - BigInt(Math.round(p * 1e6));
    }
  }
  return offset;
}

/** Microseconds to add to performance.now() * 1000 for CLOCK_MONOTONIC (this thread). */
export function monotonicOffsetUs(): number {
  return Number(performanceToMonotonicNs() / 1000n);
}
