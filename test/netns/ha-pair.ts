/**
 * An active/standby pair of `takeover node` processes on the netns harness, for the take-over
 * tests, `npm run bench -- failover` and the nemesis suite: both TAPs on one bridge, the
 * replication link over kernel TCP on addresses of their own, the example apps (echo 7, download
 * 19, HTTP 80) on the VIP, and one take-over round under load from kernel clients.
 *
 * Two layouts. By default both processes run in the switch namespace (where the TAPs are) and
 * the replication link runs over its loopback. With `hostNamespaces` each node is a host of its
 * own, as the nemesis needs to cut one node off: its process runs in namespace `<id>-n<name>`,
 * opens its TAP in the switch namespace (`tap.netns`), and the replication link is a veth pair
 * between the two node namespaces (198.18.1.1/30, 198.18.1.2/30), so it can be cut without
 * touching the data link (`cutReplication`), and the data link without touching it (`cutData`).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { HTTP_PATTERN } from '../../examples/http.ts';
import { NODE_CONFIG_DEFAULTS } from '../../src/cli/config.ts';
import type { NodeStatus } from '../../src/cli/node.ts';
import { queryStatus } from '../../src/cli/status.ts';
import { fillPattern } from '../../src/link/sim/pattern.ts';
import { launch, whenReady } from './apps/launch.ts';
import {
  cutInput,
  expertSummary,
  type Host,
  type Namespace,
  runCommand,
  type Spawned,
  signalProcess,
  type TapHost,
  type Topology,
  waitUntil,
} from './harness.ts';

export const VIP = '198.18.0.100';
const ROOT = new URL('../../', import.meta.url).pathname;

export interface ClientResult {
  ok: boolean;
  bytes: number;
  maxGapMs: number;
  /** The longest any one connection waited for its next bytes (the stall a user sees). */
  maxConnGapMs: number;
  errors: string[];
}

export function patternSha(stream: number, n: number): string {
  const h = createHash('sha256');
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (let o = 0; o < n; o += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, n - o));
    fillPattern(stream, o, part);
    h.update(part);
  }
  return h.digest('hex');
}

export interface PairOptions {
  /** Written to both configs; `null` leaves the field out (the node's default). Default 20. */
  heartbeatMs?: number | null;
  /** Written to both configs; `null` leaves the field out (the node's default). Default 100. */
  timeoutMs?: number | null;
  mode?: 'sync' | 'async';
  /** Each node in a namespace of its own, the replication link a veth pair (module comment). */
  hostNamespaces?: boolean;
  /** Modules every node process loads with `--import` after tsx (test hooks such as a clock step). */
  preload?: string[];
  /**
   * `takeover relay` nodes in place of the example apps: the relay's config sections (README
   * "Relay") and the virtual addresses they need besides the client side's (the servers' side).
   */
  relay?: { sections: Record<string, unknown>; vip: string[] };
  /** Each node serves Prometheus metrics on its loopback (`admin.listen`): see `metrics`. */
  admin?: boolean;
  /** The config's `arbiter.etcd` of each node (README "Partitions"). */
  arbiter?: (name: string) => { endpoints: string[]; cluster: string; timeoutMs?: number };
  /**
   * Run the nodes as this user and group with CAP_NET_ADMIN and CAP_BPF only (what the systemd
   * unit grants, deploy/systemd/): `setpriv` with those as the ambient, inheritable and bounding
   * sets. The pair's directory is handed to that user. Not with `hostNamespaces` (entering the
   * switch's namespace needs CAP_SYS_ADMIN).
   */
  runAs?: { uid: number; gid: number };
}

/** The capabilities a node runs with under `runAs` (and the systemd unit). */
export const NODE_CAPS = ['net_admin', 'bpf'];

