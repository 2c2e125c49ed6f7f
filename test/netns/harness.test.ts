/**
 * The real-network harness against the running kernel: hosts on the bridge talk (v4, v6, TCP), a
 * TAP port carries frames both ways, impairments bite, captures are judged, and nothing is left
 * behind, neither by destroy() after a failing test nor by a process that crashed.
 * Needs root; skips with the reason otherwise.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  expertSummary,
  type Host,
  iptablesLoss,
  python,
  rateLimit,
  rootSkipReason,
  type Spawned,
  Topology,
  waitUntil,
} from './harness.ts';

const skip = rootSkipReason(['curl', 'ping', python]);
const dir = mkdtempSync(join(tmpdir(), 'takeover-harness-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function netnsList(): Promise<string[]> {
  const out = await new Promise<string>((resolve) => {
    const p = spawn('ip', ['netns', 'list'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    p.stdout.on('data', (d) => {
      s += d;
    });
    p.on('close', () => resolve(s));
  });
  return out
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
}

/** Whether `pid` runs (a zombie waiting for its reaper does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

describe('kernel hosts on the bridge', { skip, timeout: 60_000 }, () => {
  let net: Topology;
  let a: Host;
  let b: Host;
  let server: Spawned;
  const blob = randomBytes(512 * 1024);

  before(async () => {
    net = await Topology.create();
    a = await net.addHost('a', { ipv4: '198.18.0.1/24', ipv6: 'fd00::1/64', offloads: false });
    b = await net.addHost('b', { ipv4: '198.18.0.2/24', ipv6: 'fd00::2/64', offloads: false });
    writeFileSync(join(dir, 'blob'), blob);
    server = b.spawn(python, ['-m', 'http.server', '8000', '--bind', '::', '--directory', dir]);
    await waitUntil('the http server in b to listen', async () => {
      const r = await a.exec('curl', [
        '-sS',
        '-o',
        '/dev/null',
        '--max-time',
        '1',
        'http://198.18.0.2:8000/',
      ]);
      return r.code === 0;
    });
  });
  after(() => net?.destroy());

  it('ping each other over IPv4 and IPv6', async () => {
    for (const [from, to] of [
      [a, b.ipv4],
      [a, b.ipv6],
      [b, a.ipv4],
      [b, a.ipv6],
    ] as const) {
      const r = await from.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', to!], { timeoutMs: 5000 });
      assert.equal(r.code, 0, `${from.name} -> ${to}: ${r.stdout}${r.stderr}`);
    }
  });

  it('carry a TCP transfer (curl from python http.server) over both families', async () => {
    for (const url of ['http://198.18.0.2:8000/blob', 'http://[fd00::2]:8000/blob']) {
      const out = join(dir, `got-${url.includes('[') ? 6 : 4}`);
      const r = await a.exec('curl', ['-sS', '--max-time', '10', '-o', out, url], { timeoutMs: 12_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha(readFileSync(out)), sha(blob));
    }
  });

  it('capture a clean TCP exchange: no error, no RST, nothing unseen or malformed, checksums right', async () => {
    const file = join(dir, 'clean.pcap');
    const cap = await a.capture(file);
    const r = await a.exec('curl', [
      '-sS',
      '--max-time',
      '10',
      '-o',
      '/dev/null',
      'http://198.18.0.2:8000/blob',
    ]);
    assert.equal(r.code, 0, r.stderr);
    await cap.stop();
    const s = await expertSummary(file);
    assert.ok(s.frames >= 20, `only ${s.frames} frames captured`);
    const problems = { ...s, messages: undefined, report: undefined };
    assert.deepEqual(
      [s.errors, s.resets, s.ackedUnseen, s.malformed, s.badChecksums],
      [0, 0, 0, 0, 0],
      `${JSON.stringify(problems)}\n${s.report}`,
    );
  });

  it('and the same judge sees a RST, and the partial checksums of a host with offloads on', async () => {
    // c keeps the default offloads: the kernel leaves TCP checksums for a "hardware" that a
    // veth never has, so a capture on c's side shows them wrong.
    const c = await net.addHost('c', { ipv4: '198.18.0.3/24' });
    const file = join(dir, 'rst.pcap');
    const cap = await c.capture(file, { filter: 'tcp port 9' });
    const r = await c.exec('curl', ['-sS', '--max-time', '3', 'http://198.18.0.2:9/']);
    assert.notEqual(r.code, 0);
    await cap.stop();
    const s = await expertSummary(file);
    assert.equal(s.frames, 2, s.report); // SYN, RST+ACK
    assert.equal(s.resets, 1, s.report);
    assert.ok(
      s.messages.some((m) => m.severity === 'warning' && /Connection reset/.test(m.message)),
      JSON.stringify(s.messages),
    );
    assert.equal(s.badChecksums, 1, s.report); // the SYN; b's RST comes with offloads off
    assert.ok(s.errors >= 1, s.report);
  });

  it('iptablesLoss drops at the given rate, and its undo restores the path', async () => {
    const ping = async (n: number) => {
      const r = await a.exec('ping', ['-c', String(n), '-i', '0.005', '-W', '1', '-q', b.ipv4!], {
        timeoutMs: 10_000,
      });
      const m = /(\d+(?:\.\d+)?)% packet loss/.exec(r.stdout);
      assert.ok(m, r.stdout + r.stderr);
      return Number(m[1]);
    };
    const undoAll = await iptablesLoss(b, 1);
    assert.equal(await ping(3), 100);
    await undoAll();
    const undoHalf = await iptablesLoss(b, 0.5, { direction: 'in' });
    const half = await ping(200);
    assert.ok(half > 30 && half < 70, `loss ${half}% with probability 0.5`);
    await undoHalf();
    assert.equal(await ping(3), 0);
  });

  it('rateLimit slows what leaves an interface', async () => {
    const fetch = async () => {
      const r = await a.exec(
        'curl',
        ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{time_total}', 'http://198.18.0.2:8000/blob'],
        {
          timeoutMs: 12_000,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      return Number(r.stdout);
    };
    const undo = await rateLimit(b, 'eth0', 4); // 512 KiB at 4 Mbit/s: about 1 s
    const slow = await fetch();
    await undo();
    const fast = await fetch();
    assert.ok(slow > 0.7, `512 KiB at 4 Mbit/s took ${slow} s`);
    assert.ok(fast < slow / 3, `without the limit ${fast} s, with it ${slow} s`);
  });

  it('a TAP host: its TAP is a bridge port, and frames a process writes to it reach the kernel hosts', async () => {
    const stack = await net.addTapHost('stack');
    const ports = await net.switch.exec('ip', ['-o', 'link', 'show', 'master', net.bridge]);
    assert.match(ports.stdout, new RegExp(`: ${stack.tap}[:@]`));
    assert.ok(stack.tap.length <= 15);
    // Opens the TAP by name and asks for a's MAC (ARP), as our stack will; prints the answer.
    const arp = `
import fcntl, os, select, struct, sys, time
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x0002 | 0x1000))  # TUNSETIFF, TAP, NO_PI
me, ip, target = bytes.fromhex('020000000099'), bytes([198, 18, 0, 99]), bytes([198, 18, 0, 1])
req = b'\\xff' * 6 + me + b'\\x08\\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + me + ip + bytes(6) + target
deadline = time.time() + 5
for i in range(25):
    if time.time() > deadline: break
    os.write(fd, req)
    if select.select([fd], [], [], 0.2)[0]:
        f = os.read(fd, 2048)
        if f[0:6] == me and f[12:14] == b'\\x08\\x06' and f[20:22] == b'\\x00\\x02' and f[28:32] == target:
            print(f[6:12].hex(':')); sys.exit(0)
sys.exit(1)
`;
    const r = await stack.exec(python, ['-c', arp, stack.tap], { timeoutMs: 8000 });
    assert.equal(r.code, 0, `no ARP reply through ${stack.tap}: ${r.stderr}`);
    assert.equal(r.stdout.trim(), a.mac);
    // Persistent: the TAP outlives the process that opened it.
    const still = await net.switch.exec('ip', ['link', 'show', stack.tap]);
    assert.equal(still.code, 0, still.stderr);
  });

  it('refuses addresses outside the test ranges, and names that would not fit', async () => {
    await assert.rejects(net.addHost('d', { ipv4: '10.0.0.1/24' }), /outside 198\.18\.0\.0\/15/);
    await assert.rejects(net.addHost('d', { ipv6: 'fd::1/64' }), /outside fd00::\/8/);
    await assert.rejects(net.addHost('d', { ipv6: '2001:db8::1/64' }), /outside fd00::\/8/);
    await assert.rejects(net.addHost('a'), /already has a host named 'a'/);
    await assert.rejects(net.addHost('no-dash'), /1 to 24 letters/);
    await assert.rejects(Topology.create({ prefix: 'TooLong' }), /prefix must be/);
  });

  it('the server is still the one started in before()', () => {
    assert.equal(server.exitCode, null);
  });
});

describe('cleanup', { skip, timeout: 60_000 }, () => {
  it('destroy() after a test that threw removes every namespace and stops every process', async () => {
    const net = await Topology.create({ prefix: 'tkd' });
    let tracked: Spawned | undefined;
    let stray: number | undefined;
    await assert.rejects(async () => {
      try {
        const h = await net.addHost('x', { ipv4: '198.18.0.5/24' });
        await net.addTapHost('y');
        tracked = h.spawn('sleep', ['1000']);
        // Started behind the harness's back: destroy() still finds it in the namespace.
        const p = spawn('ip', ['netns', 'exec', h.ns, 'sleep', '1000'], { stdio: 'ignore', detached: true });
        p.unref();
        stray = p.pid;
        assert.equal((await netnsList()).filter((n) => n.startsWith(net.id)).length, 2);
        throw new Error('the test failed');
      } finally {
        await net.destroy();
      }
    }, /the test failed/);
    assert.deepEqual(
      (await netnsList()).filter((n) => n.startsWith(net.id)),
      [],
    );
    assert.ok(tracked?.pid && !alive(tracked.pid), 'the spawned process survived destroy()');
    await waitUntil('the stray process to be reaped', () => !alive(stray!), {
      timeoutMs: 2000,
      intervalMs: 20,
    });
    await net.destroy(); // twice is fine
  });

  for (const how of ['SIGTERM', 'an uncaught exception'] as const) {
    it(`a test process that dies of ${how} leaves no namespace and no process behind`, async () => {
      const script = join(dir, `crash-${how === 'SIGTERM' ? 'term' : 'throw'}.mts`);
      writeFileSync(
        script,
        `import { Topology } from ${JSON.stringify(new URL('./harness.ts', import.meta.url).pathname)};
const net = await Topology.create({ prefix: 'tkc' });
const h = await net.addHost('x');
const p = h.spawn('sleep', ['1000']);
await new Promise((r) => setTimeout(r, 100));
console.log(net.id, p.pid);
${how === 'SIGTERM' ? "process.kill(process.pid, 'SIGTERM');" : "throw new Error('crash');"}
setTimeout(() => {}, 30_000);
`,
      );
      const child = spawn(process.execPath, ['--import', 'tsx', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        err += d;
      });
      const ended = await Promise.race([
        new Promise<{ code: number | null; signal: string | null }>((resolve) =>
          child.on('close', (code, signal) => resolve({ code, signal })),
        ),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000).unref()),
      ]);
      if (!ended) child.kill('SIGKILL');
      assert.ok(ended, 'the crashing process did not end within 20 s');
      if (how === 'SIGTERM') assert.equal(ended.signal, 'SIGTERM', err);
      else assert.equal(ended.code, 1, err);
      const [id, pid] = out.trim().split(' ');
      assert.match(id ?? '', /^tkc/, `no id printed: ${out} ${err}`);
      assert.deepEqual(
        (await netnsList()).filter((n) => n.startsWith(id)),
        [],
      );
      assert.ok(Number(pid) > 1, out);
      assert.equal(alive(Number(pid)), false, 'the spawned process survived its parent');
    });
  }
});
