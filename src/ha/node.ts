/**
 * One node of an active/standby pair (DESIGN.md "Replication", "Take-over"): roles, epochs,
 * heartbeats and the failure detector, the replication link's messages, and the take-over itself
 * (restore every mirrored connection, kick-start it, claim the VIP).
 *
 * Pure like the layers below: time comes in as `now` (µs), the replication link is an interface
 * (a kernel TCP socket inside a SecureChannel in production, a simulated pipe in tests), and the
 * driver calls `afterTurn` at the end of each turn of its event loop, `poll` at `pollAt`.
 *
 * Roles:
 * - `active`: owns the VIP; replicates to a standby when one is attached (sync: output waits for
 *   it), serves alone (degraded) when none is.
 * - `standby`: silent on the data link; mirrors; takes over once `synced` (bootstrap applied) when
 *   the active is gone: its link closed without a DROP (its kernel closes the socket when the
 *   process dies) and `timeoutUs` passed since it was last heard (or `closeGraceUs` since the
 *   close, if shorter); or nothing was heard for `silentTimeoutUs` with the link still open (a host that
 *   lost power or a cut cable sends no FIN). An active that is merely slow (a long turn, a GC
 *   pause) keeps its link open, so the short timeout never fires on it.
 * - `fenced`: saw a higher epoch while active: stops sending at once (I4) and stays silent.
 *
 * Configured `active` starts as `candidate` for `startupWaitUs` (default 3 s, ample for the
 * replication link to come up): if the peer answers as active it joins as standby (no preemption
 * after a restart); if the peer answers as standby or nobody answers, it becomes active.
 */
import type { NetStack, StackConnection } from '../stack/stack.ts';
import { TcpState } from '../tcp/state.ts';
import { isWireError } from '../wire/error.ts';
import { parseFrame } from '../wire/frame.ts';
import { TCP_RST, TCP_SYN } from '../wire/tcp.ts';
import { decodeBatch, encodeBatch } from './log.ts';
import { Mirror } from './mirror.ts';
import { Replicator } from './replicator.ts';

export const MSG_ROLE = 1;
export const MSG_BATCH = 2;
export const MSG_ACK = 3;
export const MSG_HEARTBEAT = 4;
/** The active drops this standby (it is alive: the standby must not take over; it resyncs). */
export const MSG_DROP = 5;

export type Role = 'candidate' | 'active' | 'standby' | 'fenced';

/** The replication link as the node sees it: authenticated, ordered messages. */
export interface PeerLink {
  send(type: number, epoch: number, payload: Uint8Array): void;
  close(): void;
}

export interface HaNodeOptions {
  nodeId: string;
  role: 'active' | 'standby';
  mode?: 'sync' | 'async';
  heartbeatUs?: number;
  timeoutUs?: number;
  /** Silence tolerated while the link stays open (default 10 × timeoutUs). */
  silentTimeoutUs?: number;
  /**
   * After the link closes without a DROP, how long before taking over (default 0: a closed link
   * is the dead process's kernel speaking, since a live active that lets its standby go says
   * DROP first); the take-over comes at `timeoutUs` of silence at the latest.
   */
  closeGraceUs?: number;
  /** How long a configured active waits to hear from its peer before it takes the VIP alone. */
  startupWaitUs?: number;
  /** Added to the timestamp clock at take-over beyond the time since the last batch (ms). */
  tsMarginMs?: number;
  /**
   * GARP/NA at take-over and after these delays (µs), then every `announceRefreshUs`. Within
   * `RESUME_WATCH_US` of a take-over, each one also kick-starts again the restored connections
   * whose peer has not been heard since: frames the dead node had queued may have reached the
   * switch after our first claim and pointed it back at the dead port.
   */
  announceAfterUs?: number[];
  announceRefreshUs?: number;
  /** With no standby attached: keep accepting new connections ('serve', default) or refuse them. */
  degraded?: 'serve' | 'refuse';
}

