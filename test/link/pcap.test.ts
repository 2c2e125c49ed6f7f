import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  LINKTYPE_ETHERNET,
  PCAP_MAGIC_NS,
  PCAP_MAGIC_US,
  PcapWriter,
  parsePcap,
} from '../../src/link/pcap.ts';
import { fromHex, toHex } from '../../src/wire/bytes.ts';
import { isWireError } from '../../src/wire/error.ts';

function frameOf(len: number, fill: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (fill + i) & 0xff;
  return f;
}

const TSHARK = '/usr/bin/tshark';

describe('PcapWriter', () => {
  test('file header and record header, byte by byte (pcap-savefile(5), little-endian)', () => {
    const w = new PcapWriter();
    w.write(1_500_007, fromHex('0102030405'));
    const b = w.toBuffer();
    assert.equal(
      toHex(b),
      // magic a1b2c3d4, version 2.4, thiszone 0, sigfigs 0, snaplen 262144, linktype 1
      'd4c3b2a1' +
        '0200' +
        '0400' +
        '00000000' +
        '00000000' +
        '00000400' +
        '01000000' +
        // ts_sec 1, ts_usec 500007 (0x0007a127), incl_len 5, orig_len 5, data
        '01000000' +
        '27a10700' +
        '05000000' +
        '05000000' +
        '0102030405',
    );
    assert.equal(w.byteLength, b.length);
    assert.equal(w.records, 1);
  });

  test('nanosecond variant: magic a1b23c4d and fractional microseconds kept', () => {
    const w = new PcapWriter({ nanosecond: true });
    w.write(2_000_000.125, fromHex('aa'));
    const b = w.toBuffer();
    assert.equal(toHex(b.subarray(0, 4)), '4d3cb2a1');
    // ts_sec 2, ts_nsec 125
    assert.equal(toHex(b.subarray(24, 32)), '02000000' + '7d000000');
    const p = parsePcap(b);
    assert.ok(!isWireError(p));
    assert.equal(p.nanosecond, true);
    assert.equal(p.records[0].tsUs, 2_000_000.125);
  });

  test('write then read back: exact frames, timestamps and lengths across chunk boundaries', () => {
    const w = new PcapWriter();
    const frames: Uint8Array[] = [];
    const times: number[] = [];
    for (let i = 0; i < 300; i++) {
      const f = frameOf(60 + ((i * 97) % 1455), i);
      frames.push(f);
      times.push(i * 1234.7);
      w.write(i * 1234.7, f);
    }
    // A frame larger than a chunk.
    const jumbo = frameOf(100_000, 9);
    w.write(9e6, jumbo);
    const p = parsePcap(w.toBuffer());
    assert.ok(!isWireError(p), String(p));
    assert.equal(p.littleEndian, true);
    assert.equal(p.linkType, LINKTYPE_ETHERNET);
    assert.equal(p.snaplen, 262144);
    assert.equal(p.versionMajor, 2);
    assert.equal(p.versionMinor, 4);
    assert.equal(p.records.length, 301);
    for (let i = 0; i < 300; i++) {
      assert.deepEqual(p.records[i].frame, frames[i]);
      assert.equal(p.records[i].origLen, frames[i].length);
      assert.equal(p.records[i].tsUs, Math.floor(times[i]));
    }
    assert.deepEqual(p.records[300].frame, jumbo);
  });

  test('the writer copies: mutating a frame after write changes nothing', () => {
    const w = new PcapWriter();
    const f = frameOf(10, 0);
    w.write(0, f);
    f.fill(0xee);
    const p = parsePcap(w.toBuffer());
    assert.ok(!isWireError(p));
    assert.deepEqual(p.records[0].frame, frameOf(10, 0));
  });

  test('snaplen truncates and keeps orig_len', () => {
    const w = new PcapWriter({ snaplen: 64 });
    w.write(0, frameOf(100, 1));
    const b = w.toBuffer();
    assert.equal(toHex(b.subarray(16, 20)), '40000000');
    const p = parsePcap(b);
    assert.ok(!isWireError(p));
    assert.equal(p.records[0].frame.length, 64);
    assert.equal(p.records[0].origLen, 100);
    assert.deepEqual(p.records[0].frame, frameOf(100, 1).subarray(0, 64));
  });

  test('bad options and bad timestamps are refused with a sentence', () => {
    assert.throws(() => new PcapWriter({ snaplen: 0 }), /snaplen/);
    const w = new PcapWriter();
    assert.throws(() => w.write(-1, frameOf(1, 0)), /non-negative/);
    assert.throws(() => w.write(Number.NaN, frameOf(1, 0)), /non-negative/);
  });

  test('close() writes the file given as path and returns the bytes; save() writes a snapshot', () => {
    const dir = mkdtempSync(join(tmpdir(), 'takeover-pcap-'));
    try {
      const path = join(dir, 'a.pcap');
      const w = new PcapWriter({ path });
      w.write(5, frameOf(20, 3));
      w.save(join(dir, 'b.pcap'));
      const bytes = w.close();
      assert.deepEqual(new Uint8Array(readFileSync(path)), bytes);
      assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'b.pcap'))), bytes);
      assert.throws(() => w.write(6, frameOf(1, 0)), /after close/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parsePcap', () => {
  test('big-endian file written by hand', () => {
    const b = fromHex(
      'a1b2c3d4 0002 0004 00000000 00000000 0000ffff 00000001' + '00000003 000f4239 00000002 0000003c abcd',
    );
    const p = parsePcap(b);
    assert.ok(!isWireError(p), String(p));
    assert.equal(p.littleEndian, false);
    assert.equal(p.nanosecond, false);
    assert.equal(p.snaplen, 65535);
    assert.equal(p.linkType, 1);
    assert.equal(p.records.length, 1);
    assert.equal(p.records[0].tsUs, 3_999_993);
    assert.equal(p.records[0].origLen, 60);
    assert.equal(toHex(p.records[0].frame), 'abcd');
  });

  test('big-endian nanosecond magic', () => {
    const b = fromHex(
      'a1b23c4d 0002 0004 00000000 00000000 00040000 00000001 00000001 000003e8 00000000 00000000',
    );
    const p = parsePcap(b);
    assert.ok(!isWireError(p), String(p));
    assert.equal(p.nanosecond, true);
    assert.equal(p.records[0].tsUs, 1_000_001);
    assert.equal(p.records[0].frame.length, 0);
  });

  test('rejections: bad magic, version, truncation at every length, bad fields', () => {
    const w = new PcapWriter();
    w.write(1, frameOf(30, 0));
    w.write(2, frameOf(40, 0));
    const good = w.toBuffer();
    const boundaries = new Set([24, 24 + 16 + 30, good.length]);
    for (let n = 0; n < good.length; n++) {
      const r = parsePcap(good.subarray(0, n));
      if (boundaries.has(n)) assert.ok(!isWireError(r), `length ${n}`);
      else {
        assert.ok(isWireError(r), `length ${n}`);
        assert.equal(r.kind, 'truncated');
        assert.equal(r.layer, 'pcap');
      }
    }
    const bad = (mutate: (b: Uint8Array) => void, kind: string, re: RegExp) => {
      const b = good.slice();
      mutate(b);
      const r = parsePcap(b);
      assert.ok(isWireError(r));
      assert.equal(r.kind, kind);
      assert.match(r.reason, re);
    };
    bad((b) => b.set([0x0a, 0x0d, 0x0d, 0x0a], 0), 'malformed', /magic/);
    bad((b) => b.set([1], 4), 'unsupported', /version/);
    bad((b) => b.set([0x40, 0x42, 0x0f, 0x00], 24 + 4), 'malformed', /sub-second/); // usec = 1e6
    bad((b) => b.set([29], 24 + 12), 'malformed', /exceeds/); // orig_len 29 < incl_len 30
    bad(
      (b) => {
        b[24 + 8] = 0xff;
        b[24 + 12] = 0xff;
      },
      'truncated',
      /inside a record/,
    );
  });

  test('never throws on arbitrary bytes, with or without a valid header', () => {
    const header = new PcapWriter().toBuffer();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (body, withHeader) => {
        const b = withHeader ? new Uint8Array([...header, ...body]) : body;
        const r = parsePcap(b);
        if (!isWireError(r)) for (const rec of r.records) assert.ok(rec.frame.length <= b.length);
      }),
      { numRuns: 2000 },
    );
  });

  test('magic constants', () => {
    assert.equal(PCAP_MAGIC_US, 0xa1b2c3d4);
    assert.equal(PCAP_MAGIC_NS, 0xa1b23c4d);
  });
});

