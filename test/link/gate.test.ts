/**
 * GatedDevice: a standby's data link. Muted, it sends nothing and passes nothing to the stack;
 * frames that arrive then go to `onMutedReceive` (the standby listening); `sourceMac` rewrites
 * the source of every frame sent (the node's own MAC, so switches never learn the virtual one).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LinkDevice } from '../../src/link/device.ts';
import { GatedDevice } from '../../src/link/gate.ts';
import { macFromString, readMac } from '../../src/wire/address.ts';

function fakeDevice() {
  const sent: Uint8Array[] = [];
  let handler: ((frames: Uint8Array[]) => void) | undefined;
  const dev: LinkDevice = {
    mtu: 1500,
    send: (f) => {
      sent.push(f.slice());
    },
    flush: () => {},
    onReceive: (h) => {
      handler = h;
    },
    close: async () => {},
  };
  return { dev, sent, deliver: (frames: Uint8Array[]) => handler?.(frames) };
}

const frame = (src: string) => {
  const f = new Uint8Array(60);
  f.set([0x02, 0, 0, 0, 0, 0x01], 0);
  const m = macFromString(src)!;
  for (let i = 0; i < 6; i++) f[6 + i] = Math.floor(m / 2 ** (8 * (5 - i))) & 0xff;
  return f;
};

describe('GatedDevice', () => {
  test('muted: nothing sent, nothing passed on; what arrives goes to onMutedReceive', () => {
    const { dev, sent, deliver } = fakeDevice();
    const g = new GatedDevice(dev);
    const got: Uint8Array[] = [];
    const heard: Uint8Array[] = [];
    g.onReceive((fs) => got.push(...fs));
    g.send(frame('00:00:5e:00:01:01'));
    deliver([frame('02:00:00:00:00:09'), frame('02:00:00:00:00:0a')]);
    assert.equal(sent.length, 0);
    assert.equal(got.length, 0);
    assert.deepEqual(g.counters, {
      sendDropped: 1,
      receiveDropped: 2,
      leaseHeld: 0,
      leaseReleased: 0,
      leaseDropped: 0,
    });
    g.onMutedReceive = (f) => heard.push(f);
    deliver([frame('02:00:00:00:00:0b')]);
    assert.equal(heard.length, 1);
    assert.equal(got.length, 0);
    g.muted = false;
    deliver([frame('02:00:00:00:00:0c')]);
    assert.equal(got.length, 1);
    assert.equal(heard.length, 1, 'unmuted frames go to the stack only');
  });

  test('sourceMac: every frame sent leaves with it', () => {
    const { dev, sent } = fakeDevice();
    const g = new GatedDevice(dev);
    g.muted = false;
    g.send(frame('00:00:5e:00:01:01'));
    assert.equal(readMac(sent[0], 6), macFromString('00:00:5e:00:01:01'));
    g.sourceMac = macFromString('02:aa:bb:cc:dd:ee')!;
    g.send(frame('00:00:5e:00:01:01'));
    assert.equal(readMac(sent[1], 6), macFromString('02:aa:bb:cc:dd:ee'));
    assert.equal(readMac(sent[1], 0), macFromString('02:00:00:00:00:01'), 'the destination is untouched');
  });

  test('the lease: frames wait while it has lapsed, leave when it is renewed, are dropped when the node is muted; control frames pass', () => {
    const { dev, sent } = fakeDevice();
    let now = 1000;
    const g = new GatedDevice(dev, () => now);
    g.setMuted(false);
    g.setLease(2000);
    g.send(frame('00:00:5e:00:01:01'));
    assert.equal(sent.length, 1, 'within the lease');
    assert.equal(g.mayEmit, true);
    now = 2000;
    assert.equal(g.mayEmit, false, 'the lease ends at its deadline');
    g.send(frame('00:00:5e:00:01:01'));
    g.send(frame('00:00:5e:00:01:01'));
    assert.equal(sent.length, 1, 'held, not sent');
    g.sendControl(frame('02:00:00:00:00:07'));
    assert.equal(sent.length, 2, 'a beacon passes whatever the lease says');
    g.setLease(5000);
    assert.equal(sent.length, 4, 'renewed: the held frames leave');
    assert.equal(g.counters.leaseHeld, 2);
    assert.equal(g.counters.leaseReleased, 2);
    now = 6000;
    g.send(frame('00:00:5e:00:01:01'));
    g.setMuted(true);
    g.setLease(Number.POSITIVE_INFINITY);
    assert.equal(sent.length, 4, 'superseded: what was held is dropped');
    assert.equal(g.counters.leaseDropped, 1);
    g.setMuted(false);
    g.send(frame('00:00:5e:00:01:01'));
    assert.equal(sent.length, 5, 'no lease in force: +Infinity');
  });
});