/** What the node asks of its driver. */
export interface HaDriver {
  /** Let frames out of the data link (and in): only while active. */
  setMuted(muted: boolean): void;
  /** Run a stack turn soon (limits were raised; connections were restored). */
  wake(): void;
  /** Connections restored by a take-over, for the application. */
  restored(conns: { c: StackConnection; checkpoint: unknown }[], now: number): void;
  log(line: string): void;
  /** A real clock (µs) to measure how long the restore takes; the simulator has none. */
  clock?(): number;
}

export interface TakeoverRecord {
  /** When the active was last heard from and when the take-over ran (our clock, µs). */
  lastHeardAt: number;
  at: number;
  /** What told us the active was gone: its link closed (its process died) or its silence. */
  cause: 'link closed' | 'silence';
  epoch: number;
  connections: number;
  failed: number;
  /** Wall time the restore of every connection took (µs; 0 without a driver clock). */
  restoreUs: number;
  /**
   * The stall as this node sees it: of the restored connections that had output unacknowledged
   * at the take-over, how many had their peer acknowledge more within `RESUME_WATCH_US`, and the
   * longest time from the active's last word to that (µs; undefined until one does). Connections
   * with nothing to deliver are not counted: their peer's next move is up to its application.
   */
  resumed: number;
  stallUs: number | undefined;
}

/** One restored connection as the take-over watches it. */
interface ResumeWatch {
  c: StackConnection;
  /** Acknowledged offset at the take-over; `moved` once it advanced (or nothing was owed). */
  acked0: number;
  /** Output not yet acknowledged at the take-over, and the part of it already sent. */
  owed: number;
  inFlight: number;
  moved: boolean;
  /** Where it stood at the last announcement (for the re-kick). */
  acked: number;
  received: number;
  heardAt: number;
  /** Its peer answered since the take-over: the path to it works. */
  proven: boolean;
}

/**
 * A node's own MAC (locally administered, 02:…, from its id): the source of its frames when the
 * standby listens (README "Standby listens"), so that no switch learns the shared virtual MAC.
 */
export function nodeMac(nodeId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < nodeId.length; i++) h = Math.imul(h ^ nodeId.charCodeAt(i), 0x01000193) >>> 0;
  return 0x02_00_00_00_00_00 + h;
}

/** How long a new active absorbs stray segments of connections the old node closed (µs). */
const GONE_QUIET_US = 10_000_000;
/** How long after a take-over restored connections are watched for their first move. */
export const RESUME_WATCH_US = 10_000_000;
/** A restored connection whose output waits longer than this (µs) for its peer is logged. */
const SLOW_RESUME_US = 300_000;
/** How often (µs) the watch looks at the restored connections. */
const RESUME_CHECK_US = 1000;

const ENC = new TextEncoder();
const DEC = new TextDecoder();

function f64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, v);
  return b;
}

function readF64(b: Uint8Array): number | undefined {
  if (b.length !== 8) return undefined;
  return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0);
}

export class HaNode {
  role: Role;
  epoch = 0;
  readonly mirror = new Mirror();
  replicator: Replicator | undefined;
  readonly takeovers: TakeoverRecord[] = [];
  /** Data-link frames a standby overheard (`snoop`), and the peer bytes it kept from them. */
  readonly snooped = { frames: 0, bytes: 0 };
  /** Batches or messages refused (forged content, out of order, stale epoch) with the reason. */
  readonly rejects: string[] = [];
  private link: PeerLink | undefined;
  /** The role the peer last announced. */
  peerRole: Role | undefined;
  private peerReady = false;
  private lastHeard: number;
  private lastSent: number;
  private startedAt: number;
  private announceAt: number[] = [];
  /** Active with a lost standby: when it stops holding and serves alone. */
  private degradeAt = Number.POSITIVE_INFINITY;
  private linkLostAt = Number.POSITIVE_INFINITY;
  /**
   * Active that had a standby and lost it: the only kind of active another node can have taken
   * over from (a standby must have synced from it), so the only kind a claim fences.
   */
  private orphaned = false;
  /** The last `now` any call gave (messages go out inside calls that have one). */
  private clock: number;
  private readonly o: Required<HaNodeOptions>;
  /** The connections restored by the last take-over, watched for `RESUME_WATCH_US`. */
  private watch: ResumeWatch[] = [];
  /** Those of `watch` that owed output at the take-over and have not had it acknowledged yet. */
  private waiting: ResumeWatch[] = [];
  private watchUntil = 0;
  private watchCheckedAt = 0;
  private lastAnnounceAt = 0;

