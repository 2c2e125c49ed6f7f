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
import { z } from 'zod';
import { ETCD_DEFAULTS, type EtcdArbiterOptions } from '../ha/arbiter-config.ts';
import { keyId, MAX_KEYS } from '../ha/protocol.ts';
import {
  cidrFromString,
  type IpAddr,
  type IpCidr,
  inPrefix,
  ipFromString,
  ipKey,
  ipToString,
  isV4,
} from '../stack/ip.ts';
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
import { bool, checked, int, issuesToErrors, obj, oneOf, sentence, show, text, wrong } from './schema.ts';

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
  /** Where the node serves Prometheus metrics over HTTP (`GET /metrics`); absent: not served. */
  admin?: { listen: HostPort };
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

const HEX_EXAMPLE = 'the output of `openssl rand -hex 32`';
const ETCD_EXAMPLE = '{"etcd": {"endpoints": ["http://10.0.0.5:2379"], "cluster": "pair1"}}';
const ENDPOINT_RULE =
  'must be "address:port" with an IP address (IPv6 in brackets) and a port from 1 to 65535';

/** An "address:port" endpoint of the replication link: its address and port, or the rule broken. */
function endpointOf(s: string, isListen: boolean): (HostPort & { addr: IpAddr }) | string {
  const m = /^\[([^\]]*)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]*):(\d{1,5})$/.exec(s);
  if (m === null) return ENDPOINT_RULE;
  const a = ipFromString(m[1]);
  const port = Number(m[2]);
  if (a === undefined || isV4(a) === s.startsWith('[') || port < 1 || port > 65535) return ENDPOINT_RULE;
  const unspecified = isV4(a) ? a === 0 : isUnspecifiedIpv6(a);
  const multicast = isV4(a) ? a >>> 28 === 0xe || a === 0xffff_ffff : isMulticastIpv6(a);
  if (multicast || (unspecified && !isListen))
    return `must be a unicast address${isListen ? ' (or 0.0.0.0 / [::] to listen on all)' : ''}`;
  return { host: ipToString(a), port, addr: a };
}

/** An "address:port" the schema has checked already. */
function hostPortOf(s: string): HostPort {
  const e = endpointOf(s, true);
  if (typeof e === 'string') throw new Error(`unchecked endpoint ${s}`);
  return { host: e.host, port: e.port };
}

const endpoint = (example: string, isListen: boolean) =>
  text(example).superRefine((s, ctx) => {
    const e = endpointOf(s, isListen);
    if (typeof e === 'string')
      ctx.addIssue({
        code: 'custom',
        message: sentence(
          `${e}; got ${show(s)}`,
          e === ENDPOINT_RULE ? `${example} or "[fd00::1]:7400"` : example,
        ),
      });
  });

function cidrProblem(s: string): string | undefined {
  const c = cidrFromString(s);
  if (c === undefined || !s.includes('/')) return 'must be "address/prefix" (IPv4 prefix 0-32, IPv6 0-128)';
  const a = c.address;
  const unusable = isV4(a)
    ? a === 0 || a >>> 28 === 0xe || a === 0xffff_ffff
    : isUnspecifiedIpv6(a) || isMulticastIpv6(a);
  return unusable ? 'must be a unicast address (not unspecified, multicast or broadcast)' : undefined;
}

const VIP_EXAMPLE = '["198.18.0.10/24", "fd00::10/64"]';
const Vip = z
  .array(checked('"198.18.0.10/24"', cidrProblem), {
    error: wrong('must be an array of "address/prefix" strings', VIP_EXAMPLE),
  })
  .min(1, { error: sentence('must list at least one virtual address', VIP_EXAMPLE) })
  .superRefine((list, ctx) => {
    const seen = new Map<string, number>();
    list.forEach((s, i) => {
      // zod runs this even when an element failed its own check: skip those.
      const c = cidrProblem(s) === undefined ? cidrFromString(s) : undefined;
      if (c === undefined) return;
      const key = ipKey(c.address);
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else
        ctx.addIssue({
          code: 'custom',
          path: [i],
          message: sentence(`duplicates vip[${first}] (${show(list[first])}); list each address once`),
        });
    });
  });

const gateway = (v4: boolean) =>
  checked(v4 ? '"198.18.0.1"' : '"fd00::1"', (s) => {
    const a = ipFromString(s);
    return a === undefined || isV4(a) !== v4 ? `must be an ${v4 ? 'IPv4' : 'IPv6'} address` : undefined;
  });

