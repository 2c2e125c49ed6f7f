/**
 * A mutation fuzzer for the wire parsers, shared by `npm test` (100k cases) and
 * `npm run bench -- fuzz` (millions).
 *
 * Each case takes a seed input for one parser (a layer cut out of a kernel-captured frame, or
 * random bytes), mutates it, and feeds it to that parser. A case fails if the parser throws, if a
 * returned view points outside the input, or (for one case in `guardEvery`) if the parser reads
 * any index outside its input: those cases hand the parser a Proxy that throws on such reads,
 * since a plain Uint8Array silently yields `undefined` there. Accepted frames must also survive
 * emit → parse → emit with identical bytes (the emitter copes with everything the parser accepts).
 */
import { readFileSync } from 'node:fs';
import { parsePcap } from '../../src/link/pcap.ts';
import { Rng } from '../../src/link/sim/rng.ts';
import { parseArp } from '../../src/wire/arp.ts';
import { readU32 } from '../../src/wire/bytes.ts';
import { pseudoHeaderSumV4 } from '../../src/wire/checksum.ts';
import { isWireError, WireError } from '../../src/wire/error.ts';
import { parseEthernet } from '../../src/wire/ethernet.ts';
import { emitFrame, type Frame, frameLength, parseFrame } from '../../src/wire/frame.ts';
import { parseIcmpv4 } from '../../src/wire/icmpv4.ts';
import { parseIcmpv6 } from '../../src/wire/icmpv6.ts';
import { parseIpv4 } from '../../src/wire/ipv4.ts';
import { parseIpv6 } from '../../src/wire/ipv6.ts';
import { parseTcp } from '../../src/wire/tcp.ts';
import { guard } from './guard.ts';

export { guard, OutOfRange } from './guard.ts';

export interface FuzzTarget {
  name: string;
  parse(b: Uint8Array): unknown;
  /** Seed inputs for this parser. */
  corpus: Uint8Array[];
}

const fixture = new URL('../fixtures/kernel.pcap', import.meta.url);

/** Every parser, each with its corpus cut from the kernel fixture frames. */
export function fuzzTargets(): FuzzTarget[] {
  const pcapBytes = new Uint8Array(readFileSync(fixture));
  const pcap = parsePcap(pcapBytes);
  if (isWireError(pcap)) throw new Error(`fixture: ${pcap}`);
  // tcp-csum inputs carry their IPv4 source and destination in front of the segment, so that
  // mutations reach both the checksum check and what lies behind it.
  const withAddrs = (pkt: Uint8Array) => {
    const out = new Uint8Array(8 + pkt.length - 20);
    out.set(pkt.subarray(12, 20));
    out.set(pkt.subarray(20), 8);
    return out;
  };
  const tcpWithPseudo = (b: Uint8Array) => {
    if (b.length < 8) return parseTcp(b, undefined);
    const seg = b.subarray(8);
    return parseTcp(seg, pseudoHeaderSumV4(readU32(b, 0), readU32(b, 4), 6, seg.length));
  };
  const frames = pcap.records.map((r) => r.frame.slice());
  const c: Record<string, Uint8Array[]> = {
    eth: [],
    arp: [],
    ipv4: [],
    ipv6: [],
    tcp: [],
    icmpv4: [],
    icmpv6: [],
    tcpV4: [],
  };
  for (const b of frames) {
    const f = parseFrame(b);
    if (isWireError(f)) continue;
    c.eth.push(b);
    if (f.arp) c.arp.push(f.eth.payload.slice());
    if (f.ipv4) c.ipv4.push(f.eth.payload.slice());
    if (f.ipv6) c.ipv6.push(f.eth.payload.slice());
    if (f.tcp) c.tcp.push((f.ipv4 ?? f.ipv6)!.payload.slice());
    if (f.tcp && f.ipv4 && f.ipv4.headerLength === 20)
      c.tcpV4.push(withAddrs(f.eth.payload.subarray(0, f.ipv4.totalLength)));
    if (f.icmpv4) c.icmpv4.push(f.ipv4!.payload.slice());
    if (f.icmpv6) c.icmpv6.push(f.ipv6!.payload.slice());
  }
  // A small pcap file (header and a few records) for the pcap reader.
  const smallPcap = pcapBytes.slice(0, 24 + 16 * 4 + frames.slice(0, 4).reduce((n, f) => n + f.length, 0));
  return [
    { name: 'frame', parse: (b) => parseFrame(b), corpus: c.eth },
    { name: 'frame-nocsum', parse: (b) => parseFrame(b, false), corpus: c.eth },
    { name: 'ethernet', parse: parseEthernet, corpus: c.eth },
    { name: 'arp', parse: parseArp, corpus: c.arp },
    { name: 'ipv4', parse: (b) => parseIpv4(b, false), corpus: c.ipv4 },
    { name: 'ipv6', parse: parseIpv6, corpus: c.ipv6 },
    { name: 'tcp', parse: (b) => parseTcp(b, undefined), corpus: c.tcp },
    { name: 'tcp-csum', parse: tcpWithPseudo, corpus: c.tcpV4 },
    { name: 'icmpv4', parse: (b) => parseIcmpv4(b, false), corpus: c.icmpv4 },
    { name: 'icmpv6', parse: (b) => parseIcmpv6(b, undefined), corpus: c.icmpv6 },
    { name: 'pcap', parse: parsePcap, corpus: [smallPcap] },
  ];
}

