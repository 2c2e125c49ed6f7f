/**
 * `npm run bench -- relay [--kills N] [--mb N] [--only PARTS] [--json]` (root): `takeover relay` side by side
 * with HAProxy (Debian's, kernel TCP) on one real network of namespaces, in one run, in front of
 * the same unmodified servers (redis-server, nginx; PostgreSQL when installed):
 *
 * - targets: HAProxy; our relay serving alone (its standby stopped); our relay in sync mode with
 *   a synced standby;
 * - single-connection download MB/s (curl of an `--mb` MB file from nginx), redis-benchmark
 *   ops/s (`-P 16 -c 50`, GET), pgbench tps (`-c 8 -j 2`, 10 s), 1-byte request RTT p50/p99
 *   (redis-benchmark `-c 1` PING), and the CPU seconds the relay process (or HAProxy) used per GB
 *   downloaded; ratios to HAProxy;
 * - through `--kills` failures of each pair, what its clients see. Our pair: kill -9 of the
 *   active relay, which is restarted (it rejoins as standby and syncs) before the other is
 *   killed. The pair users run today: two HAProxy hosts behind one VRRP address (keepalived,
 *   VRRPv3, 100 ms adverts), the master host failing (haproxy and keepalived killed, link down),
 *   then brought back. First an INCR client per failure (8 Redis connections, 16 in flight; its
 *   longest wait for a reply, any reply lost, repeated or reset, and for HAProxy how soon a new
 *   connection is answered); then each workload run back to back through `--kills` failures:
 *   pgbench (`-c 8 -j 2 -T 20`, then TPC-B's balances checked), curl of the file at 20 MB/s
 *   (sha256 checked), redis-benchmark (`-P 16 -c 50`, 1 M GET), iperf3 for 20 s each way; each
 *   run broken or not; and the RSTs that reached the client (and the servers, from our relay).
 *
 * `--only throughput,relay,keepalived` (any of them, comma-separated) runs those parts alone: the
 * throughput table, our pair's failures, the HAProxy + keepalived pair's failures (a full run with
 * 20 kills takes about an hour on 2 cores).
 *
 * With --json one line (the parts run): {"targets": {name: {downloadMBs, redisOps, pgTps, rttMsP50, rttMsP99,
 * cpuSecPerGB}}, "ratios": {name: {...}}, "failover": {"kills", "errors", "connectionsBroken",
 * "examples", "stallMsP50", "stallMsP99", "workloads": [{workload, failures,
 * failuresDuringRuns, runs, brokenRuns, examples, checks}], "resets": {toClient, toServer}},
 * "keepalived": {the same, "newConnectionMsP50", "resets": {toClient}}}.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisIncr } from '../test/netns/apps/launch.ts';
import { HaPair, VIP } from '../test/netns/ha-pair.ts';
import {
  expertSummary,
  type Host,
  rootSkipReason,
  type Spawned,
  Topology,
  waitUntil,
} from '../test/netns/harness.ts';
import { type BenchOptions, benchFlags, printTable, UsageError } from './harness.ts';
import { percentile } from './nemesis.ts';
import {
  curl,
  type FailingPair,
  failuresLine,
  iperf3,
  pgbench,
  redisBench,
  sleep,
  type UnderFailures,
  underFailures,
  type Workload,
} from './relay-failover.ts';

const SERVER = '198.18.3.10';
const SOURCE = '198.18.3.100';
const HAPROXY_FRONT = '198.18.0.200';
const HAPROXY_SOURCE = '198.18.3.200';
const CLIENT = '198.18.0.1';
/** The services in front of which both relays stand: name and port. */
const SERVICES = [
  ['redis', 6379],
  ['web', 80],
  ['pg', 5432],
  ['iperf', 5201],
] as const;
const PG_BIN = '/usr/lib/postgresql/15/bin';

