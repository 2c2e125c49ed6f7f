/**
 * `npm run bench -- relay [--kills N] [--mb N] [--json]` (root): `takeover relay` side by side
 * with HAProxy (Debian's, kernel TCP) on one real network of namespaces, in one run, in front of
 * the same unmodified servers (redis-server, nginx; PostgreSQL when installed):
 *
 * - targets: HAProxy; our relay serving alone (its standby stopped); our relay in sync mode with
 *   a synced standby;
 * - single-connection download MB/s (curl of an `--mb` MB file from nginx), redis-benchmark
 *   ops/s (`-P 16 -c 50`, GET), pgbench tps (`-c 8 -j 2`, 10 s), 1-byte request RTT p50/p99
 *   (redis-benchmark `-c 1` PING), and the CPU seconds the relay process (or HAProxy) used per GB
 *   downloaded; ratios to HAProxy;
 * - the failover stall per client connection over `--kills` SIGKILLs of the active relay (each
 *   with 8 Redis connections issuing INCR, 16 in flight; the stall is each connection's longest
 *   wait for a reply), and whether any reply was lost, repeated or reset.
 *
 * - what clients see today with the usual pair: two HAProxy hosts behind one VRRP address
 *   (keepalived, VRRPv3, 100 ms adverts), the master's haproxy and keepalived killed (a host
 *   failure) up to 5 times under the same INCR client: connections broken, and how soon a new
 *   connection is answered;
 * - with PostgreSQL, pgbench (`-c 8 -j 2 -T 10`) across two more failures of each pair (our
 *   active relay killed; the HAProxy master host failed): transactions, failed ones, clients
 *   aborted by a lost connection.
 *
 * With --json one line: {"targets": {name: {downloadMBs, redisOps, pgTps, rttMsP50, rttMsP99,
 * cpuSecPerGB}}, "ratios": {name: {...}}, "failover": {"kills", "errors", "stallMsP50",
 * "stallMsP99", "pg": [{exit, processed, failed, aborted, example}]}, "keepalived": {"kills",
 * "connectionsBroken", "examples", "newConnectionMsP50", "pg": [...]}}.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRedisIncr } from '../test/netns/apps/launch.ts';
import { HaPair, VIP } from '../test/netns/ha-pair.ts';
import { type Host, rootSkipReason, type Spawned, Topology, waitUntil } from '../test/netns/harness.ts';
import { type BenchOptions, printTable } from './harness.ts';
import { percentile } from './nemesis.ts';

const SERVER = '198.18.3.10';
const SOURCE = '198.18.3.100';
const HAPROXY_FRONT = '198.18.0.200';
const HAPROXY_SOURCE = '198.18.3.200';
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
  let flags: { kills: number; mb: number };
  try {
    const { values } = parseArgs({
      args: o.args,
      options: { kills: { type: 'string', default: '20' }, mb: { type: 'string', default: '300' } },
      strict: true,
    });
    flags = { kills: Number(values.kills), mb: Number(values.mb) };
    if (!(flags.kills >= 1 && flags.mb >= 1)) throw new Error('--kills and --mb take positive numbers');
  } catch (e) {
    console.error(
      `bench relay: ${(e as Error).message}.\nusage: npm run bench -- relay [--kills N] [--mb N] [--json]`,
    );
    return 2;
  }
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
          ],
          backends: [
            { name: 'redis', servers: [{ name: 'r1', address: `${SERVER}:6379` }] },
            { name: 'web', servers: [{ name: 'n1', address: `${SERVER}:80` }] },
            { name: 'pg', servers: [{ name: 'p1', address: `${SERVER}:5432` }] },
          ],
        },
      },
    });
    const backend = await topo.addHost('backend', { ipv4: `${SERVER}/24`, offloads: false });
    const hap = await topo.addHost('haproxy', { ipv4: `${HAPROXY_FRONT}/24`, offloads: false });
    await hap.exec('ip', ['addr', 'add', `${HAPROXY_SOURCE}/24`, 'dev', 'eth0']);
    const pg = await startServers(backend, dir, flags.mb, log);
    writeFileSync(
      join(dir, 'haproxy.cfg'),
      `global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n${[
        ['redis', 6379],
        ['web', 80],
        ['pg', 5432],
      ]
        .map(
          ([n, p]) =>
            `frontend f_${n}\n  bind ${HAPROXY_FRONT}:${p}\n  default_backend b_${n}\nbackend b_${n}\n  source ${HAPROXY_SOURCE}\n  server s ${SERVER}:${p}\n`,
        )
        .join('')}`,
    );
    const haproxy = hap.spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
    await new Promise((r) => setTimeout(r, 500));
    if (haproxy.exitCode !== null || haproxy.signalCode !== null)
      throw new Error(`haproxy exited: ${haproxy.output().stderr.slice(-1500)}`);
    const client = pair.client;
    const targets: Record<string, Figures> = {};
    log('HAProxy …');
    targets.haproxy = await measure(client, HAPROXY_FRONT, haproxy.pid!, flags.mb, pg, log);
    await pair.start('a');
    log('relay alone (no standby) …');
    targets['relay-alone'] = await measure(client, VIP, pair.procs.get('a')!.pid!, flags.mb, pg, log);
    await pair.start('b');
    await pair.synced('b');
    log('relay in sync mode, standby synced …');
    targets['relay-sync'] = await measure(client, VIP, pair.procs.get('a')!.pid!, flags.mb, pg, log);
    const failover = await kills(pair, flags.kills, pg, flags.mb, log);
    log('HAProxy + keepalived pair …');
    const keepalived = await haproxyPairKills(topo, client, dir, Math.min(flags.kills, 5), pg, flags.mb, log);
    const ratios: Record<string, Record<string, number>> = {};
    for (const [name, f] of Object.entries(targets))
      ratios[name] = Object.fromEntries(
        Object.entries(f).map(([k, v]) => [
          k,
          Math.round((v / targets.haproxy[k as keyof Figures]) * 100) / 100,
        ]),
      );
    if (o.json) console.log(JSON.stringify({ targets, ratios, failover, keepalived }));
    else {
      const r1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
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
      console.log(
        `\nfailover: ${failover.kills} kill -9 of the active relay under 8 INCR connections: ${failover.errors} error(s); stall per connection p50 ${failover.stallMsP50} ms, p99 ${failover.stallMsP99} ms`,
      );
      for (const r of failover.pg)
        console.log(`relay pair, pgbench across a kill -9 of the active: ${pgLine(r)}`);
      for (const r of keepalived.pg)
        console.log(`HAProxy + keepalived, pgbench across a host failure: ${pgLine(r)}`);
      for (const r of failover.others) console.log(`relay pair, across a kill -9 of the active: ${r.line}`);
      for (const r of keepalived.others)
        console.log(`HAProxy + keepalived, across a host failure: ${r.line}`);
      console.log(
        `HAProxy + keepalived: ${keepalived.kills} host failure(s) (haproxy and keepalived of the master killed) under 8 INCR connections: ${keepalived.connectionsBroken} of ${keepalived.kills * 8} connections broken (${keepalived.examples.join('; ')}); a new connection answered ${keepalived.newConnectionMsP50} ms after the kill (p50)`,
      );
    }
    return 0;
  } finally {
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** redis-server, nginx with an `mb` MB file, PostgreSQL if installed (pgbench -i -s 4); true if PostgreSQL runs. */
async function startServers(
  backend: Host,
  dir: string,
  mb: number,
  log: (s: string) => void,
): Promise<boolean> {
  backend.spawn('redis-server', [
    ...['--port', '6379', '--bind', SERVER, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
  ]);
  const www = join(dir, 'www');
  mkdirSync(www);
  await backend.exec('sh', ['-c', `head -c ${mb}M /dev/zero > "$0"`, join(www, 'big')], {
    timeoutMs: 120_000,
  });
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
  return pg;
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

/** `n` kill -9 of the active relay, each under a fresh INCR client; stalls per connection. */
async function kills(pair: HaPair, n: number, pgRounds: boolean, mb: number, log: (s: string) => void) {
  const stalls: number[] = [];
  let errors = 0;
  let victim = 'a';
  for (let i = 0; i < n; i++) {
    const incr: Spawned = await startRedisIncr(pair.client, VIP, `k${i}`);
    await new Promise((r) => setTimeout(r, 500));
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
    await new Promise((r) => setTimeout(r, 1000));
    incr.stdin?.write('stop\n');
    const r = (await pair.result(incr, 'INCR client', 30_000)) as unknown as {
      ok: boolean;
      maxGapMs: number;
      errors: string[];
    };
    stalls.push(r.maxGapMs);
    if (!r.ok) errors++;
    log(
      `  kill ${i + 1}/${n}: ${victim} killed, ${survivor} took over; longest wait ${r.maxGapMs} ms${r.ok ? '' : `; ${r.errors[0]}`}`,
    );
    await pair.start(victim);
    await pair.synced(victim);
    victim = survivor;
  }
  // pgbench through two more take-overs: what its clients see.
  const pg: PgUnderKill[] = [];
  for (let i = 0; pgRounds && i < 2; i++) {
    const survivor = pair.peerOf(victim);
    const r = await pgbenchUnderKill(pair.client, VIP, async () => {
      pair.kill(victim);
      await waitUntil('take-over', async () => (await pair.tryStatus(survivor, 1000))?.role === 'active', {
        timeoutMs: 10_000,
        tries: 200,
        intervalMs: 50,
      });
    });
    log(`  pgbench, kill ${i + 1}/2 of the active relay: ${pgLine(r)}`);
    pg.push(r);
    await pair.start(victim);
    await pair.synced(victim);
    victim = survivor;
  }
  // A download and redis-benchmark through one take-over each.
  const others: Seen[] = [];
  for (const run of [
    (k: () => Promise<void>) => curlUnderKill(pair.client, VIP, mb, k),
    (k: () => Promise<void>) => redisBenchUnderKill(pair.client, VIP, k),
  ]) {
    const survivor = pair.peerOf(victim);
    const r = await run(async () => {
      pair.kill(victim);
      await waitUntil('take-over', async () => (await pair.tryStatus(survivor, 1000))?.role === 'active', {
        timeoutMs: 10_000,
        tries: 200,
        intervalMs: 50,
      });
    });
    log(`  across a kill -9 of the active relay: ${r.line}`);
    others.push(r);
    await pair.start(victim);
    await pair.synced(victim);
    victim = survivor;
  }
  return {
    kills: n,
    errors,
    stallMsP50: percentile(stalls, 50),
    stallMsP99: percentile(stalls, 99),
    pg,
    others,
  };
}

/**
 * The baseline users run today: two HAProxy hosts behind one VRRP address (keepalived, VRRPv3,
 * 100 ms adverts), the master's haproxy and keepalived killed (a host failure) under the same
 * INCR client; what the clients see.
 */
async function haproxyPairKills(
  topo: Topology,
  client: Host,
  dir: string,
  n: number,
  pgRounds: boolean,
  mb: number,
  log: (s: string) => void,
) {
  const VRRP_VIP = '198.18.0.210';
  const hosts: Host[] = [];
  const procs: Spawned[][] = [];
  for (const [i, name] of ['hka', 'hkb'].entries()) {
    const h = await topo.addHost(name, { ipv4: `198.18.0.${221 + i}/24`, offloads: false });
    await h.exec('ip', ['addr', 'add', `198.18.3.${221 + i}/24`, 'dev', 'eth0']);
    await h.sysctl('net.ipv4.ip_nonlocal_bind', 1);
    hosts.push(h);
    writeFileSync(
      join(dir, `${name}.cfg`),
      `global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nfrontend f\n  bind ${VRRP_VIP}:6379\n  default_backend b\nbackend b\n  server s ${SERVER}:6379\nfrontend fpg\n  bind ${VRRP_VIP}:5432\n  default_backend bpg\nbackend bpg\n  server s ${SERVER}:5432\nfrontend fweb\n  bind ${VRRP_VIP}:80\n  default_backend bweb\nbackend bweb\n  server s ${SERVER}:80\n`,
    );
    writeFileSync(
      join(dir, `${name}.keepalived.conf`),
      `global_defs {\n  router_id ${name}\n  vrrp_version 3\n}\nvrrp_instance VI_1 {\n  state BACKUP\n  nopreempt\n  interface eth0\n  virtual_router_id 51\n  priority ${i === 0 ? 150 : 100}\n  advert_int 0.1\n  virtual_ipaddress {\n    ${VRRP_VIP}/24\n  }\n}\n`,
    );
  }
  const start = (i: number) => {
    const h = hosts[i];
    const name = ['hka', 'hkb'][i];
    const k = h.spawn('keepalived', [
      ...['-n', '-l', '-f', join(dir, `${name}.keepalived.conf`)],
      ...[
        '-p',
        join(dir, `${name}.pid`),
        '-r',
        join(dir, `${name}.vrrp.pid`),
        '-c',
        join(dir, `${name}.chk.pid`),
      ],
    ]);
    const p = h.spawn('haproxy', ['-db', '-f', join(dir, `${name}.cfg`)]);
    procs[i] = [k, p];
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
  let broken = 0;
  const examples: string[] = [];
  const reconnectMs: number[] = [];
  for (let k = 0; k < n; k++) {
    const master = await holder();
    const incr: Spawned = await startRedisIncr(client, VRRP_VIP, `h${k}`);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    // A host failure: its processes die and its kernel answers nothing any more (a killed
    // keepalived leaves the address configured, and that kernel would reset every connection).
    for (const p of procs[master]) p.kill('SIGKILL');
    await hosts[master].exec('ip', ['link', 'set', 'eth0', 'down']);
    // How long until a new connection gets an answer through the VRRP address.
    let answered = Number.NaN;
    for (let i = 0; i < 300; i++) {
      const r = await client.exec('redis-cli', ['-h', VRRP_VIP, 'ping'], { timeoutMs: 3000 });
      if (r.stdout.includes('PONG')) {
        answered = performance.now() - t0;
        break;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
    reconnectMs.push(answered);
    if (Number.isNaN(answered)) {
      const other = 1 - master;
      const addr = await hosts[other].exec('ip', ['-4', 'addr', 'show', 'dev', 'eth0']);
      log(
        `  no answer through ${VRRP_VIP}: the other host has ${addr.stdout.includes(VRRP_VIP) ? '' : 'not '}taken the address; its haproxy says: ${procs[other][1].output().stderr.slice(-300)}; keepalived: ${procs[other][0].output().stderr.slice(-300)}${procs[other][0].output().stdout.slice(-300)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
    incr.stdin?.write('stop\n');
    const r = (await incrResult(incr)) as { errors: string[] };
    const conns = new Set(r.errors.map((e) => /^conn (\d+)/.exec(e)?.[1]).filter(Boolean));
    broken += conns.size;
    if (examples.length < 2 && r.errors.length > 0) examples.push(r.errors[0]);
    log(
      `  kill ${k + 1}/${n}: ${['hka', 'hkb'][master]} killed; ${conns.size} of 8 connections broken; a new connection answered after ${Math.round(answered)} ms`,
    );
    await hosts[master].exec('ip', ['addr', 'del', `${VRRP_VIP}/24`, 'dev', 'eth0']);
    await hosts[master].exec('ip', ['link', 'set', 'eth0', 'up']);
    start(master);
    await new Promise((res) => setTimeout(res, 1500));
  }
  // pgbench through two host failures: what its clients see.
  const pg: PgUnderKill[] = [];
  for (let k = 0; pgRounds && k < 2; k++) {
    const master = await holder();
    const r = await pgbenchUnderKill(client, VRRP_VIP, async () => {
      for (const p of procs[master]) p.kill('SIGKILL');
      await hosts[master].exec('ip', ['link', 'set', 'eth0', 'down']);
    });
    log(`  pgbench, host failure ${k + 1}/2 of the HAProxy master: ${pgLine(r)}`);
    pg.push(r);
    await hosts[master].exec('ip', ['addr', 'del', `${VRRP_VIP}/24`, 'dev', 'eth0']);
    await hosts[master].exec('ip', ['link', 'set', 'eth0', 'up']);
    start(master);
    await new Promise((res) => setTimeout(res, 1500));
  }
  // A download and redis-benchmark through one host failure each.
  const others: Seen[] = [];
  for (const run of [
    (k: () => Promise<void>) => curlUnderKill(client, VRRP_VIP, mb, k),
    (k: () => Promise<void>) => redisBenchUnderKill(client, VRRP_VIP, k),
  ]) {
    const master = await holder();
    const r = await run(async () => {
      for (const p of procs[master]) p.kill('SIGKILL');
      await hosts[master].exec('ip', ['link', 'set', 'eth0', 'down']);
    });
    log(`  across a host failure of the HAProxy master: ${r.line}`);
    others.push(r);
    await hosts[master].exec('ip', ['addr', 'del', `${VRRP_VIP}/24`, 'dev', 'eth0']);
    await hosts[master].exec('ip', ['link', 'set', 'eth0', 'up']);
    start(master);
    await new Promise((res) => setTimeout(res, 1500));
  }
  return {
    kills: n,
    connectionsBroken: broken,
    examples,
    newConnectionMsP50: Math.round(percentile(reconnectMs, 50)),
    pg,
    others,
  };
}

/** What pgbench's clients saw across one failure: `kill` runs 2 s into a 10 s TPC-B run. */
interface PgUnderKill {
  exit: number | null;
  processed: number;
  failed: number;
  /** Clients that gave up (a lost connection aborts a pgbench client). */
  aborted: number;
  example: string;
}

/** Runs a client, `kill` 2 s in; its exit code and output (bounded: 120 s, then killed). */
async function underKill(
  client: Host,
  cmd: string,
  args: string[],
  kill: () => Promise<void>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = client.spawn(cmd, args);
  await new Promise((r) => setTimeout(r, 2000));
  await kill();
  const { code } = await Promise.race([
    p.exited,
    new Promise<{ code: null }>((r) => setTimeout(() => r({ code: null }), 120_000)),
  ]);
  if (code === null) p.kill('SIGKILL');
  return { code, ...p.output() };
}

/** What a client saw across a failure, in one line, and whether it saw nothing wrong. */
interface Seen {
  ok: boolean;
  line: string;
}

const errorLine = (text: string) =>
  text
    .replace(/\r/g, '\n')
    .split('\n')
    .find((l) => /error|reset|lost|abort|refused|fail|closed|timed out/i.test(l))
    ?.trim() ?? '';

/** curl of the big file at 20 MB/s (in flight at the failure): complete, or how it ended. */
async function curlUnderKill(
  client: Host,
  host: string,
  mb: number,
  kill: () => Promise<void>,
): Promise<Seen> {
  const r = await underKill(
    client,
    'curl',
    [
      '-sS',
      '--max-time',
      '100',
      '--limit-rate',
      '20M',
      '-o',
      '/dev/null',
      '-w',
      '%{size_download}',
      `http://${host}/big`,
    ],
    kill,
  );
  const got = Number(r.stdout.trim());
  const ok = r.code === 0 && got === mb * 1024 * 1024;
  return {
    ok,
    line: `curl exit ${r.code}, ${got} of ${mb * 1024 * 1024} bytes${ok ? '' : ` (${errorLine(r.stderr)})`}`,
  };
}

/** redis-benchmark -P 16 -c 50 (GET): finished without an error, or its first error. */
async function redisBenchUnderKill(client: Host, host: string, kill: () => Promise<void>): Promise<Seen> {
  const r = await underKill(
    client,
    'redis-benchmark',
    ['-h', host, '-P', '16', '-c', '50', '-n', '1000000', '-t', 'get', '-q'],
    kill,
  );
  const err = errorLine(`${r.stdout}\n${r.stderr}`);
  const ok = r.code === 0 && err === '' && /requests per second/.test(r.stdout);
  if (r.code === null)
    return { ok, line: 'redis-benchmark did not finish within 120 s (its connections hung; killed)' };
  return { ok, line: `redis-benchmark exit ${r.code}${err ? `: ${err}` : ', no error'}` };
}

async function pgbenchUnderKill(client: Host, host: string, kill: () => Promise<void>): Promise<PgUnderKill> {
  const { code, stdout, stderr } = await underKill(
    client,
    'pgbench',
    ['-h', host, '-U', 'postgres', '-c', '8', '-j', '2', '-T', '10', 'postgres'],
    kill,
  );
  const out = `${stdout}\n${stderr}`;
  return {
    exit: code,
    processed: Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? Number.NaN),
    failed: Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0),
    aborted: (out.match(/client \d+ aborted/g) ?? []).length,
    example:
      stderr
        .split('\n')
        .find((l) => /lost|abort|error|terminat/i.test(l))
        ?.trim() ?? '',
  };
}

const pgLine = (r: PgUnderKill) =>
  r.exit === null
    ? 'pgbench did not finish within 120 s of a 10 s run (its connections hung; killed)'
    : `pgbench exit ${r.exit}, ${r.processed} transactions, ${r.failed} failed, ${r.aborted} of 8 clients aborted${r.example ? ` (${r.example})` : ''}`;

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
