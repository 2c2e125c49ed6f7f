import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  ConfigError,
  exampleNodeConfig,
  loadNodeConfig,
  NODE_CONFIG_DEFAULTS,
  type NodeConfig,
  parseNodeConfig,
} from '../../src/cli/config.ts';
import { cidrFromString, inPrefix, ipFromString, ipToString } from '../../src/stack/ip.ts';
import { macFromString } from '../../src/wire/address.ts';
import { toHex } from '../../src/wire/bytes.ts';

const KEY_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'takeover-config-'));
  writeFileSync(join(dir, 'app.ts'), 'export default function app() {}\n');
  writeFileSync(join(dir, 'hex.key'), `${KEY_HEX}\n`);
  writeFileSync(
    join(dir, 'raw.key'),
    Uint8Array.from({ length: 20 }, (_, i) => 0xf0 + (i % 16)),
  );
  writeFileSync(join(dir, 'short.key'), 'abcdef\n');
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Json = Record<string, unknown>;

/** A valid config using every field. */
function full(): Json {
  return {
    nodeId: 'node-a',
    role: 'active',
    tap: { name: 'tko0', netns: 'tko-a', mtu: 9000 },
    mac: '00:00:5e:00:01:2a',
    vip: ['198.18.0.10/24', 'fd00::10/64'],
    gateway4: '198.18.0.1',
    gateway6: 'fe80::1',
    replication: {
      listen: '198.18.1.1:7400',
      peer: '[fd00:1::2]:7401',
      key: KEY_HEX,
      mode: 'async',
      heartbeatMs: 10,
      timeoutMs: 50,
    },
    degraded: 'refuse',
    app: { module: './app.ts', options: { greeting: 'hi', n: 3 } },
    status: { socket: 'status.sock' },
    tcp: {
      noDelay: true,
      mss: 1400,
      congestion: 'newreno',
      keepAlive: { idleUs: 1e6, intervalUs: 1e5, count: 3 },
    },
  };
}

/** The fewest fields a valid config needs. */
function minimal(): Json {
  return {
    nodeId: 'b',
    role: 'standby',
    tap: { name: 'tko1' },
    vip: ['198.18.0.10/24'],
    replication: { listen: '198.18.1.2:7400', peer: '198.18.1.1:7400', keyFile: 'hex.key' },
    app: { module: './app.ts' },
  };
}

function ok(raw: unknown): NodeConfig {
  const r = parseNodeConfig(raw, dir);
  if (r instanceof ConfigError) assert.fail(`expected a valid config, got:\n${r.message}`);
  return r;
}

function errorsOf(raw: unknown): string[] {
  const r = parseNodeConfig(raw, dir);
  assert.ok(r instanceof ConfigError, 'expected a ConfigError');
  assert.ok(r instanceof Error);
  assert.ok(r.errors.length > 0);
  for (const e of r.errors) assert.ok(r.message.includes(e));
  return r.errors;
}

