/**
 * One node of an active/standby pair (docs/ARCHITECTURE.md §4-§6):
 * roles, epochs, the lease on the right to send, heartbeats on both paths and the failure
 * detector, the replication link's messages, and the take-over itself (restore every mirrored
 * connection, kick-start it, claim the VIP).
 *
 * Pure like the layers below: time comes in as `now` (µs, one monotonic clock per process), the
 * replication link is an interface (a kernel TCP socket inside a SecureChannel in production, a
 * simulated pipe in tests), frames of the data link come in through `beacon`/`snoop`/`heard`,
 * and the driver calls `afterTurn` at the end of each turn of its event loop, `poll` at `pollAt`.
 *
 * The lease (I4 without waiting for evidence). An active may emit a frame for the VIP only
 * while `sendUntil()` lies ahead on its clock; the driver enforces it on the output path (the
 * gate, and the kernel fence when there is one). With a synced standby the lease is granted by
 * it: every message the active sends carries the active's clock (a heartbeat's payload, a
 * batch's `at`), the standby answers at once with that value echoed (a heartbeat reply, the
 * batch's ACK, a beacon reply) and promises not to take over until `timeoutUs + leaseMarginUs`
 * after its answer; the active, on the echo `e`, holds the lease until `e + timeoutUs`. Since
 * `e` was read before the standby answered, the active's lease ends before the standby's
 * promise does, whatever the delays, with `leaseMarginUs` for the clocks' drift and the frames
 * still in the kernel. A node that wakes from a pause finds its lease expired before its first
 * frame; nothing leaves until a grant renews it or it learns it was superseded.
 * Without a standby that could take over (none attached, or one still catching up) the active
 * grants itself the lease: it serves alone (degraded).
 *
 * Roles:
 * - `candidate`: a configured active starting: for `startupWaitUs` (default 3 s) it waits to hear
 *   from its peer; if the peer is active it joins as standby (no preemption after a restart),
 *   else it becomes active.
 * - `active`: owns the VIP; replicates to a standby when one is attached (sync: output waits for
 *   it); serves alone when none is. It loses its standby when the link closes (the standby's
 *   process died: while our lease holds, the standby has not taken over, so we serve alone at
 *   once) or when the standby is silent on the replication link for `timeoutUs` (we say DROP and
 *   then serve alone as soon as the standby is known unable to take over: its beacon says it
 *   dropped its mirror, or the data link is proven to work (`dataLinkProof`) while the standby is
 *   not on it, or it claims the VIP and we fence).
 * - `standby`: silent on the data link; mirrors; takes over once synced when the active is
 *   silent on both paths and the lease it granted has expired plus the margin, and, with
 *   `dataLinkProof`, when either the active's process is known dead (its link closed) or we heard
 *   the data link after its last word (an isolated standby does not take over).
 * A node that hears a higher epoch (replication link or beacon) while active is superseded: it
 * drops its connections silently, and rejoins as standby (fenced, then bootstrapped again).
 *
 * With an arbiter (`HaDriver.arbitrate`, docs/ARCHITECTURE.md §7), each change of who may be
 * active is also a compare-and-swap of the pair's record, and the verdict decides: a candidate
 * becomes active only by writing a new epoch (`start`), the active names its synced standby
 * (`register`) and withdraws it before serving alone (`drop`, whatever the loss), a standby
 * takes over only by swapping that entitlement for the next epoch (`takeover`). Of two nodes
 * that cannot hear each other exactly one wins; the other fences or drops its mirror.
 */
import type { LogEvent } from '../log.ts';
import { connKey, type NetStack, type StackConnection } from '../stack/stack.ts';
import { toHex } from '../wire/bytes.ts';
import { isWireError } from '../wire/error.ts';
import { parseFrame } from '../wire/frame.ts';
import { TCP_ACK, TCP_RST, TCP_SYN } from '../wire/tcp.ts';
import type { ArbiterIntent, Verdict } from './arbiter.ts';
import { type Beacon, decodeBeacon, encodeBeacon } from './beacon.ts';
import { decodeBatch, encodeBatch } from './log.ts';
import { Mirror } from './mirror.ts';
import type { SideChannel } from './pulse.ts';
import { Replicator } from './replicator.ts';
import { ResumeWatcher } from './resume.ts';
import { SWITCHOVER_NOT_YET } from './switchover.ts';

export const MSG_ROLE = 1;

/** A peer role that is known not to be the active's (undefined: not heard yet). */
function notActive(role: string | undefined): boolean {
  return role === 'standby' || role === 'candidate' || role === 'fenced';
}
export const MSG_BATCH = 2;
export const MSG_ACK = 3;
export const MSG_HEARTBEAT = 4;
/** The active drops this standby (it is alive: the standby must not take over; it resyncs). */
export const MSG_DROP = 5;
/** The standby's view of the data link: how long since it heard clients, and the active's beacon. */
export const MSG_DATALINK = 6;
/** The active, cut off from its data link, hands over: it is silent already; take over now. */
export const MSG_HANDOVER = 7;
/**
 * A standby that stops on purpose (SIGTERM: an upgrade, a restart) says so first: it will not
 * take over, so the active serves alone at once instead of holding output until it knows.
 */
export const MSG_LEAVE = 8;

/** `fenced` is passed through on the way back to standby (kept for status and logs). */
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
  /** Heartbeats on the replication link and beacons on the data link, each this often. */
  heartbeatUs?: number;
  /**
   * The lease a standby grants (the active may send until this long after the clock value it
   * sent), and the silence after which a node counts its peer as gone (default 50 ms).
   */
  timeoutUs?: number;
  /** What a standby waits beyond the lease it granted: clock drift, frames still in a kernel. */
  leaseMarginUs?: number;
  /** How long a configured active waits to hear from its peer before it takes the VIP alone. */
  startupWaitUs?: number;
  /** Added to the timestamp clock at take-over beyond the time since the last batch (ms). */
  tsMarginMs?: number;
  /**
   * GARP/NA at take-over and after these delays (µs), then every `announceRefreshUs`. Within
   * `RESUME_WATCH_US` (resume.ts) of a take-over, each one also kick-starts again the restored connections
   * whose peer has not been heard since: frames the dead node had queued may have reached the
   * switch after our first claim and pointed it back at the dead port.
   */
  announceAfterUs?: number[];
  announceRefreshUs?: number;
  /** With no standby attached: keep accepting new connections ('serve', default) or refuse them. */
  degraded?: 'serve' | 'refuse';
  /** Key of the beacons on the data link (`beaconKey(psk)`); without it no beacons are sent. */
  beaconKey?: Uint8Array;
  /** More keys whose beacons are accepted (a key rotation in progress: README "Key rotation"). */
  beaconKeysAccepted?: Uint8Array[];
  /** 8 random bytes naming this process's life in its beacons (replay protection). */
  nonce?: Uint8Array;
  /**
   * Act on silence only with evidence that the data link works: a standby takes over a silent
   * active (link still open) only after hearing a frame on the data link since the active's last
   * word, and an active serves alone after losing a synced standby silently only once frames
   * span 3 heartbeats on the data link with no beacon from that standby. A node cut off from
   * the network then neither takes over nor serves alone, and sends nothing when it returns.
   * Needs frames to reach a muted standby (`snoop`); default false.
   */
  dataLinkProof?: boolean;
  /**
   * Heartbeats and grants on a thread of their own (src/ha/pulse.ts): their lease, promises and
   * last word count with this node's own, so a busy main thread neither loses its lease nor
   * looks dead, while a stopped or dead process falls silent at once.
   */
  side?: SideChannel;
}

/** What the node asks of its driver. */
export interface HaDriver {
  /** Let frames out of the data link (and in): only while active. */
  setMuted(muted: boolean): void;
  /**
   * The lease: frames for the VIP may leave only while the driver's clock is before `until`
   * (+Infinity: serving alone; -Infinity: not active). Called on every change.
   */
  setLease?(until: number): void;
  /** A beacon frame for the data link: it passes whatever the mute and the lease say. */
  sendBeacon?(frame: Uint8Array): void;
  /** Run a stack turn soon (limits were raised; connections were restored). */
  wake(): void;
  /** The standby acknowledged a batch sent `latencyUs` ago (metrics). */
  committed?(latencyUs: number): void;
  /** Connections restored by a take-over, for the application. */
  restored(conns: { c: StackConnection; checkpoint: unknown }[], now: number): void;
  /** A sentence, with an event's name and fields for the operator's key events (src/log.ts). */
  log(line: string, fields?: LogEvent): void;
  /**
   * A real clock (µs): the one `now` is read from, to measure how long the restore takes and to
   * count what follows it from when it ended. The simulator has none (its clock stands still).
   */
  clock?(): number;
  /**
   * Runs `intent` against the arbiter (src/ha/arbiter.ts: `arbitrate` on etcd, `arbitrateNow`
   * in the simulator) and hands the verdict, with the same intent object, to `arbiterVerdict`.
   * With it, the node becomes active, lets its standby take over, serves alone and takes over
   * only as the arbiter's record allows (README "Partitions"); without it, it decides alone.
   */
  arbitrate?(intent: ArbiterIntent): void;
}

