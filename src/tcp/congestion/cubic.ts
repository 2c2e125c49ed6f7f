/**
 * CUBIC congestion control (RFC 9438), without HyStart++ (slow start is RFC 5681's, with
 * RFC 3465 byte counting, as in NewReno).
 *
 * The cubic function works in segments and seconds, as the RFC writes it (C = 0.4); cwnd is
 * kept in bytes as an IEEE double, since each ACK adds a fraction of a segment, and read out
 * rounded down. ssthresh stays a whole number of bytes. The snapshot carries every variable as
 * it is, so a restored CUBIC continues bit for bit.
 *
 * Choices where the RFC leaves room:
 * - The epoch (t_epoch, cwnd_epoch, K, W_est) starts at the first ACK in congestion avoidance
 *   after a congestion event, an RTO or an idle restart, as Linux's bictcp_update does; the
 *   engine does not call onAck during recovery, so recovery time is not part of t.
 * - RFC 9438 (4.3) sets cwnd to W_est in the Reno-friendly region; we take max(cwnd, W_est) so
 *   that, as in 4.2, an ACK never shrinks the window.
 * - An idle restart starts a new epoch (Linux instead shifts t_epoch by the idle time).
 */

import type { CongestionControl, CongestionSnapshot } from './index.ts';

/** RFC 9438 (4.1) C: segments / second^3. */
const C = 0.4;
/** RFC 9438 (4.1) beta_cubic, and as an exact integer ratio for ssthresh. */
const BETA = 0.7;
const BETA_NUM = 7;
const BETA_DEN = 10;
/** RFC 9438 (4.3) alpha_cubic = 3 * (1 - beta) / (1 + beta): Reno-friendly growth per RTT. */
const ALPHA = (3 * (1 - BETA)) / (1 + BETA);
/** RFC 3465 (2.2) L for slow start. */
const ABC_L = 2;
const NO_EPOCH = -1;

export class Cubic implements CongestionControl {
  readonly algorithm = 'cubic' as const;
  private mss: number;
  private readonly iwSegments: number;
  /** Bytes, fractional. */
  private cwndBytes: number;
  private _ssthresh = Number.POSITIVE_INFINITY;
  /** RFC 9438 (4.7) W_max, segments: the window the next epoch's cubic plateaus at. */
  private wMax = 0;
  /** RFC 9438 (4.6) cwnd_prior, segments: cwnd when ssthresh was last set (for alpha_cubic, 4.3). */
  private cwndPrior = 0;
  /** RFC 9438 (4.2) t_epoch, µs, or NO_EPOCH before the first ACK in congestion avoidance. */
  private epochStart = NO_EPOCH;
  /** RFC 9438 (4.2) cwnd_epoch, segments. */
  private cwndEpoch = 0;
  /** RFC 9438 (4.2) K, seconds. */
  private k = 0;
  /** RFC 9438 (4.3) W_est, segments. */
  private wEst = 0;
  /** RFC 9438 (4.7) fast convergence. */
  private readonly fastConvergence = true;
  private inRecovery = false;
  /** An RTO fired and no ACK of new data has arrived since (RFC 5681 3.1, repeated RTOs). */
  private afterTimeout = false;

  constructor(mss: number, initialCwndSegments: number) {
    this.mss = mss;
    this.iwSegments = initialCwndSegments;
    this.cwndBytes = initialCwndSegments * mss;
  }

  static restore(s: CongestionSnapshot): Cubic {
    const r = new Cubic(s.mss as number, s.iwSegments as number);
    r.cwndBytes = s.cwnd as number;
    r._ssthresh = (s.ssthresh as number) < 0 ? Number.POSITIVE_INFINITY : (s.ssthresh as number);
    r.wMax = s.wMax as number;
    r.cwndPrior = s.cwndPrior as number;
    r.epochStart = s.epochStart as number;
    r.cwndEpoch = s.cwndEpoch as number;
    r.k = s.k as number;
    r.wEst = s.wEst as number;
    r.inRecovery = s.inRecovery as boolean;
    r.afterTimeout = s.afterTimeout as boolean;
    return r;
  }

  get cwnd(): number {
    return Math.floor(this.cwndBytes);
  }

  get ssthresh(): number {
    return this._ssthresh;
  }

  onAck(ackedBytes: number, now: number, srttUs: number | undefined): void {
    if (!(ackedBytes > 0)) return;
    this.afterTimeout = false;
    const mss = this.mss;
    if (this.cwndBytes < this._ssthresh) {
      // RFC 9438 (4.10) / RFC 5681 (3.1): slow start, RFC 3465 L = 2*SMSS; the part of the ACK
      // past ssthresh goes on to congestion avoidance (Linux's tcp_slow_start).
      const inc = ackedBytes < ABC_L * mss ? ackedBytes : ABC_L * mss;
      const room = this._ssthresh - this.cwndBytes;
      if (inc <= room) {
        this.cwndBytes += inc;
        return;
      }
      this.cwndBytes = this._ssthresh;
      ackedBytes -= room;
      if (!(ackedBytes > 0)) return;
    }

    const cwnd = this.cwndBytes / mss;
    if (this.epochStart === NO_EPOCH) this.startEpoch(now, cwnd);
    const segs = ackedBytes / mss;
    // t in seconds since the epoch began (never negative, e.g. after a restore on a new clock).
    const t = now > this.epochStart ? (now - this.epochStart) / 1e6 : 0;
    const rtt = srttUs !== undefined && srttUs > 0 ? srttUs / 1e6 : 0;

    // RFC 9438 (4.3): W_est grows alpha_cubic per RTT's worth of ACKs, 1 once it reaches cwnd_prior.
    this.wEst += ((this.wEst >= this.cwndPrior ? 1 : ALPHA) * segs) / cwnd;

    // RFC 9438 (4.2): W_cubic(t) = C*(t - K)^3 + W_max.
    const d = t - this.k;
    const wCubic = C * d * d * d + this.wMax;
    let next: number;
    if (wCubic < this.wEst) {
      // RFC 9438 (4.3) Reno-friendly region: cwnd = W_est (never lower than now).
      next = this.wEst > cwnd ? this.wEst : cwnd;
    } else {
      // RFC 9438 (4.2, 4.4, 4.5): target = W_cubic(t + RTT) within [cwnd, 1.5*cwnd]; each
      // acknowledged segment adds (target - cwnd) / cwnd.
      const dr = d + rtt;
      let target = C * dr * dr * dr + this.wMax;
      if (target < cwnd) target = cwnd;
      else if (target > 1.5 * cwnd) target = 1.5 * cwnd;
      next = cwnd + ((target - cwnd) * segs) / cwnd;
      if (next > target) next = target;
    }
    this.cwndBytes = next * mss;
  }

