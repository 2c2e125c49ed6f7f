/**
 * The client side of the simulator's example services (sim.ts: echo, download, request/response):
 * one connection's application, which writes what its stream may, reads and checks what arrived
 * (byte-exact against the known patterns) and closes when its stream is complete. Shared by
 * `takeover demo` and the take-over scenarios of the tests and benchmarks.
 */

import { checkPattern, fillPattern } from '../link/sim/pattern.ts';
import type { StackConnection } from '../stack/stack.ts';
import { DOWNLOAD_STREAM, REQUEST_BYTES, RESPONSE_BYTES, responseFor } from './sim.ts';

export type ClientKind = 'echo' | 'download' | 'rr';

export interface ClientSizes {
  /** Bytes each echo connection sends (and expects back). */
  echoBytes: number;
  /** Bytes the download server sends. */
  downloadBytes: number;
  /** Requests each request/response connection makes. */
  requests: number;
}

/** Responses a request/response connection takes in one `drive` (bounds a call's work). */
const MAX_ROUNDS = 1000;

export class SimClientConn {
  /** Bytes written (echo data, requests) and read (every kind). */
  sent = 0;
  got = 0;
  /** Bytes read and found exact (request/response: whole exact responses). */
  verified = 0;
  /** First bad offset (echo, download) or request index (rr); -1 while all is exact. */
  bad = -1;
  /** The client closed its side (its stream is complete). */
  closed = false;
  /** rr: requests answered. */
  answered = 0;
  private req: Uint8Array | undefined;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(
    readonly kind: ClientKind,
    readonly c: StackConnection,
    readonly sizes: ClientSizes,
  ) {}

  /** Everything the stream should carry arrived, exact. */
  get complete(): boolean {
    if (this.bad >= 0) return false;
    if (this.kind === 'echo')
      return this.verified === this.sizes.echoBytes && this.got === this.sizes.echoBytes;
    if (this.kind === 'download')
      return this.verified === this.sizes.downloadBytes && this.got === this.sizes.downloadBytes;
    return this.answered === this.sizes.requests;
  }

  /**
   * Moves the stream on. `onRead(n)` hears of every read; returns whether anything was written,
   * read or closed (the caller then polls the connection).
   */
  drive(onRead?: (n: number) => void): boolean {
    const t = this.c.tcp;
    let acted = false;
    if (this.kind === 'echo') {
      const stream = this.c.localPort;
      while (this.sent < this.sizes.echoBytes && t.writable > 0) {
        const chunk = new Uint8Array(Math.min(this.sizes.echoBytes - this.sent, t.writable, 16384));
        fillPattern(stream, this.sent, chunk);
        const n = t.write(chunk);
        if (n === 0) break;
        this.sent += n;
        acted = true;
      }
      acted = this.readChecked(stream, onRead) || acted;
      if (this.got >= this.sizes.echoBytes && !this.closed) acted = this.close();
    } else if (this.kind === 'download') {
      acted = this.readChecked(DOWNLOAD_STREAM, onRead);
      if (t.eof && !this.closed) acted = this.close();
    } else {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        if (this.req === undefined && this.answered < this.sizes.requests) {
          this.req = new Uint8Array(REQUEST_BYTES);
          fillPattern(this.c.localPort, this.answered * REQUEST_BYTES, this.req);
          this.pending = [];
          this.pendingBytes = 0;
        }
        if (this.req && this.sent < (this.answered + 1) * REQUEST_BYTES && t.writable >= REQUEST_BYTES) {
          t.write(this.req);
          this.sent += REQUEST_BYTES;
          acted = true;
        }
        for (let d = t.read(); d; d = t.read()) {
          this.pending.push(d);
          this.pendingBytes += d.length;
          this.got += d.length;
          onRead?.(d.length);
          acted = true;
        }
        if (!(this.req && this.pendingBytes >= RESPONSE_BYTES)) break;
        this.answer(this.req);
      }
      if (this.answered >= this.sizes.requests && !this.closed) acted = this.close();
    }
    return acted;
  }

  private readChecked(stream: number, onRead: ((n: number) => void) | undefined): boolean {
    const t = this.c.tcp;
    let acted = false;
    for (let d = t.read(); d; d = t.read()) {
      const bad = checkPattern(stream, this.got, d);
      if (bad >= 0 && this.bad < 0) this.bad = this.got + bad;
      if (this.bad < 0) this.verified += d.length;
      this.got += d.length;
      onRead?.(d.length);
      acted = true;
    }
    return acted;
  }

  /** Checks the response gathered for `req` (a longer one is wrong too) and moves to the next. */
  private answer(req: Uint8Array): void {
    const resp = new Uint8Array(this.pendingBytes);
    let off = 0;
    for (const p of this.pending) {
      resp.set(p, off);
      off += p.length;
    }
    const want = responseFor(req);
    if (resp.length !== RESPONSE_BYTES || resp.some((v, i) => v !== want[i])) {
      if (this.bad < 0) this.bad = this.answered;
    } else if (this.bad < 0) this.verified += RESPONSE_BYTES;
    this.answered++;
    this.req = undefined;
    this.pending = [];
    this.pendingBytes = 0;
  }

  private close(): boolean {
    this.closed = true;
    this.c.tcp.close();
    return true;
  }
}
