/**
 * The example configs (`takeover node|relay --example-config`) are valid: printed by the CLI,
 * parsed by the node's and the relay's checkers (with `./key` present, from the repository root
 * so that the node's application module is found).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, parseNodeConfig } from '../../src/cli/config.ts';
import { parseRelayConfig } from '../../src/relay/config.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');

function printed(cmd: 'node' | 'relay'): unknown {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, cmd, '--example-config'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('example configs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'takeover-examples-'));
  writeFileSync(join(dir, 'key'), 'ab'.repeat(32));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('takeover node --example-config is a valid node config', () => {
    const raw = printed('node') as { replication: { keyFile: string } };
    raw.replication.keyFile = join(dir, 'key');
    const c = parseNodeConfig(raw, ROOT);
    assert.ok(!(c instanceof ConfigError), c instanceof ConfigError ? c.message : '');
  });

  test('takeover relay --example-config is a valid relay config', () => {
    const c = parseRelayConfig(printed('relay'), dir);
    assert.ok(!(c instanceof ConfigError), c instanceof ConfigError ? c.message : '');
    assert.equal(c.relay.backends[0].servers.length, 2);
  });
});