  constructor(
    opts: HaNodeOptions,
    private readonly stack: NetStack,
    private readonly driver: HaDriver,
    now: number,
  ) {
    this.o = {
      mode: 'sync',
      heartbeatUs: 20_000,
      timeoutUs: 100_000,
      silentTimeoutUs: 10 * (opts.timeoutUs ?? 100_000),
      closeGraceUs: 0,
      startupWaitUs: 3_000_000,
      tsMarginMs: 1000,
      announceAfterUs: [10_000, 50_000, 200_000, 1_000_000],
      announceRefreshUs: 10_000_000,
      degraded: 'serve',
      ...opts,
    };
    this.role = opts.role === 'active' ? 'candidate' : 'standby';
    this.lastHeard = now;
    this.lastSent = now;
    this.startedAt = now;
    this.clock = now;
    stack.onAddressClaim = (_a, t) => this.addressClaimed(t);
    driver.setMuted(true);
  }

  get mode(): 'sync' | 'async' {
    return this.o.mode;
  }

  /** The standby is attached and holding (for status). */
  get standbyAttached(): boolean {
    return this.role === 'active' && this.peerReady;
  }

  get linkUp(): boolean {
    return this.link !== undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Link events

  /** An authenticated link to the peer is up (either side may have dialled). */
  linkOpened(link: PeerLink, now: number): void {
    if (this.link) this.link.close();
    this.link = link;
    this.peerRole = undefined;
    this.peerReady = false;
    this.lastHeard = now;
    this.clock = now;
    this.sendRole();
  }

  linkClosed(link: PeerLink, now: number): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.linkLostAt = now;
    this.peerRole = undefined;
    if (this.role === 'active' && this.peerReady) {
      this.peerReady = false;
      // Keep holding for one more detection timeout before serving alone: if the standby is in
      // fact taking over, its claim of the VIP reaches us first and we fence (see addressClaimed)
      // instead of sending what it does not hold.
      this.degradeAt = now + this.o.timeoutUs;
      this.orphaned = true;
      this.driver.log(`standby gone: holding output ${this.o.timeoutUs / 1000} ms, then serving alone`);
    }
  }

  /**
   * Another node claimed one of our addresses (an ARP or NA from elsewhere, seen on the data
   * link: the second path of DESIGN.md "Detect"). An active that lost its standby takes it as
   * that standby's take-over and fences. Any other active ignores it: nobody can have taken over
   * from it, and a node that starts and claims too early loses on epochs once the replication
   * link is up (it hears the higher epoch and fences).
   */
  addressClaimed(_now: number): void {
    if (this.role !== 'active' || this.peerReady) return;
    if (!this.orphaned) return;
    this.fence('another node claims the VIP on the data link');
  }

  /** A message from the peer. A bad one closes the link (the peer reconnects and starts over). */
  message(type: number, epoch: number, payload: Uint8Array, now: number): void {
    if (!this.link) return;
    this.lastHeard = now;
    this.clock = now;
    if (epoch > this.epoch && this.role === 'active') {
      this.fence(`the peer speaks for epoch ${epoch}, ours is ${this.epoch}`);
      return;
    }
    switch (type) {
      case MSG_ROLE:
        this.onRole(payload, epoch, now);
        return;
      case MSG_BATCH:
        this.onBatch(payload, epoch, now);
        return;
      case MSG_ACK: {
        const lsn = readF64(payload);
        if (lsn === undefined || this.role !== 'active') {
          this.refuse('an ACK that is not one');
          return;
        }
        this.replicator?.ack(lsn);
        this.driver.wake();
        return;
      }
      case MSG_HEARTBEAT:
        return;
      case MSG_DROP:
        // The active is alive and let us go: our mirror is stale until a new bootstrap.
        if (this.role === 'standby') {
          this.unsync();
          this.driver.log('the active dropped us: resyncing');
        }
        return;
      default:
        this.refuse(`unknown message type ${type}`);
    }
  }

