/**
 * The node's configuration file, read by `takeover node --config <file>`.
 *
 * A JSON object (see `exampleNodeConfig()`); durations in milliseconds except under `tcp`, which
 * is handed to the TCP engine as is (its fields are in microseconds, see tcp/config.ts). The
 * validator never throws: it returns a typed `NodeConfig` or a `ConfigError` listing every problem
 * at once, each one sentence naming the field path, what was wrong and an example of a good value.
 * Unknown fields are errors (with a "did you mean" suggestion), so a typo never silently falls
 * back to a default.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type EtcdArbiterOptions, etcdArbiterConfig } from '../ha/arbiter-config.ts';
import { keyId, MAX_KEYS } from '../ha/protocol.ts';
import { cidrFromString, type IpCidr, inPrefix, ipFromString, ipKey, ipToString, isV4 } from '../stack/ip.ts';
import { DEFAULT_TCP_CONFIG, type TcpConfig, tcpConfig } from '../tcp/config.ts';
import {
  type Ipv4Addr,
  type Ipv6Addr,
  isMulticastIpv6,
  isMulticastMac,
  isUnspecifiedIpv6,
  type MacAddr,
  macFromString,
} from '../wire/address.ts';
import { toHex } from '../wire/bytes.ts';

export type NodeRole = 'active' | 'standby';
export type ReplicationMode = 'sync' | 'async';
export type DegradedPolicy = 'serve' | 'refuse';

/** A kernel TCP endpoint of the replication link. `host` is an IP literal, IPv6 without brackets. */
export interface HostPort {
  host: string;
  port: number;
}

export interface NodeConfig {
  /** 1..32 characters of [A-Za-z0-9_.-]. */
  nodeId: string;
  /** The role the node starts in; a standby never preempts a running active. */
  role: NodeRole;
  /** The TAP device: name (≤ 15 bytes, like Linux IFNAMSIZ), optional network namespace, MTU. */
  tap: { name: string; netns?: string; mtu: number };
  /** The shared virtual MAC (VRRP style), unicast. */
  mac: MacAddr;
  /** The virtual addresses with their on-link prefixes; at least one, no address twice. */
  vip: IpCidr[];
  /** Default routers, each on-link (inside a VIP prefix; for IPv6 also link-local). */
  gateway4?: Ipv4Addr;
  gateway6?: Ipv6Addr;
  replication: {
    /** Where this node accepts the peer's replication connection. */
    listen: HostPort;
    /** The other node's `listen`. */
    peer: HostPort;
    /** Pre-shared key authenticating the replication link (≥ 16 bytes): the current one. */
    key: Uint8Array;
    /**
     * Every key the node holds, `key` first, then keys it still accepts (a key file may list up
     * to 8, one hex key per line; see `readKeyFile`). Absent: `[key]`.
     */
    keys?: Uint8Array[];
    /** The key file's absolute path, re-read on SIGHUP; absent when the key is given inline. */
    keyFile?: string;
    mode: ReplicationMode;
    /** Heartbeats on the replication link and beacons on the data link, each this often. */
    heartbeatMs: number;
    /**
     * The lease the standby grants the active (it may send until this long after the clock value
     * the standby echoed), and the silence on both paths after which a node counts its peer as
     * gone: a silent active is taken over about this long (+5 ms) after its last word.
     */
    timeoutMs: number;
  };
  /** With no standby: keep serving alone (the status says so) or refuse new connections. */
  degraded: DegradedPolicy;
  /**
   * The standby listens on the data link (README "Standby listens"): frames leave with the
   * node's own MAC, so switches flood what clients send to the virtual MAC to both nodes.
   */
  snoop: boolean;
  /** The application: an absolute module path (checked to exist) and the options it is given. */
  app: { module: string; options: Record<string, unknown> };
  /** Unix socket `takeover status` talks to (absolute path). */
  status: { socket: string };
  /** Overrides of the TCP engine's defaults (DEFAULT_TCP_CONFIG), already checked by tcpConfig(). */
  tcp?: Partial<TcpConfig>;
  /**
   * The witness that decides which node may be active when the two cannot hear each other
   * (README "Partitions"): an etcd cluster, the same `cluster` name on both nodes.
   */
  arbiter?: { etcd: EtcdArbiterOptions };
}

/** Values used for fields the file leaves out. */
export const NODE_CONFIG_DEFAULTS = Object.freeze({
  mtu: 1500,
  mac: '00:00:5e:00:01:01',
  mode: 'sync' as ReplicationMode,
  heartbeatMs: 10,
  /** The timeout defaults to the larger of this and `timeoutHeartbeats` × heartbeatMs. */
  timeoutMs: 50,
  timeoutHeartbeats: 5,
  degraded: 'serve' as DegradedPolicy,
  snoop: true,
  statusDir: '/run/takeover',
});

