import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resetFor } from '../../src/tcp/reset.ts';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../src/wire/tcp.ts';
import { tcp } from '../support/build.ts';

describe('RST for a segment to no connection (RFC 9293 3.10.7.1)', () => {
  test('a SYN: <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>, ports swapped', () => {
    const r = resetFor(tcp({ srcPort: 5555, dstPort: 81, seq: 0xffff_ffff, flags: TCP_SYN }))!;
    assert.deepEqual(
      { src: r.srcPort, dst: r.dstPort, seq: r.seq, ack: r.ack, flags: r.flags, win: r.window },
      { src: 81, dst: 5555, seq: 0, ack: 0, flags: TCP_RST | TCP_ACK, win: 0 },
    );
  });

  test('data without ACK counts its length, FIN counts one', () => {
    const r = resetFor(tcp({ seq: 100, flags: TCP_PSH | TCP_FIN, payload: new Uint8Array(10) }))!;
    assert.equal(r.ack, 111);
    assert.equal(r.flags, TCP_RST | TCP_ACK);
  });

  test('a segment with ACK: <SEQ=SEG.ACK><CTL=RST>', () => {
    const r = resetFor(tcp({ seq: 7, ack: 0xdead_beef, flags: TCP_ACK, payload: new Uint8Array(3) }))!;
    assert.equal(r.seq, 0xdead_beef);
    assert.equal(r.ack, 0);
    assert.equal(r.flags, TCP_RST);
  });

  test('a RST is never answered', () => {
    assert.equal(resetFor(tcp({ flags: TCP_RST })), undefined);
    assert.equal(resetFor(tcp({ flags: TCP_RST | TCP_ACK })), undefined);
  });
});
