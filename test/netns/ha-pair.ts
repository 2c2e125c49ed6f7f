/**
 * An active/standby pair of `takeover node` processes on the netns harness, for the take-over
 * tests and `npm run bench -- failover`: both TAPs on one bridge, the replication link over
 * kernel TCP on addresses of their own, the example apps (echo 7, download 19, HTTP 80) on the
 * VIP, and one take-over round under load from kernel clients.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HTTP_PATTERN } from '../../examples/http.ts';
import type { NodeStatus } from '../../src/cli/node.ts';
import { queryStatus } from '../../src/cli/status.ts';
import { fillPattern } from '../../src/link/sim/pattern.ts';
import { launch, whenReady } from './apps/launch.ts';
import { expertSummary, type Host, type Spawned, type TapHost, type Topology, waitUntil } from './harness.ts';

export const VIP = '198.18.0.100';
const ROOT = new URL('../../', import.meta.url).pathname;

export interface ClientResult {
  ok: boolean;
  bytes: number;
  maxGapMs: number;
  /** The longest any one connection waited for its next bytes (the stall a user sees). */
  maxConnGapMs: number;
  errors: string[];
}

export function patternSha(stream: number, n: number): string {
  const h = createHash('sha256');
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (let o = 0; o < n; o += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, n - o));
    fillPattern(stream, o, part);
    h.update(part);
  }
  return h.digest('hex');
}

export interface PairOptions {
  heartbeatMs?: number;
  timeoutMs?: number;
  mode?: 'sync' | 'async';
}

export class HaPair {
  readonly procs = new Map<string, Spawned>();
  readonly taps = new Map<string, TapHost>();
  readonly timeoutMs: number;

  private constructor(
    readonly topo: Topology,
    readonly client: Host,
    readonly dir: string,
    opts: PairOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 100;
  }

  /** Builds the network and the two configs (a: active, b: standby); starts nothing. */
  static async create(topo: Topology, dir: string, opts: PairOptions = {}): Promise<HaPair> {
    const client = await topo.addHost('client', { ipv4: '198.18.0.1/24', offloads: false });
    const pair = new HaPair(topo, client, dir, opts);
    const a = await topo.addTapHost('a');
    const b = await topo.addTapHost('b');
    await a.exec('ip', ['link', 'set', 'lo', 'up']);
    await a.exec('ip', ['addr', 'add', '198.18.1.1/32', 'dev', 'lo']);
    await a.exec('ip', ['addr', 'add', '198.18.1.2/32', 'dev', 'lo']);
    writeFileSync(join(dir, 'key'), randomBytes(32).toString('hex'));
    const nodes = [
      ['a', a, 'active', '198.18.1.1', '198.18.1.2'],
      ['b', b, 'standby', '198.18.1.2', '198.18.1.1'],
    ] as const;
    for (const [name, tap, role, me, peer] of nodes) {
      pair.taps.set(name, tap);
      const cfg = {
        nodeId: name,
        role,
        tap: { name: tap.tap },
        vip: [`${VIP}/24`],
        replication: {
          listen: `${me}:7400`,
          peer: `${peer}:7400`,
          keyFile: './key',
          mode: opts.mode ?? 'sync',
          heartbeatMs: opts.heartbeatMs ?? 20,
          timeoutMs: pair.timeoutMs,
        },
        app: { module: join(ROOT, 'examples/all.ts') },
        status: { socket: join(dir, `${name}.sock`) },
      };
      writeFileSync(join(dir, `${name}.json`), JSON.stringify(cfg, null, 2));
    }
    return pair;
  }

  async start(name: string): Promise<void> {
    const p = this.taps
      .get(name)!
      .spawn(process.execPath, [
        '--import',
        'tsx',
        join(ROOT, 'src/cli/main.ts'),
        'node',
        '--config',
        join(this.dir, `${name}.json`),
      ]);
    this.procs.set(name, p);
    await whenReady(p, `node ${name}`);
  }