const INTERESTING_8 = [0, 1, 2, 4, 5, 6, 8, 0x0f, 0x10, 0x3f, 0x40, 0x45, 0x60, 0x7f, 0x80, 0xfe, 0xff];
const INTERESTING_16 = [
  0, 1, 2, 4, 8, 20, 40, 0x7f, 0x80, 0xff, 0x100, 0x5dc, 0x7fff, 0x8000, 0xfffe, 0xffff,
];

/** One random mutation of `b` (returns a new array). */
export function mutate(rng: Rng, b: Uint8Array, corpus: Uint8Array[]): Uint8Array {
  const len = b.length;
  switch (rng.int(0, 8)) {
    case 0: {
      // Flip one bit.
      if (len === 0) return b;
      const out = b.slice();
      out[rng.int(0, len - 1)] ^= 1 << rng.int(0, 7);
      return out;
    }
    case 1: {
      if (len === 0) return b;
      const out = b.slice();
      out[rng.int(0, len - 1)] = rng.chance(0.5) ? rng.pick(INTERESTING_8) : rng.int(0, 255);
      return out;
    }
    case 2: {
      // A 16-bit field (lengths, ports, checksums) set to an edge value or nudged.
      if (len < 2) return b;
      const out = b.slice();
      const at = rng.int(0, len - 2);
      const old = (out[at] << 8) | out[at + 1];
      const v = rng.chance(0.5) ? rng.pick(INTERESTING_16) : (old + rng.int(-64, 64)) & 0xffff;
      out[at] = v >>> 8;
      out[at + 1] = v & 0xff;
      return out;
    }
    case 3:
      return b.slice(0, rng.int(0, len));
    case 4: {
      const out = new Uint8Array(len + rng.int(1, 64));
      out.set(b);
      for (let i = len; i < out.length; i++) out[i] = rng.int(0, 255);
      return out;
    }
    case 5: {
      if (len === 0) return b;
      const at = rng.int(0, len - 1);
      const n = rng.int(1, Math.min(16, len - at));
      const out = new Uint8Array(len - n);
      out.set(b.subarray(0, at));
      out.set(b.subarray(at + n), at);
      return out;
    }
    case 6: {
      const at = rng.int(0, len);
      const n = rng.int(1, 16);
      const out = new Uint8Array(len + n);
      out.set(b.subarray(0, at));
      for (let i = 0; i < n; i++) out[at + i] = rng.int(0, 255);
      out.set(b.subarray(at), at + n);
      return out;
    }
    case 7: {
      // Overwrite a run with bytes copied from elsewhere in the input (repeated headers, options).
      if (len < 2) return b;
      const out = b.slice();
      const from = rng.int(0, len - 1);
      const to = rng.int(0, len - 1);
      const n = rng.int(1, Math.min(len - from, len - to, 32));
      out.copyWithin(to, from, from + n);
      return out;
    }
    default: {
      // Splice: the head of this input with the tail of another.
      const other = rng.pick(corpus);
      const at = rng.int(0, len);
      const from = rng.int(0, other.length);
      const out = new Uint8Array(at + other.length - from);
      out.set(b.subarray(0, at));
      out.set(other.subarray(from), at);
      return out;
    }
  }
}

export interface FuzzStats {
  cases: number;
  accepted: number;
  rejected: number;
  guarded: number;
  /** Slowest single case (ms), a hang detector. */
  maxCaseMs: number;
  seconds: number;
  byTarget: Record<string, { cases: number; accepted: number }>;
}

export class FuzzFailure extends Error {
  constructor(
    message: string,
    readonly target: string,
    readonly input: Uint8Array,
    readonly seed: number,
    readonly caseNo: number,
  ) {
    super(message);
  }
}

