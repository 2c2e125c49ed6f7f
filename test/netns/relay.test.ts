/**
 * `takeover relay` in front of unmodified Debian servers (issue 13), on a real network of
 * namespaces: kernel clients on the client side, the relay pair (two processes, TAPs) holding
 * the client VIP and the servers' side floating address on one bridge, and a backend namespace
 * running the servers (redis-server; PostgreSQL, initdb'd in a temp dir). During each workload
 * the active relay is killed with SIGKILL, restarted (it rejoins as standby and syncs), and the
 * other killed: three take-overs per workload. Judged from the clients (every reply checked; the
 * totals consistent), the client side's capture (no RST) and the server side's (no RST).
 * RELAY_KEEP=1 keeps the directory (captures, configs).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startRedisIncr } from './apps/launch.ts';
import { HaPair, VIP } from './ha-pair.ts';
import { expertSummary, type Host, rootSkipReason, type Spawned, Topology, waitUntil } from './harness.ts';

const skip = rootSkipReason(['redis-server', 'redis-cli', 'redis-benchmark']);
/** Debian's PostgreSQL (package postgresql): its own binaries, run as its own user. */
const PG_BIN = '/usr/lib/postgresql/15/bin';
const pgSkip =
  existsSync(`${PG_BIN}/postgres`) && existsSync('/usr/bin/pgbench')
    ? false
    : `needs ${PG_BIN} and pgbench (Debian package postgresql)`;
const SERVER = '198.18.3.10';
/** The file nginx serves through the relay (RELAY_FILE_MB to change; the issue asks for 1 GB). */
const FILE_MB = Number(process.env.RELAY_FILE_MB ?? 1024);
const SOURCE = '198.18.3.100';
/**
 * What the captures keep: on the client side what reaches the client, on the server side what
 * the relay sends (the bridge floods the other side's frames to both: a refused health check's
 * RST from a server, say, is not one that reaches a client).
 */
const TO_CLIENT = 'tcp and dst host 198.18.0.1';
const FROM_RELAY = `tcp and src host ${SOURCE}`;

/**
 * Each RST in `pcap`, one line apiece (time from the capture's start, addresses and ports, seq,
 * ack, length, source MAC): what a failing assertion shows, so that a run in CI says which
 * connection was reset and by which node.
 */
function resetLines(pcap: string): string {
  const r = spawnSync(
    'tshark',
    [
      ...['-r', pcap, '-Y', 'tcp.flags.reset == 1', '-T', 'fields', '-E', 'separator= '],
      ...['-e', 'frame.time_relative', '-e', 'eth.src', '-e', 'ip.src', '-e', 'tcp.srcport'],
      ...['-e', 'ip.dst', '-e', 'tcp.dstport', '-e', 'tcp.seq_raw', '-e', 'tcp.ack_raw', '-e', 'tcp.len'],
    ],
    { encoding: 'utf8', timeout: 120_000 },
  );
  return r.stdout.trim().split('\n').slice(0, 20).join('\n');
}