function keyProblem(hex: string): string | undefined {
  if (!HEX.test(hex) || hex.length % 2 !== 0)
    return 'must be an even number of hex digits (0-9 a-f) and nothing else (the value is not shown: it is a secret)';
  if (hex.length < MIN_KEY_BYTES * 2)
    return `must be at least ${MIN_KEY_BYTES * 2} hex digits (${MIN_KEY_BYTES} bytes); got ${hex.length}`;
  return undefined;
}

const Replication = obj(
  {
    /** Where this node accepts the peer's replication connection ("address:port"). */
    listen: endpoint('"198.18.1.1:7400"', true),
    /** The other node's `listen`. */
    peer: endpoint('"198.18.1.2:7400"', false),
    /** The pre-shared key in hex (≥ 32 digits); or `keyFile`. */
    key: checked(HEX_EXAMPLE, keyProblem, true).optional(),
    /** A file of hex keys, one per line, the current first (relative to the config file). */
    keyFile: checked('"takeover.key"', (s) => (s === '' ? 'must be a file path' : undefined)).optional(),
    mode: oneOf(['sync', 'async']).default(NODE_CONFIG_DEFAULTS.mode),
    heartbeatMs: int(1, 10_000, '20').default(NODE_CONFIG_DEFAULTS.heartbeatMs),
    /** At least 2 × heartbeatMs; default the larger of 50 and 5 × heartbeatMs. */
    timeoutMs: z
      .number({ error: wrong('must be an integer of at least 2 × heartbeatMs', '300') })
      .int({ error: wrong('must be an integer of at least 2 × heartbeatMs', '300') })
      .optional(),
  },
  '{"listen": "198.18.1.1:7400", "peer": "198.18.1.2:7400", "keyFile": "takeover.key"}',
);

const App = obj(
  {
    /** The application module (relative to the config file). */
    module: checked('"./examples/echo.ts"', (s) =>
      s === '' ? 'must be the path of the application module' : undefined,
    ),
    /** Handed to the application as is. */
    options: z
      .record(z.string(), z.unknown(), {
        error: wrong('must be an object (handed to the application as is)', '{}'),
      })
      .default({}),
  },
  '{"module": "./examples/echo.ts"}',
);

const Status = obj(
  {
    /** The unix socket `takeover status` talks to (default /run/takeover/<nodeId>.sock). */
    socket: checked('"/run/takeover/node-a.sock"', (s) =>
      s === '' ? 'must be a unix socket path' : undefined,
    ).optional(),
  },
  '{"socket": "/run/takeover/node-a.sock"}',
);

const Admin = obj(
  {
    /** Where the node serves Prometheus metrics (`GET /metrics`), "address:port". */
    listen: endpoint('"127.0.0.1:9464"', true),
  },
  '{"listen": "127.0.0.1:9464"}',
);

const KEEPALIVE_EXAMPLE = '{"idleUs": 7200000000, "intervalUs": 75000000, "count": 9}';
/** The TCP engine's fields (tcp/config.ts, microseconds), each checked for its type here, for its range by tcpConfig(). */
const tcpShape: Record<string, z.ZodType> = {};
for (const [k, def] of Object.entries(DEFAULT_TCP_CONFIG)) {
  if (k === 'keepAlive')
    tcpShape[k] = obj(
      {
        idleUs: int(1, 2 ** 40, '7200000000'),
        intervalUs: int(1, 2 ** 40, '75000000'),
        count: int(1, 1000, '9'),
      },
      KEEPALIVE_EXAMPLE,
    )
      .nullable()
      .optional();
  else if (k === 'congestion')
    tcpShape[k] = z
      .enum(['cubic', 'newreno'], { error: wrong('must be "cubic" or "newreno"', '"cubic"') })
      .optional();
  else if (typeof def === 'boolean') tcpShape[k] = bool('must be true or false', String(def)).optional();
  else
    tcpShape[k] = int(0, Number.MAX_SAFE_INTEGER, String(def), 'must be a non-negative integer').optional();
}
const Tcp = obj(tcpShape, '{"noDelay": true}');

