/**
 * Reference frames for benchmarks: a full-sized TCP/IPv4 data segment and a bare ACK, both with
 * the timestamp option as Linux sends them.
 */
import { ipv4FromString, macFromString } from '../src/wire/address.ts';
import { TCP_ACK, TCP_PSH } from '../src/wire/tcp.ts';
import { encode, frame, ipv4, tcp } from '../test/support/build.ts';

function tcpFrame(payload: Uint8Array, flags: number): Uint8Array {
  return encode(
    frame(macFromString('02:00:00:00:00:02')!, macFromString('00:00:5e:00:01:01')!, {
      ipv4: ipv4({ src: ipv4FromString('198.18.0.10')!, dst: ipv4FromString('198.18.0.1')!, ident: 0x4242 }),
      tcp: tcp({
        srcPort: 443,
        dstPort: 51234,
        seq: 0xfffff000,
        ack: 0x12345678,
        flags,
        window: 501,
        tsVal: 0x01020304,
        tsEcr: 0x0a0b0c0d,
        payload,
      }),
    }),
  );
}

/** A 1,514-byte Ethernet frame: IPv4 (1,500 bytes) carrying TCP with timestamps and 1,448 data bytes. */
export function dataSegmentFrame(): Uint8Array {
  const data = new Uint8Array(1448);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
  return tcpFrame(data, TCP_ACK | TCP_PSH);
}

/** A 66-byte Ethernet frame: a pure ACK with timestamps (NOP, NOP, TS). */
export function ackFrame(): Uint8Array {
  return tcpFrame(new Uint8Array(0), TCP_ACK);
}
