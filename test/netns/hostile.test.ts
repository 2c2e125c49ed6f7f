/**
 * Hostile input from scapy against a server on our stack over a real TAP, the Linux kernel as the
 * legitimate peer (the "hostile input" acceptance tests): garbage frames of every
 * malformed kind, in-window RSTs and SYNs with the wrong sequence number (RFC 5961), and a 10k
 * SYN flood from real and from unowned addresses, each while a kernel client's echo transfer
 * runs and must finish byte-exact with a clean capture; ICMP errors forged by someone who knows
 * a connection's 4-tuple (RFC 5927) during a transfer; IPv6 packets carrying unrecognised
 * options of each action (RFC 8200 4.2). The scapy side is apps/hostile.py.
 *
 * What the stack did is read from a capture on its TAP (everything it wrote and everything that
 * reached it) and from its counters (apps/routed-server.ts prints them on SIGUSR2).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startApp } from './apps/launch.ts';
import {
  expertSummary,
  type Host,
  type Namespace,
  python,
  rootSkipReason,
  type Spawned,
  type TapHost,
  Topology,
  waitUntil,
} from './harness.ts';
import { counterDelta, stackCounters } from './routed.ts';

const skip = rootSkipReason(['curl']);
const SERVER_MAC = '02:00:00:00:00:02';
const SERVER4 = '198.18.0.2';
const SERVER6 = 'fd00::2';
const CLIENT4 = '198.18.0.1';
const ATTACKER4 = '198.18.0.66';
const ATTACKER6 = 'fd00::66';
const MB = 1_000_000;
const hostile = new URL('./apps/hostile.py', import.meta.url).pathname;

/**
 * A kernel socket streams `n` bytes through our echo server (stack.test.ts's echoScript, plus a
 * `connected` line as soon as the connection is up, and an optional pace in bytes per second so
 * that a transfer outlasts an attack).
 */
function echoScript(addr: string, n: number, pace = 0): string {
  return `
import socket, hashlib, threading, random, time
n = ${n}; pace = ${pace}
block = random.Random(1).randbytes(1 << 20)
s = socket.create_connection(("${addr}", 7), timeout=60)
print("connected", s.getsockname()[1], flush=True)
got = hashlib.sha256(); count = [0]
def rd():
    while True:
        d = s.recv(1 << 20)
        if not d: break
        got.update(d); count[0] += len(d)
t = threading.Thread(target=rd); t.start()
want = hashlib.sha256(); left = n; t0 = time.time(); sent = 0
while left > 0:
    b = block[:min(left, 1 << 18)]; s.sendall(b); want.update(b); left -= len(b); sent += len(b)
    if pace:
        ahead = sent / pace - (time.time() - t0)
        if ahead > 0: time.sleep(ahead)
s.shutdown(socket.SHUT_WR); t.join(600)
assert count[0] == n, (count[0], n)
assert got.hexdigest() == want.hexdigest()
print("ok", count[0], round(time.time() - t0, 2), flush=True)
`;
}

interface Net {
  topo: Topology;
  dir: string;
  client: Host;
  attacker: Host | undefined;
  tap: TapHost;
  server: Spawned;
}

