/**
 * A `takeover relay` pair on the simulated network (issue 13's simulator acceptance): the real
 * `Relay` (src/relay/relay.ts) on the real `Runtime` and `HaNode`, wired by the same glue as
 * `takeover relay` (ha/bind.ts), with virtual time in place of Node's (`SimClock`). Kernel-free
 * clients (sim-client.ts) talk to the VIP; the relay's server legs leave from the floating source
 * address to a simulated backend serving echo, download and request/response (ha/sim.ts
 * `serveConnection`); the active relay crashes anywhere, the killed one comes back as standby and
 * the other may crash too; links lose, duplicate and reorder. `checkRelayScenario` asserts what
 * users are promised: both legs byte-exact, no RST to a client or to the server, and no frame
 * from a node that was not active.
 *
 * Node's own event loop still runs the stream machinery under the sockets (process.nextTick,
 * promise jobs): after every simulated event in which relay code ran, the driver lets Node's
 * queues drain (one `setImmediate`) before the next event, as the real loop would.
 */
import { type Clock, type ClockTimer, netApi, Runtime } from '../api/index.ts';
import { bindHa } from '../ha/bind.ts';
import { HaNode, type HaNodeOptions } from '../ha/node.ts';
import {
  crashNode,
  DOWNLOAD_PORT,
  ECHO_PORT,
  linkNodes,
  type PipeHost,
  RR_PORT,
  SIM_BEACON_KEY,
  type SimPipeEnd,
  serveConnection,
  VIP_MAC,
} from '../ha/sim.ts';
import { type ClientKind, SimClientConn } from '../ha/sim-client.ts';
import type { LinkDevice } from '../link/device.ts';
import { GatedDevice } from '../link/gate.ts';
import { LearningSwitch, Network, type NodeHandle, type SimNode } from '../link/sim/index.ts';
import type { RelayConfig } from '../relay/config.ts';
import { Relay } from '../relay/relay.ts';
import { cidrFromString, ipFromString } from '../stack/ip.ts';
import { StackNode } from '../stack/sim-node.ts';
import type { StackConnection } from '../stack/stack.ts';
import { TcpState } from '../tcp/state.ts';
import { macFromString } from '../wire/address.ts';
import { isWireError } from '../wire/error.ts';
import { parseFrame } from '../wire/frame.ts';
import { TCP_RST } from '../wire/tcp.ts';

export const RELAY_VIP4 = '198.18.0.100';
export const RELAY_VIP6 = 'fd00::100';
/** The floating source address of the server legs. */
export const RELAY_SOURCE4 = '198.18.0.101';
export const BACKEND4 = '198.18.0.20';
/** Each frontend's port on the VIP, and the backend port it relays to (the same). */
const PORTS = [ECHO_PORT, DOWNLOAD_PORT, RR_PORT];

interface SimTimer {
  cancelled: boolean;
}

/** Virtual time for one node's Runtime: timers are events of the network, dead with the node. */
class SimClock implements Clock {
  /** A callback ran: the driver lets Node drain its nextTick and promise queues. */
  ran = false;
  constructor(
    private readonly h: NodeHandle,
    private readonly owner: SimNode,
  ) {}

  now(): number {
    return this.h.now;
  }

  setTimeout(cb: () => void, ms: number): ClockTimer {
    // As Node: a delay below 1 ms is 1 ms.
    return this.at(this.h.now + Math.max(1, ms) * 1000, cb);
  }

  setImmediate(cb: () => void): ClockTimer {
    return this.at(this.h.now, cb);
  }

  clearTimeout(t: ClockTimer | undefined): void {
    if (t) (t as SimTimer).cancelled = true;
  }

  clearImmediate(t: ClockTimer | undefined): void {
    this.clearTimeout(t);
  }

  private at(time: number, cb: () => void): ClockTimer {
    const t: SimTimer = { cancelled: false };
    this.h.net.at(time, () => {
      // A crashed process runs nothing more (its handle may carry a restarted one by now).
      if (t.cancelled || !this.h.alive || this.h.node !== this.owner) return;
      this.ran = true;
      cb();
    });
    return t;
  }
}

