/**
 * `npm run bench -- wire [--json]`: parse and emit throughput of whole frames on one core.
 *
 * "parse" is `parseFrame`: Ethernet → IPv4 (header checksum verified) → TCP (options decoded,
 * checksum over the pseudo-header and payload verified). "emit" is `emitFrame` of the parsed
 * record into a reused buffer, checksums computed. The baseline, in the same run, is copying
 * the frame's bytes into a buffer (`Uint8Array.set`): the floor any per-frame work stands on.
 */
import { isWireError } from '../src/wire/error.ts';
import { emitFrame, type Frame, parseFrame } from '../src/wire/frame.ts';
import { ackFrame, dataSegmentFrame } from './frames.ts';
import { type BenchOptions, benchFlags, formatRate, measureRate, printTable } from './harness.ts';

interface Row {
  frame: string;
  bytes: number;
  parsePerSec: number;
  emitPerSec: number;
  parseEmitPerSec: number;
  copyPerSec: number;
  parseVsCopy: number;
}

function benchFrame(name: string, frame: Uint8Array, ms: number): Row {
  const parsed = parseFrame(frame);
  if (isWireError(parsed)) throw new Error(`bench frame does not parse: ${parsed}`);
  const out = new Uint8Array(2048);
  let sink = 0;
  // Parsed records are kept in a small ring so that the JIT cannot prove them dead and skip
  // allocating them: a real stack holds on to what it parsed.
  const keep: unknown[] = new Array(64);
  const parse = measureRate((n) => {
    for (let i = 0; i < n; i++) {
      const f = parseFrame(frame);
      keep[i & 63] = f;
      if (!isWireError(f)) sink += f.tcp!.window;
    }
  }, ms);
  const emit = measureRate((n) => {
    for (let i = 0; i < n; i++) sink += emitFrame(parsed, out, 0);
  }, ms);
  const both = measureRate((n) => {
    for (let i = 0; i < n; i++) {
      const f = parseFrame(frame);
      keep[i & 63] = f;
      if (!isWireError(f)) sink += emitFrame(f as Frame, out, 0);
    }
  }, ms);
  const copy = measureRate((n) => {
    for (let i = 0; i < n; i++) {
      out.set(frame, 0);
      sink += out[i & 63];
    }
  }, ms);
  if (sink === -1) console.log('');
  return {
    frame: name,
    bytes: frame.length,
    parsePerSec: Math.round(parse.perSecond),
    emitPerSec: Math.round(emit.perSecond),
    parseEmitPerSec: Math.round(both.perSecond),
    copyPerSec: Math.round(copy.perSecond),
    parseVsCopy: parse.perSecond / copy.perSecond,
  };
}

export async function run(o: BenchOptions): Promise<number> {
  const { ms } = benchFlags(o, { ms: { default: 1500 } });
  const rows = [
    benchFrame('ACK (66 B)', ackFrame(), ms),
    benchFrame('TCP/IPv4 data (1514 B)', dataSegmentFrame(), ms),
  ];
  const target = 2_000_000;
  const ack = rows[0];
  if (o.json) {
    console.log(
      JSON.stringify({
        bench: 'wire',
        unit: 'frames/s, one core',
        node: process.version,
        ackParsePerSec: ack.parsePerSec,
        ackParseTarget: target,
        ackParseMeetsTarget: ack.parsePerSec >= target,
        frames: rows,
      }),
    );
  } else {
    printTable(
      ['frame', 'parse', 'emit', 'parse+emit', 'copy (baseline)', 'parse/copy', 'MB/s parsed'],
      rows.map((r) => [
        r.frame,
        formatRate(r.parsePerSec),
        formatRate(r.emitPerSec),
        formatRate(r.parseEmitPerSec),
        formatRate(r.copyPerSec),
        r.parseVsCopy.toFixed(3),
        ((r.parsePerSec * r.bytes) / 1e6).toFixed(0),
      ]),
    );
    console.log(
      `\nACK parses: ${formatRate(ack.parsePerSec)} (target >= ${formatRate(target)}: ${ack.parsePerSec >= target ? 'met' : 'NOT met'})`,
    );
  }
  return 0;
}