async function setUp(prefix: string, withAttacker: boolean): Promise<Net> {
  const topo = await Topology.create({ prefix });
  const dir = mkdtempSync(join(tmpdir(), 'takeover-hostile-'));
  try {
    const client = await topo.addHost('client', {
      ipv4: `${CLIENT4}/24`,
      ipv6: 'fd00::1/64',
      offloads: false,
    });
    const attacker = withAttacker
      ? await topo.addHost('attacker', { ipv4: `${ATTACKER4}/24`, ipv6: `${ATTACKER6}/64`, offloads: false })
      : undefined;
    const tap = await topo.addTapHost('server');
    // The services of stack-server.ts, and counters on SIGUSR2 (the gateways lead nowhere).
    const server = await startApp(
      tap,
      'routed-server.ts',
      [tap.tap, SERVER_MAC, '198.18.0.254', 'fd00::fe', `${SERVER4}/24`, `${SERVER6}/64`],
      'the server on our stack',
    );
    return { topo, dir, client, attacker, tap, server };
  } catch (e) {
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function tearDown(net: Net | undefined): Promise<void> {
  if (!net) return;
  await net.topo.destroy();
  rmSync(net.dir, { recursive: true, force: true });
}

/** The server process still runs and has printed no stack trace. */
function assertAlive(server: Spawned, when: string): void {
  const { stderr } = server.output();
  assert.equal(server.exitCode, null, `the server exited ${when}: ${stderr}`);
  assert.equal(server.signalCode, null, `the server was killed ${when}: ${stderr}`);
  assert.doesNotMatch(
    stderr,
    /Error|\n\s+at .+:\d+:\d+/,
    `the server wrote a stack trace ${when}: ${stderr}`,
  );
}

/** Runs a byte-exact echo of `n` bytes to completion. */
async function echo(client: Host, n: number, server: Spawned): Promise<void> {
  const r = await client.exec(python, ['-c', echoScript(SERVER4, n)], { timeoutMs: 60_000 });
  assert.equal(
    r.code,
    0,
    `echo of ${n} bytes failed: ${r.stdout}${r.stderr}\nserver: ${server.output().stderr}`,
  );
  assert.match(r.stdout, /^ok /m);
}

/** Runs hostile.py in `host`; resolves with the JSON of its last line. */
async function scapy(host: Namespace, args: string[], timeoutMs: number): Promise<Record<string, unknown>> {
  const r = await host.exec(python, [hostile, ...args], { timeoutMs });
  assert.equal(
    r.code,
    0,
    `hostile.py ${args[0]} failed (${r.timedOut ? 'timed out' : r.code}): ${r.stdout}${r.stderr}`,
  );
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as Record<string, unknown>;
}

/** `tshark -T fields` rows of the frames matching `filter`. */
async function fields(file: string, filter: string, names: string[]): Promise<string[][]> {
  const r = await tool([
    'tshark',
    '-r',
    file,
    '-Y',
    filter,
    '-T',
    'fields',
    ...names.flatMap((f) => ['-e', f]),
  ]);
  return r
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}

/** Resolves with `p`, or undefined after `ms`; the timer never outlives the wait. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const late = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), ms);
    });
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a read-only tool (tshark) in our own namespace, bounded. */
function tool(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    p.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${argv.join(' ')} exited ${code}: ${err.slice(-500)}`));
    });
  });
}

/** expertSummary of the legitimate connection, the frames in `exclude` (injected ones) left out. */
async function judge(file: string, exclude: string | undefined): Promise<void> {
  let f = file;
  if (exclude) {
    f = file.replace(/\.pcap$/, '.clean.pcap');
    await tool(['tshark', '-r', file, '-Y', `!(${exclude})`, '-F', 'pcap', '-w', f]);
  }
  const s = await expertSummary(f, { timeoutMs: 60_000 });
  const why = `${JSON.stringify(s.messages)}\n${s.report}`;
  assert.equal(s.resets, 0, `RSTs in the legitimate connection: ${why}`);
  assert.equal(s.ackedUnseen, 0, `ACKed unseen segments: ${why}`);
  assert.equal(s.malformed, 0, `malformed frames: ${why}`);
  assert.equal(s.badChecksums, 0, `bad checksums: ${why}`);
}

/** Frames the kernel dropped on their way to the stack process (the TAP's queue was full). */
async function tapDrops(tap: TapHost): Promise<number> {
  const r = await tap.exec('ip', ['-j', '-s', 'link', 'show', 'dev', tap.tap]);
  const j = JSON.parse(r.stdout) as { stats64: { tx: { dropped: number } } }[];
  return j[0].stats64.tx.dropped;
}

function log(what: string, v: unknown): void {
  process.stdout.write(`# hostile: ${what}: ${JSON.stringify(v)}\n`);
}

describe('hostile input from scapy against our stack, a kernel client alongside', { skip }, () => {
  test('garbage frames: no crash, nothing answered, echo byte-exact before, during and after', async () => {
    let net: Net | undefined;
    try {
      net = await setUp('tkg', true);
      const { client, attacker, tap, server, dir } = net;
      const clientPcap = join(dir, 'client.pcap');
      const tapPcap = join(dir, 'tap.pcap');
      const ccap = await client.capture(clientPcap, { filter: 'tcp port 7', snaplen: 128 });
      // What our stack wrote towards anyone but the legitimate client: answers to garbage.
      const tcap = await tap.capture(tapPcap, {
        filter: `ether src ${SERVER_MAC} and not (host ${CLIENT4} or host fd00::1)`,
        snaplen: 128,
      });
      await echo(client, 4 * MB, server);
      const during = client.spawn(python, ['-c', echoScript(SERVER4, 8 * MB, 4 * MB)]);
      await waitUntil(
        'the echo during the garbage to connect',
        () => during.output().stdout.includes('connected'),
        {
          timeoutMs: 10_000,
        },
      );
      const sent = await scapy(
        attacker!,
        [
          'garbage',
          '--dst-mac',
          SERVER_MAC,
          '--dst4',
          SERVER4,
          '--src4',
          ATTACKER4,
          '--dst6',
          SERVER6,
          '--src6',
          ATTACKER6,
          '--random',
          '1000',
        ],
        60_000,
      );
      log('garbage sent', sent);
      const ended = await within(during.exited, 30_000);
      assert.ok(ended, 'the echo during the garbage did not finish within 30 s');
      assert.equal(ended.code, 0, `echo during the garbage: ${JSON.stringify(during.output())}`);
      assertAlive(server, 'after the garbage');
      await echo(client, 4 * MB, server);
      assertAlive(server, 'after the last echo');
      await ccap.stop();
      await tcap.stop();

      // What the stack sent that was not for the client: at most neighbour traffic; never a
      // TCP answer to a segment with a bad checksum, a bad header or a truncated header.
      const answers = await fields(tapPcap, 'tcp', ['ip.dst', 'ipv6.dst', 'tcp.dstport', 'tcp.flags.str']);
      const ports = sent.ports as Record<string, number>;
      const byClass: Record<string, number> = {};
      for (const [, , dport] of answers) {
        const p = Number(dport);
        const cls =
          Object.entries(ports).find(([, base]) => p >= base && p < base + 100)?.[0] ?? `port ${dport}`;
        byClass[cls] = (byClass[cls] ?? 0) + 1;
      }
      const other = await fields(tapPcap, '!tcp', ['frame.protocols', 'eth.dst']);
      log('TCP answers to garbage by class', byClass);
      log('TCP answers to garbage', answers);
      log('other frames from the stack (not to the client)', other);
      for (const cls of [
        'tcp-bad-checksum',
        'ipv4-bad-header-checksum',
        'tcp-data-offset-below-5',
        'tcp-data-offset-past-end',
        'ipv4-total-length-past-frame',
        'ipv4-truncated-tcp',
        'ipv4-wrong-version',
        'ipv4-ihl-below-5',
        'ipv4-fragment',
        'ipv6-wrong-version',
        'ipv6-bad-chain',
        'ipv6-truncated',
      ])
        assert.equal(byClass[cls] ?? 0, 0, `our stack answered ${cls} frames: ${JSON.stringify(answers)}`);
      await judge(clientPcap, undefined);
    } finally {
      await tearDown(net);
    }
  });

  test('in-window RSTs and SYNs with the wrong sequence number draw rate-limited challenge ACKs, out-of-window RSTs nothing (RFC 5961)', async () => {
    let net: Net | undefined;
    try {
      net = await setUp('tkr', false);
      const { client, server, dir } = net;
      const clientPcap = join(dir, 'client.pcap');
      const ccap = await client.capture(clientPcap, { filter: 'tcp port 7', snaplen: 128 });
      const r = await scapy(
        client,
        [
          'rst',
          '--server',
          SERVER4,
          '--first',
          String(MB),
          '--second',
          String(16 * MB),
          '--rsts',
          '20',
          '--syns',
          '10',
          '--interval',
          '0.1',
        ],
        60_000,
      );
      await ccap.stop();
      log('RST/SYN injection', r);
      assertAlive(server, 'after the injected RSTs');
      assert.equal(r.ok, true, `the connection did not survive byte-exact: ${JSON.stringify(r)}`);
      assert.equal(r.serverResets, 0, 'our stack sent a RST');

      // From the capture: our stack's pure ACKs while the RSTs (then the SYNs) were arriving.
      const lport = Number(r.localPort);
      const rows = await fields(clientPcap, `tcp.port == ${lport}`, [
        'frame.number',
        'frame.time_epoch',
        'ip.src',
        'tcp.flags.str',
        'tcp.len',
        'tcp.seq_raw',
        'tcp.ack_raw',
      ]);
      const injected = rows.filter(
        ([, , src, flags, , seq]) =>
          src === CLIENT4 &&
          (flags.includes('R') || (flags.includes('S') && Number(seq) !== Number(rows[0]?.[5]))),
      );
      const allRsts = injected.filter(([, , , flags]) => flags.includes('R'));
      const rsts = allRsts.slice(0, Number(r.rstsSent));
      const oow = allRsts.slice(Number(r.rstsSent));
      const syns = injected.filter(([, , , flags]) => flags.includes('S'));
      assert.equal(rsts.length, r.rstsSent, 'every injected RST is in the capture');
      assert.equal(oow.length, r.outOfWindowRstsSent, 'every out-of-window RST is in the capture');
      assert.equal(syns.length, r.synsSent, 'every injected SYN is in the capture');
      const fromUs = rows.filter(([, , src]) => src === SERVER4);
      assert.ok(!fromUs.some(([, , , flags]) => flags.includes('R')), 'no RST from our stack');
      const pureAcks = (t0: number, t1: number) =>
        fromUs.filter(([, t, , flags, len]) => {
          const at = Number(t);
          return at >= t0 && at <= t1 && len === '0' && flags.replace(/·/g, '') === 'A';
        });
      const tRst0 = Number(rsts[0][1]);
      const tRst1 = Number(rsts.at(-1)?.[1]) + 0.6;
      const tSyn0 = Number(syns[0][1]);
      const tSyn1 = Number(syns.at(-1)?.[1]) + 0.6;
      const chRst = pureAcks(tRst0, tRst1);
      const chSyn = pureAcks(tSyn0, tSyn1);
      // An answer to a RST would be a challenge ACK of RCV.NXT; ACKs of the next phase's data
      // (which may start within the window on a loaded machine) acknowledge more.
      const oowAnswers = fromUs.filter(
        ([, t, , , , , ack]) =>
          Number(t) >= Number(oow[0][1]) &&
          Number(t) <= Number(oow.at(-1)?.[1]) + 0.6 &&
          Number(ack) === Number(r.rcvNxt),
      );
      const span = (x: string[][]) => Number(x.at(-1)?.[1]) - Number(x[0][1]);
      log('challenge ACKs (capture)', {
        rsts: rsts.length,
        rstSpanS: span(rsts),
        challengeAcksForRsts: chRst.length,
        syns: syns.length,
        synSpanS: span(syns),
        challengeAcksForSyns: chSyn.length,
        outOfWindowRsts: oow.length,
        answersToOutOfWindowRsts: oowAnswers.length,
      });
      // RFC 5961 3.2: a challenge ACK; 7 (and Linux's tcp_invalid_ratelimit): at most one per 500 ms.
      assert.ok(chRst.length >= 1, 'no challenge ACK for in-window RSTs');
      assert.ok(
        chRst.length <= Math.floor(span(rsts) / 0.5) + 1,
        `more challenge ACKs than one per 500 ms: ${chRst.length} in ${span(rsts)} s`,
      );
      for (let i = 1; i < chRst.length; i++)
        assert.ok(Number(chRst[i][1]) - Number(chRst[i - 1][1]) >= 0.45, 'challenge ACKs closer than 500 ms');
      // RFC 5961 4.2: a SYN in a synchronized state draws a challenge ACK too.
      assert.ok(chSyn.length >= 1, 'no challenge ACK for in-window SYNs');
      // RFC 5961 3.2: a RST outside the window is dropped silently.
      assert.equal(
        oowAnswers.length,
        0,
        `our stack answered out-of-window RSTs: ${JSON.stringify(oowAnswers)}`,
      );
      for (const a of [...chRst, ...chSyn])
        assert.equal(Number(a[6]), Number(r.rcvNxt), 'a challenge ACK acknowledges RCV.NXT');
      await judge(clientPcap, injected.map(([n]) => `frame.number == ${n}`).join(' || '));
    } finally {
      await tearDown(net);
    }
  });

  test('10k SYNs from a real and from unowned addresses while a transfer continues byte-exact', async () => {
    let net: Net | undefined;
    try {
      net = await setUp('tkf', true);
      const { client, attacker, tap, server, dir } = net;
      const clientPcap = join(dir, 'client.pcap');
      const tapPcap = join(dir, 'tap.pcap');
      const ccap = await client.capture(clientPcap, { filter: 'tcp port 7', snaplen: 128 });
      const tcap = await tap.capture(tapPcap, {
        filter: `(tcp[tcpflags] & (tcp-syn|tcp-rst) != 0 and not host ${CLIENT4}) or arp`,
        snaplen: 96,
      });
      // 64 MB paced at 5 MB/s (13 s): the transfer outlasts both floods (about 8 s with scapy's
      // start-ups, more on a loaded machine).
      const n = 64 * MB;
      const stream = client.spawn(python, ['-c', echoScript(SERVER4, n, 5 * MB)]);
      await waitUntil('the legitimate echo to connect', () => stream.output().stdout.includes('connected'), {
        timeoutMs: 10_000,
      });
      const flood = async (mode: 'own' | 'spoof') =>
        scapy(
          attacker!,
          [
            'synflood',
            '--dst-mac',
            SERVER_MAC,
            '--dst4',
            SERVER4,
            '--src4',
            ATTACKER4,
            '--count',
            '10000',
            '--mode',
            mode,
            '--exclude',
            [CLIENT4, SERVER4, ATTACKER4].join(','),
          ],
          60_000,
        );
      const t0 = Date.now();
      const drops0 = await tapDrops(tap);
      const own = await flood('own');
      const drops1 = await tapDrops(tap);
      // The attacker's kernel answers each SYN-ACK with a RST, which frees the entry; most of
      // those SYN-ACKs wait for the SYN-ACK timer (1 s), the first ones having overflowed the
      // queue of packets waiting for the attacker's ARP reply. Let them drain, then flood from
      // addresses nobody answers for.
      await new Promise((r) => setTimeout(r, 2500));
      const drops2 = await tapDrops(tap);
      const spoof = await flood('spoof');
      const drops3 = await tapDrops(tap);
      log('floods', {
        own: { ...own, droppedBeforeTheStack: drops1 - drops0 },
        spoof: { ...spoof, droppedBeforeTheStack: drops3 - drops2 },
        floodsDoneAfterS: (Date.now() - t0) / 1000,
      });
      assert.equal(
        stream.exitCode,
        null,
        `the legitimate transfer ended before the floods did: ${JSON.stringify(stream.output())}`,
      );
      const ended = await within(stream.exited, 60_000);
      assert.ok(ended, 'the legitimate transfer did not finish within 60 s of the floods');
      assert.equal(ended.code, 0, `the legitimate transfer: ${JSON.stringify(stream.output())}`);
      log('legitimate transfer', stream.output().stdout.trim());
      assertAlive(server, 'after the floods');

      // Another listener has its own half-open table: it answers at once.
      const sink = await client.exec(
        python,
        [
          '-c',
          `import socket\ns=socket.create_connection(("${SERVER4}",9),timeout=5)\ns.sendall(b"x"*1000)\ns.shutdown(socket.SHUT_WR)\nprint(s.recv(200).decode().strip())`,
        ],
        { timeoutMs: 10_000 },
      );
      assert.equal(sink.code, 0, `a new connection to port 9 after the floods: ${sink.stderr}`);
      assert.match(sink.stdout, /^1000 /);
      // Port 7's table is full of the unowned sources' half-open entries (their SYN-ACKs wait on
      // ARP that nobody answers, until the SYN-ACK retries run out): with no SYN cookies a new
      // connection is not accepted meanwhile.
      const again = await client.exec(
        python,
        [
          '-c',
          `import socket,time\nt=time.time()\ntry:\n s=socket.create_connection(("${SERVER4}",7),timeout=3); print("accepted", round(time.time()-t,3))\nexcept Exception as e: print("not accepted", type(e).__name__)`,
        ],
        { timeoutMs: 10_000 },
      );
      log('a new connection to port 7 right after the floods', again.stdout.trim());
      await ccap.stop();
      await tcap.stop();

      // What the stack did, from its TAP.
      const frames = await fields(tapPcap, 'tcp || arp', [
        'frame.time_epoch',
        'eth.src',
        'ip.src',
        'ip.dst',
        'tcp.dstport',
        'tcp.flags.str',
        'arp.opcode',
        'arp.dst.proto_ipv4',
      ]);
      const flags = (r: string[]) => (r[5] ?? '').replace(/[·]/g, '');
      const fromUs = frames.filter((r) => r[1] === SERVER_MAC);
      const toUs = frames.filter((r) => r[1] !== SERVER_MAC);
      const synsIn = toUs.filter((r) => flags(r) === 'S');
      const ownSyns = synsIn.filter((r) => r[2] === ATTACKER4);
      const synAcks = fromUs.filter((r) => flags(r) === 'AS');
      const synAcksOwn = synAcks.filter((r) => r[3] === ATTACKER4);
      const tOwn = Number(ownSyns[0]?.[0]);
      const promptly = synAcksOwn.filter((r) => Number(r[0]) - tOwn < 0.5).length;
      const ownTuples = new Set(synAcksOwn.map((r) => r[4]));
      const arpAsks = fromUs.filter((r) => r[6] === '1');
      const spoofArp = arpAsks.filter((r) => r[7] !== ATTACKER4 && r[7] !== CLIENT4);
      const ownDelivered = 10_000 - (drops1 - drops0);
      log('stack behaviour (TAP capture)', {
        ownFlood: {
          synsOnTheWire: ownSyns.length,
          synsReachingTheStack: ownDelivered,
          synAcksSent: synAcksOwn.length,
          tuplesAnswered: ownTuples.size,
          synAcksWithin500ms: promptly,
          synsDroppedByTheStack: ownDelivered - ownTuples.size,
          rstsFromAttackerKernel: toUs.filter((r) => r[2] === ATTACKER4 && flags(r).includes('R')).length,
        },
        spoofFlood: {
          synsOnTheWire: synsIn.length - ownSyns.length,
          synsReachingTheStack: 10_000 - (drops3 - drops2),
          synAcksOnTheWire: synAcks.length - synAcksOwn.length,
          arpRequests: spoofArp.length,
          arpTargets: new Set(spoofArp.map((r) => r[7])).size,
        },
        rstsFromStack: fromUs.filter((r) => flags(r).includes('R')).length,
      });
      // The half-open table is bounded (1024 by default): a burst of 10k SYNs from one address
      // cannot all be answered before the attacker's RSTs free entries.
      assert.ok(
        ownTuples.size < ownDelivered,
        'every SYN of the burst was answered: is the half-open table bounded?',
      );
      await judge(clientPcap, undefined);
    } finally {
      await tearDown(net);
    }
  });
  for (const family of [4, 6] as const) {
    const what = family === 4 ? 'fragmentation needed' : 'packet too big';
    test(`IPv${family}: forged ICMP ${what} (RFC 5927): out-of-window and impossible-MTU ones change nothing, a valid one is believed`, async () => {
      let net: Net | undefined;
      try {
        net = await setUp(family === 4 ? 'tki' : 'tkj', false);
        const { client, server, dir } = net;
        const clientPcap = join(dir, 'client.pcap');
        const ccap = await client.capture(clientPcap, {
          filter: 'tcp port 7 or icmp or icmp6',
          snaplen: 128,
        });
        const forged = 200;
        const c0 = await stackCounters(server);
        const r = await scapy(
          client,
          [
            'icmp',
            '--server',
            family === 4 ? SERVER4 : SERVER6,
            '--family',
            String(family),
            '--forged',
            String(forged),
            '--mb',
            '2',
          ],
          120_000,
        );
        const d = counterDelta(c0, await stackCounters(server));
        await ccap.stop();
        log(`IPv${family} forged ICMP`, r);
        log(`IPv${family} stack counters`, d);
        assertAlive(server, 'after the forged ICMP errors');
        assert.equal(r.ok, true, `the echo was not byte-exact: ${JSON.stringify(r)}`);
        // The server's data segments by phase, from the client's capture.
        const lport = Number(r.localPort);
        const sel = `tcp.srcport == 7 && tcp.dstport == ${lport} && tcp.len > 0`;
        const data = await fields(clientPcap, sel, ['frame.time_epoch', 'tcp.len']);
        const rexmit = await fields(clientPcap, `${sel} && tcp.analysis.retransmission`, [
          'frame.time_epoch',
        ]);
        const marks = r.marks as number[];
        const names = ['before', 'forged', 'badMtu', 'control'] as const;
        const ph = Object.fromEntries(
          names.map((name, k) => {
            const inPhase = (t: string) => Number(t) >= marks[k] && Number(t) < marks[k + 1];
            const lens = data.filter(([t]) => inPhase(t)).map(([, n]) => Number(n));
            return [
              name,
              {
                segments: lens.length,
                maxLen: Math.max(0, ...lens),
                retransmissions: rexmit.filter(([t]) => inPhase(t)).length,
              },
            ];
          }),
        ) as Record<(typeof names)[number], { segments: number; maxLen: number; retransmissions: number }>;
        log(`IPv${family} server segments by phase`, ph);
        const full = ph.before.maxLen;
        assert.ok(full >= (family === 4 ? 1400 : 1380), `full-sized segments first: ${full}`);
        // A believed error would have shrunk the segments (to 512 at most) and resent the flight.
        assert.ok(ph.forged.segments > 100, 'the transfer ran during the forged errors');
        assert.equal(ph.forged.maxLen, full, 'out-of-window errors shrank the segments');
        assert.ok(ph.forged.retransmissions <= 3, `a retransmission burst: ${ph.forged.retransmissions}`);
        assert.equal(ph.badMtu.maxLen, full, 'an impossible MTU shrank the segments');
        // The control: quoting SND.NXT with a real MTU, believed; the ICMP path itself works.
        const limit = Number(r.controlMtu) - (family === 4 ? 40 : 60);
        assert.ok(
          ph.control.maxLen <= limit && ph.control.maxLen < full,
          `control: ${ph.control.maxLen} > ${limit}`,
        );
        assert.equal(d.icmpOutOfWindow, forged, 'every forged error counted as out of window');
        assert.equal(d.icmpBadMtu, forged, 'every impossible MTU counted');
        assert.equal(d.icmpErrorsIn, 2 * forged + 1);
        await judge(clientPcap, 'icmp || icmpv6');
      } finally {
        await tearDown(net);
      }
    });
  }

  test('IPv6 options of each action (RFC 8200 4.2): skipped, discarded, or a Parameter Problem code 2 pointing at them', async () => {
    let net: Net | undefined;
    try {
      net = await setUp('tko', true);
      const { attacker, server, dir } = net;
      const pcap = join(dir, 'attacker.pcap');
      const cap = await attacker!.capture(pcap, { filter: 'ip6' });
      const c0 = await stackCounters(server);
      const r = (await scapy(
        attacker!,
        ['options', '--dst-mac', SERVER_MAC, '--dst6', SERVER6, '--src6', ATTACKER6],
        60_000,
      )) as Record<
        string,
        {
          synAck: boolean;
          paramProblem: { code: number; pointer: number; src: string } | null;
          answers: number;
        }
      >;
      const d = counterDelta(c0, await stackCounters(server));
      await cap.stop();
      log('option probes', r);
      log('stack counters', d);
      assertAlive(server, 'after the option probes');
      const pp = { code: 2, pointer: 42 };
      const expect: Record<string, { synAck: boolean; paramProblem: typeof pp | null }> = {
        'dst-00-skip': { synAck: true, paramProblem: null },
        'dst-01-discard': { synAck: false, paramProblem: null },
        'dst-10-param-problem': { synAck: false, paramProblem: pp },
        'dst-11-param-problem-unicast': { synAck: false, paramProblem: pp },
        'hbh-01-discard': { synAck: false, paramProblem: null },
        'hbh-10-param-problem': { synAck: false, paramProblem: pp },
        'dst-11-multicast-silent': { synAck: false, paramProblem: null },
        'dst-10-multicast-answered': { synAck: false, paramProblem: pp },
      };
      for (const [name, e] of Object.entries(expect)) {
        const got = r[name];
        assert.ok(got, `no result for ${name}`);
        assert.equal(got.synAck, e.synAck, `${name}: SYN-ACK`);
        assert.deepEqual(
          got.paramProblem && { code: got.paramProblem.code, pointer: got.paramProblem.pointer },
          e.paramProblem,
          `${name}: Parameter Problem`,
        );
        if (got.paramProblem)
          assert.equal(got.paramProblem.src, SERVER6, `${name}: from our unicast address`);
      }
      assert.equal(d.optionsSkipped, 1);
      assert.equal(d.optionsDiscarded, 3);
      assert.equal(d.optionsRejected, 4);
      assert.equal(d.icmpErrorsSent, 4);
      const s = await expertSummary(pcap, { timeoutMs: 60_000 });
      assert.equal(s.malformed, 0, s.report);
      assert.equal(s.badChecksums, 0, s.report);
    } finally {
      await tearDown(net);
    }
  });
});
