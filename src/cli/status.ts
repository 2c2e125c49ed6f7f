/**
 * `takeover status`: asks a running node (its unix socket) for its role, epoch, connections,
 * replication lag and last take-over, and prints them (or the JSON with `--json`).
 */

import { connect } from 'node:net';
import { parseArgs } from 'node:util';
import { ConfigError, loadNodeConfig } from './config.ts';
import { flagError } from './flags.ts';
import type { NodeStatus } from './node.ts';

/** Reads the status from the socket at `path`; rejects with a sentence when nobody answers. */
export function queryStatus(path: string, timeoutMs = 2000): Promise<NodeStatus> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms.`));
    }, timeoutMs);
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
      try {
        resolve(JSON.parse(text) as NodeStatus);
      } catch {
        reject(new Error(`${path} answered something that is not a status.`));
      }
    });
  });
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
  const json = values.json === true;
  let path = values.socket;
  if (values.config !== undefined) {
    const cfg = loadNodeConfig(values.config);
    if (cfg instanceof ConfigError) {
      console.error(cfg.message);
      return 2;
    }
    path = cfg.status.socket;
  }
  if (!path) {
    console.error('takeover status: say which node: --socket <path> or --config <file>.');
    return 2;
  }
  try {
    const st = await queryStatus(path);
    console.log(json ? JSON.stringify(st) : formatStatus(st));
    return 0;
  } catch (e) {
    console.error(`takeover status: ${(e as Error).message}`);
    return 1;
  }
}
