import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Network, type NodeHandle, Recorder, type SimNode } from '../../../src/link/sim/index.ts';

/** A node with a set of deadlines: pollAt() is the earliest; poll() records and removes due ones. */
class Timers implements SimNode {
  deadlines: number[] = [];
  fired: number[] = [];
  polls: number[] = [];
  asked = 0;
  /** What to do to the deadlines when a frame arrives. */
  onFrame: ((now: number) => void) | undefined = undefined;
  handle!: NodeHandle;

  attach(h: NodeHandle): void {
    this.handle = h;
  }

  receive(_port: number, _frame: Uint8Array, now: number): void {
    this.onFrame?.(now);
  }

  pollAt(): number | undefined {
    this.asked++;
    let min: number | undefined;
    for (const d of this.deadlines) if (min === undefined || d < min) min = d;
    return min;
  }

  poll(now: number): void {
    this.polls.push(now);
    const due = this.deadlines.filter((d) => d <= now);
    this.fired.push(...due);
    this.deadlines = this.deadlines.filter((d) => d > now);
  }
}

describe('pollAt-driven timers', () => {
  test('poll runs at exactly the instants asked for, never before', () => {
    const net = new Network();
    const t = new Timers();
    t.deadlines = [7000, 1000, 2500.5];
    net.attach(t, 't');
    net.runUntilIdle();
    assert.deepEqual(t.polls, [1000, 2500.5, 7000]);
    assert.equal(net.now, 7000);
  });

  test('an earlier deadline set while handling a frame preempts the armed one (stale event ignored)', () => {
    const net = new Network();
    const t = new Timers();
    t.deadlines = [10_000];
    const h = net.attach(t, 't');
    const src = net.attach(new Recorder(), 'src');
    net.connect(src, 0, h, 0, { latencyUs: 100 });
    t.onFrame = (now) => {
      t.deadlines = [now + 400];
    };
    src.node.send(0, new Uint8Array(20));
    net.runUntilIdle();
    assert.deepEqual(t.polls, [500]);
    assert.deepEqual(t.fired, [500]);
  });

  test('a later deadline keeps one armed event, which re-arms without polling early', () => {
    const net = new Network();
    const t = new Timers();
    t.deadlines = [1000];
    const h = net.attach(t, 't');
    const src = net.attach(new Recorder(), 'src');
    net.connect(src, 0, h, 0, { latencyUs: 100 });
    // Like a retransmission timer pushed back by every ACK.
    t.onFrame = (now) => {
      t.deadlines = [now + 1000];
    };
    for (let i = 0; i < 10; i++) net.at(i * 300, () => src.node.send(0, new Uint8Array(20)));
    net.runUntilIdle();
    assert.deepEqual(t.polls, [2800 + 1000]);
    // Events: 10 calls + 10 deliveries + the armed poll events (re-armed at most once per fire).
    assert.ok(net.eventsProcessed < 40, `${net.eventsProcessed} events`);
  });

  test('wake() after changing a node from outside; at() callbacks re-ask pollAt by themselves', () => {
    const net = new Network();
    const t = new Timers();
    const h = net.attach(t, 't');
    net.run({ until: 100 });
    t.deadlines.push(150);
    h.wake();
    net.at(200, () => t.deadlines.push(300));
    net.runUntilIdle();
    assert.deepEqual(t.polls, [150, 300]);
  });

  test('a deadline already past is polled at once, at the current time', () => {
    const net = new Network();
    const t = new Timers();
    const h = net.attach(t, 't');
    net.run({ until: 1000 });
    t.deadlines.push(10);
    h.wake();
    net.runUntilIdle();
    assert.deepEqual(t.polls, [1000]);
  });

  test('a crashed node is not polled; restart re-arms', () => {
    const net = new Network();
    const t = new Timers();
    t.deadlines = [100, 200];
    const h = net.attach(t, 't');
    net.at(150, () => h.crash());
    net.runUntilIdle();
    assert.deepEqual(t.polls, [100]);
    const fresh = new Timers();
    fresh.deadlines = [500];
    h.restart(fresh);
    assert.equal(fresh.handle, h);
    net.runUntilIdle();
    assert.deepEqual(fresh.polls, [500]);
    assert.deepEqual(t.polls, [100]);
  });
});

