/**
 * The reply to a segment that belongs to no connection (RFC 9293 3.10.7.1, CLOSED state):
 * - a RST is never answered;
 * - a segment with ACK draws <SEQ=SEG.ACK><CTL=RST>;
 * - otherwise <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where SYN and FIN each count one.
 */
import { seqAdd } from '../wire/seq.ts';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type TcpSegment, tcpSegment } from '../wire/tcp.ts';

export function resetFor(seg: TcpSegment): TcpSegment | undefined {
  if (seg.flags & TCP_RST) return undefined;
  const hasAck = (seg.flags & TCP_ACK) !== 0;
  const len = seg.payload.length + (seg.flags & TCP_SYN ? 1 : 0) + (seg.flags & TCP_FIN ? 1 : 0);
  return tcpSegment({
    srcPort: seg.dstPort,
    dstPort: seg.srcPort,
    seq: hasAck ? seg.ack : 0,
    ack: hasAck ? 0 : seqAdd(seg.seq, len),
    flags: hasAck ? TCP_RST : TCP_RST | TCP_ACK,
  });
}
