/**
 * A kernel-enforced send deadline for a TAP device (docs/ARCHITECTURE.md §5, the fence).
 *
 * User space checks the lease before each write(2) (TapDevice.writeGuard), but a process paused
 * between that check and the write (SIGSTOP, a long GC, a frozen VM) emits the frame seconds later,
 * after the standby took over. Here the kernel checks instead, at the moment the frame enters it:
 * a frame our process writes to a TAP is received by the kernel as ingress on that interface, and a
 * BPF program on that ingress hook drops every frame once CLOCK_MONOTONIC is past a deadline.
 *
 * - The program (SCHED_CLS, 13 hand-assembled instructions, `fenceProgram`) reads the deadline from
 *   a one-element BPF array and bpf_ktime_get_ns() (CLOCK_MONOTONIC); past the deadline it drops
 *   the frame and adds one to a drop counter in the same array. Frames whose EtherType is 0x88B5
 *   (the nodes' heartbeats on the data link, CONTROL_ETHERTYPE in ../device.ts) always pass. The
 *   EtherType read is skb->protocol: the kernel has removed a VLAN tag by then, so a tagged
 *   heartbeat passes too (and any other tagged frame is judged like an untagged one).
 * - A GSO frame (one write(2) the kernel later cuts into segments) is judged, and counted, once.
 * - The array is created with BPF_F_MMAPABLE and mapped into the process: renewing the lease is one
 *   64-bit atomic store into shared memory, no system call.
 * - It is attached with TCX (BPF_LINK_CREATE, BPF_TCX_INGRESS, Linux 6.6+), first in the chain. The
 *   link is never pinned: it lives as long as its file descriptor, so the program is detached when
 *   the process exits, however it exits (SIGKILL included). Where TCX is missing (EINVAL from an
 *   older kernel) it falls back to a cls_bpf filter on a clsact qdisc (rtnetlink, direct action);
 *   such a filter outlives the process (until `close`, the next attach on the device, which
 *   replaces it, or the device's removal): after a crash it keeps dropping, fail-closed. One tc
 *   fence per device: a second replaces the first, and closing either removes the filter.
 * - The deadline starts at 0: until the first `setDeadlineUs`, only heartbeats pass.
 * - The write(2) of a dropped frame still succeeds: TapDevice counts it in framesOut; `drops()` is
 *   the kernel's count.
 * - It guards what enters the kernel, not what is already inside it: frames that passed before the
 *   deadline and still wait in a queue beyond the TAP (an egress qdisc, a NIC ring) may leave after.
 *   And it is only as good as the local CLOCK_MONOTONIC: a hypervisor that hides a pause from the
 *   guest's clock hides it from the fence too.
 *
 * All system calls go through koffi (ffi.ts): bpf(2) by syscall(2), mmap(2), rtnetlink on a socket.
 *
 * ```ts
 * const tap = await TapDevice.open({ name, netns });
 * let fence: KernelFence | undefined;
 * try {
 *   fence = KernelFence.attach({ ifname: tap.name, netns });  // after the TAP exists
 * } catch (e) {
 *   if (!(e instanceof FenceError)) throw e;
 *   log(e.message);                                           // the userspace check remains
 * }
 * fence?.setDeadlineUs(leaseEndUs);  // at every renewal: the deadline the userspace check uses
 * ```
 */
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { performanceToMonotonicNs } from '../clock.ts';
import { CONTROL_ETHERTYPE } from '../device.ts';
import {
  AF_NETLINK,
  type BpfLibc,
  CLONE_NEWNET,
  errnoName,
  type Libc,
  loadBpfLibc,
  loadLibc,
  type MappedMemory,
  type NativeBuffer,
  NETLINK_ROUTE,
  O_CLOEXEC,
  O_RDONLY,
  SOCK_CLOEXEC,
  SOCK_RAW,
} from './ffi.ts';

/** The EtherType that passes whatever the lease: the HA nodes' heartbeats (CONTROL_ETHERTYPE). */
export const FENCE_PASS_ETHERTYPE = CONTROL_ETHERTYPE;

export interface FenceOptions {
  /** The TAP device's interface name. */
  ifname: string;
  /** The named network namespace the TAP lives in (/run/netns/NAME), as given to TapDevice.open. */
  netns?: string;
  /**
   * How to attach: 'auto' (default) tries TCX and falls back to tc cls_bpf when the kernel has no
   * TCX; 'tcx' or 'tc' insist on one (tests, diagnosis).
   */
  mode?: 'auto' | 'tcx' | 'tc';
}

