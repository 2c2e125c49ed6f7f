/**
 * A Linux TAP device (Documentation/networking/tuntap.rst) as a LinkDevice: every Ethernet frame
 * the kernel sends out of the interface is read here, every frame written here is received by the
 * kernel as if it came off a wire.
 *
 * Reads run on a worker thread (reader-worker.ts) so they never stall the event loop and arrive
 * in batches; writes are queued by `send` and written by `flush` (one write(2) per frame: a TAP
 * takes exactly one frame per write) at the end of the turn.
 *
 * Batches are handed to the handler paced (`DELIVER_BUDGET_MS` of them per event-loop iteration,
 * in the check phase), not as they arrive: Node drains up to a thousand worker messages in one
 * callback, and under a flood that ran the stack for over half a second with no timer and no
 * socket read in between (the replication link's acknowledgments waited, the standby was judged
 * silent and dropped). Batches not yet handed over still count against the reader's
 * `maxPendingBytes`, so a slow consumer backs the flood up into the kernel's queue.
 *
 * With `offload` (the default) the device is opened with IFF_VNET_HDR: every read and write
 * carries a virtio_net_hdr, and a TCP frame of up to 64 KiB may be written with a segment size
 * for the kernel to cut (GSO, as a VM's virtio-net does): one write(2) and one pass through the
 * bridge for ~44 segments. Reads stay plain frames (TUNSETOFFLOAD is never set, so the kernel
 * segments and checksums everything it hands us).
 *
 * This is the driver edge: the only place in the stack that reads a real clock (pcap timestamps).
 */
import { Worker } from 'node:worker_threads';
import { CONTROL_ETHERTYPE, type LinkDevice } from '../device.ts';
import type { PcapWriter } from '../pcap.ts';
import { invalidNameMessage, openErrorMessage, TapError, type TapStep } from './errors.ts';
import {
  AF_INET,
  CLONE_NEWNET,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  errnoName,
  IFF_NO_PI,
  IFF_TAP,
  IFF_VNET_HDR,
  IFNAMSIZ,
  IFREQ_SIZE,
  koffiPath,
  type Libc,
  loadLibc,
  type NativeBuffer,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  SIOCGIFMTU,
  SIOCSIFMTU,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  TUNSETIFF,
} from './ffi.ts';
import {
  BATCH_HEADER,
  CTL_PENDING,
  CTL_STOP,
  READER_WORKER_SOURCE,
  type ReaderMessage,
  type ReaderWorkerData,
} from './reader-worker.ts';

export interface TapOptions {
  /** Interface name (at most 15 bytes). Created when missing; a persistent TAP of that name is attached. */
  name: string;
  /** Sets the interface MTU; without it the current MTU (1500 for a new TAP) is used. */
  mtu?: number;
  /** Every frame read and written is appended here, stamped with the wall clock. The caller closes it. */
  pcap?: PcapWriter;
  /**
   * Open the TAP inside this named network namespace (/run/netns/NAME, as `ip netns add` makes).
   * Only the main thread enters it, for the duration of the synchronous open.
   */
  netns?: string;
  /** Reader batch size in bytes (default 512 KiB) and frames (default 1024). */
  batchBytes?: number;
  batchFrames?: number;
  /** Bytes read and not yet delivered before the reader pauses (default 32 MiB). */
  maxPendingBytes?: number;
  /** Open with IFF_VNET_HDR so `send` takes GSO frames (default true). */
  offload?: boolean;
}

export interface TapCounters {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Frames refused by `send` (too short, too long, device closed), failed writes, truncated reads. */
  drops: number;
  /** Frames not written because `writeGuard` said no (the lease had run out). */
  fenced: number;
}

/** Longest frame read: more than any MTU a TAP takes (65521) plus Ethernet and two VLAN tags. */
const READ_MAX = 65536 + 64;
/** Ethernet header plus two VLAN tags: what a frame may carry beyond the MTU. */
const L2_OVERHEAD = 14 + 8;
const ETH_MIN = 14;
const TX_BYTES = 512 * 1024;
/** struct virtio_net_hdr (include/uapi/linux/virtio_net.h), little-endian on a TAP by default. */
const VNET_HDR = 10;
const VNET_F_NEEDS_CSUM = 1;
const VNET_GSO_TCPV4 = 1;
const VNET_GSO_TCPV6 = 4;
/** Largest GSO frame: a 64 KiB IP packet plus its Ethernet header. */
const GSO_MAX_FRAME = 65535 + 14;
const TX_FRAMES = 1024;
const WORKER_READY_MS = 10_000;
/**
 * Longest run (ms) of batch deliveries in one event-loop iteration (at least one batch each):
 * then timers and I/O (the replication link, the status socket) have their turn.
 */
