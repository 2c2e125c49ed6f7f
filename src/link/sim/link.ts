/**
 * Point-to-point full-duplex links. Each direction is independent: its own settings, counters,
 * transmit queue, up/down state and random streams.
 *
 * The model of one direction, for a frame handed to `send` at time `now`:
 * 1. Capture (when the link records "as sent").
 * 2. Partition: a direction that is down drops the frame (`dropped.partition`).
 * 3. Transmit queue (only with a finite bandwidth): the queue holds every frame accepted but not
 *    yet fully serialised, the one on the wire included. If accepting this frame would exceed
 *    `queueFrames` or `queueBytes`, it is tail-dropped (`dropped.queue`). Otherwise it starts
 *    when the transmitter is free and takes `bits / bandwidth` seconds: 1500 bytes at 1 Gbit/s
 *    take exactly 12 µs.
 * 4. Loss (`dropped.loss`): the frame used the queue and the wire but never arrives.
 * 5. Duplication: a second copy arrives at the same instant, just after the first.
 * 6. For each copy, reordering (extra delay drawn in [reorderDelayUs]) and corruption (1 to
 *    `corruptBits` distinct random bits flipped) are decided independently.
 * 7. Arrival = end of serialisation + latency (+ reorder delay). A direction that is down at
 *    arrival drops the frame (`dropped.partition`): a partition takes everything sent or
 *    arriving during it, and nothing else. A crashed receiver drops it (`dropped.down`).
 * 8. Capture (when the link records "as delivered", the default), then the receiver's `receive`.
 *
 * Every fault has its own random stream per direction, derived from the network seed and the
 * link's name, so turning one fault on or adding a link does not shift any other decision.
 * A frame is copied once on send (the sender may reuse its buffer) and once per duplicate; each
 * delivered frame owns its ArrayBuffer, so a receiver may keep it or write to it.
 */
import type { PcapWriter } from '../pcap.ts';
import type { Network, NodeHandle } from './network.ts';
import { EV_DELIVER, EV_LINK_STATE } from './queue.ts';
import type { Rng } from './rng.ts';

export interface DirectionOptions {
  /** Propagation delay, µs. Default 0. */
  latencyUs?: number;
  /** Bits per second; 0 or undefined = infinite (no serialisation delay, no queueing). */
  bandwidthBps?: number;
  /** Transmit queue limit in frames (only with a finite bandwidth). Default unlimited. */
  queueFrames?: number;
  /** Transmit queue limit in bytes (only with a finite bandwidth). Default unlimited. */
  queueBytes?: number;
  /** Probability a frame is lost. */
  loss?: number;
  /** Probability a frame is delivered twice. */
  duplicate?: number;
  /** Probability a frame is held back by an extra delay (so later frames can overtake it). */
  reorder?: number;
  /** Extra delay range for reordered frames, µs, integers, both inclusive. Default [1, 1000]. */
  reorderDelayUs?: readonly [number, number];
  /** Probability a frame has bits flipped. */
  corrupt?: number;
  /** Maximum number of bits flipped in a corrupted frame (at least 1 is). Default 1. */
  corruptBits?: number;
}

export interface PartitionChange {
  /** Virtual time, µs. */
  at: number;
  up: boolean;
  /** Only one direction (a one-way partition). Default both. */
  dir?: 'ab' | 'ba';
}

export type CaptureAt = 'deliver' | 'send';

export interface LinkOptions extends DirectionOptions {
  /** Unique per network; keys the link's random streams. Default `<a>.<port>-<b>.<port>`. */
  name?: string;
  /** Overrides for the a→b direction. */
  ab?: DirectionOptions;
  /** Overrides for the b→a direction. */
  ba?: DirectionOptions;
  /** Partitions: the link goes down or up at these virtual times. */
  schedule?: readonly PartitionChange[];
  /** Record both directions of this link into this writer. */
  capture?: PcapWriter;
  /** 'deliver' (default): frames as they reach the far end, after loss and corruption, stamped
   * with the arrival time. 'send': frames exactly as sent, stamped with the send time. */
  captureAt?: CaptureAt;
}

