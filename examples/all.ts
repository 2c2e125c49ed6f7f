/** The three examples on one node: echo (7), download (19), HTTP (80). */
import type { NetApi } from '../src/api/index.ts';
import download from './download.ts';
import echo from './echo.ts';
import http from './http.ts';

export default function all(net: NetApi): void {
  echo(net, {});
  download(net, {});
  http(net, {});
}
