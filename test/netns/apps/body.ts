/**
 * The test body: byte i is (i * 7 + (i >> 16)) & 255, cheap to make (a copy from one of 256
 * cached 64 KiB blocks) and to hash on both sides.
 */
const PERIOD = 1 << 16;
const blocks: Uint8Array[] = [];

function block(b: number): Uint8Array {
  let t = blocks[b];
  if (!t) {
    t = new Uint8Array(PERIOD);
    for (let i = 0; i < PERIOD; i++) t[i] = (i * 7 + b) & 255;
    blocks[b] = t;
  }
  return t;
}

export function bodyChunk(from: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let done = 0; done < n; ) {
    const i = from + done;
    const o = i % PERIOD;
    const len = Math.min(n - done, PERIOD - o);
    out.set(block(Math.floor(i / PERIOD) & 255).subarray(o, o + len), done);
    done += len;
  }
  return out;
}
