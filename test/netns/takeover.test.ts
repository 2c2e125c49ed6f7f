/**
 * Take-over on a real network (DESIGN.md I1-I5; issue 5's acceptance): two `takeover node`
 * processes, each with a TAP on one bridge, share a VIP; Linux kernel clients in their own
 * namespace stream to it; the active is killed with SIGKILL mid-transfer; the standby takes
 * over. Every byte must arrive, with no RST in the client's capture. Then the killed node is
 * restarted, joins as standby, catches up while traffic flows, and takes over again when the
 * new active is killed.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HTTP_PATTERN } from '../../examples/http.ts';
import type { NodeStatus } from '../../src/cli/node.ts';
import { queryStatus } from '../../src/cli/status.ts';
import { fillPattern } from '../../src/link/sim/pattern.ts';
import { launch, whenReady } from './apps/launch.ts';
import {
  expertSummary,
  type Host,
  rootSkipReason,
  type Spawned,
  type TapHost,
  Topology,
  waitUntil,
} from './harness.ts';

const skip = rootSkipReason(['curl']);
const VIP = '198.18.0.100';
const ROOT = new URL('../../', import.meta.url).pathname;
const REPETITIONS = Number(process.env.TAKEOVER_REPS ?? 3);

interface ClientResult {
  ok: boolean;
  bytes: number;
  maxGapMs: number;
  errors: string[];
}

function patternSha(stream: number, n: number): string {
  const h = createHash('sha256');
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (let o = 0; o < n; o += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, n - o));
    fillPattern(stream, o, part);
    h.update(part);
  }
  return h.digest('hex');
}

class Pair {
  readonly procs = new Map<string, Spawned>();
  constructor(
    readonly taps: Map<string, TapHost>,
    readonly dir: string,
  ) {}

  config(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  socket(name: string): string {
    return join(this.dir, `${name}.sock`);
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
        this.config(name),
      ]);
    this.procs.set(name, p);
    await whenReady(p, `node ${name}`);
  }

  async status(name: string): Promise<NodeStatus> {
    try {
      return await queryStatus(this.socket(name));
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${this.logs()}`);
    }
  }

  /** Waits until `name` is a synced standby (it could take over). */
  async synced(name: string): Promise<void> {
    await waitUntil(
      `${name} to be a synced standby`,
      async () => {
        const s = await this.status(name).catch(() => undefined);
        return s?.role === 'standby' && s.synced;
      },
      { timeoutMs: 20_000, tries: 400, intervalMs: 50 },
    );
  }

  kill(name: string): void {
    const p = this.procs.get(name)!;
    process.kill(-p.pid!, 'SIGKILL');
  }

  logs(): string {
    return [...this.procs.entries()]
      .map(([n, p]) => `--- ${n}\n${p.output().stderr.slice(-3000)}`)
      .join('\n');
  }
}

