/**
 * Parse errors. A parser never throws for any input: it returns either a validated record or a
 * `WireError` that says which layer refused the bytes and why. Callers count and drop.
 *
 * `WireError` deliberately does not extend `Error`: capturing a stack trace for every hostile
 * frame would turn a flood of garbage into a CPU problem.
 */

export type WireErrorKind =
  /** Fewer bytes than a header or a length field requires. */
  | 'truncated'
  /** A field holds a value the format forbids (bad version, bad option length, ...). */
  | 'malformed'
  /** The checksum does not verify. */
  | 'checksum'
  /** Well-formed, but not something this stack handles (unknown EtherType, ARP for non-IPv4, ...). */
  | 'unsupported';

export class WireError {
  constructor(
    /** The codec that refused the input: 'ethernet', 'ipv4', 'tcp', ... */
    readonly layer: string,
    readonly kind: WireErrorKind,
    /** One human sentence, for logs and counters' labels. */
    readonly reason: string,
  ) {}

  toString(): string {
    return `${this.layer}: ${this.kind}: ${this.reason}`;
  }
}

/** A validated record of type `T`, or the reason there is none. */
export type Parsed<T> = T | WireError;

export function isWireError(x: unknown): x is WireError {
  return x instanceof WireError;
}
