/**
 * `npm run bench -- <name> [--json] [args]`: runs one benchmark. Names: see BENCHES.
 */
import type { BenchOptions } from './harness.ts';

const BENCHES: Record<
  string,
  { about: string; load: () => Promise<{ run(o: BenchOptions): Promise<number> }> }
> = {
  wire: {
    about: 'parse+emit throughput of frames (1,500-byte TCP/IPv4 segment, 66-byte ACK)',
    load: () => import('./wire.ts'),
  },
  tcp: {
    about: 'TCP engine on the simulator: bulk MB/s (0 %, 1 % loss), retransmission efficiency (--mb N)',
    load: () => import('./tcp.ts'),
  },
  'tcp-5g': {
    about: 'one connection carries 5 GiB on the simulator, every byte checked (--gib N)',
    load: () => import('./tcp-5g.ts'),
  },
  throughput: { about: 'our stack vs kernel TCP on a TAP (--mb N)', load: () => import('./throughput.ts') },
  'ha-sim': {
    about: 'take-over property on the simulator over many seeds (default 10,000; --seeds N)',
    load: () => import('./ha-sim.ts'),
  },
  failover: {
    about: 'kill -9 take-overs on a real network, sync vs standalone, restore of 10k idle (--runs N)',
    load: () => import('./failover.ts'),
  },
  nemesis: {
    about:
      'one fault at a time (kill, crash, pause, partitions, churn, RST storm, clock) under kernel clients (--runs N)',
    load: () => import('./nemesis.ts'),
  },
  channel: {
    about:
      'replication link: AES-256-GCM seal+open vs HMAC (v1) vs copy, 64 B to 1 MiB; loopback TCP (--mb N)',
    load: () => import('./channel.ts'),
  },
  relay: {
    about:
      'takeover relay vs HAProxy in front of redis, nginx, PostgreSQL: MB/s, ops/s, tps, RTT, CPU/GB; failover stall over kill -9s (--kills N, --mb N)',
    load: () => import('./relay.ts'),
  },
  fuzz: {
    about: 'mutated and random frames into every parser (default 2M cases; --cases N)',
    load: () => import('./fuzz.ts'),
  },
};

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const json = argv.includes('--json');
  const words = argv.filter((a) => a !== '--json');
  const name = words[0];
  const bench = name === undefined ? undefined : BENCHES[name];
  if (!bench) {
    const list = Object.entries(BENCHES)
      .map(([k, v]) => `  ${k.padEnd(8)} ${v.about}`)
      .join('\n');
    console.error(`usage: npm run bench -- <name> [--json]\n\nbenchmarks:\n${list}`);
    return name === undefined ? 0 : 2;
  }
  const mod = await bench.load();
  return mod.run({ json, args: words.slice(1) });
}

process.exitCode = await main();
