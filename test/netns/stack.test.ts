/**
 * Our stack against the Linux kernel over a real TAP device: the kernel is the peer our users'
 * clients run, so it is the judge. A server process on our stack (apps/stack-server.ts) in the
 * switch namespace; kernel clients (curl, python) in their own namespace; the client's capture
 * judged by tshark.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bodyChunk } from './apps/body.ts';
import { launch, startApp } from './apps/launch.ts';
import {
  expertSummary,
  type Host,
  python,
  rootSkipReason,
  type Spawned,
  Topology,
  waitUntil,
} from './harness.ts';

const skip = rootSkipReason(['curl']);
const SERVER_MAC = '02:00:00:00:00:02';

function expectedSha(n: number): string {
  const h = createHash('sha256');
  for (let o = 0; o < n; o += 1 << 20) h.update(bodyChunk(o, Math.min(1 << 20, n - o)));
  return h.digest('hex');
}

/**
 * The client-side capture judged by tshark (docs/ARCHITECTURE.md §11): no RST, no ACKed
 * unseen segment, no malformed frame, no bad checksum. A capture that lost packets itself cannot
 * tell an unseen segment from a dropped one, so that one check needs a lossless capture.
 */
async function assertCleanCapture(pcap: string, dropped: number | undefined): Promise<void> {
  const s = await expertSummary(pcap, { timeoutMs: 120_000 });
  assert.equal(s.resets, 0, s.report);
  if (!dropped) assert.equal(s.ackedUnseen, 0, s.report);
  if (s.malformed > 0) {
    // Say which frames, so a rare failure can be understood from the log alone.
    const v = spawnSync('tshark', ['-r', pcap, '-Y', '_ws.malformed', '-V'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.fail(`${s.malformed} malformed frame(s):\n${(v.stdout ?? '').slice(0, 4000)}`);
  }
  assert.equal(s.badChecksums, 0, s.report);
}

describe('our stack with the Linux kernel as the peer', { skip }, () => {
  let topo: Topology;
  let client: Host;
  let server: Spawned;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'takeover-stack-'));
    topo = await Topology.create({ prefix: 'tks' });
    client = await topo.addHost('client', { ipv4: '198.18.0.1/24', ipv6: 'fd00::1/64', offloads: false });
    const tap = await topo.addTapHost('server');
    server = await startApp(
      tap,
      'stack-server.ts',
      [tap.tap, SERVER_MAC, '198.18.0.2/24', 'fd00::2/64'],
      'the server on our stack',
    );
  });

  after(async () => {
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('ping over IPv4 and IPv6 (ARP and NDP resolve both ways)', async () => {
    const v4 = await client.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', '198.18.0.2'], {
      timeoutMs: 10_000,
    });
    assert.equal(v4.code, 0, v4.stdout + v4.stderr + server.output().stderr);
    const v6 = await client.exec('ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', 'fd00::2'], {
      timeoutMs: 10_000,
    });
    assert.equal(v6.code, 0, v6.stdout + v6.stderr);
  });

  test('curl downloads 100 MB over HTTP from our stack, sha256 matches, capture is clean', async () => {
    const n = 100_000_000;
    const pcap = join(dir, 'curl.pcap');
    const cap = await client.capture(pcap, { filter: 'tcp port 8080', snaplen: 128 });
    const r = await client.exec(
      'sh',
      ['-c', `curl -sS --max-time 120 http://198.18.0.2:8080/bytes/${n} | sha256sum`],
      {
        timeoutMs: 130_000,
      },
    );
    const { dropped } = await cap.stop();
    assert.equal(r.code, 0, r.stderr + server.output().stderr);
    assert.equal(r.stdout.split(' ')[0], expectedSha(n));
    await assertCleanCapture(pcap, dropped);
  });

  test('1,000 keep-alive requests on one connection', async () => {
    const cfg = join(dir, 'urls.txt');
    const lines = Array.from(
      { length: 1000 },
      (_, i) => `url = "http://198.18.0.2:8080/bytes/${100 + i}"\noutput = "/dev/null"`,
    );
    await client.exec('sh', ['-c', `cat > ${cfg}`], { input: lines.join('\n') });
    const r = await client.exec(
      'curl',
      ['-sS', '--max-time', '60', '-K', cfg, '-w', '%{http_code} %{num_connects}\n'],
      {
        timeoutMs: 70_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split('\n');
    assert.equal(rows.length, 1000);
    assert.ok(rows.every((x) => x.startsWith('200 ')));
    const connects = rows.reduce((a, x) => a + Number(x.split(' ')[1]), 0);
    assert.equal(connects, 1, 'all requests on one connection');
  });

  test('our stack as the client downloads 100 MB from a kernel server, byte-exact', async () => {
    const origin = await topo.addHost('origin', { ipv4: '198.18.0.3/24', offloads: false });
    await startApp(origin, 'kernel-server.ts', [], 'the kernel server');
    const tap = await topo.addTapHost('dl');
    const n = 100_000_000;
    const pcap = join(dir, 'client.pcap');
    const cap = await origin.capture(pcap, { filter: 'tcp port 19', snaplen: 128 });
    const c = launch(tap, 'stack-client.ts', [
      tap.tap,
      '02:00:00:00:00:04',
      '198.18.0.4/24',
      '198.18.0.3',
      String(n),
    ]);
    await waitUntil(
      'the download to finish',
      () => /^\d+ [0-9a-f]{64}/m.test(c.output().stdout) || c.exitCode !== null,
      {
        timeoutMs: 120_000,
        tries: 1200,
      },
    );
    const { dropped } = await cap.stop();
    const [count, sha] = c.output().stdout.trim().split(' ');
    assert.equal(Number(count), n, c.output().stderr);
    assert.equal(sha, expectedSha(n));
    await assertCleanCapture(pcap, dropped);
  });

  test('a connection to a closed port is refused with a RST', async () => {
    const r = await client.exec(
      python,
      [
        '-c',
        'import socket\ntry:\n socket.create_connection(("198.18.0.2", 81), timeout=5)\nexcept ConnectionRefusedError:\n print("refused")',
      ],
      {
        timeoutMs: 10_000,
      },
    );
    assert.match(r.stdout, /refused/, r.stderr);
  });
});

