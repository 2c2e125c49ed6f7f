/**
 * The relay's config (src/relay/config.ts): a valid file and its defaults, every error at once
 * with the field and the fix (the node's and the relay's together), the CLI refusing a bad file
 * with exit 2 before it opens anything, and the JSON Schema export.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, nodeJsonSchema } from '../../src/cli/config.ts';
import { parseRelayConfig, relayJsonSchema } from '../../src/relay/config.ts';
import { ipFromString } from '../../src/stack/ip.ts';

const dir = mkdtempSync(join(tmpdir(), 'takeover-relay-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function valid(): Record<string, unknown> {
  return {
    nodeId: 'a',
    role: 'active',
    tap: { name: 'tka' },
    vip: ['198.18.0.100/24', '198.18.3.100/24', 'fd00::100/64'],
    replication: {
      listen: '198.18.1.1:7400',
      peer: '198.18.1.2:7400',
      key: '00112233445566778899aabbccddeeff',
    },
    source: ['198.18.3.100'],
    frontends: [{ name: 'redis', bind: ['198.18.0.100:6379', '[fd00::100]:6379'], backend: 'redis' }],
    backends: [
      {
        name: 'redis',
        servers: [
          { name: 'r1', address: '198.18.3.10:6379', weight: 3 },
          { name: 'r2', address: '198.18.3.11:6379', backup: true },
        ],
        health: { send: 'PING\r\n', expect: '+PONG' },
      },
    ],
  };
}

function errorsOf(raw: unknown): string[] {
  const r = parseRelayConfig(raw, dir);
  assert.ok(r instanceof ConfigError, 'expected errors');
  return r.errors;
}

describe('relay config', () => {
  test('a valid config, with the defaults filled in', () => {
    const r = parseRelayConfig(valid(), dir);
    if (r instanceof ConfigError) assert.fail(r.message);
    assert.equal(r.app.module, 'relay');
    assert.deepEqual(r.relay.source, [ipFromString('198.18.3.100')]);
    assert.equal(r.relay.frontends[0].maxconn, 10_000);
    assert.deepEqual(r.relay.frontends[0].bind[1], { host: ipFromString('fd00::100'), port: 6379 });
    const b = r.relay.backends[0];
    assert.equal(b.balance, 'roundrobin');
    assert.equal(b.retries, 3);
    assert.equal(b.proxyProtocol, 'off');
    assert.deepEqual(b.servers[1], {
      name: 'r2',
      host: ipFromString('198.18.3.11'),
      port: 6379,
      weight: 1,
      backup: true,
    });
    // The backend's checks over the top-level defaults.
    assert.deepEqual(b.health, {
      intervalMs: 2000,
      timeoutMs: 1000,
      rise: 2,
      fall: 3,
      send: 'PING\r\n',
      expect: '+PONG',
    });
    assert.deepEqual(r.relay.timeouts, { connectMs: 5000, clientMs: 0, serverMs: 0 });
  });

  test('checks are opt-in: a backend without health is not checked, unless the top-level health is given', () => {
    const raw = valid();
    (raw.backends as Record<string, unknown>[]).push({
      name: 'plain',
      servers: [{ name: 'x', address: '198.18.3.20:80' }],
    });
    let r = parseRelayConfig(raw, dir);
    if (r instanceof ConfigError) assert.fail(r.message);
    assert.equal(r.relay.backends[1].health, undefined);
    raw.health = { intervalMs: 500 };
    r = parseRelayConfig(raw, dir);
    if (r instanceof ConfigError) assert.fail(r.message);
    assert.deepEqual(r.relay.backends[1].health, { intervalMs: 500, timeoutMs: 1000, rise: 2, fall: 3 });
    assert.equal(r.relay.backends[0].health?.intervalMs, 500);
  });

  test("the issue's bad inputs, and the node's, all reported at once, each naming its field and the fix", () => {
    const raw = valid();
    (raw.frontends as unknown[]).push({ name: 'dup', bind: ['198.18.0.100:6379'], backend: 'nope' });
    (raw.frontends as unknown[]).push({ name: 'port', bind: ['198.18.0.100:70000'], backend: 'redis' });
    ((raw.backends as { servers: unknown[] }[])[0].servers as unknown[]).push({
      name: 'bad',
      address: '10.0.0:80',
    });
    raw.replication = {
      listen: '198.18.1.1:7400',
      peer: '198.18.1.2:7400',
      key: '00112233445566778899aabbccddeeff',
      mode: 'fast',
    };
    const e = errorsOf(raw);
    const has = (field: string, text: RegExp) =>
      assert.ok(
        e.some((x) => x.startsWith(`config field "${field}"`) && text.test(x)),
        `no error for ${field} matching ${text}:\n${e.join('\n')}`,
      );
    has(
      'frontends[1].bind[0]',
      /bound already by frontends\[0\]\.bind\[0\]; bind each address and port once/,
    );
    has('frontends[1].backend', /no backend is named "nope"; the backends are "redis"/);
    has('frontends[2].bind[0]', /port from 1 to 65535; got "198.18.0.100:70000"\. Example/);
    has('backends[0].servers[2].address', /must be "address:port"/);
    has('replication.mode', /./);
    assert.equal(e.length, 5, e.join('\n'));
  });

  test('binds and sources must be virtual addresses; a server needs a source of its family; unknown fields are named', () => {
    const raw = valid();
    raw.source = ['198.18.3.99'];
    (raw.frontends as { bind: string[] }[])[0].bind.push('198.18.0.7:80');
    (raw.backends as { servers: unknown[] }[])[0].servers.push({ name: 'v6', address: '[fd00::9]:6379' });
    (raw.backends as Record<string, unknown>[])[0].balanse = 'source';
    const e = errorsOf(raw);
    assert.ok(
      e.some((x) => x.startsWith('config field "source[0]"') && /not one of "vip"/.test(x)),
      e.join('\n'),
    );
    assert.ok(
      e.some((x) => x.startsWith('config field "frontends[0].bind[2]"') && /not one of "vip"/.test(x)),
      e.join('\n'),
    );
    assert.ok(
      e.some((x) => x.startsWith('config field "backends[0].servers[2].address"') && /IPv6 family/.test(x)),
      e.join('\n'),
    );
    assert.ok(
      e.some((x) => x.startsWith('config field "backends[0].balanse"') && /unknown field/.test(x)),
      e.join('\n'),
    );
  });

  test('an app field is refused: the relay is the application', () => {
    const raw = valid();
    raw.app = { module: './x.ts' };
    assert.ok(errorsOf(raw).some((x) => x.startsWith('config field "app"')));
  });

  test('takeover relay with a bad file: exit 2, the errors on stderr, nothing started (no root needed)', () => {
    const raw = valid();
    (raw.frontends as { backend: string }[])[0].backend = 'redsi';
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify(raw));
    const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'relay', '--config', file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /config field "frontends\[0\]\.backend": no backend is named "redsi"/);
    assert.doesNotMatch(r.stderr, /TAP|tun/i);
  });

  test('takeover config schema node|relay prints the JSON Schema of the whole file (one zod declaration)', () => {
    const s = relayJsonSchema() as { properties: Record<string, unknown>; required: string[] };
    const relayOwn = ['backends', 'frontends', 'health', 'source', 'timeouts'];
    const nodeOwn = Object.keys((nodeJsonSchema() as { properties: Record<string, unknown> }).properties);
    assert.deepEqual(
      Object.keys(s.properties).sort(),
      [...nodeOwn.filter((k) => k !== 'app'), ...relayOwn].sort(),
    );
    assert.ok(nodeOwn.includes('replication') && nodeOwn.includes('tcp') && nodeOwn.includes('arbiter'));
    assert.ok(s.required.includes('nodeId') && s.required.includes('frontends'));
    for (const kind of ['node', 'relay'] as const) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'config', 'schema', kind], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), kind === 'node' ? nodeJsonSchema() : s);
    }
  });
});
