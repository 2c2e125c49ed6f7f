/**
 * `npm run bench -- tcp-5g [--json] [--gib N]`: one connection carries 5 GiB (by default) one way
 * between two engines on the simulator, so stream offsets and both sides' sequence numbers pass
 * 2^32; every byte is checked against the sender's pattern (period 65,521, a prime, so a stream
 * misplaced by 2^32 or any power of two cannot match). ISNs start close to the wrap.
 */
import { pairDone, tcpPair } from '../test/support/tcp-sim.ts';
import { type BenchOptions, benchFlags } from './harness.ts';

export async function run(o: BenchOptions): Promise<number> {
  const { gib } = benchFlags(o, { gib: { default: 5, min: 0.001, real: true } });
  const bytes = Math.round(gib * 2 ** 30);
  const p = tcpPair({
    seed: 5,
    link: { latencyUs: 100 },
    client: { send: bytes, chunk: 1 << 20, readPerTurn: Number.POSITIVE_INFINITY, close: true },
    server: { send: 0, chunk: 1, readPerTurn: Number.POSITIVE_INFINITY, close: true },
    clientConfig: { sendBufferSize: 8 << 20 },
    serverConfig: { recvBufferSize: 8 << 20 },
    clientIss: 0xffff_ff00,
    serverIss: 0xffff_fff0,
  });
  const t0 = performance.now();
  let lastReport = t0;
  for (let k = 0; k < 10_000_000 && !pairDone(p); k++) {
    p.net.run({ until: p.net.now + 100_000 });
    if (!o.json && performance.now() - lastReport > 5000) {
      lastReport = performance.now();
      console.log(`  ${(p.server.received / 2 ** 30).toFixed(2)} GiB verified`);
    }
    if (p.server.corrupt >= 0) break;
  }
  const wallS = (performance.now() - t0) / 1000;
  const ok = pairDone(p) && p.server.corrupt < 0 && p.server.received === bytes;
  const result = {
    bench: 'tcp-5g',
    bytes,
    verified: p.server.received,
    pastTwoTo32: p.server.received > 2 ** 32,
    ok,
    firstBadByte: p.server.corrupt,
    wallS,
    mbPerS: bytes / 1e6 / wallS,
    virtualS: p.net.now / 1e6,
  };
  if (o.json) console.log(JSON.stringify(result));
  else
    console.log(
      `${ok ? 'OK' : 'FAILED'}: ${result.verified} of ${bytes} bytes verified (past 2^32: ${result.pastTwoTo32}), ` +
        `${wallS.toFixed(1)} s wall, ${result.mbPerS.toFixed(1)} MB/s`,
    );
  return ok ? 0 : 1;
}
