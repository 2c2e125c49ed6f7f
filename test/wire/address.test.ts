import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  ipv4FromString,
  ipv4MulticastMac,
  ipv4ToString,
  ipv6FromString,
  ipv6MulticastMac,
  ipv6ToString,
  isMulticastMac,
  MAC_BROADCAST,
  macFromString,
  macToString,
  readMac,
  solicitedNodeMulticast,
  writeMac,
} from '../../src/wire/address.ts';
import { toHex } from '../../src/wire/bytes.ts';

describe('MAC addresses', () => {
  test('text, bytes and number agree', () => {
    const mac = macFromString('00:00:5e:00:01:2a')!;
    assert.equal(mac, 0x00005e00012a);
    assert.equal(macToString(mac), '00:00:5e:00:01:2a');
    const b = new Uint8Array(8);
    writeMac(b, 1, mac);
    assert.equal(toHex(b), '0000005e00012a00');
    assert.equal(readMac(b, 1), mac);
    assert.equal(macToString(MAC_BROADCAST), 'ff:ff:ff:ff:ff:ff');
    assert.equal(macFromString('00:00:5e:00:01'), undefined);
    assert.equal(macFromString('zz:00:5e:00:01:2a'), undefined);
  });

  test('group bit', () => {
    assert.ok(isMulticastMac(MAC_BROADCAST));
    assert.ok(isMulticastMac(macFromString('01:00:5e:00:00:01')!));
    assert.ok(isMulticastMac(macFromString('33:33:00:00:00:01')!));
    assert.ok(!isMulticastMac(macFromString('02:00:00:00:00:01')!));
    assert.ok(!isMulticastMac(macFromString('fe:ff:ff:ff:ff:ff')!));
  });

  test('property: write then read is identity', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), (mac) => {
        const b = new Uint8Array(6);
        writeMac(b, 0, mac);
        assert.equal(readMac(b, 0), mac);
        assert.equal(macFromString(macToString(mac)), mac);
      }),
    );
  });
});

describe('IPv4 addresses', () => {
  test('text form', () => {
    assert.equal(ipv4FromString('198.18.0.1'), 0xc6120001);
    assert.equal(ipv4ToString(0xc6120001), '198.18.0.1');
    assert.equal(ipv4ToString(0xffffffff), '255.255.255.255');
    for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', 'a.b.c.d', ''])
      assert.equal(ipv4FromString(bad), undefined);
  });

  test('multicast MAC (RFC 1112 6.4)', () => {
    assert.equal(macToString(ipv4MulticastMac(ipv4FromString('224.128.1.2')!)), '01:00:5e:00:01:02');
  });
});

describe('IPv6 addresses', () => {
  test('RFC 5952 canonical text', () => {
    const cases: [string, string][] = [
      ['fd00::1', 'fd00::1'],
      ['FD00:0:0:0:0:0:0:1', 'fd00::1'],
      ['::', '::'],
      ['::1', '::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['fe80::1:2:3:4', 'fe80::1:2:3:4'],
      ['::ffff:198.18.0.1', '::ffff:c612:1'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ];
    for (const [input, want] of cases) assert.equal(ipv6ToString(ipv6FromString(input)!), want, input);
    for (const bad of [':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '1:2:3:4:5:6:7', '']) {
      assert.equal(ipv6FromString(bad), undefined, bad);
    }
  });

  test('solicited-node group and its MAC (RFC 4291 2.7.1, RFC 2464 7)', () => {
    const sn = solicitedNodeMulticast(ipv6FromString('fd00::12:3456')!);
    assert.equal(ipv6ToString(sn), 'ff02::1:ff12:3456');
    assert.equal(macToString(ipv6MulticastMac(sn)), '33:33:ff:12:34:56');
  });

  test('property: text round trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (a) => {
        assert.deepEqual(ipv6FromString(ipv6ToString(a)), a);
      }),
    );
  });
});