/** What `KernelFence.attach` could not do, as one sentence; `code` is the errno name when a call failed. */
export class FenceError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'FenceError';
  }
}

// ---- BPF instruction encoding (include/uapi/linux/bpf.h, Documentation/bpf/standardization) ----

// Instruction classes.
const LD = 0x00;
const LDX = 0x01;
const STX = 0x03;
const JMP = 0x05;
const ALU64 = 0x07;
// Sizes and modes of loads and stores.
const W = 0x00;
const DW = 0x18;
const IMM = 0x00;
const MEM = 0x60;
const ATOMIC = 0xc0;
// Operations: source is an immediate (K) or a register (X).
const K = 0x00;
const X = 0x08;
const MOV = 0xb0;
const ADD = 0x00;
const JEQ = 0x10;
const JLE = 0xb0;
const CALL = 0x80;
const EXIT = 0x90;
/** src_reg of a 64-bit immediate load: imm is a map fd, the next imm an offset into its value. */
const PSEUDO_MAP_VALUE = 2;
const FUNC_KTIME_GET_NS = 5;
/** TCX_NEXT (= TC_ACT_UNSPEC for cls_bpf): no verdict, let the rest of the chain decide. */
const VERDICT_NEXT = -1;
/** TCX_DROP (= TC_ACT_SHOT). */
const VERDICT_DROP = 2;

/** Byte offsets of the map value: the deadline (ns of CLOCK_MONOTONIC), then the drop count. */
const DEADLINE_OFF = 0;
const DROPS_OFF = 8;
const VALUE_SIZE = 16;
/** offsetof(struct __sk_buff, protocol): skb->protocol, a __be16, loaded into a 32-bit field. */
const SKB_PROTOCOL = 16;

export interface BpfInsn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** What it does, for the listing. */
  note: string;
}

/**
 * The fence program for the map `mapFd`, one entry per 8-byte instruction (the 64-bit immediate
 * load takes two). r1 holds the context (struct __sk_buff *) on entry; a helper call clobbers
 * r1-r5 and returns in r0; r0 is the verdict at exit.
 */
export function fenceProgram(mapFd: number): BpfInsn[] {
  if (endianness() !== 'LE') throw new Error('the fence program is assembled for little-endian hosts only');
  // skb->protocol holds the EtherType in network order; a little-endian load reads it byte-swapped.
  const passProto = ((FENCE_PASS_ETHERTYPE & 0xff) << 8) | (FENCE_PASS_ETHERTYPE >> 8);
  const i = (code: number, dst: number, src: number, off: number, imm: number, note: string): BpfInsn => ({
    code,
    dst,
    src,
    off,
    imm,
    note,
  });
  return [
    /* 0 */ i(LDX | W | MEM, 2, 1, SKB_PROTOCOL, 0, 'r2 = skb->protocol (EtherType, network order)'),
    /* 1 */ i(JMP | JEQ | K, 2, 0, 9, passProto, 'if r2 == htons(0x88B5) goto 11 (heartbeats pass)'),
    /* 2 */ i(JMP | CALL, 0, 0, 0, FUNC_KTIME_GET_NS, 'r0 = bpf_ktime_get_ns() (CLOCK_MONOTONIC)'),
    /* 3 */ i(LD | DW | IMM, 1, PSEUDO_MAP_VALUE, 0, mapFd, 'r1 = &value of map (64-bit load, 1/2)'),
    /* 4 */ i(0, 0, 0, 0, DEADLINE_OFF, '       ... offset 0 into the value (2/2)'),
    /* 5 */ i(LDX | DW | MEM, 2, 1, DEADLINE_OFF, 0, 'r2 = *(u64 *)(r1 + 0): the deadline'),
    /* 6 */ i(JMP | JLE | X, 0, 2, 4, 0, 'if r0 <= r2 goto 11 (unsigned: not past it, pass)'),
    /* 7 */ i(ALU64 | MOV | K, 2, 0, 0, 1, 'r2 = 1'),
    /* 8 */ i(STX | DW | ATOMIC, 1, 2, DROPS_OFF, ADD, 'lock *(u64 *)(r1 + 8) += r2: count the drop'),
    /* 9 */ i(ALU64 | MOV | K, 0, 0, 0, VERDICT_DROP, 'r0 = TCX_DROP (TC_ACT_SHOT)'),
    /* 10 */ i(JMP | EXIT, 0, 0, 0, 0, 'exit'),
    /* 11 */ i(ALU64 | MOV | K, 0, 0, 0, VERDICT_NEXT, 'r0 = TCX_NEXT (TC_ACT_UNSPEC): no objection'),
    /* 12 */ i(JMP | EXIT, 0, 0, 0, 0, 'exit'),
  ];
}