const DELIVER_BUDGET_MS = 4;
const WORKER_STOP_MS = 2_000;

/** Wall clock in microseconds since the epoch, for capture timestamps. */
function wallUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

export class TapDevice implements LinkDevice {
  /** The interface name the kernel gave (as asked, or what a `%d` pattern became). */
  readonly name: string;
  readonly mtu: number;
  readonly counters: Readonly<TapCounters>;
  /** See LinkDevice.gsoMaxFrame: set when opened with `offload`. */
  readonly gsoMaxFrame: number | undefined;
  /**
   * Errno name of the last failed write, or why the reader stopped (then no more frames arrive);
   * undefined while all is well.
   */
  lastError: string | undefined;

  private readonly c: Libc;
  private fd: number;
  private readonly wakeFd: number;
  private readonly worker: Worker;
  private readonly ctl: Int32Array;
  private readonly pcap: PcapWriter | undefined;
  private readonly stats: TapCounters = {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    drops: 0,
    fenced: 0,
  };
  private handler: ((frames: Uint8Array[]) => void) | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Native memory: frames are written from it by address (see Libc.writeAt). */
  private readonly txMem: NativeBuffer;
  private txBuf: Uint8Array;
  private readonly txLen = new Uint32Array(TX_FRAMES);
  private txCount = 0;
  private txUsed = 0;
  private flushQueued = false;
  /** Batches received from the reader and not yet handed to the handler (see module comment). */
  private readonly inbox: ArrayBuffer[] = [];
  private delivering: NodeJS.Immediate | undefined;
  private readonly deliver = (): void => {
    this.delivering = undefined;
    const until = performance.now() + DELIVER_BUDGET_MS;
    try {
      do {
        const m = this.inbox.shift();
        if (m === undefined || this.closed) break;
        this.deliverBatch(m);
      } while (this.inbox.length > 0 && performance.now() < until);
    } finally {
      // Even when the handler threw (the process guard decides what that means): the rest waits.
      if (this.inbox.length > 0 && !this.closed) this.delivering = setImmediate(this.deliver);
    }
  };
  private readonly autoFlush = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  private constructor(
    c: Libc,
    fd: number,
    wakeFd: number,
    name: string,
    mtu: number,
    worker: Worker,
    ctl: Int32Array,
    pcap: PcapWriter | undefined,
    private readonly vnet: number,
  ) {
    this.c = c;
    this.gsoMaxFrame = vnet > 0 ? GSO_MAX_FRAME : undefined;
    this.fd = fd;
    this.wakeFd = wakeFd;
    this.name = name;
    this.mtu = mtu;
    this.worker = worker;
    this.ctl = ctl;
    this.pcap = pcap;
    this.counters = this.stats;
    this.txMem = c.alloc(TX_BYTES);
    this.txBuf = this.txMem.bytes;
    worker.on('message', (m: ArrayBuffer | ReaderMessage) => this.onWorkerMessage(m));
    // A reader that dies stops input; the device reports it rather than crashing the process.
    worker.on('error', (e) => {
      this.lastError = `reader thread failed: ${e.message}`;
    });
    worker.on('exit', () => {
      if (!this.closed) this.lastError ??= 'reader thread exited';
    });
  }

  /**
   * Opens (creating it if missing) the TAP device `name`. Rejects with a TapError whose message
   * says what to do (no CAP_NET_ADMIN, device busy, not a TAP, ...).
   */
  static async open(opts: TapOptions): Promise<TapDevice> {
    const bad = invalidNameMessage(opts.name);
    if (bad) throw new TapError(bad, undefined);
    if (opts.mtu !== undefined && !(Number.isInteger(opts.mtu) && opts.mtu >= 68 && opts.mtu <= 65521))
      throw new TapError(
        `MTU ${opts.mtu} for TAP device ${opts.name} is invalid: use an integer from 68 to 65521.`,
        undefined,
      );
    let c: Libc;
    try {
      c = loadLibc();
    } catch (e) {
      throw new TapError(
        `Loading libc through koffi failed (${(e as Error).message}): TAP devices need Linux with glibc and the koffi package installed.`,
        undefined,
      );
    }
    const vnet = opts.offload === false ? 0 : VNET_HDR;
    const { fd, name, mtu } = inNetns(c, opts.name, opts.netns, () =>
      openTap(c, opts.name, opts.mtu, vnet > 0),
    );
    const fail = (step: TapStep, errno: number): never => {
      c.close(fd);
      throw new TapError(openErrorMessage(name, step, errno), errnoName(errno));
    };
    const wakeFd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wakeFd < 0) fail('eventfd', c.errno());