const CLUSTER = /^[A-Za-z0-9_.-]{1,64}$/;
const PREFIX = /^(\/[A-Za-z0-9_.-]+)+$/;
const ETCD_ENDPOINT = /^http:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/;
const ETCD_ENDPOINTS_EXAMPLE = '["http://10.0.0.5:2379", "http://10.0.0.6:2379", "http://10.0.0.7:2379"]';

/** The arbiter (README "Partitions"): an etcd cluster; the same `cluster` on both nodes. */
const Arbiter = obj(
  {
    etcd: obj(
      {
        endpoints: z
          .array(
            checked('"http://10.0.0.5:2379"', (s) =>
              ETCD_ENDPOINT.test(s)
                ? undefined
                : 'must be "http://host:port" (an etcd client URL; TLS is not supported yet)',
            ),
            { error: wrong('must be a non-empty array of etcd client URLs', ETCD_ENDPOINTS_EXAMPLE) },
          )
          .min(1, {
            error: sentence('must be a non-empty array of etcd client URLs', ETCD_ENDPOINTS_EXAMPLE),
          }),
        prefix: checked('"/takeover"', (s) =>
          PREFIX.test(s) ? undefined : 'must be "/name" or "/a/b" (A-Z a-z 0-9 _ . -, no trailing "/")',
        ).default(ETCD_DEFAULTS.prefix),
        cluster: checked('"pair1"', (s) =>
          CLUSTER.test(s)
            ? undefined
            : "must be 1 to 64 characters of A-Z a-z 0-9 _ . - (the pair's name, the same on both nodes)",
        ),
        timeoutMs: int(10, 60_000, '500').default(ETCD_DEFAULTS.timeoutMs),
      },
      ETCD_EXAMPLE,
    ),
  },
  ETCD_EXAMPLE,
);

/** The node's fields, declared once: the checks, the defaults, and the JSON Schema. */
export const NodeSections = z.strictObject({
  /** 1..32 characters of [A-Za-z0-9_.-]. */
  nodeId: checked('"node-a"', (s) =>
    NODE_ID.test(s) ? undefined : 'must be 1 to 32 characters of A-Z a-z 0-9 _ . -',
  ).describe("This node's name: 1 to 32 characters of A-Z a-z 0-9 _ . -"),
  /** The role the node starts in; a standby never preempts a running active. */
  role: oneOf(['active', 'standby']).describe(
    'The role the node starts in; a standby never preempts a running active',
  ),
  tap: obj(
    {
      /** The TAP device (≤ 15 bytes); created when missing. */
      name: checked('"takeover0"', interfaceNameProblem),
      /** The network namespace to open it in (`ip netns list`). */
      netns: checked('"takeover-a"', (s) =>
        s === '' || s === '.' || s === '..' || /[/\0]/.test(s)
          ? 'must be a network namespace name (as in `ip netns list`), not a path'
          : undefined,
      ).optional(),
      mtu: int(1280, 65521, '1500').default(NODE_CONFIG_DEFAULTS.mtu),
    },
    '{"name": "takeover0"}',
  ),
  /** The shared virtual MAC, unicast. */
  mac: checked('"00:00:5e:00:01:01"', (s) => {
    const mac = macFromString(s);
    if (mac === undefined) return 'must be a MAC address "xx:xx:xx:xx:xx:xx"';
    if (isMulticastMac(mac)) return 'must be a unicast MAC (the low bit of the first octet clear)';
    return mac === 0 ? 'must not be all zeros' : undefined;
  }).default(NODE_CONFIG_DEFAULTS.mac),
  /** The virtual addresses with their on-link prefixes. */
  vip: Vip.describe('The virtual addresses with their on-link prefixes, e.g. "198.18.0.10/24"'),
  /** Default routers, on-link (inside a VIP prefix; IPv6 also link-local). */
  gateway4: gateway(true).optional(),
  gateway6: gateway(false).optional(),
  replication: Replication.describe(
    "The link to the peer node (kernel TCP on the hosts' own addresses): listen, peer, key or keyFile, mode, heartbeatMs, timeoutMs",
  ),
  /** With no standby: keep serving alone, or refuse new connections. */
  degraded: oneOf(['serve', 'refuse']).default(NODE_CONFIG_DEFAULTS.degraded),
  /** The standby listens on the data link (README "Standby listens"). */
  snoop: bool(
    'must be true (the standby listens on the data link; switches flood the virtual MAC) or false',
  ).default(NODE_CONFIG_DEFAULTS.snoop),
  app: App.describe('The application module (node:net style, see examples/) and its options'),
  status: Status.optional().describe('The unix socket `takeover status` talks to'),
  admin: Admin.optional().describe('Where the node serves Prometheus metrics (GET /metrics)'),
  /** Overrides of the TCP engine's defaults (tcp/config.ts; microseconds). */
  tcp: Tcp.optional(),
  arbiter: Arbiter.optional().describe(
    'The etcd witness deciding which node may be active when the two cannot hear each other',
  ),
});

