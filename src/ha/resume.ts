/**
 * After a take-over (docs/ARCHITECTURE.md §6 "Take-over", step 6): the restored connections are
 * watched for their first move. Each that owed output counts as resumed once its peer acknowledges
 * more; the take-over record keeps the longest wait from the active's last word (`stallUs`) and
 * the count (`resumed`). At each announcement of the VIP a connection that made no progress is
 * kick-started again (`rekick`). Slow or stuck connections are logged.
 */
import type { LogFn } from '../log.ts';
import type { NetStack, StackConnection } from '../stack/stack.ts';
import { TcpState } from '../tcp/state.ts';
import type { TakeoverRecord } from './node.ts';

/** How long after a take-over restored connections are watched for their first move. */
export const RESUME_WATCH_US = 10_000_000;
/** A restored connection whose output waits longer than this (µs) for its peer is logged. */
const SLOW_RESUME_US = 300_000;
/** How often (µs) the watch looks at the restored connections. */
const RESUME_CHECK_US = 1000;
/** Per-connection resume times a take-over record keeps (TakeoverRecord.resumeUs). */
export const RESUME_KEPT = 4096;

/** One restored connection as the take-over watches it. */
interface ResumeWatch {
  c: StackConnection;
  /** Acknowledged offset at the take-over; `moved` once it advanced (or nothing was owed). */
  acked0: number;
  /** Output not yet acknowledged at the take-over, and the part of it already sent. */
  owed: number;
  inFlight: number;
  moved: boolean;
  /** Where it stood at the last announcement (for the re-kick). */
  acked: number;
  received: number;
  heardAt: number;
  /** Its peer answered since the take-over: the path to it works. */
  proven: boolean;
}

export class ResumeWatcher {
  /** The connections restored by the last take-over, watched for `RESUME_WATCH_US`. */
  private watch: ResumeWatch[] = [];
  /** Those of `watch` that owed output at the take-over and have not had it acknowledged yet. */
  private waiting: ResumeWatch[] = [];
  private until = 0;
  private checkedAt = 0;
  private rec: TakeoverRecord | undefined;

  constructor(
    private readonly stack: NetStack,
    private readonly log: LogFn,
    private readonly wake: () => void,
  ) {}

  /** Starts watching `conns`, just restored by the take-over `rec` (which it updates). */
  start(rec: TakeoverRecord | undefined, conns: StackConnection[], now: number): void {
    this.rec = rec;
    this.watch = conns.map((c) => {
      const acked = c.tcp.acknowledged;
      const received = c.tcp.receivedPosition;
      const heardAt = c.tcp.lastReceivedAt;
      const owed = c.tcp.writePosition - acked;
      const snap = c.tcp.snapshot(now, false);
      const inFlight = Math.max(0, snap.sndMax - snap.sndUna);
      return { c, acked0: acked, owed, inFlight, moved: owed === 0, acked, received, heardAt, proven: false };
    });
    this.waiting = this.watch.filter((w) => !w.moved);
    this.until = now + RESUME_WATCH_US;
    this.checkedAt = now;
  }

  /** Stops watching (the node stepped down: its connections are gone). */
  clear(): void {
    this.watch = [];
    this.waiting = [];
  }

  /**
   * At an announcement: kick-starts again each restored connection that made no progress since
   * the last one (neither direction advanced) while it has bytes to deliver or its peer has not
   * answered once since the take-over. Frames the dead node had queued may reach the switch after
   * our first claim and point it back at the dead port; a stream then waits for an RTO that may
   * be the peer's, with its back-off. An idle connection whose peer answered is left alone, and
   * so is one whose smoothed RTT is longer than the time since the last announcement.
   */
  rekick(now: number, sinceUs: number): void {
    if (this.watch.length === 0 || now > this.until) return;
    let n = 0;
    const seen: string[] = [];
    for (const w of this.watch) {
      const t = w.c.tcp;
      const heard = t.lastReceivedAt !== w.heardAt;
      if (heard) w.proven = true;
      const progressed = t.acknowledged !== w.acked || t.receivedPosition !== w.received;
      w.acked = t.acknowledged;
      w.received = t.receivedPosition;
      w.heardAt = t.lastReceivedAt;
      if (progressed || (w.proven && t.writePosition === t.acknowledged)) continue;
      // Nothing to kick: its peer owes it nothing more (kickStart leaves these alone).
      if (t.state === TcpState.TimeWait || t.state === TcpState.Closed) continue;
      if ((t.stats.srttUs ?? 0) * 2 > sinceUs) continue;
      t.kickStart(now);
      this.stack.touch(w.c);
      if (n++ < 3)
        seen.push(`${t.state}, ${t.writePosition - t.acknowledged} owed${w.proven ? '' : ', peer silent'}`);
    }
    if (n > 0) {
      this.log(
        `take-over: ${n} restored connection(s) made no progress: kick-started again (${seen.join('; ')}${n > 3 ? '; …' : ''})`,
      );
      this.wake();
    }
  }

  /** Notes restored connections whose peer acknowledged more (see TakeoverRecord.stallUs). */
  check(now: number): void {
    if (this.watch.length === 0 || now < this.checkedAt + RESUME_CHECK_US) return;
    this.checkedAt = now;
    const rec = this.rec;
    if (!rec || now > this.until) {
      const stuck = this.waiting;
      if (rec && stuck.length > 0) {
        const states = stuck
          .slice(0, 5)
          .map(
            (w) =>
              `${w.c.tcp.state} ${w.c.tcp.writePosition - w.c.tcp.acknowledged} owed, window ${w.c.tcp.stats.sndWnd}`,
          );
        this.log(
          `take-over: ${stuck.length} restored connection(s) still wait for their peer to acknowledge output (${states.join('; ')})`,
        );
      }
      this.clear();
      return;
    }
    if (this.waiting.length === 0) return;
    let moved = 0;
    let late = 0;
    let example = '';
    const still: ResumeWatch[] = [];
    for (const w of this.waiting) {
      if (w.c.tcp.acknowledged === w.acked0) {
        still.push(w);
        continue;
      }
      w.moved = true;
      moved++;
      rec.resumed++;
      rec.stallUs = Math.max(rec.stallUs ?? 0, now - rec.lastHeardAt);
      if (rec.resumeUs.length < RESUME_KEPT) rec.resumeUs.push(now - rec.lastHeardAt);
      if (now - rec.lastHeardAt > SLOW_RESUME_US && late++ === 0)
        example = `${w.c.tcp.state}, ${w.owed} owed and ${w.inFlight} in flight at the take-over, srtt ${((w.c.tcp.stats.srttUs ?? 0) / 1000).toFixed(1)} ms`;
    }
    if (late > 0)
      this.log(
        `take-over: ${late} connection(s) had their output acknowledged only ${((now - rec.lastHeardAt) / 1000).toFixed(0)} ms after the active's last word (e.g. ${example})`,
      );
    this.waiting = still;
    if (still.length === 0 && moved > 0)
      this.log(
        `take-over: every restored connection owed output had it acknowledged, the last ${((rec.stallUs ?? 0) / 1000).toFixed(1)} ms after the active's last word`,
        {
          event: 'takeover-resumed',
          epoch: rec.epoch,
          resumed: rec.resumed,
          stallMs: Math.round((rec.stallUs ?? 0) / 100) / 10,
        },
      );
  }
}
