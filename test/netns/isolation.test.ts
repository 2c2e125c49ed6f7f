/**
 * Isolation on a real network (issue 12; docs/ARCHITECTURE.md §8): two `takeover node`
 * processes host test/netns/apps/isolation-app.ts (the echo example on 7, an echo with no
 * 'error' listener on 8, a line protocol on 9 whose requests can make the application throw).
 * Linux kernel clients on a host of their own (198.18.0.2) reset connections mid-stream, all at
 * once, across a kill -9 take-over, and send a poison pill just before the active is killed, so
 * that the standby restores it and it throws again. Throughout, a paced echo stream from another
 * host (198.18.0.1) is checked byte by byte, and its capture must hold no RST, nothing malformed,
 * no bad checksum; every node process that was not killed on purpose must still run, and no
 * take-over may happen that the test did not make.
 *
 * `ISOLATION_LOGS=<dir>` keeps the full node logs and the client capture of a phase that fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NodeStatus } from '../../src/cli/node.ts';
import { launch } from './apps/launch.ts';
import { HaPair, VIP } from './ha-pair.ts';
import { expertSummary, type Host, rootSkipReason, type Spawned, Topology, waitUntil } from './harness.ts';

const skip = rootSkipReason();
const APP = new URL('./apps/isolation-app.ts', import.meta.url).pathname;
/** The checked stream's pace (MB/s each way): load, without starving the 2-core machine. */
const STREAM_MBPS = 4;

type Counters = NonNullable<NodeStatus['isolation']>;

