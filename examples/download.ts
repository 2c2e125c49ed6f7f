/**
 * Bulk download (port 19 by default): a client sends a size in decimal and a newline, the server
 * streams that many bytes of a deterministic pattern, then closes. The size is checkpointed
 * (every MiB too), so a restored socket resumes where the stream stood. A request line longer
 * than a size can be, or not a size, is answered `bad size` (a client cannot make it buffer
 * without bound); a client's reset only ends its own connection ('error' listener).
 */
import type { NetApi, Socket } from '../src/api/index.ts';
import { fillPattern } from '../src/link/sim/pattern.ts';

export const DOWNLOAD_PATTERN = 19;
const CHUNK = 64 * 1024;
/** Longest request line: a safe integer has 16 digits; some room for spaces and a CR. */
const MAX_LINE = 32;

function stream(s: Socket, size: number): void {
  let lastCheckpoint = s.bytesWritten;
  const more = (): void => {
    while (s.bytesWritten + s.writableLength < size) {
      const at = s.bytesWritten + s.writableLength;
      const chunk = Buffer.allocUnsafe(Math.min(CHUNK, size - at));
      fillPattern(DOWNLOAD_PATTERN, at, chunk);
      const ok = s.write(chunk);
      if (at - lastCheckpoint >= 1 << 20) {
        s.checkpoint({ size });
        lastCheckpoint = at;
      }
      if (!ok) return void s.once('drain', more);
    }
    s.end();
  };
  more();
}

export default function download(net: NetApi, options: { port?: number }): void {
  net
    .createServer((s) => {
      s.on('error', () => {});
      const cp = s.lastCheckpoint as { size?: number } | undefined;
      if (s.restored && typeof cp?.size === 'number') return stream(s, cp.size);
      let line = '';
      const onData = (d: Buffer) => {
        line += d.toString('latin1');
        const nl = line.indexOf('\n');
        if (nl < 0 && line.length <= MAX_LINE) return;
        s.off('data', onData);
        if (nl < 0 || nl > MAX_LINE) return void s.end('bad size\n');
        const size = Number(line.slice(0, nl));
        if (!Number.isSafeInteger(size) || size < 0) return void s.end('bad size\n');
        s.checkpoint({ size });
        stream(s, size);
      };
      s.on('data', onData);
    })
    .listen(options.port ?? 19);
}