describe('take-over on a real network: kernel clients, kill -9 of the active', { skip }, () => {
  let topo: Topology;
  let client: Host;
  let pair: Pair;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'takeover-ha-'));
    topo = await Topology.create({ prefix: 'tko' });
    client = await topo.addHost('client', { ipv4: '198.18.0.1/24', offloads: false });
    const a = await topo.addTapHost('a');
    const b = await topo.addTapHost('b');
    // The replication link: kernel TCP between the two node processes (both in the switch
    // namespace, where their TAPs live), on addresses of their own.
    await a.exec('ip', ['link', 'set', 'lo', 'up']);
    await a.exec('ip', ['addr', 'add', '198.18.1.1/32', 'dev', 'lo']);
    await a.exec('ip', ['addr', 'add', '198.18.1.2/32', 'dev', 'lo']);
    writeFileSync(join(dir, 'key'), randomBytes(32).toString('hex'));
    const nodes = [
      ['a', a, 'active', '198.18.1.1', '198.18.1.2'],
      ['b', b, 'standby', '198.18.1.2', '198.18.1.1'],
    ] as const;
    for (const [name, tap, role, me, peer] of nodes) {
      const cfg = {
        nodeId: name,
        role,
        tap: { name: tap.tap },
        vip: [`${VIP}/24`],
        replication: {
          listen: `${me}:7400`,
          peer: `${peer}:7400`,
          keyFile: './key',
          heartbeatMs: 20,
          timeoutMs: 100,
        },
        app: { module: join(ROOT, 'examples/all.ts') },
        status: { socket: join(dir, `${name}.sock`) },
      };
      writeFileSync(join(dir, `${name}.json`), JSON.stringify(cfg, null, 2));
    }
    pair = new Pair(
      new Map([
        ['a', a],
        ['b', b],
      ]),
      dir,
    );
    await pair.start('a');
    await pair.start('b');
    await pair.synced('b');
  });

  after(async () => {
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the clients, kills `victim` once they are flowing, checks everything; returns stalls. */
  async function takeoverRound(victim: string, survivor: string, round: number): Promise<number[]> {
    const pcap = join(dir, `client-${round}.pcap`);
    const cap = await client.capture(pcap, { snaplen: 128 });
    const ECHO_BYTES = Number(process.env.TAKEOVER_ECHO_MB ?? 100) * 1e6;
    const CURL_BYTES = 50_000_000;
    const echo = launch(client, 'ha-client.ts', ['echo', VIP, '7', String(ECHO_BYTES)]);
    const rr = launch(client, 'ha-client.ts', ['http', VIP, '80', '200', '20', '2000']);
    const curl = client.spawn('curl', [
      '-sS',
      '--max-time',
      '120',
      '-o',
      join(dir, `curl-${round}`),
      `http://${VIP}/bytes/${CURL_BYTES}`,
    ]);
    await waitUntil(
      'the clients to be flowing',
      () => echo.output().stdout.includes('started') && rr.output().stdout.includes('started'),
      {
        timeoutMs: 20_000,
        tries: 400,
        intervalMs: 50,
      },
    );
    await new Promise((r) => setTimeout(r, 300));
    const before = await pair.status(victim);
    pair.kill(victim);
    const results: ClientResult[] = [];
    for (const [p, what] of [
      [echo, 'echo client'],
      [rr, 'http clients'],
    ] as const) {
      let timer: NodeJS.Timeout | undefined;
      const { code } = await Promise.race([
        p.exited,
        new Promise<{ code: number }>((_r, rej) => {
          timer = setTimeout(
            () => rej(new Error(`${what} did not finish in 180 s\n${pair.logs()}`)),
            180_000,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      const line = p.output().stdout.trim().split('\n').pop() ?? '';
      let r: ClientResult;
      try {
        r = JSON.parse(line) as ClientResult;
      } catch {
        assert.fail(
          `${what} printed no result (exit ${code}): ${p.output().stderr.slice(-2000)}\n${pair.logs()}`,
        );
      }
      assert.ok(r.ok, `${what}: ${r.errors.join('; ')}\n${pair.logs()}`);
      results.push(r);
    }
    const c = await curl.exited;
    assert.equal(c.code, 0, `curl: ${curl.output().stderr}\n${pair.logs()}`);
    const got = createHash('sha256');
    got.update(await import('node:fs').then((fs) => fs.readFileSync(join(dir, `curl-${round}`))));
    assert.equal(got.digest('hex'), patternSha(HTTP_PATTERN, CURL_BYTES), 'curl body sha256');
    const { dropped } = await cap.stop();
    const s = await expertSummary(pcap, { timeoutMs: 120_000 });
    assert.equal(s.resets, 0, `RST in the client's capture: ${s.report}`);
    assert.equal(s.malformed, 0, s.report);
    if (!dropped) assert.equal(s.badChecksums, 0, s.report);
    const after = await pair.status(survivor);
    assert.equal(after.role, 'active');
    assert.ok(after.epoch > before.epoch, `epoch moved on (${before.epoch} -> ${after.epoch})`);
    assert.ok(after.lastTakeover && after.lastTakeover.connections > 0, JSON.stringify(after));
    return results.map((r) => r.maxGapMs);
  }

  test(`kill -9 of the active under echo, 200 HTTP keep-alive connections and curl; restart, fail back (${REPETITIONS} rounds)`, async () => {
    let victim = 'a';
    let survivor = 'b';
    const stalls: number[] = [];
    for (let round = 1; round <= REPETITIONS; round++) {
      stalls.push(...(await takeoverRound(victim, survivor, round)));
      // The killed node comes back, joins as standby (no preemption) and catches up.
      await pair.start(victim);
      await pair.synced(victim);
      assert.equal((await pair.status(survivor)).role, 'active');
      [victim, survivor] = [survivor, victim];
    }
    console.log(`take-over stalls seen by clients (ms): ${stalls.join(', ')}`);
  });
});