export interface RelaySimNodeOptions {
  nodeId: string;
  role: 'active' | 'standby';
  relay: RelayConfig;
  ha?: Partial<HaNodeOptions>;
}

/** One relay process: Runtime + HaNode + Relay on a simulated data link. */
export class RelaySimNode implements SimNode, PipeHost {
  handle!: NodeHandle;
  ha!: HaNode;
  rt!: Runtime;
  relay!: Relay;
  clock!: SimClock;
  gate!: GatedDevice;
  link: SimPipeEnd | undefined;
  /** The relay listens (its servers' 'listening' comes through Node's queues). */
  listening = false;
  /** Frames sent while this node was not active (must stay 0: I4). */
  framesWhileNotActive = 0;
  readonly logs: string[] = [];
  private input: ((frames: Uint8Array[]) => void) | undefined;

  constructor(readonly opts: RelaySimNodeOptions) {}

  attach(h: NodeHandle): void {
    this.handle = h;
    this.clock = new SimClock(h, this);
    const wire: LinkDevice = {
      mtu: 1500,
      send: (f) => {
        if (this.ha.role !== 'active') this.framesWhileNotActive++;
        h.send(0, f);
      },
      flush: () => {},
      onReceive: (handler) => {
        this.input = handler;
      },
      close: async () => {},
    };
    this.gate = new GatedDevice(wire, () => h.now);
    const cidr = (s: string) => cidrFromString(s)!;
    this.rt = new Runtime(
      this.gate,
      {
        mac: VIP_MAC,
        addresses: [cidr(`${RELAY_VIP4}/24`), cidr(`${RELAY_VIP6}/64`), cidr(`${RELAY_SOURCE4}/24`)],
      },
      h.rng,
      this.clock,
    );
    const log = (line: string) =>
      this.logs.push(`${(h.now / 1000).toFixed(1)} ms ${this.opts.nodeId}: ${line}`);
    const nonce = new Uint8Array(8);
    for (let i = 0; i < 8; i++) nonce[i] = h.rng.nextU32() & 0xff;
    const rt = this.rt;
    this.ha = new HaNode(
      { nodeId: this.opts.nodeId, role: this.opts.role, beaconKey: SIM_BEACON_KEY, nonce, ...this.opts.ha },
      rt.stack,
      {
        setMuted: (m) => this.gate.setMuted(m),
        setLease: (until) => this.gate.setLease(until),
        sendBeacon: (f) => h.send(0, f),
        wake: () => rt.kick(),
        restored: (conns) => rt.adoptRestored(conns.map((x) => x.c)),
        log,
      },
      h.now,
    );
    bindHa(rt, this.ha, this.gate, this.opts.nodeId);
    rt.isolation.log = log;
    const ha = this.ha;
    this.relay = new Relay(netApi(rt), this.opts.relay, { log, serving: () => ha.role === 'active' });
    void this.relay.start().then(() => {
      this.listening = true;
    });
    this.clock.ran = true;
  }

  /** Running: not crashed, not replaced by a restarted process, and listening. */
  get up(): boolean {
    return this.handle.alive && this.handle.node === this && this.listening;
  }

  receive(_port: number, frame: Uint8Array): void {
    this.clock.ran = true;
    this.input?.([frame]);
  }

  deliver(now: number, f: (now: number) => void): void {
    this.clock.ran = true;
    f(now);
  }

  turn(): void {
    this.rt.kick();
  }
}

