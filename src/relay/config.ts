/**
 * The relay's configuration (`takeover relay --config <file>`, README "Relay"): a node's fields
 * (src/cli/config.ts: nodeId, role, tap, vip, replication, …; no `app`, the relay is the
 * application) and, in an operator's terms close to HAProxy's TCP mode:
 *
 *     "source":    ["198.18.3.100"],                       the floating address server legs leave from
 *     "frontends": [{ "name", "bind": ["VIP:port", …], "backend", "maxconn" }],
 *     "backends":  [{ "name", "servers": [{ "name", "address": "host:port", "weight", "backup" }],
 *                     "balance": "roundrobin" | "leastconn" | "source", "retries",
 *                     "proxyProtocol": "off" | "v1" | "v2", "health": {…} }],
 *     "health":    { "intervalMs", "timeoutMs", "rise", "fall", "send", "expect" },
 *     "timeouts":  { "connectMs", "clientMs", "serverMs" }
 *
 * The relay's sections are declared once with zod, like the node's (the type is inferred from the
 * schema, and `relayJsonSchema()` exports the whole file's for editors); the rules that span fields (a bind on a virtual
 * address, no bind twice, every backend named exists, a source address per server family) are
 * checked after. Every problem is reported at once, one sentence each naming the field and the
 * fix, with the node's own.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { BuiltinNodeSections, ConfigError, type NodeConfig, parseNodeConfig } from '../cli/config.ts';
import { issuesToErrors } from '../cli/schema.ts';
import { type IpAddr, ipFromString, ipKey, ipToString, isV4 } from '../stack/ip.ts';

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** "address:port" (IPv6 in brackets) → address and port, or undefined. */
export function parseHostPort(s: string): { host: IpAddr; port: number } | undefined {
  const m = /^\[([^\]]*)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]*):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const host = ipFromString(m[1]);
  const port = Number(m[2]);
  if (host === undefined || isV4(host) === s.startsWith('[') || port < 1 || port > 65535) return undefined;
  return { host, port };
}

const hostPort = (example: string) =>
  z.string().refine((s) => parseHostPort(s) !== undefined, {
    error: (i) =>
      `must be "address:port" with an IP address (IPv6 in brackets) and a port from 1 to 65535; got ${JSON.stringify(i.input)}. Example: "${example}"`,
  });

const name = (what: string) =>
  z.string().regex(NAME, { error: `must name the ${what}: 1 to 64 characters of A-Z a-z 0-9 _ . -` });

const msOf = (lo: number, hi: number) =>
  z
    .number({ error: `must be a number of milliseconds from ${lo} to ${hi}` })
    .int({ error: `must be a whole number of milliseconds from ${lo} to ${hi}` })
    .min(lo, { error: `must be from ${lo} to ${hi} ms` })
    .max(hi, { error: `must be from ${lo} to ${hi} ms` });
const ms = (lo: number, hi: number, dflt: number) => msOf(lo, hi).default(dflt);

const countOf = (lo: number, hi: number) =>
  z
    .number({ error: `must be a whole number from ${lo} to ${hi}` })
    .int({ error: `must be a whole number from ${lo} to ${hi}` })
    .min(lo, { error: `must be from ${lo} to ${hi}` })
    .max(hi, { error: `must be from ${lo} to ${hi}` });
const count = (lo: number, hi: number, dflt: number) => countOf(lo, hi).default(dflt);

const HEALTH_DEFAULTS = { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 } as const;

/**
 * HAProxy's `check` and `tcp-check send/expect`: a TCP connect, optionally a request and a reply.
 * Every field is optional at both levels (backend over top level over `HEALTH_DEFAULTS`).
 */
const healthFields = {
  intervalMs: msOf(100, 3_600_000).optional(),
  timeoutMs: msOf(10, 60_000).optional(),
  rise: countOf(1, 100).optional(),
  fall: countOf(1, 100).optional(),
  /** Sent once connected (JSON escapes: "PING\r\n"). */
  send: z.string().max(4096).optional(),
  /** The reply must contain this within `timeoutMs`. */
  expect: z.string().min(1).max(4096).optional(),
};
const Health = z.strictObject(healthFields);

const Server = z.strictObject({
  name: name('server'),
  address: hostPort('198.18.3.10:6379'),
  weight: count(0, 256, 1),
  /** Takes connections only when no other server of its backend is up. */
  backup: z.boolean({ error: 'must be true or false' }).default(false),
});

const Backend = z.strictObject({
  name: name('backend'),
  servers: z.array(Server).min(1, { error: 'must list at least one server' }),
  balance: z
    .enum(['roundrobin', 'leastconn', 'source'], {
      error: 'must be "roundrobin", "leastconn" or "source" (a hash of the client address)',
    })
    .default('roundrobin'),
  /** Connect attempts after the first, each to another server when there is one. */
  retries: count(0, 10, 3),
  proxyProtocol: z
    .enum(['off', 'v1', 'v2'], { error: 'must be "off", "v1" (text) or "v2" (binary)' })
    .default('off'),
  /**
   * Check this backend's servers (HAProxy's `check`): these fields over the top-level `health`
   * (`{}`: its values). A backend without it is not checked, unless the top-level `health` is
   * given, which checks every backend.
   */
  health: Health.optional(),
});