/** A kernel socket streams `n` bytes both ways through our echo server; checks both directions. */
export function echoScript(addr: string, n: number): string {
  return `
import socket, hashlib, threading, random
n = ${n}
block = random.Random(1).randbytes(1 << 20)
s = socket.create_connection(("${addr}", 7), timeout=60)
got = hashlib.sha256(); count = [0]
def rd():
    while True:
        d = s.recv(1 << 20)
        if not d: break
        got.update(d); count[0] += len(d)
t = threading.Thread(target=rd); t.start()
want = hashlib.sha256(); left = n
while left > 0:
    b = block[:min(left, len(block))]; s.sendall(b); want.update(b); left -= len(b)
s.shutdown(socket.SHUT_WR); t.join(600)
assert count[0] == n, (count[0], n)
assert got.hexdigest() == want.hexdigest()
print("ok")
`;
}

interface EchoCase {
  name: string;
  addr: string;
  bytes: number;
  sysctls?: Record<string, string>;
  mtu?: number;
  fault?: string;
}

const MB = 1_000_000;
const cases: EchoCase[] = [
  { name: 'default sysctls', addr: '198.18.0.2', bytes: 200 * MB },
  {
    name: 'net.ipv4.tcp_timestamps=0',
    addr: '198.18.0.2',
    bytes: 200 * MB,
    sysctls: { 'net.ipv4.tcp_timestamps': '0' },
  },
  { name: 'net.ipv4.tcp_sack=0', addr: '198.18.0.2', bytes: 200 * MB, sysctls: { 'net.ipv4.tcp_sack': '0' } },
  {
    name: 'net.ipv4.tcp_window_scaling=0',
    addr: '198.18.0.2',
    bytes: 200 * MB,
    sysctls: { 'net.ipv4.tcp_window_scaling': '0' },
  },
  { name: 'MTU 9000', addr: '198.18.0.2', bytes: 200 * MB, mtu: 9000 },
  { name: 'IPv6', addr: 'fd00::2', bytes: 200 * MB },
  // netem is missing here: our end impairs what the client sends (as netem on its veth would).
  {
    name: 'loss 2 % + reorder 25 % + delay 10 ms',
    addr: '198.18.0.2',
    bytes: 20 * MB,
    fault: 'loss=0.02,reorder=0.25,delay=10',
  },
];

describe('200 MB both ways through our echo server, kernel client, under each condition', { skip }, () => {
  for (const c of cases) {
    test(`${c.name}: ${c.bytes / MB} MB each way byte-exact, client capture clean`, async () => {
      const topo = await Topology.create({ prefix: 'tke' });
      const dir = mkdtempSync(join(tmpdir(), 'takeover-echo-'));
      try {
        const client = await topo.addHost('client', {
          ipv4: '198.18.0.1/24',
          ipv6: 'fd00::1/64',
          offloads: false,
          mtu: c.mtu,
          sysctls: c.sysctls,
        });
        const tap = await topo.addTapHost('server', { mtu: c.mtu });
        const extra = [...(c.mtu ? ['--mtu', String(c.mtu)] : []), ...(c.fault ? ['--fault', c.fault] : [])];
        const server = await startApp(
          tap,
          'stack-server.ts',
          [tap.tap, SERVER_MAC, '198.18.0.2/24', 'fd00::2/64', ...extra],
          'the server on our stack',
        );
        const pcap = join(dir, 'echo.pcap');
        const cap = await client.capture(pcap, { filter: 'tcp port 7', snaplen: 128 });
        const r = await client.exec(python, ['-c', echoScript(c.addr, c.bytes)], { timeoutMs: 600_000 });
        const { dropped } = await cap.stop();
        assert.equal(r.code, 0, r.stdout + r.stderr + server.output().stderr);
        await assertCleanCapture(pcap, dropped);
      } finally {
        await topo.destroy();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