/** Sets (or, with `undefined`, deletes) the value at a dotted path. */
function set(o: Json, path: string, v: unknown): Json {
  const keys = path.split('.');
  let cur = o;
  for (const k of keys.slice(0, -1)) cur = cur[k] as Json;
  const last = keys[keys.length - 1];
  if (v === undefined) delete cur[last];
  // As JSON.parse does: an own property even for "__proto__".
  else Object.defineProperty(cur, last, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

describe('parseNodeConfig: valid configs', () => {
  test('every field given', () => {
    const c = ok(full());
    assert.equal(c.nodeId, 'node-a');
    assert.equal(c.role, 'active');
    assert.deepEqual(c.tap, { name: 'tko0', netns: 'tko-a', mtu: 9000 });
    assert.equal(c.mac, macFromString('00:00:5e:00:01:2a'));
    assert.deepEqual(c.vip, [cidrFromString('198.18.0.10/24'), cidrFromString('fd00::10/64')]);
    assert.equal(c.gateway4, ipFromString('198.18.0.1'));
    assert.deepEqual(c.gateway6, ipFromString('fe80::1'));
    assert.deepEqual(c.replication.listen, { host: '198.18.1.1', port: 7400 });
    assert.deepEqual(c.replication.peer, { host: 'fd00:1::2', port: 7401 });
    assert.equal(toHex(c.replication.key), KEY_HEX);
    assert.equal(c.replication.mode, 'async');
    assert.equal(c.replication.heartbeatMs, 10);
    assert.equal(c.replication.timeoutMs, 50);
    assert.equal(c.degraded, 'refuse');
    assert.deepEqual(c.app, { module: join(dir, 'app.ts'), options: { greeting: 'hi', n: 3 } });
    assert.deepEqual(c.status, { socket: join(dir, 'status.sock') });
    assert.deepEqual(c.tcp, {
      noDelay: true,
      mss: 1400,
      congestion: 'newreno',
      keepAlive: { idleUs: 1e6, intervalUs: 1e5, count: 3 },
    });
  });

  test('defaults fill what is left out', () => {
    const c = ok(minimal());
    assert.deepEqual(c.tap, { name: 'tko1', mtu: 1500 });
    assert.equal(c.mac, macFromString('00:00:5e:00:01:01'));
    assert.equal(c.gateway4, undefined);
    assert.equal(c.gateway6, undefined);
    assert.equal(c.replication.mode, 'sync');
    assert.equal(c.replication.heartbeatMs, 10);
    assert.equal(c.replication.timeoutMs, 50);
    assert.equal(toHex(c.replication.key), KEY_HEX);
    assert.equal(c.degraded, 'serve');
    assert.equal(c.snoop, true);
    assert.deepEqual(c.app, { module: join(dir, 'app.ts'), options: {} });
    assert.deepEqual(c.status, { socket: '/run/takeover/b.sock' });
    assert.equal(c.tcp, undefined);
    assert.equal(NODE_CONFIG_DEFAULTS.heartbeatMs, 10);
  });

  test('a longer heartbeat stretches the default timeout to 5 heartbeats', () => {
    const c = ok(set(minimal(), 'replication.heartbeatMs', 50));
    assert.equal(c.replication.timeoutMs, 250);
  });

  test('keyFile holding raw bytes; absolute module path; tcp keepAlive null', () => {
    const raw = set(minimal(), 'replication.keyFile', join(dir, 'raw.key'));
    set(raw, 'app.module', join(dir, 'app.ts'));
    set(raw, 'tcp', { keepAlive: null, sack: false });
    const c = ok(raw);
    assert.equal(c.replication.key.length, 20);
    assert.equal(c.replication.key[0], 0xf0);
    assert.equal(c.app.module, join(dir, 'app.ts'));
    assert.deepEqual(c.tcp, { keepAlive: undefined, sack: false });
  });

  test('IPv6 addresses are normalised', () => {
    const c = ok(set(full(), 'replication.listen', '[fd00:0:0::1]:7400'));
    assert.equal(c.replication.listen.host, 'fd00::1');
  });

  test('an etcd arbiter, with its defaults; absent, none', () => {
    const c = ok(
      set(minimal(), 'arbiter', { etcd: { endpoints: ['http://198.18.2.2:2379'], cluster: 'pair1' } }),
    );
    assert.deepEqual(c.arbiter, {
      etcd: { endpoints: ['http://198.18.2.2:2379'], prefix: '/takeover', cluster: 'pair1', timeoutMs: 500 },
    });
    assert.equal(ok(minimal()).arbiter, undefined);
  });

  test("a bad arbiter is reported with the config's other errors, each field named", () => {
    const raw = set(minimal(), 'arbiter', { etcd: { endpoints: ['etcd:2379'] } });
    set(raw, 'replication.mode', 'fast');
    const errors = errorsOf(raw);
    assert.ok(
      errors.some((e) => e.startsWith('config field "arbiter.etcd.endpoints[0]"')),
      errors.join('\n'),
    );
    assert.ok(
      errors.some((e) => e.startsWith('config field "arbiter.etcd.cluster"')),
      errors.join('\n'),
    );
    assert.ok(
      errors.some((e) => e.includes('replication.mode')),
      errors.join('\n'),
    );
  });
});

interface Case {
  name: string;
  /** Changes a valid config (full() unless `base` says otherwise). */
  edit: (c: Json) => void;
  /** The field path an error must name. */
  path: string;
  /** More the error for `path` must say. */
  says?: RegExp;
}

const cases: Case[] = [
  { name: 'nodeId not a string', edit: (c) => set(c, 'nodeId', 7), path: 'nodeId', says: /got 7/ },
  {
    name: 'admin.listen without a port',
    edit: (c) => set(c, 'admin', { listen: '127.0.0.1' }),
    path: 'admin.listen',
    says: /127\.0\.0\.1:9464/,
  },
  {
    name: 'admin with an unknown field',
    edit: (c) => set(c, 'admin', { listn: '127.0.0.1:9464' }),
    path: 'admin.listn',
  },
  { name: 'nodeId with a space', edit: (c) => set(c, 'nodeId', 'node a'), path: 'nodeId' },
  { name: 'nodeId too long', edit: (c) => set(c, 'nodeId', 'x'.repeat(33)), path: 'nodeId' },
  { name: 'nodeId missing', edit: (c) => set(c, 'nodeId', undefined), path: 'nodeId', says: /missing/ },
  { name: 'bad role', edit: (c) => set(c, 'role', 'primary'), path: 'role', says: /"active" or "standby"/ },
  {
    name: 'role misspelt',
    edit: (c) => set(c, 'role', 'stanby'),
    path: 'role',
    says: /did you mean "standby"/,
  },
  { name: 'role missing', edit: (c) => set(c, 'role', undefined), path: 'role' },
  { name: 'tap not an object', edit: (c) => set(c, 'tap', 'tko0'), path: 'tap', says: /must be an object/ },
  {
    name: 'tap name too long',
    edit: (c) => set(c, 'tap.name', 'abcdefghijklmnop'),
    path: 'tap.name',
    says: /15/,
  },
  { name: 'tap name with a slash', edit: (c) => set(c, 'tap.name', 'tap/0'), path: 'tap.name' },
  { name: 'tap name missing', edit: (c) => set(c, 'tap.name', undefined), path: 'tap.name' },
  { name: 'tap netns a path', edit: (c) => set(c, 'tap.netns', '/var/run/netns/a'), path: 'tap.netns' },
  { name: 'mtu too small', edit: (c) => set(c, 'tap.mtu', 1000), path: 'tap.mtu', says: /1280 to 65521/ },
  { name: 'mtu a string', edit: (c) => set(c, 'tap.mtu', '1500'), path: 'tap.mtu', says: /got "1500"/ },
  { name: 'mtu fractional', edit: (c) => set(c, 'tap.mtu', 1500.5), path: 'tap.mtu' },
  { name: 'bad MAC', edit: (c) => set(c, 'mac', '00:00:5e:00:01'), path: 'mac' },
  { name: 'multicast MAC', edit: (c) => set(c, 'mac', '01:00:5e:00:00:01'), path: 'mac', says: /unicast/ },
  { name: 'null MAC', edit: (c) => set(c, 'mac', null), path: 'mac', says: /got null/ },
  { name: 'bad CIDR', edit: (c) => set(c, 'vip', ['198.18.0.300/24']), path: 'vip[0]' },
  { name: 'prefix too long', edit: (c) => set(c, 'vip', ['198.18.0.1/24', 'fd00::1/129']), path: 'vip[1]' },
  { name: 'VIP without prefix', edit: (c) => set(c, 'vip', ['198.18.0.10']), path: 'vip[0]' },
  { name: 'multicast VIP', edit: (c) => set(c, 'vip', ['ff02::1/64']), path: 'vip[0]', says: /unicast/ },
  { name: 'empty vip', edit: (c) => set(c, 'vip', []), path: 'vip', says: /at least one/ },
  { name: 'vip not an array', edit: (c) => set(c, 'vip', '198.18.0.10/24'), path: 'vip' },
  {
    name: 'duplicate vip',
    edit: (c) => set(c, 'vip', ['198.18.0.10/24', 'fd00::10/64', '198.18.0.10/25']),
    path: 'vip[2]',
    says: /duplicates vip\[0\]/,
  },
  { name: 'gateway4 is IPv6', edit: (c) => set(c, 'gateway4', 'fd00::1'), path: 'gateway4', says: /IPv4/ },
  {
    name: 'gateway4 off-link',
    edit: (c) => set(c, 'gateway4', '198.19.0.1'),
    path: 'gateway4',
    says: /on-link/,
  },
  {
    name: 'gateway6 off-link',
    edit: (c) => set(c, 'gateway6', 'fd01::1'),
    path: 'gateway6',
    says: /on-link/,
  },
  {
    name: 'gateway6 with no IPv6 VIP',
    edit: (c) => set(c, 'vip', ['198.18.0.10/24']),
    path: 'gateway6',
    says: /needs an IPv6 address in "vip"/,
  },
  { name: 'replication missing', edit: (c) => set(c, 'replication', undefined), path: 'replication' },
  {
    name: 'listen without port',
    edit: (c) => set(c, 'replication.listen', '198.18.1.1'),
    path: 'replication.listen',
  },
  {
    name: 'listen port out of range',
    edit: (c) => set(c, 'replication.listen', '198.18.1.1:70000'),
    path: 'replication.listen',
  },
  {
    name: 'listen port 0',
    edit: (c) => set(c, 'replication.listen', '198.18.1.1:0'),
    path: 'replication.listen',
  },
  {
    name: 'peer IPv6 without brackets',
    edit: (c) => set(c, 'replication.peer', 'fd00::2:7400'),
    path: 'replication.peer',
    says: /brackets/,
  },
  {
    name: 'peer a hostname',
    edit: (c) => set(c, 'replication.peer', 'node-b:7400'),
    path: 'replication.peer',
  },
  {
    name: 'peer unspecified',
    edit: (c) => set(c, 'replication.peer', '0.0.0.0:7400'),
    path: 'replication.peer',
    says: /unicast/,
  },
  {
    name: 'peer equals listen',
    edit: (c) => set(c, 'replication.peer', '198.18.1.1:7400'),
    path: 'replication.peer',
    says: /must differ from replication.listen/,
  },
  {
    name: 'listen on a VIP',
    edit: (c) => set(c, 'replication.listen', '198.18.0.10:7400'),
    path: 'replication.listen',
    says: /virtual address/,
  },
  {
    name: 'key too short',
    edit: (c) => set(c, 'replication.key', '00112233'),
    path: 'replication.key',
    says: /at least 32 hex digits.*got 8/,
  },
  {
    name: 'key not hex',
    edit: (c) => set(c, 'replication.key', `${'zz'}${KEY_HEX}`),
    path: 'replication.key',
  },
  { name: 'key a number', edit: (c) => set(c, 'replication.key', 12), path: 'replication.key' },
  {
    name: 'both key and keyFile',
    edit: (c) => set(c, 'replication.keyFile', 'hex.key'),
    path: 'replication.keyFile',
    says: /not both/,
  },
  {
    name: 'neither key nor keyFile',
    edit: (c) => set(c, 'replication.key', undefined),
    path: 'replication.key',
    says: /keyFile/,
  },
  {
    name: 'missing keyFile',
    edit: (c) => set(set(c, 'replication.key', undefined), 'replication.keyFile', 'nope/absent.key'),
    path: 'replication.keyFile',
    says: /absent\.key" does not exist/,
  },
  {
    name: 'keyFile too short',
    edit: (c) => set(set(c, 'replication.key', undefined), 'replication.keyFile', 'short.key'),
    path: 'replication.keyFile',
    says: /6 hex digits/,
  },
  { name: 'bad mode', edit: (c) => set(c, 'replication.mode', 'semi'), path: 'replication.mode' },
  {
    name: 'heartbeat 0',
    edit: (c) => set(c, 'replication.heartbeatMs', 0),
    path: 'replication.heartbeatMs',
    says: /1 to 10000/,
  },
  {
    name: 'timeout below 2 heartbeats',
    edit: (c) => set(c, 'replication.timeoutMs', 15),
    path: 'replication.timeoutMs',
    says: /at least 2 × heartbeatMs \(20\); got 15/,
  },
  {
    name: 'unknown field with suggestion',
    edit: (c) => {
      c.replicaton = c.replication;
      delete c.replication;
    },
    path: 'replicaton',
    says: /unknown field; did you mean "replication"\?/,
  },
  {
    name: 'unknown nested field',
    edit: (c) => set(c, 'replication.heartbeatMS', 5),
    path: 'replication.heartbeatMS',
    says: /did you mean "heartbeatMs"/,
  },
  {
    name: 'unknown field far from any',
    edit: (c) => set(c, 'tap.colour', 'blue'),
    path: 'tap.colour',
    says: /unknown field; the fields here are "name", "netns", "mtu"/,
  },
  {
    name: 'bad degraded',
    edit: (c) => set(c, 'degraded', 'drop'),
    path: 'degraded',
    says: /"serve" or "refuse"/,
  },
  {
    name: 'snoop not a boolean',
    edit: (c) => set(c, 'snoop', 'yes'),
    path: 'snoop',
    says: /must be true \(the standby listens on the data link; switches flood the virtual MAC\) or false/,
  },
  { name: 'app missing', edit: (c) => set(c, 'app', undefined), path: 'app' },
  {
    name: 'bad module path',
    edit: (c) => set(c, 'app.module', './missing/app.ts'),
    path: 'app.module',
    says: /no file at ".*\/missing\/app\.ts"/,
  },
  { name: 'module is a directory', edit: (c) => set(c, 'app.module', '.'), path: 'app.module' },
  { name: 'options an array', edit: (c) => set(c, 'app.options', [1]), path: 'app.options' },
  { name: 'status socket a number', edit: (c) => set(c, 'status.socket', 1), path: 'status.socket' },
  {
    name: 'status socket too long',
    edit: (c) => set(c, 'status.socket', `/${'s'.repeat(120)}`),
    path: 'status.socket',
  },
  { name: 'tcp not an object', edit: (c) => set(c, 'tcp', true), path: 'tcp' },
  { name: 'bad tcp key', edit: (c) => set(c, 'tcp.nodelay', true), path: 'tcp.nodelay', says: /"noDelay"/ },
  { name: 'tcp boolean a string', edit: (c) => set(c, 'tcp.sack', 'yes'), path: 'tcp.sack' },
  { name: 'tcp mss out of range', edit: (c) => set(c, 'tcp.mss', 10), path: 'tcp.mss', says: /88 to 65495/ },
  {
    name: 'tcp default no longer fits',
    edit: (c) => set(c, 'tcp.minRtoUs', 5_000_000),
    path: 'tcp.initialRtoUs',
    says: /its default no longer fits/,
  },
  { name: 'tcp congestion', edit: (c) => set(c, 'tcp.congestion', 'bbr'), path: 'tcp.congestion' },
  {
    name: 'tcp keepAlive incomplete',
    edit: (c) => set(c, 'tcp.keepAlive', { idleUs: 1 }),
    path: 'tcp.keepAlive.intervalUs',
  },
];

describe('parseNodeConfig: each invalid field is named', () => {
  for (const c of cases) {
    test(c.name, () => {
      const raw = full();
      c.edit(raw);
      const errors = errorsOf(raw);
      const mine = errors.filter((e) => e.startsWith(`config field "${c.path}": `));
      assert.ok(mine.length > 0, `no error names "${c.path}":\n${errors.join('\n')}`);
      if (c.says)
        assert.ok(
          mine.some((e) => c.says!.test(e)),
          `${c.says} not in:\n${mine.join('\n')}`,
        );
      for (const e of errors) assert.ok(!e.includes(KEY_HEX), 'the key must never be echoed');
    });
  }

  test('the timeout message reads exactly as documented', () => {
    const raw = full();
    set(raw, 'replication.heartbeatMs', 20);
    set(raw, 'replication.timeoutMs', 10);
    assert.deepEqual(errorsOf(raw), [
      'config field "replication.timeoutMs": must be an integer of at least 2 × heartbeatMs (40); got 10. Example: 300.',
    ]);
  });

  test('the unknown-field message reads exactly as documented', () => {
    const raw = full();
    raw.replicaton = raw.replication;
    delete raw.replication;
    assert.ok(
      errorsOf(raw).includes('config field "replicaton": unknown field; did you mean "replication"?'),
    );
  });

  test('a value that is not an object', () => {
    for (const raw of [null, [], 'x', 3, true]) {
      const errors = errorsOf(raw);
      assert.equal(errors.length, 1);
      assert.match(errors[0], /^config: the file must hold one JSON object/);
    }
  });
});

describe('parseNodeConfig: all errors at once', () => {
  test('collects every problem', () => {
    const raw = full();
    set(raw, 'nodeId', '');
    set(raw, 'tap.mtu', 99);
    set(raw, 'mac', 'ff:ff:ff:ff:ff:ff');
    set(raw, 'vip', ['198.18.0.10/24', 'nope']);
    set(raw, 'replication.mode', 'both');
    set(raw, 'degraded', 1);
    set(raw, 'tcp.nodelay', true);
    set(raw, 'tcp.mss', 3);
    raw.colour = 'red';
    const r = parseNodeConfig(raw, dir);
    assert.ok(r instanceof ConfigError);
    const paths = r.errors.map((e) => /^config field "([^"]+)"/.exec(e)?.[1]);
    assert.deepEqual(paths.sort(), [
      'colour',
      'degraded',
      'mac',
      'nodeId',
      'replication.mode',
      'tap.mtu',
      'tcp.mss',
      'tcp.nodelay',
      'vip[1]',
    ]);
    assert.match(r.message, /^9 configuration errors:\n {2}- config field/);
  });
});

describe('loadNodeConfig', () => {
  test('loads a file, paths relative to its directory', () => {
    const sub = join(dir, 'etc');
    mkdirSync(sub, { recursive: true });
    const raw = set(set(minimal(), 'replication.keyFile', '../hex.key'), 'app.module', '../app.ts');
    const file = join(sub, 'node.json');
    writeFileSync(file, JSON.stringify(raw));
    const c = loadNodeConfig(file);
    assert.ok(!(c instanceof ConfigError), c instanceof ConfigError ? c.message : '');
    assert.equal(c.app.module, join(dir, 'app.ts'));
    assert.equal(toHex(c.replication.key), KEY_HEX);
  });

  test('a JSON syntax error names the file, line and column', () => {
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{\n  "nodeId": "a",\n  "role": "active",\n}\n');
    const r = loadNodeConfig(file);
    assert.ok(r instanceof ConfigError);
    assert.equal(r.errors.length, 1);
    assert.ok(r.message.includes(`config file "${file}": invalid JSON at line 4, column 1`), r.message);
  });

  test('an empty file', () => {
    const file = join(dir, 'empty.json');
    writeFileSync(file, '');
    const r = loadNodeConfig(file);
    assert.ok(r instanceof ConfigError);
    assert.ok(r.message.includes(`config file "${file}": invalid JSON`), r.message);
  });

  test('a missing file is named', () => {
    const file = join(dir, 'absent.json');
    const r = loadNodeConfig(file);
    assert.ok(r instanceof ConfigError);
    assert.match(r.message, /cannot be read/);
    assert.ok(r.message.includes(file));
  });

  test('field errors are headed by the file', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify(set(minimal(), 'role', 'leader')));
    const r = loadNodeConfig(file);
    assert.ok(r instanceof ConfigError);
    assert.equal(r.errors.length, 1);
    assert.equal(r.message, `config file "${file}": ${r.errors[0]}`);
  });
});