export interface RelayScenario {
  seed: number;
  echo: number;
  downloads: number;
  rr: number;
  echoBytes: number;
  downloadBytes: number;
  requests: number;
  /** The first crash of the active (then it restarts as standby); undefined: no crash. */
  crashAtUs: number | undefined;
  /** After the restarted node synced, the new active crashes too. */
  secondCrash: boolean;
  loss: number;
  /** The clients reach the VIP over IPv6 (the server legs stay IPv4: the relay translates). */
  v6: boolean;
  /**
   * The clients' receive buffer (bytes; default the engine's): a small one makes a slow reader,
   * so the relay holds bytes for it after the server has finished and gone.
   */
  clientRecvBuffer?: number;
}

/** A relay config for the simulated topology: one frontend and one backend server per service. */
export function simRelayConfig(): RelayConfig {
  const ip = (s: string) => ipFromString(s)!;
  return {
    source: [ip(RELAY_SOURCE4)],
    frontends: PORTS.map((port) => ({
      name: `fe${port}`,
      bind: [
        { host: ip(RELAY_VIP4), port },
        { host: ip(RELAY_VIP6), port },
      ],
      backend: `be${port}`,
      maxconn: 10_000,
    })),
    backends: PORTS.map((port) => ({
      name: `be${port}`,
      servers: [{ name: 's1', host: ip(BACKEND4), port, weight: 1, backup: false }],
      balance: 'roundrobin' as const,
      retries: 2,
      proxyProtocol: 'off' as const,
      health: undefined,
    })),
    timeouts: { connectMs: 5000, clientMs: 0, serverMs: 0 },
  };
}

/** How long a killed relay process takes to come back (as standby). */
const RESTART_AFTER_US = 20_000;

/** Counts the RSTs that reach `node`, and says when and for which port the first few came. */
function countRsts(node: StackNode): { n: number; seen: string[] } {
  const counter = { n: 0, seen: [] as string[] };
  node.onFrame = (frame, now) => {
    const f = parseFrame(frame);
    if (isWireError(f) || !f.tcp || (f.tcp.flags & TCP_RST) === 0) return;
    counter.n++;
    if (counter.seen.length < 4)
      counter.seen.push(`${(now / 1000).toFixed(1)} ms :${f.tcp.srcPort} -> :${f.tcp.dstPort}`);
  };
  return counter;
}