describe('tshark reads what the writer wrote', () => {
  const skip = existsSync(TSHARK) ? false : `${TSHARK} is not installed`;

  for (const nanosecond of [false, true]) {
    test(`${nanosecond ? 'nanosecond' : 'microsecond'} file`, { skip }, () => {
      const dir = mkdtempSync(join(tmpdir(), 'takeover-pcap-'));
      try {
        const path = join(dir, 'frames.pcap');
        const w = new PcapWriter({ nanosecond, path });
        const lens = [60, 100, 1514, 64];
        lens.forEach((len, i) => {
          const f = frameOf(len, i);
          f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5], 0);
          w.write(1_000_000 + i * 250.5, f);
        });
        w.close();
        const r = spawnSync(
          TSHARK,
          ['-r', path, '-T', 'fields', '-e', 'frame.len', '-e', 'frame.time_epoch', '-e', 'eth.type'],
          { encoding: 'utf8', timeout: 30_000 },
        );
        assert.equal(r.status, 0, r.stderr);
        const rows = r.stdout
          .trim()
          .split('\n')
          .map((l) => l.split('\t'));
        assert.deepEqual(
          rows.map((x) => Number(x[0])),
          lens,
        );
        const expectTimes = nanosecond
          ? ['1.000000000', '1.000250500', '1.000501000', '1.000751500']
          : ['1.000000000', '1.000250000', '1.000501000', '1.000751000'];
        assert.deepEqual(
          rows.map((x) => x[1]),
          expectTimes,
        );
        assert.deepEqual(
          rows.map((x) => x[2]),
          ['0x88b5', '0x88b5', '0x88b5', '0x88b5'],
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