export interface DropCounters {
  loss: number;
  queue: number;
  partition: number;
  /** The receiving node was crashed. */
  down: number;
}

export interface DirectionStats {
  /** Frames handed to `send`. */
  sent: number;
  bytesSent: number;
  /** Frames handed to the receiver (duplicates included). */
  delivered: number;
  bytesDelivered: number;
  dropped: DropCounters;
  /** Extra copies made. */
  duplicated: number;
  /** Copies given an extra reordering delay (whether or not something overtook them). */
  reordered: number;
  /** Copies with flipped bits. */
  corrupted: number;
}

function checkProbability(name: string, p: number | undefined): void {
  if (p !== undefined && !(p >= 0 && p <= 1))
    throw new Error(`link option ${name} must be a probability between 0 and 1, got ${p}.`);
}

function checkNonNegative(name: string, v: number | undefined): void {
  if (v !== undefined && !(v >= 0 && Number.isFinite(v)))
    throw new Error(`link option ${name} must be a finite non-negative number, got ${v}.`);
}

function validate(o: DirectionOptions): void {
  checkNonNegative('latencyUs', o.latencyUs);
  checkNonNegative('bandwidthBps', o.bandwidthBps);
  checkNonNegative('queueFrames', o.queueFrames);
  checkNonNegative('queueBytes', o.queueBytes);
  checkProbability('loss', o.loss);
  checkProbability('duplicate', o.duplicate);
  checkProbability('reorder', o.reorder);
  checkProbability('corrupt', o.corrupt);
  if (o.corruptBits !== undefined && !(Number.isInteger(o.corruptBits) && o.corruptBits >= 1))
    throw new Error(`link option corruptBits must be an integer >= 1, got ${o.corruptBits}.`);
  const r = o.reorderDelayUs;
  if (r !== undefined && !(r.length === 2 && r[0] >= 0 && r[1] >= r[0] && Number.isFinite(r[1])))
    throw new Error('link option reorderDelayUs must be [min, max] with 0 <= min <= max (µs).');
}

export class LinkDirection {
  readonly stats: DirectionStats = {
    sent: 0,
    bytesSent: 0,
    delivered: 0,
    bytesDelivered: 0,
    dropped: { loss: 0, queue: 0, partition: 0, down: 0 },
    duplicated: 0,
    reordered: 0,
    corrupted: 0,
  };
  /** False while partitioned. */
  up = true;

  latencyUs = 0;
  bandwidthBps = 0;
  queueFrames = Number.POSITIVE_INFINITY;
  queueBytes = Number.POSITIVE_INFINITY;
  loss = 0;
  duplicate = 0;
  reorder = 0;
  reorderMinUs = 1;
  reorderMaxUs = 1000;
  corrupt = 0;
  corruptBits = 1;

  /** @internal capture target, set through Link.capture. */
  pcap: PcapWriter | undefined = undefined;
  /** @internal */
  captureAtSend = false;

  // Transmit queue: end-of-serialisation times and sizes of frames not yet fully sent (FIFO).
  private busyUntil = 0;
  private qEnd: number[] = [];
  private qLen: number[] = [];
  private qHead = 0;
  private qBytes = 0;

  private readonly lossRng: Rng;
  private readonly dupRng: Rng;
  private readonly reorderRng: Rng;
  private readonly corruptRng: Rng;

  constructor(
    private readonly net: Network,
    readonly link: Link,
    /** `<link name>/ab` or `<link name>/ba`. */
    readonly name: string,
    readonly from: NodeHandle,
    readonly fromPort: number,
    readonly to: NodeHandle,
    readonly toPort: number,
    rng: Rng,
  ) {
    this.lossRng = rng.derive('loss');
    this.dupRng = rng.derive('duplicate');
    this.reorderRng = rng.derive('reorder');
    this.corruptRng = rng.derive('corrupt');
  }