    const ctl = new Int32Array(new SharedArrayBuffer(8));
    const batchBytes = Math.max(opts.batchBytes ?? 512 * 1024, READ_MAX * 2 + BATCH_HEADER);
    const data: ReaderWorkerData = {
      koffiPath: koffiPath(),
      fd,
      wakeFd,
      ctl: ctl.buffer as SharedArrayBuffer,
      readMax: READ_MAX,
      batchBytes,
      maxFrames: Math.max(1, opts.batchFrames ?? 1024),
      maxPending: Math.min(Math.max(1, opts.maxPendingBytes ?? 32 * 1024 * 1024), 0x7fffffff - batchBytes),
      vnetHdr: vnet,
    };
    const worker = new Worker(READER_WORKER_SOURCE, { eval: true, workerData: data, name: `tap ${name}` });
    try {
      await workerReady(worker);
    } catch (e) {
      await worker.terminate();
      c.close(wakeFd);
      c.close(fd);
      throw new TapError(
        `Starting the reader thread of TAP device ${name} failed (${(e as Error).message}): check that koffi loads in worker threads.`,
        undefined,
      );
    }
    return new TapDevice(c, fd, wakeFd, name, mtu, worker, ctl, opts.pcap, vnet);
  }

  /**
   * See LinkDevice.send. Frames shorter than an Ethernet header or longer than MTU + 22 are
   * dropped, and so are GSO frames (`segmentSize` set) on a device without offload, longer than
   * `gsoMaxFrame`, or not plain TCP over IPv4/IPv6.
   */
  send(frame: Uint8Array, segmentSize?: number): void {
    const n = frame.length;
    const h = this.vnet;
    const gso = segmentSize !== undefined;
    if (
      this.closed ||
      n < ETH_MIN ||
      n > (gso ? GSO_MAX_FRAME : this.mtu + L2_OVERHEAD) ||
      (gso && (h === 0 || !(segmentSize > 0)))
    ) {
      this.stats.drops++;
      return;
    }
    if (this.txCount === TX_FRAMES || this.txUsed + h + n > TX_BYTES) this.flush();
    const at = this.txUsed;
    const b = this.txBuf;
    if (h > 0) {
      b.fill(0, at, at + h);
      if (gso && !gsoHeader(frame, segmentSize, b, at)) {
        this.stats.drops++;
        return;
      }
    }
    b.set(frame, at + h);
    this.txLen[this.txCount++] = h + n;
    this.txUsed += h + n;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.autoFlush);
    }
  }

  /**
   * Asked before every write(2) of a frame that is not a control frame (CONTROL_ETHERTYPE):
   * false drops it (counted in `fenced`). The HA layer's lease check, made as late as user space
   * can make it: a process paused between `send` and `flush` finds its lease expired when it
   * resumes.
   */
  writeGuard: (() => boolean) | undefined;

  /** Writes every queued frame now: one write(2) each. A failed write is counted in `drops`. */
  flush(): void {
    const count = this.txCount;
    if (count === 0) return;
    const { c, fd, stats, pcap, vnet } = this;
    const addr = this.txMem.address;
    const ts = pcap ? wallUs() : 0;
    const guard = this.writeGuard;
    let off = 0;
    for (let i = 0; i < count; i++) {
      const n = this.txLen[i];
      const b = this.txBuf;
      const et = (b[off + vnet + 12] << 8) | b[off + vnet + 13];
      if (guard && et !== CONTROL_ETHERTYPE && !guard()) {
        stats.fenced++;
        off += n;
        continue;
      }
      if (c.writeAt(fd, addr + off, n) === n) {
        stats.framesOut++;
        stats.bytesOut += n - vnet;
        pcap?.write(ts, this.txBuf.subarray(off + vnet, off + n));
      } else {
        // EIO while the interface is down, EINVAL for a frame the kernel refuses: the frame is lost.
        stats.drops++;
        this.lastError = errnoName(c.errno());
      }
      off += n;
    }
    this.txCount = 0;
    this.txUsed = 0;
  }

  /**
   * See LinkDevice.onReceive. The frames of one batch are views of one ArrayBuffer that nothing
   * else uses: keeping a frame keeps its batch (up to `batchBytes`) alive, so copy what is kept long.
   * Frames read while no handler is registered are counted as drops.
   */
  onReceive(handler: (frames: Uint8Array[]) => void): void {
    this.handler = handler;
  }

  /** Lets the process exit while the device is open (the reader thread no longer keeps it alive). */
  unref(): void {
    this.worker.unref();
  }

  ref(): void {
    this.worker.ref();
  }

  /**
   * Flushes what `send` queued, stops the reader thread and closes the device. A non-persistent
   * TAP disappears with it; a persistent one (`ip tuntap add`) stays.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.flush();
    this.closed = true;
    this.handler = undefined;
    if (this.delivering) clearImmediate(this.delivering);
    this.delivering = undefined;
    for (const m of this.inbox.splice(0)) this.release(this.framesOf(m).used);
    Atomics.store(this.ctl, CTL_STOP, 1);
    Atomics.notify(this.ctl, CTL_PENDING);
    const one = new Uint8Array(8);
    one[0] = 1;
    this.c.write(this.wakeFd, one, 8);
    this.closing = (async () => {
      const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), WORKER_STOP_MS);
      });
      // The reader wakes within one poll; if it is stuck anyway, terminate it.
      if ((await Promise.race([exited, late])) === 'late') await this.worker.terminate();
      clearTimeout(timer);
      this.c.close(this.wakeFd);
      this.c.close(this.fd);
      this.fd = -1;
      this.txBuf = new Uint8Array(0);
      this.c.free(this.txMem);
    })();
    return this.closing;
  }

  private onWorkerMessage(m: ArrayBuffer | ReaderMessage): void {
    if (!(m instanceof ArrayBuffer)) {
      if (m.kind === 'error') this.lastError = errnoName(m.errno);
      return;
    }
    if (this.closed) {
      this.release(this.framesOf(m).used);
      return;
    }
    this.inbox.push(m);
    this.delivering ??= setImmediate(this.deliver);
  }

  /** Gives a batch's bytes back to the reader's pending count; returns the frame count. */
  /** Gives a batch's bytes back to the reader's pending count (`used`: the batch's used length). */
  private release(used: number): void {
    Atomics.sub(this.ctl, CTL_PENDING, used);
    Atomics.notify(this.ctl, CTL_PENDING);
  }

  /** Splits a batch into its frames; `used` is its used length, what the reader counted. */
  private framesOf(m: ArrayBuffer): { dv: DataView; frames: Uint8Array[]; used: number; bytes: number } {
    const dv = new DataView(m);
    const count = dv.getUint32(0, true);
    const frames: Uint8Array[] = new Array(count);
    const h = this.vnet;
    let off = BATCH_HEADER;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const n = dv.getUint32(off, true);
      frames[i] = new Uint8Array(m, off + 4 + h, n);
      off += 4 + h + n;
      bytes += n;
    }
    return { dv, frames, used: off, bytes };
  }

  private deliverBatch(m: ArrayBuffer): void {
    const { dv, frames, used, bytes } = this.framesOf(m);
    this.release(used);
    const count = frames.length;
    this.stats.drops += dv.getUint32(4, true);
    const handler = this.handler;
    if (!handler) {
      this.stats.drops += count;
      return;
    }
    this.stats.framesIn += count;
    this.stats.bytesIn += bytes;
    if (this.pcap) {
      const ts = wallUs();
      for (const f of frames) this.pcap.write(ts, f);
    }
    handler(frames);
  }
}

