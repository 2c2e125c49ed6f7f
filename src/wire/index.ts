/**
 * Wire formats: zero-copy parsers that return a validated record or a `WireError` (never throw),
 * and emitters that write into a caller's buffer. `frame.ts` walks every layer at once.
 */
export * from './address.ts';
export * from './arp.ts';
export * from './bytes.ts';
export * from './checksum.ts';
export * from './error.ts';
export * from './ethernet.ts';
export * from './frame.ts';
export * from './icmpv4.ts';
export * from './icmpv6.ts';
export * from './ipv4.ts';
export * from './ipv6.ts';
export * from './seq.ts';
export * from './tcp.ts';
