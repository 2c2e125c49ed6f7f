/**
 * A pair run the way deploy/systemd/takeover@.service runs it: an unprivileged user (nobody) with
 * CAP_NET_ADMIN and CAP_BPF only, no root. Both nodes open their TAP, attach the kernel fence,
 * serve and replicate; the active is killed under load and the standby takes over byte-exact.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertClean, HaPair, NODE_CAPS } from './ha-pair.ts';
import { rootSkipReason, Topology } from './harness.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const NOBODY = { uid: 65534, gid: 65534 };
const TUN = '/dev/net/tun';

/** Why nobody cannot run the node from this checkout (a clone under /root, say), if so. */
function unreadableReason(): string | undefined {
  const tsx = createRequire(join(ROOT, 'package.json')).resolve('tsx/package.json');
  const files = [join(ROOT, 'src/cli/main.ts'), join(ROOT, 'examples/all.ts'), tsx];
  const r = spawnSync('setpriv', [
    `--reuid=${NOBODY.uid}`,
    `--regid=${NOBODY.gid}`,
    '--clear-groups',
    'sh',
    '-c',
    'for f in "$@"; do test -r "$f" || exit 1; done',
    'sh',
    ...files,
  ]);
  if (r.error) return `needs setpriv (util-linux): ${r.error.message}`;
  return r.status === 0 ? undefined : `the checkout is not readable by nobody (uid ${NOBODY.uid}): ${ROOT}`;
}

const skip = rootSkipReason(['curl', 'setpriv']) ?? unreadableReason();

/** Effective capabilities and real/effective uid of a running process, from /proc. */
function procIdentity(pid: number): { uid: string; capEff: bigint } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uid = /^Uid:\s+(.*)$/m.exec(st)?.[1] ?? '';
  const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(st)?.[1] ?? '0'}`);
  return { uid, capEff };
}

/** capability(7) numbers of the capabilities the node is given. */
const CAP_BITS: Record<string, number> = { net_admin: 12, bpf: 39 };

describe('a pair run as nobody with CAP_NET_ADMIN and CAP_BPF only (the systemd unit)', { skip }, () => {
  let topo: Topology | undefined;
  let pair: HaPair | undefined;
  let dir = '';
  /** /dev/net/tun's mode before the test, when the test had to open it to others. */
  let tunMode: number | undefined;
  before(async () => {
    // udev makes it 0666 on a distribution (50-udev-default.rules); a minimal VM may leave it
    // 0600, which no capability but CAP_DAC_OVERRIDE gets past: opened for the test, restored.
    const mode = statSync(TUN).mode & 0o777;
    if ((mode & 0o006) !== 0o006) {
      tunMode = mode;
      chmodSync(TUN, 0o666);
    }
    dir = mkdtempSync(join(tmpdir(), 'takeover-caps-'));
    topo = await Topology.create({ prefix: 'tkc' });
    pair = await HaPair.create(topo, dir, { runAs: NOBODY });
    await pair.start('a');
    await pair.start('b');
    await pair.synced('b');
  });
  after(async () => {
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (tunMode !== undefined) chmodSync(TUN, tunMode);
  });

  test('both nodes run as nobody with exactly those capabilities, the kernel fence attached; kill -9 of the active under load: every byte arrives, no RST', async () => {
    assert.ok(pair);
    const want = NODE_CAPS.reduce((m, c) => m | (1n << BigInt(CAP_BITS[c])), 0n);
    for (const n of ['a', 'b']) {
      const pid = pair.pidOf(n);
      assert.ok(pid, `${n} runs`);
      const id = procIdentity(pid);
      assert.match(id.uid, new RegExp(`^${NOBODY.uid}\\s+${NOBODY.uid}\\s`), `${n}'s uids: ${id.uid}`);
      assert.equal(id.capEff, want, `${n}'s effective capabilities: 0x${id.capEff.toString(16)}`);
      const st = await pair.status(n);
      assert.match(st.lease?.kernelFence ?? '', /^(tcx|tc)$/, `${n}: ${pair.logs()}`);
    }
    const o = await pair.round('a', 'b', 1, {
      echoBytes: 20e6,
      httpConnections: 20,
      httpRequests: 10,
      curlBytes: 5_000_000,
    });
    assertClean(o);
    assert.ok(o.restored > 0, 'the take-over restored live connections');
  });
});
