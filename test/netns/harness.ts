/**
 * Real networks for tests (docs/ARCHITECTURE.md §2, §11): Linux network namespaces joined by a
 * bridge, kernel hosts on veth pairs, TAP ports for our stack, captures judged by tshark, and the
 * impairments this kernel has (iptables `statistic` loss, tbf rate limits; no netem: use
 * `link/fault.ts` in the stack process for delay, reordering, duplication and corruption).
 *
 * ```ts
 * const why = rootSkipReason();            // skip the test with this, when set
 * const net = await Topology.create();
 * try {
 *   const client = await net.addHost('client', { ipv4: '198.18.0.1/24', offloads: false });
 *   const stack = await net.addTapHost('active');
 *   const proc = stack.spawn(process.execPath, ['--import', 'tsx', 'server.ts', stack.tap]);
 *   const cap = await client.capture('/tmp/x.pcap');
 *   await client.exec('curl', ['-s', 'http://198.18.0.10/'], { timeoutMs: 5000 });
 *   await cap.stop();
 *   const s = await expertSummary('/tmp/x.pcap');  // s.resets === 0, s.errors === 0 …
 * } finally {
 *   await net.destroy();
 * }
 * ```
 *
 * Layout (one run, `id` = prefix + pid + random, so parallel runs never collide):
 *
 *   <id>-sw     the switch: bridge <id>br (no STP, forward delay 0, no multicast snooping, no
 *               IPv6 in this namespace, so the kernel there never speaks), one port per host.
 *   <id>-<name> a kernel host: `eth0` (veth), its peer <id>v<n> on the bridge.
 *   TAP hosts   a TAP device <id>t<n> created *in the switch namespace* and enslaved to the
 *               bridge: a TAP can only be a bridge port in the bridge's own namespace. The stack
 *               process therefore runs in the switch namespace (`TapHost.spawn` does this) and
 *               opens the TAP by name. Frames it writes enter the bridge; nothing else in that
 *               namespace has an address, so the only IP speaker on that port is the process.
 *
 * Every host is created with IPv6 DAD off (addresses usable at once). Offloads are on by default
 * (the kernel's usual path); a host whose traffic is captured and checksum-checked needs
 * `offloads: false`, or its frames carry partial checksums (veth never completes them).
 *
 * Cleanup: `destroy()` stops every process (SIGTERM to its process group, SIGKILL after a bound),
 * kills whatever else still runs in our namespaces and deletes them, always. A run that crashes
 * or is interrupted is cleaned on process 'exit', SIGINT, SIGTERM and SIGHUP. Every wait here is
 * bounded in time and every loop in count.
 */
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';

const PYTHON = '/usr/bin/python3';
/** Tools the harness itself runs. */
const TOOLS = ['ip', 'tc', 'iptables', 'ip6tables', 'ethtool', 'tshark', 'dumpcap', 'capinfos'];
/** Tools `Topology.setPortCut` needs besides (the nemesis skips without them). */
export const CUT_TOOLS = ['ebtables'];
const OUTPUT_LIMIT = 1 << 20;
const MAX_HOSTS = 999;

/** Why real-network tests cannot run here (not root, a tool missing), or undefined when they can. */
export function rootSkipReason(extraTools: readonly string[] = []): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: network namespaces and TAP devices need CAP_NET_ADMIN';
  const missing = [...TOOLS, ...extraTools].filter(
    (t) => spawnSync('sh', ['-c', `command -v "$0"`, t], { stdio: 'ignore' }).status !== 0,
  );
  if (missing.length > 0) return `needs ${missing.join(', ')} (not installed)`;
  if (!existsSync('/dev/net/tun')) return 'needs /dev/net/tun (the tun module) for TAP devices';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Processes

export interface RunResult {
  /** Exit code, or null when killed by a signal (a timeout included). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  /** Kill the command (its whole process group) after this long. Default 10 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
}

/** A process started by `spawn`: the ChildProcess, plus its exit and the tail of its output. */
export type Spawned = ChildProcess & {
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last megabyte of what it wrote (when stdout/stderr are pipes). */
  output(): { stdout: string; stderr: string };
};

/** Keeps the tail of a stream's text, at most OUTPUT_LIMIT characters. */
class Tail {
  private text = '';
  constructor(stream: NodeJS.ReadableStream | null) {
    stream?.setEncoding('utf8');
    stream?.on('data', (d: string) => this.push(d));
  }
  push(d: string): void {
    this.text += d;
    if (this.text.length > 2 * OUTPUT_LIMIT) this.text = this.text.slice(-OUTPUT_LIMIT);
  }
  get value(): string {
    return this.text.slice(-OUTPUT_LIMIT);
  }
}

/** Starts `argv` in a process group of its own (so a kill reaches its children too). */
function start(argv: readonly string[], opts: SpawnOptions = {}): Spawned {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...opts, detached: true });
  const out = new Tail(child.stdout);
  const err = new Tail(child.stderr);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (e) => {
      err.push(`${argv[0]}: ${e.message}\n`);
      resolve({ code: null, signal: null });
    });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return Object.assign(child, { exited, output: () => ({ stdout: out.value, stderr: err.value }) });
}

