/**
 * `npm run bench -- tcp [--json] [--mb N]`: the TCP engine on the simulated network, one core.
 *
 * - Bulk throughput: N MB one way between two engines over an unlimited link (100 µs latency),
 *   at 0 % and 1 % loss: wall-clock MB/s of payload delivered and verified, and segments
 *   processed per second (both engines). Baseline in the same run: the simulator alone carrying
 *   the same number of frames of the same sizes between two nodes that do nothing, so the ratio
 *   says what the TCP engines cost on top of the network model.
 * - Retransmission efficiency at 1 % and 5 % loss, NewReno vs CUBIC, SACK on vs off: payload
 *   bytes retransmitted / payload bytes the link dropped (1.0 is ideal; above 1 is spurious
 *   retransmission), and goodput in virtual time over a 100 Mbit/s, 10 ms RTT link.
 */
import { Network, type NodeHandle, type SimNode } from '../src/link/sim/index.ts';
import type { CongestionAlgorithm } from '../src/tcp/congestion/index.ts';
import { type Pair, pairDone, tcpPair } from '../test/support/tcp-sim.ts';
import { type BenchOptions, benchFlags, printTable } from './harness.ts';

function runToEnd(p: Pair, limitUs: number): void {
  for (let k = 0; k < 100_000 && !pairDone(p) && p.net.now < limitUs; k++)
    p.net.run({ until: p.net.now + 1_000_000 });
  if (!pairDone(p)) throw new Error('transfer did not complete');
  if (p.client.corrupt >= 0 || p.server.corrupt >= 0) throw new Error('a byte arrived wrong');
}

interface Bulk {
  loss: number;
  mb: number;
  wallS: number;
  mbPerS: number;
  segmentsPerS: number;
  segments: number;
}

function bulk(bytes: number, loss: number): Bulk {
  const p = tcpPair({
    seed: 1,
    link: { latencyUs: 100, loss },
    client: { send: bytes, chunk: 256 * 1024, readPerTurn: Number.POSITIVE_INFINITY, close: true },
    server: { send: 0, chunk: 1, readPerTurn: Number.POSITIVE_INFINITY, close: true },
    clientConfig: { sendBufferSize: 8 << 20 },
    serverConfig: { recvBufferSize: 8 << 20 },
  });
  const t0 = performance.now();
  runToEnd(p, 3600e6);
  const wallS = (performance.now() - t0) / 1000;
  const segments = p.client.segmentsIn + p.server.segmentsIn;
  return {
    loss,
    mb: bytes / 1e6,
    wallS,
    mbPerS: bytes / 1e6 / wallS,
    segmentsPerS: segments / wallS,
    segments,
  };
}

/** Two nodes that only bounce pre-built frames: the simulator's own cost for `frames` frames. */
function simOnly(frames: number, size: number): number {
  class Blaster implements SimNode {
    handle!: NodeHandle;
    left = frames;
    readonly frame = new Uint8Array(size);
    attach(h: NodeHandle) {
      this.handle = h;
    }
    receive(): void {}
    pollAt() {
      return this.left > 0 ? this.handle.now : undefined;
    }
    poll() {
      for (let i = 0; i < 64 && this.left > 0; i++, this.left--) this.handle.send(0, this.frame);
    }
  }
  class Sink implements SimNode {
    n = 0;
    receive(): void {
      this.n++;
    }
  }
  const net = new Network({ seed: 1 });
  const a = net.attach(new Blaster(), 'a');
  const sink = new Sink();
  const b = net.attach(sink, 'b');
  net.connect(a, 0, b, 0, { latencyUs: 100 });
  const t0 = performance.now();
  net.runUntilIdle(1e9);
  const s = (performance.now() - t0) / 1000;
  if (sink.n !== frames) throw new Error('sim-only baseline lost frames');
  return frames / s;
}

