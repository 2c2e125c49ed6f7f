/**
 * `npm run bench -- channel [--json] [--ms N] [--mb N] [--no-tcp]`: what the replication link's
 * encryption costs (issue 12).
 *
 * Seal + open of one message on one core, for payloads of 64 B, 1 KiB, 64 KiB and 1 MiB, three
 * ways in the same run:
 * - "aead": the channel as shipped (protocol.ts v2): `SecureChannel.seal` on one end, `feed` on
 *   the other (framing, AES-256-GCM with the header as associated data, counter and key-phase
 *   checks, the receive queue's copy).
 * - "hmac": the scheme it replaced (protocol v1), computed here with node:crypto: the frame built
 *   (header + payload copied in), HMAC-SHA256 over direction, header and payload appended; on the
 *   other end the frame copied out of the stream (the receive queue's copy) and the MAC verified
 *   (timingSafeEqual). No confidentiality.
 * - "copy": the frame built and copied out, no cryptography: the floor both stand on.
 * Each rate is the best of several timed batches (the machine is shared; see harness.ts).
 *
 * Then, unless --no-tcp, the end-to-end cost over loopback kernel TCP: --mb N MB (default 64) in
 * messages of 1 KiB and 64 KiB through two ReplicationTransports on 127.0.0.1, beside the same
 * bytes through a plain kernel TCP pair (counted, not framed), both with at most 8 MB in flight.
 */
import { createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { CryptoRandom } from '../src/api/runtime.ts';
import type { PeerLink } from '../src/ha/node.ts';
import { type ChannelEvent, PROTOCOL_VERSION, SecureChannel } from '../src/ha/protocol.ts';
import { ReplicationTransport } from '../src/ha/transport.ts';
import { writeU32 } from '../src/wire/bytes.ts';
import { type BenchOptions, benchFlags, formatRate, printTable } from './harness.ts';

const SIZES = [64, 1024, 65536, 1 << 20];
const TCP_SIZES = [1024, 65536];
const HOST = '127.0.0.1';
/** Header bytes of a v1 frame (length, version, type, epoch, counter) and its MAC. */
const V1_HEADER = 18;
const V1_MAC = 32;

interface Rate {
  msgsPerSec: number;
  mbPerSec: number;
}

interface SizeRow {
  bytes: number;
  aead: Rate;
  hmac: Rate;
  copy: Rate;
  /** aead throughput / hmac throughput, and / copy throughput. */
  aeadVsHmac: number;
  aeadVsCopy: number;
}

interface TcpRow {
  bytes: number;
  mb: number;
  channel: Rate;
  rawTcp: Rate;
  channelVsRaw: number;
}

/**
 * Runs `op(n)` (n messages of `bytes` payload) in batches growing until one takes at least 50 ms,
 * for `ms` of measured time after a warm-up, and returns the best batch's rate.
 */
function measure(op: (n: number) => void, bytes: number, ms: number): Rate {
  let n = 1;
  const warmEnd = performance.now() + Math.min(300, ms / 3);
  while (performance.now() < warmEnd) op(1);
  let best = 0;
  let spent = 0;
  while (spent < ms) {
    const t0 = performance.now();
    op(n);
    const dt = performance.now() - t0;
    spent += dt;
    if (dt < 50) n *= 2;
    else best = Math.max(best, (n / dt) * 1000);
  }
  if (best === 0) best = (n / Math.max(spent, 1e-3)) * 1000;
  return rate(best, bytes);
}

/** Messages/s rounded to whole messages, MB/s to a tenth. */
function rate(msgsPerSec: number, bytes: number): Rate {
  return { msgsPerSec: Math.round(msgsPerSec), mbPerSec: Math.round((msgsPerSec * bytes) / 1e5) / 10 };
}

const ratio = (x: Rate, y: Rate) => Math.round((x.msgsPerSec / y.msgsPerSec) * 1000) / 1000;

function channelPair(): { a: SecureChannel; b: SecureChannel } {
  const key = new Uint8Array(32).fill(7);
  const a = new SecureChannel({ keys: [key], nodeId: 'a', initiator: true, rng: new CryptoRandom() });
  const b = new SecureChannel({ keys: [key], nodeId: 'b', initiator: false, rng: new CryptoRandom() });
  b.feed(a.hello());
  a.feed(b.hello());
  if (!a.ready || !b.ready) throw new Error('bench: the channel pair did not become ready');
  return { a, b };
}

function benchSize(bytes: number, ms: number): SizeRow {
  const payload = new Uint8Array(bytes).fill(0x5a);
  let sink = 0;

  const { a, b } = channelPair();
  const aead = measure(
    (n) => {
      for (let i = 0; i < n; i++) {
        const events: ChannelEvent[] = b.feed(a.seal(1, 1, payload));
        const e = events[0];
        if (e?.kind !== 'message')
          throw new Error(`bench: the channel refused a message: ${JSON.stringify(e)}`);
        sink += e.payload.length;
      }
    },
    bytes,
    ms,
  );

  // Protocol v1, as it was: HMAC-SHA256(sessionKey, direction || header || payload).
  const sessionKey = createSecretKey(new Uint8Array(32).fill(9));
  const dir = Uint8Array.of(1);
  let counter = 0;
  const v1Seal = (): Uint8Array => {
    counter++;
    const macAt = V1_HEADER + bytes;
    const out = new Uint8Array(macAt + V1_MAC);
    writeU32(out, 0, out.length - 4);
    out[4] = 1;
    out[5] = 1;
    writeU32(out, 6, 1);
    writeU32(out, 14, counter);
    out.set(payload, V1_HEADER);
    out.set(createHmac('sha256', sessionKey).update(dir).update(out.subarray(0, macAt)).digest(), macAt);
    return out;
  };
  const hmac = measure(
    (n) => {
      for (let i = 0; i < n; i++) {
        const m = v1Seal().slice(); // the receive queue's copy
        const macAt = m.length - V1_MAC;
        const mac = createHmac('sha256', sessionKey).update(dir).update(m.subarray(0, macAt)).digest();
        if (!timingSafeEqual(mac, m.subarray(macAt))) throw new Error('bench: v1 MAC mismatch');
        sink += m.subarray(V1_HEADER, macAt).length;
      }
    },
    bytes,
    ms,
  );

  const copy = measure(
    (n) => {
      for (let i = 0; i < n; i++) {
        const out = new Uint8Array(V1_HEADER + bytes);
        writeU32(out, 0, out.length - 4);
        out.set(payload, V1_HEADER);
        const m = out.slice();
        sink += m.subarray(V1_HEADER).length;
      }
    },
    bytes,
    ms,
  );
  if (sink === -1) console.log('');
  return {
    bytes,
    aead,
    hmac,
    copy,
    aeadVsHmac: ratio(aead, hmac),
    aeadVsCopy: ratio(aead, copy),
  };
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, HOST, resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const IN_FLIGHT = 8 << 20;
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Sends `total` bytes in `bytes`-sized messages, at most IN_FLIGHT ahead of `received()`. */
async function pump(send: () => void, bytes: number, total: number, received: () => number): Promise<number> {
  const count = Math.ceil(total / bytes);
  const t0 = performance.now();
  let sent = 0;
  while (received() < count) {
    while (sent < count && (sent - received()) * bytes < IN_FLIGHT) {
      send();
      sent++;
    }
    await tick();
  }
  return (performance.now() - t0) / 1000;
}

async function tcpChannel(bytes: number, total: number): Promise<Rate> {
  const key = new Uint8Array(32).fill(7);
  let got = 0;
  let linkA: PeerLink | undefined;
  let linkB: PeerLink | undefined;
  const make = (nodeId: string, peerPort: number, onOpen: (l: PeerLink) => void) =>
    new ReplicationTransport({
      nodeId,
      keys: [key],
      listen: { host: HOST, port: 0 },
      peer: { host: HOST, port: peerPort },
      rng: new CryptoRandom(),
      redialMs: 20,
      onOpen,
      onMessage: () => {
        got++;
      },
      onClose: () => {},
      log: () => {},
    });
  const a = make('a', await closedPort(), (l) => {
    linkA = l;
  });
  await a.start();
  const b = make('b', a.port!, (l) => {
    linkB = l;
  });
  await b.start();
  const deadline = Date.now() + 5000;
  while (!linkA || !linkB) {
    if (Date.now() > deadline) throw new Error('bench: the loopback replication link did not come up in 5 s');
    await new Promise((r) => setTimeout(r, 5));
  }
  const payload = new Uint8Array(bytes).fill(0x5a);
  const link = linkA;
  const s = await pump(
    () => link.send(1, 1, payload),
    bytes,
    total,
    () => got,
  );
  await Promise.all([a.stop(), b.stop()]);
  return rate(Math.ceil(total / bytes) / s, bytes);
}

async function tcpRaw(bytes: number, total: number): Promise<Rate> {
  let gotBytes = 0;
  const server = net.createServer((s) => {
    s.on('data', (d: Buffer) => {
      gotBytes += d.length;
    });
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const port = (server.address() as net.AddressInfo).port;
  const c = net.connect({ host: HOST, port });
  c.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', resolve);
    c.once('error', reject);
  });
  const frame = new Uint8Array(V1_HEADER + bytes).fill(0x5a);
  const s = await pump(
    () => c.write(frame.slice()),
    bytes,
    total,
    () => Math.floor(gotBytes / frame.length),
  );
  c.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return rate(Math.ceil(total / bytes) / s, bytes);
}

function cpuInfo(): { model: string; aes: boolean; vaes: boolean; pclmulqdq: boolean } {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1] ?? 'unknown';
    const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? '').split(/\s+/));
    return { model, aes: flags.has('aes'), vaes: flags.has('vaes'), pclmulqdq: flags.has('pclmulqdq') };
  } catch {
    return { model: 'unknown', aes: false, vaes: false, pclmulqdq: false };
  }
}