  private refuse(reason: string): void {
    this.rejects.push(reason);
    this.driver.log(`replication: refused ${reason}; closing the link`);
    const l = this.link;
    if (!l) return;
    // An active tells its standby it is alive (no take-over); a standby's mirror may now be
    // behind the active's: it is stale until a new bootstrap.
    if (this.role === 'active') l.send(MSG_DROP, this.epoch, ENC.encode('refused'));
    if (this.role === 'standby') this.unsync();
    this.linkClosed(l, this.clock);
    l.close();
  }

  private unsync(): void {
    this.mirror.synced = false;
    this.mirror.clear();
  }

  private sendRole(): void {
    const body = { nodeId: this.o.nodeId, role: this.role, ready: this.mirror.synced };
    this.send(MSG_ROLE, ENC.encode(JSON.stringify(body)));
  }

  private send(type: number, payload: Uint8Array): void {
    this.link?.send(type, this.epoch, payload);
    this.lastSent = this.clock;
  }

  private onRole(payload: Uint8Array, epoch: number, now: number): void {
    let body: { role?: unknown; nodeId?: unknown };
    try {
      body = JSON.parse(DEC.decode(payload));
    } catch {
      this.refuse('a role message that is not JSON');
      return;
    }
    const role = body.role;
    if (role !== 'active' && role !== 'standby' && role !== 'candidate' && role !== 'fenced') {
      this.refuse('a role message without a role');
      return;
    }
    this.peerRole = role;
    if (role === 'active') {
      if (this.role === 'candidate' || this.role === 'standby') {
        // Join as standby (no preemption): take the active's epoch.
        this.role = 'standby';
        this.epoch = Math.max(this.epoch, epoch);
        this.mirror.synced = false;
        this.driver.setMuted(true);
        this.sendRole();
      } else if (this.role === 'active' && epoch === this.epoch) {
        // Two actives with one epoch: the smaller node id keeps it.
        if (String(body.nodeId) < this.o.nodeId)
          this.fence(`active peer ${String(body.nodeId)} at our epoch`);
      }
      return;
    }
    if (role === 'candidate' && this.role === 'candidate') {
      // Both configured active and starting: the smaller node id takes the VIP, the other waits
      // as standby (it will hear the winner's role).
      if (this.o.nodeId < String(body.nodeId)) this.becomeActive(now, false);
      else {
        this.role = 'standby';
        this.sendRole();
      }
      return;
    }
    if (role === 'standby') {
      if (this.role === 'candidate') this.becomeActive(now, false);
      if (this.role === 'active' && role === 'standby' && !this.peerReady) {
        this.peerReady = true;
        this.orphaned = false;
        this.stack.acceptingNew = true;
        const b = this.replicator!.bootstrap(now);
        this.sendBatch(b);
        this.driver.log(`standby attached: bootstrap of ${b.records.length} records (lsn ${b.lsn})`);
      }
    }
  }

  private sendBatch(b: Parameters<typeof encodeBatch>[0]): void {
    const bytes = encodeBatch(b);
    if (this.replicator) this.replicator.counters.bytes += bytes.length;
    this.send(MSG_BATCH, bytes);
  }

  private onBatch(payload: Uint8Array, epoch: number, now: number): void {
    if (this.role !== 'standby') {
      this.refuse('a batch while not standby');
      return;
    }
    if (epoch < this.epoch) {
      this.refuse(`a batch of epoch ${epoch} below ours (${this.epoch})`);
      return;
    }
    this.epoch = epoch;
    const b = decodeBatch(payload);
    if (typeof b === 'string') {
      this.refuse(b);
      return;
    }
    const err = this.mirror.apply(b, now);
    if (err) {
      this.refuse(err);
      return;
    }
    this.send(MSG_ACK, f64(b.lsn));
  }

  // -------------------------------------------------------------------------------------------
  // Driver calls