const Frontend = z.strictObject({
  name: name('frontend'),
  bind: z.array(hostPort('198.18.0.100:6379')).min(1, { error: 'must list at least one "VIP:port"' }),
  backend: name('backend'),
  /** Connections at once; more are refused (RST) until one ends. */
  maxconn: count(1, 1_000_000, 10_000),
});

const Timeouts = z.strictObject({
  connectMs: ms(10, 600_000, 5000),
  /** A client leg with nothing from the client this long is closed, with its server leg (0: never). */
  clientMs: ms(0, 86_400_000, 0),
  serverMs: ms(0, 86_400_000, 0),
});

/** The relay's own sections of the config. */
export const RelaySections = z.strictObject({
  source: z
    .array(z.string().refine((s) => ipFromString(s) !== undefined, { error: 'must be an IP address' }))
    .min(1, { error: 'must list the floating address(es) server legs leave from' }),
  frontends: z.array(Frontend).min(1, { error: 'must list at least one frontend' }),
  backends: z.array(Backend).min(1, { error: 'must list at least one backend' }),
  health: Health.optional(),
  timeouts: Timeouts.default({ connectMs: 5000, clientMs: 0, serverMs: 0 }),
});

export type RelaySectionsInput = z.input<typeof RelaySections>;
type Sections = z.output<typeof RelaySections>;
/** A backend's checks as they run: every field resolved. */
export interface HealthConfig {
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
  send?: string;
  expect?: string;
}
export type TimeoutsConfig = z.output<typeof Timeouts>;

/** A server as the relay uses it. */
export interface ServerConfig {
  name: string;
  host: IpAddr;
  port: number;
  weight: number;
  backup: boolean;
}

export interface BackendConfig {
  name: string;
  servers: ServerConfig[];
  balance: 'roundrobin' | 'leastconn' | 'source';
  retries: number;
  proxyProtocol: 'off' | 'v1' | 'v2';
  /** Undefined: its servers are not checked (always up). */
  health: HealthConfig | undefined;
}

export interface FrontendConfig {
  name: string;
  bind: { host: IpAddr; port: number }[];
  backend: string;
  maxconn: number;
}

export interface RelayConfig {
  /** The floating source addresses: one per family at most. */
  source: IpAddr[];
  frontends: FrontendConfig[];
  backends: BackendConfig[];
  timeouts: TimeoutsConfig;
}

/** A relay node: the node's config and the relay's. */
export interface RelayNodeConfig extends NodeConfig {
  relay: RelayConfig;
}

const RELAY_FIELDS = Object.keys(RelaySections.shape);

/** A relay node's whole config file: the node's fields (no `app`) and the relay's sections. */
export const RelayFile = BuiltinNodeSections.extend(RelaySections.shape);

/** The JSON Schema of a relay node's config file (`takeover config schema relay`), for editors. */
export function relayJsonSchema(): unknown {
  return z.toJSONSchema(RelayFile, { io: 'input' });
}

/** What the rules across fields look at, taken leniently from the raw sections (what is there). */
interface Loose {
  source: string[];
  frontends: { name?: string; bind: string[]; backend?: string }[];
  backends: { name?: string; servers: { name?: string; address?: string }[] }[];
}

function loose(raw: Record<string, unknown>): Loose {
  const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const obj = (v: unknown): Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  return {
    source: arr(raw.source).map((x) => str(x) ?? ''),
    frontends: arr(raw.frontends).map((f) => ({
      name: str(obj(f).name),
      bind: arr(obj(f).bind).map((x) => str(x) ?? ''),
      backend: str(obj(f).backend),
    })),
    backends: arr(raw.backends).map((b) => ({
      name: str(obj(b).name),
      servers: arr(obj(b).servers).map((x) => ({ name: str(obj(x).name), address: str(obj(x).address) })),
    })),
  };
}

/**
 * The rules across fields (a bind or source on a virtual address, nothing bound twice, names
 * unique, every backend named exists, a source for each server's family), on whatever parses,
 * so that they are reported with the schema's own errors.
 */