export interface StartOptions {
  /**
   * Run the process in a time namespace whose CLOCK_MONOTONIC is offset by this many seconds
   * (`unshare --time --monotonic`), as a host booted at another time. Needs a kernel with time
   * namespaces (`timeNamespaceSkipReason()`).
   */
  monotonicOffsetS?: number;
  /** Extra environment for the process. */
  env?: Record<string, string>;
  /**
   * Run the process at this nice value until it is up (then at 0, every thread): its start-up
   * (loading and compiling the TypeScript, about 0.5 s of CPU) does not take the CPU from the
   * node it joins, as it could not on its own host. On a 2-core test machine it did: the active's
   * event loop lost 8-14 ms at a time while the restarted standby started, a stall to clients
   * that no replication did.
   */
  startupNice?: number;
}

/** A node's log line as the harness received it (`at`: the harness's Date.now()). */
export interface NodeLogLine {
  node: string;
  pid: number;
  at: number;
  line: string;
}

/** A node process that ended without the harness ending it. */
export interface NodeExit {
  node: string;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Its last log lines. */
  tail: string;
}

const MAX_LOG_LINES = 50_000;

/** Each node's metrics port (the two may share a namespace). */
const adminPort = (name: string) => (name === 'a' ? 9464 : 9465);

let timeNsSupport: string | undefined | null = null;

/** Why node processes cannot get a time namespace of their own here, or undefined when they can. */
export function timeNamespaceSkipReason(): string | undefined {
  if (timeNsSupport !== null) return timeNsSupport;
  const r = spawnSync('unshare', ['--time', '--monotonic', '1000', 'true'], {
    encoding: 'utf8',
    timeout: 5000,
  });
  timeNsSupport =
    r.status === 0
      ? undefined
      : `unshare --time failed: ${(r.stderr ?? r.error?.message ?? '').trim() || `exit ${r.status}`}`;
  return timeNsSupport;
}

export class HaPair {
  readonly procs = new Map<string, Spawned>();
  readonly taps = new Map<string, TapHost>();
  /** With `hostNamespaces`: each node's own namespace (its process and its replication address). */
  readonly hosts = new Map<string, Namespace>();
  /** The silence, in ms, after which a node counts its peer as gone (the config's or the default). */
  readonly timeoutMs: number;
  /** Every node's log lines, oldest first (bounded). */
  readonly log: NodeLogLine[] = [];
  /** Node processes that ended on their own (not by `kill`, `stop` or `destroy`). */
  readonly exits: NodeExit[] = [];
  private readonly ending = new Set<Spawned>();
  private healReplication: (() => Promise<void>) | undefined;
  private readonly dataCut = new Set<string>();
  private betweenCut = false;

  private constructor(
    readonly topo: Topology,
    readonly client: Host,
    readonly dir: string,
    readonly opts: PairOptions,
  ) {
    const hb = opts.heartbeatMs === undefined ? 20 : (opts.heartbeatMs ?? NODE_CONFIG_DEFAULTS.heartbeatMs);
    this.timeoutMs =
      opts.timeoutMs === undefined
        ? 100
        : (opts.timeoutMs ??
          Math.max(NODE_CONFIG_DEFAULTS.timeoutMs, NODE_CONFIG_DEFAULTS.timeoutHeartbeats * hb));
  }

