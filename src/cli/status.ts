/**
 * `takeover status`: asks a running node (its unix socket) for its role, epoch, connections,
 * replication lag and last take-over, and prints them (or the JSON with `--json`).
 */

import { connect } from 'node:net';
import { parseArgs } from 'node:util';
import { SWITCHOVER_NOT_YET } from '../ha/switchover.ts';
import { ConfigError, loadNodeConfig } from './config.ts';
import { flagError } from './flags.ts';
import type { NodeStatus } from './node.ts';

/** Sends one request line to the node's socket at `path`; resolves with its whole answer. */
function ask(path: string, command: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms.`));
    }, timeoutMs);
    s.on('connect', () => s.write(`${command}\n`));
    s.on('data', (d) => {
      text += d.toString();
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new Error(`cannot reach a node at ${path} (${e.code ?? e.message}): is \`takeover node\` running?`),
      );
    });
    s.on('end', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/** Reads the status from the socket at `path`; rejects with a sentence when nobody answers. */
export async function queryStatus(path: string, timeoutMs = 2000): Promise<NodeStatus> {
  const text = await ask(path, 'status', timeoutMs);
  try {
    return JSON.parse(text) as NodeStatus;
  } catch {
    throw new Error(`${path} answered something that is not a status.`);
  }
}

/**
 * Asks the node at `path` (the active) for a planned switchover; resolves with undefined once it
 * started, with the node's reason when it refused.
 */
export async function askSwitchover(path: string, timeoutMs = 2000): Promise<string | undefined> {
  const text = (await ask(path, 'switchover', timeoutMs)).trim();
  if (text === 'ok') return undefined;
  return text.startsWith('refused: ') ? text.slice('refused: '.length) : `unexpected answer: ${text}`;
}

export function formatStatus(st: NodeStatus): string {
  const lines = [
    `node        ${st.nodeId}`,
    `role        ${st.role}${st.degraded ? ' (degraded: no standby holds the connections)' : ''}`,
    `epoch       ${st.epoch}`,
    `mode        ${st.mode}`,
    `peer        ${st.peer}${st.role === 'standby' ? (st.synced ? ', synced' : ', syncing') : ''}`,
    `connections ${st.role === 'standby' ? st.mirror.connections : st.connections}`,
    `memory      ${st.rssMB} MB resident`,
  ];
  if (st.role === 'active')
    lines.push(
      `replication lsn ${st.replication.lsn}, ${st.replication.lagBatches} batch(es) awaiting the standby, ${st.replication.bytes} bytes sent`,
    );
  else lines.push(`mirror      lsn ${st.mirror.lsn}, ${st.mirror.bytes} bytes held`);
  lines.push(
    st.lastTakeover
      ? [
          `last take-over ${st.lastTakeover.at}, epoch ${st.lastTakeover.epoch}: ${st.lastTakeover.connections} connection(s) restored in ${st.lastTakeover.restoreMs} ms`,
          `            detected ${st.lastTakeover.detectionMs} ms after the active's last word (${st.lastTakeover.cause});`,
          st.lastTakeover.stallMs === null
            ? '            no peer has acknowledged output pending at the take-over yet'
            : `            ${st.lastTakeover.resumed} connection(s) with output pending had it acknowledged, the last ${st.lastTakeover.stallMs} ms after that word`,
        ].join('\n')
      : 'last take-over none',
  );
  if (st.lease)
    lines.push(
      `lease       ${st.lease.state}; kernel fence ${st.lease.kernelFence}; ${st.lease.lapses} lapse(s), ${st.lease.framesHeld} frame(s) held, ${st.lease.framesDropped} dropped`,
    );
  if (st.lastSwitchover)
    lines.push(
      `switchover  last ${st.lastSwitchover.at} at epoch ${st.lastSwitchover.epoch}: ${st.lastSwitchover.connections} connection(s) handed over after ${st.lastSwitchover.heldMs} ms of held output`,
    );
  if (st.fences?.last)
    lines.push(
      `superseded  ${st.fences.count} time(s); last ${st.fences.last.at} at epoch ${st.fences.last.epoch}: ${st.fences.last.reason} (${st.fences.last.dropped} connection(s) dropped)`,
    );
  if (st.beacons)
    lines.push(
      `beacons     ${st.beacons.sent} sent, ${st.beacons.heard} heard, ${st.beacons.refused} refused, ${st.beacons.grants} grant(s)`,
    );
  if (st.arbiter)
    lines.push(
      `arbiter     ${st.arbiter.name}: ${st.arbiter.record}`,
      `            ${st.arbiter.asked} intent(s): ${st.arbiter.won} won, ${st.arbiter.lost} lost, ${st.arbiter.unavailable} unanswered${st.arbiter.last ? `; last ${st.arbiter.last}` : ''}`,
    );
  if (st.relay) {
    for (const f of st.relay.frontends)
      lines.push(
        `frontend    ${f.name}: ${f.active} open, ${f.total} in all, ${f.refused} refused (maxconn)`,
      );
    for (const s of st.relay.servers)
      lines.push(
        `server      ${s.backend}/${s.name} ${s.address} ${s.up ? 'UP' : 'DOWN'}${s.backup ? ' (backup)' : ''}: ${s.active} open, ${s.total} in all, ${s.connectFailures} failed connect(s); checks ${s.checks.ok} ok, ${s.checks.failed} failed${s.checks.last ? ` (last ${s.checks.last})` : ''}`,
      );
    lines.push(
      `relayed     after take-overs: ${st.relay.restored.paired} session(s) paired again, ${st.relay.restored.orphaned} leg(s) without a partner reset`,
    );
  }
  if (st.isolation)
    lines.push(
      `isolation   ${st.isolation.appErrors} app error(s), ${st.isolation.socketErrors} socket error(s), ${st.isolation.restoredDropped} restored dropped, ${st.isolation.unattributed} unattributed`,
    );
  return lines.join('\n');
}

/** The status socket named by `--socket`, or by the node config of `--config`; else a sentence. */
function socketOf(cmd: string, values: { socket?: string; config?: string }): { path: string } | string {
  if (values.config !== undefined) {
    const cfg = loadNodeConfig(values.config);
    if (cfg instanceof ConfigError) return cfg.message;
    return { path: cfg.status.socket };
  }
  if (values.socket) return { path: values.socket };
  return `takeover ${cmd}: say which node: --socket <path> or --config <file>.`;
}

/** `takeover status (--socket <path> | --config <file>) [--json]`. */
export async function runStatus(argv: string[]): Promise<number> {
  let values: { socket?: string; config?: string; json?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { socket: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' } },
    }));
  } catch (e) {
    console.error(`takeover status: ${flagError(e)}; use --socket <path> or --config <file>, and --json.`);
    return 2;
  }
  const at = socketOf('status', values);
  if (typeof at === 'string') {
    console.error(at);
    return 2;
  }
  try {
    const st = await queryStatus(at.path);
    console.log(values.json === true ? JSON.stringify(st) : formatStatus(st));
    return 0;
  } catch (e) {
    console.error(`takeover status: ${(e as Error).message}`);
    return 1;
  }
}