/** Every problem found in a configuration, one sentence each in `errors`. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly errors: string[];

  /** `source` (the file) heads the message when given. */
  constructor(errors: string[], source?: string) {
    const head = source === undefined ? '' : `${source}: `;
    super(
      errors.length === 1
        ? `${head}${errors[0]}`
        : `${head}${errors.length} configuration errors:\n${errors.map((e) => `  - ${e}`).join('\n')}`,
    );
    this.errors = errors;
  }
}

const NODE_ID = /^[A-Za-z0-9_.-]{1,32}$/;
const HEX = /^[0-9a-fA-F]+$/;
const MIN_KEY_BYTES = 16;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

type Obj = Record<string, unknown>;

const TOP_FIELDS = [
  'nodeId',
  'role',
  'tap',
  'mac',
  'vip',
  'gateway4',
  'gateway6',
  'replication',
  'degraded',
  'snoop',
  'app',
  'status',
  'tcp',
  'arbiter',
] as const;
const TAP_FIELDS = ['name', 'netns', 'mtu'] as const;
const REPLICATION_FIELDS = ['listen', 'peer', 'key', 'keyFile', 'mode', 'heartbeatMs', 'timeoutMs'] as const;
const APP_FIELDS = ['module', 'options'] as const;
const STATUS_FIELDS = ['socket'] as const;
const KEEPALIVE_FIELDS = ['idleUs', 'intervalUs', 'count'] as const;
const TCP_FIELDS = Object.keys(DEFAULT_TCP_CONFIG) as (keyof TcpConfig)[];

/**
 * Validates parsed JSON. Relative paths (`replication.keyFile`, `app.module`, `status.socket`) are
 * taken relative to `configDir`, the directory of the config file. Never throws.
 */
export function parseNodeConfig(
  raw: unknown,
  configDir: string,
  opts: { builtinApp?: string } = {},
): NodeConfig | ConfigError {
  try {
    return new Checker(configDir, opts.builtinApp).node(raw);
  } catch (e) {
    // A bug here must not take the process down with a stack trace instead of a message.
    return new ConfigError([`config: internal error while validating (${describeError(e)})`]);
  }
}

/** Reads, parses and validates a config file. Never throws. */
export function loadNodeConfig(path: string): NodeConfig | ConfigError {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return new ConfigError([
      `config file "${file}": cannot be read (${describeError(e)}). Check the path given to --config.`,
    ]);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return new ConfigError([jsonSyntaxError(file, text, e)]);
  }
  const r = parseNodeConfig(raw, dirname(file));
  return r instanceof ConfigError ? new ConfigError(r.errors, `config file "${file}"`) : r;
}

/**
 * A complete, valid config (pretty-printed JSON) to start from, with a fresh random key (both nodes
 * must use the same one) and every defaulted field spelled out. `module` is written as given.
 */
export function exampleNodeConfig(module = './app.ts'): string {
  const example = {
    nodeId: 'node-a',
    role: 'active',
    tap: { name: 'takeover0', mtu: NODE_CONFIG_DEFAULTS.mtu },
    mac: NODE_CONFIG_DEFAULTS.mac,
    vip: ['198.18.0.10/24', 'fd00::10/64'],
    gateway4: '198.18.0.1',
    gateway6: 'fd00::1',
    replication: {
      listen: '198.18.1.1:7400',
      peer: '198.18.1.2:7400',
      key: toHex(randomBytes(32)),
      mode: NODE_CONFIG_DEFAULTS.mode,
      heartbeatMs: NODE_CONFIG_DEFAULTS.heartbeatMs,
      timeoutMs: NODE_CONFIG_DEFAULTS.timeoutMs,
    },
    degraded: NODE_CONFIG_DEFAULTS.degraded,
    snoop: NODE_CONFIG_DEFAULTS.snoop,
    app: { module, options: {} },
    status: { socket: `${NODE_CONFIG_DEFAULTS.statusDir}/node-a.sock` },
  };
  return `${JSON.stringify(example, null, 2)}\n`;
}

class Checker {
  readonly errors: string[] = [];

  /** `builtinApp`: the application is built in (`takeover relay`): no `app` field. */
  constructor(
    readonly configDir: string,
    readonly builtinApp?: string,
  ) {}

