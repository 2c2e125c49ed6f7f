/** RFC 9293 3.3.2 connection states (LISTEN lives in the stack's listener, not in a connection). */
export enum TcpState {
  Closed = 'CLOSED',
  SynSent = 'SYN-SENT',
  SynReceived = 'SYN-RECEIVED',
  Established = 'ESTABLISHED',
  FinWait1 = 'FIN-WAIT-1',
  FinWait2 = 'FIN-WAIT-2',
  CloseWait = 'CLOSE-WAIT',
  Closing = 'CLOSING',
  LastAck = 'LAST-ACK',
  TimeWait = 'TIME-WAIT',
}

/** States in which the connection is synchronized (RFC 9293 3.5.2 "synchronized states"). */
export function isSynchronized(s: TcpState): boolean {
  return s !== TcpState.Closed && s !== TcpState.SynSent && s !== TcpState.SynReceived;
}

/** Why a connection ended abnormally, named as node:net names them. */
export type TcpErrorCode =
  | 'ECONNRESET'
  | 'ECONNREFUSED'
  | 'ETIMEDOUT'
  | 'EHOSTUNREACH'
  | 'ENETUNREACH'
  | 'ECONNABORTED';