/**
 * Fills the virtio_net_hdr at b[at, at + 10) for a GSO frame (Ethernet, IPv4 without options or
 * IPv6 without extension headers, then TCP): the kernel checksums from the TCP header on and cuts
 * the payload into `segmentSize` pieces. False when the frame is not such a frame.
 */
function gsoHeader(frame: Uint8Array, segmentSize: number, b: Uint8Array, at: number): boolean {
  const etherType = (frame[12] << 8) | frame[13];
  let l4: number;
  let type: number;
  if (etherType === 0x0800 && frame[14] === 0x45 && frame[23] === 6) {
    l4 = 14 + 20;
    type = VNET_GSO_TCPV4;
  } else if (etherType === 0x86dd && frame[14] >> 4 === 6 && frame[20] === 6) {
    l4 = 14 + 40;
    type = VNET_GSO_TCPV6;
  } else return false;
  if (frame.length < l4 + 20) return false;
  const hdrLen = l4 + (frame[l4 + 12] >> 4) * 4;
  if (hdrLen > frame.length || segmentSize > 0xffff) return false;
  b[at] = VNET_F_NEEDS_CSUM;
  b[at + 1] = type;
  b[at + 2] = hdrLen & 0xff;
  b[at + 3] = hdrLen >> 8;
  b[at + 4] = segmentSize & 0xff;
  b[at + 5] = segmentSize >> 8;
  b[at + 6] = l4 & 0xff;
  b[at + 7] = l4 >> 8;
  b[at + 8] = 16; // csum_offset: the TCP checksum field
  b[at + 9] = 0;
  return true;
}