/**
 * Sends `sig` to a process started here and its process group (SIGSTOP/SIGCONT pause and resume
 * it; SIGKILL is a crash). Does nothing for a process that has exited.
 */
export function signalProcess(child: ChildProcess, sig: NodeJS.Signals): void {
  signalGroup(child, sig);
}

function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  }
}

function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Stops a process: `signal` (default SIGTERM) to its group, SIGKILL after `graceMs` (default 2 s),
 * and waits (bounded) for it to exit. Resolves with how it ended.
 */
export async function stopProcess(
  child: Spawned,
  opts: { signal?: NodeJS.Signals; graceMs?: number } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  signalGroup(child, opts.signal ?? 'SIGTERM');
  const ended = await within(child.exited, opts.graceMs ?? 2000);
  if (ended) return ended;
  signalGroup(child, 'SIGKILL');
  return within(child.exited, 2000);
}

/** Runs `argv` to completion, bounded by `timeoutMs` (default 10 s); never rejects for a failing command. */
export function runCommand(argv: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
  return run(argv, opts);
}

async function run(argv: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
  const child = start(argv, {
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
  });
  if (opts.input !== undefined) child.stdin?.end(opts.input);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let ended = await within(child.exited, timeoutMs);
  const timedOut = ended === undefined;
  if (timedOut) {
    signalGroup(child, 'SIGKILL');
    ended = (await within(child.exited, 2000)) ?? { code: null, signal: 'SIGKILL' };
  }
  const { stdout, stderr } = child.output();
  return {
    code: ended?.code ?? null,
    signal: ended?.signal ?? null,
    stdout,
    stderr,
    timedOut,
  };
}

/** Runs a setup command; a failure throws one sentence naming the command and its stderr. */
async function must(argv: readonly string[], timeoutMs = 10_000): Promise<string> {
  const r = await run(argv, { timeoutMs });
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${timeoutMs} ms` : `exit ${r.code ?? r.signal}`;
    throw new Error(
      `\`${argv.join(' ')}\` failed (${why}): ${r.stderr.trim().slice(-500) || r.stdout.trim()}`,
    );
  }
  return r.stdout;
}

/**
 * Polls `check` until it returns true (or a non-undefined value), at most `tries` times
 * (default 50) and `timeoutMs` (default 5 s), `intervalMs` (default 100) apart. Throws `what`
 * when it never does.
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number; tries?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 5000);
  const tries = opts.tries ?? 50;
  for (let i = 0; i < tries; i++) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) break;
    await sleep(opts.intervalMs ?? 100);
  }
  throw new Error(`gave up waiting: ${what}`);
}

// ---------------------------------------------------------------------------------------------
// Cleanup of crashed runs

const live = new Set<Topology>();
let hooksInstalled = false;

function cleanupAllSync(): void {
  for (const t of live) t.destroySync();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      cleanupAllSync();
      process.removeListener(sig, onSignal);
      // Nobody else handles it: die of the signal as we would have without this hook.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

// ---------------------------------------------------------------------------------------------
// Namespaces, hosts, the switch

export interface CaptureOptions {
  /** Interface in this namespace. Default: the host's own (`eth0`, or the TAP). */
  iface?: string;
  /** A capture filter (pcap-filter(7)), e.g. 'tcp port 80'. */
  filter?: string;
  /** Bytes kept of each frame (headers are enough for the expert checks of bulk transfers). */
  snaplen?: number;
  /** How long to wait for dumpcap to start capturing. Default 10 s. */
  startTimeoutMs?: number;
  /** How long `stop()` lets the last packets reach the file before it ends the capture. Default 500 ms. */
  settleMs?: number;
}

/** A running capture; `stop()` ends it and resolves once the pcap file is complete. */
export interface Capture {
  readonly file: string;
  /**
   * Ends the capture; resolves with the packets the capture itself lost (dumpcap's count, or
   * undefined when it did not say). A capture that lost packets cannot judge "ACKed unseen".
   */
  stop(): Promise<{ dropped: number | undefined }>;
}

/** A network namespace of a topology: run commands in it, capture in it. */
export class Namespace {
  constructor(
    protected readonly topology: Topology,
    /** The namespace's name (`ip netns`). */
    readonly ns: string,
    /** The interface that joins it to the switch, in this namespace. */
    readonly iface: string,
  ) {}

  /** Runs a command in this namespace to completion, bounded in time (default 10 s). */
  exec(cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', this.ns, cmd, ...args], opts);
  }

