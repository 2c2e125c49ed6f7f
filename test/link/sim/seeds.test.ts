/** Tests of test/support/seeds.ts, the seeded-property helper (test/support/ holds no tests of its own). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Network, Recorder } from '../../../src/link/sim/index.ts';
import { forEachSeed, forEachSeedAsync, seedsToRun } from '../../support/seeds.ts';

const THIS_FILE = 'test/link/sim/seeds.test.ts';

/** A property that fails for some seeds only, decided by a seeded lossy run. */
function lossyProperty(seed: number): void {
  const net = new Network({ seed });
  const a = net.attach(new Recorder(), 'a');
  const b = net.attach(new Recorder(), 'b');
  net.connect(a, 0, b, 0, { loss: 0.5 });
  for (let i = 0; i < 8; i++) a.node.send(0, new Uint8Array([i]));
  net.runUntilIdle();
  assert.ok(b.node.received.length >= 3, `only ${b.node.received.length} of 8 frames arrived`);
}

function errorOf(f: () => void): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  assert.fail('expected a failure');
}

describe('forEachSeed', () => {
  test('runs seeds 1..count in order; SEEDS overrides the count; SEED runs only that seed', () => {
    const seen: number[] = [];
    forEachSeed(5, (s) => void seen.push(s), { env: {} });
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.deepEqual(seedsToRun(5, { SEEDS: '2' }), [1, 2]);
    assert.deepEqual(seedsToRun(5, { SEED: '42', SEEDS: '2' }), [42]);
    assert.deepEqual(seedsToRun(5, { SEED: '' }), [1, 2, 3, 4, 5]);
    assert.throws(() => seedsToRun(5, { SEED: 'x' }), /SEED must be a non-negative integer/);
  });

  test('a failing property reports its seed and the replay command, and keeps the cause', () => {
    const cause = new Error('boom');
    const seen: number[] = [];
    const err = errorOf(() =>
      forEachSeed(
        10,
        (s) => {
          seen.push(s);
          if (s === 3) throw cause;
        },
        { env: {}, file: import.meta.url },
      ),
    );
    assert.equal(err.message, `seed 3 failed (replay: SEED=3 npm test -- ${THIS_FILE}): boom`);
    assert.equal(err.cause, cause);
    assert.deepEqual(seen, [1, 2, 3]);
  });

  test('the replay reproduces the same failure', () => {
    const first = errorOf(() => forEachSeed(100, lossyProperty, { env: {}, file: 'x.test.ts' }));
    const m = /^seed (\d+) failed \(replay: SEED=(\d+) npm test -- x\.test\.ts\): /.exec(first.message);
    assert.ok(m, first.message);
    assert.equal(m[1], m[2]);
    const replay = errorOf(() => forEachSeed(100, lossyProperty, { env: { SEED: m[1] }, file: 'x.test.ts' }));
    assert.equal(replay.message, first.message);
    assert.equal((replay.cause as Error).message, (first.cause as Error).message);
    // Seeds before the failing one pass on their own.
    forEachSeed(Number(m[1]) - 1, lossyProperty, { env: {} });
  });

  test('default file is the running test file; SEED is read from the real environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'takeover-seeds-'));
    try {
      const seeds = fileURLToPath(new URL('../../support/seeds.ts', import.meta.url));
      const script = join(dir, 'prop.ts');
      writeFileSync(
        script,
        `import { forEachSeed } from ${JSON.stringify(seeds)};\n` +
          'const seen: number[] = [];\n' +
          'try { forEachSeed(9, (s) => { seen.push(s); if (s % 4 === 0) throw new Error("odd"); }); }\n' +
          'catch (e) { console.log(JSON.stringify({ seen, message: (e as Error).message })); }\n',
      );
      const run = (env: Record<string, string>) => {
        const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
          encoding: 'utf8',
          env: { ...process.env, SEED: '', SEEDS: '', ...env },
          timeout: 30_000,
        });
        assert.equal(r.status, 0, r.stderr);
        return JSON.parse(r.stdout) as { seen: number[]; message: string };
      };
      const all = run({});
      assert.deepEqual(all.seen, [1, 2, 3, 4]);
      assert.ok(all.message.startsWith('seed 4 failed (replay: SEED=4 npm test -- '), all.message);
      assert.ok(all.message.endsWith('prop.ts): odd'), all.message);
      const replay = run({ SEED: '8' });
      assert.deepEqual(replay.seen, [8]);
      assert.ok(replay.message.startsWith('seed 8 failed (replay: SEED=8 npm test -- '));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('forEachSeedAsync reports the seed the same way', async () => {
    await assert.rejects(
      forEachSeedAsync(
        4,
        async (s) => {
          await Promise.resolve();
          if (s === 2) throw new Error('later');
        },
        { env: {}, file: 'a.test.ts' },
      ),
      { message: 'seed 2 failed (replay: SEED=2 npm test -- a.test.ts): later' },
    );
  });
});
