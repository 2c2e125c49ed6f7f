/**
 * "A connection is a value" (docs/ARCHITECTURE.md §3): 500 seeds, each runs a random two-engine scenario to a
 * random instant, snapshots one side's connection, sends the snapshot through JSON (buffers as
 * base64), restores it into a fresh engine, and from then on feeds the original and the copy the
 * same inputs, application calls and polls. Every output (segments, deadlines, reads, state)
 * must be identical, to the end of the connection.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Rng } from '../../src/link/sim/rng.ts';
import { TcpConnection, type TcpSnapshot } from '../../src/tcp/connection.ts';
import type { TcpState } from '../../src/tcp/state.ts';
import type { TcpSegment } from '../../src/wire/tcp.ts';
import { forEachSeed } from '../support/seeds.ts';
import { scenario } from '../support/tcp-scenario.ts';
import { pairDone, tcpPair } from '../support/tcp-sim.ts';
import { ACK, bytes, established, recv, send } from './fixtures.ts';

/** JSON with byte buffers as {"$b64": "..."}: proof the snapshot is plain data. */
export function toJson(s: TcpSnapshot): string {
  return JSON.stringify(s, (_k, v) =>
    v instanceof Uint8Array ? { $b64: Buffer.from(v).toString('base64') } : v,
  );
}

export function fromJson(text: string): TcpSnapshot {
  return JSON.parse(text, (_k, v) =>
    v && typeof v === 'object' && typeof v.$b64 === 'string'
      ? new Uint8Array(Buffer.from(v.$b64, 'base64'))
      : v,
  ) as TcpSnapshot;
}

function sameSegment(a: TcpSegment, b: TcpSegment, where: string): void {
  assert.deepEqual({ ...b, payload: [...b.payload] }, { ...a, payload: [...a.payload] }, where);
}

/** The original and its restored copy, driven in lockstep; any divergence fails the test. */
class Twin {
  steps = 0;
  constructor(
    readonly a: TcpConnection,
    readonly b: TcpConnection,
    readonly where: string,
  ) {}
  private at(what: string): string {
    return `${this.where}, step ${this.steps}: ${what}`;
  }
  input(seg: TcpSegment, now: number): void {
    this.steps++;
    this.a.input(seg, now);
    this.b.input(seg, now);
  }
  poll(now: number, emit: (s: TcpSegment) => void): void {
    this.steps++;
    const outA: TcpSegment[] = [];
    const outB: TcpSegment[] = [];
    // Payloads are views of each engine's send buffer: copy before the next call.
    this.a.poll(now, (s) => outA.push({ ...s, payload: s.payload.slice() }));
    this.b.poll(now, (s) => outB.push({ ...s, payload: s.payload.slice() }));
    assert.equal(outB.length, outA.length, this.at('number of segments'));
    for (let i = 0; i < outA.length; i++) sameSegment(outA[i], outB[i], this.at(`segment ${i}`));
    for (const s of outA) emit(s);
  }
  pollAt(): number | undefined {
    const t = this.a.pollAt();
    assert.equal(this.b.pollAt(), t, this.at('pollAt'));
    return t;
  }
  write(data: Uint8Array): number {
    const n = this.a.write(data);
    assert.equal(this.b.write(data), n, this.at('write'));
    return n;
  }
  read(max?: number): Uint8Array | undefined {
    const x = this.a.read(max);
    const y = this.b.read(max);
    assert.deepEqual(y && [...y], x && [...x], this.at('read'));
    return x;
  }
  close(): void {
    this.a.close();
    this.b.close();
  }
  get writable(): number {
    assert.equal(this.b.writable, this.a.writable, this.at('writable'));
    return this.a.writable;
  }
  get readable(): number {
    assert.equal(this.b.readable, this.a.readable, this.at('readable'));
    return this.a.readable;
  }
  get eof(): boolean {
    assert.equal(this.b.eof, this.a.eof, this.at('eof'));
    return this.a.eof;
  }
  get state(): TcpState {
    assert.equal(this.b.state, this.a.state, this.at('state'));
    return this.a.state;
  }
  get error() {
    assert.equal(this.b.error, this.a.error, this.at('error'));
    return this.a.error;
  }
}