  /** Starts a command in this namespace; `destroy()` stops it if it is still running. */
  spawn(cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): Spawned {
    return this.topology.track(start(['ip', 'netns', 'exec', this.ns, cmd, ...args], opts));
  }

  /** Sets a sysctl in this namespace (`net.ipv4.tcp_sack`, `net.ipv6.conf.eth0.mtu`, …). */
  async sysctl(key: string, value: string | number): Promise<void> {
    await must(['ip', 'netns', 'exec', this.ns, 'sysctl', '-qw', `${key}=${value}`]);
  }

  /**
   * Captures on an interface of this namespace into a pcap file (classic format, what
   * `link/pcap.ts` reads). Resolves once dumpcap is capturing.
   */
  async capture(file: string, opts: CaptureOptions = {}): Promise<Capture> {
    const iface = opts.iface ?? this.iface;
    const args = [
      '-q',
      '-P',
      // A 128 MiB kernel buffer: a bulk transfer on a busy 2-core machine outruns the default.
      '-B',
      '128',
      '-i',
      iface,
      '-w',
      file,
      ...(opts.filter ? ['-f', opts.filter] : []),
      ...(opts.snaplen ? ['-s', String(opts.snaplen)] : []),
    ];
    const proc = this.spawn('dumpcap', args);
    const startMs = opts.startTimeoutMs ?? 10_000;
    try {
      await waitUntil(
        `dumpcap to capture on ${iface} in ${this.ns}`,
        () => {
          if (proc.exitCode !== null || proc.signalCode !== null)
            throw new Error(`dumpcap on ${iface} in ${this.ns} exited: ${proc.output().stderr.trim()}`);
          // dumpcap says "Capturing on" before it opens the interface; the file header is
          // written after the socket is bound and the filter set.
          return existsSync(file) && statSync(file).size >= 24;
        },
        { timeoutMs: startMs, intervalMs: 20, tries: Math.ceil(startMs / 20) + 1 },
      );
    } catch (e) {
      await stopProcess(proc, { graceMs: 500 });
      throw e;
    }
    return {
      file,
      stop: async () => {
        // Without immediate mode (dumpcap has no switch for it) libpcap hands packets over when
        // its kernel block times out (about 250 ms); dumpcap quits on SIGINT without waiting for
        // that, so the last packets would be lost. Let them arrive, then stop.
        await sleep(opts.settleMs ?? 500);
        await stopProcess(proc, { signal: 'SIGINT', graceMs: 5000 });
        if (!existsSync(file) || statSync(file).size < 24)
          throw new Error(`the capture on ${iface} in ${this.ns} left no pcap file at ${file}.`);
        const m = /received\/dropped on interface [^:]*: \d+\/(\d+)/.exec(proc.output().stderr);
        return { dropped: m ? Number(m[1]) : undefined };
      },
    };
  }
}

export interface HostOptions {
  /** IPv4 address with prefix length, inside 198.18.0.0/15, e.g. '198.18.0.1/24'. */
  ipv4?: string;
  /** IPv6 address with prefix length, inside fd00::/8, e.g. 'fd00::1/64' (added with nodad). */
  ipv6?: string;
  /** MTU of the veth pair. Default 1500. */
  mtu?: number;
  /** MAC address of eth0. Default: the kernel's random one. */
  mac?: string;
  /**
   * Checksum and segmentation offloads on the veth pair. Default true. Turn them off on a host
   * whose captures are checked for checksum errors.
   */
  offloads?: boolean;
  /** Sysctls set once eth0 exists and before it comes up, e.g. { 'net.ipv4.tcp_sack': '0' }. */
  sysctls?: Record<string, string>;
}

/** A Linux kernel host on the switch: its own namespace, `eth0` on a veth pair to the bridge. */
export class Host extends Namespace {
  constructor(
    topology: Topology,
    /** The name given to addHost. */
    readonly name: string,
    ns: string,
    /** The veth end on the bridge, in the switch namespace. */
    readonly port: string,
    /** IPv4 address (no prefix length), when configured. */
    readonly ipv4: string | undefined,
    /** IPv6 address (no prefix length), when configured. */
    readonly ipv6: string | undefined,
    /** MAC address of eth0. */
    readonly mac: string,
    readonly mtu: number,
  ) {
    super(topology, ns, 'eth0');
  }
}

export interface TapHostOptions {
  /** MTU of the TAP device. Default 1500. */
  mtu?: number;
}

/**
 * A TAP port on the bridge, for a process running our stack. The TAP lives in the switch
 * namespace (see the module comment), so `exec`/`spawn`/`capture` run there; the process opens
 * `tap` by name (it is persistent: it exists before and after the process).
 */
export class TapHost extends Namespace {
  constructor(
    topology: Topology,
    readonly name: string,
    ns: string,
    /** The TAP device's name, in the switch namespace. */
    readonly tap: string,
    readonly mtu: number,
  ) {
    super(topology, ns, tap);
  }
}

