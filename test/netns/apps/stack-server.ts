/**
 * A server on our stack for the real-network tests, run in the switch namespace by
 * `TapHost.spawn`: it opens the TAP, serves, and prints `ready` once listening.
 *
 *   node --import tsx stack-server.ts <tap> <mac> <addr/prefix>...
 *
 * Port 8080: HTTP (node:http over our sockets): GET /bytes/<n> answers n bytes of `bodyByte`.
 * Port 7:    echo.
 * Port 9:    sink that answers with the number of bytes it got and their sha256 when the peer ends.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { netApi, openTapRuntime } from '../../../src/api/index.ts';
import { bodyChunk } from './body.ts';

const [tap, mac, ...addresses] = process.argv.slice(2);
const rt = await openTapRuntime({ tap, mac, addresses });
const net = netApi(rt);

const web = http.createServer((req, res) => {
  const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  if (!m) {
    res.writeHead(404).end('not found\n');
    return;
  }
  const total = Number(m[1]);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  let sent = 0;
  const more = () => {
    while (sent < total) {
      const chunk = bodyChunk(sent, Math.min(65536, total - sent));
      sent += chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', more);
        return;
      }
    }
    res.end();
  };
  more();
});
net.createServer((s) => web.emit('connection', s)).listen(8080);
net.createServer((s) => s.pipe(s)).listen(7);
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
  .listen(9);

process.on('SIGTERM', () => {
  void rt.close().then(() => process.exit(0));
});
setTimeout(() => console.log('ready'), 50);
