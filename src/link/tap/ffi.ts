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