export async function runRelayScenario(s: RelayScenario) {
  const net = new Network({ seed: s.seed });
  const sw = net.attach(new LearningSwitch({ ports: 4 }), 'sw');
  const client = new StackNode({
    mac: macFromString('02:00:00:00:00:01')!,
    addresses: [cidrFromString('198.18.0.1/24')!, cidrFromString('fd00::1/64')!],
  });
  const backend = new StackNode({
    mac: macFromString('02:00:00:00:00:20')!,
    addresses: [cidrFromString(`${BACKEND4}/24`)!],
  });
  const cfg = simRelayConfig();
  const a = new RelaySimNode({ nodeId: 'a', role: 'active', relay: cfg });
  const b = new RelaySimNode({ nodeId: 'b', role: 'standby', relay: cfg });
  const hc = net.attach(client, 'client');
  const hs = net.attach(backend, 'server');
  const handles = { a: net.attach(a, 'a'), b: net.attach(b, 'b') };
  const link = { latencyUs: 100, bandwidthBps: 1e9, loss: s.loss, duplicate: s.loss / 2, reorder: s.loss };
  net.connect(hc, 0, sw, 0, link);
  net.connect(handles.a, 0, sw, 1, link);
  net.connect(handles.b, 0, sw, 2, link);
  net.connect(hs, 0, sw, 3, link);
  const rstsAtClient = countRsts(client);
  const rstsAtServer = countRsts(backend);
  for (const port of PORTS) backend.stack.listen(port, { onAccept: () => {} });
  const serve = (c: StackConnection) => {
    if (serveConnection(c, s.downloadBytes)) backend.stack.touch(c);
  };
  backend.onChange = (c) => {
    if (!c.removed) serve(c);
  };
  const serverConns = new Set<StackConnection>();
  backend.onAccept = (c) => {
    serverConns.add(c);
    serve(c);
  };

  const conns = new Map<StackConnection, SimClientConn>();
  client.onChange = (c) => {
    const cc = conns.get(c);
    if (cc?.drive()) client.stack.touch(c);
  };

  const nodes: RelaySimNode[] = [a, b];
  /** The current process of each node. */
  const current = { a, b };
  const vip = ipFromString(s.v6 ? RELAY_VIP6 : RELAY_VIP4)!;
  net.at(5_000, (now) => {
    const open = (kind: ClientKind, port: number) => {
      const c = client.stack.connect(
        vip,
        port,
        now,
        s.clientRecvBuffer ? { tcp: { recvBufferSize: s.clientRecvBuffer } } : {},
      );
      const cc = new SimClientConn(kind, c, s);
      conns.set(c, cc);
      if (cc.drive()) client.stack.touch(c);
    };
    for (let i = 0; i < s.echo; i++) open('echo', ECHO_PORT);
    for (let i = 0; i < s.downloads; i++) open('download', DOWNLOAD_PORT);
    for (let i = 0; i < s.rr; i++) open('rr', RR_PORT);
    hc.wake();
  });
  // The replication transport redials a closed link (takeover's every 200 ms; here every 20 ms,
  // so that more interleavings fit in a run).
  const redial = (now: number) => {
    const x = current.a;
    const y = current.b;
    const linked = x.link && !x.link.closed && y.link && !y.link.closed && x.link.peer === y.link;
    if (x.up && y.up && !linked) linkNodes(x, y, 200, now);
    net.after(20_000, redial);
  };
  net.at(0, redial);

  let crashes = 0;
  const wantCrashes = s.crashAtUs === undefined ? 0 : s.secondCrash ? 2 : 1;
  // A crash of the active waits for a synced standby (without one no take-over is possible, by
  // design), checked every millisecond for at most 10 s; the killed process comes back 20 ms
  // later with its configured role (a restarted `takeover relay`).
  const crashWhenSynced = (now: number, deadline: number) => {
    const names = ['a', 'b'] as const;
    const active = names.find((n) => current[n].up && current[n].ha.role === 'active');
    const other = active && current[active === 'a' ? 'b' : 'a'];
    if (!(active && other?.up && other.ha.mirror.synced)) {
      if (now < deadline) net.after(1000, (t) => crashWhenSynced(t, deadline));
      return;
    }
    crashNode(current[active]);
    crashes++;
    net.after(RESTART_AFTER_US, () => {
      const back = new RelaySimNode({
        nodeId: active,
        role: active === 'a' ? 'active' : 'standby',
        relay: cfg,
      });
      handles[active].restart(back);
      current[active] = back;
      nodes.push(back);
      if (crashes < wantCrashes) net.after(5_000, (t) => crashWhenSynced(t, t + 10_000_000));
    });
  };
  if (s.crashAtUs !== undefined) net.at(s.crashAtUs, (t) => crashWhenSynced(t, t + 10_000_000));

  // Event by event, letting Node's queues drain after relay code ran; in windows of 1 s of
  // virtual time until every client connection has closed and every server connection finished
  // (and the crashes happened: a FIN lost after a SYN was retransmitted waits for a 3 s RTO, RFC
  // 6298 5.7), then 2 s more for late frames (a RST would come then). At most 120 s.
  const maxEvents = 5_000_000;
  let events = 0;
  let quietSince = Number.POSITIVE_INFINITY;
  const drain = () => new Promise<void>((r) => setImmediate(r));
  for (let t = 1_000_000; t <= 120_000_000 && events < maxEvents; t += 1_000_000) {
    for (;;) {
      const r = net.run({ until: t, maxEvents: 1 });
      events += r.events;
      if (r.events === 0 || events >= maxEvents) break;
      let ran = false;
      for (const n of nodes)
        if (n.clock.ran) {
          n.clock.ran = false;
          ran = true;
        }
      if (ran) await drain();
    }
    const done =
      conns.size > 0 &&
      [...conns.values()].every((cc) => cc.closed) &&
      [...serverConns].every((c) => c.tcp.state === TcpState.Closed || c.tcp.state === TcpState.TimeWait);
    if (done && crashes >= wantCrashes) quietSince = Math.min(quietSince, t);
    else quietSince = Number.POSITIVE_INFINITY;
    if (t >= quietSince + 2_000_000) break;
  }
  return {
    net,
    nodes,
    client,
    backend,
    conns: [...conns.values()],
    serverConns: [...serverConns],
    rstsAtClient: rstsAtClient.n,
    rstsAtServer: rstsAtServer.n,
    rstsSeen: [...rstsAtClient.seen, ...rstsAtServer.seen],
    crashes,
    events,
  };
}

