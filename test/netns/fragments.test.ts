/**
 * Reassembly against real fragmenters (routed.ts draws the network): kernel clients echo MB
 * through our stack while every segment they send reaches it in fragments, and every byte must
 * come back.
 *
 * - IPv4: the Linux router fragments forwarded packets (DF clear: the client's
 *   ip_no_pmtu_disc=1) to a route MTU of 1000; then the same with 1 % of non-first fragments
 *   dropped on the bridge (those datagrams wait out their timeout in our stack; TCP resends).
 * - IPv6: Linux never fragments forwarded IPv6 nor TCP it sends, so the router's kernel forwards
 *   only the stack's direction and a user-space fragmenter (apps/hostile.py frag6) cuts the
 *   client's packets into 1232-byte fragments, every other datagram's sent last fragment first.
 *
 * Judged by the stack's counters (fragments in, datagrams reassembled, nothing dropped but what
 * the loss explains), a capture on the TAP (fragments did reach it), and tshark's expert checks
 * on the client's capture (no RST, no ACKed unseen segment, nothing malformed, no bad checksum).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { expertSummary, python, rootSkipReason, stopProcess, waitUntil } from './harness.ts';
import {
  CLIENT4,
  counterDelta,
  echoScript,
  type Routed,
  routedTopology,
  SERVER_MAC,
  SERVER4,
  SERVER6,
  sh,
  stackCounters,
} from './routed.ts';

const skip = rootSkipReason(['ethtool']);
const MB = 1_000_000;
const hostile = new URL('./apps/hostile.py', import.meta.url).pathname;

function log(what: string, v: unknown): void {
  process.stdout.write(`# fragments: ${what}: ${JSON.stringify(v)}\n`);
}

/** How many frames of a capture match a display filter. */
function countFrames(file: string, filter: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('tshark', ['-r', file, '-Y', filter, '-T', 'fields', '-e', 'frame.number'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.split('\n').filter(Boolean).length);
      else reject(new Error(`tshark -Y ${filter} on ${file} exited ${code}`));
    });
  });
}

async function judge(file: string): Promise<void> {
  const s = await expertSummary(file, { timeoutMs: 120_000 });
  const why = `${JSON.stringify(s.messages)}\n${s.report}`;
  assert.equal(s.resets, 0, `RSTs: ${why}`);
  assert.equal(s.ackedUnseen, 0, `ACKed unseen segments: ${why}`);
  assert.equal(s.malformed, 0, `malformed frames: ${why}`);
  assert.equal(s.badChecksums, 0, `bad checksums: ${why}`);
}

/** Runs the echo of `n` bytes from the client to `addr` to completion. */
async function echo(net: Routed, addr: string, n: number): Promise<string> {
  const r = await net.client.exec(python, ['-c', echoScript(addr, n)], { timeoutMs: 120_000 });
  assert.equal(
    r.code,
    0,
    `echo of ${n} bytes to ${addr} failed: ${r.stdout}${r.stderr}\nserver: ${net.server.output().stderr}`,
  );
  assert.match(r.stdout, /^ok /m);
  return r.stdout.trim().split('\n').at(-1)!;
}

