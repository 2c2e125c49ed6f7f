/**
 * `takeover status`'s text: role, peer, lag and the last take-over with what detected it and the
 * stall the node saw. The status socket's protocol (`status`, `switchover`, anything else) and
 * `takeover switchover` against it, with the node's answers played by the test.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type NodeStatus, serveStatus } from '../../src/cli/node.ts';
import { askSwitchover, formatStatus, queryStatus, runSwitchover } from '../../src/cli/status.ts';

const base: NodeStatus = {
  nodeId: 'b',
  role: 'active',
  epoch: 2,
  mode: 'sync',
  peer: 'none',
  synced: false,
  degraded: true,
  connections: 202,
  rssMB: 180,
  replication: { lsn: 0, inFlight: 0, batches: 0, bytes: 0, lagBatches: 0 },
  mirror: { connections: 0, bytes: 0, lsn: 0 },
  lastTakeover: null,
};

describe('takeover status text', () => {
  test('no take-over yet', () => {
    const t = formatStatus(base);
    assert.match(t, /^role {8}active \(degraded: no standby holds the connections\)$/m);
    assert.match(t, /^last take-over none$/m);
    assert.match(t, /^memory {6}180 MB resident$/m);
  });

  test('the last take-over: cause, detection, restore, and the stall once connections moved', () => {
    const lt = {
      at: '2026-11-27T16:00:00.000Z',
      cause: 'link closed' as const,
      detectionMs: 0.4,
      stallMs: null,
      resumed: 0,
      connections: 202,
      epoch: 2,
      restoreMs: 31.5,
      resumeMs: [],
    };
    let t = formatStatus({ ...base, lastTakeover: lt });
    assert.match(
      t,
      /last take-over 2026-11-27T16:00:00\.000Z, epoch 2: 202 connection\(s\) restored in 31\.5 ms/,
    );
    assert.match(t, /detected 0\.4 ms after the active's last word \(link closed\)/);
    assert.match(t, /no peer has acknowledged output pending at the take-over yet/);
    t = formatStatus({ ...base, lastTakeover: { ...lt, stallMs: 137.2, resumed: 201 } });
    assert.match(
      t,
      /201 connection\(s\) with output pending had it acknowledged, the last 137\.2 ms after that word/,
    );
  });
});

/** Sends `text` raw to the socket (then ends), resolves with the whole answer. */
function raw(path: string, text: string, end = true): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(path);
    let got = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error('no answer in 3 s'));
    }, 3000);
    c.on('connect', () => (end ? c.end(text) : c.write(text)));
    c.on('data', (d) => {
      got += d.toString();
    });
    c.on('error', reject);
    c.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

/** Runs `fn` with console.log/error captured; returns its result and what it printed. */
async function captured(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const log = console.log;
  const err = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(' '));
  console.error = (...a: unknown[]) => out.push(a.join(' '));
  try {
    return { code: await fn(), out: out.join('\n') };
  } finally {
    console.log = log;
    console.error = err;
  }
}

test('the last switchover this node handed over', () => {
  const t = formatStatus({
    ...base,
    role: 'standby',
    lastSwitchover: { at: '2026-12-05T08:00:00.000Z', epoch: 3, connections: 202, heldMs: 0.4 },
  });
  assert.match(
    t,
    /^switchover {2}last 2026-12-05T08:00:00\.000Z at epoch 3: 202 connection\(s\) handed over after 0\.4 ms of held output$/m,
  );
});