  node(raw: unknown): NodeConfig | ConfigError {
    if (!isObj(raw)) {
      return new ConfigError([
        `config: the file must hold one JSON object with the node's fields; got ${show(raw)}. Start from \`takeover node --example-config\``,
      ]);
    }
    this.unknownFields('', raw, TOP_FIELDS);

    const nodeId = this.nodeId(get(raw, 'nodeId'));
    const role = this.oneOf('role', get(raw, 'role'), ['active', 'standby'] as const, undefined);
    const tap = this.tap(get(raw, 'tap'));
    const mac = this.mac(get(raw, 'mac'));
    const vip = this.vip(get(raw, 'vip'));
    const gateway4 = this.gateway('gateway4', get(raw, 'gateway4'), vip, true);
    const gateway6 = this.gateway('gateway6', get(raw, 'gateway6'), vip, false);
    const replication = this.replication(get(raw, 'replication'), vip);
    const degraded = this.oneOf(
      'degraded',
      get(raw, 'degraded'),
      ['serve', 'refuse'] as const,
      NODE_CONFIG_DEFAULTS.degraded,
    );
    const snoopRaw = get(raw, 'snoop');
    let snoop: boolean = NODE_CONFIG_DEFAULTS.snoop;
    if (snoopRaw !== undefined) {
      if (typeof snoopRaw === 'boolean') snoop = snoopRaw;
      else
        this.fail(
          'snoop',
          `must be true (the standby listens on the data link; switches flood the virtual MAC) or false; got ${show(snoopRaw)}`,
        );
    }
    let app: NodeConfig['app'] | undefined;
    if (this.builtinApp === undefined) app = this.app(get(raw, 'app'));
    else if (get(raw, 'app') !== undefined)
      this.fail('app', `not used here: the application is the ${this.builtinApp}; remove the field`);
    else app = { module: this.builtinApp, options: {} };
    const status = this.status(get(raw, 'status'), nodeId);
    const tcp = this.tcp(get(raw, 'tcp'));
    const arbiterRaw = get(raw, 'arbiter');
    let arbiter: EtcdArbiterOptions | undefined;
    if (arbiterRaw !== undefined) {
      const a = etcdArbiterConfig(arbiterRaw);
      if (Array.isArray(a)) this.errors.push(...a);
      else arbiter = a;
    }

    if (this.errors.length > 0) return new ConfigError(this.errors);
    const config: NodeConfig = {
      nodeId: nodeId!,
      role: role!,
      tap: tap!,
      mac: mac!,
      vip: vip!,
      replication: replication!,
      degraded: degraded!,
      snoop,
      app: app!,
      status: status!,
    };
    if (gateway4 !== undefined) config.gateway4 = gateway4 as Ipv4Addr;
    if (gateway6 !== undefined) config.gateway6 = gateway6 as Ipv6Addr;
    if (tcp !== undefined) config.tcp = tcp;
    if (arbiter !== undefined) config.arbiter = { etcd: arbiter };
    return config;
  }

  // ---- sections -------------------------------------------------------------------------------

  private nodeId(v: unknown): string | undefined {
    const s = this.string('nodeId', v, '"node-a"');
    if (s === undefined) return undefined;
    if (!NODE_ID.test(s))
      return this.bad('nodeId', 'must be 1 to 32 characters of A-Z a-z 0-9 _ . -', s, '"node-a"');
    return s;
  }

  private tap(v: unknown): NodeConfig['tap'] | undefined {
    const o = this.object('tap', v, TAP_FIELDS, '{"name": "takeover0"}');
    if (o === undefined) return undefined;
    const name = this.string('tap.name', get(o, 'name'), '"takeover0"');
    if (name !== undefined) {
      const problem = interfaceNameProblem(name);
      if (problem !== undefined) this.bad('tap.name', problem, name, '"takeover0"');
    }
    const netnsRaw = get(o, 'netns');
    let netns: string | undefined;
    if (netnsRaw !== undefined) {
      netns = this.string('tap.netns', netnsRaw, '"takeover-a"');
      if (netns !== undefined && (netns === '' || netns === '.' || netns === '..' || /[/\0]/.test(netns)))
        this.bad(
          'tap.netns',
          'must be a network namespace name (as in `ip netns list`), not a path',
          netns,
          '"takeover-a"',
        );
    }
    const mtu = this.int('tap.mtu', get(o, 'mtu'), 1280, 65521, NODE_CONFIG_DEFAULTS.mtu, '1500');
    if (name === undefined || mtu === undefined) return undefined;
    return netns === undefined ? { name, mtu } : { name, netns, mtu };
  }