function crossCheck(s: Loose, vip: NodeConfig['vip'] | undefined): string[] {
  const errors: string[] = [];
  const fail = (field: string, text: string) => errors.push(`config field "${field}": ${text}.`);
  const vipKeys = new Set((vip ?? []).map((c) => ipKey(c.address)));
  const source: IpAddr[] = [];
  s.source.forEach((a, i) => {
    const ip = ipFromString(a);
    if (ip === undefined) return;
    if (vip && !vipKeys.has(ipKey(ip)))
      fail(
        `source[${i}]`,
        `${a} is not one of "vip": server legs leave from an address the pair moves at a take-over; add "${a}/<prefix>" to "vip"`,
      );
    if (source.some((x) => isV4(x) === isV4(ip)))
      fail(`source[${i}]`, `a second ${isV4(ip) ? 'IPv4' : 'IPv6'} address; give one per family`);
    else source.push(ip);
  });
  const names = (list: { name?: string }[], what: string) => {
    const seen = new Map<string, number>();
    list.forEach((x, i) => {
      if (x.name === undefined) return;
      const j = seen.get(x.name);
      if (j !== undefined)
        fail(`${what}[${i}].name`, `"${x.name}" is also ${what}[${j}]'s name; names must differ`);
      else seen.set(x.name, i);
    });
  };
  names(s.frontends, 'frontends');
  names(s.backends, 'backends');
  const backendNames = s.backends.flatMap((b) => (b.name === undefined ? [] : [b.name]));
  const binds = new Map<string, string>();
  s.frontends.forEach((f, i) => {
    if (f.backend !== undefined && !backendNames.includes(f.backend))
      fail(
        `frontends[${i}].backend`,
        `no backend is named "${f.backend}"; ${backendNames.length > 0 ? `the backends are ${backendNames.map((b) => `"${b}"`).join(', ')}` : 'define it under "backends"'}`,
      );
    f.bind.forEach((text, j) => {
      const hp = parseHostPort(text);
      if (!hp) return;
      const field = `frontends[${i}].bind[${j}]`;
      const key = `${ipKey(hp.host)}|${hp.port}`;
      const other = binds.get(key);
      if (other !== undefined)
        fail(field, `${text} is bound already by ${other}; bind each address and port once`);
      else binds.set(key, field);
      if (vip && !vipKeys.has(ipKey(hp.host)))
        fail(field, `${ipToString(hp.host)} is not one of "vip": a frontend listens on a virtual address`);
    });
  });
  s.backends.forEach((b, i) => {
    const seen = new Set<string>();
    b.servers.forEach((sv, j) => {
      const hp = sv.address === undefined ? undefined : parseHostPort(sv.address);
      if (hp && s.source.length > 0 && !source.some((x) => isV4(x) === isV4(hp.host)))
        fail(
          `backends[${i}].servers[${j}].address`,
          `no "source" address of the ${isV4(hp.host) ? 'IPv4' : 'IPv6'} family to reach ${sv.address} from; add one to "source" (and "vip")`,
        );
      if (sv.name === undefined) return;
      if (seen.has(sv.name))
        fail(
          `backends[${i}].servers[${j}].name`,
          `"${sv.name}" names two servers of this backend; names must differ`,
        );
      seen.add(sv.name);
    });
  });
  return errors;
}

/** The relay's config as it runs, from sections that passed every check. */
function build(s: Sections): RelayConfig {
  const source: IpAddr[] = [];
  for (const a of s.source) {
    const ip = ipFromString(a)!;
    if (!source.some((x) => isV4(x) === isV4(ip))) source.push(ip);
  }
  return {
    source,
    frontends: s.frontends.map((f) => ({
      name: f.name,
      bind: f.bind.map((b) => parseHostPort(b)!),
      backend: f.backend,
      maxconn: f.maxconn,
    })),
    backends: s.backends.map((b) => ({
      name: b.name,
      servers: b.servers.map((sv) => {
        const hp = parseHostPort(sv.address)!;
        return { name: sv.name, host: hp.host, port: hp.port, weight: sv.weight, backup: sv.backup };
      }),
      balance: b.balance,
      retries: b.retries,
      proxyProtocol: b.proxyProtocol,
      health:
        b.health === undefined && s.health === undefined
          ? undefined
          : { ...HEALTH_DEFAULTS, ...stripUndefined(s.health ?? {}), ...stripUndefined(b.health ?? {}) },
    })),
    timeouts: s.timeouts,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Validates parsed JSON: the node's fields (relative paths from `configDir`) and the relay's.
 * Never throws; every problem in one ConfigError.
 */
export function parseRelayConfig(raw: unknown, configDir: string): RelayNodeConfig | ConfigError {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return new ConfigError([
      "config: the file must hold one JSON object with the relay node's fields. Start from `takeover relay --example-config`",
    ]);
  const obj = raw as Record<string, unknown>;
  const nodePart: Record<string, unknown> = {};
  const relayPart: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) (RELAY_FIELDS.includes(k) ? relayPart : nodePart)[k] = v;
  const node = parseNodeConfig(nodePart, configDir, { builtinApp: 'relay' });
  const errors = node instanceof ConfigError ? [...node.errors] : [];
  const r = RelaySections.safeParse(relayPart);
  if (!r.success) errors.push(...issuesToErrors(RelaySections, r.error.issues));
  errors.push(...crossCheck(loose(relayPart), node instanceof ConfigError ? undefined : node.vip));
  if (errors.length > 0 || node instanceof ConfigError || !r.success) return new ConfigError(errors);
  return { ...node, relay: build(r.data) };
}

/** Reads and validates a relay config file; errors are headed by the file's path. */
export function loadRelayConfig(path: string): RelayNodeConfig | ConfigError {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return new ConfigError(
      [`cannot read the config file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`],
      path,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return new ConfigError([`not valid JSON: ${(e as Error).message}`], path);
  }
  const c = parseRelayConfig(raw, dirname(resolve(path)));
  return c instanceof ConfigError ? new ConfigError(c.errors, path) : c;
}