export interface TakeoverRecord {
  /** When the active was last heard from and when the take-over ran (our clock, µs). */
  lastHeardAt: number;
  at: number;
  cause: TakeoverCause;
  epoch: number;
  connections: number;
  failed: number;
  /** Wall time the restore of every connection took (µs; 0 without a driver clock). */
  restoreUs: number;
  /**
   * The stall as this node sees it: of the restored connections that had output unacknowledged
   * at the take-over, how many had their peer acknowledge more within `RESUME_WATCH_US` (resume.ts), and the
   * longest time from the active's last word to that (µs; undefined until one does). Connections
   * with nothing to deliver are not counted: their peer's next move is up to its application.
   */
  resumed: number;
  stallUs: number | undefined;
  /**
   * Each resumed connection's wait, in the order they resumed: from the active's last word to its
   * peer's first new acknowledgment (µs; at most `RESUME_KEPT`, the dashboard's timeline).
   */
  resumeUs: number[];
}

/**
 * What made a standby take over: the active's link closed (its process died), its silence on
 * both paths (either only once the lease we granted it had expired), its hand-over when it lost
 * its data link, or a planned switchover (`HaNode.switchover`).
 */
export type TakeoverCause = 'link closed' | 'silence' | 'handover' | 'switchover';

/** A planned switchover this node (the active) carried out (`HaNode.switchover`). */
export interface SwitchoverRecord {
  /** When it was asked, and when the standby held everything and we handed over (our clock, µs). */
  at: number;
  handedAt: number;
  /** The epoch we handed over (the standby serves at the next one). */
  epoch: number;
  connections: number;
}

/** A time this node stopped being active because another superseded it. */
export interface FenceRecord {
  at: number;
  epoch: number;
  reason: string;
  /** Connections dropped without a word (the new active owns them). */
  dropped: number;
}

/** The peer as its last beacon described it. */
interface PeerBeacon {
  role: Beacon['role'];
  epoch: number;
  session: number;
  attached: boolean;
  synced: boolean;
  at: number;
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
/** Timeouts a standby that is slow but alive (its side channel answers) may lag before it is dropped. */
const SLOW_STANDBY_TIMEOUTS = 5;
/** Timeouts an active hears nothing on its data link, while the standby hears clients, before it hands over. */
const HANDOVER_TIMEOUTS = 3;
/** How long a switchover may wait for the standby to hold everything before it is given up. */
const SWITCHOVER_TIMEOUTS = 2;
/**
 * While switching over, output is held and input still flows (and is replicated); if the
 * standby has not acknowledged everything after this long (input keeps coming), input is
 * muted too: the listening standby overhears it and restores it at the take-over.
 */
const SWITCHOVER_QUIESCE_US = 5_000;
/** Heartbeats of data-link traffic without the lost standby's beacon that prove it is off it. */
const PROOF_HEARTBEATS = 3;
/**
 * Once that proof is in, heartbeats to wait (beaconing) before serving alone: the last call for a
 * peer that became active meanwhile, whose beacon we would hear within one.
 */
const PROOF_LAST_CALL_HEARTBEATS = 1.5;
/** After the arbiter did not answer (or said wait), how long (µs) before the node asks again. */
const ARBITER_RETRY_US = 100_000;
/** Sender nonces (process lives) the beacon replay memory holds. */
const BEACON_NONCES = 64;
/** Overheard SYNs a standby keeps, and how old (µs) one may be to be answered at a take-over. */
const OVERHEARD_SYNS = 4096;
const OVERHEARD_SYN_MAX_AGE_US = 1_500_000;

const INF = Number.POSITIVE_INFINITY;
/** Node ids as the config allows them (src/cli/config.ts). */
const NODE_ID = /^[A-Za-z0-9_.-]{1,32}$/;
const ENC = new TextEncoder();
const DEC = new TextDecoder();

function f64(...v: number[]): Uint8Array {
  const b = new Uint8Array(8 * v.length);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < v.length; i++) dv.setFloat64(8 * i, v[i]);
  return b;
}

/** The 8-byte values of a payload of `n` of them (undefined for another length). */
function readF64s(b: Uint8Array, ...lengths: number[]): number[] | undefined {
  const n = b.length / 8;
  if (!lengths.includes(n)) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(dv.getFloat64(8 * i));
  return out;
}

export class HaNode {
  role: Role;
  epoch = 0;
  readonly mirror = new Mirror();
  replicator: Replicator | undefined;
  readonly takeovers: TakeoverRecord[] = [];
  readonly fences: FenceRecord[] = [];
  readonly switchovers: SwitchoverRecord[] = [];
  /** A switchover under way: output held until the standby holds everything, or `until`. */
  private switching: { at: number; until: number; epoch: number; muted: boolean } | undefined;
  /** Data-link frames a standby overheard (`snoop`), and the peer bytes it kept from them. */
  readonly snooped = { frames: 0, bytes: 0 };
  /** Beacons sent, accepted, and refused (forged, replayed, malformed), and lease grants. */
  readonly beacons = { sent: 0, heard: 0, refused: 0, grants: 0, leaseLapses: 0 };
  /** Batches or messages refused (forged content, out of order, stale epoch) with the reason. */
  readonly rejects: string[] = [];
  /** The arbiter's verdicts by kind, and the last intent with its outcome (for status). */
  readonly arbiter = {
    asked: 0,
    won: 0,
    lost: 0,
    waits: 0,
    unavailable: 0,
    last: undefined as { intent: ArbiterIntent['kind']; verdict: Verdict['kind']; why: string } | undefined,
  };
  /** The intent in flight (one at a time: each compares with what the previous one wrote). */
  private arbiterPending: ArbiterIntent | undefined;
  /** Not before this (our clock) is the arbiter asked again (after `unavailable` or `wait`). */
  private arbiterRetryAt = -INF;
  /** A candidate that wants the record (start); from when it may take it from a previous life. */
  private wantsStart = false;
  private stealAt = INF;
  /**
   * A standby found the active gone (`claimTakeover`) and asks the arbiter; what made it (the
   * take-over's cause once the arbiter agrees).
   */
  private takeoverWanted = false;
  private takeoverCause: 'handover' | 'switchover' | undefined;
  /** A standby asked to take over and told to drop its mirror meanwhile: dropped after the verdict. */
  private unsyncDeferred = false;
  /** Stopping on purpose (`leave`): never take over from here on. */
  private leaving = false;
  /** The replication session the arbiter's record entitles (as far as we know; -1: none). */
  private registered = -1;
  /** The peer's node id, from its ROLE. */
  private peerId: string | undefined;
  private link: PeerLink | undefined;
  /** The role the peer last announced. */
  peerRole: Role | undefined;
  private peerReady = false;
  /** The peer was last heard on the replication link, and on either path (our clock). */
  private lastHeardLink: number;
  private lastHeard: number;
  private lastSent: number;
  private startedAt: number;
  private announceAt: number[] = [];
  /** Our link was closed from the other end (not by us). */
  private peerClosedLink = false;
  /**
   * Active that had a standby and lost it: the only kind of active another node can have taken
   * over from (a standby must have synced from it), so the only kind a claim fences.
   */
  private orphaned = false;
  /** The last `now` any call gave (messages go out inside calls that have one). */
  private clock: number;
  private readonly o: Required<Omit<HaNodeOptions, 'beaconKey' | 'side' | 'beaconKeysAccepted'>> & {
    beaconKey?: Uint8Array;
    beaconKeysAccepted?: Uint8Array[];
    side?: SideChannel;
  };
  /** The connections restored by the last take-over, watched for their first move. */
  private readonly resume: ResumeWatcher;
  private lastAnnounceAt = 0;

  // The lease, active side.
  /** Granted by the standby: we may send until then (our clock). */
  private leaseUntil = -INF;
  /** Serving without a standby that could take over: the lease is ours to give. */
  private selfLease = false;
  /** What the driver was last told (to tell it only changes). */
  private leaseTold = Number.NaN;
  /** A synced standby was lost (link closed or silent) while our lease did not vouch for it. */
  private lossAt = INF;
  /** Data-link frames heard since `lossAt`: the first and the last (our clock). */
  private rxSinceLoss = { first: INF, last: -INF, provedAt: INF };
  /** The lease the peer grants (its ROLE says; at most ours). */
  private peerLeaseUs: number;
  /** Standbys bootstrapped so far (batches and beacons carry it). */
  private session = 0;

