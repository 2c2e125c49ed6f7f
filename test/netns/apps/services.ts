/**
 * The services the real-network tests and benchmarks run, written once against node:net's shape
 * so that the same code runs on the kernel (node:net) and on our stack (api/): that is the
 * baseline comparison, and the proof that only the import changes.
 *
 * Port 8080: HTTP (node:http over the sockets): GET /bytes/<n> answers n bytes of `bodyChunk`.
 * Port 7:    echo.
 * Port 9:    sink: answers "<bytes> <sha256>\n" when the peer ends.
 * Port 19:   source: reads a decimal byte count and a newline, sends that many body bytes, ends.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { Server as NodeServer, Socket as NodeSocket } from 'node:net';
import { bodyChunk } from './body.ts';

/** The part of node:net the services use (ours and node's both have it). */
export interface NetLike {
  createServer(listener: (s: NodeSocket) => void): NodeServer;
}

export function serveAll(net: NetLike, host?: string): void {
  const web = http.createServer((req, res) => {
    const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404).end('not found\n');
      return;
    }
    const total = Number(m[1]);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    stream(res, 0, total, () => res.end());
  });
  net.createServer((s) => web.emit('connection', s)).listen(8080, host);
  net.createServer((s) => s.pipe(s)).listen(7, host);
  net
    .createServer((s) => {
      const h = createHash('sha256');
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
        h.update(d);
      });
      s.on('end', () => s.end(`${n} ${h.digest('hex')}\n`));
    })
    .listen(9, host);
  net
    .createServer((s) => {
      let line = '';
      const onData = (d: Buffer) => {
        line += d.toString('latin1');
        const nl = line.indexOf('\n');
        if (nl < 0) return;
        s.off('data', onData);
        const total = Number(line.slice(0, nl));
        stream(s, 0, Number.isSafeInteger(total) && total >= 0 ? total : 0, () => s.end());
      };
      s.on('data', onData);
      s.on('error', () => {});
    })
    .listen(19, host);
}

/** Writes body bytes [from, to) with backpressure, then calls `done`. */
function stream(w: NodeJS.WritableStream, from: number, to: number, done: () => void): void {
  let at = from;
  const more = () => {
    while (at < to) {
      const chunk = bodyChunk(at, Math.min(65536, to - at));
      at += chunk.length;
      if (!w.write(chunk)) {
        w.once('drain', more);
        return;
      }
    }
    done();
  };
  more();
}
