/**
 * Per-connection settings. Defaults follow Linux where the issue asks for its behaviour
 * (RTO bounds, delayed ACK, initial window) and RFC 9293 elsewhere.
 */
import type { CongestionAlgorithm } from './congestion/index.ts';

export interface KeepAliveConfig {
  /** Idle time before the first probe (µs). Linux default 7200 s. */
  idleUs: number;
  /** Between unanswered probes (µs). Linux default 75 s. */
  intervalUs: number;
  /** Unanswered probes before the connection is dropped with ETIMEDOUT. Linux default 9. */
  count: number;
}

export interface TcpConfig {
  /** MSS we advertise and the largest we send (bytes of payload). Derived from the MTU by the stack. */
  mss: number;
  /** MSS assumed when the peer's SYN carries none (RFC 9293 3.7.1: 536 for IPv4, 1220 for IPv6). */
  defaultPeerMss: number;
  /** Send buffer: bytes written and not yet acknowledged. */
  sendBufferSize: number;
  /** Receive buffer: in-order unread bytes plus out-of-order bytes held; bounds the advertised window. */
  recvBufferSize: number;
  windowScale: boolean;
  timestamps: boolean;
  sack: boolean;
  congestion: CongestionAlgorithm;
  /** Initial congestion window in segments (RFC 6928). */
  initialCwndSegments: number;
  /** Disable Nagle (RFC 9293 3.7.4): send small segments at once. */
  noDelay: boolean;
  /** Longest delay of an ACK (µs). Linux: 40 ms. */
  delayedAckUs: number;
  minRtoUs: number;
  maxRtoUs: number;
  initialRtoUs: number;
  /** TIME-WAIT duration, 2*MSL (µs). Linux: 60 s. */
  timeWaitUs: number;
  /** SYN or SYN-ACK retransmissions before giving up (Linux tcp_syn_retries = 6). */
  synRetries: number;
  /** Data retransmissions before giving up (Linux tcp_retries2 = 15). */
  maxRetransmissions: number;
  /** RFC 5482 user timeout (µs): abort when sent data stays unacknowledged this long. 0: off. */
  userTimeoutUs: number;
  keepAlive: KeepAliveConfig | undefined;
  /** RFC 5961 10: at most one challenge ACK per this interval (µs) per connection (Linux tcp_invalid_ratelimit: 500 ms). */
  challengeAckIntervalUs: number;
  /** RFC 3042 limited transmit. */
  limitedTransmit: boolean;
}

export const DEFAULT_TCP_CONFIG: Readonly<TcpConfig> = Object.freeze({
  mss: 1460,
  defaultPeerMss: 536,
  sendBufferSize: 4 * 1024 * 1024,
  recvBufferSize: 4 * 1024 * 1024,
  windowScale: true,
  timestamps: true,
  sack: true,
  congestion: 'cubic',
  initialCwndSegments: 10,
  noDelay: false,
  delayedAckUs: 40_000,
  minRtoUs: 200_000,
  maxRtoUs: 120_000_000,
  initialRtoUs: 1_000_000,
  timeWaitUs: 60_000_000,
  synRetries: 6,
  maxRetransmissions: 15,
  userTimeoutUs: 0,
  keepAlive: undefined,
  challengeAckIntervalUs: 500_000,
  limitedTransmit: true,
});

/** Defaults overridden by `over`; a value out of range throws one sentence naming the field and the fix. */
export function tcpConfig(over: Partial<TcpConfig> = {}): TcpConfig {
  const c: TcpConfig = { ...DEFAULT_TCP_CONFIG, ...over };
  const int = (name: keyof TcpConfig, lo: number, hi: number) => {
    const v = c[name] as number;
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new RangeError(`tcp config: ${name} must be an integer from ${lo} to ${hi} (got ${String(v)}).`);
  };
  int('mss', 88, 65495);
  int('defaultPeerMss', 88, 65495);
  int('sendBufferSize', 1, 2 ** 30);
  int('recvBufferSize', 1, 2 ** 30);
  int('initialCwndSegments', 1, 1000);
  int('delayedAckUs', 0, 500_000);
  int('minRtoUs', 1000, 2 ** 40);
  int('maxRtoUs', c.minRtoUs, 2 ** 40);
  int('initialRtoUs', c.minRtoUs, c.maxRtoUs);
  int('timeWaitUs', 0, 2 ** 40);
  int('synRetries', 0, 255);
  int('maxRetransmissions', 1, 255);
  int('userTimeoutUs', 0, 2 ** 40);
  int('challengeAckIntervalUs', 0, 2 ** 40);
  if (c.congestion !== 'cubic' && c.congestion !== 'newreno')
    throw new RangeError(
      `tcp config: congestion must be 'cubic' or 'newreno' (got ${String(c.congestion)}).`,
    );
  if (c.keepAlive) {
    const k = c.keepAlive;
    if (!(k.idleUs > 0 && k.intervalUs > 0 && Number.isInteger(k.count) && k.count >= 1))
      throw new RangeError(
        'tcp config: keepAlive needs idleUs > 0, intervalUs > 0 and an integer count >= 1.',
      );
  }
  return c;
}