  // The lease, standby side.
  /** We promised the active not to take over before this (plus the margin). */
  private grantedUntil = -INF;
  /** The session our mirror belongs to. */
  private mirrorSession = -1;

  // Beacons.
  private lastBeaconAt = -INF;
  /** The last data-link frame heard from anyone but us (our clock). */
  private lastDataRx = -INF;
  private peerBeacon: PeerBeacon | undefined;
  /** Per sender nonce (hex), the newest `sentAt` accepted. */
  private readonly beaconSeen = new Map<string, { last: number; at: number }>();
  /** The last data-link frame heard that was not a beacon (clients, routers). */
  private lastClientRx = -INF;
  /** Standby: when the active's beacon was last heard. */
  private lastActiveBeaconAt = -INF;
  /** Active: the standby's last MSG_DATALINK report. */
  private peerView: { clientsAgeUs: number; beaconAgeUs: number; at: number } | undefined;
  /** Clients' SYNs overheard while standby, oldest first (see `snoop`). */
  private readonly overheardSyns = new Map<string, { frame: Uint8Array; at: number }>();
  private readonly mac: number;

  constructor(
    opts: HaNodeOptions,
    private readonly stack: NetStack,
    private readonly driver: HaDriver,
    now: number,
  ) {
    this.o = {
      mode: 'sync',
      heartbeatUs: 10_000,
      timeoutUs: 50_000,
      leaseMarginUs: 5_000,
      startupWaitUs: 3_000_000,
      tsMarginMs: 1000,
      announceAfterUs: [10_000, 50_000, 200_000, 1_000_000],
      announceRefreshUs: 10_000_000,
      degraded: 'serve',
      nonce: new Uint8Array(8),
      dataLinkProof: false,
      ...opts,
    };
    this.role = opts.role === 'active' ? 'candidate' : 'standby';
    this.peerLeaseUs = this.o.timeoutUs;
    this.mac = nodeMac(opts.nodeId);
    this.lastHeard = now;
    this.lastHeardLink = now;
    this.lastSent = now;
    this.startedAt = now;
    this.clock = now;
    stack.onAddressClaim = (_a, t) => this.addressClaimed(t);
    this.resume = new ResumeWatcher(
      stack,
      (line, fields) => this.driver.log(line, fields),
      () => this.driver.wake(),
    );
    driver.setMuted(true);
    this.pushLease();
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

  /**
   * Until when (our clock) this node may emit frames for the VIP: -Infinity unless active;
   * +Infinity when serving alone; else the lease its standby granted.
   */
  sendUntil(): number {
    if (this.role !== 'active' || this.switching) return -INF;
    return this.selfLease ? INF : this.lease();
  }

  /** The lease granted to us, on either channel. */
  private lease(): number {
    const side = this.o.side;
    return side ? Math.max(this.leaseUntil, side.leaseUntil()) : this.leaseUntil;
  }

  /** For status: 'alone' (degraded, self-granted), 'held' (granted, valid), 'expired', 'none'. */
  leaseState(now: number): 'alone' | 'held' | 'expired' | 'none' {
    if (this.role !== 'active') return 'none';
    if (this.selfLease) return 'alone';
    return now < this.lease() ? 'held' : 'expired';
  }

  private pushLease(): void {
    this.o.side?.setRole(
      this.role === 'active' ? 'active' : this.role === 'standby' ? 'standby' : 'none',
      this.epoch,
    );
    const u = this.sendUntil();
    if (u === this.leaseTold) return;
    this.leaseTold = u;
    this.driver.setLease?.(u);
  }

  // -------------------------------------------------------------------------------------------
  // Link events

  /** An authenticated link to the peer is up (either side may have dialled). */
  linkOpened(link: PeerLink, now: number): void {
    if (this.link) this.link.close();
    this.link = link;
    this.peerRole = undefined;
    this.peerReady = false;
    this.peerClosedLink = false;
    // For a standby only the active's own words count as hearing it (see `message`).
    if (this.role !== 'standby') this.lastHeard = now;
    this.lastHeardLink = now;
    this.clock = now;
    this.sendRole();
  }

  linkClosed(link: PeerLink, now: number): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.peerClosedLink = true;
    this.peerRole = undefined;
    if (this.role === 'active' && this.peerReady) this.loseStandby(now, 'link closed');
  }

  /** Closes our link ourselves (the peer will redial, or we will). */
  private dropLink(): void {
    const l = this.link;
    if (!l) return;
    this.link = undefined;
    this.peerClosedLink = false;
    this.peerRole = undefined;
    l.close();
  }

  /**
   * The attached standby is gone from the replication link. Not synced: it could not take over;
   * serve alone. Synced and our lease still granted: it has not taken over (it promised), and a
   * closed link is its process gone; serve alone. Otherwise hold until we know (`decideLoss`).
   */
  private loseStandby(now: number, why: 'link closed' | 'silent' | 'refused'): void {
    const synced = this.replicator?.standbySynced ?? false;
    this.peerReady = false;
    this.orphaned = true;
    if (!synced) {
      this.driver.log(`standby lost (${why}) before it synced: serving alone`, {
        event: 'standby-lost',
        level: 'warn',
        why,
        synced: false,
      });
      this.serveAlone(now);
      return;
    }
    if (why === 'link closed' && now < this.lease() && !this.driver.arbitrate) {
      this.driver.log('standby lost (link closed) while our lease held: its process is gone; serving alone', {
        event: 'standby-lost',
        level: 'warn',
        why,
        synced: true,
        hold: false,
      });
      this.serveAlone(now);
      return;
    }
    this.lossAt = now;
    this.rxSinceLoss = { first: INF, last: -INF, provedAt: INF };
    this.driver.log(
      this.driver.arbitrate
        ? `standby lost (${why}): withdrawing its entitlement at the arbiter before serving alone`
        : `standby lost (${why}): holding output until it is known unable to take over`,
      { event: 'standby-lost', level: 'warn', why, synced: true, hold: true },
    );
    this.beaconNow(now);
    this.askArbiter(now);
  }

  /** While holding after a loss: whether we now know the lost standby cannot take over. */
  private decideLoss(now: number): void {
    if (this.role !== 'active' || this.lossAt === INF) return;
    const p = this.peerBeacon;
    if (p && p.at >= this.lossAt && p.role === 'standby' && (!p.synced || p.session < this.session)) {
      this.driver.log('the lost standby dropped its mirror (its beacon says so): serving alone');
      this.serveAlone(now);
      return;
    }
    // With an arbiter, the record decides (`askArbiter`: drop, then serve alone).
    if (this.driver.arbitrate) return;
    if (this.o.dataLinkProof) {
      // The traffic counted is heard after the peer's last beacon (`beacon` restarts the count):
      // a beacon sent before the standby died and read after we lost it (a turn late, say) must
      // not stand for a live standby for ever (seen: a 2 s hold in the nemesis, bootstrap-kill).
      const r = this.rxSinceLoss;
      if (r.last - r.first < PROOF_HEARTBEATS * this.o.heartbeatUs || now < this.lease()) return;
      // The traffic may span a time our data link was down (cut off, then healed), when the
      // standby took over and beaconed unheard: a last call first. We beacon, and serve alone
      // only if no peer answers or beacons within 1.5 heartbeats (a new active's beacon fences
      // us). Seen in the nemesis: an active cut off in steps heard clients for 15 ms, nothing for
      // 2.5 s, and served alone at the first frame after the heal, 11 frames before it fenced.
      if (r.provedAt === INF) {
        r.provedAt = now;
        this.beaconNow(now);
        this.driver.wake();
        return;
      }
      if (now < r.provedAt + PROOF_LAST_CALL_HEARTBEATS * this.o.heartbeatUs) return;
      this.driver.log(
        'the lost standby is not on the data link (traffic heard, no beacon from it): serving alone',
      );
      this.serveAlone(now);
      return;
    }
    if (now >= this.quietSince() + this.o.timeoutUs + this.o.leaseMarginUs) {
      this.driver.log('the lost standby did not claim the VIP: serving alone');
      this.serveAlone(now);
    }
  }

  /** After a loss, from when the lost standby has been silent: since the loss, its lease, its last beacon. */
  private quietSince(): number {
    return Math.max(this.lease(), this.lossAt, this.peerBeacon?.at ?? -INF);
  }