describe('run', () => {
  test('equal-time events run in insertion order; earlier times first', () => {
    const net = new Network();
    const order: string[] = [];
    net.at(100, () => order.push('b1'));
    net.at(50, () => order.push('a'));
    net.at(100, () => {
      order.push('b2');
      net.at(100, () => order.push('b4'));
      net.after(0, () => order.push('b5'));
    });
    net.at(100, () => order.push('b3'));
    net.at(-5, (now) => order.push(`past@${now}`));
    net.runUntilIdle();
    assert.deepEqual(order, ['past@0', 'a', 'b1', 'b2', 'b3', 'b4', 'b5']);
  });

  test('run({ until }) stops before later events and moves the clock to until', () => {
    const net = new Network();
    const seen: number[] = [];
    net.at(10, (now) => seen.push(now));
    net.at(20, (now) => seen.push(now));
    net.at(30, (now) => seen.push(now));
    const r = net.run({ until: 20 });
    assert.deepEqual(r, { reason: 'until', events: 2, now: 20 });
    assert.deepEqual(seen, [10, 20]);
    const r2 = net.run({ until: 1000 });
    assert.deepEqual(r2, { reason: 'idle', events: 1, now: 1000 });
    assert.equal(net.now, 1000);
  });

  test('maxEvents bounds a run; runUntilIdle throws when it cannot go idle', () => {
    const net = new Network();
    class Ticker implements SimNode {
      next = 0;
      receive(): void {}
      pollAt(): number {
        return this.next;
      }
      poll(now: number): void {
        this.next = now + 10;
      }
    }
    net.attach(new Ticker(), 'tick');
    const r = net.run({ maxEvents: 50 });
    assert.equal(r.reason, 'maxEvents');
    assert.equal(r.events, 50);
    assert.equal(net.now, 490);
    assert.throws(() => net.runUntilIdle(1000), /did not go idle within 1000 events/);
  });

  test('run from inside the simulation is refused', () => {
    const net = new Network();
    let err: unknown;
    net.at(1, () => {
      try {
        net.run();
      } catch (e) {
        err = e;
      }
    });
    net.runUntilIdle();
    assert.match(String(err), /inside the simulation/);
  });
});

describe('wiring', () => {
  test('port handles, unconnected ports, and configuration errors', () => {
    const net = new Network();
    const a = net.attach(new Recorder(), 'a');
    const b = net.attach(new Recorder(), 'b');
    net.connect(a, 1, b, 0, { latencyUs: 5 });
    assert.equal(a.port(1).connected, true);
    assert.equal(a.port(0).connected, false);
    assert.equal(a.port(1), a.port(1));
    a.port(1).send(new Uint8Array([1, 2, 3]));
    a.port(0).send(new Uint8Array([4]));
    net.runUntilIdle();
    assert.deepEqual(
      b.node.received.map((r) => [r.port, [...r.frame], r.at]),
      [[0, [1, 2, 3], 5]],
    );
    assert.equal(a.txUnconnected, 1);
    assert.equal(a.portCount, 2);
    assert.throws(() => net.attach(new Recorder(), 'a'), /already attached/);
    assert.throws(() => net.connect(a, 1, b, 3), /port 1 of node a already has a link/);
    assert.throws(() => net.connect(a, 2, b, 1, { name: 'a.1-b.0' }), /already exists/);
    assert.throws(() => net.connect(a, -1, b, 1), /integers >= 0/);
    const other = new Network();
    assert.throws(() => net.connect(a, 5, other.attach(new Recorder(), 'x'), 0), /another network/);
    assert.throws(() => new Recorder().send(0, new Uint8Array(1)), /before the recorder was attached/);
  });

  test('random streams: per node and per label, independent of attach order', () => {
    const one = new Network({ seed: 9 });
    const x1 = one.attach(new Recorder(), 'x');
    const two = new Network({ seed: 9 });
    two.attach(new Recorder(), 'y');
    const x2 = two.attach(new Recorder(), 'x');
    assert.equal(x1.rng.nextU32(), x2.rng.nextU32());
    assert.equal(one.rngFor('isn').nextU32(), two.rngFor('isn').nextU32());
    assert.notEqual(
      new Network({ seed: 10 }).rngFor('isn').nextU32(),
      new Network({ seed: 9 }).rngFor('isn').nextU32(),
    );
  });

  test("adding a link does not perturb another link's faults", () => {
    const lossPattern = (extra: boolean) => {
      const net = new Network({ seed: 5 });
      const a = net.attach(new Recorder(), 'a');
      const b = net.attach(new Recorder(), 'b');
      if (extra) {
        const c = net.attach(new Recorder(), 'c');
        const l = net.connect(a, 1, c, 0, { loss: 0.5 });
        for (let i = 0; i < 100; i++) a.node.send(1, new Uint8Array([i]));
        assert.ok(l.ab.stats.dropped.loss > 0);
      }
      net.connect(a, 0, b, 0, { name: 'main', loss: 0.5 });
      for (let i = 0; i < 200; i++) a.node.send(0, new Uint8Array([i]));
      net.runUntilIdle();
      return b.node.received.map((r) => r.frame[0]);
    };
    assert.deepEqual(lossPattern(true), lossPattern(false));
  });
});