export interface TopologyOptions {
  /** Start of every name: 1 to 4 lowercase letters or digits, starting with a letter. Default 'tk'. */
  prefix?: string;
}

function ipv4Address(spec: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(spec);
  const octets = m?.slice(1, 5).map(Number);
  if (!m || !octets || octets.some((o) => o > 255) || Number(m[5]) > 32)
    throw new Error(`ipv4 must look like '198.18.0.1/24', got '${spec}'.`);
  if (octets[0] !== 198 || (octets[1] !== 18 && octets[1] !== 19))
    throw new Error(
      `ipv4 ${spec} is outside 198.18.0.0/15, the only range tests may use (docs/ARCHITECTURE.md §11).`,
    );
  return octets.join('.');
}

function ipv6Address(spec: string): string {
  const m = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(spec);
  if (!m || !m[1].includes(':') || Number(m[2]) > 128)
    throw new Error(`ipv6 must look like 'fd00::1/64', got '${spec}'.`);
  if (!/^fd[0-9a-f]{2}:/i.test(m[1]))
    throw new Error(
      `ipv6 ${spec} is outside fd00::/8, the only range tests may use (docs/ARCHITECTURE.md §11).`,
    );
  return m[1].toLowerCase();
}

export class Topology {
  /** Start of every name this run made: prefix + pid + random. */
  readonly id: string;
  /** The switch: the namespace holding the bridge (and the TAPs). */
  readonly switch: Namespace;
  /** The bridge's name, in the switch namespace. */
  readonly bridge: string;
  readonly hosts = new Map<string, Host | TapHost>();
  private readonly namespaces: string[] = [];
  private readonly processes = new Set<Spawned>();
  private ports = 0;
  private destroyed = false;
  private readonly cutPorts = new Set<string>();

  private constructor(id: string) {
    this.id = id;
    this.bridge = `${id}br`;
    this.switch = new Namespace(this, `${id}-sw`, this.bridge);
  }

  /** Creates the switch. Throws (after cleaning up) when the system cannot host it. */
  static async create(opts: TopologyOptions = {}): Promise<Topology> {
    const why = rootSkipReason();
    if (why) throw new Error(`Topology.create: ${why}.`);
    const prefix = opts.prefix ?? 'tk';
    if (!/^[a-z][a-z0-9]{0,3}$/.test(prefix))
      throw new Error(
        `prefix must be 1 to 4 lowercase letters or digits starting with a letter, got '${prefix}'.`,
      );
    const existing = await must(['ip', 'netns', 'list']);
    let id = '';
    for (let i = 0; i < 10; i++) {
      id = `${prefix}${process.pid.toString(36)}${randomBytes(2).readUInt16BE(0).toString(36).padStart(2, '0').slice(-2)}`;
      if (!existing.includes(id)) break;
    }
    const t = new Topology(id);
    installExitHooks();
    live.add(t);
    try {
      const sw = t.switch.ns;
      await t.addNamespace(sw);
      // No IPv6 in the switch: the bridge and the TAPs must not send RS/MLD/DAD of their own.
      await t.switch.sysctl('net.ipv6.conf.all.disable_ipv6', 1);
      await t.switch.sysctl('net.ipv6.conf.default.disable_ipv6', 1);
      const bridge = 'type bridge stp_state 0 forward_delay 0 mcast_snooping 0'.split(' ');
      await must(['ip', '-n', sw, 'link', 'add', t.bridge, ...bridge]);
      await must(['ip', '-n', sw, 'link', 'set', t.bridge, 'up']);
    } catch (e) {
      await t.destroy();
      throw e;
    }
    return t;
  }

  /** Every namespace this topology made (the switch's first). */
  get namespaceNames(): readonly string[] {
    return this.namespaces;
  }

  /** @internal Registers a process for `destroy()`. */
  track(p: Spawned): Spawned {
    this.processes.add(p);
    p.exited.then(() => this.processes.delete(p));
    return p;
  }

  private async addNamespace(ns: string): Promise<void> {
    if (this.destroyed) throw new Error('this Topology was destroyed; create a new one.');
    this.namespaces.push(ns);
    await must(['ip', 'netns', 'add', ns]);
    await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }

  private nextPort(name: string): number {
    if (this.destroyed) throw new Error('this Topology was destroyed; create a new one.');
    if (!/^[A-Za-z0-9_]{1,24}$/.test(name))
      throw new Error(`a host name is 1 to 24 letters, digits or '_', got '${name}'.`);
    if (this.hosts.has(name)) throw new Error(`this topology already has a host named '${name}'.`);
    if (this.ports >= MAX_HOSTS) throw new Error(`a topology holds at most ${MAX_HOSTS} hosts.`);
    return ++this.ports;
  }

