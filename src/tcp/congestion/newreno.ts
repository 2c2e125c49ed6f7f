/**
 * NewReno congestion control (RFC 5681, RFC 6582) with Appropriate Byte Counting (RFC 3465).
 * All quantities are whole bytes, so every result is an exact integer.
 *
 * The fast-recovery window arithmetic (retransmit, pipe, partial ACKs) belongs to the engine's
 * loss recovery (RFC 6675); this class only sets cwnd and ssthresh at its edges.
 */

import type { CongestionControl, CongestionSnapshot } from './index.ts';

/** RFC 3465 (2.2): at most L = 2*SMSS of window growth per ACK in slow start. */
const ABC_L = 2;

export class NewReno implements CongestionControl {
  readonly algorithm = 'newreno' as const;
  private mss: number;
  private readonly iwSegments: number;
  private _cwnd: number;
  private _ssthresh = Number.POSITIVE_INFINITY;
  /** RFC 3465 (2.1) bytes_acked: the congestion-avoidance byte counter. */
  private bytesAcked = 0;
  private inRecovery = false;
  /** An RTO fired and no ACK of new data has arrived since (RFC 5681 3.1, repeated RTOs). */
  private afterTimeout = false;

  constructor(mss: number, initialCwndSegments: number) {
    this.mss = mss;
    this.iwSegments = initialCwndSegments;
    this._cwnd = initialCwndSegments * mss;
  }

  static restore(s: CongestionSnapshot): NewReno {
    const r = new NewReno(s.mss as number, s.iwSegments as number);
    r._cwnd = s.cwnd as number;
    r._ssthresh = (s.ssthresh as number) < 0 ? Number.POSITIVE_INFINITY : (s.ssthresh as number);
    r.bytesAcked = s.bytesAcked as number;
    r.inRecovery = s.inRecovery as boolean;
    r.afterTimeout = s.afterTimeout as boolean;
    return r;
  }

  get cwnd(): number {
    return this._cwnd;
  }

  get ssthresh(): number {
    return this._ssthresh;
  }

  onAck(ackedBytes: number, _now: number, _srttUs: number | undefined): void {
    if (!(ackedBytes > 0)) return;
    this.afterTimeout = false;
    const mss = this.mss;
    if (this._cwnd < this._ssthresh) {
      // RFC 5681 (3.1) slow start with RFC 3465 (2.2) L = 2*SMSS. Like Linux's tcp_slow_start,
      // growth stops at ssthresh and the rest of the ACK counts toward congestion avoidance.
      const inc = ackedBytes < ABC_L * mss ? ackedBytes : ABC_L * mss;
      const room = this._ssthresh - this._cwnd;
      if (inc <= room) {
        this._cwnd += inc;
        return;
      }
      this._cwnd = this._ssthresh;
      ackedBytes -= room;
    }
    // RFC 5681 (3.1) / RFC 3465 (2.1): one SMSS per cwnd of acknowledged bytes.
    const acked = this.bytesAcked + ackedBytes;
    if (acked < this._cwnd) {
      this.bytesAcked = acked;
      return;
    }
    const steps = Math.floor(acked / this._cwnd);
    this.bytesAcked = acked - steps * this._cwnd;
    this._cwnd += steps * mss;
  }

  onCongestionEvent(_now: number, flightSize: number): void {
    // RFC 5681 (3.2) eq. 4: ssthresh = max(FlightSize / 2, 2*SMSS); RFC 6675 (5): cwnd = ssthresh.
    this._ssthresh = this.halved(flightSize);
    this._cwnd = this._ssthresh;
    this.bytesAcked = 0;
    this.inRecovery = true;
    this.afterTimeout = false;
  }

  onRecoveryExit(_now: number): void {
    // RFC 6582 (3.2 step 3): on the full ACK, cwnd = ssthresh. A recovery cut short by an RTO
    // has nothing to restore: slow start from the loss window continues.
    if (!this.inRecovery) return;
    this.inRecovery = false;
    this._cwnd = this._ssthresh;
    this.bytesAcked = 0;
  }

  onTimeout(_now: number, flightSize: number): void {
    // RFC 5681 (3.1): eq. 4 only on the first RTO of a segment; ssthresh is held for the
    // following ones. cwnd = the loss window, 1 SMSS.
    if (!this.afterTimeout) this._ssthresh = this.halved(flightSize);
    this._cwnd = this.mss;
    this.bytesAcked = 0;
    this.inRecovery = false;
    this.afterTimeout = true;
  }

  onIdle(_now: number): void {
    // RFC 5681 (4.1): cwnd = min(IW, cwnd). RFC 2861 (Linux's tcp_cwnd_restart) keeps a memory
    // of the old window: ssthresh >= 3/4 cwnd, so slow start climbs back quickly.
    const rw = this.iwSegments * this.mss;
    if (this._cwnd <= rw) return;
    const keep = Math.floor((this._cwnd * 3) / 4);
    if (keep > this._ssthresh) this._ssthresh = keep;
    this._cwnd = rw;
    this.bytesAcked = 0;
  }

  setMss(mss: number): void {
    if (!(Number.isSafeInteger(mss) && mss > 0) || mss === this.mss) return;
    const old = this.mss;
    this.mss = mss;
    // Same window in segments (Linux counts snd_cwnd in packets).
    this._cwnd = Math.max(mss, Math.floor((this._cwnd * mss) / old));
    if (this._ssthresh !== Number.POSITIVE_INFINITY) {
      this._ssthresh = Math.max(2 * mss, Math.floor((this._ssthresh * mss) / old));
    }
    this.bytesAcked = Math.floor((this.bytesAcked * mss) / old);
  }

  snapshot(): CongestionSnapshot {
    return {
      algorithm: this.algorithm,
      mss: this.mss,
      iwSegments: this.iwSegments,
      cwnd: this._cwnd,
      ssthresh: this._ssthresh === Number.POSITIVE_INFINITY ? -1 : this._ssthresh,
      bytesAcked: this.bytesAcked,
      inRecovery: this.inRecovery,
      afterTimeout: this.afterTimeout,
    };
  }

  private halved(flightSize: number): number {
    const half = Math.floor(flightSize / 2);
    return half > 2 * this.mss ? half : 2 * this.mss;
  }
}
