/**
 * The HA node's roles, epochs and link messages (docs/ARCHITECTURE.md §4, §6): fail-back
 * without preemption and a second take-over, a standby that has not bootstrapped, degraded
 * 'refuse', fencing on a higher epoch or a claim of the VIP, refused batches, the DROP of a silent
 * standby, async replication, one-way cuts of the replication link. Scenarios run on the
 * simulator; the message-level rules are checked on a lone HaNode behind a stub replication link.
 * Tests marked `todo` pin down known bugs (their reasons say what goes wrong).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ArbiterStore, decodeRecord, MemoryArbiter } from '../../src/ha/arbiter.ts';
import { isBeaconFrame } from '../../src/ha/beacon.ts';
import {
  type Batch,
  type ConnTuple,
  decodeBatch,
  encodeBatch,
  jsonBytes,
  REC_CONN,
  REC_GONE,
  REC_RECV,
  REC_SEND,
} from '../../src/ha/log.ts';
import { Mirror } from '../../src/ha/mirror.ts';
import {
  type HaDriver,
  HaNode,
  type HaNodeOptions,
  MSG_ACK,
  MSG_BATCH,
  MSG_DROP,
  MSG_HEARTBEAT,
  MSG_ROLE,
  nodeMac,
  type PeerLink,
} from '../../src/ha/node.ts';
import { Replicator } from '../../src/ha/replicator.ts';
import {
  crashNode,
  DOWNLOAD_PORT,
  DOWNLOAD_STREAM,
  ECHO_PORT,
  HaSimNode,
  type HaSimOptions,
  linkNodes,
  VIP_MAC,
  VIP4,
  VIP6,
} from '../../src/ha/sim.ts';
import { LearningSwitch, Network, Rng } from '../../src/link/sim/index.ts';
import { cidrFromString, ipFromString } from '../../src/stack/ip.ts';
import { NetStack, type StackConnection } from '../../src/stack/stack.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { macFromString, writeMac } from '../../src/wire/address.ts';
import { isWireError } from '../../src/wire/error.ts';
import { parseFrame } from '../../src/wire/frame.ts';
import { TCP_RST } from '../../src/wire/tcp.ts';
import { StackNode } from '../support/stack-sim.ts';
import { checkPattern, fillPattern } from '../support/tcp-sim.ts';

const INF = Number.POSITIVE_INFINITY;
const ENC = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// A simulated world: a client stack and an HA pair on a learning switch

interface Stream {
  kind: 'echo' | 'download';
  c: StackConnection;
  want: number;
  sent: number;
  got: number;
  bad: number;
  done: boolean;
}

interface WorldOptions {
  seed: number;
  a?: Partial<HaSimOptions>;
  b?: Partial<HaSimOptions>;
  echoBytes: number;
  downloadBytes: number;
  /**
   * Paced client: each millisecond (until `paceUntilUs`) every echo stream writes at most this many
   * bytes and every download reads at most this many, so streams stay live for a known time.
   */
  pace?: number;
  paceUntilUs?: number;
  /**
   * Client socket buffers (send and receive) of echo streams and of downloads; default: the stack's
   * (4 MiB). Small ones make a stream move at the client's pace.
   */
  echoBuffer?: number;
  downloadBuffer?: number;
}

function world(o: WorldOptions) {
  const net = new Network({ seed: o.seed });
  const sw = net.attach(new LearningSwitch({ ports: 4 }), 'sw');
  const client = new StackNode({
    mac: macFromString('02:00:00:00:00:01')!,
    addresses: [cidrFromString('198.18.0.1/24')!, cidrFromString('fd00::1/64')!],
  });
  const a = new HaSimNode({ nodeId: 'a', role: 'active', downloadBytes: o.downloadBytes, ...o.a });
  const b = new HaSimNode({ nodeId: 'b', role: 'standby', downloadBytes: o.downloadBytes, ...o.b });
  const hc = net.attach(client, 'client');
  const ha = net.attach(a, 'a');
  const hb = net.attach(b, 'b');
  const link = { latencyUs: 100, bandwidthBps: 1e9 };
  net.connect(hc, 0, sw, 0, link);
  const la = net.connect(ha, 0, sw, 1, link);
  const lb = net.connect(hb, 0, sw, 2, link);
  let rsts = 0;
  const inner = client.receive.bind(client);
  client.receive = (port, frame, now) => {
    const f = parseFrame(frame);
    if (!isWireError(f) && f.tcp && (f.tcp.flags & TCP_RST) !== 0) rsts++;
    inner(port, frame, now);
  };

  const streams = new Map<StackConnection, Stream>();
  const paced = o.pace !== undefined;
  const drive = (s: Stream, writeBudget: number, readBudget: number) => {
    const t = s.c.tcp;
    let acted = false;
    if (s.kind === 'echo') {
      while (s.sent < s.want && t.writable > 0 && writeBudget > 0) {
        const chunk = new Uint8Array(Math.min(s.want - s.sent, t.writable, 16384, writeBudget));
        fillPattern(s.c.localPort, s.sent, chunk);
        const n = t.write(chunk);
        s.sent += n;
        writeBudget -= n;
        acted = true;
      }
    }
    const stream = s.kind === 'echo' ? s.c.localPort : DOWNLOAD_STREAM;
    for (let d = t.read(readBudget); d; d = t.read(readBudget)) {
      const bad = checkPattern(stream, s.got, d);
      if (bad >= 0 && s.bad < 0) s.bad = s.got + bad;
      s.got += d.length;
      readBudget -= d.length;
      acted = true;
    }
    const finished = s.kind === 'echo' ? s.got >= s.want : t.eof;
    if (finished && !s.done) {
      s.done = true;
      t.close();
      acted = true;
    }
    if (acted) client.stack.touch(s.c);
  };
  client.onChange = (c) => {
    const s = streams.get(c);
    // Echo replies are always read at once; paced downloads wait for the tick.
    if (s) drive(s, paced ? 0 : INF, paced && s.kind === 'download' ? 0 : INF);
  };
  if (paced) {
    const tick = (now: number) => {
      for (const s of streams.values()) if (!s.done) drive(s, o.pace!, o.pace!);
      if (now + 1000 <= (o.paceUntilUs ?? 2_000_000)) net.after(1000, tick);
    };
    net.at(1000, tick);
  }

  const vip4 = ipFromString(VIP4)!;
  const open = (kind: Stream['kind'], now: number, vip = vip4): Stream => {
    const buf = kind === 'echo' ? o.echoBuffer : o.downloadBuffer;
    const tcp = buf === undefined ? {} : { sendBufferSize: buf, recvBufferSize: buf };
    const c = client.stack.connect(vip, kind === 'echo' ? ECHO_PORT : DOWNLOAD_PORT, now, { tcp });
    const s: Stream = {
      kind,
      c,
      want: kind === 'echo' ? o.echoBytes : o.downloadBytes,
      sent: 0,
      got: 0,
      bad: -1,
      done: false,
    };
    streams.set(c, s);
    drive(s, paced ? 0 : INF, paced ? 0 : INF);
    hc.wake();
    return s;
  };
  /** Bytes the client has received so far on all streams. */
  const received = () => [...streams.values()].reduce((n, s) => n + s.got, 0);
  return { net, sw, client, hc, a, b, ha, hb, la, lb, streams, open, received, rsts: () => rsts };
}

type World = ReturnType<typeof world>;

function logsOf(...nodes: HaSimNode[]): string {
  return nodes
    .flatMap((n) => n.logs)
    .sort()
    .slice(-16)
    .join('\n');
}

/** Every stream arrived byte-exact and closed cleanly. */
function assertStreams(w: World, streams: Iterable<Stream>, ctx: () => string) {
  for (const s of streams) {
    const what = `${s.kind} :${s.c.localPort}`;
    assert.equal(s.c.tcp.error, undefined, `${what}: error ${s.c.tcp.error}\n${ctx()}`);
    assert.equal(s.bad, -1, `${what}: corrupt at ${s.bad}\n${ctx()}`);
    assert.equal(s.got, s.want, `${what}: got ${s.got} of ${s.want}\n${ctx()}`);
    assert.ok(s.done, `${what}: not done\n${ctx()}`);
  }
  assert.equal(w.rsts(), 0, `a RST reached the client\n${ctx()}`);
}

// ---------------------------------------------------------------------------------------------
// A lone HaNode behind a stub replication link

interface Sent {
  type: number;
  epoch: number;
  payload: Uint8Array;
  at: number;
}

class StubLink implements PeerLink {
  readonly sent: Sent[] = [];
  closed = 0;
  /** Sends and closes in order, as `type@time` / `close@time`. */
  readonly events: string[] = [];
  constructor(private readonly clock: () => number) {}
  send(type: number, epoch: number, payload: Uint8Array): void {
    this.sent.push({ type, epoch, payload: payload.slice(), at: this.clock() });
    this.events.push(`${type}@${this.clock()}`);
  }
  close(): void {
    this.closed++;
    this.events.push(`close@${this.clock()}`);
  }
  of(type: number): Sent[] {
    return this.sent.filter((m) => m.type === type);
  }
}

function vipStack(now: number, mac = VIP_MAC, out?: Uint8Array[]): NetStack {
  return new NetStack(
    { mac, addresses: [cidrFromString(`${VIP4}/24`)!, cidrFromString(`${VIP6}/64`)!] },
    new Rng(7),
    (f) => out?.push(f.slice()),
    now,
  );
}

function loneNode(opts: Partial<HaNodeOptions>, start = 0) {
  let clock = start;
  const stack = vipStack(start);
  const muted: boolean[] = [];
  const logs: string[] = [];
  const driver: HaDriver = {
    setMuted: (m) => muted.push(m),
    wake: () => {},
    restored: () => {},
    log: (l) => logs.push(l),
  };
  const ha = new HaNode({ nodeId: 'a', role: 'active', startupWaitUs: 1000, ...opts }, stack, driver, start);
  const at = (t: number) => {
    clock = t;
    return t;
  };
  const link = () => new StubLink(() => clock);
  return { ha, stack, muted, logs, at, link };
}

function role(nodeId: string, r: string): Uint8Array {
  return ENC.encode(JSON.stringify({ nodeId, role: r, ready: false }));
}

function tupleOf(b: Batch): ConnTuple {
  const r = b.records[0];
  assert.ok(r.type === REC_CONN);
  return r.tuple;
}

function f64(...v: number[]): Uint8Array {
  const b = new Uint8Array(8 * v.length);
  for (let i = 0; i < v.length; i++) new DataView(b.buffer).setFloat64(8 * i, v[i]);
  return b;
}

// ---------------------------------------------------------------------------------------------

