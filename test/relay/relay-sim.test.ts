/**
 * The relay pair on the simulator, named cases (the seeds' property is in relay-sim-*.test.ts):
 * the real Relay, Runtime and HaNode on virtual time, a simulated backend, kernel-free clients.
 * Each case is a seed that once failed, kept with what it found.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type RelayScenario,
  randomRelayScenario,
  relayScenarioFailures,
  runRelayScenario,
} from '../../src/sim/relay-pair.ts';

async function run(s: RelayScenario) {
  const r = await runRelayScenario(s);
  const logs = r.nodes
    .flatMap((n) => n.logs)
    .sort((x, y) => Number.parseFloat(x) - Number.parseFloat(y))
    .join('\n');
  assert.deepEqual(relayScenarioFailures(s, r), [], `${JSON.stringify(s)}\n${logs}`);
  return { ...r, logs };
}

describe('relay pair on the simulator', () => {
  test('a slow client (a 4 KB window): take-overs across the whole download, byte-exact, no RST', async () => {
    // The relay holds bytes for a client that reads slowly (backpressure pauses the server leg),
    // so each take-over restores a client leg with unsent bytes in its stream buffer and a server
    // leg paused mid-stream; every 2 ms of the download, one crash each.
    let paired = 0;
    for (let crashAtUs = 6_000; crashAtUs <= 40_000; crashAtUs += 2_000) {
      const r = await run({
        seed: 7,
        echo: 0,
        downloads: 1,
        rr: 0,
        echoBytes: 0,
        downloadBytes: 400_000,
        requests: 0,
        crashAtUs,
        secondCrash: false,
        loss: 0,
        v6: false,
        clientRecvBuffer: 4096,
      });
      // The node that took over paired the download's two legs again (mid-stream, not after it).
      for (const n of r.nodes) paired += n.relay.status().restored.paired;
    }
    assert.ok(paired >= 15, `${paired} restored sessions paired over 18 take-overs`);
  });

  test('no crash: echo, download and request/response through the relay, byte-exact, every leg closed', async () => {
    const r = await run({
      seed: 1,
      echo: 2,
      downloads: 2,
      rr: 2,
      echoBytes: 100_000,
      downloadBytes: 200_000,
      requests: 10,
      crashAtUs: undefined,
      secondCrash: false,
      loss: 0,
      v6: false,
    });
    const st = r.nodes[0].relay.status();
    assert.deepEqual(
      st.frontends.map((f) => [f.name, f.total, f.active]),
      [
        ['fe7', 2, 0],
        ['fe19', 2, 0],
        ['fe80', 2, 0],
      ],
    );
    assert.equal(r.serverConns.length, 6);
    assert.equal(r.nodes[1].ha.role, 'standby');
  });

  test('a crash while every server leg is still connecting: the new active finishes the connects and relays', async () => {
    // Seed 399: the active died with its six server legs in SYN-SENT (their SYNs had left, the
    // backend's SYN-ACKs had not come). They used to be orphaned and their clients reset.
    const r = await run(randomRelayScenario(399));
    assert.match(r.logs, /b: take-over: 13 connection\(s\) restored/);
    assert.equal(r.nodes[1].relay.status().restored.paired, 6);
  });

  test('a client restored in its handshake is accepted once, when it completes (not twice)', async () => {
    // Seed 19: a client leg in SYN-RECEIVED at the crash went to the relay at the take-over and
    // again when its handshake completed: two server legs, two downloads into one connection.
    const r = await run(randomRelayScenario(19));
    assert.match(r.logs, /restored before its relay session began: starting it/);
  });

  test('a closing client leg restored without its server leg finishes with a FIN, not a RST', async () => {
    // Seed 21: the download's server leg had closed before the crash, the client leg still owed
    // bytes and its FIN; it was taken for a waiting client and reset.
    const r = await run(randomRelayScenario(21));
    assert.match(r.logs, /restored client leg of be19\/s1 without its partner/);
  });

  test('handshakes stuck behind a lost ARP reply across two take-overs finish when the ARP does', async () => {
    // Seed 84: 40 client SYNs reached the first new active, whose ARP for the client went
    // unanswered (2.8 % loss); they came back in SYN-RECEIVED after the second take-over, whose
    // kick and re-kicks used up the SYN-ACK retries in a second: the connections died just
    // before the client's ACK, which drew RSTs.
    const r = await run(randomRelayScenario(84));
    assert.match(r.logs, /a: take-over: 40 connection\(s\) restored/);
  });

  test('the active dies before its standby ever beaconed and restarts at once: the standby takes over, the restarted node waits for it', async () => {
    // Seed 81: crash at 4.7 ms. The standby's poll time was -Infinity (no beacon sent yet) and
    // the runtime read it as "never": it never polled, never took over. The restarted process
    // (configured active) heard a synced standby and claimed the VIP with nothing.
    const r = await run(randomRelayScenario(81));
    assert.match(r.logs, /a: peer b is a synced standby: waiting for it to take over/);
    assert.match(r.logs, /b: active at epoch 2 \(take-over\)/);
  });
});
