/**
 * Congestion control: the interface the engine drives and the two algorithms behind it,
 * NewReno (RFC 5681, RFC 6582, RFC 3465 byte counting) and CUBIC (RFC 9438). Windows are in
 * bytes; time is `now` in microseconds.
 *
 * What the engine owes the algorithm:
 * - `onAck` for every ACK that advances snd_una outside fast recovery (after an RTO too: that
 *   slow start is ordinary). Ideally only while the flow is cwnd-limited (RFC 7661, Linux's
 *   tcp_is_cwnd_limited), or an application-limited flow inflates cwnd it never used.
 * - `onCongestionEvent` once per loss episode, on entering fast recovery; `onRecoveryExit` when
 *   the recovery point is cumulatively ACKed. An RTO during recovery ends the recovery: the
 *   following `onRecoveryExit` is then ignored.
 * - `onTimeout` on every RTO expiry. RFC 5681 (3.1): only the first RTO of a segment lowers
 *   ssthresh; repeated expiries with no `onAck` between them keep it and just hold cwnd at one
 *   segment.
 * - `onIdle` before sending after an idle period longer than the RTO (RFC 5681 4.1).
 *
 * Snapshots are JSON-safe: an infinite ssthresh is written as -1.
 */

import { Cubic } from './cubic.ts';
import { NewReno } from './newreno.ts';

export type CongestionAlgorithm = 'newreno' | 'cubic';

export interface CongestionSnapshot {
  algorithm: CongestionAlgorithm;
  [k: string]: number | string | boolean;
}

export interface CongestionControl {
  readonly algorithm: CongestionAlgorithm;
  /** Congestion window, whole bytes. */
  readonly cwnd: number;
  /** Slow-start threshold, bytes; Infinity until the first congestion event. */
  readonly ssthresh: number;
  /**
   * New data cumulatively acknowledged (bytes) outside loss recovery. Slow start (RFC 5681 3.1,
   * RFC 3465 ABC with L = 2*SMSS) below ssthresh, congestion avoidance at or above. `srttUs` is
   * the smoothed RTT (CUBIC's W_cubic(t + RTT), RFC 9438 4.2); undefined before the first sample.
   */
  onAck(ackedBytes: number, now: number, srttUs: number | undefined): void;
  /** Entering fast recovery (RFC 5681 3.2, RFC 6675 5 step 4): multiplicative decrease, cwnd = ssthresh. */
  onCongestionEvent(now: number, flightSize: number): void;
  /** The recovery point was cumulatively ACKed (RFC 6582 3.2 step 3, full ACK): cwnd = ssthresh. */
  onRecoveryExit(now: number): void;
  /** Retransmission timeout (RFC 5681 3.1 eq. 4; RFC 9438 4.8): ssthresh lowered, cwnd = 1 SMSS. */
  onTimeout(now: number, flightSize: number): void;
  /** Restart after idle (RFC 5681 4.1): cwnd = min(cwnd, initial window). */
  onIdle(now: number): void;
  /**
   * The sender's MSS changed (PMTU). The window keeps its size in segments, as Linux's
   * packet-counted snd_cwnd does: cwnd and ssthresh are rescaled by new/old MSS.
   */
  setMss(mss: number): void;
  snapshot(): CongestionSnapshot;
}

/** RFC 6928: IW = initialCwndSegments * SMSS (Linux: 10 segments). */
export function createCongestionControl(
  algorithm: CongestionAlgorithm,
  mss: number,
  initialCwndSegments = 10,
): CongestionControl {
  if (!(Number.isSafeInteger(mss) && mss > 0)) {
    throw new RangeError(`MSS must be a positive integer, got ${mss}.`);
  }
  if (!(Number.isSafeInteger(initialCwndSegments) && initialCwndSegments > 0)) {
    throw new RangeError(
      `The initial window must be a positive number of segments, got ${initialCwndSegments}.`,
    );
  }
  switch (algorithm) {
    case 'newreno':
      return new NewReno(mss, initialCwndSegments);
    case 'cubic':
      return new Cubic(mss, initialCwndSegments);
    default:
      throw new RangeError(`Unknown congestion control '${algorithm}'; use 'newreno' or 'cubic'.`);
  }
}

export function restoreCongestionControl(s: CongestionSnapshot): CongestionControl {
  switch (s.algorithm) {
    case 'newreno':
      return NewReno.restore(s);
    case 'cubic':
      return Cubic.restore(s);
    default:
      throw new RangeError(`Unknown congestion control '${s.algorithm}' in snapshot.`);
  }
}

export { Cubic, NewReno };
