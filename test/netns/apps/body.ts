/** The HTTP test body: byte i is (i * 7 + (i >> 16)) & 255, cheap to make and to hash on both sides. */
const PERIOD = 1 << 16;
const base = new Uint8Array(PERIOD * 2);
for (let i = 0; i < base.length; i++) base[i] = (i * 7) & 255;

export function bodyChunk(from: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let done = 0; done < n; ) {
    const i = from + done;
    const block = Math.floor(i / PERIOD);
    const o = i % PERIOD;
    const len = Math.min(n - done, PERIOD - o);
    out.set(base.subarray(o, o + len), done);
    if ((block & 255) !== 0) for (let k = 0; k < len; k++) out[done + k] = (out[done + k] + block) & 255;
    done += len;
  }
  return out;
}