/** struct bpf_insn, little-endian: u8 code, u8 dst_reg:4 | src_reg:4 (dst in the low nibble), s16 off, s32 imm. */
export function encodeProgram(insns: readonly BpfInsn[]): Uint8Array {
  const out = new Uint8Array(insns.length * 8);
  const dv = new DataView(out.buffer);
  insns.forEach((x, n) => {
    dv.setUint8(n * 8, x.code);
    dv.setUint8(n * 8 + 1, (x.src << 4) | x.dst);
    dv.setInt16(n * 8 + 2, x.off, true);
    dv.setInt32(n * 8 + 4, x.imm, true);
  });
  return out;
}

// ---- bpf(2) commands and attribute layouts (union bpf_attr) -----------------------------------

const BPF_MAP_CREATE = 0;
const BPF_PROG_LOAD = 5;
const BPF_PROG_TEST_RUN = 10;
const BPF_PROG_GET_FD_BY_ID = 13;
const BPF_OBJ_GET_INFO_BY_FD = 15;
const BPF_PROG_QUERY = 16;
const BPF_LINK_CREATE = 28;
const BPF_ENABLE_STATS = 32;
const BPF_LINK_DETACH = 34;
const BPF_MAP_TYPE_ARRAY = 2;
const BPF_PROG_TYPE_SCHED_CLS = 3;
const BPF_F_MMAPABLE = 1 << 10;
const BPF_TCX_INGRESS = 46;
/** Link-create flag: in front of the relative program, or of the whole chain when there is none. */
const BPF_F_BEFORE = 1 << 3;
const BPF_STATS_RUN_TIME = 0;
/** Every attribute buffer is this long and zeroed: the kernel wants unused tails zero. */
const ATTR_SIZE = 144;
const LOG_SIZE = 64 * 1024;
const NAME = 'tk_fence';
const LICENSE = 'Dual MIT/GPL';

interface Sys {
  c: Libc;
  b: BpfLibc;
}

function loadSys(): Sys {
  try {
    return { c: loadLibc(), b: loadBpfLibc() };
  } catch (e) {
    throw new FenceError(
      `Loading libc through koffi for the kernel fence failed (${(e as Error).message}): it needs Linux on x86-64, arm64, riscv64 or loong64 with glibc; keep the userspace lease check.`,
      undefined,
    );
  }
}

/** One bpf(2) call with a zeroed attribute buffer that `fill` writes; the result, or -errno. */
function bpfCall(s: Sys, cmd: number, fill: (dv: DataView) => void, after?: (dv: DataView) => void): number {
  const attr = s.c.alloc(ATTR_SIZE);
  try {
    attr.bytes.fill(0);
    const dv = new DataView(attr.bytes.buffer, attr.bytes.byteOffset, ATTR_SIZE);
    fill(dv);
    const r = s.b.bpf(cmd, attr.address, ATTR_SIZE);
    if (r < 0) return -s.c.errno();
    after?.(dv);
    return r;
  } finally {
    s.c.free(attr);
  }
}

function setName(dv: DataView, at: number, name: string): void {
  for (let k = 0; k < name.length && k < 15; k++) dv.setUint8(at + k, name.charCodeAt(k));
}

/** Native memory holding `bytes`, for pointers inside an attribute; free it with s.c.free. */
function native(s: Sys, bytes: Uint8Array): NativeBuffer {
  const mem = s.c.alloc(Math.max(1, bytes.length));
  mem.bytes.set(bytes);
  return mem;
}

function createMap(s: Sys): number {
  return bpfCall(s, BPF_MAP_CREATE, (dv) => {
    dv.setUint32(0, BPF_MAP_TYPE_ARRAY, true); // map_type
    dv.setUint32(4, 4, true); // key_size
    dv.setUint32(8, VALUE_SIZE, true); // value_size
    dv.setUint32(12, 1, true); // max_entries
    dv.setUint32(16, BPF_F_MMAPABLE, true); // map_flags
    setName(dv, 28, NAME); // map_name
  });
}