interface Efficiency {
  algorithm: CongestionAlgorithm;
  sack: boolean;
  loss: number;
  lostBytes: number;
  resentBytes: number;
  efficiency: number;
  goodputMbps: number;
  timeouts: number;
}

function efficiency(algorithm: CongestionAlgorithm, sack: boolean, loss: number, bytes: number): Efficiency {
  const p = tcpPair({
    seed: 7,
    link: { latencyUs: 5000, bandwidthBps: 100e6, queueFrames: 200, loss },
    client: { send: bytes, chunk: 256 * 1024, readPerTurn: Number.POSITIVE_INFINITY, close: true },
    server: { send: 0, chunk: 1, readPerTurn: Number.POSITIVE_INFINITY, close: true },
    clientConfig: { congestion: algorithm, sack },
    serverConfig: { sack },
  });
  let doneAt = 0;
  for (let k = 0; k < 100_000 && !pairDone(p); k++) {
    p.net.run({ until: p.net.now + 100_000 });
    if (pairDone(p)) doneAt = p.net.now;
  }
  if (!pairDone(p) || p.server.corrupt >= 0) throw new Error('transfer did not complete');
  const c = p.client.conn!.counters;
  const lostBytes = c.bytesOut - p.server.payloadIn;
  return {
    algorithm,
    sack,
    loss,
    lostBytes,
    resentBytes: c.bytesRetransmitted,
    efficiency: lostBytes > 0 ? c.bytesRetransmitted / lostBytes : Number.NaN,
    goodputMbps: (bytes * 8) / doneAt,
    timeouts: c.timeouts,
  };
}

export async function run(o: BenchOptions): Promise<number> {
  const { mb } = benchFlags(o, { mb: { default: 100, min: 0.001, real: true } });
  const bytes = Math.round(mb * 1e6);
  const bulks = [bulk(bytes, 0), bulk(bytes, 0.01)];
  // Same frame count and full-sized frames: what the network model alone costs.
  const frames = bulks[0].segments;
  const simFramesPerS = simOnly(frames, 1514);
  const effBytes = Math.round(Math.min(bytes, 20e6));
  const effs: Efficiency[] = [];
  for (const loss of [0.01, 0.05])
    for (const algorithm of ['newreno', 'cubic'] as const)
      for (const sack of [true, false]) effs.push(efficiency(algorithm, sack, loss, effBytes));
  if (o.json) {
    console.log(
      JSON.stringify({
        bench: 'tcp',
        node: process.version,
        bulk: bulks.map((b) => ({
          ...b,
          simOnlyFramesPerS: Math.round(simFramesPerS),
          vsSimOnly: b.segmentsPerS / simFramesPerS,
        })),
        retransmission: effs,
      }),
    );
    return 0;
  }
  console.log(`Bulk transfer, ${mb} MB one way, two engines on one core (wall clock):\n`);
  printTable(
    ['loss', 'MB/s payload', 'segments/s', 'sim alone frames/s', 'segments/s ÷ sim alone'],
    bulks.map((b) => [
      `${b.loss * 100}%`,
      b.mbPerS.toFixed(1),
      Math.round(b.segmentsPerS),
      Math.round(simFramesPerS),
      (b.segmentsPerS / simFramesPerS).toFixed(3),
    ]),
  );
  console.log(
    `\nRetransmission efficiency, ${effBytes / 1e6} MB over 100 Mbit/s, 10 ms RTT (virtual time):\n`,
  );
  printTable(
    ['loss', 'algorithm', 'SACK', 'bytes lost', 'bytes resent', 'resent/lost', 'goodput Mbit/s', 'RTOs'],
    effs.map((e) => [
      `${e.loss * 100}%`,
      e.algorithm,
      e.sack ? 'on' : 'off',
      e.lostBytes,
      e.resentBytes,
      e.efficiency.toFixed(3),
      e.goodputMbps.toFixed(1),
      e.timeouts,
    ]),
  );
  return 0;
}
