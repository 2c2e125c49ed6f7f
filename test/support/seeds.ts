/**
 * Seeded properties: run a check over many seeds; when one fails, say which and how to replay it.
 *
 *   forEachSeed(200, (seed) => { const net = new Network({ seed }); ... });
 *
 * Environment: `SEED=n` runs only seed n (the replay), `SEEDS=n` overrides the count.
 * A failure rethrows `seed <n> failed (replay: SEED=<n> npm test -- <file>): <cause message>`
 * with the original error as `cause`.
 */
import { isAbsolute, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface SeedOptions {
  /** The test file named in the replay hint: a path or `import.meta.url`. Default: the running file. */
  file?: string;
  /** Environment to read SEED/SEEDS from. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** The first seed (default 1): a property split over files runs `from`..`from + count - 1` in each. */
  from?: number;
}

function envInt(env: Record<string, string | undefined>, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}.`);
  return n;
}

function displayFile(file: string | undefined): string {
  let f = file ?? process.argv[1] ?? '<test file>';
  if (f.startsWith('file:')) f = fileURLToPath(f);
  return isAbsolute(f) ? relative(process.cwd(), f) : f;
}

/** The seeds a run covers: [SEED] if set, else from..from + (SEEDS ?? count) - 1. */
export function seedsToRun(
  count: number,
  env: Record<string, string | undefined> = process.env,
  from = 1,
): number[] {
  const only = envInt(env, 'SEED');
  if (only !== undefined) return [only];
  const n = envInt(env, 'SEEDS') ?? count;
  const out: number[] = [];
  for (let s = from; s < from + n; s++) out.push(s);
  return out;
}

function failure(seed: number, file: string, cause: unknown): Error {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new Error(`seed ${seed} failed (replay: SEED=${seed} npm test -- ${file}): ${why}`, { cause });
}

/** Runs `fn` for each seed (see the module comment); stops at the first failing seed. */
export function forEachSeed(count: number, fn: (seed: number) => void, opts: SeedOptions = {}): void {
  for (const seed of seedsToRun(count, opts.env, opts.from)) {
    try {
      fn(seed);
    } catch (e) {
      throw failure(seed, displayFile(opts.file), e);
    }
  }
}

/** `forEachSeed` for async properties (seeds run one after another). */
export async function forEachSeedAsync(
  count: number,
  fn: (seed: number) => Promise<void>,
  opts: SeedOptions = {},
): Promise<void> {
  for (const seed of seedsToRun(count, opts.env, opts.from)) {
    try {
      await fn(seed);
    } catch (e) {
      throw failure(seed, displayFile(opts.file), e);
    }
  }
}