  /** Builds the network and the two configs (a: active, b: standby); starts nothing. */
  static async create(topo: Topology, dir: string, opts: PairOptions = {}): Promise<HaPair> {
    const client = await topo.addHost('client', { ipv4: '198.18.0.1/24', offloads: false });
    const pair = new HaPair(topo, client, dir, opts);
    const a = await topo.addTapHost('a');
    const b = await topo.addTapHost('b');
    if (opts.hostNamespaces) {
      const na = await topo.addNamespaceHost('na');
      const nb = await topo.addNamespaceHost('nb');
      await topo.link(na, nb, '198.18.1.1/30', '198.18.1.2/30', 'repl0');
      pair.hosts.set('a', na);
      pair.hosts.set('b', nb);
    } else {
      await a.exec('ip', ['link', 'set', 'lo', 'up']);
      await a.exec('ip', ['addr', 'add', '198.18.1.1/32', 'dev', 'lo']);
      await a.exec('ip', ['addr', 'add', '198.18.1.2/32', 'dev', 'lo']);
    }
    writeFileSync(join(dir, 'key'), randomBytes(32).toString('hex'), { mode: 0o600 });
    const nodes = [
      ['a', a, 'active', '198.18.1.1', '198.18.1.2'],
      ['b', b, 'standby', '198.18.1.2', '198.18.1.1'],
    ] as const;
    for (const [name, tap, role, me, peer] of nodes) {
      pair.taps.set(name, tap);
      const timing = {
        ...(opts.heartbeatMs === null ? {} : { heartbeatMs: opts.heartbeatMs ?? 20 }),
        ...(opts.timeoutMs === null ? {} : { timeoutMs: opts.timeoutMs ?? 100 }),
      };
      const cfg = {
        nodeId: name,
        role,
        tap: opts.hostNamespaces ? { name: tap.tap, netns: topo.switch.ns } : { name: tap.tap },
        vip: [`${VIP}/24`, ...(opts.relay?.vip ?? [])],
        replication: {
          listen: `${me}:7400`,
          peer: `${peer}:7400`,
          keyFile: './key',
          mode: opts.mode ?? 'sync',
          ...timing,
        },
        ...(opts.relay ? opts.relay.sections : { app: { module: join(ROOT, 'examples/all.ts') } }),
        status: { socket: join(dir, `${name}.sock`) },
        ...(opts.admin ? { admin: { listen: `127.0.0.1:${adminPort(name)}` } } : {}),
        ...(opts.arbiter ? { arbiter: { etcd: opts.arbiter(name) } } : {}),
      };
      writeFileSync(join(dir, `${name}.json`), JSON.stringify(cfg, null, 2));
    }
    const run = opts.runAs;
    if (run) {
      if (opts.hostNamespaces)
        throw new Error('runAs does not go with hostNamespaces (setns needs CAP_SYS_ADMIN).');
      // Its files are that user's; the directory is everyone's (the node creates its status
      // socket there, dumpcap, which drops root, its captures).
      for (const f of readdirSync(dir)) chownSync(join(dir, f), run.uid, run.gid);
      chmodSync(dir, 0o1777);
    }
    return pair;
  }

  /** The names of the two nodes. */
  get names(): string[] {
    return [...this.taps.keys()];
  }

  /** The other node's name. */
  peerOf(name: string): string {
    return this.names.find((n) => n !== name)!;
  }