describe('isolation on a real network: resets, a RST storm, a poison pill, kill -9', { skip }, () => {
  let topo: Topology;
  let pair: HaPair;
  let hostile: Host;
  let dir: string;
  /** The node serving now, and its standby. */
  let active = 'a';
  let standby = 'b';
  /** The epoch since the last take-over this test made. */
  let epoch = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'takeover-iso-'));
    topo = await Topology.create({ prefix: 'tki' });
    pair = await HaPair.create(topo, dir);
    // The pair's configs host the examples; these nodes host the isolation test app.
    for (const name of ['a', 'b']) {
      const file = join(dir, `${name}.json`);
      const cfg = JSON.parse(readFileSync(file, 'utf8')) as { app: { module: string } };
      cfg.app.module = APP;
      writeFileSync(file, JSON.stringify(cfg, null, 2));
    }
    hostile = await topo.addHost('rst', { ipv4: '198.18.0.2/24' });
    await pair.start('a');
    await pair.start('b');
    await pair.synced('b');
    epoch = (await pair.status('a')).epoch;
  });

  after(async () => {
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `body` under a checked echo stream from the client host; asserts the stream went clean. */
  async function underStream(label: string, body: () => Promise<void>): Promise<void> {
    const pcap = join(dir, `${label}.pcap`);
    // Only the checked client's own traffic: what the hostile host sends to the VIP's MAC is
    // flooded to every port (no switch learns it), so it reaches this veth too.
    const cap = await pair.client.capture(pcap, { snaplen: 128, filter: 'host 198.18.0.1' });
    const s = launch(pair.client, 'isolation-client.ts', ['stream', VIP, '7', String(STREAM_MBPS)]);
    const failures: string[] = [];
    try {
      await started(s, 'the checked echo stream');
      await body();
      s.kill('SIGUSR1');
      const r = await resultOf(s, 'the checked echo stream');
      if (r.ok !== true || !((r.bytes as number) > 0))
        failures.push(`the checked stream: ${JSON.stringify(r)}`);
      console.log(`${label}: checked stream ${r.bytes} bytes, longest gap ${r.maxGapMs} ms`);
    } catch (e) {
      failures.push((e as Error).stack ?? String(e));
    } finally {
      s.kill('SIGKILL');
    }
    const { dropped } = await cap.stop();
    const x = await expertSummary(pcap, { timeoutMs: 60_000 });
    if (x.resets > 0) failures.push(`RST in the checked client's capture:\n${await resets(pcap)}`);
    if (x.malformed > 0) failures.push(`malformed frames: ${x.report}`);
    if (!dropped && x.badChecksums > 0) failures.push(`bad checksums: ${x.report}`);
    if (failures.length > 0) {
      failures.push(pair.logs());
      if (process.env.ISOLATION_LOGS) {
        const full = [...pair.procs].map(([n, p]) => `--- ${n}\n${p.output().stderr}`).join('\n');
        writeFileSync(join(process.env.ISOLATION_LOGS, `${label}-nodes.log`), full);
        spawnSync('cp', [pcap, process.env.ISOLATION_LOGS]);
      }
    }
    assert.deepEqual(failures, [], failures.join('\n'));
  }

  /** Both node processes run, except `killed` (killed on purpose), and answer their status. */
  async function nodesUp(killed?: string): Promise<void> {
    for (const [name, p] of pair.procs) {
      if (name === killed) continue;
      assert.ok(
        p.exitCode === null && p.signalCode === null,
        `node ${name} exited (${p.exitCode ?? p.signalCode})\n${pair.logs()}`,
      );
      await pair.status(name);
    }
  }

  /**
   * No take-over happened that the test did not make: a client's resets are no reason for the
   * standby to declare the active dead (a stalled active's heartbeats would be).
   */
  async function sameRoles(when: string): Promise<void> {
    const [a, s] = await Promise.all([pair.status(active), pair.status(standby).catch(() => undefined)]);
    assert.ok(
      a.role === 'active' && a.epoch === epoch && (s === undefined || s.role === 'standby'),
      `an unintended take-over ${when}: ${active} is ${a.role} at epoch ${a.epoch} (expected active at ${epoch}), ${standby} is ${s?.role}\n${pair.logs()}`,
    );
  }

  async function counters(name: string): Promise<Counters> {
    const st = await pair.status(name);
    assert.ok(st.isolation, `node ${name}'s status has no isolation counters`);
    return st.isolation;
  }

  /** Kills the active (SIGKILL) and waits until the standby has taken over. */
  async function killActive(): Promise<void> {
    const before = await pair.status(standby);
    pair.kill(active);
    await waitUntil(
      `${standby} to take over`,
      async () => {
        const st = await pair.status(standby).catch(() => undefined);
        return st?.role === 'active' && st.epoch > before.epoch;
      },
      { timeoutMs: 10_000, tries: 200, intervalMs: 50 },
    );
    [active, standby] = [standby, active];
    epoch = (await pair.status(active)).epoch;
  }

  async function restartStandby(): Promise<void> {
    await pair.start(standby);
    await pair.synced(standby);
  }

  test('a client that sends 1,000 bytes and resets (SO_LINGER 0) mid-stream, before and after a kill -9 take-over', async () => {
    await underStream('rst', async () => {
      // Before: 20 resets on the echo example (it listens for 'error') and 20 on the careless
      // echo (it does not: node:net would have crashed the node).
      const c0 = await counters(active);
      await rstClients('7,8', 40);
      await settle();
      await nodesUp();
      await sameRoles('after 40 resets');
      const c1 = await counters(active);
      assert.equal(c1.socketErrors - c0.socketErrors, 20, `counters ${JSON.stringify(c1)}`);
      assert.equal(c1.appErrors, c0.appErrors);

      // Across: 100 connections established and mirrored; the active is killed and their
      // clients reset them at once. The standby restores them, kick-starts them, and the
      // clients' kernels answer with the RST that killed both nodes in issue 12.
      const held = launch(hostile, 'isolation-client.ts', ['rst', VIP, '7,8', '100', 'hold']);
      await started(held, 'the held connections');
      await settle();
      const victim = active;
      await killActive();
      held.kill('SIGUSR1');
      const r = await resultOf(held, 'the held connections');
      assert.equal(r.reset, 100, JSON.stringify(r));
      await waitUntil(
        `${active} to drop the restored connections its careless echo held`,
        async () => (await counters(active)).restoredDropped >= 50,
        { timeoutMs: 15_000, tries: 300, intervalMs: 50 },
      ).catch(async (e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(await counters(active))}\n${pair.logs()}`);
      });
      await nodesUp(victim);
      await sameRoles('after 100 resets across the take-over');
      const c2 = await counters(active);
      assert.equal(c2.restoredDropped, 50, `counters ${JSON.stringify(c2)}`);
      assert.equal(c2.appErrors, 0);

      // After: the killed node is back as standby; the same resets against the new active.
      await restartStandby();
      await rstClients('7,8', 40);
      await settle();
      await nodesUp();
      await sameRoles('after 40 resets on the new active');
      const c3 = await counters(active);
      assert.equal(c3.socketErrors - c2.socketErrors, 20, `counters ${JSON.stringify(c3)}`);
      assert.equal(c3.restoredDropped, c2.restoredDropped, 'no new connection was a restored one');
    });
  });

  test('a RST storm: 1,000 connections reset at once', async () => {
    await underStream('storm', async () => {
      const c0 = await counters(active);
      await sameRoles('before the storm');
      await rstClients('7,8', 1000);
      await settle(1000);
      await nodesUp();
      await sameRoles('after 1,000 resets at once');
      const c1 = await counters(active);
      assert.equal(c1.socketErrors - c0.socketErrors, 500, `counters ${JSON.stringify(c1)}`);
      assert.equal(c1.appErrors, c0.appErrors);
      // The standby mirrored them and let them go with the active's resets.
      await waitUntil(
        'the standby to hold no more than the checked stream',
        async () => (await pair.status(standby)).mirror.connections <= 1,
        { timeoutMs: 10_000, tries: 200, intervalMs: 50 },
      );
      await sameRoles('after the storm');
    });
  });

  test('a poison pill: the request that makes the application throw, restored by the standby, throws again and is dropped', async () => {
    await underStream('poison', async () => {
      // On a live node: the connection is reset, the node serves on.
      await sameRoles('before the poison pill');
      const c0 = await counters(active);
      const first = launch(hostile, 'isolation-client.ts', ['poison', VIP, '9', 'later', '300']);
      const r1 = await resultOf(first, 'the first poison client');
      assert.equal(r1.outcome, 'reset', JSON.stringify(r1));
      await nodesUp();
      await sameRoles('after a poison request on the live active');
      assert.equal((await counters(active)).appErrors - c0.appErrors, 1);

      // Just before the active dies: the request is accepted (checkpointed as pending) and
      // replicated; the application would throw 2 s later. The standby restores the
      // connection, the application runs the pending request again, and it throws again.
      const pill = launch(hostile, 'isolation-client.ts', ['poison', VIP, '9', 'later', '2000']);
      await started(pill, 'the poison client');
      await sleep(500);
      const victim = active;
      await killActive();
      const r2 = await resultOf(pill, 'the poison client');
      assert.equal(r2.outcome, 'reset', JSON.stringify(r2));
      await nodesUp(victim);
      const c1 = await counters(active);
      assert.deepEqual(
        { appErrors: c1.appErrors, restoredDropped: c1.restoredDropped },
        { appErrors: 1, restoredDropped: 1 },
        `counters ${JSON.stringify(c1)}\n${pair.logs()}`,
      );
      // Dropped, not retried: nothing fails again on the new active, or on the restarted
      // standby that mirrors it now.
      await restartStandby();
      await sleep(2500);
      await nodesUp();
      await sameRoles('after the poison pill was dropped');
      assert.equal((await counters(active)).restoredDropped, 1);
      assert.equal((await counters(standby)).appErrors, 0);
    });
  });

  async function rstClients(ports: string, conns: number): Promise<void> {
    const p = launch(hostile, 'isolation-client.ts', ['rst', VIP, ports, String(conns)]);
    const r = await resultOf(p, `${conns} resetting clients`);
    assert.equal(r.reset, conns, JSON.stringify(r));
  }

  function started(p: Spawned, what: string): Promise<boolean> {
    return waitUntil(
      `${what} to start`,
      () => {
        if (p.exitCode !== null || p.signalCode !== null)
          throw new Error(`${what} exited: ${p.output().stdout}${p.output().stderr.slice(-1500)}`);
        return p.output().stdout.includes('started');
      },
      { timeoutMs: 60_000, tries: 1200, intervalMs: 50 },
    );
  }

  /** A client's JSON result line (bounded wait). */
  async function resultOf(p: Spawned, what: string, timeoutMs = 130_000): Promise<Record<string, unknown>> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      p.exited,
      new Promise((_r, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: no result in ${timeoutMs} ms\n${pair.logs()}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const line = p.output().stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`${what} printed no result: ${p.output().stderr.slice(-1500)}\n${pair.logs()}`);
    }
  }
});

/** The RST frames of a capture, one line each (for a failure message). */
async function resets(pcap: string): Promise<string> {
  const r = spawnSync(
    'tshark',
    [
      '-r',
      pcap,
      '-Y',
      'tcp.flags.reset == 1',
      '-T',
      'fields',
      '-e',
      'frame.time_relative',
      '-e',
      'ip.src',
      '-e',
      'tcp.srcport',
      '-e',
      'ip.dst',
      '-e',
      'tcp.dstport',
      '-e',
      'tcp.seq_raw',
      '-e',
      'tcp.ack_raw',
      '-e',
      'eth.src',
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  return r.stdout.split('\n').slice(0, 20).join('\n');
}

/** Lets the nodes take in what the clients sent (the counters are read from the status). */
function settle(ms = 300): Promise<void> {
  return sleep(ms);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