/** Views a record returns must lie inside the input (or be empty shared constants). */
function checkViews(value: unknown, input: Uint8Array, depth = 0): string | undefined {
  if (depth > 4 || value === null || typeof value !== 'object') return undefined;
  if (value instanceof Uint8Array) {
    if (value.length === 0) return undefined;
    const inside =
      value.buffer === input.buffer &&
      value.byteOffset >= input.byteOffset &&
      value.byteOffset + value.length <= input.byteOffset + input.length;
    // Owned copies (addresses) are fine too: they are small and not views of anything else.
    if (!inside && value.length !== 16) return `a ${value.length}-byte view outside the input`;
    return undefined;
  }
  if (Array.isArray(value)) {
    for (const x of value) {
      if (typeof x === 'number' && !Number.isFinite(x)) return 'a non-finite number in an array';
      const e = checkViews(x, input, depth + 1);
      if (e) return e;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'number' && !Number.isFinite(v)) return `field ${k} is ${v}`;
    const e = checkViews(v, input, depth + 1);
    if (e) return `${k}: ${e}`;
  }
  return undefined;
}

/** emit → parse → emit must give identical bytes for any accepted frame. */
function checkReemit(f: Frame): string | undefined {
  const out1 = new Uint8Array(frameLength(f));
  emitFrame(f, out1, 0);
  const g = parseFrame(out1, false);
  if (isWireError(g)) return `re-parse of the emitted frame failed: ${g}`;
  const out2 = new Uint8Array(frameLength(g));
  emitFrame(g, out2, 0);
  if (out1.length !== out2.length) return 'emit is not stable (length)';
  for (let i = 0; i < out1.length; i++) if (out1[i] !== out2[i]) return `emit is not stable at byte ${i}`;
  return undefined;
}

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** One case in this many runs on a guarded (Proxy) input. */
  guardEvery?: number;
  targets?: FuzzTarget[];
}

export function runFuzz(o: FuzzOptions): FuzzStats {
  const targets = o.targets ?? fuzzTargets();
  const guardEvery = o.guardEvery ?? 8;
  const rng = new Rng(o.seed);
  const stats: FuzzStats = {
    cases: 0,
    accepted: 0,
    rejected: 0,
    guarded: 0,
    maxCaseMs: 0,
    seconds: 0,
    byTarget: {},
  };
  for (const t of targets) stats.byTarget[t.name] = { cases: 0, accepted: 0 };
  const t0 = performance.now();
  for (let n = 0; n < o.cases; n++) {
    const t = targets[n % targets.length];
    let input: Uint8Array;
    if (t.corpus.length === 0 || rng.chance(0.05)) {
      input = new Uint8Array(rng.int(0, 200));
      for (let i = 0; i < input.length; i++) input[i] = rng.int(0, 255);
    } else {
      input = rng.pick(t.corpus);
      const rounds = rng.int(1, 6);
      for (let r = 0; r < rounds; r++) input = mutate(rng, input, t.corpus);
      // Own buffer of exactly the input's size, so that views can be checked against it.
      input = input.slice();
    }
    const guarded = n % guardEvery === 0;
    const c0 = performance.now();
    let result: unknown;
    try {
      result = t.parse(guarded ? guard(input) : input);
    } catch (e) {
      throw new FuzzFailure(
        `${t.name}: threw ${e instanceof Error ? e.message : String(e)}`,
        t.name,
        input,
        o.seed,
        n,
      );
    }
    const ms = performance.now() - c0;
    if (ms > stats.maxCaseMs) stats.maxCaseMs = ms;
    if (guarded) stats.guarded++;
    stats.cases++;
    stats.byTarget[t.name].cases++;
    if (result instanceof WireError) {
      stats.rejected++;
      continue;
    }
    stats.accepted++;
    stats.byTarget[t.name].accepted++;
    if (!guarded) {
      const bad = checkViews(result, input);
      if (bad) throw new FuzzFailure(`${t.name}: ${bad}`, t.name, input, o.seed, n);
      if (t.name === 'frame-nocsum') {
        let msg: string | undefined;
        try {
          msg = checkReemit(result as Frame);
        } catch (e) {
          msg = `emit threw ${e instanceof Error ? e.message : String(e)}`;
        }
        if (msg) throw new FuzzFailure(`${t.name}: ${msg}`, t.name, input, o.seed, n);
      }
    }
  }
  stats.seconds = (performance.now() - t0) / 1000;
  return stats;
}
