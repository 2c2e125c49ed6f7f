/**
 * The systemd units in deploy/systemd/ (docs/DEPLOYMENT.md): systemd itself reads them without a
 * warning, and they grant the node what the capability test runs it with
 * (test/netns/capabilities.test.ts), under the status socket's directory the config defaults to.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { NODE_CONFIG_DEFAULTS } from '../../src/cli/config.ts';

const DIR = new URL('../../deploy/systemd/', import.meta.url).pathname;
const UNITS = [
  ['takeover@.service', 'node'],
  ['takeover-relay@.service', 'relay'],
] as const;
const analyze = spawnSync('systemd-analyze', ['--version']);
const noSystemd = analyze.error ? 'needs systemd-analyze (Debian package systemd)' : undefined;

describe('systemd units', () => {
  test(
    'systemd-analyze verify reads each unit (an instance of the template) without a warning',
    { skip: noSystemd },
    () => {
      const tmp = mkdtempSync(join(tmpdir(), 'takeover-units-'));
      try {
        for (const [unit] of UNITS) copyFileSync(join(DIR, unit), join(tmp, unit));
        const r = spawnSync(
          'systemd-analyze',
          ['verify', '--man=no', ...UNITS.map(([u]) => join(tmp, u.replace('@.', '@a.')))],
          { encoding: 'utf8' },
        );
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stderr.trim(), '', 'systemd-analyze said something about the units');
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    },
  );

  test('each runs its command with the instance config, CAP_NET_ADMIN and CAP_BPF only, and owns the status socket directory', () => {
    for (const [unit, cmd] of UNITS) {
      const text = readFileSync(join(DIR, unit), 'utf8');
      const key = (k: string) => [...text.matchAll(new RegExp(`^${k}=(.*)$`, 'gm'))].map((m) => m[1]);
      assert.deepEqual(key('ExecStart'), [`/usr/bin/env takeover ${cmd} --config /etc/takeover/%i.json`]);
      assert.deepEqual(key('AmbientCapabilities'), ['CAP_NET_ADMIN CAP_BPF']);
      assert.deepEqual(key('CapabilityBoundingSet'), ['CAP_NET_ADMIN CAP_BPF']);
      assert.deepEqual(key('User'), ['takeover']);
      assert.equal(`/run/${key('RuntimeDirectory')[0]}`, NODE_CONFIG_DEFAULTS.statusDir);
      assert.deepEqual(key('RestartPreventExitStatus'), ['2'], 'a bad config (exit 2) is not restarted');
    }
  });
});
