/**
 * Starting the test apps (stack-server.ts, kernel-server.ts, stack-client.ts) in a namespace:
 * node with tsx, then, for servers, wait until the app prints `ready`, failing at once (with its
 * stderr) if it exits first.
 */
import { type Namespace, type Spawned, waitUntil } from '../harness.ts';

const dir = new URL('./', import.meta.url).pathname;

/** Spawns `node --import tsx apps/<script> ...args` in `ns`. */
export function launch(ns: Namespace, script: string, args: readonly string[] = []): Spawned {
  return ns.spawn(process.execPath, ['--import', 'tsx', `${dir}${script}`, ...args]);
}

/** Resolves once `p` printed `ready`; throws if it exits first or takes longer than `timeoutMs`. */
export function whenReady(p: Spawned, what: string, timeoutMs = 20_000): Promise<boolean> {
  return waitUntil(
    `${what} to be ready`,
    () => {
      if (p.exitCode !== null || p.signalCode !== null)
        throw new Error(`${what} exited: ${p.output().stderr.trim().slice(-800)}`);
      return p.output().stdout.includes('ready');
    },
    { timeoutMs, tries: Math.ceil(timeoutMs / 50) + 1, intervalMs: 50 },
  );
}

/** `launch`, then `whenReady`. */
export async function startApp(
  ns: Namespace,
  script: string,
  args: readonly string[],
  what: string,
): Promise<Spawned> {
  const p = launch(ns, script, args);
  await whenReady(p, what);
  return p;
}

/**
 * Starts redis-incr.ts in `ns` (stdin a pipe: it stops on `stop`) against `host`:6379, key `key`,
 * 8 connections with 16 commands in flight each; resolves once every connection is up.
 */
export async function startRedisIncr(ns: Namespace, host: string, key: string): Promise<Spawned> {
  const p = ns.spawn(
    process.execPath,
    ['--import', 'tsx', `${dir}redis-incr.ts`, host, '6379', key, '8', '16'],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  p.stdin?.on('error', () => {});
  await waitUntil('the INCR client to start', () => p.output().stdout.includes('started'), {
    timeoutMs: 20_000,
    tries: 400,
    intervalMs: 50,
  });
  return p;
}