  private mac(v: unknown): MacAddr | undefined {
    const ex = '"00:00:5e:00:01:01"';
    const s = this.string('mac', v === undefined ? NODE_CONFIG_DEFAULTS.mac : v, ex);
    if (s === undefined) return undefined;
    const mac = macFromString(s);
    if (mac === undefined) return this.bad('mac', 'must be a MAC address "xx:xx:xx:xx:xx:xx"', s, ex);
    if (isMulticastMac(mac))
      return this.bad('mac', 'must be a unicast MAC (the low bit of the first octet clear)', s, ex);
    if (mac === 0) return this.bad('mac', 'must not be all zeros', s, ex);
    return mac;
  }

  private vip(v: unknown): IpCidr[] | undefined {
    const ex = '["198.18.0.10/24", "fd00::10/64"]';
    if (v === undefined) return this.missing('vip', ex);
    if (!Array.isArray(v)) return this.bad('vip', 'must be an array of "address/prefix" strings', v, ex);
    if (v.length === 0) return this.fail('vip', 'must list at least one virtual address', ex);
    const out: IpCidr[] = [];
    const seen = new Map<string, number>();
    let ok = true;
    v.forEach((item, i) => {
      const path = `vip[${i}]`;
      const c = this.cidr(path, item);
      if (c === undefined) {
        ok = false;
        return;
      }
      const key = ipKey(c.address);
      const first = seen.get(key);
      if (first !== undefined) {
        ok = false;
        this.fail(path, `duplicates vip[${first}] (${show(v[first])}); list each address once`);
        return;
      }
      seen.set(key, i);
      out.push(c);
    });
    return ok ? out : undefined;
  }

  private cidr(path: string, v: unknown): IpCidr | undefined {
    const ex = '"198.18.0.10/24"';
    const s = this.string(path, v, ex);
    if (s === undefined) return undefined;
    const c = cidrFromString(s);
    if (c === undefined || !s.includes('/'))
      return this.bad(
        path,
        'must be "address/prefix" (IPv4 prefix 0-32, IPv6 0-128)',
        s,
        `${ex} or "fd00::10/64"`,
      );
    const a = c.address;
    const unusable = isV4(a)
      ? a === 0 || a >>> 28 === 0xe || a === 0xffff_ffff
      : isUnspecifiedIpv6(a) || isMulticastIpv6(a);
    if (unusable)
      return this.bad(path, 'must be a unicast address (not unspecified, multicast or broadcast)', s, ex);
    return c;
  }

  private gateway(
    path: 'gateway4' | 'gateway6',
    v: unknown,
    vip: IpCidr[] | undefined,
    v4: boolean,
  ): Ipv4Addr | Ipv6Addr | undefined {
    if (v === undefined) return undefined;
    const ex = v4 ? '"198.18.0.1"' : '"fd00::1"';
    const s = this.string(path, v, ex);
    if (s === undefined) return undefined;
    const a = ipFromString(s);
    if (a === undefined || isV4(a) !== v4)
      return this.bad(path, `must be an ${v4 ? 'IPv4' : 'IPv6'} address`, s, ex);
    if (vip === undefined) return a;
    const family = vip.filter((c) => isV4(c.address) === v4);
    if (family.length === 0)
      return this.fail(
        path,
        `needs an ${v4 ? 'IPv4' : 'IPv6'} address in "vip" to be reached from; add one or drop ${path}`,
      );
    if (family.some((c) => ipKey(c.address) === ipKey(a)))
      return this.bad(path, 'must not be one of the virtual addresses', s, ex);
    const linkLocal = !isV4(a) && a[0] === 0xfe && (a[1] & 0xc0) === 0x80;
    if (!linkLocal && !family.some((c) => inPrefix(a, c)))
      return this.bad(
        path,
        `must be on-link: inside the prefix of a ${v4 ? 'IPv4' : 'IPv6'} vip${v4 ? '' : ', or link-local (fe80::/10)'}`,
        s,
        ex,
      );
    return a;
  }

  private replication(v: unknown, vip: IpCidr[] | undefined): NodeConfig['replication'] | undefined {
    const o = this.object(
      'replication',
      v,
      REPLICATION_FIELDS,
      '{"listen": "198.18.1.1:7400", "peer": "198.18.1.2:7400", "keyFile": "takeover.key"}',
    );
    if (o === undefined) return undefined;
    const listen = this.endpoint('replication.listen', get(o, 'listen'), '"198.18.1.1:7400"', true, vip);
    const peer = this.endpoint('replication.peer', get(o, 'peer'), '"198.18.1.2:7400"', false, vip);
    if (listen !== undefined && peer !== undefined && listen.key === peer.key)
      this.fail(
        'replication.peer',
        `must differ from replication.listen (both are ${show(get(o, 'peer'))}); it is the other node's listen address`,
        '"198.18.1.2:7400"',
      );
    const key = this.key(o);
    const mode = this.oneOf(
      'replication.mode',
      get(o, 'mode'),
      ['sync', 'async'] as const,
      NODE_CONFIG_DEFAULTS.mode,
    );
    const heartbeatMs = this.int(
      'replication.heartbeatMs',
      get(o, 'heartbeatMs'),
      1,
      10_000,
      NODE_CONFIG_DEFAULTS.heartbeatMs,
      '20',
    );
    const timeoutMs = this.timeout(get(o, 'timeoutMs'), heartbeatMs);
    if (
      listen === undefined ||
      peer === undefined ||
      key === undefined ||
      mode === undefined ||
      heartbeatMs === undefined ||
      timeoutMs === undefined
    )
      return undefined;
    return {
      listen: { host: listen.host, port: listen.port },
      peer: { host: peer.host, port: peer.port },
      key: key.keys[0],
      keys: key.keys,
      ...(key.file === undefined ? {} : { keyFile: key.file }),
      mode,
      heartbeatMs,
      timeoutMs,
    };
  }

