/**
 * `takeover demo`: session take-over end to end, in one process, with no root and no TAP: an
 * active/standby pair (src/ha/sim.ts) and a client stack on the deterministic simulated network.
 *
 * The client opens a mix of echo streams, downloads and request/response sessions to the VIP; in
 * the middle of the traffic the active is killed (kill -9, nothing said to anyone); the standby
 * notices the silence, takes the VIP and every connection over, and the client carries on. The
 * client checks every byte it reads, counts every RST that reaches it and measures the stalls
 * (the longest wait of any one connection for its next bytes, and of all of them). The verdict is PASS only when I1 and I4 (docs/ARCHITECTURE.md §1) held: every stream
 * complete and byte-exact, no RST, no connection error, one take-over, no frame from a node that
 * was not active.
 *
 * The network runs in slices of virtual time; the timeline is printed as the slices advance, so
 * what the reader sees is the run as it happens. One seed gives one run, line for line.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { TakeoverCause } from '../ha/node.ts';
import {
  crashNode,
  DOWNLOAD_PORT,
  ECHO_PORT,
  HaSimNode,
  linkNodes,
  RESPONSE_BYTES,
  RR_PORT,
  VIP4,
  VIP6,
} from '../ha/sim.ts';
import { SimClientConn } from '../ha/sim-client.ts';
import { LearningSwitch, Network } from '../link/sim/index.ts';
import { cidrFromString, ipFromString } from '../stack/ip.ts';
import { StackNode } from '../stack/sim-node.ts';
import type { StackConnection } from '../stack/stack.ts';
import { isSynchronized, TcpState } from '../tcp/state.ts';
import { macFromString } from '../wire/address.ts';
import { isWireError } from '../wire/error.ts';
import { parseFrame } from '../wire/frame.ts';
import { ICMPV6_NEIGHBOR_ADVERTISEMENT } from '../wire/icmpv6.ts';
import { TCP_RST } from '../wire/tcp.ts';
import { flagError } from './flags.ts';

// ---------------------------------------------------------------------------------------------
// Options

export interface DemoOptions {
  json: boolean;
  seed: number;
  connections: number;
  /** Virtual ms at which the active is killed; undefined: mid-stream (a share of the traffic, per seed). */
  crashAtMs: number | undefined;
  loss: number;
  /** Where to write the run's timeline as a page (dashboard.ts); undefined: none. */
  report: string | undefined;
}

export const DEMO_DEFAULTS: DemoOptions = {
  json: false,
  seed: 1,
  connections: 6,
  crashAtMs: undefined,
  loss: 0,
  report: undefined,
};

export const DEMO_USAGE = `usage: takeover demo [--json] [--seed N] [--connections N]
                     [--crash-at-ms N] [--loss P] [--report FILE]

An active/standby pair and a client on a simulated network, in this process
(no root): the client streams to the virtual IP, the active is killed
mid-stream, the standby takes over every connection; the client checks every
byte and counts resets. PASS (exit 0) or FAIL (exit 1).

  --json            one JSON line with the results, nothing else
  --seed N          seed of the simulated network (integer >= 0; default 1)
  --connections N   1..200, a mix of echo, download, request/response (6)
  --crash-at-ms N   when the active is killed, virtual ms, 1..10000
                    (default: mid-stream, at a point drawn from the seed)
  --loss P          frame loss on the client's link, 0..0.2 (default 0)
  --report FILE     also write the take-over's timeline as a page (HTML, no
                    network needed to view it): each connection's wait, the
                    client's traffic around the kill`;

const MAX_CONNECTIONS = 200;
const MIN_CRASH_MS = 1;
const MAX_CRASH_MS = 10_000;
const MAX_LOSS = 0.2;