  async status(name: string): Promise<NodeStatus> {
    try {
      return await queryStatus(join(this.dir, `${name}.sock`));
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${this.logs()}`);
    }
  }

  /** Waits until `name` is a synced standby (it could take over). */
  async synced(name: string): Promise<void> {
    const last = { status: undefined as NodeStatus | undefined };
    await waitUntil(
      `${name} to be a synced standby`,
      async () => {
        const s = await this.status(name).catch(() => undefined);
        last.status = s;
        return s?.role === 'standby' && s.synced;
      },
      { timeoutMs: 30_000, tries: 600, intervalMs: 50 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}; last status ${JSON.stringify(last.status)}\n${this.logs()}`);
    });
  }

  kill(name: string): void {
    const p = this.procs.get(name)!;
    process.kill(-p.pid!, 'SIGKILL');
  }

  /** The TAP's counters as the kernel keeps them (drops: frames our process did not read in time). */
  async tapStats(name: string): Promise<string> {
    const tap = this.taps.get(name)!.tap;
    const r = await this.topo.switch.exec('ip', ['-s', 'link', 'show', tap]);
    return r.stdout.replace(/\s+/g, ' ').replace(/.*?RX:/, 'RX:');
  }

  logs(): string {
    return [...this.procs.entries()]
      .map(([n, p]) => `--- ${n}\n${p.output().stderr.slice(-3000)}`)
      .join('\n');
  }

  /** Waits for a client process's JSON result line (bounded). */
  async result(p: Spawned, what: string, timeoutMs = 180_000): Promise<ClientResult> {
    let timer: NodeJS.Timeout | undefined;
    const { code } = await Promise.race([
      p.exited,
      new Promise<{ code: number }>((_r, rej) => {
        timer = setTimeout(
          () => rej(new Error(`${what} did not finish in ${timeoutMs} ms\n${this.logs()}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const line = p.output().stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as ClientResult;
    } catch {
      throw new Error(
        `${what} printed no result (exit ${code}): ${p.output().stderr.slice(-2000)}\n${this.logs()}`,
      );
    }
  }

  /**
   * One take-over under load: an echo stream both ways, 200 HTTP keep-alive connections and a
   * curl download; `victim` is killed with SIGKILL once they flow. Returns what the clients saw
   * (assertions are the caller's; nothing here throws for a failed check).
   */
  async round(victim: string, survivor: string, round: number, sizes: RoundSizes): Promise<RoundOutcome> {
    const pcap = join(this.dir, `client-${round}.pcap`);
    const cap = await this.client.capture(pcap, { snaplen: 128 });
    const echo = launch(this.client, 'ha-client.ts', ['echo', VIP, '7', String(sizes.echoBytes)]);
    const http = launch(this.client, 'ha-client.ts', [
      'http',
      VIP,
      '80',
      String(sizes.httpConnections),
      String(sizes.httpRequests),
      '2000',
    ]);
    const curlFile = join(this.dir, `curl-${round}`);
    const curl = this.client.spawn('curl', [
      '-sS',
      '--max-time',
      '170',
      '-o',
      curlFile,
      `http://${VIP}/bytes/${sizes.curlBytes}`,
    ]);
    await waitUntil(
      'the clients to be flowing',
      () => echo.output().stdout.includes('started') && http.output().stdout.includes('started'),
      { timeoutMs: 30_000, tries: 600, intervalMs: 50 },
    );
    await new Promise((r) => setTimeout(r, 300));
    const before = await this.status(victim);
    this.kill(victim);
    const failures: string[] = [];
    const clients: ClientResult[] = [];
    const gaps: string[] = [];
    for (const [p, what] of [
      [echo, 'echo client'],
      [http, 'http clients'],
    ] as const) {
      const r = await this.result(p, what).catch((e: Error) => {
        failures.push(e.message);
        return undefined;
      });
      if (r) {
        clients.push(r);
        gaps.push(`${what} ${r.maxConnGapMs} ms (any byte: ${r.maxGapMs} ms)`);
        if (!r.ok) failures.push(`${what}: ${r.errors.join('; ')}`);
      }
    }
    const c = await curl.exited;
    let curlOk = c.code === 0;
    if (!curlOk) failures.push(`curl exited ${c.code}: ${curl.output().stderr.trim()}`);
    else if (
      createHash('sha256').update(readFileSync(curlFile)).digest('hex') !==
      patternSha(HTTP_PATTERN, sizes.curlBytes)
    ) {
      curlOk = false;
      failures.push('curl: body sha256 differs');
    }
    const { dropped } = await cap.stop();
    const s = await expertSummary(pcap, { timeoutMs: 120_000 });
    if (s.resets > 0) failures.push(`${s.resets} RST in the client's capture: ${s.report}`);
    if (s.malformed > 0) failures.push(`malformed frames: ${s.report}`);
    if (!dropped && s.badChecksums > 0) failures.push(`bad checksums: ${s.report}`);
    const after = await this.status(survivor).catch(() => undefined);
    if (after?.role !== 'active') failures.push(`${survivor} is ${after?.role}, not active`);
    else if (!(after.epoch > before.epoch))
      failures.push(`epoch did not move on (${before.epoch} -> ${after.epoch})`);
    // kill -9 closes the replication socket: the survivor must have seen that, not silence.
    else if (after.lastTakeover?.cause !== 'link closed')
      failures.push(
        `${survivor} detected the take-over by ${after.lastTakeover?.cause}, not the link closing`,
      );
    if (failures.length > 0) failures.push(this.logs());
    return {
      failures,
      resets: s.resets,
      bytesVerified: clients.reduce((n, r) => n + r.bytes, 0) + (curlOk ? sizes.curlBytes : 0),
      stallMs: Math.max(0, ...clients.map((r) => r.maxConnGapMs)),
      connections: 1 + sizes.httpConnections + 1,
      restored: after?.lastTakeover?.connections ?? 0,
      nodeStallMs: after?.lastTakeover?.stallMs ?? null,
      detail: `${gaps.join(', ')}; ${process.env.HA_DEBUG ? `${survivor}'s TAP: ${await this.tapStats(survivor)}; ` : ''}${victim} had ${before.rssMB} MB resident; detected ${after?.lastTakeover?.detectionMs} ms after the last word, restored in ${after?.lastTakeover?.restoreMs} ms${
        process.env.HA_DEBUG
          ? `\n${(this.procs.get(survivor)?.output().stderr ?? '')
              .split('\n')
              .filter((l) => l.includes('take-over:'))
              .join('\n')}`
          : ''
      }`,
    };
  }
}

export interface RoundSizes {
  echoBytes: number;
  httpConnections: number;
  httpRequests: number;
  curlBytes: number;
}

export interface RoundOutcome {
  failures: string[];
  resets: number;
  bytesVerified: number;
  /** The longest any one client connection waited for its next bytes (ms). */
  stallMs: number;
  connections: number;
  restored: number;
  /** The stall as the new active's status reports it (its restored connections moving again). */
  nodeStallMs: number | null;
  /** Each client's longest gap, detection and restore times, for the log. */
  detail: string;
}

/** Asserts a round went clean. */
export function assertClean(o: RoundOutcome): void {
  assert.deepEqual(o.failures, [], o.failures.join('\n'));
}
