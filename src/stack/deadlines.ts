/**
 * Deadlines of many objects (connections, neighbour entries) in one min-heap, so a poll touches
 * only what is due. Rescheduling pushes a new entry; stale entries are skipped on the way out.
 */
export class Deadlines<T> {
  private heapAt: number[] = [];
  private heapItem: T[] = [];
  private readonly due = new Map<T, number>();

  get size(): number {
    return this.due.size;
  }

  /** Sets (or clears, with undefined) when `item` wants attention. */
  set(item: T, at: number | undefined): void {
    if (at === undefined) {
      this.due.delete(item);
      return;
    }
    if (this.due.get(item) === at) return;
    this.due.set(item, at);
    this.push(at, item);
  }

  /** The earliest deadline, or undefined. */
  peek(): number | undefined {
    this.dropStale();
    return this.heapAt.length > 0 ? this.heapAt[0] : undefined;
  }

  /** Removes and returns one item due at or before `now`, or undefined. */
  popDue(now: number): T | undefined {
    this.dropStale();
    if (this.heapAt.length === 0 || this.heapAt[0] > now) return undefined;
    const item = this.heapItem[0];
    this.pop();
    this.due.delete(item);
    return item;
  }

  private dropStale(): void {
    while (this.heapAt.length > 0 && this.due.get(this.heapItem[0]) !== this.heapAt[0]) this.pop();
  }

  private push(at: number, item: T): void {
    const a = this.heapAt;
    const it = this.heapItem;
    let i = a.length;
    a.push(at);
    it.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= at) break;
      a[i] = a[p];
      it[i] = it[p];
      i = p;
    }
    a[i] = at;
    it[i] = item;
  }

  private pop(): void {
    const a = this.heapAt;
    const it = this.heapItem;
    const lastAt = a.pop()!;
    const lastItem = it.pop()!;
    const n = a.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && a[c + 1] < a[c]) c++;
      if (a[c] >= lastAt) break;
      a[i] = a[c];
      it[i] = it[c];
      i = c;
    }
    a[i] = lastAt;
    it[i] = lastItem;
  }
}