/** The options, or a one-line message naming the bad flag and the fix (`help` for --help). */
export function parseDemoArgs(argv: string[]): DemoOptions | { error: string } | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        json: { type: 'boolean' },
        seed: { type: 'string' },
        connections: { type: 'string' },
        'crash-at-ms': { type: 'string' },
        loss: { type: 'string' },
        report: { type: 'string' },
      },
    }));
  } catch (e) {
    // node:util's sentence names the flag (unknown, missing its value, or a stray word).
    return {
      error: `takeover demo: ${flagError(e)}. Flags: --json, --seed N, --connections N, --crash-at-ms N, --loss P, --report FILE (see 'takeover demo --help').`,
    };
  }
  if (values.help) return 'help';
  const o: DemoOptions = { ...DEMO_DEFAULTS, json: values.json === true };
  const report = values.report as string | undefined;
  if (report !== undefined) {
    if (report.trim() === '')
      return { error: "takeover demo: --report needs a file name (e.g. --report takeover.html), got ''." };
    o.report = report;
  }
  const num = (text: string) => (text.trim() === '' ? Number.NaN : Number(text));
  const seed = values.seed as string | undefined;
  if (seed !== undefined) {
    const v = num(seed);
    if (!Number.isSafeInteger(v) || v < 0)
      return { error: `takeover demo: --seed needs an integer >= 0 (e.g. --seed 7), got '${seed}'.` };
    o.seed = v;
  }
  const connections = values.connections as string | undefined;
  if (connections !== undefined) {
    const v = num(connections);
    if (!Number.isInteger(v) || v < 1 || v > MAX_CONNECTIONS)
      return {
        error: `takeover demo: --connections needs an integer from 1 to ${MAX_CONNECTIONS} (e.g. --connections 12), got '${connections}'.`,
      };
    o.connections = v;
  }
  const crash = values['crash-at-ms'] as string | undefined;
  if (crash !== undefined) {
    const v = num(crash);
    if (!Number.isFinite(v) || v < MIN_CRASH_MS || v > MAX_CRASH_MS)
      return {
        error: `takeover demo: --crash-at-ms needs virtual milliseconds from ${MIN_CRASH_MS} (the pair needs that long to come up) to ${MAX_CRASH_MS} (e.g. --crash-at-ms 20), got '${crash}'.`,
      };
    o.crashAtMs = v;
  }
  const loss = values.loss as string | undefined;
  if (loss !== undefined) {
    const v = num(loss);
    if (!Number.isFinite(v) || v < 0 || v > MAX_LOSS)
      return {
        error: `takeover demo: --loss needs a probability from 0 to ${MAX_LOSS} (e.g. --loss 0.01), got '${loss}'.`,
      };
    o.loss = v;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The scenario's sizes

/** Bytes all echo clients send together, and all downloads fetch together. */
const ECHO_TOTAL = 2_400_000;
const DOWNLOAD_TOTAL = 3_600_000;
/** Request/response exchanges of all rr clients together. */
const RR_TOTAL = 600;
/** Loss up to which the sizes are not scaled down. */
const LOSS_FULL_SIZE = 0.01;
/** When the clients start: the pair is up and the standby bootstrapped long before. */
const OPEN_AT_US = 5_000;
/** Connections opened at once while the client resolves the VIP; the rest open this much later. */
const FIRST_WAVE = 6;
const SECOND_WAVE_AFTER_US = 1_000;
/** Default crash: once a share of all the bytes the client expects has reached it, drawn per seed. */
const CRASH_SHARE = [0.25, 0.65] as const;
/** The run goes on this long after the last connection settled, to catch late resets. */
const GRACE_US = 20_000;
/** Virtual time at which the run gives up waiting (TCP under heavy loss backs off for long). */
const GIVE_UP_US = 900_000_000;

/** Virtual time per slice of the run loop: fine at first, coarser as a long run goes on. */
function sliceAt(t: number): number {
  return t < 2_000_000 ? 1_000 : t < 20_000_000 ? 10_000 : 100_000;
}

type Kind = 'echo' | 'download' | 'rr';
const KIND_NAME: Record<Kind, string> = { echo: 'echo', download: 'download', rr: 'req/resp' };

interface Sizes {
  echoBytes: number;
  downloadBytes: number;
  requests: number;
}

function kindOf(i: number): Kind {
  return (['echo', 'download', 'rr'] as const)[i % 3];
}

/**
 * Per-connection sizes: the totals split over the connections of each kind, scaled down under
 * heavy loss (above 1 % TCP spends its time in retransmission back-off, and the run would take
 * virtual minutes).
 */
export function sizesFor(n: number, loss: number): Sizes {
  let echo = 0;
  let dl = 0;
  let rr = 0;
  for (let i = 0; i < n; i++) {
    const k = kindOf(i);
    if (k === 'echo') echo++;
    else if (k === 'download') dl++;
    else rr++;
  }
  const scale = loss <= LOSS_FULL_SIZE ? 1 : (LOSS_FULL_SIZE / loss) ** 2;
  const clamp = (v: number, lo: number, hi: number) => Math.round(Math.min(hi, Math.max(lo, v)));
  return {
    echoBytes: echo > 0 ? clamp((ECHO_TOTAL * scale) / echo, 4_096, 1_200_000) : 0,
    downloadBytes: dl > 0 ? clamp((DOWNLOAD_TOTAL * scale) / dl, 4_096, 1_800_000) : 0,
    requests: rr > 0 ? clamp((RR_TOTAL * scale) / rr, 5, 300) : 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Nodes

/** An HA node that reports the end of each of its turns (to see role changes when they happen). */
class DemoHaNode extends HaSimNode {
  onTurn: ((now: number) => void) | undefined;

  override turn(now: number): void {
    super.turn(now);
    this.onTurn?.(now);
  }
}

// ---------------------------------------------------------------------------------------------
// The client application

/** One client connection: the stream's application (sim-client.ts) and the demo's bookkeeping. */
class ClientConn extends SimClientConn {
  established = false;
  /** 'ok': complete, byte-exact and closed cleanly; 'failed': ended any other way. */
  outcome: 'open' | 'ok' | 'failed' = 'open';
  why = '';
  /** When bytes last reached this connection's application, and its longest wait for bytes. */
  lastAt: number;
  gap: { us: number; from: number; to: number };

  constructor(
    /** 1-based, in opening order. */
    readonly id: number,
    kind: Kind,
    readonly v6: boolean,
    c: StackConnection,
    sizes: Sizes,
    now: number,
  ) {
    super(kind, c, sizes);
    this.lastAt = now;
    this.gap = { us: 0, from: now, to: now };
  }
}

export interface DemoResult {
  pass: boolean;
  seed: number;
  loss: number;
  takeovers: number;
  connections: number;
  completed: number;
  bytesVerified: number;
  resets: number;
  /** The longest wait of any one connection for its next bytes (virtual ms). */
  stallMs: number;
  /** The longest time no byte at all reached the client while connections were open. */
  pauseMs: number;
  crashAtMs: number | undefined;
  takeoverAtMs: number | undefined;
  /** Time from the active's last message to the take-over (the failure detector's delay). */
  detectionMs: number | undefined;
  /** What told b that a was gone. */
  cause: TakeoverCause | undefined;
  restored: number;
  errors: number;
  corrupt: number;
  framesWhileNotActive: number;
  virtualMs: number;
  /** Why the verdict is FAIL, one phrase each (empty on PASS). */
  failures: string[];
  /** Restoring every connection (virtual ms; the simulation's clock does not move while it runs). */
  restoreMs: number | undefined;
  /** Each connection open at the take-over: its first bytes after it, in virtual ms from the kill. */
  resumeAfterKillMs: number[];
  /** Bytes the client received in each `TRAFFIC_BIN_US` of virtual time from 0. */
  traffic: number[];
}

/** The width of one bin of DemoResult.traffic (µs of virtual time). */
export const TRAFFIC_BIN_US = 1000;

const US_PER_MS = 1000;

function ms(us: number): string {
  return (us / US_PER_MS).toFixed(1);
}

function stamp(us: number): string {
  return `${ms(us).padStart(9)} ms  `;
}

const CONT = ' '.repeat(stamp(0).length);

function mb(bytes: number): string {
  return bytes < 100_000 ? `${(bytes / 1e3).toFixed(1)} kB` : `${(bytes / 1e6).toFixed(2)} MB`;
}

/** A duration: ms below 10 s, seconds above. */
function dur(us: number): string {
  return us < 10_000_000 ? `${ms(us)} ms` : `${(us / 1e6).toFixed(1)} s`;
}

/** `part/total unit`, in the unit that suits the total. */
function share(part: number, total: number): string {
  return total < 100_000
    ? `${(part / 1e3).toFixed(1)}/${(total / 1e3).toFixed(1)} kB`
    : `${(part / 1e6).toFixed(2)}/${(total / 1e6).toFixed(2)} MB`;
}

function thousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Runs the scenario, printing the timeline through `line` (nothing when it is undefined). */
export async function simulateDemo(o: DemoOptions, line?: (s: string) => void): Promise<DemoResult> {
  const say = (now: number, text: string, more: string[] = []) => {
    if (!line) return;
    line(`${stamp(now)}${text}`);
    for (const m of more) line(`${CONT}${m}`);
  };
  const sizes = sizesFor(o.connections, o.loss);
  const net = new Network({ seed: o.seed });
  const sw = net.attach(new LearningSwitch({ ports: 3 }), 'sw');
  const client = new StackNode({
    mac: macFromString('02:00:00:00:00:01')!,
    addresses: [cidrFromString('198.18.0.1/24')!, cidrFromString('fd00::1/64')!],
  });
  const a = new DemoHaNode({ nodeId: 'a', role: 'active', downloadBytes: sizes.downloadBytes, snoop: true });
  const b = new DemoHaNode({ nodeId: 'b', role: 'standby', downloadBytes: sizes.downloadBytes, snoop: true });
  const hc = net.attach(client, 'client');
  const ha = net.attach(a, 'a');
  const hb = net.attach(b, 'b');
  // Loss is the client's network's (both directions); the servers' links are clean.
  const link = { latencyUs: 100, bandwidthBps: 1e9 };
  const crashShare = net.rngFor('demo').uniform(CRASH_SHARE[0], CRASH_SHARE[1]);
  net.connect(hc, 0, sw, 0, { ...link, loss: o.loss });
  net.connect(ha, 0, sw, 1, link);
  net.connect(hb, 0, sw, 2, link);

  // --- state the timeline watches
  const conns: ClientConn[] = [];
  const byConn = new Map<StackConnection, ClientConn>();
  let bytesVerified = 0;
  let expectedBytes = 0;
  let resets = 0;
  let openedAt: number | undefined;
  let lastByteAt = 0;
  let pause = { us: 0, from: 0, to: 0 };
  let crashedAt: number | undefined;
  let crashScheduled = false;
  let liveAtCrash = 0;
  let verifiedAtCrash = 0;
  let takeoverAt: number | undefined;
  let resumedAt: number | undefined;
  let announcedSeen = false;
  let establishedCount = 0;
  let settled = 0;
  let allSettledAt: number | undefined;
  let batchesAtCrash = 0;
  const manyConns = o.connections > 12;
  let doneInSlice: ClientConn[] = [];

  const traffic: number[] = [];
  const resumeAfterKill = new Map<ClientConn, number>();
  const noteBytes = (cc: ClientConn, now: number, n: number) => {
    if (n <= 0) return;
    const bin = Math.floor(now / TRAFFIC_BIN_US);
    while (traffic.length <= bin) traffic.push(0);
    traffic[bin] += n;
    if (takeoverAt !== undefined && crashedAt !== undefined && !resumeAfterKill.has(cc))
      resumeAfterKill.set(cc, now - crashedAt);
    if (now - cc.lastAt > cc.gap.us) cc.gap = { us: now - cc.lastAt, from: cc.lastAt, to: now };
    cc.lastAt = now;
    if (now - lastByteAt > pause.us) pause = { us: now - lastByteAt, from: lastByteAt, to: now };
    lastByteAt = now;
    if (takeoverAt !== undefined && resumedAt === undefined) {
      resumedAt = now;
      say(now, `traffic resumes: first byte to the client since the kill`, [
        `(${ms(now - (crashedAt ?? now))} ms after it; the client never reconnected)`,
      ]);
    }
  };

  const crash = (now: number) => {
    if (crashedAt !== undefined) return;
    crashedAt = now;
    liveAtCrash = conns.filter((cc) => cc.outcome === 'open').length;
    verifiedAtCrash = bytesVerified;
    batchesAtCrash = b.ha.mirror.counters.batches;
    crashNode(a);
    if (liveAtCrash > 0)
      say(now, `a killed (kill -9) with ${liveAtCrash} connection(s) mid-stream`, [
        `${share(bytesVerified, expectedBytes)} verified so far; frames a already queued still arrive`,
      ]);
    else say(now, `a killed (kill -9), no connection open`);
  };

  const settle = (cc: ClientConn, now: number, outcome: 'ok' | 'failed', why: string) => {
    if (cc.outcome !== 'open') return;
    cc.outcome = outcome;
    cc.why = why;
    settled++;
    if (outcome === 'failed') say(now, `${label(cc)} FAILED: ${why}`);
    else if (!manyConns) say(now, `${label(cc)} complete: ${what(cc)}`);
    else doneInSlice.push(cc);
    if (settled === o.connections) allSettledAt = now;
  };

  const label = (cc: ClientConn) => `#${cc.id} ${KIND_NAME[cc.kind]}${cc.v6 ? ' (v6)' : ''}`;
  const what = (cc: ClientConn) =>
    cc.kind === 'echo'
      ? `${thousands(cc.verified)} bytes echoed, exact`
      : cc.kind === 'download'
        ? `${thousands(cc.verified)} bytes downloaded, exact`
        : `${cc.answered} responses, exact`;

  const check = (cc: ClientConn, now: number) => {
    const t = cc.c.tcp;
    if (!cc.established && isSynchronized(t.state)) {
      cc.established = true;
      establishedCount++;
      if (establishedCount === o.connections)
        say(now, `client connected: ${o.connections}/${o.connections} connections established`);
    }
    if (cc.outcome !== 'open') return;
    if (t.error !== undefined) {
      settle(cc, now, 'failed', `connection error ${t.error}`);
      return;
    }
    if (cc.bad >= 0) {
      settle(cc, now, 'failed', cc.kind === 'rr' ? `response ${cc.bad} is wrong` : `byte ${cc.bad} is wrong`);
      return;
    }
    const closedDown = cc.c.removed || t.state === TcpState.TimeWait || t.state === TcpState.Closed;
    if (!closedDown) return;
    const complete = cc.complete;
    if (complete && cc.closed) settle(cc, now, 'ok', '');
    else settle(cc, now, 'failed', `closed after ${thousands(cc.got)} bytes (incomplete)`);
  };

  const drive = (cc: ClientConn, now: number) => {
    const before = cc.verified;
    const acted = cc.drive((n) => noteBytes(cc, now, n));
    bytesVerified += cc.verified - before;
    if (acted) client.stack.touch(cc.c);
    check(cc, now);
    if (o.crashAtMs === undefined && !crashScheduled && bytesVerified >= expectedBytes * crashShare) {
      crashScheduled = true;
      net.at(now, crash);
    }
  };

  client.onChange = (c, now) => {
    const cc = byConn.get(c);
    if (cc) drive(cc, now);
  };
  client.onFrame = (f, now) => {
    // Cheap checks first: data frames are the bulk; only ARP and ICMPv6 are parsed in full.
    if (f.length < 34) return;
    const type = (f[12] << 8) | f[13];
    let flags = -1;
    if (type === 0x0800 && f[23] === 6) {
      const at = 14 + (f[14] & 0x0f) * 4 + 13;
      if (at < f.length) flags = f[at];
    } else if (type === 0x86dd && f[20] === 6 && f.length >= 68) flags = f[67];
    if (flags >= 0) {
      if ((flags & TCP_RST) !== 0) {
        resets++;
        const p = parseFrame(f, false);
        const cc = isWireError(p) || !p.tcp ? undefined : conns.find((x) => x.c.localPort === p.tcp!.dstPort);
        say(now, `RST reached the client${cc ? ` on ${label(cc)} (${cc.c.tcp.state})` : ''}`);
      }
      return;
    }
    if (takeoverAt === undefined || announcedSeen) return;
    if (type !== 0x0806 && !(type === 0x86dd && f[20] === 58)) return;
    const p = parseFrame(f, false);
    if (isWireError(p)) return;
    const garp = p.arp !== undefined && p.arp.senderIp === p.arp.targetIp;
    const na = p.icmpv6 !== undefined && p.icmpv6.type === ICMPV6_NEIGHBOR_ADVERTISEMENT;
    if (garp || na) {
      announcedSeen = true;
      say(
        now,
        `client sees b's ${garp ? 'gratuitous ARP' : 'unsolicited NA'} for the VIP (same virtual MAC:`,
        [`its ARP/ND cache stays valid; the switch floods the VIP to both)`],
      );
    }
  };

  // --- HA events, seen at the end of the turn they happened in
  let aActive = false;
  let bSynced = false;
  a.onTurn = (now) => {
    if (!aActive && a.ha.role === 'active') {
      aActive = true;
      say(now, `a is active (epoch ${a.ha.epoch}), b is standby; a claims the VIP`, [
        `${VIP4} / ${VIP6} with gratuitous ARP + unsolicited NA`,
      ]);
    }
  };
  b.onTurn = (now) => {
    if (!bSynced && b.ha.role === 'standby' && b.ha.mirror.synced) {
      bSynced = true;
      say(now, `b is synced: bootstrap applied, it mirrors every connection`, [
        `and listens: the nodes send from their own MACs, so the switch`,
        `floods the VIP's MAC to both; b keeps what clients send past it`,
      ]);
    }
    if (takeoverAt === undefined && b.ha.takeovers.length > 0) {
      const r = b.ha.takeovers[0];
      takeoverAt = r.at;
      const failed = r.failed > 0 ? `, ${r.failed} FAILED` : '';
      say(now, `b takes over (epoch ${r.epoch}): ${r.connections} connection(s) restored${failed},`, [
        r.cause === 'link closed'
          ? `a's replication link closed, the lease b granted it ran out`
          : `a silent for ${ms(r.at - r.lastHeardAt)} ms`,
        `${ms(r.at - r.lastHeardAt)} ms after a was last heard; b claims the VIP`,
        `and kick-starts every connection (probe, retransmit, dup ACKs)`,
      ]);
    }
  };

  say(0, `client, a (active) and b (standby) on a switch (1 Gbit/s, 100 µs)`, [
    ...(o.loss > 0 ? [`${(o.loss * 100).toFixed(1)} % frame loss each way on the client's link,`] : []),
    `replication a-b 200 µs, heartbeats 10 ms on it and on the switch;`,
    `a may send only under a 50 ms lease b renews; b takes over once a`,
    `is silent on both paths and the lease it granted has run out`,
  ]);
  linkNodes(a, b, 200, 0);

  const vip4 = ipFromString(VIP4)!;
  const vip6 = ipFromString(VIP6)!;
  const counts = { echo: 0, download: 0, rr: 0 };
  for (let i = 0; i < o.connections; i++) counts[kindOf(i)]++;
  expectedBytes =
    counts.echo * sizes.echoBytes +
    counts.download * sizes.downloadBytes +
    counts.rr * sizes.requests * RESPONSE_BYTES;
  const open = (i: number, now: number) => {
    const kind = kindOf(i);
    const v6 = Math.floor(i / 3) % 2 === 1;
    const port = kind === 'echo' ? ECHO_PORT : kind === 'download' ? DOWNLOAD_PORT : RR_PORT;
    const c = client.stack.connect(v6 ? vip6 : vip4, port, now);
    const cc = new ClientConn(i + 1, kind, v6, c, sizes, now);
    conns.push(cc);
    byConn.set(c, cc);
    drive(cc, now);
  };
  // The first connections make the client resolve the VIP (ARP, ND); the others follow once it
  // has, so that no SYN waits in (or is dropped from) the client's neighbour queue.
  const first = Math.min(o.connections, FIRST_WAVE);
  net.at(OPEN_AT_US, (now) => {
    openedAt = now;
    lastByteAt = now;
    const parts = [
      counts.echo > 0 ? `${counts.echo} echo × ${mb(sizes.echoBytes)}` : '',
      counts.download > 0 ? `${counts.download} download × ${mb(sizes.downloadBytes)}` : '',
      counts.rr > 0 ? `${counts.rr} req/resp × ${sizes.requests}` : '',
    ].filter((s) => s !== '');
    say(now, `client opens ${o.connections} connection(s) to the VIP (IPv4 and IPv6):`, [
      parts.join(', '),
      ...(first < o.connections ? [`(${first} now, the rest once ARP/ND resolved the VIP)`] : []),
    ]);
    for (let i = 0; i < first; i++) open(i, now);
    hc.wake();
  });
  if (first < o.connections)
    net.at(OPEN_AT_US + SECOND_WAVE_AFTER_US, (now) => {
      for (let i = first; i < o.connections; i++) open(i, now);
      hc.wake();
    });
  if (o.crashAtMs !== undefined) net.at(Math.round(o.crashAtMs * US_PER_MS), crash);

  // --- the run, slice by slice
  let t = 0;
  let nextProgress = 20_000;
  let lastProgressBytes = -1;
  let slices = 0;
  for (;;) {
    t += sliceAt(t);
    net.run({ until: t });
    if (doneInSlice.length > 0) {
      let text = `${doneInSlice.length} complete, exact (${settled}/${o.connections}):`;
      for (let i = 0; i < doneInSlice.length; i++) {
        const id = ` #${doneInSlice[i].id}`;
        if (CONT.length + text.length + id.length + (i < doneInSlice.length - 1 ? 2 : 0) > 80) {
          text += ' …';
          break;
        }
        text += id;
      }
      say(t, text);
      doneInSlice = [];
    }
    if (t >= nextProgress) {
      if (openedAt !== undefined && allSettledAt === undefined) {
        const quiet = t - lastByteAt;
        const note = quiet >= 2_000 ? `; stalled ${dur(quiet)}` : '';
        if (bytesVerified !== lastProgressBytes || quiet >= 2_000)
          say(
            t,
            `progress: ${share(bytesVerified, expectedBytes)} verified, ${settled}/${o.connections} done${note}`,
          );
        lastProgressBytes = bytesVerified;
      }
      nextProgress += t < 400_000 ? 20_000 : t < 4_000_000 ? 200_000 : 2_000_000;
    }
    const crashDue = crashedAt !== undefined || (o.crashAtMs === undefined && allSettledAt !== undefined);
    if (
      allSettledAt !== undefined &&
      crashDue &&
      (takeoverAt !== undefined || crashedAt === undefined) &&
      t >= Math.max(allSettledAt, takeoverAt ?? 0) + GRACE_US
    )
      break;
    if (t >= GIVE_UP_US) break;
    // Let the event loop breathe now and then (output, signals).
    if (++slices % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  const end = t;
  // The longest wait of any one connection for its next bytes (still waiting at the end counts).
  let stall = { us: 0, from: 0, to: 0, conn: undefined as ClientConn | undefined };
  for (const cc of conns) {
    if (cc.outcome === 'open' && end - cc.lastAt > cc.gap.us)
      cc.gap = { us: end - cc.lastAt, from: cc.lastAt, to: end };
    if (cc.gap.us > stall.us) stall = { ...cc.gap, conn: cc };
  }

  // --- verdict
  const completed = conns.filter((cc) => cc.outcome === 'ok').length;
  const errors = conns.filter((cc) => cc.c.tcp.error !== undefined).length;
  const corrupt = conns.filter((cc) => cc.bad >= 0).length;
  const framesWhileNotActive = a.framesWhileNotActive + b.framesWhileNotActive;
  const takeovers = a.ha.takeovers.length + b.ha.takeovers.length;
  const rec = b.ha.takeovers[0];
  const failures: string[] = [];
  if (completed !== conns.length) failures.push(`${conns.length - completed} connection(s) incomplete`);
  if (corrupt > 0) failures.push(`${corrupt} connection(s) with wrong bytes`);
  if (errors > 0) failures.push(`${errors} connection error(s)`);
  if (resets > 0) failures.push(`${resets} RST(s) at the client`);
  if (takeovers !== 1) failures.push(`${takeovers} take-overs instead of 1`);
  if (rec && rec.failed > 0) failures.push(`${rec.failed} connection(s) not restored`);
  if (framesWhileNotActive > 0) failures.push(`${framesWhileNotActive} frame(s) from a node not active`);
  const r: DemoResult = {
    pass: failures.length === 0,
    seed: o.seed,
    loss: o.loss,
    takeovers,
    connections: conns.length,
    completed,
    bytesVerified,
    resets,
    stallMs: Math.round(stall.us) / US_PER_MS,
    pauseMs: Math.round(pause.us) / US_PER_MS,
    crashAtMs: crashedAt === undefined ? undefined : Math.round(crashedAt) / US_PER_MS,
    takeoverAtMs: rec ? Math.round(rec.at) / US_PER_MS : undefined,
    detectionMs: rec ? Math.round(rec.at - rec.lastHeardAt) / US_PER_MS : undefined,
    cause: rec?.cause,
    restored: rec ? rec.connections : 0,
    errors,
    corrupt,
    framesWhileNotActive,
    virtualMs: end / US_PER_MS,
    failures,
    restoreMs: rec ? rec.restoreUs / US_PER_MS : undefined,
    resumeAfterKillMs: [...resumeAfterKill.values()].map((us) => Math.round(us) / US_PER_MS),
    traffic,
  };

  if (line) {
    const rule = '-'.repeat(72);
    const kinds = [
      counts.echo > 0 ? `${counts.echo} echo` : '',
      counts.download > 0 ? `${counts.download} download` : '',
      counts.rr > 0 ? `${counts.rr} req/resp` : '',
    ]
      .filter((s) => s !== '')
      .join(', ');
    const row = (k: string, v: string) => line(`  ${k.padEnd(20)}${v}`);
    line(rule);
    line(
      `${r.pass ? 'PASS' : 'FAIL'}  session take-over, seed ${o.seed}${o.loss > 0 ? `, loss ${o.loss}` : ''}` +
        ` (${ms(end)} ms simulated)`,
    );
    row('take-overs', `${takeovers}${rec ? ` (a -> b at ${ms(rec.at)} ms, epoch ${rec.epoch})` : ''}`);
    row('connections', `${completed}/${conns.length} complete (${kinds})`);
    row(
      'restored by b',
      `${r.restored} live at the take-over${rec && rec.failed > 0 ? `, ${rec.failed} failed` : ''}`,
    );
    row('bytes verified', `${thousands(bytesVerified)} (${mb(bytesVerified)}), byte-exact`);
    row('resets at client', String(resets));
    row('connection errors', String(errors));
    row(
      'longest stall',
      `${ms(stall.us)} ms${stall.conn ? ` (${label(stall.conn)}, ${ms(stall.from)} -> ${ms(stall.to)} ms)` : ''}`,
    );
    row('all traffic paused', `${ms(pause.us)} ms (${ms(pause.from)} -> ${ms(pause.to)} ms)`);
    row('sent while standby', `${framesWhileNotActive} frames`);
    row(
      'replication',
      crashedAt === undefined
        ? `${thousands(b.ha.mirror.counters.batches)} batches applied by b`
        : `${thousands(batchesAtCrash)} batches applied by b before the kill`,
    );
    line(rule);
    for (const s of explain(r, liveAtCrash, verifiedAtCrash)) line(s);
    if (!r.pass) {
      const logs = [...a.logs, ...b.logs].slice(-8);
      if (logs.length > 0) line('last HA log lines:');
      for (const l of logs) for (const w of wrap(l, 76)) line(`  ${w}`);
    }
  }
  return r;
}

/** The verdict's sentence, wrapped for 80 columns. */
function explain(r: DemoResult, live: number, verifiedAtCrash: number): string[] {
  let s: string;
  if (r.pass && r.crashAtMs !== undefined && live === 0) {
    s =
      `a died at ${r.crashAtMs.toFixed(1)} ms with no connection mid-stream; b noticed ` +
      `${r.cause === 'link closed' ? 'its link close' : 'its silence'} after ${(r.detectionMs ?? 0).toFixed(1)} ms and took over the VIP. Every connection arrived byte-exact, ` +
      `with no reset.`;
  } else if (r.pass && r.crashAtMs !== undefined && r.takeoverAtMs !== undefined) {
    s =
      `a died at ${r.crashAtMs.toFixed(1)} ms with ${live} connection(s) live and ${mb(verifiedAtCrash)} delivered; ` +
      `b noticed ${r.cause === 'link closed' ? 'its link close' : 'its silence'} after ${(r.detectionMs ?? 0).toFixed(1)} ms, took over the VIP and ` +
      `${r.restored} connection(s) from the exact byte each stood at. The client, untouched, ` +
      `saw no reset and every byte exactly once; no byte reached it for ${r.pauseMs.toFixed(1)} ms, ` +
      `and the longest any one connection waited was ${r.stallMs.toFixed(1)} ms.`;
  } else if (r.pass) {
    s = 'Every stream arrived byte-exact with no reset.';
  } else {
    s = `The take-over broke the promise (I1/I4): ${r.failures.join('; ')}.`;
  }
  return wrap(s, 78);
}

/** `s` in lines of at most `width` characters, broken at spaces. */
function wrap(s: string, width: number): string[] {
  const out: string[] = [];
  let cur = '';
  for (const w of s.split(' ')) {
    if (cur !== '' && cur.length + w.length + 1 > width) {
      out.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) out.push(cur);
  return out;
}

/** Results as the one JSON line of `--json`. */
export function demoJson(r: DemoResult): string {
  return JSON.stringify({
    takeovers: r.takeovers,
    connections: r.connections,
    bytesVerified: r.bytesVerified,
    resets: r.resets,
    stallMs: r.stallMs,
    pauseMs: r.pauseMs,
    pass: r.pass,
    seed: r.seed,
    loss: r.loss,
    completed: r.completed,
    restored: r.restored,
    errors: r.errors,
    crashAtMs: r.crashAtMs ?? null,
    takeoverAtMs: r.takeoverAtMs ?? null,
    detectionMs: r.detectionMs ?? null,
    cause: r.cause ?? null,
    framesWhileNotActive: r.framesWhileNotActive,
    virtualMs: r.virtualMs,
    failures: r.failures,
  });
}

/**
 * `takeover demo [flags]`: prints the timeline and the verdict (or one JSON line with `--json`)
 * through `out`. Exit code 0 on PASS, 1 on FAIL, 2 for bad arguments (one line naming the flag).
 */
export async function runDemo(argv: string[], out: (line: string) => void): Promise<number> {
  const o = parseDemoArgs(argv);
  if (o === 'help') {
    for (const l of DEMO_USAGE.split('\n')) out(l);
    return 0;
  }
  if ('error' in o) {
    out(o.error);
    return 2;
  }
  const r = o.json ? await simulateDemo(o) : undefined;
  if (r) out(demoJson(r));
  else {
    out(`takeover demo: session take-over on a simulated network, seed ${o.seed} (no root)`);
    out('');
  }
  const result = r ?? (await simulateDemo(o, out));
  if (o.report) {
    const { demoReport, reportPage } = await import('./dashboard.ts');
    try {
      writeFileSync(o.report, reportPage(demoReport(result)));
      if (!o.json) out(`the take-over's timeline: ${o.report}`);
    } catch (e) {
      out(`takeover demo: cannot write --report ${o.report}: ${(e as Error).message}`);
      return 2;
    }
  }
  return result.pass ? 0 : 1;
}
