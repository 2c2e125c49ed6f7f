/**
 * Software generic segmentation: cuts a GSO frame (see LinkDevice.gsoMaxFrame) into the TCP
 * segments a kernel would put on the wire for it, as Linux's tcp_gso_segment and
 * inet_gso_segment do: every piece gets a copy of the headers; seq advances by the payload before
 * it; the IPv4 ident counts up from the first; PSH and FIN stay only on the last piece and CWR only
 * on the first; every checksum is complete.
 *
 * For links that do not segment themselves (the simulator, tests) and for checking what a GSO
 * frame means.
 */
import { readU16, readU32, writeU16, writeU32 } from '../wire/bytes.ts';
import { finishChecksum, fold, onesSum, pseudoHeaderSumV4, pseudoHeaderSumV6 } from '../wire/checksum.ts';

const ETH = 14;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/**
 * The segments of `frame` (Ethernet, then IPv4 without options or IPv6 without extension headers,
 * then TCP) cut at `segmentSize` payload bytes, each a new buffer. Undefined when the frame is not
 * such a frame, its checksum field is not the partial sum, or `segmentSize` is not positive.
 */
export function segmentTcpFrame(frame: Uint8Array, segmentSize: number): Uint8Array[] | undefined {
  if (!(Number.isInteger(segmentSize) && segmentSize > 0) || frame.length < ETH + 40) return undefined;
  const etherType = readU16(frame, 12);
  let v4: boolean;
  if (etherType === 0x0800 && frame[ETH] === 0x45 && frame[ETH + 9] === 6) v4 = true;
  else if (etherType === 0x86dd && frame[ETH] >> 4 === 6 && frame[ETH + 6] === 6) v4 = false;
  else return undefined;
  const tcpAt = ETH + (v4 ? 20 : 40);
  if (frame.length < tcpAt + 20) return undefined;
  const hdrEnd = tcpAt + (frame[tcpAt + 12] >> 4) * 4;
  if (hdrEnd < tcpAt + 20 || hdrEnd > frame.length) return undefined;
  // The checksum field must hold the folded pseudo-header sum over the whole TCP length (what a
  // kernel adjusts per piece); anything else would leave the wire with a bad checksum.
  const total = frame.length - tcpAt;
  const whole = v4
    ? pseudoHeaderSumV4(readU32(frame, ETH + 12), readU32(frame, ETH + 16), 6, total)
    : pseudoHeaderSumV6(frame.subarray(ETH + 8, ETH + 24), frame.subarray(ETH + 24, ETH + 40), 6, total);
  if (readU16(frame, tcpAt + 16) !== fold(whole)) return undefined;
  const payload = frame.length - hdrEnd;
  const count = Math.max(1, Math.ceil(payload / segmentSize));
  const seq0 = readU32(frame, tcpAt + 4);
  const flags = frame[tcpAt + 13];
  const ident0 = v4 ? readU16(frame, ETH + 4) : 0;
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const from = hdrEnd + i * segmentSize;
    const n = Math.min(segmentSize, frame.length - from);
    const seg = new Uint8Array(hdrEnd + n);
    seg.set(frame.subarray(0, hdrEnd));
    seg.set(frame.subarray(from, from + n), hdrEnd);
    writeU32(seg, tcpAt + 4, (seq0 + i * segmentSize) >>> 0);
    let f = flags;
    if (i < count - 1) f &= ~(TCP_PSH | TCP_FIN);
    if (i > 0) f &= ~TCP_CWR;
    seg[tcpAt + 13] = f;
    const l4 = hdrEnd - tcpAt + n;
    let pseudo: number;
    if (v4) {
      writeU16(seg, ETH + 2, 20 + l4);
      writeU16(seg, ETH + 4, (ident0 + i) & 0xffff);
      writeU16(seg, ETH + 10, 0);
      writeU16(seg, ETH + 10, finishChecksum(onesSum(seg, ETH, ETH + 20)));
      pseudo = pseudoHeaderSumV4(readU32(seg, ETH + 12), readU32(seg, ETH + 16), 6, l4);
    } else {
      writeU16(seg, ETH + 4, l4);
      pseudo = pseudoHeaderSumV6(seg.subarray(ETH + 8, ETH + 24), seg.subarray(ETH + 24, ETH + 40), 6, l4);
    }
    writeU16(seg, tcpAt + 16, 0);
    writeU16(seg, tcpAt + 16, finishChecksum(onesSum(seg, tcpAt, seg.length, pseudo)));
    out.push(seg);
  }
  return out;
}
