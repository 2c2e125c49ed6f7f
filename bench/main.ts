/**
 * `npm run bench -- <name> [--json] [args]`: runs one benchmark. Names: see BENCHES.
 */
import { type BenchOptions, UsageError } from './harness.ts';

/** Each benchmark: what it measures, its flags (besides --json), and its module. */
const BENCHES: Record<
  string,
  { about: string; flags?: string; load: () => Promise<{ run(o: BenchOptions): Promise<number> }> }
> = {
  wire: {
    flags: '[--ms N]',
    about: 'parse+emit throughput of frames (1,500-byte TCP/IPv4 segment, 66-byte ACK)',
    load: () => import('./wire.ts'),
  },
  tcp: {
    flags: '[--mb N]',
    about: 'TCP engine on the simulator: bulk MB/s (0 %, 1 % loss), retransmission efficiency (--mb N)',
    load: () => import('./tcp.ts'),
  },
  'tcp-5g': {
    flags: '[--gib N]',
    about: 'one connection carries 5 GiB on the simulator, every byte checked (--gib N)',
    load: () => import('./tcp-5g.ts'),
  },
  throughput: {
    flags: '[--mb N] [--pings N] [--runs N]',
    about: 'our stack vs kernel TCP on a TAP (--mb N)',
    load: () => import('./throughput.ts'),
  },
  'ha-sim': {
    flags: '[--seeds N] [--from N]',
    about: 'take-over property on the simulator over many seeds (default 10,000; --seeds N)',
    load: () => import('./ha-sim.ts'),
  },
  failover: {
    flags: '[--runs N] [--mb N] [--idle N] [--dl-mb N] [--pings N]',
    about: 'kill -9 take-overs on a real network, sync vs standalone, restore of 10k idle (--runs N)',
    load: () => import('./failover.ts'),
  },
  nemesis: {
    flags:
      '[--runs N] [--scenario S[,S…]] [--seed N] [--heartbeat-ms N|default] [--timeout-ms N|default] [--arbiter] [--relay]',
    about:
      'one fault at a time (kill, crash, pause, partitions, churn, a kill mid-bootstrap, RST storm, clock) under kernel clients (--runs N)',
    load: () => import('./nemesis.ts'),
  },
  channel: {
    flags: '[--ms N] [--mb N] [--no-tcp]',
    about:
      'replication link: AES-256-GCM seal+open vs HMAC (v1) vs copy, 64 B to 1 MiB; loopback TCP (--mb N)',
    load: () => import('./channel.ts'),
  },
  relay: {
    flags: '[--kills N] [--mb N] [--only throughput,relay,keepalived]',
    about:
      'takeover relay vs HAProxy in front of redis, nginx, PostgreSQL: MB/s, ops/s, tps, RTT, CPU/GB; what clients see through kill -9s of our pair and host failures of HAProxy + keepalived',
    load: () => import('./relay.ts'),
  },
  fuzz: {
    flags: '[--cases N] [--seed N]',
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
      .map(([k, v]) => `  ${k.padEnd(10)} ${v.about}${v.flags ? `\n  ${''.padEnd(10)} ${v.flags}` : ''}`)
      .join('\n');
    console.error(`usage: npm run bench -- <name> [--json]\n\nbenchmarks:\n${list}`);
    return name === undefined ? 0 : 2;
  }
  const mod = await bench.load();
  try {
    return await mod.run({ json, args: words.slice(1) });
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(
      `bench ${name}: ${e.message}\nusage: npm run bench -- ${name} ${bench.flags ?? ''} [--json]`,
    );
    return 2;
  }
}

process.exitCode = await main();
