/**
 * A wall-clock step for one node process (the clock-step nemesis), loaded with `--import` after
 * tsx. CLOCK_REALTIME is one clock for the whole machine (time namespaces offset only the
 * monotonic and boot clocks), and stepping it would step every other test on the machine: this
 * steps what the process's JavaScript sees instead, `Date.now()` and `new Date()`.
 *
 * With NEMESIS_WALLCLOCK_FILE set, on SIGUSR2 the process reads the offset (ms, a number) from
 * that file and from then on its wall clock runs that far from the machine's; it logs the step
 * on stderr. Without the variable it does nothing.
 */
import { readFileSync } from 'node:fs';

const file = process.env.NEMESIS_WALLCLOCK_FILE;
if (file) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  let offset = 0;
  const Stepped = function (this: unknown, ...args: unknown[]) {
    if (!new.target) return new RealDate(realNow() + offset).toString();
    return Reflect.construct(RealDate, args.length === 0 ? [realNow() + offset] : args, new.target);
  } as unknown as DateConstructor;
  Object.setPrototypeOf(Stepped, RealDate);
  Object.defineProperty(Stepped, 'prototype', { value: RealDate.prototype });
  Stepped.now = () => realNow() + offset;
  globalThis.Date = Stepped;
  process.on('SIGUSR2', () => {
    const next = Number(readFileSync(file, 'utf8'));
    if (!Number.isFinite(next)) return;
    const before = new Stepped().toISOString();
    offset = next;
    process.stderr.write(
      `${before} nemesis: wall clock stepped to ${new Stepped().toISOString()} (${next} ms off the machine's)\n`,
    );
  });
}