/** A node whose application is built in (`takeover relay`): no `app`. */
export const BuiltinNodeSections = NodeSections.omit({ app: true });

/** The config file as written (the type inferred from the schema). */
export type NodeConfigInput = z.input<typeof NodeSections>;

/** The JSON Schema of a node's config (`takeover config schema node`), for editors. */
export function nodeJsonSchema(): unknown {
  return z.toJSONSchema(NodeSections, { io: 'input' });
}

/** The value if `schema` accepts it (a field checked alone), else undefined. */
function valid<T extends z.ZodType>(schema: T, v: unknown): z.output<T> | undefined {
  const r = schema.safeParse(v);
  return r.success ? r.data : undefined;
}

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
    return checkNode(raw, configDir, opts.builtinApp);
  } catch (e) {
    // A bug here must not take the process down with a stack trace instead of a message.
    return new ConfigError([`config: internal error while validating (${describeError(e)})`]);
  }
}

function checkNode(
  raw: unknown,
  configDir: string,
  builtinApp: string | undefined,
): NodeConfig | ConfigError {
  if (!isObj(raw))
    return new ConfigError([
      `config: the file must hold one JSON object with the node's fields; got ${show(raw)}. Start from \`takeover node --example-config\``,
    ]);
  const errors: string[] = [];
  let input: Obj = raw;
  if (builtinApp !== undefined) {
    if (get(raw, 'app') !== undefined)
      errors.push(
        `config field "app": not used here: the application is the ${builtinApp}; remove the field.`,
      );
    input = { ...raw };
    delete input.app;
  }
  const schema = builtinApp === undefined ? NodeSections : BuiltinNodeSections;
  const parsed = schema.safeParse(input);
  if (!parsed.success) errors.push(...issuesToErrors(schema, parsed.error.issues));
  const across = new Across(configDir, errors);
  const derived = across.check(input);
  if (errors.length > 0 || !parsed.success || derived === undefined) return new ConfigError(errors);
  const d = parsed.data as z.output<typeof NodeSections>;
  const nodeId = d.nodeId;
  const config: NodeConfig = {
    nodeId,
    role: d.role,
    tap:
      d.tap.netns === undefined
        ? { name: d.tap.name, mtu: d.tap.mtu }
        : { name: d.tap.name, netns: d.tap.netns, mtu: d.tap.mtu },
    mac: macFromString(d.mac)!,
    vip: d.vip.map((s) => cidrFromString(s)!),
    replication: {
      listen: derived.listen,
      peer: derived.peer,
      key: derived.keys[0],
      keys: derived.keys,
      ...(derived.keyFile === undefined ? {} : { keyFile: derived.keyFile }),
      mode: d.replication.mode,
      heartbeatMs: d.replication.heartbeatMs,
      timeoutMs: derived.timeoutMs,
    },
    degraded: d.degraded,
    snoop: d.snoop,
    app:
      builtinApp === undefined
        ? { module: derived.module!, options: d.app.options }
        : { module: builtinApp, options: {} },
    status: { socket: derived.socket ?? `${NODE_CONFIG_DEFAULTS.statusDir}/${nodeId}.sock` },
    ...(d.admin === undefined ? {} : { admin: { listen: hostPortOf(d.admin.listen) } }),
  };
  if (d.gateway4 !== undefined) config.gateway4 = ipFromString(d.gateway4) as Ipv4Addr;
  if (d.gateway6 !== undefined) config.gateway6 = ipFromString(d.gateway6) as Ipv6Addr;
  if (derived.tcp !== undefined) config.tcp = derived.tcp;
  if (d.arbiter !== undefined) config.arbiter = { etcd: d.arbiter.etcd };
  return config;
}

/**
 * The rules that span fields or touch the file system (a gateway on-link, the replication link
 * off the VIPs, one key source and its file, the module and socket paths, the timeout against
 * the heartbeat, the TCP ranges), on each field that passed its own check, so that they are
 * reported with the schema's errors.
 */