  private timeout(v: unknown, heartbeatMs: number | undefined): number | undefined {
    const path = 'replication.timeoutMs';
    const hb = heartbeatMs ?? NODE_CONFIG_DEFAULTS.heartbeatMs;
    const fallback = Math.max(NODE_CONFIG_DEFAULTS.timeoutMs, NODE_CONFIG_DEFAULTS.timeoutHeartbeats * hb);
    if (v === undefined) return fallback;
    const max = 600_000;
    const min = 2 * hb;
    const ex = String(Math.max(min * 2, 300));
    if (typeof v !== 'number' || !Number.isInteger(v))
      return this.bad(path, `must be an integer of at least 2 × heartbeatMs (${min})`, v, ex);
    if (v < min) {
      // Only blame the timeout when heartbeatMs itself is valid (or defaulted).
      if (heartbeatMs === undefined) return undefined;
      return this.bad(path, `must be an integer of at least 2 × heartbeatMs (${min})`, v, ex);
    }
    if (v > max) return this.bad(path, `must be at most ${max} (10 minutes)`, v, ex);
    return v;
  }

  private endpoint(
    path: string,
    v: unknown,
    ex: string,
    isListen: boolean,
    vip: IpCidr[] | undefined,
  ): (HostPort & { key: string }) | undefined {
    if (v === undefined) return this.missing(path, ex);
    const s = this.string(path, v, ex);
    if (s === undefined) return undefined;
    const rule = 'must be "address:port" with an IP address (IPv6 in brackets) and a port from 1 to 65535';
    const m = /^\[([^\]]*)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]*):(\d{1,5})$/.exec(s);
    if (m === null) return this.bad(path, rule, s, `${ex} or "[fd00::1]:7400"`);
    const bracketed = s.startsWith('[');
    const a = ipFromString(m[1]);
    const port = Number(m[2]);
    if (a === undefined || isV4(a) === bracketed || port < 1 || port > 65535)
      return this.bad(path, rule, s, `${ex} or "[fd00::1]:7400"`);
    const unspecified = isV4(a) ? a === 0 : isUnspecifiedIpv6(a);
    const multicast = isV4(a) ? a >>> 28 === 0xe || a === 0xffff_ffff : isMulticastIpv6(a);
    if (multicast || (unspecified && !isListen))
      return this.bad(
        path,
        `must be a unicast address${isListen ? ' (or 0.0.0.0 / [::] to listen on all)' : ''}`,
        s,
        ex,
      );
    if (vip?.some((c) => ipKey(c.address) === ipKey(a)))
      return this.bad(
        path,
        'must not be a virtual address: the replication link runs on the hosts’ own addresses, outside the VIP',
        s,
        ex,
      );
    return { host: ipToString(a), port, key: `${ipKey(a)}:${port}` };
  }

  /**
   * Exactly one of `key` (hex) and `keyFile` (see `readKeyFile`): the keys, the current one first,
   * and the file's absolute path. The key itself is never echoed.
   */
  private key(o: Obj): { keys: Uint8Array[]; file?: string } | undefined {
    const hexEx = 'the output of `openssl rand -hex 32`';
    const hex = get(o, 'key');
    const file = get(o, 'keyFile');
    if (hex !== undefined && file !== undefined)
      return this.fail('replication.keyFile', 'give either replication.key or replication.keyFile, not both');
    if (hex === undefined && file === undefined)
      return this.fail(
        'replication.key',
        'missing: give the pre-shared key as replication.key (hex) or replication.keyFile (a path)',
        '"keyFile": "takeover.key"',
      );
    if (hex !== undefined) {
      if (typeof hex !== 'string')
        return this.bad('replication.key', 'must be a string of hex digits', hex, hexEx);
      if (!HEX.test(hex) || hex.length % 2 !== 0)
        return this.fail(
          'replication.key',
          'must be an even number of hex digits (0-9 a-f) and nothing else (the value is not shown: it is a secret)',
          hexEx,
        );
      if (hex.length < MIN_KEY_BYTES * 2)
        return this.fail(
          'replication.key',
          `must be at least ${MIN_KEY_BYTES * 2} hex digits (${MIN_KEY_BYTES} bytes); got ${hex.length}`,
          hexEx,
        );
      return { keys: [hexBytes(hex)] };
    }
    const path = 'replication.keyFile';
    const rel = this.string(path, file, '"takeover.key"');
    if (rel === undefined) return undefined;
    if (rel === '') return this.bad(path, 'must be a file path', rel, '"takeover.key"');
    const abs = resolve(this.configDir, rel);
    const keys = readKeyFile(abs);
    if (typeof keys === 'string') return this.fail(path, keys, '`openssl rand -hex 32 > takeover.key`');
    return { keys, file: abs };
  }

  private app(v: unknown): NodeConfig['app'] | undefined {
    const ex = '"./examples/echo.ts"';
    const o = this.object('app', v, APP_FIELDS, `{"module": ${ex}}`);
    if (o === undefined) return undefined;
    const rel = this.string('app.module', get(o, 'module'), ex);
    let module: string | undefined;
    if (rel !== undefined) {
      if (rel === '') this.bad('app.module', 'must be the path of the application module', rel, ex);
      else {
        const abs = resolve(this.configDir, rel);
        if (!isFile(abs))
          this.fail(
            'app.module',
            `no file at "${abs}" (from ${show(rel)}; relative paths start at the config file's directory)`,
            ex,
          );
        else module = abs;
      }
    }
    const optionsRaw = get(o, 'options');
    let options: Record<string, unknown> | undefined = {};
    if (optionsRaw !== undefined) {
      if (isObj(optionsRaw)) options = optionsRaw;
      else
        options = this.bad(
          'app.options',
          'must be an object (handed to the application as is)',
          optionsRaw,
          '{}',
        );
    }
    if (module === undefined || options === undefined) return undefined;
    return { module, options };
  }

  private status(v: unknown, nodeId: string | undefined): NodeConfig['status'] | undefined {
    const ex = '"/run/takeover/node-a.sock"';
    const fallback = `${NODE_CONFIG_DEFAULTS.statusDir}/${nodeId ?? 'node'}.sock`;
    if (v === undefined) return { socket: fallback };
    const o = this.object('status', v, STATUS_FIELDS, `{"socket": ${ex}}`);
    if (o === undefined) return undefined;
    const raw = get(o, 'socket');
    if (raw === undefined) return { socket: fallback };
    const s = this.string('status.socket', raw, ex);
    if (s === undefined) return undefined;
    if (s === '') return this.bad('status.socket', 'must be a unix socket path', s, ex);
    const abs = resolve(this.configDir, s);
    if (Buffer.byteLength(abs) > MAX_SOCKET_PATH_BYTES)
      return this.fail(
        'status.socket',
        `"${abs}" is ${Buffer.byteLength(abs)} bytes; a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}`,
        ex,
      );
    return { socket: abs };
  }

  /** Keys and value types against DEFAULT_TCP_CONFIG, then the ranges through tcpConfig() itself. */
  private tcp(v: unknown): Partial<TcpConfig> | undefined {
    if (v === undefined) return undefined;
    const o = this.object('tcp', v, TCP_FIELDS, '{"noDelay": true}');
    if (o === undefined) return undefined;
    const out: Record<string, unknown> = {};
    let ok = true;
    for (const k of Object.keys(o)) {
      if (!(TCP_FIELDS as string[]).includes(k)) {
        ok = false;
        continue;
      }
      const path = `tcp.${k}`;
      const val = o[k];
      const def = DEFAULT_TCP_CONFIG[k as keyof TcpConfig];
      if (k === 'keepAlive') {
        const ka = this.keepAlive(val);
        if (ka === false) ok = false;
        else out[k] = ka;
      } else if (k === 'congestion') {
        if (val !== 'cubic' && val !== 'newreno') {
          ok = false;
          this.bad(path, 'must be "cubic" or "newreno"', val, '"cubic"');
        } else out[k] = val;
      } else if (typeof def === 'boolean') {
        if (typeof val !== 'boolean') {
          ok = false;
          this.bad(path, 'must be true or false', val, String(def));
        } else out[k] = val;
      } else if (typeof val !== 'number' || !Number.isInteger(val) || val < 0) {
        ok = false;
        this.bad(path, 'must be a non-negative integer', val, String(def));
      } else out[k] = val;
    }
    // Ranges (and the fields that bound each other) through tcpConfig itself, on the values whose
    // types were right, so a range error is reported alongside the type errors.
    try {
      tcpConfig(out as Partial<TcpConfig>);
    } catch (e) {
      const msg = describeError(e);
      const m = /^tcp config: (\w+) (.*?)\.?$/.exec(msg);
      if (m !== null && (TCP_FIELDS as string[]).includes(m[1]))
        this.fail(
          `tcp.${m[1]}`,
          Object.hasOwn(out, m[1])
            ? m[2]
            : `${m[2]}: its default no longer fits the other tcp fields; set it too`,
        );
      else this.fail('tcp', msg.replace(/^tcp config: /, '').replace(/\.$/, ''));
      return undefined;
    }
    if (!ok) return undefined;
    return out as Partial<TcpConfig>;
  }

  /** `null` turns keep-alive off; false marks an error. */
  private keepAlive(v: unknown): TcpConfig['keepAlive'] | false {
    if (v === null) return undefined;
    const ex = '{"idleUs": 7200000000, "intervalUs": 75000000, "count": 9}';
    const o = this.object('tcp.keepAlive', v, KEEPALIVE_FIELDS, ex);
    if (o === undefined) return false;
    const idleUs = this.int('tcp.keepAlive.idleUs', get(o, 'idleUs'), 1, 2 ** 40, undefined, '7200000000');
    const intervalUs = this.int(
      'tcp.keepAlive.intervalUs',
      get(o, 'intervalUs'),
      1,
      2 ** 40,
      undefined,
      '75000000',
    );
    const count = this.int('tcp.keepAlive.count', get(o, 'count'), 1, 1000, undefined, '9');
    if (idleUs === undefined || intervalUs === undefined || count === undefined) return false;
    return { idleUs, intervalUs, count };
  }

  // ---- primitives -----------------------------------------------------------------------------

  /** Records one error; returns undefined so callers can `return this.fail(...)`. */
  private fail(path: string, text: string, example?: string): undefined {
    const end = /[.?!]$/.test(text) ? '' : '.';
    this.errors.push(
      `config field "${path}": ${text}${end}${example === undefined ? '' : ` Example: ${example}.`}`,
    );
    return undefined;
  }

  private bad(path: string, rule: string, got: unknown, example?: string): undefined {
    return this.fail(path, `${rule}; got ${show(got)}`, example);
  }

  private missing(path: string, example: string): undefined {
    return this.fail(path, 'missing; it is required', example);
  }

  private object(path: string, v: unknown, known: readonly string[], example: string): Obj | undefined {
    if (v === undefined) return this.missing(path, example);
    if (!isObj(v)) return this.bad(path, 'must be an object', v, example);
    this.unknownFields(path, v, known);
    return v;
  }

  private unknownFields(path: string, o: Obj, known: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (known.includes(k)) continue;
      const full = path === '' ? k : `${path}.${k}`;
      const near = suggest(k, known);
      this.fail(
        full,
        near === undefined
          ? `unknown field; the fields here are ${known.map((f) => `"${f}"`).join(', ')}`
          : `unknown field; did you mean "${near}"?`,
      );
    }
  }

  private string(path: string, v: unknown, example: string): string | undefined {
    if (v === undefined) return this.missing(path, example);
    if (typeof v !== 'string') return this.bad(path, 'must be a string', v, example);
    return v;
  }

  private int(
    path: string,
    v: unknown,
    lo: number,
    hi: number,
    def: number | undefined,
    example: string,
  ): number | undefined {
    if (v === undefined) return def === undefined ? this.missing(path, example) : def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
      return this.bad(path, `must be an integer from ${lo} to ${hi}`, v, example);
    return v;
  }

  private oneOf<T extends string>(
    path: string,
    v: unknown,
    options: readonly T[],
    def: T | undefined,
  ): T | undefined {
    const list = options.map((x) => `"${x}"`).join(' or ');
    if (v === undefined) return def === undefined ? this.missing(path, list) : def;
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
      const near = typeof v === 'string' ? suggest(v, options) : undefined;
      return this.fail(
        path,
        `must be ${list}; got ${show(v)}${near === undefined ? '' : `; did you mean "${near}"?`}`,
      );
    }
    return v as T;
  }
}

