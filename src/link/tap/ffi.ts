/**
 * The few libc calls a TAP device needs, through koffi, and the Linux constants that go with them
 * (linux/if_tun.h, linux/sockios.h, asm-generic/fcntl.h: x86-64 and arm64 share these values).
 *
 * Loaded on first use, so that importing this module costs nothing where TAP is never opened.
 */
import { createRequire } from 'node:module';
import type { IKoffiLib } from 'koffi';

export const O_RDWR = 0o2;
export const O_RDONLY = 0o0;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
/** _IOW('T', 202, int) */
export const TUNSETIFF = 0x400454ca;
export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
/** Each read and write starts with a struct virtio_net_hdr (10 bytes): checksum and GSO offload. */
export const IFF_VNET_HDR = 0x4000;
export const SIOCGIFMTU = 0x8921;
export const SIOCSIFMTU = 0x8922;
export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
export const POLLIN = 0x1;
/** IFNAMSIZ: the name field of `struct ifreq`, NUL included. */
export const IFNAMSIZ = 16;
/** sizeof(struct ifreq) on 64-bit Linux: the name, then a 24-byte union (flags, mtu, ...). */
export const IFREQ_SIZE = 40;

export interface Libc {
  open(path: string, flags: number): number;
  close(fd: number): number;
  /** ioctl(fd, request, arg) with a pointer argument (the buffer is read and written in place). */
  ioctlPtr(fd: number, request: number, arg: Uint8Array): number;
  read(fd: number, buf: Uint8Array, n: number): number;
  write(fd: number, buf: Uint8Array, n: number): number;
  /** write(2) from native memory by address (see `alloc`): no typed-array marshalling per call. */
  writeAt(fd: number, address: number, n: number): number;
  /** Native memory seen through a Uint8Array; free it with `free(mem)` and drop the view. */
  alloc(bytes: number): NativeBuffer;
  free(mem: NativeBuffer): void;
  eventfd(initval: number, flags: number): number;
  socket(domain: number, type: number, protocol: number): number;
  setns(fd: number, nstype: number): number;
  /** The calling thread's errno after the last call that failed. */
  errno(): number;
}

export interface NativeBuffer {
  readonly bytes: Uint8Array;
  readonly address: number;
  readonly handle: unknown;
}

const require = createRequire(import.meta.url);

/** Where koffi's entry point lives (the reader worker loads it by path). */
export function koffiPath(): string {
  return require.resolve('koffi');
}

let libc: Libc | undefined;

export function loadLibc(): Libc {
  if (libc) return libc;
  const koffi = require('koffi') as typeof import('koffi');
  const lib: IKoffiLib = koffi.load('libc.so.6');
  const open = lib.func('int open(const char *path, int flags, ...)');
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, ...)');
  const close = lib.func('int close(int fd)');
  const read = lib.func('long read(int fd, _Inout_ void *buf, unsigned long n)');
  const write = lib.func('long write(int fd, const void *buf, unsigned long n)');
  const writeAt = lib.func('long write(int fd, uintptr_t buf, unsigned long n)');
  const eventfd = lib.func('int eventfd(unsigned int initval, int flags)');
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const setns = lib.func('int setns(int fd, int nstype)');
  libc = {
    open: (path, flags) => open(path, flags),
    close: (fd) => close(fd),
    ioctlPtr: (fd, request, arg) => ioctl(fd, request, '_Inout_ void *', arg),
    read: (fd, buf, n) => read(fd, buf, n),
    write: (fd, buf, n) => write(fd, buf, n),
    writeAt,
    alloc: (bytes) => {
      const handle = koffi.alloc('uint8_t', bytes);
      return {
        handle,
        address: Number(koffi.address(handle)),
        bytes: new Uint8Array(koffi.view(handle, bytes)),
      };
    },
    free: (mem) => koffi.free(mem.handle),
    eventfd: (initval, flags) => eventfd(initval, flags),
    socket: (domain, type, protocol) => socket(domain, type, protocol),
    setns: (fd, nstype) => setns(fd, nstype),
    errno: () => koffi.errno(),
  };
  return libc;
}

