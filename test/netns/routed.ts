/**
 * Our stack behind a Linux router, for tests of what only a routed path produces (fragments) and
 * for tests that need the stack's counters (apps/routed-server.ts prints them on SIGUSR2):
 *
 *   client (kernel) eth1 ── veth ── eth1 router (kernel) eth0 ── bridge ── TAP: our stack
 *   198.18.2.2/24, fd00:2::2/64      .2.1, fd00:2::1  .1.1, fd00:1::1       198.18.1.2/24, fd00:1::2/64
 *
 * The client's bridge port (eth0) is down: its only way out is the router. The router forwards
 * both families; a host route with `mtu 1000` to the stack makes it fragment forwarded IPv4
 * packets that have DF clear (the client sets net.ipv4.ip_no_pmtu_disc=1, so its TCP sends
 * without DF), the way a router with a small next-hop MTU does.
 */
import assert from 'node:assert/strict';
import { startApp } from './apps/launch.ts';
import { type Host, type Namespace, type Spawned, type TapHost, Topology, waitUntil } from './harness.ts';

export const SERVER_MAC = '02:00:00:00:00:02';
export const SERVER4 = '198.18.1.2';
export const SERVER6 = 'fd00:1::2';
export const ROUTER4 = '198.18.1.1';
export const ROUTER6 = 'fd00:1::1';
export const CLIENT4 = '198.18.2.2';
export const CLIENT6 = 'fd00:2::2';

export interface Routed {
  topo: Topology;
  router: Host;
  client: Host;
  tap: TapHost;
  server: Spawned;
}

/** Runs a setup command in `ns`; a failure throws with its stderr. */
export async function sh(ns: Namespace, argv: string[]): Promise<string> {
  const r = await ns.exec(argv[0], argv.slice(1), { timeoutMs: 10_000 });
  if (r.code !== 0)
    throw new Error(`\`${argv.join(' ')}\` in ${ns.ns} failed: ${r.stderr.trim() || r.stdout}`);
  return r.stdout;
}

/** Builds the routed network and starts the server on our stack; cleans up if a step fails. */
export async function routedTopology(prefix: string, routeMtu = 1000): Promise<Routed> {
  const topo = await Topology.create({ prefix });
  try {
    const router = await topo.addHost('router', {
      ipv4: `${ROUTER4}/24`,
      ipv6: `${ROUTER6}/64`,
      offloads: false,
    });
    const client = await topo.addHost('client', { offloads: false });
    await sh(client, ['ip', 'link', 'set', 'eth0', 'down']);
    await sh(router, [
      'ip',
      'link',
      'add',
      'eth1',
      'type',
      'veth',
      'peer',
      'name',
      'eth1',
      'netns',
      client.ns,
    ]);
    const off = ['tx', 'off', 'rx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off'];
    for (const [h, v4, v6] of [
      [router, '198.18.2.1/24', 'fd00:2::1/64'],
      [client, `${CLIENT4}/24`, `${CLIENT6}/64`],
    ] as const) {
      await sh(h, ['ethtool', '-K', 'eth1', ...off]);
      await sh(h, ['ip', 'addr', 'add', v4, 'dev', 'eth1']);
      await sh(h, ['ip', '-6', 'addr', 'add', v6, 'dev', 'eth1', 'nodad']);
      await sh(h, ['ip', 'link', 'set', 'eth1', 'up']);
    }
    await router.sysctl('net.ipv4.ip_forward', 1);
    await router.sysctl('net.ipv6.conf.all.forwarding', 1);
    await router.sysctl('net.ipv4.conf.all.send_redirects', 0);
    await router.sysctl('net.ipv4.conf.eth0.send_redirects', 0);
    // Forwarding honours a route's MTU (ip_dst_mtu_maybe_forward): fragments of at most this.
    await sh(router, ['ip', 'route', 'add', `${SERVER4}/32`, 'dev', 'eth0', 'mtu', String(routeMtu)]);
    await sh(client, ['ip', 'route', 'add', 'default', 'via', '198.18.2.1']);
    await sh(client, ['ip', '-6', 'route', 'add', 'default', 'via', 'fd00:2::1']);
    await client.sysctl('net.ipv4.ip_no_pmtu_disc', 1);
    const tap = await topo.addTapHost('server');
    const server = await startApp(
      tap,
      'routed-server.ts',
      [tap.tap, SERVER_MAC, ROUTER4, ROUTER6, `${SERVER4}/24`, `${SERVER6}/64`],
      'the server on our stack',
    );
    return { topo, router, client, tap, server };
  } catch (e) {
    await topo.destroy();
    throw e;
  }
}

/** The stack counters of a routed-server.ts process, read through SIGUSR2. */
export async function stackCounters(server: Spawned): Promise<Record<string, number>> {
  const lines = () =>
    server
      .output()
      .stdout.split('\n')
      .filter((l) => l.startsWith('counters '));
  const before = lines().length;
  assert.ok(server.pid !== undefined && server.exitCode === null, 'the server runs');
  process.kill(server.pid, 'SIGUSR2');
  await waitUntil('the server to print its counters', () => lines().length > before, {
    timeoutMs: 5000,
    intervalMs: 20,
    tries: 250,
  });
  return JSON.parse(lines().at(-1)!.slice('counters '.length)) as Record<string, number>;
}

/** Counter by counter, `b - a` where it is not zero. */
export function counterDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const k of Object.keys(b)) if (b[k] !== a[k]) d[k] = b[k] - (a[k] ?? 0);
  return d;
}

/**
 * A kernel socket streams `n` bytes through our echo server at `addr` and checks every byte
 * (sha256 both ways); prints `connected <port>` once connected and `ok <bytes> <seconds>` at the end.
 */
export function echoScript(addr: string, n: number): string {
  return `
import socket, hashlib, threading, random, time
n = ${n}
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
want = hashlib.sha256(); left = n; t0 = time.time()
while left > 0:
    b = block[:min(left, 1 << 18)]; s.sendall(b); want.update(b); left -= len(b)
s.shutdown(socket.SHUT_WR); t.join(600)
assert count[0] == n, (count[0], n)
assert got.hexdigest() == want.hexdigest()
print("ok", count[0], round(time.time() - t0, 2), flush=True)
`;
}