  /** Changes settings (only those given). Takes effect for frames sent from now on. */
  configure(o: DirectionOptions): void {
    validate(o);
    if (o.latencyUs !== undefined) this.latencyUs = o.latencyUs;
    if (o.bandwidthBps !== undefined) this.bandwidthBps = o.bandwidthBps;
    if (o.queueFrames !== undefined) this.queueFrames = o.queueFrames;
    if (o.queueBytes !== undefined) this.queueBytes = o.queueBytes;
    if (o.loss !== undefined) this.loss = o.loss;
    if (o.duplicate !== undefined) this.duplicate = o.duplicate;
    if (o.reorder !== undefined) this.reorder = o.reorder;
    if (o.reorderDelayUs !== undefined) {
      this.reorderMinUs = o.reorderDelayUs[0];
      this.reorderMaxUs = o.reorderDelayUs[1];
    }
    if (o.corrupt !== undefined) this.corrupt = o.corrupt;
    if (o.corruptBits !== undefined) this.corruptBits = o.corruptBits;
  }

  /** Partition (false) or heal (true) this direction now. */
  setUp(up: boolean): void {
    this.up = up;
  }

  /** Frames in the transmit queue now (the one being serialised included). */
  get queuedFrames(): number {
    this.drain(this.net.now);
    return this.qEnd.length - this.qHead;
  }

  /** Bytes in the transmit queue now (the frame being serialised included). */
  get queuedBytes(): number {
    this.drain(this.net.now);
    return this.qBytes;
  }

  /** Serialisation time of `bytes` on this direction, µs (0 at infinite bandwidth). */
  serialisationUs(bytes: number): number {
    return this.bandwidthBps > 0 ? (bytes * 8e6) / this.bandwidthBps : 0;
  }

  private drain(now: number): void {
    const ends = this.qEnd;
    let h = this.qHead;
    while (h < ends.length && ends[h] <= now) {
      this.qBytes -= this.qLen[h];
      h++;
    }
    if (h === ends.length) {
      if (h === 0) return;
      ends.length = 0;
      this.qLen.length = 0;
      h = 0;
    } else if (h > 1024 && h * 2 > ends.length) {
      ends.splice(0, h);
      this.qLen.splice(0, h);
      h = 0;
    }
    this.qHead = h;
  }

  /** Transmits a copy of `frame` (see the module comment for the model). */
  send(frame: Uint8Array): void {
    const now = this.net.now;
    const len = frame.length;
    const st = this.stats;
    st.sent++;
    st.bytesSent += len;
    if (this.pcap !== undefined && this.captureAtSend) this.pcap.write(now, frame);
    if (!this.up) {
      st.dropped.partition++;
      return;
    }
    let departure = now;
    if (this.bandwidthBps > 0) {
      this.drain(now);
      if (this.qEnd.length - this.qHead + 1 > this.queueFrames || this.qBytes + len > this.queueBytes) {
        st.dropped.queue++;
        return;
      }
      departure = (this.busyUntil > now ? this.busyUntil : now) + (len * 8e6) / this.bandwidthBps;
      this.busyUntil = departure;
      this.qEnd.push(departure);
      this.qLen.push(len);
      this.qBytes += len;
    }
    if (this.loss > 0 && this.lossRng.chance(this.loss)) {
      st.dropped.loss++;
      return;
    }
    const arrival = departure + this.latencyUs;
    const copy = copyFrame(frame);
    if (this.duplicate > 0 && this.dupRng.chance(this.duplicate)) {
      st.duplicated++;
      const dup = copyFrame(frame);
      this.launch(copy, arrival);
      this.launch(dup, arrival);
    } else {
      this.launch(copy, arrival);
    }
  }

  private launch(frame: Uint8Array, arrival: number): void {
    if (this.reorder > 0 && this.reorderRng.chance(this.reorder)) {
      this.stats.reordered++;
      arrival += this.reorderRng.int(this.reorderMinUs, this.reorderMaxUs);
    }
    if (this.corrupt > 0 && frame.length > 0 && this.corruptRng.chance(this.corrupt)) {
      this.stats.corrupted++;
      flipBits(frame, this.corruptRng, this.corruptBits);
    }
    this.net.queue.push(arrival, EV_DELIVER, this, frame, 0);
  }

