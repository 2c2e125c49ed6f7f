/**
 * Two engines on the simulated network, 1,000 seeds: random-sized streams both ways, random
 * option sets and congestion control on each side, links with loss up to 10 %, duplication,
 * reordering, bit corruption, queue limits and bandwidth limits. Both streams must arrive
 * byte-exact, both sides must close cleanly (CLOSED, no error), and no RST may be sent.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { forEachSeed } from '../support/seeds.ts';
import { runScenario, scenario } from '../support/tcp-scenario.ts';

describe('two engines over a hostile simulated link', () => {
  test('1,000 seeds: both streams byte-exact, clean close, no RST', () => {
    let lossy = 0;
    forEachSeed(1000, (seed) => {
      const s = scenario(seed);
      if ((s.link.loss ?? 0) > 0.05) lossy++;
      runScenario(seed, s);
    });
    // The generator must really produce hard cases.
    if (!process.env.SEED) assert.ok(lossy > 200, `only ${lossy} scenarios with loss above 5 %`);
  });
});
