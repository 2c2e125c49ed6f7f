/**
 * HTTP/1.1 server (port 80 by default): `GET /bytes/<n>` answers n bytes of a deterministic
 * pattern (`curl http://<vip>/bytes/100000000 | sha256sum`), anything else 404; keep-alive. The
 * response in progress is checkpointed, so a download survives a take-over mid-body. A request
 * head longer than 16 KiB is answered 431 and the connection closed (a client cannot make it
 * buffer without bound); a client's reset only ends its own connection ('error' listener).
 */
import type { NetApi, Socket } from '../src/api/index.ts';
import { fillPattern } from '../src/link/sim/pattern.ts';

export const HTTP_PATTERN = 80;
const CHUNK = 64 * 1024;
/** Longest request head (node:http's default --max-http-header-size). */
const MAX_HEAD = 16 * 1024;

interface Body {
  /** Write offset where the body starts, and its length. */
  start: number;
  size: number;
}

function serve(s: Socket, resumed: Body | undefined, pending: string): void {
  let buf = pending;
  let busy = false;
  const sendBody = (b: Body) => {
    busy = true;
    s.pause();
    let mark = s.bytesWritten;
    const more = (): void => {
      for (;;) {
        const at = s.bytesWritten + s.writableLength - b.start;
        if (at >= b.size) break;
        const chunk = Buffer.allocUnsafe(Math.min(CHUNK, b.size - at));
        fillPattern(HTTP_PATTERN, at, chunk);
        const ok = s.write(chunk);
        if (s.bytesWritten - mark >= 1 << 20) {
          s.checkpoint({ body: b, pending: buf });
          mark = s.bytesWritten;
        }
        if (!ok) return void s.once('drain', more);
      }
      busy = false;
      s.checkpoint({ pending: buf });
      s.resume();
      next();
    };
    more();
  };
  const next = (): void => {
    if (busy) return;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0 && buf.length > MAX_HEAD) {
      s.end('HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      s.removeAllListeners('data');
      buf = '';
      return;
    }
    if (end < 0) return;
    const head = buf.slice(0, end);
    buf = buf.slice(end + 4);
    const m = /^GET \/bytes\/(\d{1,12}) HTTP\/1\.[01]\r?$/m.exec(head.split('\n')[0] ?? '');
    if (!m) {
      s.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      s.checkpoint({ pending: buf });
      next();
      return;
    }
    const size = Number(m[1]);
    s.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${size}\r\n\r\n`);
    const body = { start: s.bytesWritten, size };
    s.checkpoint({ body, pending: buf });
    sendBody(body);
  };
  s.on('error', () => {});
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    next();
  });
  if (resumed) sendBody(resumed);
}

export default function http(net: NetApi, options: { port?: number }): void {
  net
    .createServer((s) => {
      const cp = s.lastCheckpoint as { body?: Body; pending?: string } | undefined;
      serve(s, s.restored ? cp?.body : undefined, (s.restored && cp?.pending) || '');
    })
    .listen(options.port ?? 80);
}