  /** A kernel host in its own namespace, joined to the bridge by a veth pair. */
  async addHost(name: string, opts: HostOptions = {}): Promise<Host> {
    const n = this.nextPort(name);
    const v4 = opts.ipv4 === undefined ? undefined : ipv4Address(opts.ipv4);
    const v6 = opts.ipv6 === undefined ? undefined : ipv6Address(opts.ipv6);
    const ns = `${this.id}-${name}`;
    const sw = this.switch.ns;
    const port = `${this.id}v${n}`;
    const mtu = opts.mtu ?? 1500;
    await this.addNamespace(ns);
    const probe = new Namespace(this, ns, 'eth0');
    // Before eth0 exists, so it inherits them: no DAD anywhere (link-local included).
    await probe.sysctl('net.ipv6.conf.default.accept_dad', 0);
    await probe.sysctl('net.ipv6.conf.all.accept_dad', 0);
    await must(['ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', sw]);
    await must(['ip', '-n', ns, 'link', 'set', 'eth0', 'mtu', String(mtu)]);
    await must(['ip', '-n', sw, 'link', 'set', port, 'mtu', String(mtu)]);
    if (opts.mac) await must(['ip', '-n', ns, 'link', 'set', 'eth0', 'address', opts.mac]);
    if (opts.offloads === false) {
      const off = ['tx', 'off', 'rx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off'];
      await must(['ip', 'netns', 'exec', ns, 'ethtool', '-K', 'eth0', ...off]);
      await must(['ip', 'netns', 'exec', sw, 'ethtool', '-K', port, ...off]);
    }
    for (const [k, v] of Object.entries(opts.sysctls ?? {})) await probe.sysctl(k, v);
    await must(['ip', '-n', sw, 'link', 'set', port, 'master', this.bridge]);
    await must(['ip', '-n', sw, 'link', 'set', port, 'up']);
    await must(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    if (opts.ipv4) await must(['ip', '-n', ns, 'addr', 'add', opts.ipv4, 'dev', 'eth0']);
    if (opts.ipv6) await must(['ip', '-n', ns, '-6', 'addr', 'add', opts.ipv6, 'dev', 'eth0', 'nodad']);
    const info = JSON.parse(await must(['ip', '-j', '-n', ns, 'link', 'show', 'eth0'])) as {
      address: string;
    }[];
    const host = new Host(this, name, ns, port, v4, v6, info[0].address, mtu);
    this.hosts.set(name, host);
    return host;
  }

  /** A persistent TAP on the bridge, in the switch namespace, for a process running our stack. */
  async addTapHost(name: string, opts: TapHostOptions = {}): Promise<TapHost> {
    const n = this.nextPort(name);
    const sw = this.switch.ns;
    const tap = `${this.id}t${n}`;
    const mtu = opts.mtu ?? 1500;
    await must(['ip', '-n', sw, 'tuntap', 'add', 'mode', 'tap', 'name', tap]);
    await must(['ip', '-n', sw, 'link', 'set', tap, 'mtu', String(mtu)]);
    await must(['ip', '-n', sw, 'link', 'set', tap, 'master', this.bridge]);
    await must(['ip', '-n', sw, 'link', 'set', tap, 'up']);
    const host = new TapHost(this, name, sw, tap, mtu);
    this.hosts.set(name, host);
    return host;
  }

  /**
   * A namespace of its own that is not on the switch (a node's "host" for its replication link):
   * `lo` up, nothing else until `link()` joins it to another. `iface` is `lo`.
   */
  async addNamespaceHost(name: string): Promise<Namespace> {
    if (!/^[A-Za-z0-9_]{1,24}$/.test(name))
      throw new Error(`a host name is 1 to 24 letters, digits or '_', got '${name}'.`);
    const ns = `${this.id}-${name}`;
    if (this.namespaces.includes(ns)) throw new Error(`this topology already has a namespace '${ns}'.`);
    await this.addNamespace(ns);
    return new Namespace(this, ns, 'lo');
  }

  /**
   * A point-to-point veth pair between two namespaces of this topology, `iface` at both ends
   * (default `p2p0`), with the given addresses (198.18.0.0/15 or fd00::/8, with a prefix length).
   * IPv6 DAD is off on both ends.
   */
  async link(a: Namespace, b: Namespace, cidrA: string, cidrB: string, iface = 'p2p0'): Promise<void> {
    if (!/^[a-z][a-z0-9]{0,14}$/.test(iface))
      throw new Error(`an interface name is 1 to 15 letters or digits, got '${iface}'.`);
    const v6 = cidrA.includes(':');
    if (v6) {
      ipv6Address(cidrA);
      ipv6Address(cidrB);
    } else {
      ipv4Address(cidrA);
      ipv4Address(cidrB);
    }
    for (const n of [a, b]) {
      await n.sysctl('net.ipv6.conf.default.accept_dad', 0);
      await n.sysctl('net.ipv6.conf.all.accept_dad', 0);
    }
    await must([
      'ip',
      'link',
      'add',
      iface,
      'netns',
      a.ns,
      'type',
      'veth',
      'peer',
      'name',
      iface,
      'netns',
      b.ns,
    ]);
    for (const [n, cidr] of [
      [a, cidrA],
      [b, cidrB],
    ] as const) {
      await must([
        'ip',
        '-n',
        n.ns,
        ...(v6 ? ['-6'] : []),
        'addr',
        'add',
        cidr,
        'dev',
        iface,
        ...(v6 ? ['nodad'] : []),
      ]);
      await must(['ip', '-n', n.ns, 'link', 'set', iface, 'up']);
    }
  }

  /**
   * Cuts the bridge between two of its ports, both ways (ebtables, as `setPortCut`): what one
   * sends never reaches the other, floods included, while both still reach every other port.
   */
  async setPairCut(p1: string, p2: string, cut: boolean): Promise<void> {
    const key = `${p1}|${p2}`;
    if (cut === this.cutPorts.has(key)) return;
    await must([
      'ip',
      'netns',
      'exec',
      this.switch.ns,
      'sh',
      '-c',
      'ebtables "$0" FORWARD -i "$1" -o "$2" -j DROP && ebtables "$0" FORWARD -i "$2" -o "$1" -j DROP',
      cut ? '-I' : '-D',
      p1,
      p2,
    ]);
    if (cut) this.cutPorts.add(key);
    else this.cutPorts.delete(key);
  }

  /**
   * Cuts a port of the bridge (a TAP, or a kernel host's veth end) both ways without touching the
   * device: ebtables drops every frame the bridge would forward from it or to it (floods
   * included), so the process behind it writes into the void with no error and its carrier stays
   * up, as behind a pulled cable. `cut = false` removes the rules. (A port's STP state cannot do
   * it: with STP off the bridge puts every port back to forwarding at once.)
   */
  async setPortCut(port: string, cut: boolean): Promise<void> {
    const cuts = this.cutPorts;
    if (cut === cuts.has(port)) return;
    const op = cut ? '-I' : '-D';
    await must([
      'ip',
      'netns',
      'exec',
      this.switch.ns,
      'sh',
      '-c',
      'ebtables "$0" FORWARD -i "$1" -j DROP && ebtables "$0" FORWARD -o "$1" -j DROP',
      op,
      port,
    ]);
    if (cut) cuts.add(port);
    else cuts.delete(port);
  }

  /**
   * Stops every process, removes every namespace (TAPs and veths go with them). Safe to call
   * twice; never throws for a cleanup step (a namespace that will not go is reported on stderr).
   */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await Promise.all([...this.processes].map((p) => stopProcess(p)));
    // Anything that escaped its process group, or was started in our namespaces by other means.
    for (const ns of [...this.namespaces].reverse()) {
      for (let i = 0; i < 3; i++) {
        const pids = (await run(['ip', 'netns', 'pids', ns], { timeoutMs: 5000 })).stdout
          .split(/\s+/)
          .filter(Boolean);
        if (pids.length === 0) break;
        for (const pid of pids) killPid(Number(pid));
        await sleep(50);
      }
      const r = await run(['ip', 'netns', 'del', ns], { timeoutMs: 5000 });
      if (r.code !== 0 && !/No such file/.test(r.stderr))
        process.stderr.write(`takeover harness: could not delete namespace ${ns}: ${r.stderr.trim()}\n`);
    }
    this.namespaces.length = 0;
    live.delete(this);
  }