/** Loads the program; on failure also the verifier's last line (loaded again with a log). */
function loadProgram(s: Sys, mapFd: number): { fd: number; log: string } {
  const code = native(s, encodeProgram(fenceProgram(mapFd)));
  const license = native(s, new TextEncoder().encode(`${LICENSE}\0`));
  const log = s.c.alloc(LOG_SIZE);
  try {
    const load = (withLog: boolean) =>
      bpfCall(s, BPF_PROG_LOAD, (dv) => {
        dv.setUint32(0, BPF_PROG_TYPE_SCHED_CLS, true); // prog_type
        dv.setUint32(4, code.bytes.length / 8, true); // insn_cnt
        dv.setBigUint64(8, BigInt(code.address), true); // insns
        dv.setBigUint64(16, BigInt(license.address), true); // license
        if (withLog) {
          log.bytes.fill(0);
          dv.setUint32(24, 1, true); // log_level
          dv.setUint32(28, LOG_SIZE, true); // log_size
          dv.setBigUint64(32, BigInt(log.address), true); // log_buf
        }
        setName(dv, 48, NAME); // prog_name
      });
    const fd = load(false);
    if (fd >= 0) return { fd, log: '' };
    if (fd === -1 /* EPERM */ || fd === -38 /* ENOSYS */) return { fd, log: '' };
    load(true);
    const end = log.bytes.indexOf(0);
    const text = new TextDecoder().decode(log.bytes.subarray(0, end < 0 ? LOG_SIZE : end));
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    return { fd, log: lines.slice(-2).join(' / ') };
  } finally {
    s.c.free(code);
    s.c.free(license);
    s.c.free(log);
  }
}

function tcxAttach(s: Sys, progFd: number, ifindex: number): number {
  return bpfCall(s, BPF_LINK_CREATE, (dv) => {
    dv.setUint32(0, progFd, true); // prog_fd
    dv.setUint32(4, ifindex, true); // target_ifindex
    dv.setUint32(8, BPF_TCX_INGRESS, true); // attach_type
    dv.setUint32(12, BPF_F_BEFORE, true); // flags: first in the chain (relative_fd 0 at 16)
  });
}

/** bpf_prog_info / bpf_link_info fields by byte offset (u32 reads; run counters as u64). */
function objInfo(s: Sys, fd: number): DataView | undefined {
  const info = s.c.alloc(256);
  try {
    info.bytes.fill(0);
    const r = bpfCall(s, BPF_OBJ_GET_INFO_BY_FD, (dv) => {
      dv.setUint32(0, fd, true); // bpf_fd
      dv.setUint32(4, 256, true); // info_len
      dv.setBigUint64(8, BigInt(info.address), true); // info
    });
    if (r < 0) return undefined;
    return new DataView(info.bytes.slice().buffer);
  } finally {
    s.c.free(info);
  }
}

// ---- tc cls_bpf through rtnetlink: the fallback where TCX is missing ---------------------------

const RTM_NEWQDISC = 36;
const RTM_NEWTFILTER = 44;
const RTM_DELTFILTER = 45;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_REPLACE = 0x100;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const NLA_F_NESTED = 0x8000;
const TCA_BPF_FD = 6;
const TCA_BPF_NAME = 7;
const TCA_BPF_FLAGS = 8;
const TCA_BPF_FLAG_ACT_DIRECT = 1;
const TC_H_CLSACT = 0xfffffff1;
/** TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS). */
const TC_PARENT_INGRESS = 0xfffffff2;
/** Priority 1 (first) and a handle of our own, so `replace` swaps only a previous fence. */
const TC_PRIO = 1;
const TC_HANDLE = 0x7f0c;
/** ETH_P_ALL in network order. */
const ETH_P_ALL_BE = 0x0300;

function nlAttr(type: number, payload: Uint8Array): Uint8Array {
  const len = 4 + payload.length;
  const out = new Uint8Array((len + 3) & ~3);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, len, true);
  dv.setUint16(2, type, true);
  out.set(payload, 4);
  return out;
}

const u32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
};
const cstr = (v: string) => new TextEncoder().encode(`${v}\0`);
const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** One rtnetlink request (nlmsghdr, tcmsg, attributes) on `sock`; 0 or -errno from the kernel's ack. */
function rtnl(
  c: Libc,
  sock: number,
  type: number,
  flags: number,
  tcm: { ifindex: number; handle: number; parent: number; info: number },
  attrs: Uint8Array[],
): number {
  const body = concat(attrs);
  const msg = new Uint8Array(16 + 20 + body.length);
  const dv = new DataView(msg.buffer);
  dv.setUint32(0, msg.length, true); // nlmsg_len
  dv.setUint16(4, type, true); // nlmsg_type
  dv.setUint16(6, flags | NLM_F_REQUEST | NLM_F_ACK, true); // nlmsg_flags
  dv.setUint32(8, 1, true); // nlmsg_seq
  // tcmsg: family (AF_UNSPEC), pad, ifindex, handle, parent, info.
  dv.setInt32(20, tcm.ifindex, true);
  dv.setUint32(24, tcm.handle, true);
  dv.setUint32(28, tcm.parent, true);
  dv.setUint32(32, tcm.info, true);
  msg.set(body, 36);
  if (c.write(sock, msg, msg.length) !== msg.length) return -c.errno();
  const buf = new Uint8Array(4096);
  // The kernel answers a request before write(2) returns; a few reads skip anything else.
  for (let n = 0; n < 8; n++) {
    const got = c.read(sock, buf, buf.length);
    if (got < 0) return -c.errno();
    const rv = new DataView(buf.buffer, 0, got);
    for (let at = 0; at + 16 <= got; ) {
      const len = rv.getUint32(at, true);
      if (rv.getUint16(at + 4, true) === NLMSG_ERROR && at + 20 <= got) return rv.getInt32(at + 16, true);
      if (len < 16) break;
      at += (len + 3) & ~3;
    }
  }
  return -5; // EIO: no acknowledgment
}

