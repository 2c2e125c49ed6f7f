/**
 * The key file as the node reads it at start and on SIGHUP (cli/config.ts `readKeyFile`), and
 * what the transport does with it (`setKeys`): the rotation an operator performs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CryptoRandom } from '../../src/api/runtime.ts';
import { readKeyFile } from '../../src/cli/config.ts';
import { keyId } from '../../src/ha/protocol.ts';
import { ReplicationTransport } from '../../src/ha/transport.ts';

const dir = mkdtempSync(join(tmpdir(), 'takeover-keyfile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const OLD = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
const NEW = 'f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f';

function file(name: string, content: string | Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

function hexOf(keys: Uint8Array[] | string): string[] {
  assert.ok(typeof keys !== 'string', `expected keys, got: ${keys}`);
  return keys.map((k) => Buffer.from(k).toString('hex'));
}

function errorOf(keys: Uint8Array[] | string): string {
  assert.equal(typeof keys, 'string', 'expected an error');
  const e = keys as string;
  // A key never appears in an error.
  assert.ok(!e.includes(OLD) && !e.includes(NEW) && !e.includes('abcdef0123'), e);
  return e;
}

describe('readKeyFile', () => {
  test('one hex key (as before), with a trailing newline', () => {
    assert.deepEqual(hexOf(readKeyFile(file('one.key', `${OLD}\n`))), [OLD]);
  });

  test('several keys, one per line, the current first; blank lines, comments and CRLF skipped', () => {
    const p = file(
      'two.key',
      `# rotated in: the new key\r\n${NEW}\r\n\r\n  # still accepted\n${OLD.toUpperCase()}\n`,
    );
    assert.deepEqual(hexOf(readKeyFile(p)), [NEW, OLD]);
  });

  test('raw bytes (as before): a file that is not hex lines is one key', () => {
    const raw = Uint8Array.from({ length: 20 }, (_, i) => 0xf0 + (i % 16));
    assert.deepEqual(hexOf(readKeyFile(file('raw.key', raw))), [Buffer.from(raw).toString('hex')]);
  });

  test('what is wrong is said in one sentence, naming the line', () => {
    assert.match(
      errorOf(readKeyFile(file('short1.key', 'abcdef\n'))),
      /^file ".*short1\.key" holds 6 hex digits; a hex key needs an even number, at least 32$/,
    );
    assert.match(
      errorOf(readKeyFile(file('short2.key', `${NEW}\n${OLD.slice(1)}\n`))),
      /^file ".*short2\.key", line 2, holds 63 hex digits; a hex key needs an even number, at least 32$/,
    );
    assert.match(
      errorOf(readKeyFile(file('typo.key', `${NEW}\n${OLD.slice(0, 10)}-${OLD.slice(11)}\n`))),
      /^file ".*typo\.key", line 2, is not a hex key \(the file holds one hex key per line, the current one first\)$/,
    );
    assert.match(
      errorOf(readKeyFile(file('dup.key', `${OLD}\n${NEW}\n${OLD}\n`))),
      new RegExp(
        `lists the key of line 1 again on line 3 \\(key id ${keyId(Buffer.from(OLD, 'hex'))}\\); list each key once$`,
      ),
    );
    const nine = Array.from({ length: 9 }, (_, i) => `${i}`.repeat(64)).join('\n');
    assert.match(errorOf(readKeyFile(file('nine.key', nine))), /holds 9 keys; at most 8/);
    assert.match(errorOf(readKeyFile(join(dir, 'absent.key'))), /absent\.key" does not exist/);
    assert.match(
      errorOf(readKeyFile(file('tiny.key', Uint8Array.of(1, 2, 3)))),
      /holds 3 bytes; a key needs at least 16/,
    );
  });
});

describe('rotation by key file and setKeys (what SIGHUP does)', () => {
  test('add the new key, put it first, remove the old one; a bad file keeps the keys', () => {
    const path = join(dir, 'rotate.key');
    writeFileSync(path, `${OLD}\n`);
    const first = readKeyFile(path);
    assert.ok(typeof first !== 'string');
    const t = new ReplicationTransport({
      nodeId: 'a',
      keys: first,
      listen: { host: '127.0.0.1', port: 0 },
      peer: { host: '127.0.0.1', port: 9 },
      rng: new CryptoRandom(),
      onOpen: () => {},
      onMessage: () => {},
      onClose: () => {},
      log: () => {},
    });
    const id = (hex: string) => keyId(Buffer.from(hex, 'hex'));
    const reload = (content: string) => {
      writeFileSync(path, content);
      const keys = readKeyFile(path);
      return typeof keys === 'string' ? keys : t.setKeys(keys);
    };
    assert.deepEqual(t.keyIds, [id(OLD)]);
    assert.deepEqual(reload(`${OLD}\n${NEW}\n`), [id(OLD), id(NEW)]);
    assert.deepEqual(reload(`${NEW}\n${OLD}\n`), [id(NEW), id(OLD)]);
    assert.match(String(reload(`${NEW}\nnot a key\n`)), /line 2, is not a hex key/);
    assert.deepEqual(t.keyIds, [id(NEW), id(OLD)], 'a bad file changes nothing');
    assert.deepEqual(reload(`${NEW}\n`), [id(NEW)]);
  });
});