/**
 * open(/dev/net/tun) + TUNSETIFF(IFF_TAP | IFF_NO_PI [| IFF_VNET_HDR]), then the MTU.
 * Synchronous: runs inside `inNetns`.
 */
function openTap(
  c: Libc,
  name: string,
  mtu: number | undefined,
  vnet: boolean,
): { fd: number; name: string; mtu: number } {
  const fd = c.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const errno = c.errno();
    throw new TapError(openErrorMessage(name, 'open', errno), errnoName(errno));
  }
  const ifr = new Uint8Array(IFREQ_SIZE);
  const dv = new DataView(ifr.buffer);
  ifr.set(new TextEncoder().encode(name));
  dv.setInt16(IFNAMSIZ, IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0), true);
  if (c.ioctlPtr(fd, TUNSETIFF, ifr) < 0) {
    const errno = c.errno();
    c.close(fd);
    throw new TapError(openErrorMessage(name, 'attach', errno), errnoName(errno));
  }
  const end = ifr.indexOf(0);
  const actual = new TextDecoder().decode(ifr.subarray(0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end));
  // SIOC[GS]IFMTU take any socket of the namespace; the TAP fd does not answer them.
  const sock = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const mtuFail = (errno: number): never => {
    if (sock >= 0) c.close(sock);
    c.close(fd);
    throw new TapError(openErrorMessage(actual, 'mtu', errno, String(mtu)), errnoName(errno));
  };
  if (sock < 0) mtuFail(c.errno());
  const req = new Uint8Array(IFREQ_SIZE);
  const rv = new DataView(req.buffer);
  req.set(ifr.subarray(0, IFNAMSIZ));
  if (mtu !== undefined) {
    rv.setInt32(IFNAMSIZ, mtu, true);
    if (c.ioctlPtr(sock, SIOCSIFMTU, req) < 0) mtuFail(c.errno());
  }
  if (c.ioctlPtr(sock, SIOCGIFMTU, req) < 0) mtuFail(c.errno());
  c.close(sock);
  return { fd, name: actual, mtu: rv.getInt32(IFNAMSIZ, true) };
}

/**
 * Runs `fn` with the calling thread in network namespace `netns` (setns(2) on the main thread only;
 * the namespace is per thread), then returns the thread to its own namespace.
 */
function inNetns<T>(c: Libc, name: string, netns: string | undefined, fn: () => T): T {
  if (netns === undefined) return fn();
  const fail = (errno: number): never => {
    throw new TapError(openErrorMessage(name, 'netns', errno, netns), errnoName(errno));
  };
  if (netns === '' || netns.includes('/')) fail(2);
  const home = c.open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC);
  if (home < 0) fail(c.errno());
  const target = c.open(`/run/netns/${netns}`, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    const errno = c.errno();
    c.close(home);
    fail(errno);
  }
  if (c.setns(target, CLONE_NEWNET) < 0) {
    const errno = c.errno();
    c.close(target);
    c.close(home);
    fail(errno);
  }
  let result: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    result = { ok: true, value: fn() };
  } catch (error) {
    result = { ok: false, error };
  }
  const back = c.setns(home, CLONE_NEWNET);
  c.close(target);
  c.close(home);
  // Not recoverable: the main thread would stay in the wrong namespace.
  if (back < 0) throw new Error(`Returning from network namespace ${netns} failed: the process must exit.`);
  if (!result.ok) throw result.error;
  return result.value;
}

function workerReady(worker: Worker): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error('no answer in 10 s')), WORKER_READY_MS);
    const onMessage = (m: unknown) => {
      if (typeof m === 'object' && m !== null && (m as ReaderMessage).kind === 'ready') done();
    };
    const onError = (e: Error) => done(e);
    const onExit = (code: number) => done(new Error(`exited with code ${code}`));
    function done(e?: Error): void {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      if (e) reject(e);
      else resolve();
    }
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
