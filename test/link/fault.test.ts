/**
 * The fault injector around an in-memory device: what each fault does to a frame, the rates over
 * many frames, the order delays impose, and that close() leaves no timer behind.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import type { LinkDevice } from '../../src/link/device.ts';
import { FaultInjector, type FaultInjectorOptions, type RandomSource } from '../../src/link/fault.ts';
import { Rng } from '../../src/link/sim/rng.ts';

/** A LinkDevice in memory: `sent` is what reached the wire, `inject` plays frames arriving. */
class MemoryDevice implements LinkDevice {
  readonly mtu = 1500;
  readonly sent: Uint8Array[] = [];
  flushes = 0;
  closed = false;
  private handler: ((frames: Uint8Array[]) => void) | undefined;
  send(frame: Uint8Array): void {
    this.sent.push(frame.slice());
  }
  flush(): void {
    this.flushes++;
  }
  onReceive(handler: (frames: Uint8Array[]) => void): void {
    this.handler = handler;
  }
  inject(...frames: Uint8Array[]): void {
    this.handler?.(frames);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Answers the given numbers in turn, then fails: a test states every draw it expects. */
function draws(...values: number[]): RandomSource & { left(): number } {
  let i = 0;
  return {
    next() {
      if (i >= values.length) throw new Error(`unexpected draw #${i + 1} (only ${values.length} scripted)`);
      return values[i++];
    },
    left: () => values.length - i,
  };
}

const frame = (n: number, len = 60) => new Uint8Array(len).fill(n);

function setup(options: FaultInjectorOptions) {
  const dev = new MemoryDevice();
  const fi = new FaultInjector(dev, options);
  const received: Uint8Array[][] = [];
  fi.onReceive((batch) => received.push(batch));
  return { dev, fi, received };
}

/** Which bit positions differ between two equal-length frames. */
function bitsDiffering(a: Uint8Array, b: Uint8Array): number[] {
  assert.equal(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++)
    for (let bit = 0; bit < 8; bit++) if (((a[i] ^ b[i]) >> (7 - bit)) & 1) out.push(i * 8 + bit);
  return out;
}

describe('without faults', () => {
  it('passes frames both ways at once, in order, copying what is sent', () => {
    const { dev, fi, received } = setup({ rng: draws() });
    assert.equal(fi.mtu, 1500);
    const a = frame(1);
    fi.send(a);
    a.fill(9); // the caller may reuse its buffer at once
    fi.send(frame(2));
    fi.flush();
    assert.deepEqual(dev.sent, [frame(1), frame(2)]);
    assert.equal(dev.flushes, 1);
    dev.inject(frame(3), frame(4));
    assert.deepEqual(received, [[frame(3), frame(4)]]);
    assert.equal(fi.pending, 0);
    assert.deepEqual(fi.stats.tx, { ...fi.stats.tx, frames: 2, delivered: 2, lost: 0 });
    assert.deepEqual(fi.stats.rx, { ...fi.stats.rx, frames: 2, delivered: 2, lost: 0 });
  });

  it('draws no random number for a fault that is off', () => {
    const rng = draws();
    const { dev, fi } = setup({ rng, loss: 0, duplicate: 0, reorder: 0, corrupt: 0 });
    fi.send(frame(1));
    dev.inject(frame(2));
    assert.equal(fi.stats.tx.delivered + fi.stats.rx.delivered, 2);
  });
});

describe('decisions, draw by draw', () => {
  it('loss: a draw below the probability drops the frame', () => {
    const { dev, fi } = setup({ rng: draws(0.09, 0.1, 0.5), loss: 0.1 });
    fi.send(frame(1));
    fi.send(frame(2));
    fi.send(frame(3));
    assert.deepEqual(dev.sent, [frame(2), frame(3)]);
    assert.equal(fi.stats.tx.lost, 1);
  });

  it('duplication: a draw below the probability sends the frame twice', () => {
    const { dev, fi } = setup({ rng: draws(0.1, 0.6), duplicate: 0.5 });
    fi.send(frame(1));
    fi.send(frame(2));
    assert.deepEqual(dev.sent, [frame(1), frame(1), frame(2)]);
    assert.equal(fi.stats.tx.duplicated, 1);
  });

  it('duplication on receive: both copies in the batch, distinct buffers', () => {
    const { dev, fi, received } = setup({ rng: draws(0.1, 0.9), duplicate: 0.5 });
    dev.inject(frame(2), frame(3));
    assert.equal(received.length, 1);
    const [batch] = received;
    assert.deepEqual(batch, [frame(2), frame(2), frame(3)]);
    assert.notEqual(batch[0].buffer, batch[1].buffer);
    assert.equal(fi.stats.rx.duplicated, 1);
    assert.equal(fi.stats.rx.delivered, 3);
  });

  it('corruption: exactly one bit flipped, at the drawn position, never in the caller’s buffer', () => {
    // 60-byte frame = 480 bits; draw 0.5 -> bit 240 (byte 30, most significant bit).
    const { dev, fi } = setup({ rng: draws(0.0, 0.5, 0.0, 0.999999), corrupt: 0.01 });
    const original = frame(0x55);
    fi.send(original);
    fi.send(original);
    assert.deepEqual(original, frame(0x55));
    assert.deepEqual(bitsDiffering(original, dev.sent[0]), [240]);
    assert.equal(dev.sent[0][30], 0x55 ^ 0x80);
    assert.deepEqual(bitsDiffering(original, dev.sent[1]), [479]);
    assert.equal(fi.stats.tx.corrupted, 2);
  });

  it('each duplicate is corrupted or not on its own', () => {
    // draws: duplicate yes; copy 1 corrupt yes at bit 0; copy 2 corrupt no
    const { dev, fi } = setup({ rng: draws(0.0, 0.0, 0.0, 0.5), duplicate: 0.5, corrupt: 0.5 });
    fi.send(frame(0));
    assert.deepEqual(bitsDiffering(frame(0), dev.sent[0]), [0]);
    assert.deepEqual(dev.sent[1], frame(0));
  });

  it('settings per direction override the shared ones', () => {
    const { dev, fi, received } = setup({ rng: draws(0.5, 0.5), loss: 0.6, rx: { loss: 0.4 } });
    fi.send(frame(1)); // 0.5 < 0.6: lost
    dev.inject(frame(2)); // 0.5 >= 0.4: passes
    assert.deepEqual(dev.sent, []);
    assert.deepEqual(received, [[frame(2)]]);
  });

  it('a direction may bring its own random source', () => {
    const shared = draws(0.9);
    const own = draws(0.0);
    const { dev, fi, received } = setup({ rng: shared, loss: 0.5, rx: { rng: own } });
    fi.send(frame(1));
    dev.inject(frame(2));
    assert.equal(dev.sent.length, 1);
    assert.deepEqual(received, []);
    assert.equal(shared.left() + own.left(), 0);
  });

  it('configure changes the faults from then on', () => {
    const { dev, fi, received } = setup({ rng: new Rng(1) });
    fi.configure({ tx: { loss: 1 } });
    fi.send(frame(1));
    dev.inject(frame(2));
    fi.configure({ loss: 0 });
    fi.send(frame(3));
    assert.deepEqual(dev.sent, [frame(3)]);
    assert.deepEqual(received, [[frame(2)]]);
  });

  it('rejects settings that make no sense, in one sentence', () => {
    const dev = new MemoryDevice();
    assert.throws(
      () => new FaultInjector(dev, { rng: draws(), loss: 1.5 }),
      /loss is a probability between 0 and 1, got 1.5/,
    );
    assert.throws(
      () => new FaultInjector(dev, { rng: draws(), tx: { delayMs: -1 } }),
      /tx.delayMs is a non-negative/,
    );
    assert.throws(
      () => new FaultInjector(dev, { rng: draws(), reorderDelayMs: [5, 2] }),
      /reorderDelayMs must be \[min, max\] with min <= max/,
    );
    assert.throws(
      () => new FaultInjector(dev, { rng: draws(), duplicate: Number.NaN }),
      /duplicate is a probability/,
    );
  });
});

describe('rates over many frames', () => {
  it('loss, duplication, reordering and corruption happen at their probabilities, per direction', () => {
    const n = 20_000;
    const { dev, fi, received } = setup({
      rng: new Rng(7),
      tx: { loss: 0.1, duplicate: 0.05, corrupt: 0.02 },
      rx: { loss: 0.02, reorder: 0.25, reorderDelayMs: [1, 3] },
    });
    for (let i = 0; i < n; i++) fi.send(frame(i & 0xff));
    for (let i = 0; i < n; i++) dev.inject(frame(i & 0xff));
    const tx = fi.stats.tx;
    const rx = fi.stats.rx;
    const near = (got: number, p: number, base: number) =>
      assert.ok(
        Math.abs(got / base - p) < 4 * Math.sqrt((p * (1 - p)) / base) + 1e-9,
        `${got}/${base} vs ${p}`,
      );
    near(tx.lost, 0.1, n);
    near(tx.duplicated, 0.05, n - tx.lost);
    near(tx.corrupted, 0.02, n - tx.lost + tx.duplicated);
    assert.equal(tx.reordered, 0);
    assert.equal(dev.sent.length, n - tx.lost + tx.duplicated);
    near(rx.lost, 0.02, n);
    near(rx.reordered, 0.25, n - rx.lost);
    assert.equal(rx.duplicated + rx.corrupted, 0);
    // reordered copies wait on timers; the others were handed over at once
    assert.equal(received.flat().length, n - rx.lost - rx.reordered);
    assert.equal(fi.pending, rx.reordered);
    return fi.close();
  });
});

describe('delays (mocked timers)', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('a fixed delay holds every frame for that long and keeps their order', () => {
    const { dev, fi } = setup({ rng: draws(), delayMs: 10 });
    fi.send(frame(1));
    mock.timers.tick(4);
    fi.send(frame(2));
    mock.timers.tick(5);
    assert.deepEqual(dev.sent, []);
    assert.equal(fi.pending, 2);
    mock.timers.tick(1);
    assert.deepEqual(dev.sent, [frame(1)]);
    assert.ok(dev.flushes >= 1, 'a delayed frame leaves when its timer fires');
    mock.timers.tick(4);
    assert.deepEqual(dev.sent, [frame(1), frame(2)]);
    assert.equal(fi.stats.tx.delayed, 2);
    assert.equal(fi.pending, 0);
  });

  it('a reordered frame is overtaken by the ones after it', () => {
    // frame 1: reorder yes, extra = 1 + floor(0.5 * 5) = 3 ms; frames 2, 3: reorder no
    const { dev, fi } = setup({
      rng: draws(0.1, 0.5, 0.9, 0.9),
      delayMs: 2,
      reorder: 0.2,
      reorderDelayMs: [1, 5],
    });
    fi.send(frame(1));
    fi.send(frame(2));
    fi.send(frame(3));
    mock.timers.tick(2);
    assert.deepEqual(dev.sent, [frame(2), frame(3)]);
    mock.timers.tick(2);
    assert.deepEqual(dev.sent, [frame(2), frame(3)]);
    mock.timers.tick(1);
    assert.deepEqual(dev.sent, [frame(2), frame(3), frame(1)]);
    assert.equal(fi.stats.tx.reordered, 1);
  });

  it('reorder with no fixed delay: the others pass at once; received late frames come as their own batch', () => {
    const { dev, received } = setup({ rng: draws(0.9, 0.1, 0.0), reorder: 0.5, reorderDelayMs: [7, 9] });
    dev.inject(frame(1), frame(2));
    assert.deepEqual(received, [[frame(1)]]);
    mock.timers.tick(6);
    assert.equal(received.length, 1);
    mock.timers.tick(1);
    assert.deepEqual(received, [[frame(1)], [frame(2)]]);
  });

  it('close() cancels every pending timer and closes the inner device', async () => {
    const { dev, fi, received } = setup({ rng: draws(), delayMs: 5 });
    fi.send(frame(1));
    dev.inject(frame(2), frame(3));
    assert.equal(fi.pending, 3);
    await fi.close();
    assert.equal(dev.closed, true);
    assert.equal(fi.pending, 0);
    mock.timers.tick(100);
    assert.deepEqual(dev.sent, []);
    assert.deepEqual(received, []);
    assert.equal(fi.stats.tx.cancelled, 1);
    assert.equal(fi.stats.rx.cancelled, 2);
    // nothing passes after close, in either direction
    fi.send(frame(4));
    dev.inject(frame(5));
    mock.timers.tick(100);
    assert.deepEqual(dev.sent, []);
    assert.deepEqual(received, []);
  });
});

describe('delays (real timers)', () => {
  it('a 20 ms delay holds a frame at least that long', { timeout: 2000 }, async () => {
    const { dev, fi, received } = setup({ rng: draws(), delayMs: 20 });
    const start = performance.now();
    const arrived = new Promise<number>((resolve) => fi.onReceive(() => resolve(performance.now())));
    dev.inject(frame(1));
    assert.deepEqual(received, []);
    const at = await arrived;
    assert.ok(at - start >= 19, `arrived after ${at - start} ms`);
    await fi.close();
  });

  it('close() leaves no timer to keep the process alive', async () => {
    const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timeouts();
    const { fi } = setup({ rng: draws(), delayMs: 60_000 });
    fi.send(frame(1));
    fi.send(frame(2));
    assert.equal(timeouts(), before + 2);
    await fi.close();
    assert.equal(timeouts(), before);
  });
});
