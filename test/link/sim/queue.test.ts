import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EV_CALL, EventQueue } from '../../../src/link/sim/queue.ts';
import { Rng } from '../../../src/link/sim/rng.ts';

test('events pop in (time, insertion) order, for random interleavings of push and pop', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rng = new Rng(seed);
    const q = new EventQueue();
    const model: { time: number; id: number }[] = [];
    let id = 0;
    for (let step = 0; step < 2000; step++) {
      if (model.length === 0 || rng.chance(0.6)) {
        // Few distinct times, so ties are common.
        const time = rng.int(0, 30);
        q.push(time, EV_CALL, null, null, id);
        model.push({ time, id });
        id++;
      } else {
        let best = 0;
        for (let i = 1; i < model.length; i++) {
          const m = model[i];
          const b = model[best];
          if (m.time < b.time || (m.time === b.time && m.id < b.id)) best = i;
        }
        const want = model.splice(best, 1)[0];
        const ev = q.pop()!;
        assert.equal(ev.time, want.time);
        assert.equal(ev.n, want.id, `seed ${seed} step ${step}`);
        q.release(ev);
      }
      assert.equal(q.size, model.length);
    }
  }
});

test('peekTime, empty pop, and recycled records carry fresh contents', () => {
  const q = new EventQueue();
  assert.equal(q.pop(), undefined);
  assert.equal(q.peekTime(), undefined);
  q.push(5, EV_CALL, 'a', null, 1);
  const ev = q.pop()!;
  q.release(ev);
  assert.equal(ev.target, null);
  q.push(3, EV_CALL, 'b', null, 2);
  q.push(1, EV_CALL, 'c', null, 3);
  assert.equal(q.peekTime(), 1);
  const first = q.pop()!;
  assert.equal(first.target, 'c');
  assert.equal(q.pop()!.target, 'b');
});