describe('snapshot and restore', () => {
  test('500 seeds: a restored copy behaves exactly like the original from any point on', () => {
    const states = new Map<string, number>();
    let compared = 0;
    forEachSeed(500, (seed) => {
      const s = scenario(seed, 100_000);
      const r = new Rng(seed * 31 + 5);
      const p = tcpPair({ seed, ...s });
      // Early instants catch the handshake; later ones the transfer, the close and TIME-WAIT.
      const at = r.chance(0.2) ? r.int(0, 30_000) : r.int(0, 3_000_000);
      const side = r.chance(0.5) ? p.client : p.server;
      let twin: Twin | undefined;
      p.net.at(at, (now) => {
        const c = side.conn;
        if (!c) return;
        const snap = fromJson(toJson(c.snapshot(now)));
        states.set(c.state, (states.get(c.state) ?? 0) + 1);
        twin = new Twin(
          c,
          TcpConnection.restore(snap, now),
          `seed ${seed} ${side.name} at ${now} in ${c.state}`,
        );
        side.conn = twin as unknown as TcpConnection;
        p.net.after(0, () => side.handle.wake());
      });
      for (let k = 0; k < 600 && !pairDone(p); k++)
        p.net.run({ until: p.net.now + 1_000_000, maxEvents: 5_000_000 });
      // Let TIME-WAIT and any last retransmission play out in lockstep too.
      p.net.run({ until: p.net.now + 120_000_000, maxEvents: 5_000_000 });
      assert.ok(pairDone(p), `seed ${seed}: transfer did not complete`);
      if (twin) {
        compared += twin.steps;
        twin.state;
      }
    });
    if (!process.env.SEED) {
      assert.ok(compared > 10_000, `only ${compared} lockstep steps compared`);
      for (const st of ['ESTABLISHED', 'SYN-SENT', 'TIME-WAIT', 'FIN-WAIT-2']) {
        assert.ok((states.get(st) ?? 0) > 0, `no snapshot taken in ${st}: ${JSON.stringify([...states])}`);
      }
    }
  });

  test('restore on another clock moves every deadline by the clock difference', () => {
    const s = scenario(3, 50_000);
    const p = tcpPair({ seed: 3, ...s });
    p.net.run({ until: 20_000 });
    const c = p.client.conn!;
    const due = c.pollAt();
    assert.ok(due !== undefined);
    const moved = TcpConnection.restore(fromJson(toJson(c.snapshot(p.net.now))), p.net.now + 5_000_000);
    assert.equal(moved.pollAt(), due + 5_000_000);
  });
});

describe('restore after a take-over: the accept edge', () => {
  /**
   * The peer's ACK arrives with a sequence number far past our right edge: it had sent that much
   * into a window the old node advertised after the state we restored from was replicated.
   */
  const afterRestore = (acceptEdge: number | undefined) => {
    const fx = established();
    const t = fx.now + 1000;
    assert.equal(fx.conn.write(bytes(3000)), 3000);
    recv(fx.conn, t);
    const snap = fx.conn.snapshot(t, true);
    const restored = TcpConnection.restore(
      { ...snap, acceptEdge: acceptEdge === undefined ? undefined : snap.rcvNxt + acceptEdge },
      t,
    );
    const beyond = snap.rcvRightEdge - snap.rcvNxt + 50_000;
    // The first two segments went out (the initial window); the peer acknowledges both.
    send(restored, t + 1000, {
      seq: fx.rcv(beyond),
      ack: fx.snd(2920),
      flags: ACK,
      window: 65535,
      tsVal: fx.peerTs(t + 1000),
      tsEcr: fx.peer.tsVal === undefined ? undefined : fx.ts(t),
    });
    return { restored, replies: recv(restored, t + 1000) };
  };

  test('an ACK from beyond our own edge but within the accept edge counts', () => {
    const { restored } = afterRestore(0xffff * 2 ** 14);
    assert.equal(restored.acknowledged, 2920);
  });

  test('control: without it, RFC 9293 drops the segment and its ACK, and answers with a duplicate ACK', () => {
    const { restored, replies } = afterRestore(undefined);
    assert.equal(restored.acknowledged, 0);
    assert.equal(replies.length, 1);
    assert.equal(replies[0].payload.length, 0);
  });
});
