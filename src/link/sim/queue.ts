/**
 * The simulator's event queue: a binary min-heap ordered by (time, seq). `seq` is a global
 * insertion counter, so events at the same virtual instant run in the order they were scheduled
 * and a run is a pure function of its inputs.
 *
 * Events are tagged records, not closures: the network switches on `kind`. Popped records are
 * recycled through a small free list, so a steady-state run allocates no event objects.
 */

/** A frame reaches the far end of a link direction: `target` is the direction, `frame` the bytes. */
export const EV_DELIVER = 0;
/** A node's poll is due: `target` is the node's handle, `n` the poll generation it was armed with. */
export const EV_POLL = 1;
/** A link direction goes up (`n` = 1) or down (`n` = 0): `target` is the direction. */
export const EV_LINK_STATE = 2;
/** A scheduled callback: `target` is the function. */
export const EV_CALL = 3;

export type EventKind = typeof EV_DELIVER | typeof EV_POLL | typeof EV_LINK_STATE | typeof EV_CALL;

export interface SimEvent {
  /** Virtual time, microseconds. */
  time: number;
  /** Insertion order, the tie-break for equal times. */
  seq: number;
  kind: EventKind;
  target: unknown;
  frame: Uint8Array | null;
  n: number;
}

const POOL_MAX = 4096;

export class EventQueue {
  private heap: SimEvent[] = [];
  private pool: SimEvent[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Time of the earliest event, or undefined when the queue is empty. */
  peekTime(): number | undefined {
    return this.heap.length > 0 ? this.heap[0].time : undefined;
  }

  push(time: number, kind: EventKind, target: unknown, frame: Uint8Array | null, n: number): void {
    const ev = this.pool.pop() ?? { time: 0, seq: 0, kind: EV_CALL, target: null, frame: null, n: 0 };
    ev.time = time;
    ev.seq = this.nextSeq++;
    ev.kind = kind;
    ev.target = target;
    ev.frame = frame;
    ev.n = n;
    const h = this.heap;
    let i = h.length;
    h.push(ev);
    // Sift up.
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent];
      if (p.time < time || (p.time === time && p.seq < ev.seq)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = ev;
  }

  /** Removes and returns the earliest event. Hand it back with `release` once done with it. */
  pop(): SimEvent | undefined {
    const h = this.heap;
    const n = h.length;
    if (n === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (n > 1) {
      // Sift `last` down from the root.
      const size = n - 1;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= size) break;
        const r = l + 1;
        let c = l;
        let cv = h[l];
        if (r < size) {
          const rv = h[r];
          if (rv.time < cv.time || (rv.time === cv.time && rv.seq < cv.seq)) {
            c = r;
            cv = rv;
          }
        }
        if (last.time < cv.time || (last.time === cv.time && last.seq < cv.seq)) break;
        h[i] = cv;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }

  /** Returns a popped event to the free list (drops its references). */
  release(ev: SimEvent): void {
    ev.target = null;
    ev.frame = null;
    if (this.pool.length < POOL_MAX) this.pool.push(ev);
  }

  clear(): void {
    this.heap.length = 0;
  }
}
