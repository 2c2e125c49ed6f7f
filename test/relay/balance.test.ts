/**
 * Server choice (src/relay/balance.ts) and the PROXY header (src/relay/proxy.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { candidates, pick, type ServerState } from '../../src/relay/balance.ts';
import { proxyHeader } from '../../src/relay/proxy.ts';
import { ipFromString } from '../../src/stack/ip.ts';

function servers(...specs: [string, number, boolean?][]): ServerState[] {
  return specs.map(([name, weight, backup]) => ({
    cfg: { name, host: ipFromString('198.18.3.10')!, port: 1, weight, backup: backup ?? false },
    up: true,
    active: 0,
    current: 0,
  }));
}

describe('balance', () => {
  test('roundrobin follows the weights, smoothly (no run of one server)', () => {
    const list = servers(['a', 5], ['b', 1], ['c', 1]);
    const seq = Array.from({ length: 7 }, () => pick(list, 'roundrobin', '').cfg.name).join('');
    assert.equal([...seq].filter((x) => x === 'a').length, 5);
    assert.equal([...seq].filter((x) => x === 'b').length, 1);
    assert.doesNotMatch(seq, /aaaa/);
  });

  test('leastconn: fewest open connections per weight', () => {
    const list = servers(['a', 1], ['b', 2]);
    list[0].active = 2;
    list[1].active = 3;
    assert.equal(pick(list, 'leastconn', '').cfg.name, 'b');
    list[1].active = 5;
    assert.equal(pick(list, 'leastconn', '').cfg.name, 'a');
  });

  test('source: one client address, one server; addresses spread', () => {
    const list = servers(['a', 1], ['b', 1], ['c', 1]);
    const first = pick(list, 'source', '198.18.0.1').cfg.name;
    for (let i = 0; i < 5; i++) assert.equal(pick(list, 'source', '198.18.0.1').cfg.name, first);
    const seen = new Set(
      Array.from({ length: 60 }, (_, i) => pick(list, 'source', `198.18.0.${i}`).cfg.name),
    );
    assert.equal(seen.size, 3);
  });

  test('backups only when no other server is up; down and tried servers are skipped', () => {
    const list = servers(['a', 1], ['b', 1], ['spare', 1, true]);
    assert.deepEqual(
      candidates(list, new Set()).map((s) => s.cfg.name),
      ['a', 'b'],
    );
    list[0].up = false;
    assert.deepEqual(
      candidates(list, new Set([list[1]])).map((s) => s.cfg.name),
      ['spare'],
    );
    list[2].up = false;
    assert.deepEqual(candidates(list, new Set([list[1]])), []);
  });
});

describe('PROXY header', () => {
  const ends = (c: string, l: string) => ({
    client: ipFromString(c)!,
    clientPort: 40000,
    local: ipFromString(l)!,
    localPort: 6379,
  });

  test('v1 (text), IPv4 and IPv6', () => {
    assert.equal(
      new TextDecoder().decode(proxyHeader('v1', ends('198.18.0.1', '198.18.0.100'))),
      'PROXY TCP4 198.18.0.1 198.18.0.100 40000 6379\r\n',
    );
    assert.equal(
      new TextDecoder().decode(proxyHeader('v1', ends('fd00::1', 'fd00::100'))),
      'PROXY TCP6 fd00::1 fd00::100 40000 6379\r\n',
    );
  });

  test('v2 (binary): signature, PROXY command, TCP over IPv4, addresses and ports', () => {
    const h = proxyHeader('v2', ends('198.18.0.1', '198.18.0.100'));
    assert.deepEqual(
      [...h],
      [
        ...[0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a],
        ...[0x21, 0x11, 0x00, 12],
        ...[198, 18, 0, 1, 198, 18, 0, 100],
        ...[0x9c, 0x40, 0x18, 0xeb],
      ],
    );
    const h6 = proxyHeader('v2', ends('fd00::1', 'fd00::100'));
    assert.equal(h6[13], 0x21);
    assert.equal(h6.length, 16 + 36);
  });
});
