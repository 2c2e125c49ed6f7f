/**
 * The nemeses: one fault each, injected into a healthy pair (one active, one synced standby)
 * under the client load (client.ts), healed, and left to the checker (runner.ts). A scenario
 * draws its parameters from the run's seeded random source and notes them, so a run replays with
 * `--scenario <name> --seed <seed>`.
 */
import type { ClientConfig } from './client.ts';

/** What a scenario may do to the pair, given to `fault`. */
export interface FaultContext {
  /** The active and the standby when the run began. */
  readonly active: string;
  readonly standby: string;
  /** The detection timeout the nodes use (ms). */
  readonly timeoutMs: number;
  /** A seeded integer in lo..hi. */
  between(lo: number, hi: number): number;
  /** Records a parameter the seed chose (printed with the run). */
  note(param: string): void;
  /** Counts an anomaly of `kind`, with an example. */
  violation(kind: string, example: string): void;
  sleep(ms: number): Promise<void>;
  /** Sends a command line to the client (client.ts's stdin commands). */
  client(cmd: string): void;
  /** What the client printed so far. */
  clientOutput(): string;
  /** Waits (bounded) until the client printed `text`; false when it did not. */
  clientSaid(text: string, timeoutMs: number): Promise<boolean>;
  /** Marks a phase of the client's waits. */
  phase(name: string): void;
  /** Waits until `name` reports role `role`; false after `timeoutMs`. */
  awaitRole(name: string, role: string, timeoutMs: number): Promise<boolean>;
  /**
   * Restarts node `name` (a new process; in a time namespace whose CLOCK_MONOTONIC is offset by
   * `monotonicOffsetS` when given) and waits until it is a synced standby ('not-rejoined' if not).
   */
  restart(name: string, monotonicOffsetS?: number): Promise<void>;
  /** Restarts node `name` and returns once its process is up, not waiting for it to sync. */
  restartOnly(name: string): Promise<void>;
  /** Waits (bounded, polling every 2 ms) for a log line of node `name` from now on matching `pattern`. */
  nodeSaid(name: string, pattern: RegExp, timeoutMs: number): Promise<boolean>;
  /** A seeded CLOCK_MONOTONIC offset (s) for another boot time, or undefined without time namespaces. */
  monotonicOffset(): number | undefined;
  /**
   * Waits (bounded) until the pair is one active and one synced standby for a moment;
   * 'standby-unsynced' and false when it does not get there.
   */
  stable(): Promise<boolean>;
  /** How many times a node became active since the run began. */
  takeovers(): number;
  kill(name: string): void;
  pause(name: string): void;
  resume(name: string): void;
  cutData(name: string, cut?: boolean): Promise<void>;
  /**
   * Cuts the replication link both ways, or heals it. The two ends go one after the other (tens
   * of ms apart): `deafFirst` is the node that stops hearing the other first.
   */
  cutReplication(cut?: boolean, deafFirst?: string): Promise<void>;
  /** Cuts the data path between the two nodes only (both still reach the clients), or heals it. */
  cutBetween(cut?: boolean): Promise<void>;
  /** The nodes that are active with a lease that lets them send (held, or alone), as statuses say. */
  sendersNow(): Promise<string[]>;
  /** Steps node `name`'s wall clock (what its JavaScript sees) by `ms` (wallclock.ts). */
  stepWallClock(name: string, ms: number): Promise<void>;
  /** What node `name`'s status says of its right to send (state, kernel fence, frames it held back). */
  lease(name: string): Promise<string>;
  /** The node's connection count (active) or mirrored connections (standby), or undefined. */
  connections(name: string): Promise<number | undefined>;
  /**
   * `takeover switchover` against node `name` (the command line); true once `name` is a synced
   * standby of the other, else a 'switchover-failed' anomaly and false.
   */
  switchover(name: string): Promise<boolean>;
}