/** How often `takeover switchover` looks at the node while it waits. */
const SWITCH_POLL_MS = 20;
/** How long a node may stay active at its epoch after accepting a switchover before it counts as given up. */
const SWITCH_GIVEN_UP_MS = 1000;
/** How often (ms) a switchover refused for a moment (SWITCHOVER_NOT_YET) is asked again. */
const SWITCH_RETRY_MS = 100;

/**
 * `takeover switchover (--socket <path> | --config <file>) [--timeout-ms N] [--json]`: asks the
 * active node to hand every connection to its standby (docs/ARCHITECTURE.md §6 "Switchover"), then
 * waits until this node is a synced standby of the new active: after that it can be stopped and
 * upgraded, and the other node switched over in turn. Exit 0 then, 1 when refused or not done
 * within the timeout, 2 on bad flags.
 */
export async function runSwitchover(argv: string[]): Promise<number> {
  let values: { socket?: string; config?: string; json?: boolean; 'timeout-ms'?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        socket: { type: 'string' },
        config: { type: 'string' },
        json: { type: 'boolean' },
        'timeout-ms': { type: 'string' },
      },
    }));
  } catch (e) {
    console.error(
      `takeover switchover: ${flagError(e)}; use --socket <path> or --config <file>, --timeout-ms N, --json.`,
    );
    return 2;
  }
  const timeoutMs = values['timeout-ms'] === undefined ? 10_000 : Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000) {
    console.error(
      'takeover switchover: --timeout-ms must be a whole number of milliseconds from 100 to 600000.',
    );
    return 2;
  }
  const at = socketOf('switchover', values);
  if (typeof at === 'string') {
    console.error(at);
    return 2;
  }
  const json = values.json === true;
  const fail = (why: string): number => {
    if (json) console.log(JSON.stringify({ ok: false, error: why }));
    else console.error(`takeover switchover: ${why}`);
    return 1;
  };
  const t0 = Date.now();
  try {
    let before = await queryStatus(at.path);
    let refused = await askSwitchover(at.path);
    // A standby rejoining (a restart, a resync after it was slow to acknowledge) is a moment's
    // wait, not a reason to give up: asked again until it is there or the timeout.
    const transient = new Set<string>(Object.values(SWITCHOVER_NOT_YET));
    let said = false;
    for (
      let i = 0;
      refused !== undefined && transient.has(refused) && Date.now() - t0 < timeoutMs && i < 100_000;
      i++
    ) {
      if (!said && !json) console.error(`takeover switchover: waiting: ${refused}`);
      said = true;
      await new Promise((r) => setTimeout(r, SWITCH_RETRY_MS));
      before = await queryStatus(at.path);
      refused = await askSwitchover(at.path);
    }
    if (refused !== undefined)
      return fail(
        `refused: ${refused}${transient.has(refused) ? ` (still, after ${Date.now() - t0} ms)` : ''}.`,
      );
    const askedAt = Date.now();
    for (let i = 0; Date.now() - t0 < timeoutMs && i < 1_000_000; i++) {
      await new Promise((r) => setTimeout(r, SWITCH_POLL_MS));
      const st = await queryStatus(at.path);
      if (st.role === 'standby' && st.epoch > before.epoch && st.synced) {
        const sw = st.lastSwitchover;
        const result = {
          ok: true,
          node: st.nodeId,
          handedEpoch: before.epoch,
          epoch: st.epoch,
          connections: sw?.connections ?? before.connections,
          heldMs: sw?.heldMs ?? null,
          syncedMs: Date.now() - askedAt,
        };
        if (json) console.log(JSON.stringify(result));
        else
          console.log(
            `switchover done: ${st.nodeId} handed ${result.connections} connection(s) at epoch ${before.epoch} (output held ${result.heldMs ?? '?'} ms); the peer is active at epoch ${st.epoch} and ${st.nodeId} is its synced standby after ${result.syncedMs} ms`,
          );
        return 0;
      }
      if (st.role === 'active' && st.epoch === before.epoch && Date.now() - askedAt > SWITCH_GIVEN_UP_MS)
        return fail(
          `${st.nodeId} is still active at epoch ${st.epoch}: the switchover was given up (see its log).`,
        );
    }
    return fail(`${before.nodeId} is not a synced standby within ${timeoutMs} ms (see both nodes' logs).`);
  } catch (e) {
    return fail((e as Error).message);
  }
}
