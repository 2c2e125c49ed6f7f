/**
 * The example apps (examples/all.ts: echo on 7, download on 19, HTTP on 80) on the kernel's TCP
 * (node:net): the unmodified servers behind a `takeover relay` pair in the nemesis suite, which
 * then sees the same services through the relay as through `takeover node`. Prints `ready`.
 *
 * The examples are node:net code plus `checkpoint` (what a restored socket resumes from: ours
 * only). On the kernel nothing is ever restored, so a socket's checkpoint is a no-op, and
 * `restored` is false.
 */
import net from 'node:net';
import all from '../../../examples/all.ts';
import type { NetApi } from '../../../src/api/index.ts';

const kernelNet = {
  createServer(listener: (s: net.Socket) => void) {
    return net.createServer((s) => {
      Object.assign(s, { checkpoint: () => {}, restored: false });
      listener(s);
    });
  },
};
all(kernelNet as unknown as NetApi);
setTimeout(() => console.log('ready'), 50);
