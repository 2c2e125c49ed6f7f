/**
 * Take-over on the simulator, random scenarios, part 1 of 4 (test/support/ha-scenario.ts
 * `randomTakeovers`: a crash at any instant, loss, v4/v6; every stream byte-exact, no RST, one
 * sender for the VIP). The four parts run in parallel; `SEED=n` replays one seed.
 */
import { test } from 'node:test';
import { randomTakeovers } from '../support/ha-scenario.ts';

test('random take-over scenarios, part 1 of 4: crash at any instant (handshake, mid-stream, mid-close), loss, v4/v6', () => {
  randomTakeovers(1, import.meta.url);
});