describe('the status socket and takeover switchover', () => {
  const dir = mkdtempSync(join(tmpdir(), 'takeover-status-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];

  /** A node played by the test: its status, and what a switchover does to it. */
  const node = async (name: string, onSwitch: (st: NodeStatus) => string) => {
    const st: NodeStatus = {
      ...base,
      nodeId: name,
      role: 'active',
      epoch: 3,
      peer: 'attached',
      degraded: false,
    };
    const path = join(dir, `${name}.sock`);
    const server = await serveStatus(path, { status: () => st, switchover: () => onSwitch(st) }, (l) =>
      logs.push(l),
    );
    assert.ok(server, logs.join('\n'));
    after(() => server.close());
    return { st, path };
  };

  test('one request line: status (also an empty request, as nc -U sends), switchover, and a clear refusal of anything else; mode 0600', async () => {
    let asked = 0;
    const { path } = await node('a', () => {
      asked++;
      return 'refused: no standby is attached: there is nobody to hand the connections to\n';
    });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal((await queryStatus(path)).nodeId, 'a');
    assert.equal((JSON.parse(await raw(path, '')) as NodeStatus).epoch, 3);
    assert.equal(
      await askSwitchover(path),
      'no standby is attached: there is nobody to hand the connections to',
    );
    assert.equal(asked, 1);
    assert.match(
      await raw(path, 'reboot\n'),
      /^refused: unknown command "reboot": say status or switchover\n$/,
    );
    // A line longer than any command is answered (refused) without waiting for its end.
    assert.match(await raw(path, 'x'.repeat(200), false), /^refused: unknown command "x{64}"/);
    assert.equal(asked, 1);
  });

  test('takeover switchover: asks, then waits until the node is a synced standby of a later epoch; --json says what moved', async () => {
    const { path } = await node('b', (st) => {
      // The hand-over as the node does it: output held a moment, then standby, then synced.
      setTimeout(() => Object.assign(st, { role: 'standby', epoch: 4, synced: false, connections: 0 }), 30);
      setTimeout(() => {
        st.synced = true;
        st.lastSwitchover = { at: '2026-12-05T08:00:00.000Z', epoch: 3, connections: 202, heldMs: 0.4 };
      }, 120);
      return 'ok\n';
    });
    const r = await captured(() => runSwitchover(['--socket', path, '--json']));
    assert.equal(r.code, 0, r.out);
    const j = JSON.parse(r.out) as Record<string, unknown>;
    assert.equal(j.ok, true);
    assert.equal(j.handedEpoch, 3);
    assert.equal(j.epoch, 4);
    assert.equal(j.connections, 202);
    assert.equal(j.heldMs, 0.4);
  });

  test('takeover switchover: a standby rejoining is waited for (the refusal lasts a moment), up to the timeout', async () => {
    let asked = 0;
    const { path } = await node('e', (st) => {
      asked++;
      // The first two asks find the standby resyncing; the third starts the hand-over.
      if (asked === 1) return 'refused: no standby is attached: there is nobody to hand the connections to\n';
      if (asked === 2)
        return 'refused: the standby is still catching up (bootstrap): try again once it is synced\n';
      setTimeout(() => Object.assign(st, { role: 'standby', epoch: 4, synced: true, connections: 0 }), 30);
      return 'ok\n';
    });
    let r = await captured(() => runSwitchover(['--socket', path, '--json']));
    assert.equal(r.code, 0, r.out);
    assert.equal(asked, 3);
    assert.equal((JSON.parse(r.out) as { ok: boolean }).ok, true);
    // Never attached: refused once the timeout is over, saying for how long it waited.
    const alone = await node(
      'f',
      () => 'refused: no standby is attached: there is nobody to hand the connections to\n',
    );
    const t0 = Date.now();
    r = await captured(() => runSwitchover(['--socket', alone.path, '--timeout-ms', '400']));
    assert.equal(r.code, 1);
    assert.ok(Date.now() - t0 >= 400);
    assert.match(
      r.out,
      /refused: no standby is attached: there is nobody to hand the connections to \(still, after \d+ ms\)\./,
    );
  });

  test('takeover switchover: a refusal, a node that stays active, bad flags', async () => {
    const { path } = await node(
      'c',
      () => 'refused: this node is standby, not active: ask the active node\n',
    );
    let r = await captured(() => runSwitchover(['--socket', path]));
    assert.equal(r.code, 1);
    assert.match(r.out, /refused: this node is standby, not active: ask the active node\./);
    const stays = await node('d', () => 'ok\n');
    r = await captured(() => runSwitchover(['--socket', stays.path, '--timeout-ms', '3000']));
    assert.equal(r.code, 1);
    assert.match(r.out, /d is still active at epoch 3: the switchover was given up/);
    r = await captured(() => runSwitchover(['--socket', path, '--timeout', '5']));
    assert.equal(r.code, 2);
    assert.match(r.out, /--timeout/);
    r = await captured(() => runSwitchover(['--socket', path, '--timeout-ms', '5']));
    assert.equal(r.code, 2);
    assert.match(r.out, /--timeout-ms must be a whole number of milliseconds from 100 to 600000/);
    r = await captured(() => runSwitchover([]));
    assert.equal(r.code, 2);
    assert.match(r.out, /say which node: --socket <path> or --config <file>/);
  });
});
