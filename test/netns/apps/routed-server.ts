/**
 * The services (services.ts) on our stack, like stack-server.ts, but reachable through a router
 * (default gateways for both families) and telling what it did: on SIGUSR2 it prints its stack's
 * counters as one line, `counters {...}` (JSON), so a test can see how the stack treated what
 * reached it (fragments reassembled, forged ICMP errors dropped, options acted on). Prints
 * `ready` once listening.
 *
 *   node --import tsx routed-server.ts <tap> <mac> <gateway4> <gateway6> <addr/prefix>...
 */
import { netApi, Runtime } from '../../../src/api/index.ts';
import { TapDevice } from '../../../src/link/tap/index.ts';
import { cidrFromString } from '../../../src/stack/ip.ts';
import { ipv4FromString, ipv6FromString, macFromString } from '../../../src/wire/address.ts';
import { type NetLike, serveAll } from './services.ts';

const [tap, mac, gw4, gw6, ...addresses] = process.argv.slice(2);
const dev = await TapDevice.open({ name: tap });
const rt = new Runtime(dev, {
  mac: macFromString(mac)!,
  addresses: addresses.map((a) => cidrFromString(a)!),
  gateway4: ipv4FromString(gw4),
  gateway6: ipv6FromString(gw6),
  mtu: dev.mtu,
});
rt.announce();
serveAll(netApi(rt) as unknown as NetLike);

process.on('SIGUSR2', () => {
  process.stdout.write(`counters ${JSON.stringify(rt.stack.counters)}\n`);
});
process.on('SIGTERM', () => {
  void rt.close().then(() => process.exit(0));
});
setTimeout(() => console.log('ready'), 50);
