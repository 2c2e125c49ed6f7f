/**
 * Random two-engine scenarios on the simulated network and the invariants every run must keep,
 * shared by the engine's property tests, the snapshot tests and the benchmarks.
 */
import assert from 'node:assert/strict';
import type { LinkOptions } from '../../src/link/sim/index.ts';
import { Rng } from '../../src/link/sim/rng.ts';
import type { TcpConfig } from '../../src/tcp/config.ts';
import { TcpState } from '../../src/tcp/state.ts';
import { TCP_RST } from '../../src/wire/tcp.ts';
import { type EndpointPlan, type Pair, pairDone, tcpPair } from './tcp-sim.ts';

export interface Scenario {
  link: LinkOptions;
  client: EndpointPlan;
  server: EndpointPlan;
  clientConfig: Partial<TcpConfig>;
  serverConfig: Partial<TcpConfig>;
}

/** A random scenario for `seed` (its own stream, so the network's randomness is independent). */
export function scenario(seed: number, maxBytes = 200_000): Scenario {
  const r = new Rng(seed * 7919 + 17);
  const plan = (): EndpointPlan => ({
    send: r.chance(0.1) ? 0 : r.int(1, maxBytes),
    chunk: r.int(1, 70_000),
    readPerTurn: r.chance(0.3) ? r.int(100, 20_000) : Number.POSITIVE_INFINITY,
    close: true,
  });
  const cfg = (): Partial<TcpConfig> => ({
    sack: r.chance(0.7),
    timestamps: r.chance(0.7),
    windowScale: r.chance(0.7),
    congestion: r.chance(0.5) ? 'cubic' : 'newreno',
    noDelay: r.chance(0.5),
    recvBufferSize: r.chance(0.3) ? r.int(2000, 100_000) : 1 << 20,
    mss: r.chance(0.2) ? r.int(200, 1460) : 1460,
  });
  return {
    link: {
      latencyUs: r.int(10, 20_000),
      bandwidthBps: r.chance(0.5) ? r.int(1e6, 1e9) : undefined,
      loss: r.chance(0.7) ? r.next() * 0.1 : 0,
      duplicate: r.chance(0.3) ? r.next() * 0.05 : 0,
      reorder: r.chance(0.3) ? r.next() * 0.1 : 0,
      corrupt: r.chance(0.3) ? r.next() * 0.02 : 0,
      queueFrames: r.chance(0.3) ? r.int(5, 100) : undefined,
    },
    client: plan(),
    server: plan(),
    clientConfig: cfg(),
    serverConfig: cfg(),
  };
}

/** Runs a scenario to completion (bounded: 600 s of virtual time) and checks every invariant. */
export function runScenario(seed: number, s: Scenario): Pair {
  const p = tcpPair({ seed, ...s });
  let rstSent = 0;
  for (const e of [p.client, p.server]) {
    e.onSegmentOut = (seg) => {
      if (seg.flags & TCP_RST) rstSent++;
    };
  }
  const closed = () => p.client.conn?.state === TcpState.Closed && p.server.conn?.state === TcpState.Closed;
  for (let k = 0; k < 600 && !(pairDone(p) && closed()); k++) {
    p.net.run({ until: p.net.now + 1_000_000, maxEvents: 5_000_000 });
  }
  const why = JSON.stringify({ seed, ...s, now: p.net.now });
  assert.equal(p.client.corrupt, -1, `client read a wrong byte at ${p.client.corrupt}: ${why}`);
  assert.equal(p.server.corrupt, -1, `server read a wrong byte at ${p.server.corrupt}: ${why}`);
  assert.equal(p.server.received, s.client.send, `server received ${p.server.received}: ${why}`);
  assert.equal(p.client.received, s.server.send, `client received ${p.client.received}: ${why}`);
  assert.ok(p.client.eof && p.server.eof, `end of stream not seen on both sides: ${why}`);
  assert.equal(rstSent, 0, `an RST was sent: ${why}`);
  assert.equal(p.client.conn?.error, undefined, `client error ${p.client.conn?.error}: ${why}`);
  assert.equal(p.server.conn?.error, undefined, `server error ${p.server.conn?.error}: ${why}`);
  assert.ok(closed(), `not both CLOSED (${p.client.conn?.state}, ${p.server.conn?.state}): ${why}`);
  return p;
}