  /** @internal `destroy()` for process exit: synchronous, SIGKILL at once. */
  destroySync(): void {
    this.destroyed = true;
    for (const p of this.processes) signalGroup(p, 'SIGKILL');
    for (const ns of [...this.namespaces].reverse()) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
      for (const pid of pids.split(/\s+/).filter(Boolean)) killPid(Number(pid));
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
    }
    this.namespaces.length = 0;
    live.delete(this);
  }
}

function killPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

// ---------------------------------------------------------------------------------------------
// Impairments this kernel has

export interface LossOptions {
  /** 'in' (INPUT, the closest to loss on the wire), 'out' (OUTPUT: the sender sees a local drop), or both. Default 'in'. */
  direction?: 'in' | 'out' | 'both';
  /** Only this protocol. */
  protocol?: 'tcp' | 'udp';
  /** Only packets from or to this port (needs `protocol`). */
  port?: number;
}

/**
 * Drops packets at random in a kernel host (`iptables`/`ip6tables -m statistic --mode random`).
 * Resolves with a function that removes the rules again. TAP hosts are bridged, so netfilter
 * never sees their frames: wrap their device in `link/fault.ts` instead.
 */
export async function iptablesLoss(
  host: Host,
  probability: number,
  opts: LossOptions = {},
): Promise<() => Promise<void>> {
  if (!(host instanceof Host))
    throw new Error(
      'iptablesLoss: only a kernel host has a netfilter path; for a TAP host use FaultInjector.',
    );
  if (!(probability >= 0 && probability <= 1))
    throw new Error(`iptablesLoss: the probability is between 0 and 1, got ${probability}.`);
  if (opts.port !== undefined && !opts.protocol) throw new Error('iptablesLoss: a port needs a protocol.');
  const dir = opts.direction ?? 'in';
  const chains = dir === 'both' ? ['INPUT', 'OUTPUT'] : [dir === 'in' ? 'INPUT' : 'OUTPUT'];
  const match = [
    ...(opts.protocol ? ['-p', opts.protocol] : []),
    ...(opts.port !== undefined ? ['-m', 'multiport', '--ports', String(opts.port)] : []),
    ...['-m', 'statistic', '--mode', 'random', '--probability', String(probability), '-j', 'DROP'],
  ];
  const rules = ['iptables', 'ip6tables'].flatMap((tool) => chains.map((chain) => [tool, chain] as const));
  for (const [tool, chain] of rules)
    await must(['ip', 'netns', 'exec', host.ns, tool, '-w', '5', '-A', chain, ...match]);
  return async () => {
    for (const [tool, chain] of rules)
      await must(['ip', 'netns', 'exec', host.ns, tool, '-w', '5', '-D', chain, ...match]);
  };
}