/** Checks a run: every stream exact and closed, no RST either side, no frame from a non-active. */
export function relayScenarioFailures(s: RelayScenario, r: Awaited<ReturnType<typeof runRelayScenario>>) {
  const out: string[] = [];
  for (const cc of r.conns) {
    const what = `${cc.kind} :${cc.c.localPort}`;
    if (cc.c.tcp.error !== undefined) out.push(`${what}: error ${cc.c.tcp.error}`);
    if (cc.bad !== -1) out.push(`${what}: corrupt at ${cc.bad}`);
    if (cc.kind === 'echo' && cc.got !== s.echoBytes) out.push(`${what}: got ${cc.got} of ${s.echoBytes}`);
    if (cc.kind === 'download' && cc.got !== s.downloadBytes)
      out.push(`${what}: got ${cc.got} of ${s.downloadBytes}`);
    if (cc.kind === 'rr' && cc.answered !== s.requests)
      out.push(`${what}: ${cc.answered} of ${s.requests} answered`);
    if (!cc.closed) out.push(`${what}: not finished`);
  }
  if (r.rstsAtClient > 0) out.push(`${r.rstsAtClient} RST reached the client`);
  if (r.rstsAtServer > 0) out.push(`${r.rstsAtServer} RST reached the server`);
  if (r.rstsSeen.length > 0) out.push(`RSTs: ${r.rstsSeen.join(', ')}`);
  const open = r.serverConns.filter(
    (c) => c.tcp.state !== TcpState.Closed && c.tcp.state !== TcpState.TimeWait,
  );
  if (open.length > 0) out.push(`${open.length} server connection(s) left open`);
  const stray = r.nodes.reduce((n, x) => n + x.framesWhileNotActive, 0);
  if (stray > 0) out.push(`${stray} frame(s) from a node that was not active`);
  const wanted = s.crashAtUs === undefined ? 0 : s.secondCrash ? 2 : 1;
  if (r.crashes !== wanted) out.push(`${r.crashes} of ${wanted} crash(es) happened`);
  return out;
}

/** The scenario of one seed: a few connections of each kind, sometimes a crowd. */
export function randomRelayScenario(seed: number): RelayScenario {
  const rng = new Network({ seed: seed + 2_000_000 }).rng;
  const crowd = rng.int(0, 24) === 0;
  const s: RelayScenario = {
    seed,
    echo: crowd ? rng.int(10, 40) : rng.int(0, 3),
    downloads: crowd ? rng.int(0, 10) : rng.int(0, 2),
    rr: crowd ? rng.int(10, 40) : rng.int(0, 3),
    echoBytes: crowd ? rng.int(1, 5_000) : rng.int(1, 40_000),
    downloadBytes: crowd ? rng.int(1, 10_000) : rng.int(1, 60_000),
    requests: crowd ? rng.int(1, 3) : rng.int(1, 8),
    crashAtUs: rng.int(0, 9) === 0 ? undefined : rng.int(4_000, 30_000),
    secondCrash: rng.int(0, 2) === 0,
    loss: rng.int(0, 2) === 0 ? 0 : rng.int(0, 30) / 1000,
    v6: rng.int(0, 3) === 0,
  };
  if (s.echo + s.downloads + s.rr === 0) s.echo = 1;
  return s;
}
