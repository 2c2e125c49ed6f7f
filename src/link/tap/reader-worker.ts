/**
 * The reader thread of a TAP device: blocking reads off the event loop, frames handed over in
 * batches.
 *
 * Plain JavaScript run with `new Worker(source, { eval: true })`: a worker does not inherit the
 * parent's TypeScript loader on Node 20, and the loop is short. It reads the non-blocking TAP fd
 * until it would block (EAGAIN), then posts what it has and sleeps in poll() on the TAP fd and an
 * eventfd that `close()` signals. A batch also leaves when it is full, so under load the main
 * thread gets frames every `maxFrames` frames or ~`batchBytes` bytes, whichever comes first.
 *
 * Batch layout (a fresh ArrayBuffer per batch, transferred to the main thread):
 * u32 frame count, u32 frames dropped since the last batch, then per frame u32 length, the
 * `vnetHdr` bytes of virtio-net header the read began with (kept: skipping them costs a copy),
 * then the frame (little-endian).
 *
 * Shared control words (Int32Array over a SharedArrayBuffer): [CTL_STOP] set to 1 to stop;
 * [CTL_PENDING] bytes posted in batches not yet consumed. The worker stops reading when
 * `maxPending` bytes wait (backpressure: the kernel queue then fills and the kernel drops,
 * counted in the interface's TX dropped), until the main thread consumes one.
 */

export const CTL_STOP = 0;
export const CTL_PENDING = 1;
export const BATCH_HEADER = 8;

export interface ReaderWorkerData {
  koffiPath: string;
  fd: number;
  wakeFd: number;
  ctl: SharedArrayBuffer;
  /** Read size: the longest frame accepted; a read that fills it is counted as truncated. */
  readMax: number;
  batchBytes: number;
  maxFrames: number;
  /** Bytes handed over and not yet consumed before the reader pauses. */
  maxPending: number;
  /** Length of the virtio-net header each read starts with (0 without IFF_VNET_HDR). */
  vnetHdr: number;
}

/** Messages other than batches. */
export type ReaderMessage = { kind: 'ready' } | { kind: 'error'; errno: number };

export const READER_WORKER_SOURCE = `'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const koffi = require(workerData.koffiPath);
const lib = koffi.load('libc.so.6');
// Reads go straight into native memory by address: koffi passes a number far cheaper than a
// typed array (~0.4 us a call), and the batch is copied out once when it leaves.
const read = lib.func('long read(int fd, uintptr_t buf, unsigned long n)');
const poll = lib.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)');
const { fd, wakeFd, readMax, batchBytes, maxFrames, maxPending, vnetHdr } = workerData;
const ctl = new Int32Array(workerData.ctl);
const EINTR = 4, EAGAIN = 11, POLLIN = 1;
const pfds = new Uint8Array(16);
const pv = new DataView(pfds.buffer);
pv.setInt32(0, fd, true); pv.setInt16(4, POLLIN, true);
pv.setInt32(8, wakeFd, true); pv.setInt16(12, POLLIN, true);
const mem = koffi.alloc('uint8_t', batchBytes);
const base = Number(koffi.address(mem));
const u8 = new Uint8Array(koffi.view(mem, batchBytes));
const dv = new DataView(u8.buffer);
let used = ${BATCH_HEADER}, count = 0, drops = 0;
function post() {
  dv.setUint32(0, count, true);
  dv.setUint32(4, drops, true);
  Atomics.add(ctl, ${CTL_PENDING}, used);
  const out = u8.slice(0, used).buffer;
  parentPort.postMessage(out, [out]);
  used = ${BATCH_HEADER}; count = 0; drops = 0;
}
parentPort.postMessage({ kind: 'ready' });
while (Atomics.load(ctl, ${CTL_STOP}) === 0) {
  const pending = Atomics.load(ctl, ${CTL_PENDING});
  if (pending >= maxPending) { Atomics.wait(ctl, ${CTL_PENDING}, pending, 100); continue; }
  const n = read(fd, base + used + 4, readMax + vnetHdr);
  if (n > 0) {
    if (n >= readMax + vnetHdr || n < vnetHdr) drops++;
    else { dv.setUint32(used, n - vnetHdr, true); used += 4 + n; count++; }
    if (count >= maxFrames || batchBytes - used < readMax + vnetHdr + 4) post();
    continue;
  }
  if (n < 0) {
    const e = koffi.errno();
    if (e === EINTR) continue;
    if (e !== EAGAIN) { if (count > 0 || drops > 0) post(); parentPort.postMessage({ kind: 'error', errno: e }); break; }
  }
  if (count > 0 || drops > 0) post();
  poll(pfds, 2, 1000);
}
koffi.free(mem);
`;