/** When (s from the capture's first frame) each RST in `pcap` was captured. */
function resetTimes(pcap: string): number[] {
  const r = spawnSync(
    'tshark',
    ['-r', pcap, '-Y', 'tcp.flags.reset == 1', '-T', 'fields', '-e', 'frame.time_relative'],
    {
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

function idOf(flag: '-u' | '-g', user: string): number {
  return Number(spawnSync('id', [flag, user], { encoding: 'utf8' }).stdout.trim());
}

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
            frontends: [
              { name: 'redis', bind: [`${VIP}:6379`], backend: 'redis' },
              { name: 'pg', bind: [`${VIP}:5432`], backend: 'pg' },
              { name: 'web', bind: [`${VIP}:80`], backend: 'web' },
              { name: 'iperf', bind: [`${VIP}:5201`], backend: 'iperf' },
            ],
            backends: [
              {
                name: 'redis',
                servers: [{ name: 'r1', address: `${SERVER}:6379` }],
                health: { send: 'PING\r\n', expect: '+PONG' },
              },
              { name: 'pg', servers: [{ name: 'p1', address: `${SERVER}:5432` }] },
              { name: 'web', servers: [{ name: 'n1', address: `${SERVER}:80` }] },
              { name: 'iperf', servers: [{ name: 'i1', address: `${SERVER}:5201` }] },
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

    /** Waits until `name` is active. */
    async function active(name: string): Promise<void> {
      await waitUntil(
        `${name} to be active`,
        async () => (await pair.tryStatus(name, 1000))?.role === 'active',
        {
          timeoutMs: 10_000,
          tries: 200,
          intervalMs: 50,
        },
      );
    }

    /**
     * Kills the active relay with SIGKILL, waits for the other to take over, restarts the killed
     * one (it joins as standby and syncs), three times; one line per take-over.
     */
    async function threeTakeovers(): Promise<string[]> {
      const rounds: string[] = [];
      let victim = (await pair.tryStatus('a', 1000))?.role === 'active' ? 'a' : 'b';
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
      return rounds;
    }

    test('redis: INCR from 8 connections (16 in flight each) and redis-benchmark -P 16 -c 50 through three take-overs: every reply, the count exact, no RST either side', async (t) => {
      const clientCap = await pair.client.capture(join(dir, 'client.pcap'), {
        snaplen: 128,
        filter: TO_CLIENT,
      });
      const serverCap = await backend.capture(join(dir, 'server.pcap'), { snaplen: 128, filter: FROM_RELAY });
      const incr: Spawned = await startRedisIncr(pair.client, VIP, 'counter');
      const bench = pair.client.spawn('redis-benchmark', [
        ...['-h', VIP, '-p', '6379', '-P', '16', '-c', '50', '-n', '400000', '-t', 'set,get,incr', '-q'],
      ]);
      const rounds = await threeTakeovers();
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
      assert.equal(
        c.resets,
        0,
        `RST reached a client: ${c.report}\n${resetLines(join(dir, 'client.pcap'))}\n${ctx}`,
      );
      assert.equal(
        s.resets,
        0,
        `RST reached the server: ${s.report}\n${resetLines(join(dir, 'server.pcap'))}\n${ctx}`,
      );
    });

    test('redis, a pause instead of a kill: SIGSTOP of the active relay for 1 s under INCR: the standby takes over, the resumed relay sends nothing, is fenced and rejoins; the count exact, no RST to a client', async (t) => {
      const cap = await pair.client.capture(join(dir, 'stop-client.pcap'), {
        snaplen: 128,
        filter: TO_CLIENT,
      });
      const incr: Spawned = await startRedisIncr(pair.client, VIP, 'stopped');
      await new Promise((r) => setTimeout(r, 700));
      const victim = (await pair.tryStatus('a', 1000))?.role === 'active' ? 'a' : 'b';
      const survivor = pair.peerOf(victim);
      pair.pause(victim);
      await active(survivor);
      await new Promise((r) => setTimeout(r, 1000));
      pair.resume(victim);
      await pair.synced(victim);
      incr.stdin?.write('stop\n');
      const r = (await pair.result(incr, 'INCR client', 30_000)) as unknown as {
        ok: boolean;
        replies: number;
      };
      await cap.stop();
      const c = await expertSummary(join(dir, 'stop-client.pcap'), { timeoutMs: 120_000 });
      const st = await pair.status(victim);
      t.diagnostic(
        `INCR: ${JSON.stringify(r)}; ${victim} fenced ${st.fences?.count} time(s): ${st.fences?.last?.reason}`,
      );
      const ctx = `${JSON.stringify(r)}\n${pair.logs()}`;
      assert.ok(r.ok, ctx);
      assert.ok(r.replies > 1000, ctx);
      assert.equal(st.role, 'standby', ctx);
      assert.equal(
        c.resets,
        0,
        `RST reached a client: ${c.report}\n${resetLines(join(dir, 'stop-client.pcap'))}\n${ctx}`,
      );
    });

    test(
      'postgresql: pgbench -c 8 -j 2 -T 30 (TPC-B) through three take-overs: no failed transaction, no connection error, the balances add up, no RST either side',
      { skip: pgSkip },
      async (t) => {
        const pgDir = join(dir, 'pg');
        mkdirSync(pgDir);
        chmodSync(dir, 0o755);
        chownSync(pgDir, idOf('-u', 'postgres'), idOf('-g', 'postgres'));
        const data = join(pgDir, 'data');
        const init = await backend.exec(
          'runuser',
          ['-u', 'postgres', '--', `${PG_BIN}/initdb`, '-D', data, '-U', 'postgres', '--auth=trust'],
          { timeoutMs: 60_000 },
        );
        assert.equal(init.code, 0, init.stderr);
        // The relay's source address connects over the network: trust it as the local socket is.
        appendFileSync(
          join(data, 'pg_hba.conf'),
          `host all all ${SOURCE}/32 trust\nhost all all ${SERVER}/32 trust\n`,
        );
        const pg = backend.spawn('runuser', [
          ...['-u', 'postgres', '--', `${PG_BIN}/postgres`, '-D', data],
          ...['-c', `listen_addresses=${SERVER}`, '-c', `unix_socket_directories=${pgDir}`],
          ...['-c', 'fsync=off', '-c', 'max_connections=50'],
        ]);
        await waitUntil(
          'postgres to accept connections',
          async () => (await backend.exec(`${PG_BIN}/pg_isready`, ['-h', SERVER])).code === 0,
          { timeoutMs: 30_000, tries: 300, intervalMs: 100 },
        );
        const ini = await backend.exec(
          'pgbench',
          ['-i', '-s', '2', '-h', SERVER, '-U', 'postgres', 'postgres'],
          {
            timeoutMs: 120_000,
          },
        );
        assert.equal(ini.code, 0, ini.stderr);
        const clientCap = await pair.client.capture(join(dir, 'pg-client.pcap'), {
          snaplen: 128,
          filter: TO_CLIENT,
        });
        const serverCap = await backend.capture(join(dir, 'pg-server.pcap'), {
          snaplen: 128,
          filter: FROM_RELAY,
        });
        const bench = pair.client.spawn('pgbench', [
          ...['-h', VIP, '-p', '5432', '-U', 'postgres', '-c', '8', '-j', '2', '-T', '30', 'postgres'],
        ]);
        await new Promise((r) => setTimeout(r, 2000));
        const rounds = await threeTakeovers();
        const b = await bench.exited;
        const out = bench.output();
        await clientCap.stop();
        await serverCap.stop();
        const q = async (sql: string) =>
          (
            await backend.exec(`${PG_BIN}/psql`, [
              '-h',
              SERVER,
              '-U',
              'postgres',
              '-At',
              '-c',
              sql,
              'postgres',
            ])
          ).stdout.trim();
        const accounts = await q('select sum(abalance) from pgbench_accounts');
        const tellers = await q('select sum(tbalance) from pgbench_tellers');
        const branches = await q('select sum(bbalance) from pgbench_branches');
        const history = await q('select coalesce(sum(delta), 0) from pgbench_history');
        const txns = await q('select count(*) from pgbench_history');
        const c = await expertSummary(join(dir, 'pg-client.pcap'), { timeoutMs: 120_000 });
        const s = await expertSummary(join(dir, 'pg-server.pcap'), { timeoutMs: 120_000 });
        pg.kill('SIGTERM');
        for (const line of rounds) t.diagnostic(line);
        for (const line of out.stdout.split('\n').filter((l) => /^(number of|tps|latency average)/.test(l)))
          t.diagnostic(`pgbench ${line}`);
        t.diagnostic(
          `balances: accounts ${accounts}, tellers ${tellers}, branches ${branches}; history ${history} over ${txns} transactions`,
        );
        const ctx = `${rounds.join('\n')}\npgbench (exit ${b.code}): ${out.stdout.slice(-1500)}\n${out.stderr.slice(-1500)}\n${pair.logs()}`;
        assert.equal(b.code, 0, ctx);
        assert.doesNotMatch(out.stderr, /aborted|error|could not/i, ctx);
        assert.match(out.stdout, /number of failed transactions: 0 /, ctx);
        assert.ok(Number(txns) > 100, ctx);
        assert.equal(accounts, history, ctx);
        assert.equal(tellers, history, ctx);
        assert.equal(branches, history, ctx);
        assert.equal(
          c.resets,
          0,
          `RST reached a client: ${c.report}\n${resetLines(join(dir, 'pg-client.pcap'))}\n${ctx}`,
        );
        assert.equal(
          s.resets,
          0,
          `RST reached the server: ${s.report}\n${resetLines(join(dir, 'pg-server.pcap'))}\n${ctx}`,
        );
      },
    );

    test(
      `nginx: curl of a ${FILE_MB} MB file through three take-overs: the sha256 matches, no RST either side`,
      { skip: existsSync('/usr/sbin/nginx') ? false : 'needs /usr/sbin/nginx (Debian package nginx-light)' },
      async (t) => {
        const www = join(dir, 'www');
        mkdirSync(www, { recursive: true });
        chmodSync(dir, 0o755);
        const file = join(www, 'big');
        const mk = spawnSync(
          'sh',
          [
            '-c',
            `openssl enc -aes-128-ctr -nosalt -pass pass:relay -in /dev/zero 2>/dev/null | head -c ${FILE_MB}M > "$0"`,
            file,
          ],
          { timeout: 120_000 },
        );
        assert.equal(mk.status, 0, String(mk.stderr));
        const want = spawnSync('sha256sum', [file], { encoding: 'utf8', timeout: 120_000 }).stdout.split(
          ' ',
        )[0];
        const conf = join(dir, 'nginx.conf');
        writeFileSync(
          conf,
          `worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err; daemon off;
events { worker_connections 256; }
http { access_log off; sendfile on; client_body_temp_path ${dir}/nx-body; proxy_temp_path ${dir}/nx-proxy;
  fastcgi_temp_path ${dir}/nx-fcgi; uwsgi_temp_path ${dir}/nx-uwsgi; scgi_temp_path ${dir}/nx-scgi;
  server { listen ${SERVER}:80; root ${www}; } }
`,
        );
        backend.spawn('nginx', ['-c', conf, '-p', dir]);
        await waitUntil(
          'nginx to answer',
          async () =>
            (await backend.exec('curl', ['-sf', '-o', '/dev/null', '-r', '0-0', `http://${SERVER}/big`]))
              .code === 0,
          { timeoutMs: 10_000, tries: 100, intervalMs: 100 },
        );
        const clientCap = await pair.client.capture(join(dir, 'web-client.pcap'), {
          snaplen: 96,
          filter: TO_CLIENT,
        });
        const serverCap = await backend.capture(join(dir, 'web-server.pcap'), {
          snaplen: 96,
          filter: FROM_RELAY,
        });
        const got = join(dir, 'got');
        const curl = pair.client.spawn('curl', [
          '-sS',
          '--max-time',
          '600',
          '-o',
          got,
          '-w',
          '%{speed_download}',
          `http://${VIP}/big`,
        ]);
        await new Promise((r) => setTimeout(r, 1500));
        const rounds = await threeTakeovers();
        const c = await curl.exited;
        const sha = spawnSync('sha256sum', [got], { encoding: 'utf8', timeout: 120_000 }).stdout.split(
          ' ',
        )[0];
        await clientCap.stop();
        await serverCap.stop();
        const cs = await expertSummary(join(dir, 'web-client.pcap'), { timeoutMs: 300_000 });
        const ss = await expertSummary(join(dir, 'web-server.pcap'), { timeoutMs: 300_000 });
        for (const line of rounds) t.diagnostic(line);
        t.diagnostic(
          `curl: exit ${c.code}, ${(Number(curl.output().stdout) / 1e6).toFixed(1)} MB/s over the whole download`,
        );
        const ctx = `${rounds.join('\n')}\ncurl exit ${c.code}: ${curl.output().stderr}\n${pair.logs()}`;
        assert.equal(c.code, 0, ctx);
        assert.equal(sha, want, `sha256 differs\n${ctx}`);
        assert.equal(
          cs.resets,
          0,
          `RST reached a client: ${cs.report}\n${resetLines(join(dir, 'web-client.pcap'))}\n${ctx}`,
        );
        assert.equal(
          ss.resets,
          0,
          `RST reached the server: ${ss.report}\n${resetLines(join(dir, 'web-server.pcap'))}\n${ctx}`,
        );
      },
    );

    test(
      'iperf3: 20 s each way (-R too) through three take-overs each: both complete, no RST on the client side',
      { skip: existsSync('/usr/bin/iperf3') ? false : 'needs iperf3' },
      async (t) => {
        backend.spawn('iperf3', ['-s', '-B', SERVER, '-p', '5201']);
        await new Promise((r) => setTimeout(r, 500));
        for (const reverse of [false, true]) {
          const tag = reverse ? 'iperf3 -R' : 'iperf3';
          const pcap = join(dir, `${reverse ? 'iperf-r' : 'iperf'}-client.pcap`);
          const cap = await pair.client.capture(pcap, { snaplen: 96, filter: TO_CLIENT });
          const p = pair.client.spawn('iperf3', [
            '-c',
            VIP,
            '-p',
            '5201',
            '-t',
            '20',
            '-J',
            ...(reverse ? ['-R'] : []),
          ]);
          await new Promise((r) => setTimeout(r, 1500));
          const rounds = await threeTakeovers();
          const e = await p.exited;
          await cap.stop();
          const s = await expertSummary(pcap, { timeoutMs: 300_000 });
          let mbps = Number.NaN;
          let error = '';
          try {
            const j = JSON.parse(p.output().stdout) as {
              end?: { sum_received?: { bits_per_second: number } };
              error?: string;
            };
            mbps = (j.end?.sum_received?.bits_per_second ?? Number.NaN) / 8e6;
            error = j.error ?? '';
          } catch {
            error = 'no JSON';
          }
          for (const line of rounds) t.diagnostic(`${tag}: ${line}`);
          t.diagnostic(`${tag}: exit ${e.code}, ${mbps.toFixed(1)} MB/s received over 20 s`);
          const ctx = `${tag}\n${rounds.join('\n')}\nexit ${e.code} ${error}: ${p.output().stderr.slice(-800)}\n${pair.logs()}`;
          assert.equal(e.code, 0, ctx);
          assert.equal(error, '', ctx);
          // iperf3's server closes a data socket at the test's end with bytes still arriving (the
          // ones in flight through the relay), so its kernel resets the server leg and the relay
          // resets the client's, whose side is closed already: judged are RSTs before the end.
          const early = resetTimes(pcap).filter((at) => at < 19.5);
          assert.deepEqual(early, [], `RST reached the client during the transfer: ${s.report}\n${ctx}`);
        }
      },
    );
  },
);