let errnoNames: Map<number, string> | undefined;

/** `EPERM` for 1, ...; `errno 123` when koffi does not know the number. */
export function errnoName(errno: number): string {
  if (!errnoNames) {
    errnoNames = new Map();
    const koffi = require('koffi') as typeof import('koffi');
    for (const [name, n] of Object.entries(koffi.os.errno)) if (!errnoNames.has(n)) errnoNames.set(n, name);
  }
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

// ---- bpf(2), mmap(2) and rtnetlink: the kernel fence (fence.ts) --------------------------------

/**
 * The bpf(2) system call number per Node architecture (arch/x86/entry/syscalls/syscall_64.tbl;
 * arm64, riscv64 and loong64 use include/uapi/asm-generic/unistd.h).
 */
export const SYS_BPF: Readonly<Partial<Record<string, number>>> = {
  x64: 321,
  arm64: 280,
  riscv64: 280,
  loong64: 280,
};
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const NETLINK_ROUTE = 0;
export const CLOCK_MONOTONIC = 1;

export interface BpfLibc {
  /** syscall(SYS_bpf, cmd, attr, size): `attr` is native memory by address (see Libc.alloc). */
  bpf(cmd: number, attr: number, size: number): number;
  /**
   * mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0): the mapping, or undefined
   * (MAP_FAILED; errno says why).
   */
  mmapShared(fd: number, length: number): MappedMemory | undefined;
  munmap(mem: MappedMemory): number;
  /** if_nametoindex(3) in the calling thread's network namespace: 0 (errno set) when there is none. */
  ifNameToIndex(name: string): number;
  /** clock_gettime(CLOCK_MONOTONIC) in nanoseconds: the clock bpf_ktime_get_ns() reads. */
  monotonicNs(): bigint;
}

export interface MappedMemory {
  /** The mapping seen from JavaScript, without a copy: never touch it after `munmap`. */
  readonly buffer: ArrayBuffer;
  readonly address: bigint;
  readonly length: number;
  readonly handle: unknown;
}

let bpfLibc: BpfLibc | undefined;

/** The calls the kernel fence needs beyond `loadLibc`. Throws when this architecture has no known SYS_bpf. */
export function loadBpfLibc(): BpfLibc {
  if (bpfLibc) return bpfLibc;
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) throw new Error(`no bpf(2) system call number is known for ${process.arch}`);
  const koffi = require('koffi') as typeof import('koffi');
  const lib: IKoffiLib = koffi.load('libc.so.6');
  const syscall = lib.func('long syscall(long number, ...)');
  const mmap = lib.func(
    'void *mmap(void *addr, unsigned long length, int prot, int flags, int fd, long offset)',
  );
  const munmap = lib.func('int munmap(void *addr, unsigned long length)');
  const ifNameToIndex = lib.func('unsigned int if_nametoindex(const char *name)');
  const timespec = koffi.struct({ tv_sec: 'int64_t', tv_nsec: 'int64_t' });
  const clockGettime = lib.func('clock_gettime', 'int', ['int', koffi.out(koffi.pointer(timespec))]);
  const ts = { tv_sec: 0, tv_nsec: 0 };
  bpfLibc = {
    bpf: (cmd, attr, size) => syscall(nr, 'int', cmd, 'uintptr_t', attr, 'unsigned int', size),
    mmapShared: (fd, length) => {
      const handle = mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      const address = handle === null ? 0n : koffi.address(handle);
      // MAP_FAILED is (void *)-1.
      if (address === 0n || address === 0xffff_ffff_ffff_ffffn) return undefined;
      return { handle, address, length, buffer: koffi.view(handle, length) };
    },
    munmap: (mem) => munmap(mem.handle, mem.length),
    ifNameToIndex: (name) => ifNameToIndex(name),
    monotonicNs: () => {
      clockGettime(CLOCK_MONOTONIC, ts);
      return BigInt(ts.tv_sec) * 1_000_000_000n + BigInt(ts.tv_nsec);
    },
  };
  return bpfLibc;
}