// ---- helpers ------------------------------------------------------------------------------------

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** Own properties only: `constructor` or `__proto__` in the file are data, never the prototype's. */
function get(o: Obj, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Reads a replication key file: one hex key per line (at least 32 hex digits each, up to
 * MAX_KEYS of them; blank lines and lines starting with '#' are skipped), the current key first,
 * then keys still accepted during a rotation; or, as before, one key as raw bytes (a file that is
 * not hex lines). Returns the keys, or one sentence saying what is wrong (the keys are never
 * shown). `takeover node` reads it at start and again on SIGHUP.
 */
export function readKeyFile(abs: string): Uint8Array[] | string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT')
      return `file "${abs}" does not exist (relative paths start at the config file's directory)`;
    return `file "${abs}" cannot be read (${describeError(e)})`;
  }
  const lines = bytes
    .toString('latin1')
    .split('\n')
    .map((text, i) => ({ text: text.trim(), n: i + 1 }))
    .filter((l) => l.text !== '' && !l.text.startsWith('#'));
  const isHex = (l: { text: string }) => HEX.test(l.text);
  if (lines.length > 0 && lines.every(isHex)) {
    if (lines.length > MAX_KEYS)
      return `file "${abs}" holds ${lines.length} keys; at most ${MAX_KEYS} (the current one first, then those still accepted)`;
    const keys: Uint8Array[] = [];
    const seen = new Map<string, number>();
    for (const { text, n } of lines) {
      const where = lines.length === 1 ? `file "${abs}" holds` : `file "${abs}", line ${n}, holds`;
      if (text.length % 2 !== 0 || text.length < MIN_KEY_BYTES * 2)
        return `${where} ${text.length} hex digits; a hex key needs an even number, at least ${MIN_KEY_BYTES * 2}`;
      const key = hexBytes(text);
      const id = keyId(key);
      const first = seen.get(id);
      if (first !== undefined)
        return `file "${abs}" lists the key of line ${first} again on line ${n} (key id ${id}); list each key once`;
      seen.set(id, n);
      keys.push(key);
    }
    return keys;
  }
  // Hex lines with one that is not: a typo in a key list, not a raw key.
  const bad = lines.find((l) => !isHex(l));
  if (
    lines.length > 1 &&
    bad !== undefined &&
    lines.some((l) => isHex(l) && l.text.length >= MIN_KEY_BYTES * 2)
  )
    return `file "${abs}", line ${bad.n}, is not a hex key (the file holds one hex key per line, the current one first)`;
  if (bytes.length < MIN_KEY_BYTES)
    return `file "${abs}" holds ${bytes.length} bytes; a key needs at least ${MIN_KEY_BYTES} (raw) or ${MIN_KEY_BYTES * 2} hex digits`;
  return [new Uint8Array(bytes)];
}

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Why `name` cannot be a Linux interface name (dev_valid_name), or undefined when it can. */
function interfaceNameProblem(name: string): string | undefined {
  if (name === '' || name === '.' || name === '..') return 'must be an interface name of 1 to 15 bytes';
  if (Buffer.byteLength(name) > 15) return 'must be at most 15 bytes (Linux IFNAMSIZ)';
  if (/[/:\s\0]/.test(name)) return "must not contain '/', ':' or whitespace";
  return undefined;
}

