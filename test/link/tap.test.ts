/**
 * The TAP device against the running kernel, in a network namespace of its own (needs root; the
 * real-device tests skip saying why otherwise). The kernel is the peer: its ARP requests are read,
 * our ARP reply lands in its neighbour table, a UDP blast from it is counted frame by frame, and
 * frames we write show up in its interface counters.
 *
 * The errno-to-sentence mapping is tested directly: running `open` without CAP_NET_ADMIN is not
 * possible from a root test.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { PcapWriter, parsePcap } from '../../src/link/pcap.ts';
import { openErrorMessage } from '../../src/link/tap/errors.ts';
import { errnoName } from '../../src/link/tap/ffi.ts';
import { TapDevice, TapError } from '../../src/link/tap/index.ts';
import { ipv4FromString, macFromString, macToString, writeMac } from '../../src/wire/address.ts';
import { ARP_REPLY, ARP_REQUEST, arpReplyTo, emitArp, parseArp } from '../../src/wire/arp.ts';
import { isWireError } from '../../src/wire/error.ts';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, emitEthernetHeader, parseEthernet } from '../../src/wire/ethernet.ts';

const EPERM = 1;
const EACCES = 13;
const EBUSY = 16;
const EINVAL = 22;

describe('TAP open errors: one sentence that says what to do', () => {
  test('errno numbers have their names', () => {
    assert.equal(errnoName(EPERM), 'EPERM');
    assert.equal(errnoName(EBUSY), 'EBUSY');
    assert.equal(errnoName(99999), 'errno 99999');
  });

  test('EPERM and EACCES on open or TUNSETIFF ask for CAP_NET_ADMIN', () => {
    for (const errno of [EPERM, EACCES]) {
      const m = openErrorMessage('tk0', 'attach', errno);
      assert.match(m, /^Opening TAP device tk0 needs CAP_NET_ADMIN: run as root or grant the capability/);
      assert.match(m, /setcap cap_net_admin\+ep/);
      assert.match(m, /ip tuntap add name tk0 mode tap user/);
      assert.match(
        openErrorMessage('tk0', 'open', errno),
        /^Opening TAP device tk0 needs read-write access to \/dev\/net\/tun and CAP_NET_ADMIN: run as root, or make/,
      );
    }
    assert.match(
      openErrorMessage('tk0', 'mtu', EPERM),
      /^Setting the MTU of TAP device tk0 needs CAP_NET_ADMIN/,
    );
  });

  test('other errno values name the errno and the way out', () => {
    assert.match(openErrorMessage('tk0', 'attach', EBUSY), /EBUSY: another process has it open/);
    assert.match(openErrorMessage('tk0', 'attach', EINVAL), /EINVAL: .* not a single-queue TAP device/);
    assert.match(openErrorMessage('tk0', 'open', 2), /\/dev\/net\/tun does not exist; load the tun module/);
    assert.match(
      openErrorMessage('tk0', 'mtu', EINVAL, '70000'),
      /to 70000 failed with EINVAL: use an MTU between/,
    );
    assert.match(openErrorMessage('tk0', 'netns', 2, 'nope'), /namespace nope does not exist: create it/);
    assert.match(openErrorMessage('tk0', 'attach', 5), /^Opening TAP device tk0 failed with EIO: /);
    assert.match(openErrorMessage('tk0', 'attach', 99999), /failed with errno 99999: /);
  });

  test('every message is one line ending in a full stop', () => {
    const steps = ['open', 'attach', 'mtu', 'netns', 'eventfd'] as const;
    for (const step of steps) {
      for (let errno = 1; errno < 134; errno++) {
        const m = openErrorMessage('tk0', step, errno, 'x');
        assert.ok(!m.includes('\n') && m.endsWith('.'), `${step} ${errno}: ${m}`);
      }
    }
  });

  test('bad names and MTUs are refused before any system call', async () => {
    for (const name of ['', 'a-name-longer-than-15', 'a/b', 'a b']) {
      await assert.rejects(TapDevice.open({ name }), (e: unknown) => {
        assert.ok(e instanceof TapError);
        assert.match(e.message, /is not a valid interface name: use 1 to 15 characters/);
        return true;
      });
    }
    await assert.rejects(TapDevice.open({ name: 'tk0', mtu: 20 }), /MTU 20 for TAP device tk0 is invalid/);
  });
});

// ---- real device ----------------------------------------------------------------------------

function whyNot(): string | undefined {
  if (process.platform !== 'linux') return 'TAP devices are Linux only';
  if (process.getuid?.() !== 0) return 'needs root (it creates a network namespace and TAP devices)';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun does not exist';
  if (spawnSync('ip', ['-V'], { stdio: 'ignore' }).status !== 0) return 'iproute2 (ip) is not installed';
  // The kernel's ARP and IPv4 towards the device are provoked with ping (Debian's iputils-ping).
  if (spawnSync('sh', ['-c', 'command -v ping'], { stdio: 'ignore' }).status !== 0)
    return 'ping (iputils-ping) is not installed';
  return undefined;
}
const skip = whyNot();
const ns = `tkt-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const children = new Set<ChildProcess>();

/** Runs `ip` (short configuration commands); throws with its stderr when it fails. */
function ip(...args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.stdout;
}