  /**
   * A frame the data link delivered to this node while it was muted. A synced standby keeps the
   * data peers send on mirrored connections past what the active replicated (DESIGN.md
   * deviation, see README "Standby listens"): at a take-over the new active then holds what the
   * dead node received but never acknowledged, and what peers sent while it was dying, so
   * nobody waits for a retransmission timeout. A frame that does not parse, or is not a data
   * segment of a mirrored connection, is ignored.
   */
  snoop(frame: Uint8Array): void {
    if (this.role !== 'standby' || !this.mirror.synced || this.mirror.conns.size === 0) return;
    const f = parseFrame(frame);
    if (isWireError(f) || !f.tcp || f.tcp.payload.length === 0) return;
    const t = f.tcp;
    if ((t.flags & (TCP_SYN | TCP_RST)) !== 0) return;
    const ip = f.ipv4 ?? f.ipv6;
    if (!ip) return;
    const m = this.mirror.find(ip.dst, t.dstPort, ip.src, t.srcPort);
    if (!m) return;
    this.snooped.frames++;
    this.snooped.bytes += m.snoop(t.seq, t.payload);
  }

  /** End of a driver turn: the active ships what the turn did as one batch. */
  afterTurn(now: number): void {
    this.clock = now;
    if (this.watch.length > 0) this.watchResume(now);
    if (this.role !== 'active' || !this.replicator) return;
    const b = this.replicator.batch(now);
    if (b && this.link && this.peerReady) this.sendBatch(b);
  }

  /** Silence after which the peer counts as dead: short once its link has closed. */
  /**
   * When the active counts as dead: `silentTimeoutUs` after it was last heard while its link is
   * open; `closeGraceUs` after the link closed (its process died and its kernel closed the
   * socket: a live active that lets its standby go says DROP first), but never before
   * `timeoutUs` of silence unless `closeGraceUs` allows it.
   */
  private deadAt(): number {
    if (this.link) return this.lastHeard + this.o.silentTimeoutUs;
    return Math.min(this.lastHeard + this.o.timeoutUs, this.linkLostAt + this.o.closeGraceUs);
  }

  pollAt(): number {
    let t = this.link ? this.lastSent + this.o.heartbeatUs : Number.POSITIVE_INFINITY;
    if (this.role === 'standby' && this.mirror.synced) t = Math.min(t, this.deadAt());
    if (this.role === 'active' && this.peerReady) t = Math.min(t, this.lastHeard + this.o.silentTimeoutUs);
    if (this.role === 'candidate') t = Math.min(t, this.startedAt + this.o.startupWaitUs);
    t = Math.min(t, this.degradeAt);
    if (this.announceAt.length > 0) t = Math.min(t, this.announceAt[0]);
    return t;
  }