class Across {
  constructor(
    readonly configDir: string,
    readonly errors: string[],
  ) {}

  private fail(path: string, text: string, example?: string): undefined {
    this.errors.push(`config field "${path}": ${sentence(text, example)}`);
    return undefined;
  }

  check(raw: Obj):
    | {
        listen: HostPort;
        peer: HostPort;
        keys: Uint8Array[];
        keyFile?: string;
        timeoutMs: number;
        module?: string;
        socket?: string;
        tcp?: Partial<TcpConfig>;
      }
    | undefined {
    const vipStrings = valid(Vip, get(raw, 'vip'));
    const vip = vipStrings?.map((s) => cidrFromString(s)!);
    for (const v4 of [true, false])
      this.gateway(v4 ? 'gateway4' : 'gateway6', get(raw, v4 ? 'gateway4' : 'gateway6'), vip, v4);
    const rep = get(raw, 'replication');
    const r = isObj(rep) ? this.replication(rep, vip) : undefined;
    const app = get(raw, 'app');
    const module = isObj(app) ? this.module(get(app, 'module')) : undefined;
    const status = get(raw, 'status');
    const socket = isObj(status) ? this.socket(get(status, 'socket')) : undefined;
    const tcpRaw = get(raw, 'tcp');
    const tcp = isObj(tcpRaw) ? this.tcp(tcpRaw) : undefined;
    if (r === undefined) return undefined;
    return { ...r, module, socket, tcp };
  }

  private gateway(path: string, v: unknown, vip: IpCidr[] | undefined, v4: boolean): void {
    const s = valid(gateway(v4), v);
    if (s === undefined || vip === undefined) return;
    const a = ipFromString(s)!;
    const ex = v4 ? '"198.18.0.1"' : '"fd00::1"';
    const family = vip.filter((c) => isV4(c.address) === v4);
    if (family.length === 0) {
      this.fail(
        path,
        `needs an ${v4 ? 'IPv4' : 'IPv6'} address in "vip" to be reached from; add one or drop ${path}`,
      );
      return;
    }
    if (family.some((c) => ipKey(c.address) === ipKey(a))) {
      this.fail(path, `must not be one of the virtual addresses; got ${show(s)}`, ex);
      return;
    }
    const linkLocal = !isV4(a) && a[0] === 0xfe && (a[1] & 0xc0) === 0x80;
    if (!linkLocal && !family.some((c) => inPrefix(a, c)))
      this.fail(
        path,
        `must be on-link: inside the prefix of a ${v4 ? 'IPv4' : 'IPv6'} vip${v4 ? '' : ', or link-local (fe80::/10)'}; got ${show(s)}`,
        ex,
      );
  }

  private replication(
    o: Obj,
    vip: IpCidr[] | undefined,
  ):
    | { listen: HostPort; peer: HostPort; keys: Uint8Array[]; keyFile?: string; timeoutMs: number }
    | undefined {
    const ends: (HostPort & { addr: IpAddr })[] = [];
    for (const [field, isListen, ex] of [
      ['listen', true, '"198.18.1.1:7400"'],
      ['peer', false, '"198.18.1.2:7400"'],
    ] as const) {
      const s = valid(endpoint(ex, isListen), get(o, field));
      const e = s === undefined ? undefined : endpointOf(s, isListen);
      if (e === undefined || typeof e === 'string') continue;
      if (vip?.some((c) => ipKey(c.address) === ipKey(e.addr))) {
        this.fail(
          `replication.${field}`,
          `must not be a virtual address: the replication link runs on the hosts’ own addresses, outside the VIP; got ${show(s)}`,
          ex,
        );
        continue;
      }
      ends[isListen ? 0 : 1] = e;
    }
    const [listen, peer] = ends;
    if (listen && peer && ipKey(listen.addr) === ipKey(peer.addr) && listen.port === peer.port)
      this.fail(
        'replication.peer',
        `must differ from replication.listen (both are ${show(get(o, 'peer'))}); it is the other node's listen address`,
        '"198.18.1.2:7400"',
      );
    const key = this.key(o);
    const timeoutMs = this.timeout(o);
    if (!listen || !peer || key === undefined || timeoutMs === undefined) return undefined;
    return {
      listen: { host: listen.host, port: listen.port },
      peer: { host: peer.host, port: peer.port },
      ...key,
      timeoutMs,
    };
  }

