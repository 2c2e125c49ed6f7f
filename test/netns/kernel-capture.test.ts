/**
 * The codecs against the running kernel, not just the stored fixtures: capture anew in network
 * namespaces (scripts/capture-fixtures.sh into a temporary folder) and judge the capture the same
 * way. Needs root and the tools CI installs; skips with the reason otherwise.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { judgeKernelCapture } from '../support/kernel-capture.ts';

const script = new URL('../../scripts/capture-fixtures.sh', import.meta.url).pathname;

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (it creates network namespaces)';
  for (const tool of ['ip', 'tshark', 'ethtool', 'iptables', 'ping']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0)
      return `${tool} is not installed`;
  }
  if (spawnSync('/usr/bin/python3', ['-c', 'import scapy'], { stdio: 'ignore' }).status !== 0)
    return 'Debian python3-scapy is not installed';
  return undefined;
}

const dir = mkdtempSync(join(tmpdir(), 'takeover-capture-'));
after(() => rmSync(dir, { recursive: true, force: true }));

judgeKernelCapture('a fresh capture from the running kernel', () => {
  const why = missing();
  if (why) return why;
  const r = spawnSync('bash', [script], {
    env: { ...process.env, FIXTURE_OUT: dir },
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`capture failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return {
    pcap: new Uint8Array(readFileSync(join(dir, 'kernel.pcap'))),
    tsv: readFileSync(join(dir, 'kernel.fields.tsv'), 'utf8'),
  };
});