interface Figures {
  downloadMBs: number;
  redisOps: number;
  pgTps: number;
  rttMsP50: number;
  rttMsP99: number;
  cpuSecPerGB: number;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

export async function run(o: BenchOptions): Promise<number> {
  const flags = benchFlags(o, { kills: { default: 20 }, mb: { default: 300 } }, [], ['only']);
  const PARTS = ['throughput', 'relay', 'keepalived'] as const;
  const only = flags.only?.split(',').map((x) => x.trim()) ?? [...PARTS];
  const unknown = only.filter((x) => !(PARTS as readonly string[]).includes(x));
  if (unknown.length > 0 || only.length === 0)
    throw new UsageError(
      `--only takes parts among ${PARTS.join(', ')} (comma-separated), got ${JSON.stringify(flags.only)}`,
    );
  const part = (x: (typeof PARTS)[number]) => only.includes(x);
  const skip = rootSkipReason(['redis-server', 'redis-benchmark', 'haproxy', 'keepalived', 'nginx', 'curl']);
  if (skip) {
    console.error(`bench relay: ${skip}`);
    return 2;
  }
  const log = (s: string) => {
    if (!o.json) console.error(s);
  };
  const dir = mkdtempSync(join(tmpdir(), 'takeover-bench-relay-'));
  const topo = await Topology.create({ prefix: 'brl' });
  try {
    const pair = await HaPair.create(topo, dir, {
      relay: {
        vip: [`${SOURCE}/24`],
        sections: {
          source: [SOURCE],
          frontends: [
            { name: 'redis', bind: [`${VIP}:6379`], backend: 'redis' },
            { name: 'web', bind: [`${VIP}:80`], backend: 'web' },
            { name: 'pg', bind: [`${VIP}:5432`], backend: 'pg' },
            { name: 'iperf', bind: [`${VIP}:5201`], backend: 'iperf' },
          ],
          backends: [
            { name: 'redis', servers: [{ name: 'r1', address: `${SERVER}:6379` }] },
            { name: 'web', servers: [{ name: 'n1', address: `${SERVER}:80` }] },
            { name: 'pg', servers: [{ name: 'p1', address: `${SERVER}:5432` }] },
            { name: 'iperf', servers: [{ name: 'i1', address: `${SERVER}:5201` }] },
          ],
        },
      },
    });
    const backend = await topo.addHost('backend', { ipv4: `${SERVER}/24`, offloads: false });
    const hap = await topo.addHost('haproxy', { ipv4: `${HAPROXY_FRONT}/24`, offloads: false });
    await hap.exec('ip', ['addr', 'add', `${HAPROXY_SOURCE}/24`, 'dev', 'eth0']);
    const { pg, sha } = await startServers(backend, dir, flags.mb, log);
    writeFileSync(join(dir, 'haproxy.cfg'), haproxyCfg(HAPROXY_FRONT, HAPROXY_SOURCE));
    const haproxy = hap.spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
    await sleep(500);
    if (haproxy.exitCode !== null || haproxy.signalCode !== null)
      throw new Error(`haproxy exited: ${haproxy.output().stderr.slice(-1500)}`);
    const client = pair.client;
    const targets: Record<string, Figures> = {};
    if (part('throughput')) {
      log('HAProxy …');
      targets.haproxy = await measure(client, HAPROXY_FRONT, haproxy.pid!, flags.mb, pg, log);
    }
    await pair.start('a');
    if (part('throughput')) {
      log('relay alone (no standby) …');
      targets['relay-alone'] = await measure(client, VIP, pair.procs.get('a')!.pid!, flags.mb, pg, log);
    }
    await pair.start('b');
    await pair.synced('b');
    if (part('throughput')) {
      log('relay in sync mode, standby synced …');
      targets['relay-sync'] = await measure(client, VIP, pair.procs.get('a')!.pid!, flags.mb, pg, log);
    }
    const common = { mb: flags.mb, sha, pg };
    // What reaches the client and the servers: RSTs only (iperf3's end-of-test resets excluded:
    // its server closes a data socket with bytes still arriving, through either relay).
    const rst = 'tcp[tcpflags] & tcp-rst != 0 and not port 5201';
    let ours: { failover: FailoverFigures; resets: { toClient: number; toServer: number } } | undefined;
    if (part('relay')) {
      log(`relay pair: ${flags.kills} kill -9 of the active relay per workload …`);
      const clientCap = await client.capture(join(dir, 'rst-client.pcap'), {
        filter: `${rst} and dst host ${CLIENT}`,
      });
      const serverCap = await backend.capture(join(dir, 'rst-server.pcap'), {
        filter: `${rst} and src host ${SOURCE}`,
      });
      const failover = await throughFailures(relayPair(pair), client, backend, VIP, flags.kills, common, log);
      await clientCap.stop();
      await serverCap.stop();
      ours = {
        failover,
        resets: {
          toClient: await resets(join(dir, 'rst-client.pcap')),
          toServer: await resets(join(dir, 'rst-server.pcap')),
        },
      };
    }
    await pair.stop('a');
    await pair.stop('b');
    haproxy.kill('SIGKILL');
    let keepalived:
      | (FailoverFigures & { newConnectionMsP50: number; skipped: number; resets: { toClient: number } })
      | undefined;
    if (part('keepalived')) {
      log(`HAProxy + keepalived pair: ${flags.kills} host failures of the master per workload …`);
      const ka = await keepalivedPair(topo, client, dir, log);
      const kaCap = await client.capture(join(dir, 'rst-client-ka.pcap'), {
        filter: `${rst} and dst host ${CLIENT}`,
      });
      const kaFailover = await throughFailures(ka, client, backend, VRRP_VIP, flags.kills, common, log);
      await kaCap.stop();
      keepalived = {
        ...kaFailover,
        newConnectionMsP50: Math.round(percentile(ka.reconnectMs, 50)),
        /** Failures skipped because no keepalived master held the address when one was due. */
        skipped: ka.skipped,
        resets: { toClient: await resets(join(dir, 'rst-client-ka.pcap')) },
      };
    }
    const ratios: Record<string, Record<string, number>> = {};
    for (const [name, f] of Object.entries(targets))
      ratios[name] = Object.fromEntries(
        Object.entries(f).map(([k, v]) => [
          k,
          Math.round((v / targets.haproxy[k as keyof Figures]) * 100) / 100,
        ]),
      );
    if (o.json)
      console.log(
        JSON.stringify({
          ...(part('throughput') ? { targets, ratios } : {}),
          ...(ours ? { failover: { ...ours.failover, resets: ours.resets } } : {}),
          ...(keepalived ? { keepalived } : {}),
        }),
      );
    else {
      const r1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
      if (part('throughput'))
        printTable(
          ['target', 'download MB/s', 'redis ops/s', 'pgbench tps', 'RTT p50/p99 ms', 'CPU s/GB'],
          Object.entries(targets).map(([n, f]) => [
            n,
            `${r1(f.downloadMBs)} (${ratios[n].downloadMBs}×)`,
            `${Math.round(f.redisOps)} (${ratios[n].redisOps}×)`,
            `${r1(f.pgTps)} (${ratios[n].pgTps}×)`,
            `${f.rttMsP50.toFixed(3)}/${f.rttMsP99.toFixed(3)}`,
            `${r1(f.cpuSecPerGB)} (${ratios[n].cpuSecPerGB}×)`,
          ]),
        );
      if (ours) {
        const failover = ours.failover;
        console.log(
          `\nrelay pair, ${failover.kills} kill -9 of the active relay under 8 INCR connections: ${failover.errors} failure(s) with an error, ${failover.connectionsBroken} connection(s) broken; longest wait per failure p50 ${failover.stallMsP50} ms, p99 ${failover.stallMsP99} ms`,
        );
        for (const r of failover.workloads) console.log(`relay pair, ${failuresLine(r)}`);
        console.log(
          `relay pair: ${ours.resets.toClient} RST reached the client, ${ours.resets.toServer} RST reached a server from the relay`,
        );
      }
      if (keepalived) {
        console.log(
          `\nHAProxy + keepalived, ${keepalived.kills} host failures of the master under 8 INCR connections: ${keepalived.connectionsBroken} of ${keepalived.kills * 8} connections broken (${keepalived.examples.join('; ')}); a new connection answered ${keepalived.newConnectionMsP50} ms after the failure (p50)`,
        );
        for (const r of keepalived.workloads) console.log(`HAProxy + keepalived, ${failuresLine(r)}`);
        console.log(
          `HAProxy + keepalived: ${keepalived.resets.toClient} RST reached the client${keepalived.skipped ? `; ${keepalived.skipped} failure(s) skipped: no keepalived master held the address` : ''}`,
        );
      }
    }
    return 0;
  } finally {
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * redis-server, nginx with an `mb` MB file of random bytes, an iperf3 server, PostgreSQL if
 * installed (pgbench -i -s 4): whether PostgreSQL runs, and the file's sha256.
 */
async function startServers(
  backend: Host,
  dir: string,
  mb: number,
  log: (s: string) => void,
): Promise<{ pg: boolean; sha: string }> {
  backend.spawn('redis-server', [
    ...['--port', '6379', '--bind', SERVER, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
  ]);
  const www = join(dir, 'www');
  mkdirSync(www);
  await backend.exec('sh', ['-c', `head -c ${mb}M /dev/urandom > "$0"`, join(www, 'big')], {
    timeoutMs: 120_000,
  });
  const sha = (await backend.exec('sha256sum', [join(www, 'big')], { timeoutMs: 120_000 })).stdout.split(
    ' ',
  )[0];
  // An idle timeout: a test whose client vanished with a failed relay would keep it busy for good.
  backend.spawn('iperf3', ['-s', '-B', SERVER, '-p', '5201', '--idle-timeout', '10']);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err; daemon off;\nevents { worker_connections 256; }\nhttp { access_log off; sendfile on; client_body_temp_path ${dir}/nb; proxy_temp_path ${dir}/np; fastcgi_temp_path ${dir}/nf; uwsgi_temp_path ${dir}/nu; scgi_temp_path ${dir}/ns;\n  server { listen ${SERVER}:80; root ${www}; } }\n`,
  );
  backend.spawn('nginx', ['-c', conf, '-p', dir]);
  let pg = false;
  try {
    const pgDir = join(dir, 'pg');
    const data = join(pgDir, 'data');
    await backend.exec('sh', ['-c', `chmod 755 "$0" && mkdir -p "$1" && chown postgres: "$1"`, dir, pgDir]);
    const asPg = ['runuser', '-u', 'postgres', '--'];
    const init = await backend.exec(
      asPg[0],
      [...asPg.slice(1), `${PG_BIN}/initdb`, '-D', data, '-U', 'postgres', '--auth=trust'],
      {
        timeoutMs: 60_000,
      },
    );
    if (init.code !== 0) throw new Error(init.stderr);
    // The relay's and HAProxy's source addresses connect over the network: trusted.
    appendFileSync(join(data, 'pg_hba.conf'), 'host all all 198.18.3.0/24 trust\n');
    backend.spawn(asPg[0], [
      ...asPg.slice(1),
      ...[
        `${PG_BIN}/postgres`,
        '-D',
        data,
        '-c',
        `listen_addresses=${SERVER}`,
        '-c',
        `unix_socket_directories=${pgDir}`,
      ],
      ...['-c', 'fsync=off', '-c', 'synchronous_commit=off'],
    ]);
    await waitUntil(
      'postgres',
      async () => (await backend.exec(`${PG_BIN}/pg_isready`, ['-h', SERVER])).code === 0,
      {
        timeoutMs: 30_000,
        tries: 300,
        intervalMs: 100,
      },
    );
    const i = await backend.exec('pgbench', ['-i', '-s', '4', '-h', SERVER, '-U', 'postgres', 'postgres'], {
      timeoutMs: 120_000,
    });
    pg = i.code === 0;
  } catch (e) {
    log(`PostgreSQL not measured: ${(e as Error).message.split('\n')[0]}`);
  }
  await waitUntil(
    'redis and nginx',
    async () =>
      (await backend.exec('curl', ['-sf', '-o', '/dev/null', '-r', '0-0', `http://${SERVER}/big`])).code ===
      0,
    {
      timeoutMs: 10_000,
      tries: 100,
      intervalMs: 100,
    },
  );
  return { pg, sha };
}

async function measure(
  client: Host,
  host: string,
  pid: number,
  mb: number,
  pg: boolean,
  log: (s: string) => void,
): Promise<Figures> {
  const cpu0 = cpuSeconds(pid);
  const dl = await client.exec(
    'curl',
    ['-sS', '-o', '/dev/null', '-w', '%{speed_download}', `http://${host}/big`],
    {
      timeoutMs: 600_000,
    },
  );
  const cpu1 = cpuSeconds(pid);
  const downloadMBs = Number(dl.stdout) / 1e6;
  const cpuSecPerGB = ((cpu1 - cpu0) / mb) * 1024;
  log(`  download ${downloadMBs.toFixed(1)} MB/s, ${cpuSecPerGB.toFixed(2)} CPU s/GB`);
  const rb = await client.exec(
    'redis-benchmark',
    ['-h', host, '-P', '16', '-c', '50', '-n', '300000', '-t', 'get', '-q'],
    {
      timeoutMs: 300_000,
    },
  );
  const redisOps = Number(
    /GET: ([\d.]+) requests per second/.exec(rb.stdout.replace(/\r/g, '\n'))?.[1] ?? Number.NaN,
  );
  log(`  redis GET ${Math.round(redisOps)} ops/s`);
  const rtt = await client.exec('redis-benchmark', ['-h', host, '-c', '1', '-n', '5000', '-t', 'ping'], {
    timeoutMs: 120_000,
  });
  const sum =
    /avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/.exec(
      rtt.stdout.replace(/\r/g, '\n'),
    );
  const rttMsP50 = Number(sum?.[3] ?? Number.NaN);
  const rttMsP99 = Number(sum?.[5] ?? Number.NaN);
  log(`  RTT p50 ${rttMsP50} ms, p99 ${rttMsP99} ms`);
  let pgTps = Number.NaN;
  if (pg) {
    const b = await client.exec(
      'pgbench',
      ['-h', host, '-U', 'postgres', '-c', '8', '-j', '2', '-T', '10', 'postgres'],
      {
        timeoutMs: 120_000,
      },
    );
    pgTps = Number(/tps = ([\d.]+)/.exec(b.stdout)?.[1] ?? Number.NaN);
    log(`  pgbench ${pgTps.toFixed(1)} tps`);
  }
  return { downloadMBs, redisOps, pgTps, rttMsP50, rttMsP99, cpuSecPerGB };
}

/** Our pair failing: kill -9 of the active relay; repaired: restarted, rejoined, synced. */
function relayPair(pair: HaPair): FailingPair {
  let victim = 'a';
  return {
    async fail() {
      const survivor = pair.peerOf(victim);
      pair.kill(victim);
      await waitUntil(
        `${survivor} active`,
        async () => (await pair.tryStatus(survivor, 1000))?.role === 'active',
        {
          timeoutMs: 10_000,
          tries: 200,
          intervalMs: 50,
        },
      );
    },
    async repair() {
      await pair.start(victim);
      await pair.synced(victim);
      victim = pair.peerOf(victim);
    },
  };
}

/**
 * `n` failures, each under a fresh INCR client (8 connections, 16 in flight): each connection's
 * longest wait for a reply, and the connections that saw an error, a reset or a wrong count.
 */
async function incrUnderFailures(
  fp: FailingPair,
  client: Host,
  host: string,
  n: number,
  log: (s: string) => void,
) {
  const stalls: number[] = [];
  let errors = 0;
  let broken = 0;
  const examples: string[] = [];
  for (let i = 0; i < n; i++) {
    const incr: Spawned = await startRedisIncr(client, host, `k${host}-${i}`);
    await sleep(500);
    await fp.fail();
    await sleep(1000);
    incr.stdin?.write('stop\n');
    const r = (await incrResult(incr)) as { ok?: boolean; maxGapMs?: number; errors: string[] };
    const conns = new Set(r.errors.map((e) => /^conn (\d+)/.exec(e)?.[1]).filter(Boolean));
    broken += conns.size;
    if (!r.ok) errors++;
    if (typeof r.maxGapMs === 'number' && r.ok) stalls.push(r.maxGapMs);
    if (examples.length < 2 && r.errors.length > 0) examples.push(r.errors[0]);
    log(
      `  INCR, failure ${i + 1}/${n}: ${r.ok ? `every reply, longest wait ${r.maxGapMs} ms` : `${conns.size} of 8 connections broken (${r.errors[0]})`}`,
    );
    await fp.repair();
  }
  return {
    kills: n,
    errors,
    connectionsBroken: broken,
    examples,
    stallMsP50: percentile(stalls, 50),
    stallMsP99: percentile(stalls, 99),
  };
}

/** The workloads run through the failures of a pair, in order. */
function workloads(client: Host, host: string, mb: number, sha: string, pg: boolean): Workload[] {
  return [
    ...(pg ? [pgbench(client, host, 20)] : []),
    curl(client, host, mb, 20, sha),
    redisBench(client, host, 1_000_000),
    iperf3(client, host, 20, false),
    iperf3(client, host, 20, true),
  ];
}

/**
 * Everything a pair's clients see through its failures: the INCR client's stall per failure,
 * then each workload through `n` failures (after each, PostgreSQL's balances checked).
 */
type FailoverFigures = Awaited<ReturnType<typeof throughFailures>>;

async function throughFailures(
  fp: FailingPair,
  client: Host,
  backend: Host,
  host: string,
  n: number,
  o: { mb: number; sha: string; pg: boolean },
  log: (s: string) => void,
) {
  const incr = await incrUnderFailures(fp, client, host, n, log);
  const results: UnderFailures[] = [];
  for (const w of workloads(client, host, o.mb, o.sha, o.pg)) {
    log(`  ${w.name} through ${n} failures …`);
    const before = w.name === 'pgbench' ? await pgSums(backend) : [];
    const r = await underFailures(fp, w, n, log);
    if (w.name === 'pgbench') r.checks.push(pgBalances(before, await pgSums(backend)));
    log(`  ${failuresLine(r)}`);
    results.push(r);
  }
  return { ...incr, workloads: results };
}

/** The sums of TPC-B's balances and of its history's deltas. */
async function pgSums(backend: Host): Promise<number[]> {
  const q = async (sql: string) =>
    Number(
      (await backend.exec('psql', ['-h', SERVER, '-U', 'postgres', '-Atc', sql, 'postgres'])).stdout.trim(),
    );
  return Promise.all([
    q('select sum(abalance) from pgbench_accounts'),
    q('select sum(tbalance) from pgbench_tellers'),
    q('select sum(bbalance) from pgbench_branches'),
    q('select coalesce(sum(delta), 0) from pgbench_history'),
  ]);
}

/**
 * TPC-B's invariant over the runs since `before` (runs with -n: the history is kept): the
 * accounts', tellers' and branches' balances each moved by the history's deltas (a transaction
 * lost or applied twice breaks it).
 */
function pgBalances(before: number[], after: number[]): string {
  const d = after.map((v, i) => v - before[i]);
  const ok = d.every((v) => v === d[3]);
  return `balances ${ok ? 'add up' : 'DO NOT add up'} (moved: accounts ${d[0]}, tellers ${d[1]}, branches ${d[2]}; history ${d[3]})`;
}

/**
 * The pair users run today: two HAProxy hosts behind one VRRP address (keepalived, VRRPv3,
 * 100 ms adverts). A failure is a host failure of the master (its haproxy and keepalived killed,
 * its link down: a killed keepalived leaves the address configured, and that kernel would reset
 * every connection); it returns once a new connection through the address is answered (that
 * time kept in `reconnectMs`). Repaired: link up, both started again.
 */
async function keepalivedPair(
  topo: Topology,
  client: Host,
  dir: string,
  log: (s: string) => void,
): Promise<FailingPair & { reconnectMs: number[]; readonly skipped: number }> {
  const hosts: Host[] = [];
  const procs: Spawned[][] = [];
  for (const [i, name] of ['hka', 'hkb'].entries()) {
    const h = await topo.addHost(name, { ipv4: `198.18.0.${221 + i}/24`, offloads: false });
    await h.exec('ip', ['addr', 'add', `198.18.3.${221 + i}/24`, 'dev', 'eth0']);
    await h.sysctl('net.ipv4.ip_nonlocal_bind', 1);
    hosts.push(h);
    writeFileSync(join(dir, `${name}.cfg`), haproxyCfg(VRRP_VIP));
    writeFileSync(
      join(dir, `${name}.keepalived.conf`),
      `global_defs {\n  router_id ${name}\n  vrrp_version 3\n}\nvrrp_instance VI_1 {\n  state BACKUP\n  nopreempt\n  interface eth0\n  virtual_router_id 51\n  priority ${i === 0 ? 150 : 100}\n  advert_int 0.1\n  virtual_ipaddress {\n    ${VRRP_VIP}/24\n  }\n}\n`,
    );
  }
  const start = (i: number) => {
    const name = ['hka', 'hkb'][i];
    const pid = (k: string) => join(dir, `${name}.${k}.pid`);
    procs[i] = [
      hosts[i].spawn('keepalived', [
        ...['-n', '-l', '-f', join(dir, `${name}.keepalived.conf`)],
        ...['-p', pid('main'), '-r', pid('vrrp'), '-c', pid('chk')],
      ]),
      hosts[i].spawn('haproxy', ['-db', '-f', join(dir, `${name}.cfg`)]),
    ];
  };
  start(0);
  start(1);
  const holder = async () => {
    for (const [i, h] of hosts.entries())
      if ((await h.exec('ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).stdout.includes(VRRP_VIP)) return i;
    return -1;
  };
  await waitUntil('keepalived to elect a master', async () => (await holder()) >= 0, {
    timeoutMs: 20_000,
    tries: 200,
    intervalMs: 100,
  });
  const reconnectMs: number[] = [];
  let failed = -1;
  let noMaster = 0;
  return {
    reconnectMs,
    get skipped() {
      return noMaster;
    },
    async fail() {
      // The pair must be serving before it can fail: a master holds the address (bounded).
      failed = -1;
      for (let i = 0; i < 100 && failed < 0; i++) {
        failed = await holder();
        if (failed < 0) await sleep(200);
      }
      if (failed < 0) {
        noMaster++;
        log(`  no keepalived master holds ${VRRP_VIP} after 20 s: this failure is skipped`);
        return;
      }
      const t0 = performance.now();
      for (const p of procs[failed]) p.kill('SIGKILL');
      await hosts[failed].exec('ip', ['link', 'set', 'eth0', 'down']);
      for (let i = 0; i < 300; i++) {
        const r = await client.exec('redis-cli', ['-h', VRRP_VIP, 'ping'], { timeoutMs: 3000 });
        if (r.stdout.includes('PONG')) {
          reconnectMs.push(performance.now() - t0);
          return;
        }
        await sleep(20);
      }
      log(`  no answer through ${VRRP_VIP} after the failure of ${['hka', 'hkb'][failed]}`);
    },
    async repair() {
      if (failed < 0) return;
      const h = hosts[failed];
      await h.exec('ip', ['addr', 'del', `${VRRP_VIP}/24`, 'dev', 'eth0']);
      await h.exec('ip', ['link', 'set', 'eth0', 'up']);
      start(failed);
      await sleep(1500);
    },
  };
}

const VRRP_VIP = '198.18.0.210';

/** HAProxy in TCP mode in front of the four servers, bound to `front` (source: `source` if set). */
function haproxyCfg(front: string, source?: string): string {
  return `global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n${SERVICES.map(
    ([n, p]) =>
      `frontend f_${n}\n  bind ${front}:${p}\n  default_backend b_${n}\nbackend b_${n}\n${source ? `  source ${source}\n` : ''}  server s ${SERVER}:${p}\n`,
  ).join('')}`;
}

/** Resets in a capture (its filter chose which). */
async function resets(pcap: string): Promise<number> {
  return (await expertSummary(pcap, { timeoutMs: 300_000 })).resets;
}

/** The INCR client's JSON line once it exits (bounded). */
async function incrResult(p: Spawned): Promise<unknown> {
  await Promise.race([p.exited, new Promise((r) => setTimeout(r, 30_000))]);
  const line = p.output().stdout.trim().split('\n').pop() ?? '{}';
  try {
    return JSON.parse(line);
  } catch {
    return { errors: [`no result: ${p.output().stderr.slice(-300)}`] };
  }
}
