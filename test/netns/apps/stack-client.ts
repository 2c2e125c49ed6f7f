/**
 * Our stack as the client: downloads from the source service (port 19) of a kernel server and
 * prints "<bytes> <sha256>". Run in the switch namespace by `TapHost.spawn`.
 *
 *   node --import tsx stack-client.ts <tap> <mac> <addr/prefix> <server-ip> <bytes>
 */
import { createHash } from 'node:crypto';
import { netApi, openTapRuntime } from '../../../src/api/index.ts';

const [tap, mac, addr, server, bytes] = process.argv.slice(2);
const rt = await openTapRuntime({ tap, mac, addresses: [addr] });
const net = netApi(rt);
const h = createHash('sha256');
let n = 0;
const s = net.connect(19, server, () => s.write(`${bytes}\n`));
s.on('data', (d: Buffer) => {
  n += d.length;
  h.update(d);
});
s.on('error', (e) => {
  console.error(`error ${e.message}`);
  process.exit(1);
});
s.on('end', () => {
  console.log(`${n} ${h.digest('hex')}`);
  void rt.close().then(() => process.exit(0));
});