describe('reassembly against fragmenting peers on a real network', { skip }, () => {
  test('IPv4: 8 MB echoed byte-exact while a Linux router fragments every client segment (then 1 % fragment loss)', async () => {
    let net: Routed | undefined;
    const dir = mkdtempSync(join(tmpdir(), 'takeover-frag4-'));
    try {
      net = await routedTopology('tkv');
      const clientPcap = join(dir, 'client.pcap');
      const tapPcap = join(dir, 'tap.pcap');
      const ccap = await net.client.capture(clientPcap, {
        iface: 'eth1',
        filter: 'tcp port 7',
        snaplen: 128,
      });
      const tcap = await net.tap.capture(tapPcap, { filter: `ip and host ${CLIENT4}`, snaplen: 64 });
      const c0 = await stackCounters(net.server);
      const n = 8 * MB;
      log('echo', await echo(net, SERVER4, n));
      const c1 = await stackCounters(net.server);
      const d = counterDelta(c0, c1);
      log('stack counters during the echo', d);
      // Every full-sized client segment (1500 bytes) leaves the router as two fragments.
      assert.ok((d.reassembled ?? 0) >= n / 1460 / 2, `datagrams reassembled: ${d.reassembled}`);
      assert.ok((d.fragmentsIn ?? 0) >= 2 * (d.reassembled ?? 0));
      for (const k of [
        'fragmentsDropped',
        'reassemblyOverlaps',
        'reassemblyInvalid',
        'reassemblyOverMemory',
        'reassemblyTooManyFragments',
        'reassemblyOversize',
        'malformed',
      ])
        assert.equal(d[k] ?? 0, 0, `${k}: ${JSON.stringify(d)}`);

      // 1 % of the non-first fragments lost on the bridge (the router fragments after its own
      // netfilter hooks; the switch's see bridged IPv4 through br_netfilter): TCP resends,
      // incomplete datagrams are held (and time out 30 s later, after the test). Without
      // br_netfilter (a kernel module) the switch's iptables sees nothing: then no loss.
      const brnf = await net.topo.switch.exec('cat', ['/proc/sys/net/bridge/bridge-nf-call-iptables']);
      const lossApplied = brnf.code === 0 && brnf.stdout.trim() === '1';
      if (!lossApplied) log('no br_netfilter in this kernel', 'the echo runs without fragment loss');
      await sh(net.topo.switch, [
        'iptables',
        '-w',
        '5',
        '-A',
        'FORWARD',
        '-f',
        '-m',
        'statistic',
        '--mode',
        'random',
        '--probability',
        '0.01',
        '-j',
        'DROP',
      ]);
      log('echo with fragment loss', await echo(net, SERVER4, 2 * MB));
      const c2 = await stackCounters(net.server);
      const lossy = counterDelta(c1, c2);
      log('stack counters during the lossy echo', lossy);
      assert.ok((lossy.reassembled ?? 0) > 0);
      assert.equal(lossy.reassemblyOverlaps ?? 0, 0);
      // Incomplete datagrams wait in the stack: lost fragments show as held ones.
      if (lossApplied)
        assert.ok(
          (lossy.fragmentsIn ?? 0) > 2 * (lossy.reassembled ?? 0),
          'some datagrams stayed incomplete',
        );
      await ccap.stop();
      await tcap.stop();
      const fragments = await countFrames(tapPcap, 'ip.flags.mf == 1 || ip.frag_offset > 0');
      const whole = await countFrames(
        tapPcap,
        'ip.flags.mf == 0 && ip.frag_offset == 0 && ip.src == 198.18.2.2',
      );
      log('frames from the client at the TAP', { fragments, unfragmented: whole });
      assert.ok(fragments >= (d.fragmentsIn ?? 0) * 0.9, 'the TAP saw the fragments the stack counted');
      await judge(clientPcap);
    } finally {
      await net?.topo.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('IPv6: 8 MB echoed byte-exact through a fragmenting router, half the datagrams last fragment first', async () => {
    let net: Routed | undefined;
    const dir = mkdtempSync(join(tmpdir(), 'takeover-frag6-'));
    try {
      net = await routedTopology('tkw');
      // The kernel forwards only the stack's direction; the fragmenter takes the client's.
      await sh(net.router, [
        'ip6tables',
        '-w',
        '5',
        '-A',
        'FORWARD',
        '-i',
        'eth1',
        '-o',
        'eth0',
        '-j',
        'DROP',
      ]);
      const frag = net.router.spawn(python, [
        hostile,
        'frag6',
        '--in',
        'eth1',
        '--out',
        'eth0',
        '--dst-mac',
        SERVER_MAC,
        '--prefix',
        'fd00:1::',
        '--size',
        '1232',
        '--order',
        'mixed',
      ]);
      await waitUntil(
        'the IPv6 fragmenter to start',
        () => {
          if (frag.exitCode !== null) throw new Error(`frag6 exited: ${frag.output().stderr}`);
          return frag.output().stdout.includes('ready');
        },
        { timeoutMs: 20_000, tries: 400 },
      );
      const clientPcap = join(dir, 'client.pcap');
      const tapPcap = join(dir, 'tap.pcap');
      const ccap = await net.client.capture(clientPcap, {
        iface: 'eth1',
        filter: 'tcp port 7',
        snaplen: 128,
      });
      const tcap = await net.tap.capture(tapPcap, { filter: 'ip6 and not icmp6', snaplen: 96 });
      const c0 = await stackCounters(net.server);
      const n = 8 * MB;
      log('echo', await echo(net, SERVER6, n));
      const c1 = await stackCounters(net.server);
      await stopProcess(frag, { signal: 'SIGTERM', graceMs: 5000 });
      const fragStats = frag.output().stdout.trim().split('\n').at(-1);
      log('fragmenter', fragStats);
      const d = counterDelta(c0, c1);
      log('stack counters during the echo', d);
      assert.ok((d.reassembled ?? 0) >= n / 1440 / 2, `datagrams reassembled: ${d.reassembled}`);
      for (const k of [
        'fragmentsDropped',
        'reassemblyOverlaps',
        'reassemblyInvalid',
        'reassemblyOverMemory',
        'malformed',
      ])
        assert.equal(d[k] ?? 0, 0, `${k}: ${JSON.stringify(d)}`);
      const stats = JSON.parse(fragStats ?? '{}') as { fragments?: number };
      assert.equal(d.fragmentsIn, stats.fragments, 'every fragment sent reached reassembly');
      await ccap.stop();
      await tcap.stop();
      const fragments = await countFrames(tapPcap, 'ipv6.fraghdr');
      log('fragments at the TAP', fragments);
      assert.ok(fragments >= (d.fragmentsIn ?? 0) * 0.9);
      await judge(clientPcap);
    } finally {
      await net?.topo.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