  /** Exactly one of `key` (hex) and `keyFile` (see `readKeyFile`); the key is never echoed. */
  private key(o: Obj): { keys: Uint8Array[]; keyFile?: string } | undefined {
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
    if (typeof hex === 'string') return keyProblem(hex) === undefined ? { keys: [hexBytes(hex)] } : undefined;
    if (typeof file !== 'string' || file === '') return undefined;
    const abs = resolve(this.configDir, file);
    const keys = readKeyFile(abs);
    if (typeof keys === 'string')
      return this.fail('replication.keyFile', keys, '`openssl rand -hex 32 > takeover.key`');
    return { keys, keyFile: abs };
  }

  private timeout(o: Obj): number | undefined {
    const hbRaw = get(o, 'heartbeatMs');
    const heartbeatMs = valid(int(1, 10_000, '20').default(NODE_CONFIG_DEFAULTS.heartbeatMs), hbRaw);
    const hb = heartbeatMs ?? NODE_CONFIG_DEFAULTS.heartbeatMs;
    const v = get(o, 'timeoutMs');
    if (v === undefined)
      return Math.max(NODE_CONFIG_DEFAULTS.timeoutMs, NODE_CONFIG_DEFAULTS.timeoutHeartbeats * hb);
    if (typeof v !== 'number' || !Number.isInteger(v)) return undefined; // the schema said so
    const min = 2 * hb;
    const ex = String(Math.max(min * 2, 300));
    const path = 'replication.timeoutMs';
    if (v < min) {
      // Only blame the timeout when heartbeatMs itself is valid (or defaulted).
      if (heartbeatMs === undefined) return undefined;
      return this.fail(path, `must be an integer of at least 2 × heartbeatMs (${min}); got ${v}`, ex);
    }
    if (v > 600_000) return this.fail(path, `must be at most 600000 (10 minutes); got ${v}`, ex);
    return v;
  }

  private module(v: unknown): string | undefined {
    if (typeof v !== 'string' || v === '') return undefined;
    const abs = resolve(this.configDir, v);
    if (isFile(abs)) return abs;
    return this.fail(
      'app.module',
      `no file at "${abs}" (from ${show(v)}; relative paths start at the config file's directory)`,
      '"./examples/echo.ts"',
    );
  }

  private socket(v: unknown): string | undefined {
    if (typeof v !== 'string' || v === '') return undefined;
    const abs = resolve(this.configDir, v);
    const n = Buffer.byteLength(abs);
    if (n <= MAX_SOCKET_PATH_BYTES) return abs;
    return this.fail(
      'status.socket',
      `"${abs}" is ${n} bytes; a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}`,
      '"/run/takeover/node-a.sock"',
    );
  }

  /** The ranges (and the fields that bound each other) through tcpConfig itself, on the fields whose types were right. */
  private tcp(o: Obj): Partial<TcpConfig> | undefined {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o)) {
      if (!Object.hasOwn(tcpShape, k)) continue;
      const s = tcpShape[k];
      const r = s.safeParse(o[k]);
      if (r.success && r.data !== undefined) out[k] = r.data === null ? undefined : r.data;
    }
    try {
      tcpConfig(out as Partial<TcpConfig>);
    } catch (e) {
      const msg = describeError(e);
      const m = /^tcp config: (\w+) (.*?)\.?$/.exec(msg);
      if (m !== null && Object.hasOwn(tcpShape, m[1]))
        this.fail(
          `tcp.${m[1]}`,
          Object.hasOwn(out, m[1])
            ? m[2]
            : `${m[2]}: its default no longer fits the other tcp fields; set it too`,
        );
      else this.fail('tcp', msg.replace(/^tcp config: /, '').replace(/\.$/, ''));
      return undefined;
    }
    return out as Partial<TcpConfig>;
  }
}

/**
 * The node config's `arbiter` section alone: the options, or every problem (one sentence each,
 * `config field "arbiter.etcd.cluster": …`).
 */
export function etcdArbiterConfig(raw: unknown, path = 'arbiter'): EtcdArbiterOptions | string[] {
  const r = Arbiter.safeParse(raw);
  if (!r.success) return issuesToErrors(Arbiter, r.error.issues, path);
  return r.data.etcd;
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

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
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
