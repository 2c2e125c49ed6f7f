/**
 * The `takeover` command line as a user meets it: help, and clear one-line errors (with exit
 * codes) for a missing or bad config and for a node that is not running.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

const BIN = new URL('../../bin/takeover.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'takeover-cli-'));

function takeover(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('takeover command line', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('help lists demo, node and status', () => {
    const r = takeover('help');
    assert.equal(r.code, 0);
    for (const c of ['demo', 'node --config', 'status']) assert.match(r.out, new RegExp(c));
  });

  test('node without --config, and an unknown command: exit 2 with what to type', () => {
    const a = takeover('node');
    assert.equal(a.code, 2);
    assert.match(a.err, /takeover node --config <file>/);
    const b = takeover('frobnicate');
    assert.equal(b.code, 2);
    assert.match(b.err, /unknown command 'frobnicate'/);
  });

  test('node with a bad config: exit 2, every bad field named, no stack trace', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ nodeId: 'a', role: 'leader', tap: { name: 'tk0' }, vip: [] }));
    const r = takeover('node', '--config', file);
    assert.equal(r.code, 2);
    assert.match(r.err, /"role"/);
    assert.match(r.err, /"vip"/);
    assert.match(r.err, /"replication"/);
    assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
  });

  test('status of a node that is not running: exit 1, one sentence', () => {
    const r = takeover('status', '--socket', join(dir, 'none.sock'));
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot reach a node at .*none\.sock/);
    assert.equal(r.err.trim().split('\n').length, 1);
  });

  test('demo --json: one line with the take-over verdict', () => {
    const r = takeover('demo', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out.trim()) as Record<string, number>;
    assert.equal(j.takeovers, 1);
    assert.equal(j.resets, 0);
    assert.ok(j.bytesVerified > 0 && j.connections > 0);
  });
});
