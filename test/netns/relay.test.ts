/**
 * `takeover relay` in front of unmodified Debian servers (issue 13), on a real network of
 * namespaces: kernel clients on the client side, the relay pair (two processes, TAPs) holding
 * the client VIP and the servers' side floating address on one bridge, and a backend namespace
 * running the server. During the workload the active relay is killed with SIGKILL, restarted
 * (it rejoins as standby and syncs), and the other killed: three take-overs per workload.
 * Judged from the clients (every reply checked; the final count equal to the replies), the
 * client side's capture (no RST) and the server side's (no RST from the relay).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HaPair, VIP } from './ha-pair.ts';
import { expertSummary, type Host, rootSkipReason, type Spawned, Topology, waitUntil } from './harness.ts';

const skip = rootSkipReason(['redis-server', 'redis-cli', 'redis-benchmark']);
const SERVER = '198.18.3.10';
const SOURCE = '198.18.3.100';
const APPS = new URL('./apps/', import.meta.url).pathname;

describe(
  'takeover relay in front of unmodified servers: kill -9 of the active relay, three times under load',
  { skip },
  () => {
    let topo: Topology | undefined;
    let pair: HaPair;
    let backend: Host;
    let dir: string;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'takeover-relay-'));
      topo = await Topology.create({ prefix: 'rly' });
      pair = await HaPair.create(topo, dir, {
        relay: {
          vip: [`${SOURCE}/24`],
          sections: {
            source: [SOURCE],
            frontends: [{ name: 'redis', bind: [`${VIP}:6379`], backend: 'redis' }],
            backends: [
              {
                name: 'redis',
                servers: [{ name: 'r1', address: `${SERVER}:6379` }],
                health: { send: 'PING\r\n', expect: '+PONG' },
              },
            ],
            timeouts: { connectMs: 2000 },
          },
        },
      });
      backend = await topo.addHost('backend', { ipv4: `${SERVER}/24`, offloads: false });
      backend.spawn('redis-server', [
        ...['--port', '6379', '--bind', SERVER, '--save', '', '--appendonly', 'no'],
        ...['--protected-mode', 'no', '--maxclients', '10000'],
      ]);
      await waitUntil(
        'redis-server to answer',
        async () => (await backend.exec('redis-cli', ['-h', SERVER, 'ping'])).stdout.includes('PONG'),
        { timeoutMs: 10_000, tries: 100, intervalMs: 100 },
      );
      await pair.start('a');
      await pair.start('b');
      await pair.synced('b');
    });

    after(async () => {
      await topo?.destroy();
      if (process.env.RELAY_KEEP) console.log(`kept ${dir}`);
      else if (dir) rmSync(dir, { recursive: true, force: true });
    });

    /** Waits until `name` is active; returns the ms it took. */
    async function active(name: string): Promise<void> {
      await waitUntil(
        `${name} to be active`,
        async () => (await pair.tryStatus(name, 1000))?.role === 'active',
        { timeoutMs: 10_000, tries: 200, intervalMs: 50 },
      );
    }

    test('redis: INCR from 8 connections (16 in flight each) and redis-benchmark -P 16 -c 50 through three take-overs: every reply, the count exact, no RST either side', async (t) => {
      const clientCap = await pair.client.capture(join(dir, 'client.pcap'), { snaplen: 128 });
      const serverCap = await backend.capture(join(dir, 'server.pcap'), { snaplen: 128 });
      const incr: Spawned = pair.client.spawn(
        process.execPath,
        ['--import', 'tsx', join(APPS, 'redis-incr.ts'), VIP, '6379', 'counter', '8', '16'],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      incr.stdin?.on('error', () => {});
      await waitUntil('the INCR client to start', () => incr.output().stdout.includes('started'), {
        timeoutMs: 20_000,
        tries: 400,
        intervalMs: 50,
      });
      const bench = pair.client.spawn('redis-benchmark', [
        ...['-h', VIP, '-p', '6379', '-P', '16', '-c', '50', '-n', '400000', '-t', 'set,get,incr', '-q'],
      ]);
      const rounds: string[] = [];
      let victim = 'a';
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 700));
        const survivor = pair.peerOf(victim);
        pair.kill(victim);
        await active(survivor);
        const st = await pair.status(survivor);
        rounds.push(
          `${survivor} took over (epoch ${st.epoch}, ${st.lastTakeover?.connections} connection(s) in ${st.lastTakeover?.detectionMs} ms, stall ${st.lastTakeover?.stallMs} ms; relay restored ${JSON.stringify(st.relay?.restored)})`,
        );
        await pair.start(victim);
        await pair.synced(victim);
        victim = survivor;
      }
      incr.stdin?.write('stop\n');
      const r = await pair.result(incr, 'INCR client', 30_000).catch((e: Error) => {
        throw new Error(
          `${e.message.split('\n')[0]}: ${incr.output().stderr.slice(-1500)}\n${rounds.join('\n')}`,
        );
      });
      const b = await bench.exited;
      const benchOut = bench.output();
      await clientCap.stop();
      await serverCap.stop();
      const c = await expertSummary(join(dir, 'client.pcap'), { timeoutMs: 120_000 });
      const s = await expertSummary(join(dir, 'server.pcap'), { timeoutMs: 120_000 });
      const ctx = `${rounds.join('\n')}\nINCR: ${JSON.stringify(r)}\nredis-benchmark (exit ${b.code}): ${benchOut.stdout.slice(-600)} ${benchOut.stderr.slice(-600)}\n${pair.logs()}`;
      for (const line of rounds) t.diagnostic(line);
      t.diagnostic(`INCR: ${JSON.stringify(r)}`);
      for (const line of benchOut.stdout.split(/[\r\n]+/).filter((l) => /requests per second/.test(l)))
        t.diagnostic(`redis-benchmark ${line.trim()}`);
      assert.equal(rounds.length, 3, ctx);
      assert.ok(r.ok, ctx);
      assert.ok((r as unknown as { replies: number }).replies > 1000, ctx);
      assert.equal(b.code, 0, ctx);
      assert.doesNotMatch(benchOut.stdout + benchOut.stderr, /error|reset/i, ctx);
      assert.equal(c.resets, 0, `RST reached a client: ${c.report}\n${ctx}`);
      assert.equal(s.resets, 0, `RST reached the server: ${s.report}\n${ctx}`);
    });
  },
);