  onCongestionEvent(_now: number, flightSize: number): void {
    this.reduce(flightSize);
    // RFC 9438 (4.6): cwnd = ssthresh.
    this.cwndBytes = this._ssthresh;
    this.inRecovery = true;
    this.afterTimeout = false;
  }

  onRecoveryExit(_now: number): void {
    // RFC 6582 (3.2 step 3): cwnd = ssthresh. Ignored after an RTO ended the recovery.
    if (!this.inRecovery) return;
    this.inRecovery = false;
    this.cwndBytes = this._ssthresh;
  }

  onTimeout(_now: number, flightSize: number): void {
    // RFC 9438 (4.8): ssthresh as in 4.6 (first RTO of a segment only, RFC 5681 3.1), cwnd = 1
    // SMSS. The first congestion avoidance after it uses K = 0 and W_max = cwnd_epoch: W_max
    // = 0 makes startEpoch do that.
    if (!this.afterTimeout) {
      this.reduce(flightSize);
      this.wMax = 0;
    }
    this.cwndBytes = this.mss;
    this.inRecovery = false;
    this.afterTimeout = true;
  }

  onIdle(_now: number): void {
    // RFC 5681 (4.1): cwnd = min(IW, cwnd); RFC 2861: ssthresh >= 3/4 cwnd. A new epoch follows.
    const rw = this.iwSegments * this.mss;
    this.epochStart = NO_EPOCH;
    if (this.cwndBytes <= rw) return;
    const keep = Math.floor((this.cwndBytes * 3) / 4);
    if (keep > this._ssthresh) this._ssthresh = keep;
    this.cwndBytes = rw;
  }

  setMss(mss: number): void {
    if (!(Number.isSafeInteger(mss) && mss > 0) || mss === this.mss) return;
    const old = this.mss;
    this.mss = mss;
    // Same window in segments; the cubic state is already in segments.
    this.cwndBytes = Math.max(mss, (this.cwndBytes * mss) / old);
    if (this._ssthresh !== Number.POSITIVE_INFINITY) {
      this._ssthresh = Math.max(2 * mss, Math.floor((this._ssthresh * mss) / old));
    }
  }

  snapshot(): CongestionSnapshot {
    return {
      algorithm: this.algorithm,
      mss: this.mss,
      iwSegments: this.iwSegments,
      cwnd: this.cwndBytes,
      ssthresh: this._ssthresh === Number.POSITIVE_INFINITY ? -1 : this._ssthresh,
      wMax: this.wMax,
      cwndPrior: this.cwndPrior,
      epochStart: this.epochStart,
      cwndEpoch: this.cwndEpoch,
      k: this.k,
      wEst: this.wEst,
      inRecovery: this.inRecovery,
      afterTimeout: this.afterTimeout,
    };
  }

  /** RFC 9438 (4.6, 4.7): W_max with fast convergence, cwnd_prior, ssthresh; ends the epoch. */
  private reduce(flightSize: number): void {
    const cwnd = this.cwndBytes / this.mss;
    // RFC 9438 (4.7): a window that stopped short of the last W_max means a new flow is taking
    // bandwidth; release some by plateauing lower.
    this.wMax = this.fastConvergence && cwnd < this.wMax ? (cwnd * (1 + BETA)) / 2 : cwnd;
    this.cwndPrior = cwnd;
    // RFC 9438 (4.6): ssthresh = max(flight_size * beta_cubic, 2*SMSS).
    const s = Math.floor((flightSize * BETA_NUM) / BETA_DEN);
    this._ssthresh = s > 2 * this.mss ? s : 2 * this.mss;
    this.epochStart = NO_EPOCH;
  }

  /** RFC 9438 (4.2, 4.3): a congestion-avoidance stage begins. `cwnd` in segments. */
  private startEpoch(now: number, cwnd: number): void {
    this.epochStart = now;
    this.cwndEpoch = cwnd;
    this.wEst = cwnd;
    if (this.wMax > cwnd) {
      // K = cbrt((W_max - cwnd_epoch) / C): the time to climb back to W_max.
      this.k = Math.cbrt((this.wMax - cwnd) / C);
    } else {
      // At or above the old plateau (or after an RTO, 4.8): K = 0, W_max = cwnd_epoch.
      this.k = 0;
      this.wMax = cwnd;
    }
  }
}