  /** @internal the network's handler for EV_DELIVER. */
  arrive(frame: Uint8Array, now: number): void {
    const st = this.stats;
    if (!this.up) {
      st.dropped.partition++;
      return;
    }
    if (!this.to.alive) {
      st.dropped.down++;
      return;
    }
    st.delivered++;
    st.bytesDelivered += frame.length;
    if (this.pcap !== undefined && !this.captureAtSend) this.pcap.write(now, frame);
    this.net.deliver(this.to, this.toPort, frame);
  }
}

/** A copy that owns its whole ArrayBuffer (cheaper than `slice` in V8). */
function copyFrame(frame: Uint8Array): Uint8Array {
  const c = new Uint8Array(frame.length);
  c.set(frame);
  return c;
}

/** Flips between 1 and `maxBits` distinct random bits of `frame` in place. */
function flipBits(frame: Uint8Array, rng: Rng, maxBits: number): void {
  const totalBits = frame.length * 8;
  const n = Math.min(maxBits > 1 ? rng.int(1, maxBits) : 1, totalBits);
  let first = -1;
  let second = -1;
  for (let i = 0; i < n; i++) {
    let bit = rng.int(0, totalBits - 1);
    // Keep the first two flips distinct so they cannot cancel; later collisions are harmless
    // (the frame is already corrupted) and avoiding them would need a set per frame.
    for (let tries = 0; (bit === first || bit === second) && tries < 16; tries++)
      bit = rng.int(0, totalBits - 1);
    if (i === 0) first = bit;
    else if (i === 1) second = bit;
    frame[bit >>> 3] ^= 0x80 >>> (bit & 7);
  }
}

export class Link {
  readonly ab: LinkDirection;
  readonly ba: LinkDirection;

  constructor(
    net: Network,
    readonly name: string,
    readonly a: NodeHandle,
    readonly aPort: number,
    readonly b: NodeHandle,
    readonly bPort: number,
    opts: LinkOptions,
    rng: Rng,
  ) {
    validate(opts);
    if (opts.ab) validate(opts.ab);
    if (opts.ba) validate(opts.ba);
    this.ab = new LinkDirection(net, this, `${name}/ab`, a, aPort, b, bPort, rng.derive('ab'));
    this.ba = new LinkDirection(net, this, `${name}/ba`, b, bPort, a, aPort, rng.derive('ba'));
    this.ab.configure(opts);
    this.ba.configure(opts);
    if (opts.ab) this.ab.configure(opts.ab);
    if (opts.ba) this.ba.configure(opts.ba);
    if (opts.capture) this.capture(opts.capture, opts.captureAt);
    if (opts.schedule) {
      for (const c of opts.schedule) {
        if (!(c.at >= 0)) throw new Error(`link ${name}: a partition change needs a time >= 0, got ${c.at}.`);
        if (c.dir !== 'ba')
          net.queue.push(Math.max(c.at, net.now), EV_LINK_STATE, this.ab, null, c.up ? 1 : 0);
        if (c.dir !== 'ab')
          net.queue.push(Math.max(c.at, net.now), EV_LINK_STATE, this.ba, null, c.up ? 1 : 0);
      }
    }
  }

  /** Changes settings of both directions (only those given). */
  configure(o: DirectionOptions): void {
    this.ab.configure(o);
    this.ba.configure(o);
  }

  /** Partition (false) or heal (true) both directions now. */
  setUp(up: boolean): void {
    this.ab.up = up;
    this.ba.up = up;
  }

  get up(): boolean {
    return this.ab.up && this.ba.up;
  }

  /** Records both directions into `writer` (replacing any previous capture of this link). */
  capture(writer: PcapWriter | undefined, at: CaptureAt = 'deliver'): void {
    this.ab.pcap = writer;
    this.ba.pcap = writer;
    this.ab.captureAtSend = at === 'send';
    this.ba.captureAtSend = at === 'send';
  }

  /** The direction that transmits from `node`'s side. */
  from(node: NodeHandle): LinkDirection {
    if (node === this.a) return this.ab;
    if (node === this.b) return this.ba;
    throw new Error(`link ${this.name} does not connect node ${node.name}.`);
  }
}
