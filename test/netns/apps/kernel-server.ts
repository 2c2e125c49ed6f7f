/** The same services on the kernel's TCP (node:net): the baseline. Prints `ready`. */
import net from 'node:net';
import { serveAll } from './services.ts';

serveAll(net, process.argv[2]);
setTimeout(() => console.log('ready'), 50);