  /** No standby can take over from us: lift every limit and grant ourselves the lease. */
  private serveAlone(now: number): void {
    const lossAt = this.lossAt;
    this.lossAt = INF;
    this.peerReady = false;
    if (this.role !== 'active') return;
    this.replicator?.detach();
    this.selfLease = true;
    this.stack.acceptingNew = this.o.degraded === 'serve';
    this.driver.log(`serving alone (degraded) at epoch ${this.epoch}`, {
      event: 'serving-alone',
      level: 'warn',
      epoch: this.epoch,
      // Output held since the loss (0: served alone at once).
      heldMs: lossAt === INF ? 0 : Math.round((now - lossAt) / 100) / 10,
    });
    this.pushLease();
    this.beaconNow(now);
    this.driver.wake();
  }

  /**
   * Another node claimed one of our addresses (an ARP or NA from elsewhere, seen on the data
   * link). An active that lost its standby takes it as that standby's take-over and fences. Any
   * other active ignores it: nobody can have taken over from it.
   */
  addressClaimed(_now: number): void {
    if (this.role !== 'active' || this.peerReady) return;
    if (!this.orphaned) return;
    this.fence('another node claims the VIP on the data link');
  }

  /** A message from the peer. A bad one closes the link (the peer reconnects and starts over). */
  message(type: number, epoch: number, payload: Uint8Array, now: number): void {
    if (!this.link) return;
    // A standby's failure detector hears the active only: the peer on the link may be a new
    // process of the node that died (restarted at once), not active, waiting for our take-over.
    // A peer whose role we have not heard yet counts (its role message may have been lost in the
    // race of two links, see onRole; not counting it took a live active for dead).
    if (this.role !== 'standby' || !notActive(this.peerRole)) this.lastHeard = now;
    this.lastHeardLink = now;
    this.clock = now;
    // Superseded: fence, then take the message as the standby we now are (a ROLE from the
    // new active makes us join it over this very link). A ROLE is judged in `onRole`.
    if (epoch > this.epoch && this.role === 'active' && type !== MSG_ROLE)
      this.fence(`the peer speaks for epoch ${epoch}, ours is ${this.epoch}`);
    switch (type) {
      case MSG_ROLE:
        this.onRole(payload, epoch, now);
        return;
      case MSG_BATCH:
        this.onBatch(payload, epoch, now);
        return;
      case MSG_ACK: {
        const v = readF64s(payload, 1, 2);
        if (v === undefined || this.role !== 'active') {
          this.refuse('an ACK that is not one');
          return;
        }
        if (v.length === 2) this.granted(v[1], epoch, now);
        const sentAt = this.replicator?.ack(v[0]) ?? Number.NaN;
        if (Number.isFinite(sentAt)) {
          this.driver.committed?.(now - sentAt);
          this.replicator?.answered(now - sentAt);
        }
        this.driver.wake();
        return;
      }
      case MSG_HEARTBEAT: {
        const v = readF64s(payload, 1, 2);
        if (v === undefined) {
          this.refuse('a heartbeat that is not one');
          return;
        }
        if (v.length === 2) {
          if (this.role === 'active') {
            this.granted(v[1], epoch, now);
            this.replicator?.answered(now - v[1]);
          }
        } else if (this.role === 'standby' && epoch === this.epoch && !notActive(this.peerRole)) {
          // The active's heartbeat (not a standby's: a restarted node waiting for our
          // take-over beats too): answer at once with its clock, granting the lease.
          if (this.mayGrant()) {
            this.grant(now);
            this.send(MSG_HEARTBEAT, f64(now, v[0]));
          }
        }
        return;
      }
      case MSG_DATALINK: {
        const v = readF64s(payload, 2);
        if (v === undefined) {
          this.refuse('a data-link report that is not one');
          return;
        }
        this.peerView = { clientsAgeUs: v[0], beaconAgeUs: v[1], at: now };
        return;
      }
      case MSG_HANDOVER:
        if (this.role === 'standby' && this.mirror.synced && epoch === this.epoch) {
          const planned = DEC.decode(payload) === 'switchover';
          this.driver.log(
            planned
              ? 'the active hands over (switchover): taking over now'
              : 'the active cannot reach its data link and hands over: taking over now',
          );
          this.o.side?.freezeGrants();
          this.claimTakeover(now, planned ? 'switchover' : 'handover');
        }
        return;
      case MSG_LEAVE:
        if (this.role === 'active' && this.peerReady) {
          this.driver.log('the standby leaves (it is stopping and will not take over): serving alone', {
            event: 'standby-lost',
            level: 'warn',
            why: 'left',
            synced: this.replicator?.standbySynced ?? false,
            hold: false,
          });
          this.peerReady = false;
          this.orphaned = true;
          this.serveAlone(now);
        }
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

  /** Standby: we answer the active now; we must not take over for a lease from now. */
  private grant(now: number): void {
    if (!this.mayGrant()) return;
    this.grantedUntil = Math.max(this.grantedUntil, now + this.o.timeoutUs);
    this.beacons.grants++;
  }

  /** A standby that asked the arbiter to take over promises nothing more until the verdict. */
  private mayGrant(): boolean {
    return this.arbiterPending?.kind !== 'takeover';
  }

  /** Active: the standby echoed our clock value `echo`: the lease runs to `echo + timeoutUs`. */
  private granted(echo: number, epoch: number, now: number): void {
    if (this.role !== 'active' || epoch !== this.epoch || !Number.isFinite(echo) || echo > now) return;
    const until = echo + this.peerLeaseUs;
    if (until <= this.leaseUntil) return;
    // Lapsed on every channel (the pulse's grants count): output was held until now.
    const held = this.lease();
    if (!this.selfLease && now >= held && this.leaseUntil > -INF) {
      this.beacons.leaseLapses++;
      this.driver.log(
        `lease lapsed for ${((now - held) / 1000).toFixed(1)} ms (no grant from the standby in time): output was held meanwhile`,
        { event: 'lease-lapse', level: 'warn', epoch, lapsedMs: Math.round((now - held) / 100) / 10 },
      );
    }
    this.leaseUntil = until;
    this.pushLease();
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
    const wasReady = this.role === 'active' && this.peerReady;
    this.dropLink();
    // It was told DROP: were it synced, it no longer is (or never gets the word, and it is a
    // silent standby to us).
    if (wasReady) this.loseStandby(this.clock, 'refused');
  }

  private unsync(): void {
    // Asked to take over with this mirror: the arbiter may yet say yes; drop it after a no.
    if (this.arbiterPending?.kind === 'takeover') {
      this.unsyncDeferred = true;
      return;
    }
    this.mirror.synced = false;
    this.mirror.bootstrapped = false;
    this.mirror.clear();
    this.mirrorSession = -1;
  }

  private sendRole(): void {
    const body = {
      nodeId: this.o.nodeId,
      role: this.role,
      ready: this.mirror.synced,
      leaseUs: this.o.timeoutUs,
    };
    this.send(MSG_ROLE, ENC.encode(JSON.stringify(body)));
  }

  private send(type: number, payload: Uint8Array): void {
    this.link?.send(type, this.epoch, payload);
    this.lastSent = this.clock;
  }

  private onRole(payload: Uint8Array, epoch: number, now: number): void {
    let body: { role?: unknown; nodeId?: unknown; leaseUs?: unknown; ready?: unknown };
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
    if (epoch > this.epoch && this.role === 'active') {
      if (notActive(role) && !this.driver.arbitrate) {
        // We became active alone (the peer unreachable then) below the epochs the peer lived
        // through; it is not active, and it is the only other node: nobody serves at them. Move
        // above them, or the peer refuses our batches and we would fence, both waiting for ever.
        this.driver.log(
          `the peer (${role}) has seen epoch ${epoch}, ours is ${this.epoch}: active at ${epoch + 1}`,
        );
        this.epoch = epoch + 1;
        this.pushLease();
        this.beaconNow(now);
      } else this.fence(`the peer speaks for epoch ${epoch}, ours is ${this.epoch}`);
    }
    // Our role message on this link may have been lost: when both nodes dial at once, a node
    // sends it on the link it kept before the peer has made that link its own, and the peer's
    // transport drops it. The first role heard on a link is answered (once on each side).
    if (this.peerRole === undefined) this.sendRole();
    this.peerRole = role;
    const id = body.nodeId;
    if (typeof id === 'string' && NODE_ID.test(id) && id !== this.o.nodeId) this.peerId = id;
    // The lease we hold is the shorter of what we would grant and what the peer grants (two
    // nodes configured apart must not let the active outlive its standby's promise).
    const l = body.leaseUs;
    this.peerLeaseUs = typeof l === 'number' && l > 0 ? Math.min(l, this.o.timeoutUs) : this.o.timeoutUs;
    if (role === 'active') {
      if (this.role === 'candidate' || this.role === 'standby') {
        // Join as standby (no preemption): take the active's epoch.
        this.role = 'standby';
        if (epoch > this.epoch) this.unsync();
        this.epoch = Math.max(this.epoch, epoch);
        this.driver.setMuted(true);
        this.pushLease();
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
      if (this.o.nodeId < String(body.nodeId)) this.claimAbove(epoch, now);
      else {
        this.role = 'standby';
        this.sendRole();
      }
      return;
    }
    if (role === 'standby') {
      if (this.role === 'candidate' && body.ready === true) {
        // A synced standby: an active died holding live connections (often this node's own last
        // process, restarted at once). That standby takes them over; claiming the VIP now would
        // answer their clients with resets. Wait as standby: its role message will bring us in.
        this.role = 'standby';
        this.driver.log(`peer ${String(body.nodeId)} is a synced standby: waiting for it to take over`);
        this.sendRole();
      } else if (this.role === 'candidate') this.claimAbove(epoch, now);
      if (this.role === 'active' && !this.peerReady) this.attachStandby(now);
    }
  }

  /** A standby on the link: bootstrap it (it catches up while we serve; see Replicator). */
  private attachStandby(now: number): void {
    this.peerReady = true;
    this.orphaned = false;
    this.lossAt = INF;
    this.stack.acceptingNew = true;
    this.session++;
    const rep = this.replicator!;
    rep.session = this.session;
    const conns = rep.connectionCount;
    const b = rep.bootstrap(now);
    const size = this.sendBatch(b);
    this.driver.log(
      `standby attached: bootstrap of ${conns} connection(s) in chunks, the first ${b.records.length} records, ${(size / 1e6).toFixed(2)} MB (session ${this.session}), serving on while it catches up`,
      { event: 'bootstrap-started', session: this.session, connections: conns, standby: this.peerId ?? null },
    );
  }

  /** Sends a batch; returns its encoded size. */
  private sendBatch(b: Parameters<typeof encodeBatch>[0]): number {
    const bytes = encodeBatch(b);
    if (this.replicator) this.replicator.counters.bytes += bytes.length;
    this.send(MSG_BATCH, bytes);
    if (b.sync && this.selfLease) {
      // From this batch on the standby can take over: the lease is its to grant. (It has been
      // answering our heartbeats and batches all along, so the lease is fresh.)
      this.selfLease = false;
      this.driver.log(
        `standby synced at batch ${b.lsn} (${b.records.length} records, ${(bytes.length / 1e6).toFixed(2)} MB): the lease is now granted by it`,
        { event: 'standby-synced', session: this.session, lsn: b.lsn, standby: this.peerId ?? null },
      );
      this.pushLease();
      this.askArbiter(this.clock);
    }
    return bytes.length;
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
    const wasSynced = this.mirror.synced;
    const err = this.mirror.apply(b, now);
    if (err) {
      this.refuse(err);
      return;
    }
    if (b.reset) this.mirrorSession = b.session ?? 0;
    if (this.mirror.synced && !wasSynced)
      this.driver.log(`synced at batch ${b.lsn} (session ${this.mirrorSession}): able to take over`, {
        event: 'synced',
        session: this.mirrorSession,
        lsn: b.lsn,
        connections: this.mirror.conns.size,
      });
    // Asking to take over, it acknowledges without the echo: no lease for the active meanwhile.
    this.grant(now);
    this.send(MSG_ACK, this.mayGrant() ? f64(b.lsn, b.at) : f64(b.lsn));
  }

  // -------------------------------------------------------------------------------------------
  // The data link

  /**
   * A frame heard on the data link (any node's, not a beacon): the evidence that the data link
   * works (`dataLinkProof`). Cheap: called for every frame.
   */
  heard(now: number): void {
    this.lastDataRx = now;
    this.lastClientRx = now;
    if (this.lossAt !== INF) {
      const r = this.rxSinceLoss;
      if (r.first === INF) r.first = now;
      r.last = now;
      this.decideLoss(now);
      this.askArbiter(now);
    }
  }

  /** New beacon keys (a key rotation): the first signs ours, any verifies the peer's. */
  setBeaconKeys(keys: Uint8Array[]): void {
    if (keys.length === 0) return;
    this.o.beaconKey = keys[0];
    this.o.beaconKeysAccepted = keys.slice(1);
  }

  /**
   * Replay protection: per sender nonce the newest clock accepted, and when. Entries idle for
   * 10 s are forgotten; while the memory is full of recent ones a new nonce is refused, so
   * recordings of earlier lives cannot flush it and open the way to replays of this one.
   */
  private freshBeacon(nonce: string, sentAt: number, now: number): boolean {
    const e = this.beaconSeen.get(nonce);
    if (e) {
      if (sentAt <= e.last) return false;
      e.last = sentAt;
      e.at = now;
      return true;
    }
    if (this.beaconSeen.size >= BEACON_NONCES)
      for (const [k, v] of this.beaconSeen) if (v.at < now - 10_000_000) this.beaconSeen.delete(k);
    if (this.beaconSeen.size >= BEACON_NONCES) return false;
    this.beaconSeen.set(nonce, { last: sentAt, at: now });
    return true;
  }

  /** A beacon frame from the data link. Refused ones are counted and dropped. */
  beacon(frame: Uint8Array, now: number): void {
    const key = this.o.beaconKey;
    if (!key) return;
    this.clock = now;
    let b = decodeBeacon(frame, key);
    for (const k of this.o.beaconKeysAccepted ?? []) {
      if (typeof b !== 'string') break;
      b = decodeBeacon(frame, k);
    }
    if (typeof b === 'string') {
      this.beacons.refused++;
      return;
    }
    if (b.nodeId === this.o.nodeId) return;
    if (!this.freshBeacon(toHex(b.nonce), b.sentAt, now)) {
      this.beacons.refused++;
      return;
    }
    this.beacons.heard++;
    // A standby watches the active: a restarted peer process that is not (yet) active says
    // nothing about the one that died (it would hold off the take-over for ever).
    if (this.role !== 'standby' || b.role === 'active') this.lastHeard = now;
    this.lastDataRx = now;
    this.peerBeacon = {
      role: b.role,
      epoch: b.epoch,
      session: b.session,
      attached: b.attached,
      synced: b.synced,
      at: now,
    };
    if (b.role === 'active') this.fromActiveBeacon(b, now);
    else if (b.role === 'standby' && this.role === 'active') {
      if (Number.isFinite(b.echo)) this.granted(b.echo, b.epoch, now);
      // A word from the lost standby: the proof that it is off the data link starts again.
      if (this.lossAt !== INF) this.rxSinceLoss = { first: INF, last: -INF, provedAt: INF };
      this.decideLoss(now);
    }
  }

  private fromActiveBeacon(b: Beacon, now: number): void {
    this.lastActiveBeaconAt = now;
    if (this.role === 'active') {
      if (b.epoch > this.epoch)
        this.fence(`node ${b.nodeId} is active at epoch ${b.epoch}, ours is ${this.epoch}`);
      else if (b.epoch === this.epoch && b.nodeId < this.o.nodeId)
        this.fence(`active peer ${b.nodeId} at our epoch`);
      return;
    }
    if (this.role !== 'standby') return;
    if (this.mirror.synced) {
      // The active moved on without us: a later epoch, a later session, or it dropped ours.
      const stale =
        b.epoch > this.epoch ||
        (b.epoch === this.epoch &&
          (b.session > this.mirrorSession || (b.session === this.mirrorSession && !b.attached)));
      if (stale) {
        this.driver.log(
          `the active's beacon says our mirror is stale (epoch ${b.epoch}, session ${b.session}${b.attached ? '' : ', no standby'}): resyncing`,
        );
        this.unsync();
      }
    }
    if (b.epoch !== this.epoch && !this.mirror.synced) this.epoch = Math.max(this.epoch, b.epoch);
    if (b.epoch === this.epoch && this.mayGrant()) {
      // Answer with its clock: a grant, as on the replication link.
      this.grant(now);
      this.sendBeacon(now, b.sentAt);
    }
  }

  private beaconNow(now: number): void {
    if (this.o.beaconKey) this.sendBeacon(now, Number.NaN);
  }

  private sendBeacon(now: number, echo: number): void {
    const key = this.o.beaconKey;
    if (!key || !this.driver.sendBeacon) return;
    const role: Beacon['role'] = this.role === 'fenced' ? 'standby' : this.role;
    const f = encodeBeacon(
      {
        nodeId: this.o.nodeId,
        role,
        epoch: this.epoch,
        session: role === 'active' ? this.session : Math.max(0, this.mirrorSession),
        attached: role === 'active' && this.peerReady,
        synced: role === 'standby' && this.mirror.synced,
        sentAt: now,
        echo,
        nonce: this.o.nonce,
      },
      key,
      this.mac,
    );
    this.lastBeaconAt = now;
    this.beacons.sent++;
    this.driver.sendBeacon(f);
  }

  /**
   * A frame the data link delivered to this node while it was muted. A synced standby keeps the
   * data peers send on mirrored connections past what the active replicated
   * (docs/ARCHITECTURE.md §6, "The listening standby"): at a take-over the new active then holds what the
   * dead node received but never acknowledged, and what peers sent while it was dying, so
   * nobody waits for a retransmission timeout. A frame that does not parse, or is not a data
   * segment of a mirrored connection, is ignored.
   */
  snoop(frame: Uint8Array, now = this.clock): void {
    if (this.role !== 'standby' || !this.mirror.synced) return;
    const f = parseFrame(frame);
    if (isWireError(f) || !f.tcp) return;
    const t = f.tcp;
    const ip = f.ipv4 ?? f.ipv6;
    if (!ip) return;
    if ((t.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN) {
      // A client's SYN: if the active dies before answering it, the new active answers it at
      // the take-over, instead of the client's SYN retransmission (1 s on Linux).
      const key = connKey(ip.dst, t.dstPort, ip.src, t.srcPort);
      this.overheardSyns.delete(key);
      this.overheardSyns.set(key, { frame: frame.slice(), at: now });
      if (this.overheardSyns.size > OVERHEARD_SYNS)
        this.overheardSyns.delete(this.overheardSyns.keys().next().value!);
      return;
    }
    if (t.payload.length === 0 || (t.flags & (TCP_SYN | TCP_RST)) !== 0) return;
    const m = this.mirror.find(ip.dst, t.dstPort, ip.src, t.srcPort);
    if (!m) return;
    this.snooped.frames++;
    this.snooped.bytes += m.snoop(t.seq, t.payload);
  }

  // -------------------------------------------------------------------------------------------
  // Driver calls

  /**
   * The process is stopping on purpose (`takeover node` on SIGTERM). A standby tells its active
   * (MSG_LEAVE) and gives up its mirror first, so that it can never take over from here on and
   * the active need not hold output for it. An active stops as it would die: its standby takes
   * over once the link closes and the lease it granted runs out (use `switchover` first for no
   * stall).
   */
  leave(now: number): void {
    this.clock = now;
    if (this.role !== 'standby') return;
    this.leaving = true;
    this.o.side?.freezeGrants();
    this.unsync();
    if (this.link) this.send(MSG_LEAVE, ENC.encode('stopping'));
  }

  /** End of a driver turn: the active ships what the turn did as one batch. */
  afterTurn(now: number): void {
    this.clock = now;
    this.pushLease();
    this.resume.check(now);
    if (this.role !== 'active' || !this.replicator) return;
    const b = this.replicator.batch(now);
    if (b && this.link && this.peerReady) this.sendBatch(b);
    if (this.switching) this.switchStep(now);
  }

  /**
   * A planned switchover (docs/ARCHITECTURE.md §6 "Switchover"): hands every live connection to
   * the synced standby at once, with no detection delay. Output is held from now (the lease is
   * closed on our side), what the turns still do is replicated, and once the standby has
   * acknowledged every batch this node steps down to standby (dropping its connections without
   * a word) and tells it to take over (MSG_HANDOVER after the last batch on the same link). The
   * standby needs no lease expiry: we gave the lease back. Returns why it cannot start, if so.
   */
  switchover(now: number): string | undefined {
    this.clock = now;
    if (this.role !== 'active') return `this node is ${this.role}, not active: ask the active node`;
    if (this.switching) return 'a switchover is already under way';
    if (!this.link || !this.peerReady || this.selfLease || this.lossAt !== INF)
      return SWITCHOVER_NOT_YET.noStandby;
    if (!this.replicator?.standbySynced) return SWITCHOVER_NOT_YET.catchingUp;
    if (this.driver.arbitrate && this.registered !== this.session) return SWITCHOVER_NOT_YET.arbiter;
    this.switching = {
      at: now,
      until: now + SWITCHOVER_TIMEOUTS * this.o.timeoutUs,
      epoch: this.epoch,
      muted: false,
    };
    this.driver.log(
      `switchover: holding output, handing ${this.stack.connectionCount} connection(s) to the standby`,
      { event: 'switchover-started', epoch: this.epoch, connections: this.stack.connectionCount },
    );
    this.pushLease();
    this.switchStep(now);
    return undefined;
  }

  /** Switchover: hand over once the standby holds everything; give up after `until`. */
  private switchStep(now: number): void {
    const sw = this.switching;
    if (!sw) return;
    const gone = this.role !== 'active' || this.epoch !== sw.epoch;
    if (gone || !this.link || !this.peerReady || now >= sw.until) {
      this.switching = undefined;
      if (sw.muted && this.role === 'active') this.driver.setMuted(false);
      if (!gone)
        this.driver.log(
          `switchover abandoned: ${this.peerReady && this.link ? `the standby did not acknowledge everything within ${((sw.until - sw.at) / 1000).toFixed(0)} ms` : 'the standby is gone'}; serving on`,
          {
            event: 'switchover-abandoned',
            level: 'warn',
            epoch: sw.epoch,
            standbyGone: !(this.peerReady && this.link),
          },
        );
      this.pushLease();
      this.driver.wake();
      return;
    }
    const rep = this.replicator!;
    // What the application did since the last turn goes in a batch of its own first.
    const b = rep.batch(now);
    if (b) this.sendBatch(b);
    if (rep.inFlight > 0) {
      if (!sw.muted && now >= sw.at + SWITCHOVER_QUIESCE_US) {
        sw.muted = true;
        this.driver.setMuted(true);
      }
      return;
    }
    const link = this.link;
    const connections = this.stack.connectionCount;
    this.switchovers.push({ at: sw.at, handedAt: now, epoch: this.epoch, connections });
    this.switching = undefined;
    this.stepDown(
      `switchover: the standby holds all ${connections} connection(s) after ${((now - sw.at) / 1000).toFixed(1)} ms; handing over`,
      false,
    );
    link.send(MSG_HANDOVER, sw.epoch, ENC.encode('switchover'));
  }

  /**
   * An active cut off from its data link while its replication link works (a cable, a switch
   * port) is of no use to clients, and no silence would ever make the standby take over. The
   * standby tells the active, every heartbeat, how long since it heard clients and the active's
   * beacon; the active that has heard neither clients nor the standby's beacon for
   * `HANDOVER_TIMEOUTS` timeouts, while the standby hears clients but not it, hands over: it goes
   * silent (lease and gate closed), tells the standby, and rejoins as standby; the standby takes
   * over at once (the lease is given back). Needs the evidence of the data link (`dataLinkProof`,
   * beacons): an idle network proves nothing and nobody moves.
   */
  private dataLinkWatch(now: number): void {
    if (!this.o.dataLinkProof || !this.o.beaconKey || !this.link) return;
    if (this.role === 'standby' && this.mirror.synced && now >= this.lastSent + this.o.heartbeatUs / 2) {
      const age = (t: number) => (t === -INF ? 1e15 : now - t);
      this.send(MSG_DATALINK, f64(age(this.lastClientRx), age(this.lastActiveBeaconAt)));
      return;
    }
    if (this.role !== 'active' || !this.peerReady || !this.replicator?.standbySynced) return;
    const v = this.peerView;
    const limit = HANDOVER_TIMEOUTS * this.o.timeoutUs;
    const deaf =
      now - this.lastClientRx > limit &&
      now - (this.peerBeacon?.at ?? -INF) > limit &&
      now - this.startedAt > limit;
    const peerSees =
      v !== undefined &&
      now - v.at < 2 * this.o.timeoutUs &&
      v.clientsAgeUs < this.o.timeoutUs &&
      v.beaconAgeUs > limit;
    if (!deaf || !peerSees) return;
    const link = this.link;
    this.fence('our data link is silent while the standby hears clients and not us: handing over');
    link.send(MSG_HANDOVER, this.epoch, ENC.encode('data link'));
  }

  /**
   * How long the attached standby may be silent, or leave a batch unacknowledged, before it is
   * dropped: a timeout; `SLOW_STANDBY_TIMEOUTS` of them while its process still answers on the
   * side channel (it is only slow: a long turn, a GC pause; dropping it costs a new bootstrap).
   */
  private standbyLimit(now: number): number {
    const alive = (this.o.side?.lastHeard() ?? -INF) >= now - this.o.timeoutUs;
    return (alive ? SLOW_STANDBY_TIMEOUTS : 1) * this.o.timeoutUs;
  }

  /**
   * When a synced standby may take over: the active silent on both paths for `timeoutUs`, and
   * the lease we granted it expired plus the margin.
   */
  private deadAt(): number {
    const side = this.o.side;
    const heard = side ? Math.max(this.lastHeard, side.lastHeard()) : this.lastHeard;
    const granted = side ? Math.max(this.grantedUntil, side.grantedUntil()) : this.grantedUntil;
    return Math.max(heard + this.o.timeoutUs, granted + this.o.leaseMarginUs);
  }

  /** Whether the evidence allows acting on the active's silence (see `dataLinkProof`). */
  private mayTakeOver(): boolean {
    if (!this.o.dataLinkProof) return true;
    const side = this.o.side;
    const heard = side ? Math.max(this.lastHeard, side.lastHeard()) : this.lastHeard;
    return (!this.link && this.peerClosedLink) || this.lastDataRx > heard;
  }

  pollAt(): number {
    let t = this.link ? this.lastSent + this.o.heartbeatUs : INF;
    if (this.o.beaconKey && this.role !== 'candidate')
      t = Math.min(t, this.lastBeaconAt + this.o.heartbeatUs);
    // Without the evidence, a frame heard (`heard`) is what may make it due.
    if (this.role === 'standby' && this.mirror.synced && this.mayTakeOver() && !this.arbiterPending)
      t = Math.min(t, Math.max(this.deadAt(), this.arbiterRetryAt));
    if (this.role === 'active' && this.peerReady && this.link)
      t = Math.min(
        t,
        // The next chunk of a bootstrap goes with the next turn (see Replicator.bootstrap).
        this.replicator?.bootstrapDueAt() ?? INF,
        this.lastHeardLink + this.standbyLimit(this.clock),
        (this.replicator?.oldestUnackedAt ?? INF) + this.standbyLimit(this.clock),
      );
    // With `dataLinkProof` the decision waits for frames (`heard`), then for the last call.
    if (this.role === 'active' && this.lossAt !== INF && !this.o.dataLinkProof && !this.driver.arbitrate)
      t = Math.min(t, this.quietSince() + this.o.timeoutUs + this.o.leaseMarginUs);
    if (this.role === 'active' && this.lossAt !== INF && this.rxSinceLoss.provedAt !== INF)
      t = Math.min(t, this.rxSinceLoss.provedAt + PROOF_LAST_CALL_HEARTBEATS * this.o.heartbeatUs);
    if (this.role === 'candidate' && !this.wantsStart) t = Math.min(t, this.startedAt + this.o.startupWaitUs);
    if (this.driver.arbitrate && !this.arbiterPending && this.arbiterRetryAt > this.clock) {
      const retry =
        (this.role === 'candidate' && this.wantsStart) ||
        (this.role === 'active' && (this.lossAt !== INF || this.registrationDue())) ||
        (this.role === 'standby' && this.takeoverWanted);
      if (retry) t = Math.min(t, this.arbiterRetryAt);
    }
    if (this.announceAt.length > 0) t = Math.min(t, this.announceAt[0]);
    if (this.switching)
      t = Math.min(
        t,
        this.switching.muted ? this.switching.until : this.switching.at + SWITCHOVER_QUIESCE_US,
      );
    return t;
  }

  poll(now: number): void {
    this.clock = now;
    if (this.role === 'candidate' && (this.wantsStart || now >= this.startedAt + this.o.startupWaitUs))
      this.claimActive(now);
    if (this.role === 'standby' && this.mirror.synced && now >= this.deadAt() && this.mayTakeOver()) {
      // The side channel's worker grants on its own: stop it, then check its last promise (one
      // made just before the stop must still be honoured).
      const side = this.o.side;
      if (side && now < side.freezeGrants() + this.o.leaseMarginUs) side.setRole('standby', this.epoch);
      else this.claimTakeover(now, undefined);
    }
    if (this.role === 'standby' && this.link && now >= this.lastHeardLink + 4 * this.o.timeoutUs) {
      // A link silent this long is dead (a cut path): close it, so a new one can replace it.
      this.driver.log(
        `replication link silent for ${((now - this.lastHeardLink) / 1000).toFixed(0)} ms: closing it`,
      );
      this.dropLink();
    }
    if (this.role === 'active' && this.peerReady && this.link) {
      // Silent, or hearing us no more (a batch unacknowledged for a timeout: a one-way cut).
      const limit = this.standbyLimit(now);
      const silent = now >= this.lastHeardLink + limit;
      const oldest = this.replicator?.oldestUnackedAt ?? INF;
      if (silent || now >= oldest + limit) {
        this.driver.log(
          silent
            ? `standby silent for ${((now - this.lastHeardLink) / 1000).toFixed(0)} ms: dropping it`
            : `standby has not acknowledged a batch for ${((now - oldest) / 1000).toFixed(0)} ms: dropping it`,
        );
        this.link.send(MSG_DROP, this.epoch, ENC.encode('silent'));
        this.dropLink();
        this.loseStandby(now, 'silent');
      }
    }
    this.decideLoss(now);
    this.askArbiter(now);
    this.dataLinkWatch(now);
    this.switchStep(now);
    // The same sums as pollAt's: `now - a >= d` can miss `now >= a + d` by a rounding.
    if (this.link && now >= this.lastSent + this.o.heartbeatUs) this.send(MSG_HEARTBEAT, f64(now));
    if (this.o.beaconKey && this.role !== 'candidate' && now >= this.lastBeaconAt + this.o.heartbeatUs)
      this.beaconNow(now);
    while (this.announceAt.length > 0 && this.announceAt[0] <= now) {
      this.announceAt.shift();
      if (this.role === 'active') {
        this.stack.announce();
        if (this.announceAt.length === 0) this.announceAt.push(now + this.o.announceRefreshUs);
        this.resume.rekick(now, now - this.lastAnnounceAt);
        this.lastAnnounceAt = now;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // The arbiter (src/ha/arbiter.ts): who may be active when the two nodes cannot hear each other

  /** A candidate becomes active unaided: at once without an arbiter, else once it holds the record. */
  private claimActive(now: number): void {
    if (!this.driver.arbitrate) {
      this.becomeActive(now, false);
      return;
    }
    this.wantsStart = true;
    this.askArbiter(now);
  }

  /**
   * A candidate claims the VIP above every epoch the pair has seen (`peerEpoch`, the peer's): a
   * peer that lived through take-overs refuses an active of a lower epoch, and the two would
   * wait on each other for ever (seen in the nemesis: a standby at epoch 11, unsynced, and a
   * restarted active at 1).
   */
  private claimAbove(peerEpoch: number, now: number): void {
    this.epoch = Math.max(this.epoch, peerEpoch);
    this.claimActive(now);
  }

  /** A synced standby takes over: at once without an arbiter, else once the record is its. */
  private claimTakeover(now: number, why: 'handover' | 'switchover' | undefined): void {
    if (!this.driver.arbitrate) {
      this.takeOver(now, why);
      return;
    }
    this.takeoverWanted = true;
    this.takeoverCause = why;
    this.askArbiter(now);
  }

  /** An active whose synced standby's session the record does not name yet. */
  private registrationDue(): boolean {
    return (
      this.role === 'active' &&
      this.peerReady &&
      this.lossAt === INF &&
      (this.replicator?.standbySynced ?? false) &&
      this.registered !== this.session &&
      this.peerId !== undefined
    );
  }

  /** States the intent the node's situation calls for, if any and none is in flight. */
  private askArbiter(now: number): void {
    const arbitrate = this.driver.arbitrate;
    if (!arbitrate || this.arbiterPending || now < this.arbiterRetryAt) return;
    const node = this.o.nodeId;
    let intent: ArbiterIntent | undefined;
    if (this.role === 'candidate' && this.wantsStart)
      intent = { kind: 'start', node, minEpoch: this.epoch, steal: now >= this.stealAt };
    else if (
      this.role === 'active' &&
      this.lossAt !== INF &&
      // An active cut off from its data link must not keep the record from a standby that hears
      // the clients (a host going down link by link): it asks once a frame proves its link works.
      (!this.o.dataLinkProof || this.rxSinceLoss.first !== INF)
    )
      intent = { kind: 'drop', node, epoch: this.epoch };
    else if (this.registrationDue())
      intent = {
        kind: 'register',
        node,
        epoch: this.epoch,
        standby: { node: this.peerId!, session: this.session },
      };
    else if (this.role === 'standby' && this.takeoverWanted && this.mirror.synced && this.peerId)
      intent = { kind: 'takeover', node, epoch: this.epoch, from: this.peerId, session: this.mirrorSession };
    if (!intent) return;
    this.arbiterPending = intent;
    this.arbiter.asked++;
    arbitrate(intent);
  }

  /** The arbiter's answer to `intent` (the object `arbitrate` was given). */
  arbiterVerdict(intent: ArbiterIntent, v: Verdict, now: number): void {
    if (this.arbiterPending !== intent) return;
    this.arbiterPending = undefined;
    this.clock = now;
    const why =
      v.kind === 'won' ? `epoch ${v.state.epoch}` : v.kind === 'unavailable' ? v.error.message : v.reason;
    this.arbiter.last = { intent: intent.kind, verdict: v.kind, why };
    if (v.kind === 'won') this.arbiter.won++;
    else if (v.kind === 'lost') this.arbiter.lost++;
    else if (v.kind === 'wait') this.arbiter.waits++;
    else this.arbiter.unavailable++;
    if (v.kind === 'unavailable') {
      // Consistency over availability: nothing is assumed; the same intent is asked again.
      if (this.arbiter.unavailable === 1 || this.arbiter.unavailable % 50 === 0)
        this.driver.log(
          `arbiter: ${intent.kind} not decided (${why}); asking again every ${ARBITER_RETRY_US / 1000} ms`,
        );
      this.arbiterRetryAt = now + ARBITER_RETRY_US;
    }
    switch (intent.kind) {
      case 'start':
        if (v.kind === 'won') {
          // The record is ours at a new epoch. A node that joined an active peer meanwhile
          // (one that never held the record: the record would have refused us) still obeys
          // it; that peer fences on our first word.
          this.driver.log(`arbiter: the record makes us active at epoch ${v.state.epoch}`);
          if (this.role !== 'active') this.becomeActive(now, false, v.state.epoch);
        } else if (v.kind === 'lost') {
          this.wantsStart = false;
          if (this.role === 'candidate') {
            this.driver.log(`arbiter: ${why}; waiting as standby`);
            this.role = 'standby';
            this.pushLease();
            this.sendRole();
          }
        } else if (v.kind === 'wait') {
          if (this.stealAt === INF) this.stealAt = now + this.o.startupWaitUs;
          this.arbiterRetryAt = Math.max(now + ARBITER_RETRY_US, this.stealAt);
          this.driver.log(
            `arbiter: ${why}; taking the record in ${((this.arbiterRetryAt - now) / 1000).toFixed(0)} ms unless an active is heard`,
          );
        }
        break;
      case 'register':
        if (v.kind === 'won') this.registered = intent.standby.session;
        else if (v.kind === 'lost' && this.role === 'active' && this.epoch === intent.epoch)
          this.fence(`the arbiter's record has moved on (${why})`);
        break;
      case 'drop':
        if (v.kind === 'won') {
          this.registered = -1;
          if (this.role === 'active' && this.lossAt !== INF) {
            this.driver.log('arbiter: the lost standby may no longer take over');
            this.serveAlone(now);
          }
        } else if (v.kind === 'lost' && this.role === 'active' && this.epoch === intent.epoch)
          this.fence(`the arbiter's record has moved on (${why})`);
        break;
      case 'takeover': {
        const cause = this.takeoverCause;
        this.takeoverCause = undefined;
        this.takeoverWanted = false;
        const deferred = this.unsyncDeferred;
        this.unsyncDeferred = false;
        if (v.kind === 'won') {
          if (this.role === 'standby') {
            this.epoch = v.state.epoch - 1;
            this.takeOver(now, cause);
          }
          break;
        }
        // Not ours: promise again (the pulse was frozen for the take-over).
        this.o.side?.setRole('standby', this.epoch);
        if (v.kind === 'lost') {
          this.driver.log(`arbiter: not taking over (${why}); resyncing`);
          this.unsync();
        } else if (deferred) this.unsync();
        else if (cause === 'handover' || cause === 'switchover') {
          // Handed over: the active is silent already; no silence will make us ask again.
          this.takeoverWanted = true;
          this.takeoverCause = cause;
        }
        break;
      }
    }
    this.driver.wake();
  }

  // -------------------------------------------------------------------------------------------
  // Roles

  private becomeActive(now: number, takeover: boolean, epoch?: number): void {
    if (!takeover) this.epoch = epoch ?? Math.max(this.epoch, 0) + 1;
    this.role = 'active';
    this.wantsStart = false;
    this.stealAt = INF;
    this.registered = -1;
    this.orphaned = false;
    this.lossAt = INF;
    this.peerReady = false;
    // Nobody can take over from a new active until it syncs a standby: it grants itself the lease.
    this.selfLease = true;
    this.leaseUntil = -INF;
    this.stack.acceptingNew = this.o.degraded === 'serve';
    this.replicator = new Replicator(this.stack, this.o.mode);
    this.pushLease();
    this.driver.setMuted(false);
    this.stack.announce();
    this.lastAnnounceAt = now;
    this.announceAt = this.o.announceAfterUs.map((d) => now + d);
    this.driver.log(`active at epoch ${this.epoch}${takeover ? ' (take-over)' : ''}`);
    this.sendRole();
    this.beaconNow(now);
    this.driver.wake();
  }

  /** docs/ARCHITECTURE.md §6 "Take-over": epoch+1, restore, kick-start, claim the VIP, resume the app. */
  takeOver(now: number, why?: 'handover' | 'switchover'): void {
    if (this.leaving) return;
    const lastHeard = this.lastHeard;
    const cause = why ?? (!this.link && this.peerClosedLink ? 'link closed' : 'silence');
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
        c.restored = {
          checkpoint: r.mirror.checkpoint?.value,
          skipWrite: r.mirror.skipWrite(),
          tag: r.mirror.tag,
        };
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
    // SYNs clients sent while the active was dying, of connections it never opened (the mirror
    // knows every one whose SYN-ACK left): answered once we are active.
    const syns: Uint8Array[] = [];
    for (const [key, { frame, at }] of this.overheardSyns)
      if (now - at < OVERHEARD_SYN_MAX_AGE_US && !this.mirror.hasKey(key)) syns.push(frame);
    this.overheardSyns.clear();
    this.unsync();
    this.dropLink();
    // The restore took real time (tens of ms for many connections in a cold process): the claim,
    // the announcements' schedule and the resume watch with its re-kicks count from its end.
    // Counted from before it, the first re-kick (10 ms) fell right after the kick-start left,
    // before any client could answer: every connection was kicked twice (seen in the nemesis,
    // "45 restored connection(s) made no progress" 22 ms into a switchover of 54).
    const at = this.driver.clock ? Math.max(now, this.driver.clock()) : now;
    this.becomeActive(at, true);
    for (const f of syns) this.stack.receive(f, at);
    if (syns.length > 0)
      this.driver.log(`take-over: answering ${syns.length} SYN(s) overheard while the active was dying`);
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
      resumeUs: [],
    });
    this.resume.start(
      this.takeovers[this.takeovers.length - 1],
      conns.map(({ c }) => c),
      at,
    );
    this.driver.log(
      `take-over: ${conns.length} connection(s) restored, ${failed.length} failed, ${((now - lastHeard) / 1000).toFixed(0)} ms after the active was last heard (${cause})`,
      {
        event: 'takeover',
        level: 'warn',
        epoch: this.epoch,
        cause,
        connections: conns.length,
        failed: failed.length,
        detectionMs: Math.round((now - lastHeard) / 100) / 10,
        restoreMs: Math.round(((this.driver.clock?.() ?? 0) - t0) / 100) / 10,
      },
    );
    this.driver.restored(conns, now);
  }

  /**
   * Another node is active at a later epoch (or wins a tie): stop sending at once (I4), drop
   * every connection without a word (the new active owns them), and rejoin as a standby: the
   * replication link comes up again and the new active bootstraps us.
   */
  private fence(reason: string): void {
    this.stepDown(reason, true);
  }

  /** Stops being active (superseded: a fence, counted; else a switchover) and rejoins as standby. */
  private stepDown(reason: string, superseded: boolean): void {
    const dropped = this.stack.connectionCount;
    const epoch = this.epoch;
    if (superseded) this.fences.push({ at: this.clock, epoch, reason, dropped });
    this.switching = undefined;
    this.role = 'fenced';
    this.pushLease();
    this.driver.setMuted(true);
    this.announceAt = [];
    this.resume.clear();
    this.lossAt = INF;
    this.peerReady = false;
    this.selfLease = false;
    this.leaseUntil = -INF;
    this.replicator?.detach();
    if (this.replicator) this.stack.observer = undefined;
    this.replicator = undefined;
    this.stack.discardAll();
    this.unsync();
    this.role = 'standby';
    this.driver.log(
      `${superseded ? 'fenced: ' : ''}${reason}; ${dropped} connection(s) dropped without a word; rejoining as standby`,
      superseded
        ? { event: 'fence', level: 'warn', epoch, reason, dropped }
        : { event: 'switchover', epoch, handedOver: dropped },
    );
    // Over the link we have, if any (the new active bootstraps us on this ROLE); a dead one is
    // closed by the standby's silence rule, and the transport dials again.
    this.sendRole();
    this.driver.wake();
  }
}