  /** Starts node `name` (its configured role; a node that finds an active peer joins as standby). */
  async start(name: string, o: StartOptions = {}): Promise<void> {
    const where = this.hosts.get(name) ?? this.taps.get(name)!;
    const node = [
      '--import',
      'tsx',
      ...(this.opts.preload ?? []).flatMap((m) => ['--import', m]),
      join(ROOT, 'src/cli/main.ts'),
      this.opts.relay ? 'relay' : 'node',
      '--config',
      join(this.dir, `${name}.json`),
    ];
    const env = o.env ? { ...process.env, ...o.env } : undefined;
    const run = this.opts.runAs;
    const caps = NODE_CAPS.map((c) => `+${c}`).join(',');
    const p = run
      ? // setpriv execs node in place (same pid): a signal to it is one to node.
        where.spawn(
          'setpriv',
          [
            `--reuid=${run.uid}`,
            `--regid=${run.gid}`,
            '--clear-groups',
            `--inh-caps=-all,${caps}`,
            `--ambient-caps=-all,${caps}`,
            `--bounding-set=-all,${caps}`,
            '--',
            process.execPath,
            ...node,
          ],
          env ? { env } : {},
        )
      : o.monotonicOffsetS === undefined
        ? where.spawn(process.execPath, node, env ? { env } : {})
        : // unshare execs node in place (same pid, same process group): a signal to it is one to node.
          where.spawn(
            'unshare',
            ['--time', '--monotonic', String(Math.trunc(o.monotonicOffsetS)), process.execPath, ...node],
            env ? { env } : {},
          );
    this.procs.set(name, p);
    const pid = p.pid ?? -1;
    if (o.startupNice !== undefined && pid > 0) setPriority(pid, o.startupNice);
    let partial = '';
    p.stderr?.on('data', (d: string | Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      const at = Date.now();
      for (const line of lines) this.log.push({ node: name, pid, at, line });
      if (this.log.length > MAX_LOG_LINES) this.log.splice(0, this.log.length - MAX_LOG_LINES);
    });
    void p.exited.then(({ code, signal }) => {
      if (this.ending.has(p)) return;
      const tail = p.output().stderr.split('\n').slice(-15).join('\n');
      this.exits.push({ node: name, pid, code, signal, tail });
    });
    await whenReady(p, `node ${name}`);
    if (o.startupNice !== undefined && pid > 0) {
      // Threads started meanwhile (the pulse worker, libuv's pool) inherited the nice value.
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try {
          setPriority(Number(tid), 0);
        } catch {
          // A thread that ended since.
        }
      }
    }
  }

  /** Node `name`'s Prometheus metrics (`admin`), scraped with curl where it runs. */
  async metrics(name: string): Promise<string> {
    const where = this.hosts.get(name) ?? this.taps.get(name)!;
    const r = await where.exec('curl', [
      '-sS',
      '-f',
      '-m',
      '5',
      `http://127.0.0.1:${adminPort(name)}/metrics`,
    ]);
    if (r.code !== 0) throw new Error(`scraping ${name}'s metrics: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Node `name`'s admin address (dashboard, status.json, metrics), and the namespace it is in. */
  admin(name: string): { url: string; netns: string } {
    const where = this.hosts.get(name) ?? this.taps.get(name)!;
    return { url: `http://127.0.0.1:${adminPort(name)}/`, netns: where.ns };
  }

  /** Whether node `name`'s current process is running (not exited; a stopped one counts). */
  running(name: string): boolean {
    const p = this.procs.get(name);
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  async status(name: string): Promise<NodeStatus> {
    try {
      return await queryStatus(join(this.dir, `${name}.sock`));
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${this.logs()}`);
    }
  }

  /**
   * `takeover switchover` against node `name` (the real command line, as an operator runs it):
   * its exit code and the JSON it printed (or its error).
   */
  async switchover(name: string, timeoutMs = 10_000): Promise<{ code: number | null; out: string }> {
    const r = await runCommand(
      [
        process.execPath,
        '--import',
        'tsx',
        join(ROOT, 'src/cli/main.ts'),
        'switchover',
        '--socket',
        join(this.dir, `${name}.sock`),
        '--json',
        '--timeout-ms',
        String(timeoutMs),
      ],
      { timeoutMs: timeoutMs + 10_000 },
    );
    return { code: r.code, out: (r.stdout + r.stderr).trim() };
  }

  /** The status, or undefined when the node does not answer within `timeoutMs` (stopped, dead). */
  async tryStatus(name: string, timeoutMs = 1000): Promise<NodeStatus | undefined> {
    if (!this.running(name)) return undefined;
    return queryStatus(join(this.dir, `${name}.sock`), timeoutMs).catch(() => undefined);
  }

  /** The pid of node `name`'s process, if it runs. */
  pidOf(name: string): number | undefined {
    return this.procs.get(name)?.pid;
  }

  /** SIGSTOP to node `name`'s process: it keeps its sockets and its memory, and does nothing. */
  pause(name: string): void {
    signalProcess(this.procs.get(name)!, 'SIGSTOP');
  }

  /** SIGCONT: the paused node runs again, its timers late by the pause. */
  resume(name: string): void {
    signalProcess(this.procs.get(name)!, 'SIGCONT');
  }

  /** Sends `sig` to node `name`'s process (a test hook such as a clock step). */
  signal(name: string, sig: NodeJS.Signals): void {
    signalProcess(this.procs.get(name)!, sig);
  }

  /** Stops node `name` with SIGTERM (a clean stop: it says goodbye), waiting for it to exit. */
  async stop(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) return;
    this.ending.add(p);
    signalProcess(p, 'SIGCONT');
    signalProcess(p, 'SIGTERM');
    if (!(await Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000, undefined))]))) {
      signalProcess(p, 'SIGKILL');
      await Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000))]);
    }
  }

  /**
   * Cuts node `name`'s data link (the bridge drops what its TAP sends and what it would send to
   * it; the process writes into the void), or heals it. Needs nothing of the layout.
   */
  async cutData(name: string, cut = true): Promise<void> {
    await this.topo.setPortCut(this.taps.get(name)!.tap, cut);
    if (cut) this.dataCut.add(name);
    else this.dataCut.delete(name);
  }

  /** Cuts the replication link both ways (no FIN, no RST gets through), or heals it (`hostNamespaces` only). */
  async cutReplication(cut = true, deafFirst?: string): Promise<void> {
    if (!cut) {
      const heal = this.healReplication;
      this.healReplication = undefined;
      await heal?.();
      return;
    }
    if (this.hosts.size !== 2) throw new Error('cutReplication needs a pair created with hostNamespaces.');
    if (this.healReplication) return;
    // The cut takes one host after the other: `deafFirst` goes deaf first. For a node cut off
    // (a host losing power, a blip) its peer must stop hearing it first, as when its outbound
    // path dies: the other way round, the isolated node, deaf, drops its standby and the standby
    // hears the word (a one-way cut, another fault).
    const hosts = [...this.hosts.entries()].sort(
      ([x], [y]) => Number(y === deafFirst) - Number(x === deafFirst),
    );
    this.healReplication = await cutInput(
      hosts.map(([, h]) => h),
      'repl0',
    );
  }

  /**
   * Cuts the data link between the two nodes only (each still reaches the clients, which the
   * switch floods to both), or heals it: with `cutReplication`, two nodes that cannot hear each
   * other at all while both hear the clients.
   */
  async cutBetween(cut = true): Promise<void> {
    const [a, b] = this.names.map((n) => this.taps.get(n)!.tap);
    await this.topo.setPairCut(a, b, cut);
    this.betweenCut = cut;
  }

  /** Heals every cut this pair made (data ports, between the nodes, the replication link). */
  async healAll(): Promise<void> {
    if (this.betweenCut) await this.cutBetween(false);
    for (const n of [...this.dataCut]) await this.cutData(n, false);
    await this.cutReplication(false);
  }

  /** Waits until `name` is a synced standby (it could take over). */
  async synced(name: string): Promise<void> {
    const last = { status: undefined as NodeStatus | undefined };
    await waitUntil(
      `${name} to be a synced standby`,
      async () => {
        const s = await this.status(name).catch(() => undefined);
        last.status = s;
        return s?.role === 'standby' && s.synced;
      },
      { timeoutMs: 30_000, tries: 600, intervalMs: 50 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}; last status ${JSON.stringify(last.status)}\n${this.logs()}`);
    });
  }

  /** SIGKILL to node `name`'s process (a crash; its kernel closes its sockets). */
  kill(name: string): void {
    const p = this.procs.get(name)!;
    this.ending.add(p);
    process.kill(-p.pid!, 'SIGKILL');
  }

  /** The TAP's counters as the kernel keeps them (drops: frames our process did not read in time). */
  async tapStats(name: string): Promise<string> {
    const tap = this.taps.get(name)!.tap;
    const r = await this.topo.switch.exec('ip', ['-s', 'link', 'show', tap]);
    return r.stdout.replace(/\s+/g, ' ').replace(/.*?RX:/, 'RX:');
  }

  logs(): string {
    return [...this.procs.entries()]
      .map(([n, p]) => `--- ${n}\n${p.output().stderr.slice(-3000)}`)
      .join('\n');
  }

  /** Waits for a client process's JSON result line (bounded). */
  async result(p: Spawned, what: string, timeoutMs = 180_000): Promise<ClientResult> {
    let timer: NodeJS.Timeout | undefined;
    const { code } = await Promise.race([
      p.exited,
      new Promise<{ code: number }>((_r, rej) => {
        timer = setTimeout(
          () => rej(new Error(`${what} did not finish in ${timeoutMs} ms\n${this.logs()}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const line = p.output().stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as ClientResult;
    } catch {
      throw new Error(
        `${what} printed no result (exit ${code}): ${p.output().stderr.slice(-2000)}\n${this.logs()}`,
      );
    }
  }

  /**
   * One take-over under load: an echo stream both ways, 200 HTTP keep-alive connections and a
   * curl download; `victim` is killed with SIGKILL once they flow. Returns what the clients saw
   * (assertions are the caller's; nothing here throws for a failed check).
   */
  async round(
    wantVictim: string,
    wantSurvivor: string,
    round: number,
    sizes: RoundSizes,
  ): Promise<RoundOutcome> {
    let victim = wantVictim;
    let survivor = wantSurvivor;
    const pcap = join(this.dir, `client-${round}.pcap`);
    const cap = await this.client.capture(pcap, { snaplen: 128 });
    const echo = launch(this.client, 'ha-client.ts', ['echo', VIP, '7', String(sizes.echoBytes)]);
    const http = launch(this.client, 'ha-client.ts', [
      'http',
      VIP,
      '80',
      String(sizes.httpConnections),
      String(sizes.httpRequests),
      '2000',
    ]);
    const curlFile = join(this.dir, `curl-${round}`);
    const curl = this.client.spawn('curl', [
      '-sS',
      '--max-time',
      '170',
      '-o',
      curlFile,
      `http://${VIP}/bytes/${sizes.curlBytes}`,
    ]);
    await waitUntil(
      'the clients to be flowing',
      () => echo.output().stdout.includes('started') && http.output().stdout.includes('started'),
      { timeoutMs: 30_000, tries: 600, intervalMs: 50 },
    );
    await new Promise((r) => setTimeout(r, 300));
    // The precondition of a take-over: an active and a synced standby. On two busy cores the
    // active may have dropped a standby that fell behind under this load (it rejoins and syncs in
    // well under a second), or, stalled past the test's 100 ms lease, been taken over (safely:
    // it is fenced and rejoins). The kill then goes to whichever node is active, and says so.
    let swapped = '';
    await waitUntil(
      'one active node and one synced standby before the kill',
      async () => {
        const [x, y] = await Promise.all([this.tryStatus(victim), this.tryStatus(survivor)]);
        if (x?.role === 'active' && y?.role === 'standby' && y.synced) return true;
        if (y?.role === 'active' && x?.role === 'standby' && x.synced) {
          swapped = `${survivor} had taken over from ${victim} before the kill (a stall past the lease under this load); `;
          [victim, survivor] = [survivor, victim];
          return true;
        }
        return false;
      },
      { timeoutMs: 30_000, tries: 600, intervalMs: 50 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${this.logs()}`);
    });
    const before = await this.status(victim);
    this.kill(victim);
    await sizes.afterKill?.(victim);
    const failures: string[] = [];
    const clients: ClientResult[] = [];
    const gaps: string[] = [];
    for (const [p, what] of [
      [echo, 'echo client'],
      [http, 'http clients'],
    ] as const) {
      const r = await this.result(p, what).catch((e: Error) => {
        failures.push(e.message);
        return undefined;
      });
      if (r) {
        clients.push(r);
        gaps.push(`${what} ${r.maxConnGapMs} ms (any byte: ${r.maxGapMs} ms)`);
        if (!r.ok) failures.push(`${what}: ${r.errors.join('; ')}`);
      }
    }
    const c = await curl.exited;
    let curlOk = c.code === 0;
    if (!curlOk) failures.push(`curl exited ${c.code}: ${curl.output().stderr.trim()}`);
    else if (
      createHash('sha256').update(readFileSync(curlFile)).digest('hex') !==
      patternSha(HTTP_PATTERN, sizes.curlBytes)
    ) {
      curlOk = false;
      failures.push('curl: body sha256 differs');
    }
    const { dropped } = await cap.stop();
    const s = await expertSummary(pcap, { timeoutMs: 120_000 });
    if (s.resets > 0) failures.push(`${s.resets} RST in the client's capture: ${s.report}`);
    if (s.malformed > 0) failures.push(`malformed frames: ${s.report}`);
    if (!dropped && s.badChecksums > 0) failures.push(`bad checksums: ${s.report}`);
    const after = await this.status(survivor).catch(() => undefined);
    if (after?.role !== 'active') failures.push(`${survivor} is ${after?.role}, not active`);
    else if (!(after.epoch > before.epoch))
      failures.push(`epoch did not move on (${before.epoch} -> ${after.epoch})`);
    // kill -9 closes the replication socket: the survivor must have seen that, not silence
    // (unless the killed node came back first: its new process then holds a link of its own).
    else if (after.lastTakeover?.cause !== 'link closed' && !sizes.afterKill)
      failures.push(
        `${survivor} detected the take-over by ${after.lastTakeover?.cause}, not the link closing`,
      );
    if (failures.length > 0) failures.push(this.logs());
    return {
      killed: victim,
      failures,
      resets: s.resets,
      bytesVerified: clients.reduce((n, r) => n + r.bytes, 0) + (curlOk ? sizes.curlBytes : 0),
      stallMs: Math.max(0, ...clients.map((r) => r.maxConnGapMs)),
      connections: 1 + sizes.httpConnections + 1,
      restored: after?.lastTakeover?.connections ?? 0,
      nodeStallMs: after?.lastTakeover?.stallMs ?? null,
      detail: `${swapped}${gaps.join(', ')}; ${process.env.HA_DEBUG ? `${survivor}'s TAP: ${await this.tapStats(survivor)}; ` : ''}${victim} had ${before.rssMB} MB resident; detected ${after?.lastTakeover?.detectionMs} ms after the last word, restored in ${after?.lastTakeover?.restoreMs} ms${
        process.env.HA_DEBUG
          ? `\n${(this.procs.get(survivor)?.output().stderr ?? '')
              .split('\n')
              .filter((l) => l.includes('take-over:'))
              .join('\n')}`
          : ''
      }`,
    };
  }
}

export interface RoundSizes {
  echoBytes: number;
  httpConnections: number;
  httpRequests: number;
  curlBytes: number;
  /** Runs right after the kill, before the clients are awaited (a restart, say). */
  afterKill?: (killed: string) => Promise<void>;
}

export interface RoundOutcome {
  /** The node killed: the one asked for, or the other if it had taken over before the kill. */
  killed: string;
  failures: string[];
  resets: number;
  bytesVerified: number;
  /** The longest any one client connection waited for its next bytes (ms). */
  stallMs: number;
  connections: number;
  restored: number;
  /** The stall as the new active's status reports it (its restored connections moving again). */
  nodeStallMs: number | null;
  /** Each client's longest gap, detection and restore times, for the log. */
  detail: string;
}

/** Asserts a round went clean. */
export function assertClean(o: RoundOutcome): void {
  assert.deepEqual(o.failures, [], o.failures.join('\n'));
}