  poll(now: number): void {
    this.clock = now;
    if (this.role === 'candidate' && now >= this.startedAt + this.o.startupWaitUs)
      this.becomeActive(now, false);
    if (this.role === 'standby' && this.mirror.synced && now >= this.deadAt()) this.takeOver(now);
    if (this.role === 'active' && this.peerReady && now >= this.lastHeard + this.o.silentTimeoutUs) {
      this.driver.log(`standby silent for ${((now - this.lastHeard) / 1000).toFixed(0)} ms: dropping it`);
      const l = this.link;
      if (l) {
        l.send(MSG_DROP, this.epoch, ENC.encode('silent'));
        this.linkClosed(l, now);
        l.close();
      }
    }
    if (now >= this.degradeAt) {
      this.degradeAt = Number.POSITIVE_INFINITY;
      if (this.role === 'active' && !this.peerReady) {
        this.replicator?.detach();
        this.stack.acceptingNew = this.o.degraded === 'serve';
        this.driver.log(`serving alone (degraded) at epoch ${this.epoch}`);
        this.driver.wake();
      }
    }
    // The same sums as pollAt's: `now - a >= d` can miss `now >= a + d` by a rounding.
    if (this.link && now >= this.lastSent + this.o.heartbeatUs) this.send(MSG_HEARTBEAT, f64(now));
    while (this.announceAt.length > 0 && this.announceAt[0] <= now) {
      this.announceAt.shift();
      if (this.role === 'active') {
        this.stack.announce();
        if (this.announceAt.length === 0) this.announceAt.push(now + this.o.announceRefreshUs);
        this.rekick(now, now - this.lastAnnounceAt);
        this.lastAnnounceAt = now;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Roles

  private becomeActive(now: number, takeover: boolean): void {
    if (!takeover) this.epoch = Math.max(this.epoch, 0) + 1;
    this.role = 'active';
    this.orphaned = false;
    this.degradeAt = Number.POSITIVE_INFINITY;
    this.stack.acceptingNew = this.o.degraded === 'serve';
    this.replicator = new Replicator(this.stack, this.o.mode);
    this.driver.setMuted(false);
    this.stack.announce();
    this.lastAnnounceAt = now;
    this.announceAt = this.o.announceAfterUs.map((d) => now + d);
    this.driver.log(`active at epoch ${this.epoch}${takeover ? ' (take-over)' : ''}`);
    this.sendRole();
    this.driver.wake();
  }

  /** Step 2-6 of DESIGN.md "Take-over": epoch+1, restore, kick-start, claim the VIP, resume the app. */
  takeOver(now: number): void {
    const lastHeard = this.lastHeard;
    const cause = !this.link && now >= this.linkLostAt + this.o.closeGraceUs ? 'link closed' : 'silence';
    const t0 = this.driver.clock?.() ?? 0;
    this.epoch++;
    const { restored, failed } = this.mirror.restoreAll(now, this.o.tsMarginMs);
    for (const f of failed) this.driver.log(`take-over: ${f}`);
    const conns: { c: StackConnection; checkpoint: unknown }[] = [];
    for (const r of restored) {
      try {
        const mac = r.mirror.state.nextHopMac;
        if (typeof mac === 'number') this.stack.seedNeighbor(r.tuple.remote, mac, now);
        const c = this.stack.adopt(
          r.tuple.local,
          r.tuple.localPort,
          r.tuple.remote,
          r.tuple.remotePort,
          r.tcp,
        );
        r.tcp.kickStart(now);
        c.restored = { checkpoint: r.mirror.checkpoint?.value, skipWrite: r.mirror.skipWrite() };
        conns.push({ c, checkpoint: r.mirror.checkpoint?.value });
      } catch (e) {
        failed.push((e as Error).message);
      }
    }
    // Connections the old node closed cleanly: their peers' stray segments (a last ACK that
    // reached us late, or overheard) are absorbed, as the old node would have, not reset.
    for (const g of this.mirror.gone.values())
      if (now - g.at < GONE_QUIET_US)
        this.stack.quietTuple(
          g.tuple.local,
          g.tuple.localPort,
          g.tuple.remote,
          g.tuple.remotePort,
          now + GONE_QUIET_US,
        );
    this.mirror.clear();
    this.mirror.synced = false;
    if (this.link) {
      const l = this.link;
      this.link = undefined;
      l.close();
    }
    this.peerReady = false;
    this.becomeActive(now, true);
    this.takeovers.push({
      lastHeardAt: lastHeard,
      at: now,
      cause,
      epoch: this.epoch,
      connections: conns.length,
      failed: failed.length,
      restoreUs: (this.driver.clock?.() ?? 0) - t0,
      resumed: 0,
      stallUs: undefined,
    });
    this.watch = conns.map(({ c }) => {
      const acked = c.tcp.acknowledged;
      const received = c.tcp.receivedPosition;
      const heardAt = c.tcp.lastReceivedAt;
      const owed = c.tcp.writePosition - acked;
      const snap = c.tcp.snapshot(now, false);
      const inFlight = Math.max(0, snap.sndMax - snap.sndUna);
      return { c, acked0: acked, owed, inFlight, moved: owed === 0, acked, received, heardAt, proven: false };
    });
    this.waiting = this.watch.filter((w) => !w.moved);
    this.watchUntil = now + RESUME_WATCH_US;
    this.watchCheckedAt = now;
    this.driver.log(
      `take-over: ${conns.length} connection(s) restored, ${failed.length} failed, ${((now - lastHeard) / 1000).toFixed(0)} ms after the active was last heard (${cause})`,
    );
    this.driver.restored(conns, now);
  }

  /**
   * At an announcement: kick-starts again each restored connection that made no progress since
   * the last one (neither direction advanced) while it has bytes to deliver or its peer has not
   * answered once since the take-over. Frames the dead node had queued may reach the switch after
   * our first claim and point it back at the dead port; a stream then waits for an RTO that may
   * be the peer's, with its back-off. An idle connection whose peer answered is left alone, and
   * so is one whose smoothed RTT is longer than the time since the last announcement.
   */
  private rekick(now: number, sinceUs: number): void {
    if (this.watch.length === 0 || now > this.watchUntil) return;
    let n = 0;
    const seen: string[] = [];
    for (const w of this.watch) {
      const t = w.c.tcp;
      const heard = t.lastReceivedAt !== w.heardAt;
      if (heard) w.proven = true;
      const progressed = t.acknowledged !== w.acked || t.receivedPosition !== w.received;
      w.acked = t.acknowledged;
      w.received = t.receivedPosition;
      w.heardAt = t.lastReceivedAt;
      if (progressed || (w.proven && t.writePosition === t.acknowledged)) continue;
      // Nothing to kick: its peer owes it nothing more (kickStart leaves these alone).
      if (t.state === TcpState.TimeWait || t.state === TcpState.Closed) continue;
      if ((t.stats.srttUs ?? 0) * 2 > sinceUs) continue;
      t.kickStart(now);
      this.stack.touch(w.c);
      if (n++ < 3)
        seen.push(`${t.state}, ${t.writePosition - t.acknowledged} owed${w.proven ? '' : ', peer silent'}`);
    }
    if (n > 0) {
      this.driver.log(
        `take-over: ${n} restored connection(s) made no progress: kick-started again (${seen.join('; ')}${n > 3 ? '; …' : ''})`,
      );
      this.driver.wake();
    }
  }

  /** Notes restored connections whose peer acknowledged more (see TakeoverRecord.stallUs). */
  private watchResume(now: number): void {
    if (now < this.watchCheckedAt + RESUME_CHECK_US) return;
    this.watchCheckedAt = now;
    const rec = this.takeovers[this.takeovers.length - 1];
    if (!rec || now > this.watchUntil) {
      const stuck = this.waiting;
      if (rec && stuck.length > 0) {
        const states = stuck
          .slice(0, 5)
          .map(
            (w) =>
              `${w.c.tcp.state} ${w.c.tcp.writePosition - w.c.tcp.acknowledged} owed, window ${w.c.tcp.stats.sndWnd}`,
          );
        this.driver.log(
          `take-over: ${stuck.length} restored connection(s) still wait for their peer to acknowledge output (${states.join('; ')})`,
        );
      }
      this.watch = [];
      this.waiting = [];
      return;
    }
    if (this.waiting.length === 0) return;
    let moved = 0;
    let late = 0;
    let example = '';
    const still: ResumeWatch[] = [];
    for (const w of this.waiting) {
      if (w.c.tcp.acknowledged === w.acked0) {
        still.push(w);
        continue;
      }
      w.moved = true;
      moved++;
      rec.resumed++;
      rec.stallUs = Math.max(rec.stallUs ?? 0, now - rec.lastHeardAt);
      if (now - rec.lastHeardAt > SLOW_RESUME_US && late++ === 0)
        example = `${w.c.tcp.state}, ${w.owed} owed and ${w.inFlight} in flight at the take-over, srtt ${((w.c.tcp.stats.srttUs ?? 0) / 1000).toFixed(1)} ms`;
    }
    if (late > 0)
      this.driver.log(
        `take-over: ${late} connection(s) had their output acknowledged only ${((now - rec.lastHeardAt) / 1000).toFixed(0)} ms after the active's last word (e.g. ${example})`,
      );
    this.waiting = still;
    if (still.length === 0 && moved > 0)
      this.driver.log(
        `take-over: every restored connection owed output had it acknowledged, the last ${((rec.stallUs ?? 0) / 1000).toFixed(1)} ms after the active's last word`,
      );
  }

  private fence(reason: string): void {
    this.role = 'fenced';
    this.announceAt = [];
    this.driver.setMuted(true);
    this.driver.log(`fenced: ${reason}; silent from now on`);
    const l = this.link;
    if (l) {
      this.link = undefined;
      l.close();
    }
  }
}