const TC_FILTER = (ifindex: number) => ({
  ifindex,
  handle: TC_HANDLE,
  parent: TC_PARENT_INGRESS,
  info: ((TC_PRIO << 16) | ETH_P_ALL_BE) >>> 0,
});

/** clsact on the device (kept when it exists), then our cls_bpf filter (replacing a previous fence). */
function tcAttach(c: Libc, sock: number, ifindex: number, progFd: number): number {
  const q = rtnl(
    c,
    sock,
    RTM_NEWQDISC,
    NLM_F_CREATE | NLM_F_EXCL,
    { ifindex, handle: 0xffff0000, parent: TC_H_CLSACT, info: 0 },
    [nlAttr(TCA_KIND, cstr('clsact'))],
  );
  if (q < 0 && q !== -17 /* EEXIST */) return q;
  const options = concat([
    nlAttr(TCA_BPF_FD, u32(progFd)),
    nlAttr(TCA_BPF_NAME, cstr(NAME)),
    nlAttr(TCA_BPF_FLAGS, u32(TCA_BPF_FLAG_ACT_DIRECT)),
  ]);
  return rtnl(c, sock, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_REPLACE, TC_FILTER(ifindex), [
    nlAttr(TCA_KIND, cstr('bpf')),
    nlAttr(TCA_OPTIONS | NLA_F_NESTED, options),
  ]);
}

function tcDetach(c: Libc, sock: number, ifindex: number): number {
  return rtnl(c, sock, RTM_DELTFILTER, 0, TC_FILTER(ifindex), [nlAttr(TCA_KIND, cstr('bpf'))]);
}

// ---- the namespace ------------------------------------------------------------------------------

/**
 * Runs `fn` with the calling thread in network namespace `netns` (setns(2) affects this thread
 * only), then returns it to its own; as TapDevice.open does.
 */
