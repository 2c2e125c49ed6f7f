/**
 * An application module for the isolation tests (`takeover node` hosts it; the unit tests run
 * it on the in-memory pair). Three services on the node:net shape:
 *
 *   7  the echo example (examples/echo.ts: an 'error' listener, as good node:net code has)
 *   8  a careless echo: `s.pipe(s)` with no 'error' listener, as examples/echo.ts was when a
 *      client's RST took the node down (issue 12)
 *   9  a line protocol whose requests can make the application fail, for one connection:
 *        echo <text>   answers <text>
 *        throw         throws in the 'data' handler
 *        later <ms>    accepts the request (checkpoints it as pending, as an application that
 *                      answers after an asynchronous step must), then throws in a timer <ms>
 *                      later: a poison pill. A socket restored by a take-over runs its pending
 *                      request again, so it throws again on the new active.
 *        reject <ms>   the same from an async function: an unhandled rejection
 *      anything else is answered `?`; a line longer than 1 KiB closes the connection.
 */

import echo from '../../../examples/echo.ts';
import type { NetApi, Socket } from '../../../src/api/index.ts';

const MAX_LINE = 1024;

function request(s: Socket, line: string): void {
  const sp = line.indexOf(' ');
  const verb = sp < 0 ? line : line.slice(0, sp);
  const arg = sp < 0 ? '' : line.slice(sp + 1);
  const ms = Math.min(60_000, Math.max(0, Number(arg) || 0));
  switch (verb) {
    case 'echo':
      s.write(`${arg}\n`);
      return;
    case 'throw':
      throw new Error(`poison request '${line}'`);
    case 'later':
      s.checkpoint({ pending: line });
      setTimeout(() => {
        throw new Error(`poison request '${line}', ${ms} ms later`);
      }, ms);
      return;
    case 'reject':
      s.checkpoint({ pending: line });
      void (async () => {
        await new Promise((r) => setTimeout(r, ms));
        throw new Error(`poison request '${line}', rejected ${ms} ms later`);
      })();
      return;
    default:
      s.write('?\n');
  }
}

function requests(s: Socket): void {
  s.on('error', () => {});
  const cp = s.lastCheckpoint as { pending?: string } | undefined;
  let buf = '';
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      request(s, line);
    }
    if (buf.length > MAX_LINE) s.destroy();
  });
  // Restored by a take-over with a request accepted and not answered: run it again.
  if (s.restored && typeof cp?.pending === 'string') request(s, cp.pending);
}

export default function isolationApp(net: NetApi, options: { port?: number } = {}): void {
  const base = options.port ?? 7;
  echo(net, { port: base });
  net.createServer((s) => s.pipe(s)).listen(base + 1);
  net.createServer(requests).listen(base + 2);
}