export interface Scenario {
  name: string;
  about: string;
  /**
   * Whether the fault must make the standby take over ('no-takeover' if not), must not
   * ('spurious-takeover' if it does), or may.
   */
  takeover: 'required' | 'forbidden' | 'any';
  /** Changes to the default client load. */
  load?: Partial<ClientConfig>;
  /** Only with the pair's etcd arbiter (NemesisOptions.arbiter): without it the fault is a split brain. */
  arbiter?: boolean;
  /** How long the load runs before the fault (ms). Default 300. */
  baselineMs?: number;
  /**
   * The most the fault may add to the connections' longest waits over the quiet baseline (ms;
   * judged on the third most delayed connection, see runner.ts), else 'stall-over-target'.
   * Give with a `baselineMs` about as long as the fault.
   */
  addedStallTargetMs?: number;
  fault(x: FaultContext): Promise<void>;
}

/** Time for the standby to notice a silent active: several detection timeouts, at least 5 s. */
const detectBound = (x: FaultContext) => Math.max(5000, 20 * x.timeoutMs);

/** A pause, cut or partition long enough that the detection must have fired (ms). */
const faultMs = (x: FaultContext, lo: number, hi: number) =>
  x.between(Math.max(lo, 3 * x.timeoutMs + 200), Math.max(hi, 3 * x.timeoutMs + 400));