const fmtMB = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const sizeName = (b: number) => (b >= 1 << 20 ? `${b >> 20} MiB` : b >= 1024 ? `${b >> 10} KiB` : `${b} B`);

export async function run(o: BenchOptions): Promise<number> {
  const f = benchFlags(o, { ms: { default: 1500 }, mb: { default: 64 } }, ['no-tcp']);
  const p = { ms: f.ms, mb: f.mb, tcp: !f['no-tcp'] };
  const rows = SIZES.map((s) => benchSize(s, p.ms));
  const tcp: TcpRow[] = [];
  if (p.tcp)
    for (const bytes of TCP_SIZES) {
      const total = p.mb * 1e6;
      const channel = await tcpChannel(bytes, total);
      const rawTcp = await tcpRaw(bytes, total);
      tcp.push({ bytes, mb: p.mb, channel, rawTcp, channelVsRaw: ratio(channel, rawTcp) });
    }
  const cpu = cpuInfo();
  if (o.json) {
    console.log(
      JSON.stringify({
        bench: 'channel',
        unit: 'payload MB/s (1e6 bytes) and messages/s, seal+open on one core',
        node: process.version,
        openssl: process.versions.openssl,
        cpu,
        protocolVersion: PROTOCOL_VERSION,
        cipher: 'aes-256-gcm',
        baseline: 'hmac-sha256 (protocol v1) and a plain copy',
        sizes: rows,
        tcp,
      }),
    );
    return 0;
  }
  console.log(
    `seal+open, one core; ${cpu.model}, AES-NI ${cpu.aes ? 'yes' : 'no'}, VAES ${cpu.vaes ? 'yes' : 'no'}; ` +
      `node ${process.version}, OpenSSL ${process.versions.openssl}\n`,
  );
  printTable(
    ['payload', 'AES-256-GCM (v2)', 'MB/s', 'HMAC-SHA256 (v1)', 'MB/s', 'copy', 'MB/s', 'v2/v1', 'v2/copy'],
    rows.map((r) => [
      sizeName(r.bytes),
      formatRate(r.aead.msgsPerSec),
      fmtMB(r.aead.mbPerSec),
      formatRate(r.hmac.msgsPerSec),
      fmtMB(r.hmac.mbPerSec),
      formatRate(r.copy.msgsPerSec),
      fmtMB(r.copy.mbPerSec),
      r.aeadVsHmac.toFixed(2),
      r.aeadVsCopy.toFixed(3),
    ]),
  );
  if (tcp.length > 0) {
    console.log(`\nloopback kernel TCP, ${p.mb} MB one way, at most 8 MB in flight\n`);
    printTable(
      ['message', 'replication link (v2)', 'MB/s', 'raw kernel TCP', 'MB/s', 'link/raw'],
      tcp.map((r) => [
        sizeName(r.bytes),
        formatRate(r.channel.msgsPerSec),
        fmtMB(r.channel.mbPerSec),
        formatRate(r.rawTcp.msgsPerSec),
        fmtMB(r.rawTcp.mbPerSec),
        r.channelVsRaw.toFixed(2),
      ]),
    );
  }
  return 0;
}
