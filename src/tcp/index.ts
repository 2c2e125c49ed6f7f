/**
 * The TCP engine: one connection is one pure state machine (no I/O, no clock of its own).
 *
 *   const c = TcpConnection.connect({ localPort, remotePort, now, rng });
 *   c.poll(now, (seg) => send(seg));          // SYN out
 *   c.input(parsedSegment, now);              // whatever arrives
 *   c.write(bytes); c.read(); c.close();      // the application
 *   next = c.pollAt();                        // when to call poll again
 *
 * `ackLimit` / `sendLimit` hold acknowledgements and transmissions at stream offsets (the
 * replication layer's only coupling); `snapshot()` / `TcpConnection.restore()` move a live
 * connection as plain data.
 */
export { DEFAULT_TCP_CONFIG, type KeepAliveConfig, type TcpConfig, tcpConfig } from './config.ts';
export type { CongestionAlgorithm } from './congestion/index.ts';
export {
  type OpenOptions,
  type RandomSource,
  TcpConnection,
  type TcpCounters,
  type TcpSnapshot,
} from './connection.ts';
export { resetFor } from './reset.ts';
export { isSynchronized, type TcpErrorCode, TcpState } from './state.ts';
