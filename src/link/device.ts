/**
 * What the stack needs from a link: frames in, frames out. A TAP device, the simulator's port,
 * a fault injector wrapped around either: all the same to the layers above.
 */
export interface LinkDevice {
  /** Largest frame payload (the MTU: IP packet size) the link carries. */
  readonly mtu: number;
  /**
   * Queues one Ethernet frame for transmission; the device copies it (the caller may reuse its
   * buffer at once). Frames queued in one turn of the event loop leave together at `flush()`
   * or at the end of the turn.
   */
  send(frame: Uint8Array, segmentSize?: number): void;
  /**
   * Set when the link takes TCP frames larger than its MTU and cuts them into segments itself
   * (generic segmentation offload): the largest such frame, Ethernet header included. `send` with
   * `segmentSize` hands one: an IPv4 or IPv6 TCP frame whose checksum field holds the folded
   * pseudo-header sum (Linux's CHECKSUM_PARTIAL), every piece but the last `segmentSize` payload
   * bytes long.
   */
  readonly gsoMaxFrame?: number;
  /** Writes whatever `send` queued, now. */
  flush(): void;
  /**
   * Registers the receiver: called with every batch of frames that arrived, in order. Each frame
   * is owned by the receiver (not reused by the device).
   */
  onReceive(handler: (frames: Uint8Array[]) => void): void;
  /** Releases the device; no callbacks after it returns. */
  close(): Promise<void>;
}

/**
 * The EtherType of the HA nodes' own control frames on the data link (beacons, src/ha/beacon.ts;
 * IEEE 802 local experimental 1): not frames for the VIP, so no gate or fence holds them back.
 */
export const CONTROL_ETHERTYPE = 0x88b5;
