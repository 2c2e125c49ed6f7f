/**
 * Take-over scenarios on the simulator, shared by test/ha/takeover-sim.test.ts and
 * `npm run bench -- ha-sim`: a client stack talks to the VIP of an active/standby pair (echo,
 * download and request/response connections), the active may crash at a given instant, and
 * `check` asserts I1-I4 (docs/ARCHITECTURE.md §1) on the outcome.
 */
import assert from 'node:assert/strict';
import {
  crashNode,
  DOWNLOAD_PORT,
  ECHO_PORT,
  HaSimNode,
  linkNodes,
  RR_PORT,
  VIP4,
  VIP6,
} from '../../src/ha/sim.ts';
import { type ClientKind, SimClientConn } from '../../src/ha/sim-client.ts';
import { PcapWriter } from '../../src/link/pcap.ts';
import { LearningSwitch, Network } from '../../src/link/sim/index.ts';
import { cidrFromString, ipFromString } from '../../src/stack/ip.ts';
import type { StackConnection } from '../../src/stack/stack.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { macFromString } from '../../src/wire/address.ts';
import { isWireError } from '../../src/wire/error.ts';
import { parseFrame } from '../../src/wire/frame.ts';
import { TCP_RST } from '../../src/wire/tcp.ts';
import { forEachSeed } from './seeds.ts';
import { StackNode } from './stack-sim.ts';

export interface Scenario {
  seed: number;
  echo: number;
  downloads: number;
  rr: number;
  echoBytes: number;
  downloadBytes: number;
  requests: number;
  crashAtUs: number | undefined;
  loss: number;
  v6: boolean;
  /**
   * The standby's process dies at this instant and a new one joins 20 ms later, while the
   * active keeps its connections; the active's crash then waits until the new standby is synced.
   */
  standbyRestartAtUs?: number;
  /** The standby listens on the data link (HaSimOptions.snoop). */
  snoop?: boolean;
}

/** How long a restarted standby's process takes to come back. */
const STANDBY_BACK_AFTER_US = 20_000;

