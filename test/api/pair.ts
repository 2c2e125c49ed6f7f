/**
 * Two runtimes (stacks) joined by an in-memory cable, for tests of the API layer without root:
 * `a` is 198.18.0.1 / fd00::1, `b` is 198.18.0.2 / fd00::2.
 */
import { type NetApi, netApi, Runtime } from '../../src/api/index.ts';
import { cidrFromString } from '../../src/stack/ip.ts';
import { macFromString } from '../../src/wire/address.ts';
import { MemoryLink } from '../support/memory-link.ts';

export interface RuntimePair {
  a: NetApi;
  b: NetApi;
  rts: [Runtime, Runtime];
}

export function runtimePair(): RuntimePair {
  const [la, lb] = MemoryLink.pair();
  const ra = new Runtime(la, {
    mac: macFromString('02:00:00:00:00:0a')!,
    addresses: [cidrFromString('198.18.0.1/24')!, cidrFromString('fd00::1/64')!],
  });
  const rb = new Runtime(lb, {
    mac: macFromString('02:00:00:00:00:0b')!,
    addresses: [cidrFromString('198.18.0.2/24')!, cidrFromString('fd00::2/64')!],
  });
  return { a: netApi(ra), b: netApi(rb), rts: [ra, rb] };
}