describe('exampleNodeConfig', () => {
  test('is valid JSON that loads, with test-range addresses', () => {
    const text = exampleNodeConfig('./app.ts');
    const file = join(dir, 'example.json');
    writeFileSync(file, text);
    const c = loadNodeConfig(file);
    assert.ok(!(c instanceof ConfigError), c instanceof ConfigError ? c.message : '');
    const v4 = cidrFromString('198.18.0.0/15')!;
    const v6 = cidrFromString('fd00::/8')!;
    const allowed = (a: string) => {
      const ip = ipFromString(a)!;
      return inPrefix(ip, v4) || inPrefix(ip, v6);
    };
    for (const v of c.vip) assert.ok(allowed(ipToString(v.address)));
    assert.ok(allowed(c.replication.listen.host));
    assert.ok(allowed(c.replication.peer.host));
    assert.equal(c.replication.key.length, 32);
    assert.notEqual(JSON.parse(exampleNodeConfig()).replication.key, JSON.parse(text).replication.key);
  });
});

describe('parseNodeConfig never throws', () => {
  const check = (raw: unknown) => {
    const r = parseNodeConfig(raw, dir);
    if (r instanceof ConfigError) {
      assert.ok(r.errors.length > 0);
      for (const e of r.errors) assert.ok(!e.includes('internal error'), e);
    }
  };

  test('random JSON values', () => {
    fc.assert(fc.property(fc.jsonValue(), check), { numRuns: 500 });
  });

  const PATHS = [
    'nodeId',
    'role',
    'tap',
    'tap.name',
    'tap.netns',
    'tap.mtu',
    'mac',
    'vip',
    'gateway4',
    'gateway6',
    'replication',
    'replication.listen',
    'replication.peer',
    'replication.key',
    'replication.keyFile',
    'replication.mode',
    'replication.heartbeatMs',
    'replication.timeoutMs',
    'degraded',
    'app',
    'app.module',
    'app.options',
    'status',
    'status.socket',
    'tcp',
    'tcp.mss',
    'tcp.keepAlive',
    'tcp.constructor',
    '__proto__',
  ];

  test('a valid config with random values in random fields', () => {
    const edit = fc.record({
      path: fc.constantFrom(...PATHS),
      value: fc.option(fc.jsonValue(), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(edit, { maxLength: 4 }), (edits) => {
        const raw = JSON.parse(JSON.stringify(full())) as Json;
        for (const { path, value } of edits) {
          try {
            set(raw, path, value);
          } catch {
            // the parent was replaced by a non-object
          }
        }
        check(raw);
      }),
      { numRuns: 500 },
    );
  });
});