describe('HA node on the simulator', () => {
  test('fail-back: a restarted configured-active joins as standby, syncs, and takes over at epoch 3', () => {
    // Echo streams move at the client's pace (2 kB/ms, small buffers) so they are live through
    // both take-overs; downloads are read at that pace from the client's (large) buffer.
    const w = world({
      seed: 11,
      echoBytes: 1_200_000,
      downloadBytes: 1_200_000,
      pace: 2000,
      paceUntilUs: 4_000_000,
      echoBuffer: 65536,
    });
    const { net, a, b } = w;
    const newA = new HaSimNode({ nodeId: 'a', role: 'active', downloadBytes: 1_200_000 });
    const ctx = () => logsOf(a, b, newA);
    linkNodes(a, b, 200, 0);
    net.at(5_000, (now) => {
      w.open('echo', now);
      w.open('echo', now);
      w.open('download', now);
      w.open('download', now);
    });
    const seen: Record<string, unknown> = {};
    const live = () => [...w.streams.values()].filter((s) => !s.done).length;
    const progress = () => [...w.streams.values()].map((s) => s.got);
    net.at(20_000, () => {
      seen.before = { aRole: a.ha.role, aEpoch: a.ha.epoch, bSynced: b.ha.mirror.synced, live: live() };
      crashNode(a);
    });
    // The old node comes back (a new process, configured active) once b has taken over and the
    // client's streams run again (the echo streams resume only at the client's RTO, ~200 ms after
    // the take-over: see the todo test on kick-start below).
    let atRestart: number[] = [];
    net.at(400_000, (now) => {
      seen.tookOver = { bRole: b.ha.role, bEpoch: b.ha.epoch, takeovers: b.ha.takeovers.length };
      atRestart = progress();
      w.ha.restart(newA);
      linkNodes(newA, b, 200, now);
    });
    net.at(402_000, () => {
      seen.joined = {
        newARole: newA.ha.role,
        newAEpoch: newA.ha.epoch,
        synced: newA.ha.mirror.synced,
        mirrored: newA.ha.mirror.conns.size,
        bRole: b.ha.role,
        bEpoch: b.ha.epoch,
        attached: b.ha.standbyAttached,
        live: live(),
      };
    });
    net.at(500_000, () => {
      const now = progress();
      seen.beforeSecond = {
        newARole: newA.ha.role,
        synced: newA.ha.mirror.synced,
        bRole: b.ha.role,
        stalled: now.filter((g, i) => g <= atRestart[i]).length,
        batches: newA.ha.mirror.counters.batches,
        rejects: newA.ha.rejects.length,
        live: live(),
      };
      crashNode(b);
    });
    net.run({ until: 6_000_000 });

    assert.deepEqual(seen.before, { aRole: 'active', aEpoch: 1, bSynced: true, live: 4 }, ctx());
    assert.deepEqual(seen.tookOver, { bRole: 'active', bEpoch: 2, takeovers: 1 }, ctx());
    // No preemption: the configured active joins the active peer as standby, at its epoch.
    assert.deepEqual(
      seen.joined,
      {
        newARole: 'standby',
        newAEpoch: 2,
        synced: true,
        mirrored: 4,
        bRole: 'active',
        bEpoch: 2,
        attached: true,
        live: 4,
      },
      ctx(),
    );
    const bs = seen.beforeSecond as Record<string, number | string | boolean>;
    assert.equal(bs.stalled, 0, `every stream moved while the new standby joined: ${ctx()}`);
    assert.ok((bs.batches as number) > 50, `the new standby follows the live log: ${ctx()}`);
    assert.deepEqual(
      { ...bs, batches: 0 },
      { newARole: 'standby', synced: true, bRole: 'active', stalled: 0, batches: 0, rejects: 0, live: 4 },
      ctx(),
    );

    assert.equal(b.ha.takeovers.length, 1);
    assert.equal(newA.ha.role, 'active', ctx());
    assert.equal(newA.ha.epoch, 3, ctx());
    assert.equal(newA.ha.takeovers.length, 1, ctx());
    assert.equal(newA.ha.takeovers[0].epoch, 3);
    assert.equal(newA.ha.takeovers[0].connections, 4, ctx());
    assert.equal(newA.ha.takeovers[0].failed, 0, ctx());
    assertStreams(w, w.streams.values(), ctx);
    assert.equal(a.framesWhileNotActive + b.framesWhileNotActive + newA.framesWhileNotActive, 0, ctx());
    assert.ok(newA.framesSent > 0);
  });

  test('kill -9 and an immediate restart of the active (before the take-over): the new process waits for the synced standby to take over, then joins it; nothing is lost', () => {
    const w = world({
      seed: 12,
      echoBytes: 400_000,
      downloadBytes: 400_000,
      pace: 2000,
      paceUntilUs: 2_000_000,
    });
    const { net, a, b } = w;
    const newA = new HaSimNode({ nodeId: 'a', role: 'active', downloadBytes: 400_000 });
    const ctx = () => logsOf(a, b, newA);
    linkNodes(a, b, 200, 0);
    net.at(5_000, (now) => {
      w.open('echo', now);
      w.open('download', now);
    });
    const seen: Record<string, unknown> = {};
    net.at(20_000, () => crashNode(a));
    // systemd's Restart=always: the process is back 5 ms later, long before the standby's lease
    // runs out, and its transport dials the standby at once.
    net.at(25_000, (now) => {
      w.ha.restart(newA);
      linkNodes(newA, b, 200, now);
    });
    net.at(30_000, () => {
      seen.waiting = { newARole: newA.ha.role, bRole: b.ha.role, muted: newA.muted };
    });
    // The take-over closes the link it was on (b's transport and newA's then dial again).
    let relinked = false;
    const relink = (now: number) => {
      if (b.ha.role === 'active' && !relinked) {
        relinked = true;
        linkNodes(newA, b, 200, now);
      } else if (!relinked) net.after(1000, relink);
    };
    net.at(31_000, relink);
    net.run({ until: 3_000_000 });

    // Before the fix the new process claimed the VIP on hearing a standby (epoch 1, empty): the
    // standby joined it at that epoch, kept no take-over, and the clients got resets.
    assert.deepEqual(seen.waiting, { newARole: 'standby', bRole: 'standby', muted: true }, ctx());
    assert.equal(b.ha.role, 'active', ctx());
    assert.equal(b.ha.epoch, 2, ctx());
    assert.equal(b.ha.takeovers.length, 1, ctx());
    assert.equal(b.ha.takeovers[0].connections, 2, ctx());
    assert.equal(newA.ha.role, 'standby', ctx());
    assert.ok(newA.ha.mirror.synced, `the restarted node joined and synced: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
    assert.equal(a.framesWhileNotActive + b.framesWhileNotActive + newA.framesWhileNotActive, 0, ctx());
  });

  test('a standby that has not applied its bootstrap does not take over when the active dies', () => {
    const w = world({
      seed: 12,
      a: { ha: { startupWaitUs: 1000 } },
      echoBytes: 500_000,
      downloadBytes: 500_000,
      pace: 2000,
      paceUntilUs: 1_000_000,
    });
    const { net, a, b } = w;
    const ctx = () => logsOf(a, b);
    net.at(5_000, (now) => {
      w.open('echo', now);
      w.open('download', now);
    });
    const seen: Record<string, unknown> = {};
    net.at(20_000, (now) => {
      seen.alone = {
        role: a.ha.role,
        attached: a.ha.standbyAttached,
        conns: [...a.stack.connections()].length,
      };
      linkNodes(a, b, 200, now);
    });
    net.at(20_100, () => {
      seen.atCrash = { synced: b.ha.mirror.synced, batches: b.ha.mirror.counters.batches };
      crashNode(a);
    });
    net.run({ until: 2_000_000 });
    assert.deepEqual(seen.alone, { role: 'active', attached: false, conns: 2 }, ctx());
    assert.deepEqual(seen.atCrash, { synced: false, batches: 0 }, ctx());
    assert.equal(b.ha.role, 'standby', ctx());
    assert.equal(b.ha.epoch, 1, `it heard the active's role: ${ctx()}`);
    assert.equal(b.ha.linkUp, false, `it saw the link close: ${ctx()}`);
    assert.equal(b.ha.mirror.synced, false, ctx());
    assert.equal(b.ha.takeovers.length, 0, ctx());
    assert.equal(b.framesSent, 0, ctx());
    assert.equal(b.muted, true);
    assert.ok(b.ha.pollAt() <= net.now + 10_000, 'nothing left to wait for but its next beacon');
  });

  test("degraded 'refuse': connects are refused while alone, accepted once a standby is synced", () => {
    const w = world({
      seed: 13,
      a: { ha: { startupWaitUs: 1000, degraded: 'refuse' } },
      echoBytes: 150_000,
      downloadBytes: 200_000,
    });
    const { net, a, b } = w;
    const ctx = () => logsOf(a, b);
    let refused: Stream | undefined;
    const seen: Record<string, unknown> = {};
    net.at(5_000, (now) => {
      seen.alone = { role: a.ha.role, accepting: a.stack.acceptingNew };
      refused = w.open('echo', now);
    });
    net.at(20_000, (now) => {
      seen.refused = { state: refused!.c.tcp.state, error: refused!.c.tcp.error, rsts: w.rsts() };
      linkNodes(a, b, 200, now);
    });
    const served: Stream[] = [];
    // Synced a few answers after the bootstrap (the replicator waits for a standby that keeps up:
    // four prompt heartbeat echoes when, as here, no batch flows).
    net.at(60_000, (now) => {
      seen.paired = {
        attached: a.ha.standbyAttached,
        synced: b.ha.mirror.synced,
        accepting: a.stack.acceptingNew,
      };
      served.push(w.open('echo', now), w.open('download', now), w.open('echo', now, ipFromString(VIP6)!));
    });
    net.run({ until: 3_000_000 });
    assert.deepEqual(seen.alone, { role: 'active', accepting: false }, ctx());
    assert.deepEqual(seen.refused, { state: TcpState.Closed, error: 'ECONNREFUSED', rsts: 1 }, ctx());
    assert.ok(a.stack.counters.tcpRstSent >= 1);
    assert.deepEqual(seen.paired, { attached: true, synced: true, accepting: true }, ctx());
    for (const s of served) {
      assert.equal(s.c.tcp.error, undefined, ctx());
      assert.equal(s.bad, -1, ctx());
      assert.equal(s.got, s.want, ctx());
      assert.ok(s.done, ctx());
    }
    assert.equal(w.rsts(), 1, `only the refusal was a RST: ${ctx()}`);
    assert.ok(b.ha.mirror.counters.batches > 10, ctx());
    assert.equal(a.framesWhileNotActive + b.framesWhileNotActive, 0);
  });

  test('the active drops a silent standby with MSG_DROP; the dropped standby never takes over', () => {
    const w = world({
      seed: 14,
      echoBytes: 600_000,
      downloadBytes: 600_000,
      pace: 2000,
      paceUntilUs: 2_000_000,
    });
    const { net, a, b } = w;
    const ctx = () => logsOf(a, b);
    linkNodes(a, b, 200, 0);
    net.at(5_000, (now) => {
      w.open('echo', now);
      w.open('download', now);
    });
    const seen: Record<string, unknown> = {};
    // From 30 ms on, nothing the standby sends reaches the active (a one-way break).
    let mutedAt = 0;
    net.at(30_000, (now) => {
      mutedAt = now;
      seen.before = { synced: b.ha.mirror.synced, conns: b.ha.mirror.conns.size };
      b.link!.send = () => {};
    });
    // The active's messages as the standby gets them.
    const got: { type: number; at: number }[] = [];
    const msg = b.ha.message.bind(b.ha);
    b.ha.message = (type, epoch, payload, now) => {
      got.push({ type, at: now });
      msg(type, epoch, payload, now);
    };
    net.run({ until: 3_000_000 });
    assert.deepEqual(seen.before, { synced: true, conns: 2 }, ctx());
    const drop = got.find((m) => m.type === MSG_DROP);
    assert.ok(drop, `the standby got a DROP: ${ctx()}`);
    // lastHeard is the standby's last message before the break (an ACK or heartbeat, ≤ 10 ms
    // before it); the drop comes one timeout (50 ms) later.
    assert.ok(
      drop.at >= mutedAt - 10_000 + 50_000 && drop.at <= mutedAt + 50_000 + 400,
      `drop at ${drop.at}`,
    );
    assert.equal(got[got.length - 1], drop, 'nothing after the DROP');
    assert.equal(b.ha.role, 'standby', ctx());
    assert.equal(b.ha.mirror.synced, false, ctx());
    assert.equal(b.ha.mirror.conns.size, 0, ctx());
    assert.equal(b.ha.linkUp, false, ctx());
    assert.equal(b.ha.takeovers.length, 0, ctx());
    assert.equal(b.framesSent, 0, ctx());
    assert.ok(
      b.logs.some((l) => l.includes('dropped us')),
      ctx(),
    );
    assert.equal(a.ha.role, 'active', ctx());
    assert.equal(a.ha.epoch, 1);
    assert.ok(
      a.logs.some((l) => l.includes('serving alone')),
      ctx(),
    );
    // The active carries on alone: its streams finish byte-exact.
    assertStreams(w, w.streams.values(), ctx);
  });

  test('async mode: byte-exact with no crash and ackLimit/sendLimit never set', () => {
    const w = world({
      seed: 15,
      a: { ha: { mode: 'async' } },
      b: { ha: { mode: 'async' } },
      echoBytes: 200_000,
      downloadBytes: 300_000,
    });
    const { net, a, b } = w;
    const ctx = () => logsOf(a, b);
    linkNodes(a, b, 200, 0);
    net.at(5_000, (now) => {
      for (let i = 0; i < 3; i++) w.open('echo', now);
      for (let i = 0; i < 2; i++) w.open('download', now);
    });
    let samples = 0;
    let withConns = 0;
    const limited: string[] = [];
    const sample = (now: number) => {
      samples++;
      let n = 0;
      for (const c of a.stack.connections()) {
        n++;
        if (c.tcp.ackLimit !== INF || c.tcp.sendLimit !== INF)
          limited.push(`${now}: :${c.localPort} ack ${c.tcp.ackLimit} send ${c.tcp.sendLimit}`);
      }
      if (n > 0) withConns++;
      if (now < 1_000_000) net.after(250, sample);
    };
    net.at(250, sample);
    net.run({ until: 2_000_000 });
    assert.equal(a.ha.mode, 'async');
    assert.equal(a.ha.replicator?.gating, false);
    assert.equal(a.ha.standbyAttached, true, ctx());
    assert.deepEqual(limited.slice(0, 5), [], 'limits were set in async mode');
    assert.ok(samples > 1000 && withConns > 20, `samples ${samples}, with connections ${withConns}`);
    assert.ok(b.ha.mirror.synced, ctx());
    assert.ok(b.ha.mirror.counters.batches > 10, ctx());
    assert.equal(b.ha.rejects.length, 0, b.ha.rejects.join('; '));
    assert.equal(w.streams.size, 5);
    assertStreams(w, w.streams.values(), ctx);
    assert.equal(b.framesSent, 0);
    assert.equal(a.framesWhileNotActive, 0);
  });
});

describe('HA node messages', () => {
  test('an active that hears a higher epoch fences: muted, link closed, connections dropped, rejoins as standby', () => {
    const n = loneNode({});
    n.ha.poll(n.at(1000));
    assert.equal(n.ha.role, 'active');
    assert.equal(n.ha.epoch, 1);
    assert.deepEqual(n.muted, [true, false]);
    const link = n.link();
    n.ha.linkOpened(link, n.at(2000));
    assert.deepEqual(
      link.sent.map((m) => [m.type, m.epoch]),
      [[MSG_ROLE, 1]],
    );
    // Its own epoch is no news.
    n.ha.message(MSG_HEARTBEAT, 1, f64(2500), n.at(2500));
    assert.equal(n.ha.role, 'active');
    const conn = n.stack.connect(ipFromString('198.18.0.1')!, 5555, n.at(2800));
    n.ha.message(MSG_HEARTBEAT, 2, f64(3000), n.at(3000));
    // Superseded: it drops its connections without a word and, a standby now, tells the new
    // active so over the same link (which bootstraps it).
    assert.equal(n.ha.role, 'standby');
    assert.equal(n.ha.fences.length, 1);
    assert.equal(n.ha.fences[0].dropped, 1);
    assert.equal(conn.removed, true);
    assert.equal(conn.tcp.error, 'ECONNABORTED');
    assert.equal(n.ha.sendUntil(), -INF, 'no lease: nothing may leave');
    assert.deepEqual(n.muted, [true, false, true]);
    assert.equal(link.closed, 0);
    assert.ok(n.logs.some((l) => l.startsWith('fenced: the peer speaks for epoch 2')));
    const roles = () => link.of(MSG_ROLE).map((m) => JSON.parse(new TextDecoder().decode(m.payload)).role);
    assert.deepEqual(roles(), ['active', 'standby']);
    // Silent on the data link from now on: no announcement, no batch.
    n.ha.poll(n.at(20_000_000));
    n.ha.afterTurn(n.at(20_000_001));
    assert.equal(link.of(MSG_BATCH).length, 0);
    assert.deepEqual(n.muted, [true, false, true]);
    // That link said nothing for 4 timeouts: closed, so the transport dials again.
    assert.equal(link.closed, 1);
    // It rejoins over a new link: the new active's role, and it stays a standby at its epoch.
    const l2 = n.link();
    n.ha.linkOpened(l2, n.at(20_100_000));
    n.ha.message(MSG_ROLE, 2, role('b', 'active'), n.at(20_100_100));
    assert.equal(n.ha.role, 'standby');
    assert.equal(n.ha.epoch, 2);
    // Its role when the link opened, the answer to the first role heard on the link (ours may
    // have been lost in the race of two links), and its role on joining.
    assert.deepEqual(
      l2.of(MSG_ROLE).map((m) => JSON.parse(new TextDecoder().decode(m.payload)).role),
      ['standby', 'standby', 'standby'],
    );
  });

  test('forged or malformed batches are refused with a reason, the link closed, nothing applied, the mirror dropped until a new bootstrap', () => {
    const n = loneNode({ nodeId: 'b', role: 'standby' });
    const mirror = n.ha.mirror;
    // Genuine batches, from a replicator on a stack with one connection.
    const src = vipStack(0);
    const conn = src.connect(ipFromString('198.18.0.1')!, 5555, 0);
    const rep = new Replicator(src, 'sync');
    const boot = rep.bootstrap(0);
    assert.equal(boot.lsn, 1);
    assert.ok(boot.reset);
    rep.touched(conn);
    const next = rep.batch(10)!;
    assert.equal(next.lsn, 2);
    const id = boot.records[0].id;

    const fingerprint = () =>
      JSON.stringify({
        lsn: mirror.lsn,
        synced: mirror.synced,
        batches: mirror.counters.batches,
        activeAt: mirror.activeAt,
        conns: [...mirror.conns.entries()].map(([k, c]) => [k, c.state, c.recv.end, c.send.end]),
      });
    let t = 1000;
    const deliver = (payload: Uint8Array, epoch = 1) => {
      const link = n.link();
      n.ha.linkOpened(link, n.at(t));
      n.ha.message(MSG_BATCH, epoch, payload, n.at(t + 10));
      t += 1000;
      return link;
    };
    const refused = (name: string, payload: Uint8Array, reason: RegExp, epoch = 1) => {
      const before = fingerprint();
      const lsnBefore = mirror.lsn;
      const rejects = n.ha.rejects.length;
      const link = deliver(payload, epoch);
      assert.equal(n.ha.rejects.length, rejects + 1, `${name}: a reject`);
      assert.match(n.ha.rejects[rejects], reason, name);
      assert.equal(link.closed, 1, `${name}: the link is closed`);
      assert.equal(n.ha.linkUp, false, name);
      assert.equal(link.of(MSG_ACK).length, 0, `${name}: not acknowledged`);
      // Nothing of the batch was applied (it is checked whole first) …
      assert.ok(mirror.lsn === lsnBefore || mirror.lsn === 0, `${name}: no batch applied`);
      // … and the standby no longer trusts its mirror (the active, seeing the link go, serves on
      // alone): it cannot take over until a new bootstrap.
      assert.equal(mirror.synced, false, `${name}: unsynced`);
      assert.equal(mirror.bootstrapped, false, `${name}: not bootstrapped`);
      assert.equal(mirror.conns.size, 0, `${name}: mirror dropped`);
      assert.ok(before.length > 0);
      assert.equal(n.ha.role, 'standby', name);
    };
    const resync = () => {
      const l = deliver(bootBytes);
      assert.equal(l.closed, 0);
      assert.equal(mirror.bootstrapped, true);
    };
    const forged = (b: Partial<Batch>): Uint8Array =>
      encodeBatch({ lsn: 2, reset: false, at: 20, records: [], ...b });

    refused('garbage', new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x01]), /batch/);
    refused('empty', new Uint8Array(0), /batch: truncated/);
    const bootBytes = encodeBatch(boot);
    refused('truncated bootstrap', bootBytes.subarray(0, bootBytes.length - 3), /truncated/);
    refused('trailing bytes', new Uint8Array([...bootBytes, 0]), /after the last record/);
    refused('lsn 5 before any bootstrap', forged({ lsn: 5 }), /batch 5 before any bootstrap/);
    assert.equal(mirror.synced, false);
    assert.equal(mirror.bootstrapped, false);

    // The genuine bootstrap is taken and acknowledged.
    const ok = deliver(bootBytes);
    assert.equal(ok.closed, 0);
    assert.deepEqual(
      ok.of(MSG_ACK).map((m) => new DataView(m.payload.buffer).getFloat64(0)),
      [1],
    );
    assert.equal(mirror.bootstrapped, true);
    assert.equal(mirror.synced, false, 'a bootstrap alone does not make it able to take over');
    assert.equal(mirror.lsn, 1);
    assert.deepEqual([...mirror.conns.keys()], [id]);

    refused('lsn 5 after 1', forged({ lsn: 5 }), /batch 5 out of order \(expected 2\)/);
    resync();
    refused(
      'data for an unknown connection',
      forged({ records: [{ type: REC_RECV, id: 99, offset: 0, data: new Uint8Array([1, 2, 3]) }] }),
      /unknown connection 99/,
    );
    // A batch is taken whole or not at all: a good record before a bad one is not applied.
    resync();
    refused(
      'a good state record, then an unknown connection',
      forged({ records: [...next.records, { type: REC_RECV, id: 98, offset: 0, data: new Uint8Array(4) }] }),
      /unknown connection 98/,
    );
    resync();
    refused(
      'a state that is not an engine snapshot',
      forged({
        records: [{ type: REC_CONN, id, tuple: tupleOf(boot), state: jsonBytes({ x: 1 }) }],
      }),
      /not an engine snapshot/,
    );
    // State deltas (the state records after a connection's first) must apply to a known state.
    const delta = (id: number, d: Record<string, unknown>) =>
      forged({
        records: [{ type: REC_CONN, id, tuple: tupleOf(boot), state: jsonBytes({ $delta: 1, ...d }) }],
      });
    resync();
    refused(
      'a delta for an unknown connection',
      delta(97, { sndUna: 5 }),
      /state delta for unknown connection 97/,
    );
    resync();
    refused('a delta that rewrites the config', delta(id, { config: {} }), /malformed state delta/);
    resync();
    refused('a delta that removes the config', delta(id, { $gone: ['config'] }), /malformed state delta/);
    resync();
    refused('a delta whose result is not a snapshot', delta(id, { sndUna: 'x' }), /not an engine snapshot/);
    resync();
    refused('a stale epoch', encodeBatch(next), /epoch 0 below ours \(1\)/, 0);
    assert.ok(mirror.counters.rejected >= 5);

    // After a new bootstrap the genuine next batch applies.
    resync();
    const ok2 = deliver(encodeBatch(next));
    assert.equal(ok2.closed, 0);
    assert.equal(mirror.lsn, 2);
    assert.equal(n.ha.rejects.length, 14);
  });

  test('sent bytes the peer acknowledged before a batch carried them are skipped by the mirror, a gap nobody acknowledged is refused', () => {
    const src = vipStack(0);
    src.connect(ipFromString('198.18.0.1')!, 5555, 0);
    const boot = new Replicator(src, 'sync').bootstrap(0);
    const id = boot.records[0].id;
    const gap = (ackedTo: number, offset: number): Batch => ({
      lsn: 2,
      reset: false,
      at: 10,
      records: [
        {
          type: REC_CONN,
          id,
          tuple: tupleOf(boot),
          state: jsonBytes({ $delta: 1, sendBuffer: { start: ackedTo, capacity: 65536 } }),
        },
        { type: REC_SEND, id, offset, data: new Uint8Array([1, 2, 3]) },
      ],
    });
    const fresh = () => {
      const m = new Mirror();
      assert.equal(m.apply(boot, 0), undefined);
      // Something in the log first, so its end is known (0..10).
      assert.equal(
        m.apply(
          {
            lsn: 2,
            reset: false,
            at: 5,
            records: [{ type: REC_SEND, id, offset: 0, data: new Uint8Array(10) }],
          },
          5,
        ),
        undefined,
      );
      return m;
    };
    const ok = fresh();
    assert.equal(ok.apply({ ...gap(100, 100), lsn: 3 }, 10), undefined);
    assert.deepEqual([ok.conns.get(id)!.send.start, ok.conns.get(id)!.send.end], [100, 103]);
    const bad = fresh();
    assert.match(bad.apply({ ...gap(50, 100), lsn: 3 }, 10) ?? '', /sent data at 100, the log ends at 10/);
  });

  test('a bootstrap streams in chunks: whole connections, a chunk per batch at most every 2 ms, deltas only for those sent, the sync only after the last', () => {
    const src = vipStack(0);
    const conns: StackConnection[] = [];
    for (let i = 0; i < 100; i++) {
      const c = src.connect(ipFromString('198.18.0.1')!, 6000 + i, 0);
      c.tcp.write(new Uint8Array(i * 10).fill(i));
      conns.push(c);
    }
    const rep = new Replicator(src, 'sync');
    const mirror = new Mirror();
    const conOf = (b: Batch) => b.records.filter((r) => r.type === REC_CONN).length;
    const boot = rep.bootstrap(0);
    assert.ok(boot.reset);
    assert.equal(conOf(boot), 32, 'the reset batch holds the first 32 connections');
    assert.equal(mirror.apply(boot, 0), undefined);
    // Before its whole record goes, a connection touched, tagged and checkpointed leaves no record
    // (a delta or a checkpoint the standby could not place); one removed leaves no GONE.
    const late = conns[90];
    rep.touched(late);
    rep.tag(late, jsonBytes({ t: 1 }));
    rep.checkpoint(late, jsonBytes({ c: 2 }));
    rep.removed(conns[99]);
    assert.equal(rep.bootstrapDueAt(), 2_000);
    assert.equal(rep.batch(1_000), undefined, 'no chunk within 2 ms of the last, nothing else to send');
    const sent: Batch[] = [boot];
    for (const at of [2_000, 4_000, 6_000]) sent.push(rep.batch(at)!);
    assert.deepEqual(sent.map(conOf), [32, 32, 32, 3], 'chunks of 32 until every connection went');
    assert.equal(rep.bootstrapDueAt(), Number.POSITIVE_INFINITY, 'every connection went');
    assert.equal(rep.batch(9_000), undefined);
    for (const b of sent.slice(1)) assert.equal(mirror.apply(b, 7_000), undefined);
    assert.equal(mirror.conns.size, 99);
    const lateId = sent[2].records.find(
      (r) => r.type === REC_CONN && r.tuple.remotePort === late.remotePort,
    )!.id;
    assert.deepEqual(mirror.conns.get(lateId)!.tag, { t: 1 });
    assert.deepEqual(mirror.conns.get(lateId)!.checkpoint?.value, { c: 2 });
    assert.equal(mirror.conns.get(lateId)!.send.end, 900);
    assert.ok(!sent.some((b) => b.records.some((r) => r.type === REC_GONE)));
    // Not synced before the last chunk is acknowledged, and not before the standby answers promptly.
    rep.ack(3);
    for (let i = 0; i < 4; i++) rep.answered(50);
    assert.equal(rep.batch(10_000), undefined, 'the batch carrying the last chunk is not acknowledged yet');
    rep.ack(4);
    assert.equal(rep.batch(10_100), undefined, 'no prompt answer since the bootstrap was applied');
    for (let i = 0; i < 4; i++) rep.answered(50);
    const sync = rep.batch(10_200)!;
    assert.ok(sync.sync);
    assert.equal(sync.records.length, 0, 'a sync batch sets limits; the standby has every state already');
    assert.equal(mirror.apply(sync, 10_200), undefined);
    assert.equal(late.tcp.sendLimit, -1, 'held at what has left (nothing yet) until the sync commits');
    rep.ack(5);
    assert.equal(late.tcp.sendLimit, 900);
  });

  test('a bootstrap chunk waits while four chunks are unacknowledged', () => {
    const src = vipStack(0);
    for (let i = 0; i < 400; i++) src.connect(ipFromString('198.18.0.1')!, 6000 + i, 0);
    const rep = new Replicator(src, 'sync');
    rep.bootstrap(0);
    for (const at of [2_000, 4_000, 6_000]) assert.ok(rep.batch(at)?.records.length);
    assert.equal(rep.bootstrapDueAt(), Number.POSITIVE_INFINITY, 'four chunks in flight');
    assert.equal(rep.batch(8_000), undefined);
    rep.ack(1);
    assert.equal(rep.bootstrapDueAt(), 8_000);
    assert.equal(rep.batch(8_000)!.records.filter((r) => r.type === REC_CONN).length, 32);
  });

  test('DROP: the active drops a synced standby silent for one timeout, then holds until it could have taken over', () => {
    const n = loneNode({ timeoutUs: 100_000 });
    const link = n.link();
    n.ha.linkOpened(link, n.at(0));
    n.ha.message(MSG_ROLE, 0, role('b', 'standby'), n.at(200));
    assert.equal(n.ha.role, 'active');
    assert.equal(n.ha.standbyAttached, true);
    assert.equal(link.of(MSG_BATCH).length, 1, 'the bootstrap went out');
    assert.equal(n.ha.sendUntil(), INF, 'serving alone while the standby catches up');
    // The standby applies the bootstrap and grants the lease with the batch's clock (200).
    n.ha.message(MSG_ACK, 1, f64(1, 200), n.at(300));
    // It keeps up (the replicator waits for prompt answers): three heartbeat echoes, as prompt.
    for (let i = 0; i < 3; i++) n.ha.message(MSG_HEARTBEAT, 1, f64(250, 200), n.at(300));
    n.ha.afterTurn(n.at(400));
    const sync = link.of(MSG_BATCH).map((m) => decodeBatch(m.payload) as Batch);
    assert.equal(sync.length, 2);
    assert.equal(sync[1].sync, true, 'the batch that makes it able to take over');
    assert.equal(n.ha.sendUntil(), 100_200, 'the lease is now the one it granted: 200 + 100 ms');
    // The standby says nothing more; drive the node by its own pollAt.
    for (let i = 0; i < 10_000 && n.ha.linkUp; i++) n.ha.poll(n.at(n.ha.pollAt()));
    assert.equal(n.ha.linkUp, false);
    const drops = link.of(MSG_DROP);
    assert.equal(drops.length, 1);
    assert.equal(drops[0].at, 300 + 100_000, 'dropped one timeout after it was last heard');
    assert.equal(drops[0].epoch, 1);
    assert.deepEqual(link.events.slice(-2), [`${MSG_DROP}@100300`, 'close@100300'], 'DROP, then close');
    assert.ok(link.of(MSG_HEARTBEAT).length >= 5, 'the active kept sending heartbeats');
    assert.equal(n.ha.standbyAttached, false);
    assert.equal(n.ha.role, 'active');
    // It holds (the lease has run out) until the standby, had it missed the DROP and taken the
    // silence for our death, would have taken over: one timeout past the loss, plus the margin.
    n.ha.poll(n.at(205_299));
    assert.ok(!n.logs.some((l) => l.startsWith('serving alone')));
    assert.equal(n.ha.sendUntil(), 100_200);
    n.ha.poll(n.at(205_300));
    assert.ok(n.logs.some((l) => l.startsWith('serving alone')));
    assert.equal(n.ha.replicator?.gating, false);
    assert.equal(n.ha.sendUntil(), INF);
  });

  test('a standby that got MSG_DROP is unsynced and does not take over after the link closes', () => {
    const n = loneNode({ nodeId: 'b', role: 'standby', timeoutUs: 100_000 });
    const src = vipStack(0);
    src.connect(ipFromString('198.18.0.1')!, 5555, 0);
    const rep = new Replicator(src, 'sync');
    const boot = rep.bootstrap(0);
    rep.ack(boot.lsn);
    for (let i = 0; i < 4; i++) rep.answered(50);
    const sync = rep.batch(100)!;
    assert.equal(sync.sync, true);
    const link = n.link();
    n.ha.linkOpened(link, n.at(0));
    n.ha.message(MSG_ROLE, 1, role('a', 'active'), n.at(200));
    n.ha.message(MSG_BATCH, 1, encodeBatch(boot), n.at(300));
    assert.equal(n.ha.mirror.synced, false);
    n.ha.message(MSG_BATCH, 1, encodeBatch(sync), n.at(310));
    assert.equal(n.ha.mirror.synced, true);
    assert.equal(n.ha.mirror.conns.size, 1);
    assert.ok(n.ha.pollAt() < INF, 'a synced standby watches the active');
    n.ha.message(MSG_DROP, 1, ENC.encode('silent'), n.at(500_000));
    assert.equal(n.ha.mirror.synced, false);
    assert.equal(n.ha.mirror.conns.size, 0);
    assert.equal(n.ha.rejects.length, 0);
    n.ha.linkClosed(link, n.at(500_200));
    assert.equal(n.ha.pollAt(), INF);
    for (const t of [600_200, 1_000_000, 20_000_000]) n.ha.poll(n.at(t));
    assert.equal(n.ha.role, 'standby');
    assert.equal(n.ha.takeovers.length, 0);
    assert.deepEqual(n.muted, [true, true]);
    // Control: without the DROP the same standby takes over once the lease it granted with its
    // answer to the last heartbeat (at 500 ms) has run out, plus the margin.
    const m = loneNode({ nodeId: 'b', role: 'standby', timeoutUs: 100_000 });
    const l2 = m.link();
    m.ha.linkOpened(l2, m.at(0));
    m.ha.message(MSG_ROLE, 1, role('a', 'active'), m.at(200));
    m.ha.message(MSG_BATCH, 1, encodeBatch(boot), m.at(300));
    m.ha.message(MSG_BATCH, 1, encodeBatch(sync), m.at(310));
    m.ha.message(MSG_HEARTBEAT, 1, f64(499_000), m.at(500_000));
    const grant = l2.of(MSG_HEARTBEAT).at(-1)!;
    assert.deepEqual(
      [...new Float64Array(grant.payload.slice().reverse().buffer)].reverse(),
      [500_000, 499_000],
    );
    m.ha.linkClosed(l2, m.at(500_200));
    assert.equal(m.ha.pollAt(), 605_000);
    m.ha.poll(m.at(604_999));
    assert.equal(m.ha.role, 'standby');
    m.ha.poll(m.at(605_000));
    assert.equal(m.ha.role, 'active');
    assert.equal(m.ha.epoch, 2);
  });

  test("a take-over's announcements and re-kicks count from the end of the restore, not from before it", () => {
    // The real driver's clock moves while the restore runs: here it ends 30 ms after the poll.
    const out: Uint8Array[] = [];
    const stack = vipStack(0, VIP_MAC, out);
    let real = 0;
    const driver: HaDriver = {
      setMuted: () => {},
      wake: () => {},
      restored: () => {},
      log: () => {},
      clock: () => real,
    };
    const ha = new HaNode({ nodeId: 'b', role: 'standby', startupWaitUs: 1000 }, stack, driver, 0);
    ha.mirror.synced = true;
    const garps = () =>
      out.filter((f) => {
        const p = parseFrame(f);
        return !isWireError(p) && p.arp !== undefined;
      }).length;
    real = 31_000;
    ha.takeOver(1000);
    assert.equal(ha.role, 'active');
    assert.equal(garps(), 1, 'the claim');
    // The first repeat is due 10 ms after the claim: 10 ms after the restore ended (41 ms), not
    // after the poll that began it (11 ms), when nothing a client sent could have been read yet.
    real = 20_000 + 1000;
    ha.poll(21_000);
    assert.equal(garps(), 1, 'no repeat 10 ms after the poll that began the restore');
    real = 41_000;
    ha.poll(41_000);
    assert.equal(garps(), 2, 'the repeat 10 ms after the restore ended');
  });

  test('address claims fence only an active that lost its standby (the one a take-over supersedes)', () => {
    // The claim is real: the frames another node with the VIP sends when it takes over.
    const claims: Uint8Array[] = [];
    vipStack(0, macFromString('02:00:00:00:00:99')!, claims).announce();
    assert.equal(claims.length, 2, 'a gratuitous ARP and an unsolicited NA');
    const [garp, na] = claims;

    // Active from its start, never paired: nobody can have taken over from it.
    const alone = loneNode({});
    alone.ha.poll(alone.at(1000));
    assert.equal(alone.ha.role, 'active');
    for (const f of claims) alone.stack.receive(f, alone.at(3_000_000));
    assert.equal(alone.stack.counters.addressClaims, 2);
    assert.equal(alone.ha.role, 'active');

    // Just took over: a claim is the old node's last word (or a restarting node that loses on epochs).
    const took = loneNode({ role: 'standby' });
    took.ha.mirror.synced = true;
    took.ha.takeOver(took.at(1000));
    took.stack.receive(na, took.at(500_000));
    assert.equal(took.ha.role, 'active');

    // Paired, then the standby's link closes: orphaned. Its standby's claim fences it (v6 and v4).
    for (const frame of [na, garp]) {
      const orphan = loneNode({});
      const l = orphan.link();
      orphan.ha.linkOpened(l, orphan.at(0));
      orphan.ha.message(MSG_ROLE, 0, role('b', 'standby'), orphan.at(200));
      assert.equal(orphan.ha.standbyAttached, true);
      orphan.ha.linkClosed(l, orphan.at(10_000));
      orphan.stack.receive(frame, orphan.at(60_000));
      assert.equal(orphan.ha.fences.length, 1);
      assert.equal(orphan.ha.role, 'standby', 'fenced, then rejoining');
      assert.deepEqual(orphan.muted, [true, false, true]);
    }

    const paired = loneNode({});
    const link = paired.link();
    paired.ha.linkOpened(link, paired.at(0));
    paired.ha.message(MSG_ROLE, 0, role('b', 'standby'), paired.at(200));
    assert.equal(paired.ha.standbyAttached, true);
    paired.ha.message(MSG_HEARTBEAT, 1, f64(0), paired.at(5_000_000));
    for (const f of claims) paired.stack.receive(f, paired.at(5_000_100));
    paired.ha.addressClaimed(paired.at(9_000_000));
    assert.equal(paired.stack.counters.addressClaims, 2);
    assert.equal(paired.ha.role, 'active');
    assert.deepEqual(paired.muted, [true, false]);

    // A candidate or a standby has no VIP to lose.
    const cand = loneNode({});
    cand.ha.addressClaimed(cand.at(900));
    assert.equal(cand.ha.role, 'candidate');
    const sb = loneNode({ role: 'standby' });
    sb.ha.addressClaimed(sb.at(5_000_000));
    assert.equal(sb.ha.role, 'standby');
  });
});

