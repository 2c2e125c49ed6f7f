/**
 * Echo server (port 7 by default): everything a client sends comes back. Plain node:net code;
 * a socket restored by a take-over is piped like any other (its unread bytes arrive again).
 * As in any node:net server, each socket has an 'error' listener: a client's reset
 * (ECONNRESET) ends that connection only; the stream is destroyed already, nothing to do.
 */
import type { NetApi } from '../src/api/index.ts';

export default function echo(net: NetApi, options: { port?: number }): void {
  net
    .createServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    })
    .listen(options.port ?? 7);
}