export function runScenario(s: Scenario) {
  const net = new Network({ seed: s.seed });
  const sw = net.attach(new LearningSwitch({ ports: 4 }), 'sw');
  const client = new StackNode({
    mac: macFromString('02:00:00:00:00:01')!,
    addresses: [cidrFromString('198.18.0.1/24')!, cidrFromString('fd00::1/64')!],
  });
  const a = new HaSimNode({ nodeId: 'a', role: 'active', downloadBytes: s.downloadBytes, snoop: s.snoop });
  const b = new HaSimNode({ nodeId: 'b', role: 'standby', downloadBytes: s.downloadBytes, snoop: s.snoop });
  const hc = net.attach(client, 'client');
  const ha = net.attach(a, 'a');
  const hb = net.attach(b, 'b');
  const link = { latencyUs: 100, bandwidthBps: 1e9, loss: s.loss, duplicate: s.loss / 2, reorder: s.loss };
  const clientLink = net.connect(hc, 0, sw, 0, link);
  // HA_PCAP=file: the client's link as a pcap, to look at a failing seed with tshark.
  const pcap = process.env.HA_PCAP ? new PcapWriter({ snaplen: 128 }) : undefined;
  if (pcap) net.capture(clientLink, pcap);
  net.connect(ha, 0, sw, 1, link);
  net.connect(hb, 0, sw, 2, link);
  let rstsAtClient = 0;
  const inner = client.receive.bind(client);
  client.receive = (port, frame, now) => {
    const f = parseFrame(frame);
    if (!isWireError(f) && f.tcp && (f.tcp.flags & TCP_RST) !== 0) rstsAtClient++;
    inner(port, frame, now);
  };

  const conns = new Map<StackConnection, SimClientConn>();
  const drive = (cc: SimClientConn) => {
    if (cc.drive()) client.stack.touch(cc.c);
  };
  client.onChange = (c) => {
    const cc = conns.get(c);
    if (cc) drive(cc);
  };

  linkNodes(a, b, 200, 0);
  const vip = ipFromString(s.v6 ? VIP6 : VIP4)!;
  // Clients start once the pair is up and the standby bootstrapped.
  net.at(5_000, (now) => {
    const open = (kind: ClientKind, port: number) => {
      const c = client.stack.connect(vip, port, now);
      const cc = new SimClientConn(kind, c, s);
      conns.set(c, cc);
      drive(cc);
    };
    for (let i = 0; i < s.echo; i++) open('echo', ECHO_PORT);
    for (let i = 0; i < s.downloads; i++) open('download', DOWNLOAD_PORT);
    for (let i = 0; i < s.rr; i++) open('rr', RR_PORT);
    hc.wake();
  });
  let standby = b;
  if (s.standbyRestartAtUs !== undefined) {
    const b2 = new HaSimNode({
      nodeId: 'b',
      role: 'standby',
      downloadBytes: s.downloadBytes,
      snoop: s.snoop,
    });
    net.at(s.standbyRestartAtUs, () => crashNode(b));
    net.at(s.standbyRestartAtUs + STANDBY_BACK_AFTER_US, (now) => {
      hb.restart(b2);
      linkNodes(a, b2, 200, now);
      standby = b2;
    });
  }
  if (s.crashAtUs !== undefined) {
    // A standby that is not synced cannot take over (docs/ARCHITECTURE.md §4: bootstrap first): the crash
    // waits for it, checked every millisecond for at most 10 s.
    const crashWhenSynced = (now: number) => {
      const back = s.standbyRestartAtUs === undefined || now >= s.standbyRestartAtUs + STANDBY_BACK_AFTER_US;
      if ((back && standby.ha.mirror.synced) || now > s.crashAtUs! + 10_000_000) crashNode(a);
      else net.after(1000, crashWhenSynced);
    };
    net.at(s.crashAtUs, crashWhenSynced);
  }
  // Run in steps of 1 s of virtual time until every client connection has closed (and the crash,
  // if any, happened), then 2 s more for late frames (a RST would come then): heartbeats and
  // beacons never let the network go idle. At most 120 s.
  const maxEvents = Number(process.env.HA_MAX_EVENTS ?? 20_000_000);
  let events = 0;
  let quietSince = Number.POSITIVE_INFINITY;
  for (let t = 1_000_000; t <= 120_000_000; t += 1_000_000) {
    const res = net.run({ until: t, maxEvents: maxEvents - events });
    events += res.events;
    if (process.env.HA_DEBUG) console.log(res);
    if (res.reason === 'maxEvents') break;
    const done = conns.size > 0 && [...conns.values()].every((cc) => cc.closed);
    const crashed = s.crashAtUs === undefined || !a.handle.alive;
    if (done && crashed) quietSince = Math.min(quietSince, t);
    else quietSince = Number.POSITIVE_INFINITY;
    if (t >= quietSince + 2_000_000) break;
  }
  if (pcap && process.env.HA_PCAP) pcap.save(process.env.HA_PCAP);
  return { net, a, b: standby, oldB: b, client, conns: [...conns.values()], rstsAtClient };
}

export function check(s: Scenario) {
  const r = runScenario(s);
  const ctx = () =>
    `seed ${s.seed}: ${JSON.stringify(s)}\n${[...r.a.logs, ...r.b.logs, ...(r.oldB === r.b ? [] : r.oldB.logs)].sort().slice(-12).join('\n')}`;
  for (const cc of r.conns) {
    const want = cc.kind === 'echo' ? s.echoBytes : cc.kind === 'download' ? s.downloadBytes : undefined;
    assert.equal(
      cc.c.tcp.error,
      undefined,
      `${cc.kind} :${cc.c.localPort} error ${cc.c.tcp.error}; ${ctx()}`,
    );
    assert.equal(cc.bad, -1, `${cc.kind} :${cc.c.localPort} corrupt at ${cc.bad}; ${ctx()}`);
    if (want !== undefined)
      assert.equal(cc.got, want, `${cc.kind} :${cc.c.localPort} got ${cc.got}; ${ctx()}`);
    else assert.equal(cc.answered, s.requests, `rr :${cc.c.localPort} answered ${cc.answered}; ${ctx()}`);
    assert.ok(cc.closed, ctx());
    assert.notEqual(cc.c.tcp.state, TcpState.SynSent, ctx());
  }
  assert.equal(r.rstsAtClient, 0, `RST reached the client; ${ctx()}`);
  assert.equal(
    r.a.framesWhileNotActive + r.b.framesWhileNotActive + r.oldB.framesWhileNotActive,
    0,
    `a non-active node sent; ${ctx()}`,
  );
  return r;
}