/**
 * Drops everything that arrives on `iface` in each of `hosts` (iptables and ip6tables INPUT), so a
 * point-to-point link made by `Topology.link` is cut both ways when both ends are given: nothing
 * fails on the sending side (no local EPERM, no FIN or RST gets through), as with a cut cable.
 * Resolves with a function that removes the rules again.
 */
export async function cutInput(hosts: readonly Namespace[], iface: string): Promise<() => Promise<void>> {
  const match = ['INPUT', '-i', iface, '-j', 'DROP'];
  // Host by host, in the order given (both tools of a host at once): the rules of two hosts
  // cannot go in at one instant (xtables serialises them, 15-20 ms each), so for up to 60 ms the
  // cut is one-way, and the caller says which way (`cutReplication`'s `deafFirst`).
  const each = async (op: string) => {
    for (const h of hosts)
      await Promise.all(
        ['iptables', 'ip6tables'].map((tool) =>
          must(['ip', 'netns', 'exec', h.ns, tool, '-w', '5', op, ...match]),
        ),
      );
  };
  await each('-I');
  let healed = false;
  return async () => {
    if (healed) return;
    healed = true;
    await each('-D');
  };
}

/**
 * Limits what leaves `iface` in `node`'s namespace to `mbit` Mbit/s (a tbf qdisc; egress only:
 * on a TAP that is the traffic towards the stack, on a bridge port the traffic towards its host).
 * Resolves with a function that removes it.
 */
export async function rateLimit(node: Namespace, iface: string, mbit: number): Promise<() => Promise<void>> {
  if (!(mbit > 0 && Number.isFinite(mbit)))
    throw new Error(`rateLimit: the rate is a positive number of Mbit/s, got ${mbit}.`);
  // The bucket must hold a full frame and one timer tick of traffic (HZ may be as low as 100).
  const burst = Math.max(16 * 1024, Math.ceil((mbit * 1e6) / 8 / 100));
  const tbf = ['tbf', 'rate', `${mbit}mbit`, 'burst', String(burst), 'latency', '100ms'];
  await must(['ip', 'netns', 'exec', node.ns, 'tc', 'qdisc', 'replace', 'dev', iface, 'root', ...tbf]);
  return async () => {
    await must(['ip', 'netns', 'exec', node.ns, 'tc', 'qdisc', 'del', 'dev', iface, 'root']);
  };
}

// ---------------------------------------------------------------------------------------------
// Judging captures

export interface ExpertSummary {
  frames: number;
  /** Expert items of severity error (malformed frames and bad checksums included). */
  errors: number;
  /** Expert items of severity warning. */
  warnings: number;
  /** Frames with RST set. */
  resets: number;
  /** "ACKed segment that wasn't captured". */
  ackedUnseen: number;
  malformed: number;
  /** IPv4, TCP, UDP, ICMP or ICMPv6 checksums tshark found wrong. */
  badChecksums: number;
  /** Each distinct error or warning message with its count, for failure messages. */
  messages: { severity: 'error' | 'warning'; message: string; count: number }[];
  /** The text of `tshark -q -z expert`. */
  report: string;
}

/**
 * tshark flags to judge the wire and not the payload: every TCP and UDP port decoded as plain
 * data, so no application dissector runs. They pick one by port (or by guessing), and ephemeral
 * client ports belong to some protocol or other: HTTP called a spurious retransmission that began
 * inside a response malformed, Beckhoff's AMS (48898) and TC-NV/EtherCAT (34980) called
 * responses malformed, each once in a few hundred nemesis runs. The clients check the bytes.
 */
