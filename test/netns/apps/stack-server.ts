/**
 * The services (services.ts) on our stack, run in the switch namespace by `TapHost.spawn`: opens
 * the TAP and prints `ready` once listening.
 *
 *   node --import tsx stack-server.ts <tap> <mac> <addr/prefix>... [--mtu N] [--fault loss=0.02,reorder=0.25,delay=10]
 *
 * --fault impairs what arrives from the network (the clients' direction), as netem on a client's veth.
 */
import { netApi, openTapRuntime, Runtime } from '../../../src/api/index.ts';
import { FaultInjector } from '../../../src/link/fault.ts';
import { Rng } from '../../../src/link/sim/rng.ts';
import { TapDevice } from '../../../src/link/tap/index.ts';
import { cidrFromString } from '../../../src/stack/ip.ts';
import { macFromString } from '../../../src/wire/address.ts';
import { type NetLike, serveAll } from './services.ts';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const mtu = opt('--mtu');
const fault = opt('--fault');
const [tap, mac, ...addresses] = args;

let rt: Runtime;
if (fault) {
  // netem is missing on this kernel: impair our own end of the link instead (both directions).
  const f = Object.fromEntries(
    fault
      .split(',')
      .map((kv) => kv.split('='))
      .map(([k, v]) => [k, Number(v)]),
  );
  const dev = await TapDevice.open({ name: tap, mtu: mtu ? Number(mtu) : undefined });
  // As netem on the client's veth would: everything the client sends is delayed, reordered, lost.
  const delay = f.delay ?? 0;
  const faulty = new FaultInjector(dev, {
    rng: new Rng(1),
    rx: {
      loss: f.loss ?? 0,
      reorder: f.reorder ?? 0,
      delayMs: delay,
      reorderDelayMs: [delay + 1, delay + 10],
    },
  });
  rt = new Runtime(faulty, {
    mac: macFromString(mac)!,
    addresses: addresses.map((a) => cidrFromString(a)!),
    mtu: dev.mtu,
  });
  rt.announce();
} else {
  rt = await openTapRuntime({ tap, mac, addresses, mtu: mtu ? Number(mtu) : undefined });
}
serveAll(netApi(rt) as unknown as NetLike);

process.on('SIGTERM', () => {
  void rt.close().then(() => process.exit(0));
});
setTimeout(() => console.log('ready'), 50);