describe('HA pair: replication link cuts and start-up', () => {
  /**
   * The replication link loses a→b from `cutAt` on: b hears nothing there, a still hears b's
   * heartbeats, but its batches go unacknowledged. With `beacons` the data link is a second path.
   */
  const oneWayCut = (cutAt: number, openAt: number, beacons: boolean) => {
    const w = world({
      seed: 21,
      a: { beacons },
      b: { beacons },
      echoBytes: 600_000,
      downloadBytes: 600_000,
      pace: 2000,
      paceUntilUs: openAt + 3_000_000,
      echoBuffer: 65536,
    });
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    net.at(openAt, (now) => {
      w.open('echo', now);
      w.open('download', now);
    });
    net.at(cutAt, () => {
      a.link!.send = () => {};
    });
    // What the old active sends for the VIP once the standby has taken over.
    let aFramesAtTakeover = -1;
    const takeOver = b.ha.takeOver.bind(b.ha);
    b.ha.takeOver = (now) => {
      aFramesAtTakeover = a.framesSent;
      takeOver(now);
    };
    net.run({ until: openAt + 3_000_000 });
    return { w, a, b, aFramesAfter: a.framesSent - aFramesAtTakeover, ctx: () => logsOf(a, b) };
  };

  test('one-way cut with beacons: the active drops the deaf standby, which learns it on the data link and never takes over', () => {
    const { w, a, b, ctx } = oneWayCut(2_500_000, 2_400_000, true);
    assert.equal(a.ha.role, 'active', ctx());
    assert.equal(a.ha.epoch, 1, ctx());
    assert.equal(a.ha.sendUntil(), INF, `serving alone: ${ctx()}`);
    assert.ok(
      a.logs.some((l) => l.includes('has not acknowledged a batch')),
      ctx(),
    );
    assert.equal(b.ha.role, 'standby', ctx());
    assert.equal(b.ha.takeovers.length, 0, ctx());
    assert.equal(b.ha.mirror.synced, false, ctx());
    assert.ok(
      b.logs.some((l) => l.includes('beacon says our mirror is stale')),
      ctx(),
    );
    assert.equal(b.framesSent, 0, ctx());
    assertStreams(w, w.streams.values(), ctx);
  });

  test('one-way cut without beacons: the standby takes over once the lease ran out, the old active fences on its claim', () => {
    const { w, a, b, aFramesAfter, ctx } = oneWayCut(2_500_000, 2_400_000, false);
    assert.equal(b.ha.role, 'active', ctx());
    assert.equal(b.ha.epoch, 2, ctx());
    assert.equal(b.ha.takeovers.length, 1, ctx());
    assert.equal(b.ha.takeovers[0].connections, 2, ctx());
    assert.equal(a.ha.fences.length, 1, ctx());
    assert.equal(a.ha.role, 'standby', ctx());
    assert.equal(aFramesAfter, 0, `the old active sent after the take-over: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  test('one-way cut without beacons just after the active started: the old active still fences (no split brain)', () => {
    const { w, a, b, aFramesAfter, ctx } = oneWayCut(30_000, 5_000, false);
    assert.equal(b.ha.role, 'active', ctx());
    assert.equal(b.ha.takeovers.length, 1, ctx());
    assert.equal(
      a.ha.fences.length,
      1,
      `two actives (a epoch ${a.ha.epoch}, b epoch ${b.ha.epoch}): ${ctx()}`,
    );
    assert.equal(aFramesAfter, 0, `the old active sent ${aFramesAfter} frames after the take-over: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  test('the standby restarts while the active keeps its connections: the new standby syncs and takes over', () => {
    const w = world({
      seed: 12,
      echoBytes: 1_200_000,
      downloadBytes: 1_200_000,
      pace: 2000,
      paceUntilUs: 4_000_000,
      echoBuffer: 65536,
    });
    const { net, a, b } = w;
    const newB = new HaSimNode({ nodeId: 'b', role: 'standby', downloadBytes: 1_200_000 });
    const ctx = () => logsOf(a, b, newB);
    linkNodes(a, b, 200, 0);
    net.at(5_000, (now) => {
      w.open('echo', now);
      w.open('download', now);
    });
    // The standby's process dies; the active drops it and serves alone, then a new standby
    // process joins while the same connections are live: its bootstrap must carry them whole.
    net.at(20_000, () => crashNode(b));
    net.at(200_000, (now) => {
      w.hb.restart(newB);
      linkNodes(a, newB, 200, now);
    });
    const seen: Record<string, unknown> = {};
    net.at(300_000, () => {
      seen.joined = {
        synced: newB.ha.mirror.synced,
        mirrored: newB.ha.mirror.conns.size,
        rejects: newB.ha.rejects,
        attached: a.ha.standbyAttached,
      };
      crashNode(a);
    });
    net.run({ until: 6_000_000 });
    assert.deepEqual(seen.joined, { synced: true, mirrored: 2, rejects: [], attached: true }, ctx());
    assert.equal(newB.ha.role, 'active', ctx());
    assert.equal(newB.ha.takeovers[0]?.connections, 2, ctx());
    assertStreams(w, w.streams.values(), ctx);
  });

  test('two configured actives linked at start: one becomes active, the other joins as standby', () => {
    const net = new Network({ seed: 3 });
    const sw = net.attach(new LearningSwitch({ ports: 3 }), 'sw');
    const a = new HaSimNode({ nodeId: 'a', role: 'active' });
    const b = new HaSimNode({ nodeId: 'b', role: 'active' });
    net.connect(net.attach(a, 'a'), 0, sw, 0, { latencyUs: 100 });
    net.connect(net.attach(b, 'b'), 0, sw, 1, { latencyUs: 100 });
    linkNodes(a, b, 200, 0);
    net.run({ until: 1_000_000 });
    const ctx = () => logsOf(a, b);
    assert.deepEqual([a.ha.role, b.ha.role].sort(), ['active', 'standby'], ctx());
    const standby = a.ha.role === 'standby' ? a : b;
    assert.equal(standby.framesSent, 0, `the standby announced the VIP: ${ctx()}`);
    assert.ok(standby.ha.mirror.synced, ctx());
  });
  /**
   * b is an unsynced standby that has lived through take-overs up to epoch 7 (it was dropped, say,
   * and then the active died: seen in the nemesis, host crash after a DROP); a restarted
   * configured-active meets it, at start (`linkAt` 0) or after serving alone (3.5 s).
   */
  const meetLaterEpoch = (linkAt: number) => {
    const net = new Network({ seed: 4 });
    const sw = net.attach(new LearningSwitch({ ports: 3 }), 'sw');
    const a = new HaSimNode({ nodeId: 'a', role: 'active' });
    const b = new HaSimNode({ nodeId: 'b', role: 'standby' });
    net.connect(net.attach(a, 'a'), 0, sw, 0, { latencyUs: 100 });
    net.connect(net.attach(b, 'b'), 0, sw, 1, { latencyUs: 100 });
    b.ha.epoch = 7;
    net.at(linkAt, (now) => linkNodes(a, b, 200, now));
    net.run({ until: linkAt + 1_000_000 });
    const ctx = () => logsOf(a, b);
    assert.equal(a.ha.role, 'active', ctx());
    assert.equal(a.ha.epoch, 8, ctx());
    assert.equal(b.ha.role, 'standby', ctx());
    assert.ok(b.ha.mirror.synced, `the pair formed: ${ctx()}`);
    assert.equal(a.ha.fences.length + b.ha.fences.length, 0, ctx());
    assert.equal(b.framesSent, 0, ctx());
  };

  test('a restarted active meets an unsynced standby of a later epoch: it claims above it and the pair forms (no two standbys waiting for ever)', () => {
    meetLaterEpoch(0);
  });

  test('an active that started alone meets a standby of a later epoch: it moves above it instead of fencing, and the pair forms', () => {
    meetLaterEpoch(3_500_000);
  });
});

describe('take-over: kick-start of window- and cwnd-limited streams', () => {
  /**
   * A pair with one paced stream; a crashes at 20 ms; samples around b's take-over, which comes
   * when the lease (`leaseUs`) has run out (so the client has sent that long into the void).
   */
  const afterTakeover = (kind: Stream['kind'], seed: number, marks: number[], leaseUs = 50_000) => {
    const w = world({
      seed,
      a: { ha: { timeoutUs: leaseUs } },
      b: { ha: { timeoutUs: leaseUs } },
      echoBytes: 400_000,
      downloadBytes: 1_500_000,
      pace: 2000,
      paceUntilUs: 4_000_000,
      echoBuffer: 65536,
      downloadBuffer: 65536,
    });
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    let s: Stream | undefined;
    net.at(5_000, (now) => {
      s = w.open(kind, now);
    });
    net.at(20_000, () => crashNode(a));
    const at: { acked: number; sndMax: number; got: number }[] = [];
    const sample = () => {
      const t = s!.c.tcp;
      at.push({ acked: t.acknowledged, sndMax: t.snapshot(net.now, false).sndMax, got: s!.got });
    };
    const takeOver = b.ha.takeOver.bind(b.ha);
    b.ha.takeOver = (now) => {
      sample();
      for (const d of marks) net.after(d, sample);
      takeOver(now);
    };
    net.run({ until: 4_000_000 });
    return { w, s: s!, at, ctx: () => logsOf(a, b) };
  };

  test(
    'bytes the client sent to the dead node are fast-retransmitted after the take-over, not left to its RTO',
    {
      todo: 'BUG: the client’s limited-transmit segments are SACKed by the new active, so the partial-ACK (NewReno) rule is skipped and fewer than DupThresh segments are SACKed: the hole waits for the client’s 200 ms RTO',
    },
    () => {
      const { at, ctx } = afterTakeover('echo', 16, [100_000], 100_000);
      const [t0, t100] = at;
      assert.ok(t0.sndMax - t0.acked > 20_000, 'the client had data in flight to the dead node');
      assert.ok(
        t100.acked >= t0.sndMax,
        `100 ms after the take-over the client has ${t100.acked} acknowledged of the ${t0.sndMax} it had sent: ${ctx()}`,
      );
    },
  );

  test('a window-limited download keeps the client’s pace after the take-over', () => {
    const { w, at, ctx } = afterTakeover('download', 17, [50_000, 450_000]);
    const [, t50, t450] = at;
    // 400 ms at 2 kB/ms is 800 kB; allow for slow start and the window opening.
    assert.ok(t450.got - t50.got >= 600_000, `read ${t450.got - t50.got} bytes in 400 ms: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });
});

/**
 * Runs the network to `untilUs`, sampling every 500 µs from 6 ms how much the stream `s()` has
 * received; returns the longest time (µs) between two samples that saw it grow.
 */
function longestWait(net: Network, s: () => Stream | undefined, untilUs: number): number {
  let last = 0;
  let lastAt = 0;
  let maxGap = 0;
  const sample = (now: number) => {
    const got = s()?.got ?? 0;
    if (got !== last) {
      if (process.env.GAP_DEBUG && now - lastAt > maxGap)
        console.log(`gap ${now - lastAt} µs ending at ${now}`);
      maxGap = Math.max(maxGap, now - lastAt);
      last = got;
      lastAt = now;
    } else if (got === 0) lastAt = now;
    if (now < untilUs && !s()?.done) net.after(500, sample);
  };
  net.at(6_000, sample);
  net.run({ until: untilUs });
  return maxGap;
}

describe('take-over: detection and resumption as the node records them', () => {
  /** One download; a crashes at 30 ms (or only falls silent); samples the stream's longest gap. */
  const run = (o: { closeLink: boolean; staleUs?: number; b?: Partial<HaSimOptions> }) => {
    const w = world({
      seed: 21,
      echoBytes: 0,
      downloadBytes: 1_500_000,
      pace: 2000,
      paceUntilUs: 3_000_000,
      downloadBuffer: 65536,
      b: o.b,
    });
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    let s: Stream | undefined;
    net.at(5_000, (now) => {
      s = w.open('download', now);
    });
    net.at(30_000, () => {
      if (o.closeLink) crashNode(a);
      else a.handle.crash();
    });
    if (o.staleUs !== undefined) {
      // Frames the dead node had queued reach the switch for `staleUs` after b's claim, one
      // every 20 µs: the switch learns the VIP's MAC on a's (dead) port again and again, and the
      // last word is a's.
      const takeOver = b.ha.takeOver.bind(b.ha);
      b.ha.takeOver = (now) => {
        takeOver(now);
        for (let d = 20; d <= o.staleUs!; d += 20)
          net.after(d, (t) => {
            const f = new Uint8Array(60);
            writeMac(f, 0, macFromString('02:00:00:00:00:01')!);
            writeMac(f, 6, VIP_MAC);
            new DataView(f.buffer).setUint16(12, 0x88b5);
            w.sw.node.receive(1, f, t);
          });
      };
    }
    const maxGap = longestWait(net, () => s, 3_000_000);
    return { w, s: s!, maxGap, rec: b.ha.takeovers[0], ctx: () => logsOf(a, b) };
  };

  test('a closed link: the take-over comes when the lease granted with the last answer has run out, recorded with its cause and the stall', () => {
    const { w, s, maxGap, rec, ctx } = run({ closeLink: true });
    assert.ok(rec, ctx());
    assert.equal(rec.cause, 'link closed');
    // The lease (50 ms) from the last answer to the dead active, plus the 5 ms margin.
    const detection = rec.at - rec.lastHeardAt;
    assert.ok(detection >= 50_000 && detection <= 56_000, `detection ${detection} µs: ${ctx()}`);
    assert.equal(rec.resumed, 1, ctx());
    assert.ok(rec.stallUs !== undefined && rec.stallUs < 75_000, `stall ${rec.stallUs} µs: ${ctx()}`);
    assert.ok(maxGap < 75_000, `the client waited ${maxGap} µs for bytes: ${ctx()}`);
    assertStreams(w, [s], ctx);
  });

  test('silence with the link open (a host gone without a word): the same lease, recorded as silence', () => {
    const { w, s, maxGap, rec, ctx } = run({ closeLink: false });
    assert.ok(rec, ctx());
    assert.equal(rec.cause, 'silence');
    const detection = rec.at - rec.lastHeardAt;
    assert.ok(detection >= 50_000 && detection <= 56_000, `detection ${detection} µs: ${ctx()}`);
    assert.equal(rec.resumed, 1, ctx());
    assert.ok(maxGap < 75_000, `the client waited ${maxGap} µs for bytes: ${ctx()}`);
    assertStreams(w, [s], ctx);
  });

  test('stale frames from the dead node after the claim: the stalled stream is kick-started again at the next announcement', () => {
    const { w, s, maxGap, ctx } = run({ closeLink: true, staleUs: 5_000 });
    // The announcement at +10 ms re-teaches the switch and re-kicks the stalled download: far
    // sooner than its 200 ms RTO.
    assert.ok(maxGap < 30_000, `the client waited ${maxGap} µs for bytes: ${ctx()}`);
    assert.match(ctx(), /kick-started again/);
    assertStreams(w, [s], ctx);
    // Control: with the first announcement at +1 s, the stream waits for its RTO.
    const ctl = run({ closeLink: true, staleUs: 5_000, b: { ha: { announceAfterUs: [1_000_000] } } });
    assert.ok(ctl.maxGap >= 150_000, `control: the client waited only ${ctl.maxGap} µs: ${ctl.ctx()}`);
    assertStreams(ctl.w, [ctl.s], ctl.ctx);
  });
});

describe('take-over: the standby listens (snoop)', () => {
  /** One paced echo stream; a crashes at 30 ms; the client's longest wait for echoed bytes. */
  const run = (snoop: boolean, seed = 31) => {
    const w = world({
      seed,
      echoBytes: 1_000_000,
      downloadBytes: 0,
      pace: 2000,
      paceUntilUs: 3_000_000,
      echoBuffer: 65536,
      // 55 ms from the crash to the take-over (the lease and its margin): what the client sends
      // then reaches no one but a listening standby.
      a: { snoop },
      b: { snoop },
    });
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    let s: Stream | undefined;
    net.at(5_000, (now) => {
      s = w.open('echo', now);
    });
    net.at(30_000, () => crashNode(a));
    const maxGap = longestWait(net, () => s, 3_000_000);
    return { w, s: s!, maxGap, a, b, ctx: () => logsOf(a, b) };
  };

  test('bytes the client sent to the dying node are held by the standby: no wait for the client RTO', () => {
    const r = run(true);
    assert.ok(r.b.ha.snooped.bytes > 0, `the standby kept nothing it overheard: ${r.ctx()}`);
    assert.ok(r.maxGap < 75_000, `the client waited ${r.maxGap} µs: ${r.ctx()}`);
    assertStreams(r.w, [r.s], r.ctx);
    // Control: without listening, the bytes sent into the void wait for the client's RTO.
    const c = run(false);
    assert.equal(c.b.ha.snooped.frames, 0);
    assert.ok(c.maxGap >= 150_000, `control: the client waited only ${c.maxGap} µs: ${c.ctx()}`);
    assertStreams(c.w, [c.s], c.ctx);
  });
});

/** The replication link between `a` and `b` carries nothing more either way, not even a close. */
function cutReplication(a: HaSimNode, b: HaSimNode): void {
  for (const end of [a.link!, b.link!]) {
    end.send = () => {};
    end.close = () => {};
  }
}

describe('faults on the simulator: pauses, isolation, standby churn (the nemesis in miniature)', () => {
  /** A pair that listens and beacons, a paced echo stream and a paced download from 5 ms. */
  const pair = (seed: number, extra: { a?: Partial<HaSimOptions>; b?: Partial<HaSimOptions> } = {}) => {
    const w = world({
      seed,
      a: { snoop: true, ...extra.a },
      b: { snoop: true, ...extra.b },
      echoBytes: 1_500_000,
      downloadBytes: 1_500_000,
      pace: 2000,
      paceUntilUs: 8_000_000,
      echoBuffer: 65536,
      downloadBuffer: 65536,
    });
    w.net.at(5_000, (now) => {
      w.open('echo', now);
      w.open('download', now);
    });
    /** The frames each node had sent for the VIP when the other one took over from it. */
    const atTakeover = new Map<HaSimNode, number>();
    const staleBefore = new Map<HaSimNode, number>();
    for (const [n, other] of [
      [w.a, w.b],
      [w.b, w.a],
    ] as const) {
      const takeOver = n.ha.takeOver.bind(n.ha);
      n.ha.takeOver = (now, why) => {
        // Superseded earlier, n speaks again legitimately from now on.
        const was = atTakeover.get(n);
        if (was !== undefined) staleBefore.set(n, (staleBefore.get(n) ?? 0) + n.framesSent - was);
        atTakeover.delete(n);
        atTakeover.set(other, other.framesSent);
        takeOver(now, why);
      };
    }
    /** Frames `n` sent for the VIP while another node held a later epoch (must be 0: I4). */
    const stale = (n: HaSimNode) =>
      (staleBefore.get(n) ?? 0) + n.framesSent - (atTakeover.get(n) ?? n.framesSent);
    return { w, stale, ctx: () => logsOf(w.a, w.b) };
  };

  test('SIGSTOP of the active beyond the lease, new connections meanwhile: the standby takes over; the resumed node sends nothing, drops its connections silently, rejoins and takes over again later', () => {
    const { w, stale, ctx } = pair(41);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    net.at(30_000, () => a.pause());
    const late: Stream[] = [];
    // New connections to the VIP while the old active is stopped: it must not reset them.
    net.at(300_000, (now) => late.push(w.open('echo', now), w.open('download', now)));
    net.at(530_000, (now) => a.resume(now));
    // The transport redials once the link is gone: a new link, a bootstrap from b.
    net.at(700_000, (now) => linkNodes(a, b, 200, now));
    const seen: Record<string, unknown> = {};
    net.at(1_500_000, () => {
      seen.rejoined = { role: a.ha.role, synced: a.ha.mirror.synced, fences: a.ha.fences.length };
      crashNode(b);
    });
    net.run({ until: 8_000_000 });
    assert.equal(b.ha.takeovers.length, 1, ctx());
    const det = b.ha.takeovers[0].at - b.ha.takeovers[0].lastHeardAt;
    assert.ok(
      det >= 50_000 && det <= 60_000,
      `detection ${det} µs (the lease, not a longer silence): ${ctx()}`,
    );
    assert.equal(b.ha.takeovers[0].cause, 'silence');
    assert.equal(stale(a), 0, `the resumed node sent ${stale(a)} frames for the VIP: ${ctx()}`);
    assert.ok(
      a.gate.counters.leaseHeld > 0,
      `the resumed node's stack did try to send (held by the lease): ${ctx()}`,
    );
    assert.deepEqual(seen.rejoined, { role: 'standby', synced: true, fences: 1 }, ctx());
    assert.match(a.ha.fences[0].reason, /active at epoch 2/);
    assert.equal(a.ha.role, 'active', ctx());
    assert.equal(a.ha.epoch, 3, ctx());
    assertStreams(w, w.streams.values(), ctx);
    assert.equal(late.length, 2);
  });

  test('a connection opened while the active is dying is answered at the take-over, not at the client SYN retransmission (1 s)', () => {
    const run = (snoop: boolean) => {
      const { w, ctx } = pair(46);
      const { net, a, b } = w;
      if (!snoop) {
        // The same pair without listening: nobody hears the SYN sent into the void.
        (b.opts as { snoop?: boolean }).snoop = false;
      }
      linkNodes(a, b, 200, 0);
      net.at(30_000, () => crashNode(a));
      let late: Stream | undefined;
      net.at(40_000, (now) => {
        late = w.open('echo', now);
      });
      let establishedAt = -1;
      const watch = (now: number) => {
        if (late && establishedAt < 0 && late.c.tcp.state === TcpState.Established) establishedAt = now;
        if (now < 3_000_000) net.after(1000, watch);
      };
      net.at(40_000, watch);
      net.run({ until: 8_000_000 });
      return { w, establishedAt, takeoverAt: b.ha.takeovers[0]?.at ?? -1, ctx };
    };
    const r = run(true);
    assert.ok(r.takeoverAt > 0, r.ctx());
    assert.ok(
      r.establishedAt > 0 && r.establishedAt <= r.takeoverAt + 5_000,
      `connected at ${r.establishedAt} µs, the take-over at ${r.takeoverAt}: ${r.ctx()}`,
    );
    assert.match(r.ctx(), /answering 1 SYN/);
    assertStreams(r.w, r.w.streams.values(), r.ctx);
    // Control: the standby that did not hear it waits for the client's retransmission.
    const c = run(false);
    assert.ok(c.establishedAt >= 1_000_000, `control: connected at ${c.establishedAt} µs: ${c.ctx()}`);
  });

  test("the active's data link cut for 1 s (replication link up): it hands over to the standby, which hears the clients; it rejoins as standby", () => {
    const { w, stale, ctx } = pair(47);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    net.at(30_000, () => w.la.setUp(false));
    net.at(1_030_000, () => w.la.setUp(true));
    let s: Stream | undefined;
    net.at(5_100, () => {
      s = [...w.streams.values()].find((x) => x.kind === 'echo');
    });
    const maxGap = longestWait(net, () => s, 700_000);
    net.run({ until: 8_000_000 });
    assert.equal(b.ha.takeovers.length, 1, ctx());
    assert.equal(b.ha.takeovers[0].cause, 'handover', ctx());
    assert.equal(a.ha.fences.length, 1, ctx());
    assert.match(a.ha.fences[0].reason, /handing over/);
    assert.equal(stale(a), 0, ctx());
    // Three timeouts of silence on its data link (150 ms), the hand-over, a round trip.
    assert.ok(maxGap < 300_000, `the client waited ${maxGap} µs: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  /** Switchover a→b at 100 ms, b→a at 400 ms (each new active dials the old one 30 ms later). */
  const switchoverThereAndBack = (withArbiter: boolean) => {
    const arb = arbiters();
    const { w, stale, ctx } = pair(48, withArbiter ? { a: { arbiter: arb.a }, b: { arbiter: arb.b } } : {});
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    const refusals: (string | undefined)[] = [];
    net.at(100_000, (now) => {
      refusals.push(b.ha.switchover(now));
      refusals.push(a.ha.switchover(now));
      refusals.push(a.ha.switchover(now));
    });
    // The new active closes the old link at its take-over; the transport dials again.
    net.at(130_000, (now) => linkNodes(a, b, 200, now));
    net.at(400_000, (now) => refusals.push(b.ha.switchover(now)));
    net.at(430_000, (now) => linkNodes(a, b, 200, now));
    let s: Stream | undefined;
    net.at(5_100, () => {
      s = [...w.streams.values()].find((x) => x.kind === 'echo');
    });
    const maxGap = longestWait(net, () => s, 700_000);
    net.run({ until: 8_000_000 });
    assert.match(refusals[0] ?? '', /not active/, ctx());
    assert.equal(refusals[1], undefined, ctx());
    assert.match(refusals[2] ?? '', /already under way/, ctx());
    assert.equal(refusals[3], undefined, ctx());
    assert.deepEqual(
      b.ha.takeovers.map((t) => t.cause),
      ['switchover'],
      ctx(),
    );
    assert.deepEqual(
      a.ha.takeovers.map((t) => t.cause),
      ['switchover'],
      ctx(),
    );
    assert.equal(a.ha.switchovers.length, 1, ctx());
    assert.equal(b.ha.switchovers.length, 1, ctx());
    assert.equal(a.ha.fences.length + b.ha.fences.length, 0, `a switchover is no fence: ${ctx()}`);
    assert.equal(stale(a) + stale(b), 0, ctx());
    assert.equal(a.ha.role, 'active', ctx());
    assert.equal(a.ha.epoch, 3, ctx());
    assert.equal(b.ha.role, 'standby', ctx());
    assert.ok(b.ha.mirror.synced, ctx());
    if (withArbiter)
      assert.deepEqual(arb.record(), { epoch: 3, active: 'a', standby: { node: 'b', session: 2 } }, ctx());
    // Each step is one event with its fields (src/log.ts), as `takeover node` logs them.
    const events = (n: HaSimNode, name: string) =>
      n.events.filter((e) => e.event === name).map(({ at: _, level: __, ...f }) => f);
    assert.deepEqual(events(a, 'switchover'), [{ event: 'switchover', epoch: 1, handedOver: 2 }], ctx());
    assert.deepEqual(
      events(b, 'takeover').map((e) => [e.epoch, e.cause, e.connections, e.failed]),
      [[2, 'switchover', 2, 0]],
      ctx(),
    );
    assert.deepEqual(
      events(a, 'takeover').map((e) => [e.epoch, e.cause, e.connections]),
      [[3, 'switchover', 2]],
      ctx(),
    );
    assert.equal(events(a, 'fence').length + events(b, 'fence').length, 0, ctx());
    assert.ok(events(a, 'synced').length >= 1 && events(b, 'bootstrap-started').length >= 1, ctx());
    for (const sw of [...a.ha.switchovers, ...b.ha.switchovers])
      assert.ok(sw.handedAt - sw.at <= 2_000, `output held ${sw.handedAt - sw.at} µs: ${ctx()}`);
    // The paced stream moves every 1-2 ms; a switchover costs a few replication round trips
    // (and one to the store with the arbiter).
    assert.ok(maxGap <= 10_000, `the client waited ${maxGap} µs: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  };

  test('a planned switchover there and back (a rolling upgrade in miniature): each hand-over at once, no fence, nothing sent after it, the streams wait at most a round trip', () => {
    switchoverThereAndBack(false);
  });

  test('the same switchover there and back with the arbiter: each hand-over is a take-over the record allows, the record follows', () => {
    switchoverThereAndBack(true);
  });

  test('a switchover whose standby stops answering (paused for 150 ms) is given up: the active drops it, serves on, nobody takes over, the streams stay byte-exact', () => {
    const { w, stale, ctx } = pair(49);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    let refused: string | undefined = 'not asked';
    net.at(100_000, () => b.pause());
    net.at(100_500, (now) => {
      refused = a.ha.switchover(now);
    });
    net.at(250_000, (now) => b.resume(now));
    net.run({ until: 8_000_000 });
    assert.equal(refused, undefined, ctx());
    assert.ok(
      a.logs.some((l) => l.includes('switchover abandoned: the standby is gone')),
      ctx(),
    );
    assert.equal(a.ha.switchovers.length, 0, ctx());
    assert.equal(b.ha.takeovers.length, 0, ctx());
    assert.equal(a.ha.role, 'active', ctx());
    assert.equal(stale(b), 0, ctx());
    assertStreams(w, w.streams.values(), ctx);
  });

  test('a pause shorter than the lease: no take-over, the streams just wait', () => {
    const { w, ctx } = pair(42);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    net.at(30_000, () => a.pause());
    net.at(50_000, (now) => a.resume(now));
    net.run({ until: 8_000_000 });
    assert.equal(b.ha.takeovers.length, 0, ctx());
    assert.equal(a.ha.role, 'active');
    assert.equal(b.ha.mirror.synced, true, ctx());
    assertStreams(w, w.streams.values(), ctx);
  });

  test('the active, cut off in steps (the nodes deaf to each other, then its data link), must not take the gap for proof when the data link returns (seen in the nemesis: 11 frames after the take-over)', () => {
    const { w, stale, ctx } = pair(46);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    // The replication link and the nodes' frames to each other go at 30 ms (a's way out and
    // the standby's way in first, as when a host's outbound path dies); a still hears clients.
    let apart = false;
    deafTo(a, b, () => apart);
    deafTo(b, a, () => apart);
    net.at(30_000, () => {
      apart = true;
      cutReplication(a, b);
    });
    // a's data link goes 15 ms after it lost its standby (at 80 ms): it heard clients after the
    // standby's last word, but not for three heartbeats.
    net.at(95_000, () => w.la.setUp(false));
    // Clients still at work when it returns (the first streams are done by then).
    net.at(2_500_000, (now) => w.open('echo', now));
    net.at(2_530_000, () => {
      w.la.setUp(true);
      apart = false;
    });
    net.run({ until: 8_000_000 });
    assert.equal(b.ha.takeovers.length, 1, ctx());
    assert.equal(stale(a), 0, `the returning node sent ${stale(a)} frames for the VIP: ${ctx()}`);
    assert.ok(!a.logs.some((l) => l.includes('serving alone')), ctx());
    assert.equal(a.ha.fences.length, 1, ctx());
    assertStreams(w, w.streams.values(), ctx);
  });

  test('the active cut off (data and replication links) for 2.5 s: the standby takes over, the isolated node neither serves alone nor speaks when the network returns; it rejoins', () => {
    const { w, stale, ctx } = pair(43);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    net.at(30_000, () => {
      w.la.setUp(false);
      cutReplication(a, b);
    });
    net.at(2_530_000, (now) => {
      w.la.setUp(true);
      linkNodes(a, b, 200, now);
    });
    const seen: Record<string, unknown> = {};
    net.at(2_000_000, () => {
      seen.isolated = { role: a.ha.role, lease: a.ha.leaseState(net.now) };
    });
    for (let t = 100_000; t <= 8_000_000; t += 100_000) {
      const r = net.run({ until: t });
      if (process.env.DBG)
        console.log(t, r.events, r.reason, a.ha.role, a.gate.counters, a.ha.beacons, b.ha.beacons);
    }
    assert.deepEqual(
      seen.isolated,
      { role: 'active', lease: 'expired' },
      `held, not serving alone: ${ctx()}`,
    );
    assert.equal(b.ha.takeovers.length, 1, ctx());
    assert.equal(stale(a), 0, `the returning node sent ${stale(a)} frames for the VIP: ${ctx()}`);
    assert.equal(a.ha.fences.length, 1, ctx());
    assert.deepEqual(
      a.events.filter((e) => e.event === 'fence').map((e) => [e.level, e.epoch, e.dropped]),
      [['warn', 1, a.ha.fences[0].dropped]],
      ctx(),
    );
    assert.equal(a.ha.role, 'standby', ctx());
    assert.equal(a.ha.mirror.synced, true, `it rejoined: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  test('the standby cut off for 1 s: the active serves alone once the data link shows the standby gone; the standby never takes over, resyncs after', () => {
    const { w, ctx } = pair(44);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    net.at(30_000, () => {
      w.lb.setUp(false);
      cutReplication(a, b);
    });
    net.at(1_030_000, (now) => {
      w.lb.setUp(true);
      linkNodes(a, b, 200, now);
    });
    let s: Stream | undefined;
    net.at(5_100, () => {
      s = [...w.streams.values()].find((x) => x.kind === 'echo');
    });
    const maxGap = longestWait(net, () => s, 700_000);
    net.run({ until: 8_000_000 });
    assert.equal(b.ha.takeovers.length, 0, ctx());
    assert.equal(b.framesSent, 0, ctx());
    assert.equal(a.ha.role, 'active', ctx());
    assert.ok(b.ha.mirror.synced, `resynced after the cut: ${ctx()}`);
    // One timeout to drop it, three heartbeats of traffic without its beacon, a round trip.
    assert.ok(maxGap < 150_000, `the client waited ${maxGap} µs: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  test('a standby gone silent whose last beacons arrive after the active lost it (late by 80 ms): the active still proves it off the data link and serves alone, not holding for ever', () => {
    const { w, ctx } = pair(50);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    const inner = a.receive.bind(a);
    const bMac = nodeMac('b');
    a.receive = (port, frame, now) => {
      let src = 0;
      for (let i = 6; i < 12; i++) src = src * 256 + frame[i];
      if (isBeaconFrame(frame) && src === bMac) net.after(80_000, (t) => inner(port, frame, t));
      else inner(port, frame, now);
    };
    // Gone for good, its replication link left open (a host that froze).
    net.at(100_000, () => b.pause());
    let s: Stream | undefined;
    net.at(5_100, () => {
      s = [...w.streams.values()].find((x) => x.kind === 'echo');
    });
    const maxGap = longestWait(net, () => s, 700_000);
    net.run({ until: 8_000_000 });
    assert.ok(
      a.logs.some((l) => l.includes('not on the data link')),
      ctx(),
    );
    assert.equal(a.ha.role, 'active', ctx());
    // Silent 50 ms, its last beacon read 80 ms late, then traffic over three heartbeats: the
    // clients, unanswered meanwhile, send again at their RTO (200 ms).
    assert.ok(maxGap < 400_000, `the client waited ${maxGap} µs: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  test('a standby stopped on purpose (SIGTERM) says it leaves: the active serves alone at once, no hold while its link closes', () => {
    const { w, ctx } = pair(52);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    // It says it leaves, then stops answering while it winds down (60 ms: longer than the lease
    // it granted), then exits (the link closes).
    net.at(100_000, (now) => {
      b.ha.leave(now);
      b.pause();
    });
    net.at(160_000, () => crashNode(b));
    let s: Stream | undefined;
    net.at(5_100, () => {
      s = [...w.streams.values()].find((x) => x.kind === 'echo');
    });
    const maxGap = longestWait(net, () => s, 700_000);
    net.run({ until: 8_000_000 });
    assert.ok(
      a.logs.some((l) => l.includes('the standby leaves')),
      ctx(),
    );
    assert.ok(!a.logs.some((l) => l.includes('holding output')), ctx());
    assert.equal(b.ha.takeovers.length, 0, ctx());
    assert.equal(a.ha.role, 'active', ctx());
    // A round trip: no hold after it said so.
    assert.ok(maxGap <= 10_000, `the client waited ${maxGap} µs: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  test('standby churn costs clients no stall: killed (its link closes while our lease holds: serve alone at once), then a new one bootstraps while traffic flows', () => {
    const { w, ctx } = pair(45);
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    const newB = new HaSimNode({ nodeId: 'b', role: 'standby', downloadBytes: 1_500_000, snoop: true });
    net.at(100_000, () => crashNode(b));
    net.at(300_000, (now) => {
      w.hb.restart(newB);
      linkNodes(a, newB, 200, now);
    });
    let s: Stream | undefined;
    net.at(5_100, () => {
      s = [...w.streams.values()].find((x) => x.kind === 'echo');
    });
    // Until 700 ms, before the paced echo stream's end (where Nagle and a delayed ACK wait 40 ms,
    // with or without churn).
    const maxGap = longestWait(net, () => s, 700_000);
    net.run({ until: 8_000_000 });
    assert.ok(newB.ha.mirror.synced, ctx());
    assert.ok(
      a.logs.some((l) => l.includes('while our lease held')),
      ctx(),
    );
    // The paced stream moves every 1-2 ms; a standby lost or joining may cost a round trip.
    assert.ok(maxGap <= 20_000, `the client waited ${maxGap} µs: ${ctx()}`);
    assertStreams(w, w.streams.values(), ctx);
  });

  /** Each node's own path to one store (the paths fail apart). */
  const arbiters = () => {
    const store = new ArbiterStore();
    const a = new MemoryArbiter({ store, name: 'a', timeoutMs: 50 });
    const b = new MemoryArbiter({ store, name: 'b', timeoutMs: 50 });
    const record = () => (store.value === undefined ? undefined : decodeRecord(store.value));
    return { a, b, store, record };
  };

  /** Frames from the other node's own MAC (its beacons, its data frames) are dropped while `cut()`. */
  const deafTo = (n: HaSimNode, other: HaSimNode, cut: () => boolean) => {
    const inner = n.receive.bind(n);
    const mac = nodeMac(other.opts.nodeId);
    n.receive = (port, frame, now) => {
      let src = 0;
      for (let i = 6; i < 12; i++) src = src * 256 + frame[i];
      if (cut() && src === mac) return;
      inner(port, frame, now);
    };
  };

  test('the two nodes cannot hear each other, both reach the clients: alone each would serve (a split brain); with the arbiter exactly one does, the streams stay byte-exact, the other rejoins', () => {
    const run = (withArbiter: boolean) => {
      const arb = arbiters();
      const { w, stale, ctx } = pair(48, withArbiter ? { a: { arbiter: arb.a }, b: { arbiter: arb.b } } : {});
      const { net, a, b } = w;
      linkNodes(a, b, 200, 0);
      let split = false;
      deafTo(a, b, () => split);
      deafTo(b, a, () => split);
      net.at(30_000, () => {
        split = true;
        cutReplication(a, b);
      });
      net.at(1_030_000, (now) => {
        split = false;
        linkNodes(a, b, 200, now);
      });
      // Both nodes entitled to send at one instant: a split brain.
      let both = 0;
      const check = (now: number) => {
        if (a.ha.sendUntil() > now && b.ha.sendUntil() > now) both++;
        if (now < 1_500_000) net.after(500, check);
      };
      net.at(30_000, check);
      net.run({ until: 8_000_000 });
      return { w, both, stale, ctx, arb };
    };
    const control = run(false);
    assert.ok(control.both > 0, `control: both nodes served at once: ${control.ctx()}`);
    const r = run(true);
    const { a, b } = r.w;
    assert.equal(r.both, 0, `two senders: ${r.ctx()}`);
    assert.equal(r.stale(a), 0, r.ctx());
    assert.equal(r.stale(b), 0, r.ctx());
    // Whichever won, the other lost at the arbiter and rejoined as a synced standby.
    const [winner, loser] = b.ha.takeovers.length > 0 ? [b, a] : [a, b];
    assert.equal(winner.ha.role, 'active', r.ctx());
    assert.equal(loser.ha.role, 'standby', r.ctx());
    assert.ok(loser.ha.mirror.synced, `the loser rejoined: ${r.ctx()}`);
    assert.ok(loser.ha.arbiter.lost >= 1, r.ctx());
    const rec = r.arb.record();
    assert.ok(rec !== undefined && typeof rec !== 'string', String(rec));
    assert.equal(rec.active, winner.opts.nodeId);
    assert.equal(rec.epoch, winner.ha.epoch);
    assert.deepEqual(rec.standby, { node: loser.opts.nodeId, session: winner.ha.replicator!.session });
    assertStreams(r.w, r.w.streams.values(), r.ctx);
  });

  test('with the arbiter, kill -9 twice (the restarted node joins, is registered, takes over at epoch 3): byte-exact, the record follows every step', () => {
    const arb = arbiters();
    const { w, stale, ctx } = pair(49, { a: { arbiter: arb.a }, b: { arbiter: arb.b } });
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    const newA = new HaSimNode({
      nodeId: 'a',
      role: 'active',
      downloadBytes: 1_500_000,
      snoop: true,
      arbiter: arb.a,
    });
    const seen: Record<string, unknown> = {};
    net.at(20_000, () => {
      seen.start = arb.record();
      crashNode(a);
    });
    net.at(400_000, (now) => {
      seen.tookOver = arb.record();
      w.ha.restart(newA);
      linkNodes(newA, b, 200, now);
    });
    net.at(900_000, () => {
      seen.registered = arb.record();
      crashNode(b);
    });
    net.run({ until: 8_000_000 });
    assert.deepEqual(seen.start, { epoch: 1, active: 'a', standby: { node: 'b', session: 1 } }, ctx());
    assert.deepEqual(seen.tookOver, { epoch: 2, active: 'b', standby: null }, ctx());
    assert.deepEqual(seen.registered, { epoch: 2, active: 'b', standby: { node: 'a', session: 1 } }, ctx());
    assert.deepEqual(arb.record(), { epoch: 3, active: 'a', standby: null }, ctx());
    assert.equal(newA.ha.role, 'active');
    assert.equal(newA.ha.epoch, 3);
    const det = b.ha.takeovers[0].at - b.ha.takeovers[0].lastHeardAt;
    // The lease, the margin and one round trip to the store (1 ms here).
    assert.ok(det <= 60_000, `detection ${det} µs: ${ctx()}`);
    assert.equal(stale(b), 0, ctx());
    assertStreams(w, w.streams.values(), ctx);
  });

  test('with the arbiter, a host going down link by link (data link, then the replication link, then the process): the active, deaf to its clients, leaves the record to the standby that hears them', () => {
    const arb = arbiters();
    const { w, stale, ctx } = pair(51, { a: { arbiter: arb.a }, b: { arbiter: arb.b } });
    const { net, a, b } = w;
    linkNodes(a, b, 200, 0);
    net.at(30_000, () => w.la.setUp(false));
    net.at(60_000, () => cutReplication(a, b));
    // No FIN, no closed link: the host is gone.
    net.at(120_000, () => a.handle.crash());
    net.run({ until: 8_000_000 });
    assert.equal(b.ha.takeovers.length, 1, ctx());
    assert.ok(
      !a.logs.some((l) => l.includes('may no longer take over')),
      `the deaf active never withdrew the standby: ${ctx()}`,
    );
    assert.deepEqual(arb.record(), { epoch: 2, active: 'b', standby: null }, ctx());
    assert.equal(stale(a), 0, ctx());
    assertStreams(w, w.streams.values(), ctx);
  });

  test('with the arbiter unreachable nothing changes hands: the standby of a dead active waits for the store, then takes over; an active that lost its standby holds until it can drop it', () => {
    const run = (kill: 'a' | 'b') => {
      const arb = arbiters();
      const { w, ctx } = pair(50, { a: { arbiter: arb.a }, b: { arbiter: arb.b } });
      const { net, a, b } = w;
      linkNodes(a, b, 200, 0);
      const seen: Record<string, unknown> = {};
      // The store hangs for the survivor while the other node dies.
      net.at(20_000, () => {
        (kill === 'a' ? arb.b : arb.a).fault = 'hang';
        crashNode(kill === 'a' ? a : b);
      });
      net.at(300_000, () => {
        seen.during = {
          aRole: a.ha.role,
          aLease: a.ha.leaseState(net.now),
          bRole: b.ha.role,
          unavailable: (kill === 'a' ? b : a).ha.arbiter.unavailable >= 2,
        };
        (kill === 'a' ? arb.b : arb.a).fault = 'none';
      });
      net.run({ until: 8_000_000 });
      return { w, ctx, seen, arb };
    };
    const dead = run('a');
    const { b } = dead.w;
    assert.deepEqual(
      dead.seen.during,
      { aRole: 'active', aLease: 'expired', bRole: 'standby', unavailable: true },
      dead.ctx(),
    );
    assert.equal(b.ha.takeovers.length, 1, dead.ctx());
    assert.ok(b.ha.takeovers[0].at >= 300_000, dead.ctx());
    assert.deepEqual(dead.arb.record(), { epoch: 2, active: 'b', standby: null }, dead.ctx());
    assertStreams(dead.w, dead.w.streams.values(), dead.ctx);

    const lost = run('b');
    assert.deepEqual(
      lost.seen.during,
      { aRole: 'active', aLease: 'expired', bRole: 'standby', unavailable: true },
      `held, not serving alone: ${lost.ctx()}`,
    );
    assert.equal(lost.w.a.ha.leaseState(8_000_000), 'alone', lost.ctx());
    assert.deepEqual(lost.arb.record(), { epoch: 1, active: 'a', standby: null }, lost.ctx());
    assertStreams(lost.w, lost.w.streams.values(), lost.ctx);
  });
});