/** A short description of a value for "got …". */
function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty array' : 'an array';
  switch (typeof v) {
    case 'string': {
      const j = JSON.stringify(v);
      return j.length > 48 ? `${j.slice(0, 44)}…" (${v.length} characters)` : j;
    }
    case 'number':
    case 'boolean':
      return String(v);
    case 'object':
      return 'an object';
    default:
      return `a ${typeof v}`;
  }
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        d[i].push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2][j - 2] + 1);
      d[i].push(best);
    }
  }
  return d[a.length][b.length];
}

/** The known name closest to `name`, when it is close enough to be a typo. */
function suggest(name: string, known: readonly string[]): string | undefined {
  if (name.length > 64) return undefined;
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(lower, k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  const limit = Math.max(1, Math.floor(Math.max(name.length, 3) / 3));
  return bestD <= limit ? best : undefined;
}

/** `config file "…": invalid JSON at line L, column C: …` from a JSON.parse error. */
function jsonSyntaxError(file: string, text: string, e: unknown): string {
  const msg = describeError(e);
  const m = /at position (\d+)/.exec(msg);
  const pos = m !== null ? Number(m[1]) : /end of JSON input/.test(msg) ? text.length : undefined;
  const reason = msg.replace(/\s*in JSON at position \d+.*$/, '').replace(/\s*\(line \d+ column \d+\)$/, '');
  if (pos === undefined)
    return `config file "${file}": invalid JSON: ${reason}. Fix the syntax (JSON has no comments or trailing commas).`;
  let line = 1;
  let col = 1;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      col = 1;
    } else col++;
  }
  return `config file "${file}": invalid JSON at line ${line}, column ${col} (position ${pos}): ${reason}. Fix the syntax (JSON has no comments or trailing commas).`;
}