/** Runs a command inside the namespace without blocking the event loop (the reader delivers meanwhile). */
function inNs(
  cmd: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => {
      stdout += d;
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Waits until `cond()` holds, polling every 10 ms; fails after `ms`. */
async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function linkStats(dev: string): { rxPackets: number; txPackets: number; txDropped: number; mtu: number } {
  const j = JSON.parse(ip('-n', ns, '-s', '-j', 'link', 'show', 'dev', dev))[0];
  return {
    rxPackets: j.stats64.rx.packets,
    txPackets: j.stats64.tx.packets,
    txDropped: j.stats64.tx.dropped,
    mtu: j.mtu,
  };
}

function kernelMac(dev: string): number {
  return macFromString(JSON.parse(ip('-n', ns, '-j', 'link', 'show', 'dev', dev))[0].address)!;
}

/** Address 198.18.0.1/24 on `dev` (the kernel's side), up, IPv6 off so that only our traffic flows. */
function configure(dev: string): void {
  ip('-n', ns, 'link', 'set', dev, 'txqueuelen', '10000');
  ip('netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`);
  ip('-n', ns, 'addr', 'add', '198.18.0.1/24', 'dev', dev);
  ip('-n', ns, 'link', 'set', dev, 'up');
}

const OUR_MAC = macFromString('02:00:5e:00:00:02')!;
const KERNEL_IP = ipv4FromString('198.18.0.1')!;
const OUR_IP = ipv4FromString('198.18.0.2')!;

describe('TapDevice on a real TAP in a network namespace', { skip }, () => {
  before(() => {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  });
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', ns], { timeout: 10_000 });
  });

  test('reads the kernel ARP requests; the kernel learns our ARP reply and sends to our MAC', async () => {
    const pcap = new PcapWriter();
    const tap = await TapDevice.open({ name: 'tka', netns: ns, pcap });
    try {
      assert.equal(tap.name, 'tka');
      assert.equal(tap.mtu, 1500);
      const requests: Uint8Array[] = [];
      const toUs: Uint8Array[] = [];
      tap.onReceive((frames) => {
        for (const f of frames) {
          const eth = parseEthernet(f);
          if (isWireError(eth)) continue;
          if (eth.etherType === ETHERTYPE_ARP) {
            const a = parseArp(eth.payload);
            if (isWireError(a) || a.op !== ARP_REQUEST || a.targetIp !== OUR_IP) continue;
            requests.push(f);
            // Answer as the owner of 198.18.0.2: an ARP reply, padded to the 60-byte minimum.
            const reply = new Uint8Array(60);
            emitEthernetHeader({ dst: eth.src, src: OUR_MAC, vlans: [], etherType: ETHERTYPE_ARP }, reply, 0);
            emitArp(arpReplyTo(a, OUR_MAC), reply, 14);
            tap.send(reply);
          } else if (eth.etherType === ETHERTYPE_IPV4 && eth.dst === OUR_MAC) {
            toUs.push(f);
          }
        }
      });
      configure('tka');
      const ping = inNs(['ping', '-c', '3', '-i', '0.2', '-W', '1', '198.18.0.2'], 10_000);
      await until('an ARP request for 198.18.0.2', () => requests.length > 0);
      await until('an IPv4 frame sent to our MAC', () => toUs.length > 0);
      await ping;

      const eth = parseEthernet(requests[0]);
      assert.ok(!isWireError(eth));
      const req = parseArp(eth.payload);
      assert.ok(!isWireError(req));
      assert.equal(req.op, ARP_REQUEST);
      assert.equal(req.senderIp, KERNEL_IP);
      assert.equal(req.senderMac, kernelMac('tka'));
      assert.equal(eth.src, kernelMac('tka'));
      const neigh = ip('-n', ns, 'neigh', 'show', '198.18.0.2', 'dev', 'tka');
      assert.match(neigh, new RegExp(`lladdr ${macToString(OUR_MAC)}`));
      assert.equal(tap.counters.framesOut, requests.length);
      assert.equal(tap.counters.drops, 0);
      assert.equal(linkStats('tka').rxPackets, tap.counters.framesOut);
    } finally {
      await tap.close();
    }
    // Everything in and out was captured; the replies are ours byte for byte.
    const file = parsePcap(pcap.close());
    assert.ok(!isWireError(file));
    assert.equal(file.records.length, tap.counters.framesIn + tap.counters.framesOut);
    const replies = file.records.filter((r) => {
      const e = parseEthernet(r.frame);
      if (isWireError(e) || e.etherType !== ETHERTYPE_ARP) return false;
      const a = parseArp(e.payload);
      return !isWireError(a) && a.op === ARP_REPLY && a.senderMac === OUR_MAC;
    });
    assert.equal(replies.length, tap.counters.framesOut);
    const now = Date.now() * 1000;
    for (const r of file.records) assert.ok(Math.abs(r.tsUs - now) < 60e6, 'wall-clock timestamps');
  });

  test('close stops the reader at once and a non-persistent TAP disappears with it', async () => {
    const tap = await TapDevice.open({ name: 'tkc', netns: ns });
    let calls = 0;
    tap.onReceive(() => calls++);
    assert.equal(linkStats('tkc').mtu, 1500);
    const t0 = performance.now();
    await tap.close();
    const ms = performance.now() - t0;
    assert.ok(ms < 500, `close took ${ms} ms`);
    assert.equal(spawnSync('ip', ['-n', ns, 'link', 'show', 'tkc'], { stdio: 'ignore' }).status, 1);
    tap.send(new Uint8Array(60));
    assert.equal(tap.counters.drops, 1, 'send after close is a drop');
    assert.equal(calls, 0);
    await tap.close(); // idempotent
  });

  test('attaches to a persistent TAP from ip tuntap, sets its MTU, refuses a second opener, and leaves it behind', async () => {
    ip('-n', ns, 'tuntap', 'add', 'name', 'tkp', 'mode', 'tap');
    const tap = await TapDevice.open({ name: 'tkp', netns: ns, mtu: 9000 });
    try {
      assert.equal(tap.mtu, 9000);
      assert.equal(linkStats('tkp').mtu, 9000);
      await assert.rejects(TapDevice.open({ name: 'tkp', netns: ns }), (e: unknown) => {
        assert.ok(e instanceof TapError);
        assert.equal(e.code, 'EBUSY');
        assert.equal(
          e.message,
          'Opening TAP device tkp failed with EBUSY: another process has it open; stop that process or pick another name.',
        );
        return true;
      });
    } finally {
      await tap.close();
    }
    assert.equal(linkStats('tkp').mtu, 9000, 'still there');
    await assert.rejects(
      TapDevice.open({ name: 'tkq', netns: `${ns}-missing` }),
      /does not exist: create it/,
    );
  });

  test('without privileges, open rejects with the sentence and no koffi stack', async (t) => {
    if (spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status !== 0)
      return t.skip('setpriv is not installed');
    const entry = new URL('../../src/link/tap/index.ts', import.meta.url).pathname;
    const script = `const { TapDevice } = await import(${JSON.stringify(entry)});
try { await TapDevice.open({ name: 'tkperm' }); console.log('opened'); }
catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }`;
    const r = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '--inh-caps=-all',
        process.execPath,
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        script,
      ],
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, HOME: '/tmp' } },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim());
    assert.equal(out.name, 'TapError');
    // /dev/net/tun is 0600 on some systems (EACCES) and 0666 on most (then TUNSETIFF says EPERM).
    assert.ok(out.code === 'EACCES' || out.code === 'EPERM', out.code);
    assert.match(out.message, /^Opening TAP device tkperm needs .*CAP_NET_ADMIN: run as root/);
    assert.ok(!out.message.includes('\n'));
  });

  test('writes: queued frames leave at the end of the turn; bad frames and a down link are drops', async () => {
    const tap = await TapDevice.open({ name: 'tkw', netns: ns });
    try {
      const frame = new Uint8Array(60);
      emitEthernetHeader({ dst: 0xffff_ffff_ffff, src: OUR_MAC, vlans: [], etherType: 0x88b5 }, frame, 0);
      tap.send(frame); // link down: the kernel refuses with EIO
      tap.flush();
      assert.equal(tap.counters.drops, 1);
      assert.equal(tap.lastError, 'EIO');
      configure('tkw');
      const base = linkStats('tkw').rxPackets;
      tap.send(frame);
      frame.fill(0); // the device copied it
      assert.equal(tap.counters.framesOut, 0, 'not written before the turn ends');
      await new Promise((r) => setImmediate(r));
      assert.equal(tap.counters.framesOut, 1);
      tap.send(new Uint8Array(13));
      tap.send(new Uint8Array(tap.mtu + 23));
      assert.equal(tap.counters.drops, 3);
      await until('the kernel counting the frame', () => linkStats('tkw').rxPackets === base + 1);
    } finally {
      await tap.close();
    }
  });

  test('throughput: reads every frame of a kernel UDP blast, writes a burst the kernel counts', async (t) => {
    const tap = await TapDevice.open({ name: 'tkb', netns: ns });
    try {
      let udp = 0;
      let first = 0;
      let last = 0;
      tap.onReceive((frames) => {
        for (const f of frames) {
          // IPv4, UDP (protocol 17), to 198.18.0.2.
          if (f.length >= 34 && f[12] === 0x08 && f[13] === 0 && f[23] === 17 && f[33] === 2) {
            if (udp === 0) first = performance.now();
            udp++;
            last = performance.now();
          }
        }
      });
      configure('tkb');
      ip(
        '-n',
        ns,
        'neigh',
        'add',
        '198.18.0.2',
        'lladdr',
        macToString(OUR_MAC),
        'dev',
        'tkb',
        'nud',
        'permanent',
      );
      const sent = 200_000;
      const py = `import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d = b'x' * 64
n = 0
for i in range(${sent}):
    try:
        s.sendto(d, ('198.18.0.2', 9)); n += 1
    except OSError:
        pass
print(n)`;
      const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
      const r = await inNs([python, '-c', py], 60_000);
      assert.equal(r.code, 0, r.stderr);
      const accepted = Number(r.stdout.trim());
      await until('the kernel queue drained', () => udp + linkStats('tkb').txDropped >= accepted, 10_000);
      // Every frame the kernel queued was read and counted: what is missing the kernel itself
      // dropped (its queue overflowed while this machine was busy); allow a slow machine 20 %.
      await until(
        'the counters matching the kernel',
        () => tap.counters.framesIn === linkStats('tkb').txPackets,
      );
      const k = linkStats('tkb');
      assert.ok(udp >= accepted - k.txDropped, `read ${udp} of ${accepted}, kernel dropped ${k.txDropped}`);
      assert.ok(udp >= accepted * 0.8, `read ${udp} of ${accepted} (kernel dropped ${k.txDropped})`);
      const readRate = Math.round(udp / ((last - first) / 1000));

      const n = 200_000;
      const frame = new Uint8Array(64);
      emitEthernetHeader({ dst: kernelMac('tkb'), src: OUR_MAC, vlans: [], etherType: 0x88b5 }, frame, 0);
      writeMac(frame, 14, OUR_MAC);
      const base = linkStats('tkb').rxPackets;
      const out0 = tap.counters.framesOut;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) tap.send(frame);
      tap.flush();
      const writeRate = Math.round(n / ((performance.now() - t0) / 1000));
      assert.equal(tap.counters.framesOut - out0, n);
      assert.equal(linkStats('tkb').rxPackets - base, n);
      const msg = `read ${udp}/${accepted} UDP frames at ${readRate} frames/s (sender-bound), wrote ${n} at ${writeRate} frames/s`;
      t.diagnostic(msg);
    } finally {
      await tap.close();
    }
  });
});