/** The scenario of one seed: mostly 1-10 connections, one seed in 25 a crowd of up to 200. */
export function randomScenario(seed: number): Scenario {
  const rng = new Network({ seed: seed + 1_000_000 }).rng;
  const crowd = rng.int(0, 24) === 0;
  const s: Scenario = {
    seed,
    echo: crowd ? rng.int(20, 90) : rng.int(0, 4),
    downloads: crowd ? rng.int(0, 20) : rng.int(0, 2),
    rr: crowd ? rng.int(20, 90) : rng.int(0, 4),
    echoBytes: crowd ? rng.int(1, 5_000) : rng.int(1, 60_000),
    downloadBytes: crowd ? rng.int(1, 10_000) : rng.int(1, 80_000),
    requests: crowd ? rng.int(1, 3) : rng.int(1, 10),
    crashAtUs: rng.int(0, 9) === 0 ? undefined : rng.int(4_000, 44_000),
    loss: rng.int(0, 2) === 0 ? 0 : rng.int(0, 30) / 1000,
    v6: rng.int(0, 1) === 1,
  };
  if (s.echo + s.downloads + s.rr === 0) s.echo = 1;
  // One seed in 5: the standby restarts under traffic first (drawn last: the draws above keep
  // their values for every seed).
  if (rng.int(0, 4) === 0) s.standbyRestartAtUs = rng.int(5_000, 30_000);
  // Half the seeds: the standby listens on the data link.
  s.snoop = rng.int(0, 1) === 1;
  return s;
}

/** The random take-over scenarios run by `npm test` (HA_SEEDS to change), split over this many files. */
export const SEED_PARTS = 4;

/**
 * Part `part` (1..SEED_PARTS) of the random take-over property: its share of HA_SEEDS (default
 * 1,000) seeds, each a crash at any instant (handshake, mid-stream, mid-close), with loss, v4 or
 * v6; then checks the seeds hit what the property is about often enough.
 */
export function randomTakeovers(part: number, file: string): void {
  const total = Number(process.env.HA_SEEDS ?? 1000);
  const per = Math.ceil(total / SEED_PARTS);
  const from = (part - 1) * per + 1;
  const count = Math.max(0, Math.min(per, total - from + 1));
  let runs = 0;
  let withLive = 0;
  let restartsWithLive = 0;
  let snoopedWithLive = 0;
  forEachSeed(
    count,
    (seed) => {
      const s = randomScenario(seed);
      const r = check(s);
      runs++;
      const live = r.b.ha.takeovers[0]?.connections ?? 0;
      if (live > 0) withLive++;
      if (live > 0 && s.standbyRestartAtUs !== undefined) restartsWithLive++;
      if (live > 0 && (r.b.ha.snooped.bytes > 0 || r.oldB.ha.snooped.bytes > 0)) snoopedWithLive++;
    },
    { from, file },
  );
  // The crash instants must hit live connections often, or the property says little.
  assert.ok(withLive >= runs * 0.3, `only ${withLive} of ${runs} take-overs had live connections`);
  if (runs >= 100)
    assert.ok(
      restartsWithLive >= runs * 0.05,
      `only ${restartsWithLive} of ${runs} take-overs followed a standby restart with live connections`,
    );
  if (runs >= 100)
    assert.ok(
      snoopedWithLive >= runs * 0.05,
      `only ${snoopedWithLive} of ${runs} take-overs used bytes the standby overheard`,
    );
}