function inNetns<T>(c: Libc, netns: string | undefined, fn: () => T): T {
  if (netns === undefined) return fn();
  const fail = (errno: number): never => {
    const e = errnoName(errno);
    if (e === 'ENOENT')
      throw new FenceError(
        `Network namespace ${netns} does not exist: create it with \`ip netns add ${netns}\`.`,
        e,
      );
    if (e === 'EPERM' || e === 'EACCES')
      throw new FenceError(`Entering network namespace ${netns} needs CAP_SYS_ADMIN: run as root.`, e);
    throw new FenceError(
      `Entering network namespace ${netns} failed with ${e}: check that /run/netns/${netns} is a network namespace.`,
      e,
    );
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
  if (back < 0) throw new Error(`Returning from network namespace ${netns} failed: the process must exit.`);
  if (!result.ok) throw result.error;
  return result.value;
}

// ---- clocks -----------------------------------------------------------------------------------

export { performanceToMonotonicNs };

const NEVER = (1n << 63n) - 1n;

/**
 * This process's time namespace offset of CLOCK_MONOTONIC (`/proc/self/timens_offsets`, Linux
 * 5.6+; 0 outside a time namespace or where the file does not exist).
 */
export function timeNamespaceMonotonicOffsetNs(): bigint {
  let text: string;
  try {
    text = readFileSync('/proc/self/timens_offsets', 'utf8');
  } catch {
    return 0n;
  }
  const m = /^monotonic\s+(-?\d+)\s+(\d+)/m.exec(text);
  return m ? BigInt(m[1]) * 1_000_000_000n + BigInt(m[2]) : 0n;
}

// ---- the fence ----------------------------------------------------------------------------------

export interface FenceInfo {
  /** 'tcx': a BPF link that dies with the process; 'tc': a cls_bpf filter that outlives it. */
  readonly mode: 'tcx' | 'tc';
  readonly ifindex: number;
  readonly programId: number;
  /** The TCX link's id (undefined with 'tc'). */
  readonly linkId: number | undefined;
}

export class KernelFence {
  readonly info: FenceInfo;
  private readonly s: Sys;
  /** [0] the deadline in CLOCK_MONOTONIC ns, [1] the drop count: the mmap'ed map value. */
  private words: BigInt64Array;
  private readonly offsetNs: bigint;
  private closed = false;

  private constructor(
    s: Sys,
    info: FenceInfo,
    private readonly mem: MappedMemory,
    private readonly mapFd: number,
    private readonly progFd: number,
    /** The TCX link, or the rtnetlink socket (in the TAP's namespace) for the tc filter. */
    private readonly attachFd: number,
  ) {
    this.s = s;
    this.info = info;
    this.words = new BigInt64Array(mem.buffer, 0, 2);
    // In a time namespace (unshare --time) our CLOCK_MONOTONIC is offset from the one the
    // kernel's BPF helper reads (bpf_ktime_get_ns is not namespaced): take the offset out.
    this.offsetNs = performanceToMonotonicNs() - timeNamespaceMonotonicOffsetNs();
  }

  /**
   * Loads the fence and attaches it to the ingress of TAP device `ifname` (in `netns` when given),
   * with a deadline in the past: only heartbeats pass until `setDeadlineUs`. Throws a FenceError
   * whose message says what is missing (root / CAP_BPF + CAP_NET_ADMIN, kernel support) so the
   * caller can keep the userspace check instead.
   */
  static attach(opts: FenceOptions): KernelFence {
    const s = loadSys();
    const { c, b } = s;
    const dev = `TAP device ${opts.ifname}`;
    const perm = (e: string) =>
      new FenceError(
        `Attaching the kernel fence to ${dev} needs CAP_BPF and CAP_NET_ADMIN: run as root (or grant them to node), or keep the userspace lease check.`,
        e,
      );
    const fds: number[] = [];
    const cleanup = () => {
      for (const fd of fds.reverse()) c.close(fd);
    };
    let mem: MappedMemory | undefined;
    try {
      const mapFd = createMap(s);
      if (mapFd < 0) {
        const e = errnoName(-mapFd);
        if (e === 'EPERM' || e === 'EACCES') throw perm(e);
        if (e === 'ENOSYS')
          throw new FenceError(
            'This kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL is off): keep the userspace lease check.',
            e,
          );
        throw new FenceError(
          `Creating the kernel fence's map failed with ${e}: it needs Linux 5.5+ (mmap-able BPF arrays); keep the userspace lease check.`,
          e,
        );
      }
      fds.push(mapFd);
      mem = b.mmapShared(mapFd, 4096);
      if (!mem) {
        const e = errnoName(c.errno());
        throw new FenceError(
          `Mapping the kernel fence's map into memory failed with ${e}: it needs Linux 5.5+ (mmap-able BPF arrays); keep the userspace lease check.`,
          e,
        );
      }
      const prog = loadProgram(s, mapFd);
      if (prog.fd < 0) {
        const e = errnoName(-prog.fd);
        if (e === 'EPERM' || e === 'EACCES') throw perm(e);
        throw new FenceError(
          `The kernel refused the fence program with ${e}${prog.log ? ` (verifier: ${prog.log.replace(/\.$/, '')})` : ''}: it needs Linux 5.5+ with BPF_PROG_TYPE_SCHED_CLS (CONFIG_NET_CLS_BPF); keep the userspace lease check.`,
          e,
        );
      }
      fds.push(prog.fd);
      const mode = opts.mode ?? 'auto';
      const attached = inNetns(c, opts.netns, () => {
        const where = opts.netns === undefined ? 'this network namespace' : `network namespace ${opts.netns}`;
        const ifindex = b.ifNameToIndex(opts.ifname);
        if (ifindex === 0) {
          const e = errnoName(c.errno());
          throw new FenceError(
            `${dev} does not exist in ${where} (${e}): open the TAP before attaching its fence, in the same namespace.`,
            e,
          );
        }
        let tcxErr = 0;
        if (mode !== 'tc') {
          const link = tcxAttach(s, prog.fd, ifindex);
          if (link >= 0) return { mode: 'tcx' as const, ifindex, fd: link };
          tcxErr = -link;
          const e = errnoName(tcxErr);
          if (e === 'EPERM' || e === 'EACCES') throw perm(e);
          // EINVAL: a kernel without TCX (before 6.6) does not know the attach type.
          if (mode === 'tcx' || e !== 'EINVAL')
            throw new FenceError(
              `Attaching the kernel fence to ${dev} with TCX failed with ${e}: TCX needs Linux 6.6+; keep the userspace lease check.`,
              e,
            );
        }
        const sock = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (sock < 0) {
          const e = errnoName(c.errno());
          throw new FenceError(
            `Opening an rtnetlink socket for the kernel fence failed with ${e}: keep the userspace lease check.`,
            e,
          );
        }
        const r = tcAttach(c, sock, ifindex, prog.fd);
        if (r < 0) {
          c.close(sock);
          const e = errnoName(-r);
          if (e === 'EPERM' || e === 'EACCES') throw perm(e);
          const tcx = tcxErr ? `TCX gave ${errnoName(tcxErr)} (it needs Linux 6.6+) and ` : '';
          throw new FenceError(
            `Attaching the kernel fence to ${dev} failed: ${tcx}tc cls_bpf gave ${e}; the kernel needs CONFIG_NET_SCH_INGRESS and CONFIG_NET_CLS_BPF; keep the userspace lease check.`,
            e,
          );
        }
        return { mode: 'tc' as const, ifindex, fd: sock };
      });
      fds.push(attached.fd);
      const progInfo = objInfo(s, prog.fd);
      const linkInfo = attached.mode === 'tcx' ? objInfo(s, attached.fd) : undefined;
      const info: FenceInfo = {
        mode: attached.mode,
        ifindex: attached.ifindex,
        programId: progInfo?.getUint32(4, true) ?? 0,
        linkId: linkInfo?.getUint32(4, true),
      };
      return new KernelFence(s, info, mem, mapFd, prog.fd, attached.fd);
    } catch (e) {
      if (mem) b.munmap(mem);
      cleanup();
      throw e;
    }
  }

  /**
   * Frames other than heartbeats are dropped by the kernel once performance.now()-based time (as
   * `monotonicUs()` in src/api/runtime.ts, on this thread) is past `monotonicUs`. One atomic 64-bit
   * store, no system call. Infinity lifts the fence; NaN or anything before the clock's zero closes
   * it. Does nothing after `close`.
   */
  setDeadlineUs(monotonicUs: number): void {
    let ns: bigint;
    if (monotonicUs === Number.POSITIVE_INFINITY) ns = NEVER;
    else if (!(monotonicUs > Number.NEGATIVE_INFINITY)) ns = 0n;
    else {
      ns = this.offsetNs + BigInt(Math.round(monotonicUs * 1000));
      if (ns < 0n) ns = 0n;
      else if (ns > NEVER) ns = NEVER;
    }
    Atomics.store(this.words, 0, ns);
  }

  /** The deadline now in force, in the same clock as `setDeadlineUs` (-Infinity before the first, Infinity when lifted). */
  deadlineUs(): number {
    const ns = Atomics.load(this.words, 0);
    if (ns === NEVER) return Number.POSITIVE_INFINITY;
    if (ns === 0n) return Number.NEGATIVE_INFINITY;
    return Number(ns - this.offsetNs) / 1000;
  }

  /** Frames the kernel dropped because the deadline had passed (the program's own count). */
  drops(): number {
    return Number(Atomics.load(this.words, 1));
  }

  /**
   * Runs the program on one frame through BPF_PROG_TEST_RUN, without the device: 'drop' or 'pass'
   * as the device would decide now (a drop is counted in `drops`). A diagnostic; a test run does
   * not remove VLAN tags as the device path does, so a tagged heartbeat is judged by its tag here.
   */
  verdict(frame: Uint8Array): 'pass' | 'drop' {
    const { retval } = this.testRun(frame, 1);
    if (retval === VERDICT_DROP) return 'drop';
    if (retval === VERDICT_NEXT) return 'pass';
    throw new Error(`the fence program returned ${retval}`);
  }

  /**
   * The kernel's average time for one run of the program on `frame`, in nanoseconds, over `repeat`
   * runs (BPF_PROG_TEST_RUN; each drop is counted in `drops`). A diagnostic.
   */
  runTimeNs(frame: Uint8Array, repeat = 100_000): number {
    return this.testRun(frame, repeat).durationNs;
  }

  private testRun(frame: Uint8Array, repeat: number): { retval: number; durationNs: number } {
    this.assertOpen();
    const data = native(this.s, frame);
    try {
      let retval = 0;
      let durationNs = 0;
      const r = bpfCall(
        this.s,
        BPF_PROG_TEST_RUN,
        (dv) => {
          dv.setUint32(0, this.progFd, true); // prog_fd
          dv.setUint32(8, frame.length, true); // data_size_in
          dv.setBigUint64(16, BigInt(data.address), true); // data_in
          dv.setUint32(32, repeat, true); // repeat
        },
        (dv) => {
          retval = dv.getInt32(4, true); // retval
          durationNs = dv.getUint32(36, true); // duration: average ns per run
        },
      );
      if (r < 0) {
        const e = errnoName(-r);
        throw new FenceError(`Test-running the fence program failed with ${e}.`, e);
      }
      return { retval, durationNs };
    } finally {
      this.s.c.free(data);
    }
  }

  /**
   * The program's run count and total run time from the kernel (both 0 unless BPF run-time
   * statistics are on: `enableBpfRunTimeStats` or sysctl kernel.bpf_stats_enabled=1).
   */
  programStats(): { runs: number; runTimeNs: number } {
    this.assertOpen();
    const info = objInfo(this.s, this.progFd);
    if (!info) return { runs: 0, runTimeNs: 0 };
    return { runTimeNs: Number(info.getBigUint64(192, true)), runs: Number(info.getBigUint64(200, true)) };
  }

  /**
   * Detaches the program and frees it. After `close` the device sends unfenced (the userspace
   * check, if any, is all that is left); `setDeadlineUs` does nothing. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const { c } = this.s;
    // Never touch the mapping once it is gone: a store into unmapped memory kills the process.
    this.words = new BigInt64Array(2);
    if (this.info.mode === 'tcx') {
      // Detach at once even if a copy of the fd lives on somewhere; a device already gone is fine.
      bpfCall(this.s, BPF_LINK_DETACH, (dv) => dv.setUint32(0, this.attachFd, true));
    } else {
      tcDetach(c, this.attachFd, this.info.ifindex);
    }
    c.close(this.attachFd);
    this.s.b.munmap(this.mem);
    c.close(this.progFd);
    c.close(this.mapFd);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('this KernelFence is closed');
  }
}

// ---- diagnostics ------------------------------------------------------------------------------

/**
 * The ids of the BPF programs attached with TCX to the ingress of `ifname` (in `netns` when
 * given), first to run first: to check that no fence was left behind.
 */
export function tcxIngressPrograms(opts: { ifname: string; netns?: string }): number[] {
  const s = loadSys();
  return inNetns(s.c, opts.netns, () => {
    const ifindex = s.b.ifNameToIndex(opts.ifname);
    if (ifindex === 0)
      throw new FenceError(`TAP device ${opts.ifname} does not exist.`, errnoName(s.c.errno()));
    const ids = s.c.alloc(64 * 4);
    try {
      let count = 0;
      const r = bpfCall(
        s,
        BPF_PROG_QUERY,
        (dv) => {
          dv.setUint32(0, ifindex, true); // target_ifindex
          dv.setUint32(4, BPF_TCX_INGRESS, true); // attach_type
          dv.setBigUint64(16, BigInt(ids.address), true); // prog_ids
          dv.setUint32(24, 64, true); // count
        },
        (dv) => {
          count = dv.getUint32(24, true);
        },
      );
      if (r < 0) throw new FenceError(`Querying TCX programs failed with ${errnoName(-r)}.`, errnoName(-r));
      const dv = new DataView(ids.bytes.buffer, ids.bytes.byteOffset, 64 * 4);
      return Array.from({ length: Math.min(count, 64) }, (_, k) => dv.getUint32(k * 4, true));
    } finally {
      s.c.free(ids);
    }
  });
}

/** Whether a BPF program with this id still exists (loaded anywhere). */
export function bpfProgramExists(id: number): boolean {
  const s = loadSys();
  const fd = bpfCall(s, BPF_PROG_GET_FD_BY_ID, (dv) => dv.setUint32(0, id, true));
  if (fd >= 0) {
    s.c.close(fd);
    return true;
  }
  if (fd === -2 /* ENOENT */) return false;
  throw new FenceError(`Looking up BPF program ${id} failed with ${errnoName(-fd)}.`, errnoName(-fd));
}

/**
 * Turns on the kernel's BPF run-time statistics (run count and time per program, a little cost on
 * every run) until the returned function is called.
 */
export function enableBpfRunTimeStats(): () => void {
  const s = loadSys();
  const fd = bpfCall(s, BPF_ENABLE_STATS, (dv) => dv.setUint32(0, BPF_STATS_RUN_TIME, true));
  if (fd < 0) throw new FenceError(`Enabling BPF statistics failed with ${errnoName(-fd)}.`, errnoName(-fd));
  let open = true;
  return () => {
    if (open) s.c.close(fd);
    open = false;
  };
}