async function takeoverWithin(x: FaultContext, survivor: string, ms: number): Promise<boolean> {
  return x.awaitRole(survivor, 'active', ms);
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'kill9',
    about: 'kill -9 of the active; it restarts, rejoins as standby and syncs (the next run kills the other)',
    takeover: 'required',
    async fault(x) {
      x.kill(x.active);
      await takeoverWithin(x, x.standby, detectBound(x));
      await x.sleep(300);
      await x.restart(x.active);
    },
  },
  {
    name: 'host-crash',
    about: "the active's data port and replication link cut, then the process killed: no FIN anywhere",
    takeover: 'required',
    async fault(x) {
      // Both links at once (a host losing power), then the process: nothing of it gets out.
      await Promise.all([x.cutData(x.active), x.cutReplication(true, x.standby)]);
      await x.sleep(x.between(0, 30));
      x.kill(x.active);
      await takeoverWithin(x, x.standby, detectBound(x));
      await x.sleep(300);
      await Promise.all([x.cutData(x.active, false), x.cutReplication(false)]);
      await x.restart(x.active);
    },
  },
  {
    name: 'sigstop',
    about:
      'SIGSTOP of the active beyond the detection timeout, then SIGCONT: it must send nothing and rejoin as standby',
    takeover: 'required',
    async fault(x) {
      const ms = faultMs(x, 500, 2000);
      x.note(`stopped ${ms} ms`);
      x.pause(x.active);
      const t0 = Date.now();
      await takeoverWithin(x, x.standby, ms);
      await x.sleep(ms - (Date.now() - t0));
      x.resume(x.active);
      await x.sleep(1000);
    },
  },
  {
    name: 'sigstop-newconns',
    about: 'as sigstop, with clients opening connections on the new active while the old one is stopped',
    takeover: 'required',
    async fault(x) {
      const ms = faultMs(x, 1000, 2000);
      x.note(`stopped ${ms} ms`);
      x.pause(x.active);
      const t0 = Date.now();
      if (await takeoverWithin(x, x.standby, ms)) x.client('newconns 20');
      await x.sleep(ms - (Date.now() - t0));
      x.resume(x.active);
      // The connections opened while it was stopped must outlive its waking up.
      await x.sleep(1500);
      x.client('newconns 100');
    },
  },
  {
    name: 'blip',
    about: 'the active cut off (data and replication links) for ~2.5 s and back, not killed',
    takeover: 'required',
    async fault(x) {
      const ms = x.between(2000, 3000);
      x.note(`cut ${ms} ms`);
      await Promise.all([x.cutData(x.active), x.cutReplication(true, x.standby)]);
      await x.sleep(ms);
      await Promise.all([x.cutData(x.active, false), x.cutReplication(false)]);
      await x.sleep(1000);
    },
  },
  {
    name: 'repl-partition',
    about: 'only the replication link cut (both nodes on the data link), then healed',
    takeover: 'any',
    async fault(x) {
      const ms = faultMs(x, 2000, 3000);
      x.note(`cut ${ms} ms`);
      await x.cutReplication();
      await x.sleep(ms);
      await x.cutReplication(false);
      await x.sleep(1000);
    },
  },
  {
    name: 'node-split',
    about:
      'the two nodes cut apart (replication link and the data path between them), each still reaching the clients: the etcd arbiter lets exactly one serve',
    takeover: 'any',
    arbiter: true,
    async fault(x) {
      const ms = faultMs(x, 2000, 3000);
      x.note(`split ${ms} ms`);
      await Promise.all([x.cutReplication(), x.cutBetween()]);
      const end = Date.now() + ms;
      // Two nodes entitled to send at once is the split brain the arbiter exists to prevent.
      for (let i = 0; i < 200 && Date.now() < end; i++) {
        const senders = await x.sendersNow();
        if (senders.length > 1) x.violation('split-brain', `both send: ${senders.join(', ')}`);
        await x.sleep(Math.min(50, Math.max(0, end - Date.now())));
      }
      await Promise.all([x.cutReplication(false), x.cutBetween(false)]);
      await x.sleep(1000);
    },
  },
  {
    name: 'data-partition-active',
    about: "the active's data link cut (replication link up), then healed",
    takeover: 'any',
    async fault(x) {
      const ms = faultMs(x, 2000, 3000);
      x.note(`cut ${ms} ms`);
      await x.cutData(x.active);
      await x.sleep(ms);
      await x.cutData(x.active, false);
      await x.sleep(1000);
    },
  },
  {
    name: 'data-partition-standby',
    about: "the standby's data link cut (replication link up), then healed: nothing may change for clients",
    takeover: 'forbidden',
    async fault(x) {
      const ms = faultMs(x, 2000, 3000);
      x.note(`cut ${ms} ms`);
      await x.cutData(x.standby);
      await x.sleep(ms);
      await x.cutData(x.standby, false);
      await x.sleep(1000);
    },
  },
  {
    name: 'standby-churn',
    about: 'kill -9 of the standby under load, restarted (it bootstraps under load): the stall it adds',
    takeover: 'forbidden',
    baselineMs: 2500,
    addedStallTargetMs: 20,
    async fault(x) {
      x.kill(x.standby);
      await x.sleep(x.between(100, 400));
      await x.restart(x.standby);
      await x.sleep(300);
    },
  },
  {
    name: 'switchover',
    about:
      'a rolling upgrade under load: `takeover switchover` to the standby, the old active restarted (the upgrade) and synced, switched back, the other restarted: the stall it adds',
    takeover: 'required',
    baselineMs: 2500,
    addedStallTargetMs: 20,
    async fault(x) {
      if (!(await x.switchover(x.active))) return;
      await x.restart(x.active);
      await x.sleep(x.between(100, 400));
      if (!(await x.switchover(x.standby))) return;
      await x.restart(x.standby);
      await x.sleep(300);
    },
  },
  {
    name: 'bootstrap-kill',
    about:
      'the standby killed again while it bootstraps under load, restarted; once synced, the active killed: the mirror the second bootstrap built takes over',
    takeover: 'required',
    async fault(x) {
      x.kill(x.standby);
      await x.sleep(x.between(50, 200));
      const attached = x.nodeSaid(x.active, /standby attached: bootstrap/, 10_000);
      await x.restartOnly(x.standby);
      // The active logs the attach as the bootstrap starts streaming; it takes 10-20 ms here.
      if (!(await attached)) {
        x.violation('not-rejoined', `${x.standby} restarted but the active never began its bootstrap`);
        return;
      }
      const ms = x.between(0, 6);
      x.note(`standby killed ${ms} ms after its bootstrap began`);
      await x.sleep(ms);
      x.kill(x.standby);
      await x.sleep(x.between(50, 200));
      await x.restart(x.standby);
      if (!(await x.stable())) return;
      x.kill(x.active);
      if (!(await takeoverWithin(x, x.standby, detectBound(x))))
        x.violation('no-takeover', `${x.standby} did not take over after its interrupted bootstrap`);
      await x.sleep(500);
      await x.restart(x.active);
    },
  },
  {
    name: 'rst-storm',
    about: '1,000 client connections reset at once (SO_LINGER 0) while the echo stream runs',
    takeover: 'forbidden',
    async fault(x) {
      const before = await x.connections(x.active);
      x.client('storm 1000');
      if (!(await x.clientSaid('storm-ready', 60_000))) {
        x.violation('harness', 'the 1,000 storm connections did not open within 60 s');
        return;
      }
      x.note(`${/storm-ready (\d+)/.exec(x.clientOutput())?.[1]} storm connections`);
      // The standby must hold them too before they go (their resets are replicated).
      for (let i = 0; i < 100 && ((await x.connections(x.standby)) ?? 0) < 1000; i++) await x.sleep(50);
      x.client('storm-reset');
      await x.clientSaid('storm-reset', 5000);
      await x.sleep(1000);
      // Both nodes must let them go: no connection of the storm left on the active or the mirror.
      for (const n of [x.active, x.standby]) {
        let now: number | undefined;
        for (let i = 0; i < 50; i++) {
          now = await x.connections(n);
          if (now !== undefined && before !== undefined && now <= before + 50) break;
          await x.sleep(100);
        }
        if (now === undefined || before === undefined || now > before + 50)
          x.violation(
            'leaked',
            `${n} still holds ${now} connections 6 s after the storm (${before} before it)`,
          );
      }
    },
  },
  {
    name: 'clock-step',
    about:
      "one node's wall clock stepped by hours (nothing may change); the standby restarted with its CLOCK_MONOTONIC offset (another boot time), taking over and handing back",
    takeover: 'any',
    async fault(x) {
      // The wall clock, there and back: the code runs on the monotonic clock; no take-over.
      const who = x.between(0, 1) === 0 ? x.active : x.standby;
      const ms = (x.between(0, 1) === 0 ? -1 : 1) * x.between(3600, 86_400 * 30) * 1000;
      x.note(`${who}'s wall clock stepped by ${ms / 1000} s`);
      await x.stepWallClock(who, ms);
      await x.sleep(1500);
      await x.stepWallClock(who, 0);
      await x.sleep(300);
      if (x.takeovers() > 0)
        x.violation('spurious-takeover', `a take-over after ${who}'s wall clock stepped`);
      // The monotonic clock: a time namespace offsets CLOCK_MONOTONIC for one process (another
      // host booted at another time). The standby comes back in one, takes over from a kill -9,
      // serves; the killed node comes back and takes over in turn, so no node stays offset.
      const offset = x.monotonicOffset();
      if (offset === undefined) return;
      await x.restart(x.standby, offset);
      await x.sleep(300);
      if (!(await x.stable())) {
        await x.restart(x.standby);
        return;
      }
      x.kill(x.active);
      if (!(await takeoverWithin(x, x.standby, detectBound(x))))
        x.violation('no-takeover', `${x.standby} (CLOCK_MONOTONIC offset ${offset} s) did not take over`);
      await x.sleep(800);
      await x.restart(x.active);
      // The offset node serves with a synced standby granting its lease, longer than I5's bound:
      // a node whose lease (or kernel fence) misreads its clock goes mute here, and shows.
      if (!(await x.stable())) return;
      await x.sleep(2500);
      x.note(`${x.standby} (offset) before its kill: ${await x.lease(x.standby)}`);
      x.kill(x.standby);
      if (!(await takeoverWithin(x, x.active, detectBound(x))))
        x.violation('no-takeover', `${x.active} did not take over back from the offset node`);
      await x.sleep(300);
      await x.restart(x.standby);
    },
  },
];

export const SCENARIO_NAMES = SCENARIOS.map((s) => s.name);
/** The scenarios a pair without an arbiter runs. */
export const PLAIN_SCENARIOS = SCENARIOS.filter((s) => !s.arbiter);
