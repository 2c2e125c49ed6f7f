/**
 * Retransmission timeout estimator (RFC 6298), all times in microseconds.
 *
 * Gains alpha = 1/8, beta = 1/4, K = 4 (RFC 6298 2.3) and a clock granularity G of 1 ms, the
 * tick of our timestamp clock. The floor is Linux's 200 ms rather than RFC 6298 (2.4)'s 1 s, and
 * the ceiling Linux's 120 s (2.5 allows any ceiling of at least 60 s); both are configurable.
 *
 * RFC 7323 Appendix G: a sender that takes a sample from every ACK (timestamps) feeds the filter
 * many samples per RTT, which shrinks RTTVAR's memory to a fraction of an RTT and lets the RTO
 * collapse onto SRTT. `sample(rtt, expectedSamples)` applies the appendix's remedy: both gains are
 * divided by the number of samples expected per RTT, ceil(FlightSize / (2 * SMSS)) with delayed
 * ACKs. The default (1) is plain RFC 6298, for one sample per RTT.
 *
 * State is kept as IEEE doubles (no scaled integers as in Linux): the same calls give the same
 * values bit for bit, and a snapshot carries every variable, so a restored estimator continues
 * exactly.
 */

export interface RttConfig {
  /** RFC 6298 (2.4) lower bound on the RTO (Linux: 200 ms). */
  minRtoUs: number;
  /** RFC 6298 (2.5) upper bound on the RTO, back-off included (Linux: 120 s). */
  maxRtoUs: number;
  /** RFC 6298 (2.1) RTO before the first sample (1 s). */
  initialRtoUs: number;
}

export const DEFAULT_RTT_CONFIG: Readonly<RttConfig> = Object.freeze({
  minRtoUs: 200_000,
  maxRtoUs: 120_000_000,
  initialRtoUs: 1_000_000,
});

/** Plain record of an estimator. `srtt`, `rttvar` and `minRtt` mean nothing while `samples` is 0. */
export interface RttSnapshot {
  srtt: number;
  rttvar: number;
  /** The RTO without back-off (what the last sample set, or the initial RTO). */
  rto: number;
  backoff: number;
  samples: number;
  minRtt: number;
}

/** RFC 6298 (2.3) gains. */
const ALPHA = 1 / 8;
const BETA = 1 / 4;
const K = 4;
/** Clock granularity: timestamps tick once a millisecond. */
const G_US = 1000;

export class RttEstimator {
  private readonly minRto: number;
  private readonly maxRto: number;
  private _srtt = 0;
  private _rttvar = 0;
  /** RTO before back-off, already clamped to [minRto, maxRto]. */
  private baseRto: number;
  private _backoff = 0;
  private samples = 0;
  private _minRtt = 0;

  constructor(cfg: RttConfig = DEFAULT_RTT_CONFIG, snap?: RttSnapshot) {
    const { minRtoUs, maxRtoUs, initialRtoUs } = cfg;
    if (!(minRtoUs >= 0 && maxRtoUs >= minRtoUs && Number.isFinite(maxRtoUs) && initialRtoUs > 0)) {
      throw new RangeError(
        `RTO bounds must satisfy 0 <= minRto (${minRtoUs}) <= maxRto (${maxRtoUs}) < Infinity and initialRto (${initialRtoUs}) > 0; fix the RTO settings.`,
      );
    }
    this.minRto = minRtoUs;
    this.maxRto = maxRtoUs;
    this.baseRto = this.clamp(initialRtoUs);
    if (snap !== undefined) {
      this._srtt = snap.srtt;
      this._rttvar = snap.rttvar;
      this.baseRto = snap.rto;
      this._backoff = snap.backoff;
      this.samples = snap.samples;
      this._minRtt = snap.minRtt;
    }
  }

  static restore(snap: RttSnapshot, cfg: RttConfig = DEFAULT_RTT_CONFIG): RttEstimator {
    return new RttEstimator(cfg, snap);
  }

  /**
   * A new RTT measurement. The caller applies Karn's rule (RFC 6298 3; RFC 7323 4.1 lets
   * timestamps disambiguate retransmissions). Resets the back-off (RFC 6298 5.7: a valid sample
   * after back-off recomputes the RTO). Negative or non-finite values are ignored.
   *
   * `expectedSamples`: samples expected per RTT (RFC 7323 Appendix G), 1 for once-per-RTT timing.
   */
  sample(rttUs: number, expectedSamples = 1): void {
    if (!(rttUs >= 0 && rttUs < Number.POSITIVE_INFINITY)) return;
    if (this.samples === 0) {
      // RFC 6298 (2.2): SRTT <- R, RTTVAR <- R/2.
      this._srtt = rttUs;
      this._rttvar = rttUs / 2;
      this._minRtt = rttUs;
    } else {
      const n = expectedSamples > 1 ? expectedSamples : 1;
      const a = ALPHA / n;
      const b = BETA / n;
      // RFC 6298 (2.3): RTTVAR first, from the old SRTT.
      const err = this._srtt - rttUs;
      this._rttvar = (1 - b) * this._rttvar + b * (err < 0 ? -err : err);
      this._srtt = (1 - a) * this._srtt + a * rttUs;
      if (rttUs < this._minRtt) this._minRtt = rttUs;
    }
    this.samples++;
    // RFC 6298 (2.2/2.3): RTO <- SRTT + max(G, K*RTTVAR), rounded up to a whole microsecond so
    // timer deadlines stay integers; then (2.4/2.5) the bounds.
    const v = K * this._rttvar;
    this.baseRto = this.clamp(Math.ceil(this._srtt + (v > G_US ? v : G_US)));
    this._backoff = 0;
  }

  /** Current RTO, exponential back-off included, within [minRto, maxRto]. */
  get rto(): number {
    if (this._backoff === 0) return this.baseRto;
    const r = this.baseRto * 2 ** this._backoff;
    return r < this.maxRto ? r : this.maxRto;
  }

  /**
   * RFC 6298 (5.7): the SYN (or SYN-ACK) was retransmitted and no RTT sample was taken, so once
   * the connection is established the RTO for data starts again at `rtoUs` (3 s) without back-off.
   * Does nothing when a sample exists.
   */
  fallback(rtoUs: number): void {
    if (this.samples > 0) return;
    this.baseRto = this.clamp(rtoUs);
    this._backoff = 0;
  }

  /** RFC 6298 (5.5): the timer expired; double the RTO (the result never exceeds maxRto). */
  backoff(): void {
    this._backoff++;
  }

  /** Consecutive back-offs since the last sample; keeps counting once the RTO is at maxRto. */
  get backoffCount(): number {
    return this._backoff;
  }

  get srtt(): number | undefined {
    return this.samples === 0 ? undefined : this._srtt;
  }

  get rttvar(): number {
    return this._rttvar;
  }

  /** Smallest sample ever taken (no windowing). */
  get minRtt(): number | undefined {
    return this.samples === 0 ? undefined : this._minRtt;
  }

  get sampleCount(): number {
    return this.samples;
  }

  snapshot(): RttSnapshot {
    return {
      srtt: this._srtt,
      rttvar: this._rttvar,
      rto: this.baseRto,
      backoff: this._backoff,
      samples: this.samples,
      minRtt: this._minRtt,
    };
  }

  private clamp(rto: number): number {
    return rto < this.minRto ? this.minRto : rto > this.maxRto ? this.maxRto : rto;
  }
}