export const WIRE_ONLY = ['-d', 'tcp.port==1-65535,data', '-d', 'udp.port==1-65535,data'];

// Wireshark's PI_ERROR, PI_WARN (epan/proto.h) and PROTO_CHECKSUM_E_BAD.
const SEVERITY_ERROR = 0x00800000;
const SEVERITY_WARN = 0x00600000;
const CHECKSUM_BAD = '0';

/**
 * Reads a capture with tshark, checksum validation on: the checks docs/ARCHITECTURE.md §11 asks of a client's
 * capture (no RST, no "ACKed unseen segment", nothing malformed, no checksum error).
 */
export async function expertSummary(file: string, opts: { timeoutMs?: number } = {}): Promise<ExpertSummary> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  // The wire is judged, not the payload (see WIRE_ONLY).
  const prefs = ['ip', 'tcp', 'udp'].flatMap((p) => ['-o', `${p}.check_checksum:TRUE`]).concat(WIRE_ONLY);
  const fields = [
    'tcp.flags.reset',
    'tcp.analysis.ack_lost_segment',
    '_ws.malformed',
    'ip.checksum.status',
    'tcp.checksum.status',
    'udp.checksum.status',
    'icmp.checksum.status',
    'icmpv6.checksum.status',
    '_ws.expert.severity',
    '_ws.expert.message',
  ];
  const SEP = '\x1f';
  // Only frames with something to say are listed (a bulk transfer's full table would outgrow the
  // output kept of a child process); the frame count comes from capinfos.
  const interesting =
    'tcp.flags.reset == 1 || tcp.analysis.ack_lost_segment || _ws.malformed || _ws.expert.severity >= 6291456 || ' +
    ['ip', 'tcp', 'udp', 'icmp', 'icmpv6'].map((p) => `${p}.checksum.status == 0`).join(' || ');
  const [table, report, info] = await Promise.all([
    run(
      [
        'tshark',
        '-r',
        file,
        ...prefs,
        '-Y',
        interesting,
        '-T',
        'fields',
        '-E',
        'occurrence=a',
        '-E',
        `aggregator=${SEP}`,
      ]
        .concat(['-e', 'frame.number'])
        .concat(fields.flatMap((f) => ['-e', f])),
      { timeoutMs },
    ),
    run(['tshark', '-r', file, ...prefs, '-q', '-z', 'expert'], { timeoutMs }),
    run(['capinfos', '-c', '-M', file], { timeoutMs }),
  ]);
  if (table.code !== 0) throw new Error(`tshark could not read ${file}: ${table.stderr.trim().slice(-500)}`);
  const s: ExpertSummary = {
    frames: Number(/Number of packets:\s*(\d+)/.exec(info.stdout)?.[1] ?? 0),
    errors: 0,
    warnings: 0,
    resets: 0,
    ackedUnseen: 0,
    malformed: 0,
    badChecksums: 0,
    messages: [],
    report: report.stdout,
  };
  const counts = new Map<string, { severity: 'error' | 'warning'; message: string; count: number }>();
  for (const line of table.stdout.split('\n')) {
    if (line === '') continue;
    const [, rst, lost, malformed, ...rest] = line.split('\t');
    const checksums = rest.slice(0, 5);
    const severities = rest[5] ? rest[5].split(SEP) : [];
    const texts = rest[6] ? rest[6].split(SEP) : [];
    if (rst?.split(SEP).some((v) => v === '1' || v === 'True')) s.resets++;
    if (lost) s.ackedUnseen++;
    if (malformed) s.malformed++;
    // RFC 1624 3: 0xffff is the other one's-complement zero and verifies like 0x0000; Linux's
    // software checksum emits it now and then, and tshark flags it though the data is intact.
    const negativeZero = texts.some((t) => t.includes('0xffff instead of 0x0000'));
    if (!negativeZero && checksums.some((c) => c.split(SEP).includes(CHECKSUM_BAD))) s.badChecksums++;
    severities.forEach((sev, i) => {
      const n = Number(sev);
      const severity = n === SEVERITY_ERROR ? 'error' : n === SEVERITY_WARN ? 'warning' : undefined;
      if (!severity) return;
      if (severity === 'error') s.errors++;
      else s.warnings++;
      const message = texts[i] ?? '';
      const key = `${severity}\n${message}`;
      const c = counts.get(key) ?? { severity, message, count: 0 };
      c.count++;
      counts.set(key, c);
    });
  }
  s.messages = [...counts.values()];
  return s;
}

/** The interpreter for Python helpers in hosts (Debian's, with scapy; not a pyenv shim). */
export const python = PYTHON;
