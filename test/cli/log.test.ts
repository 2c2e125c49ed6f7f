/**
 * A node's log (src/cli/log.ts): pino records with level, time, node, pid and an event's fields
 * (`--log-format json`), or one line per record for people (`pretty`, the default), which is also
 * what the test harnesses read.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { nodeLogger } from '../../src/cli/log.ts';

describe('node log', () => {
  test('json: one pino record per line, the event and its fields beside the sentence', () => {
    const out: string[] = [];
    const log = nodeLogger('a', 'json', (s) => out.push(s));
    log('active at epoch 2 (take-over)');
    log('take-over: 3 connection(s) restored', {
      event: 'takeover',
      level: 'warn',
      epoch: 2,
      cause: 'silence',
      connections: 3,
    });
    assert.equal(out.length, 2);
    assert.ok(out.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')));
    const [plain, ev] = out.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(plain.level, 'info');
    assert.equal(plain.node, 'a');
    assert.equal(plain.pid, process.pid);
    assert.equal(plain.msg, 'active at epoch 2 (take-over)');
    assert.match(String(plain.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(plain.event, undefined);
    assert.deepEqual(
      { level: ev.level, event: ev.event, epoch: ev.epoch, cause: ev.cause, connections: ev.connections },
      { level: 'warn', event: 'takeover', epoch: 2, cause: 'silence', connections: 3 },
    );
  });

  test('pretty: "<time> <node>: <sentence>", the level after it unless info, no fields', () => {
    const out: string[] = [];
    const log = nodeLogger('b', 'pretty', (s) => out.push(s));
    log('synced at batch 7 (session 1): able to take over', { event: 'synced', lsn: 7 });
    log('standby lost (silent): holding output', { event: 'standby-lost', level: 'warn', why: 'silent' });
    assert.match(out[0], /^\d{4}-\d\d-\d\dT\S+Z b: synced at batch 7 \(session 1\): able to take over\n$/);
    assert.match(out[1], /^\S+ b: standby lost \(silent\): holding output \[warn\]\n$/);
  });

  test('takeover node --log-format: a format that is not one is refused with the two that are, before anything starts', () => {
    const bin = new URL('../../bin/takeover.js', import.meta.url).pathname;
    const r = spawnSync(
      process.execPath,
      [bin, 'node', '--config', '/nonexistent.json', '--log-format', 'xml'],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--log-format xml is not one: say --log-format pretty .* or --log-format json/);
  });
});
