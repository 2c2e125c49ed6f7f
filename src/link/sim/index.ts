/**
 * The deterministic simulated network (docs/ARCHITECTURE.md §2, §11): a virtual clock in
 * microseconds, a seeded RNG, full-duplex links with latency, bandwidth, queue limits, loss,
 * duplication, reordering, corruption and partitions, a learning switch, and pcap capture of any
 * link. Same seed + same scenario = the same run, byte for byte.
 *
 * ```ts
 * const net = new Network({ seed });
 * const a = net.attach(new Recorder(), 'a');
 * const sw = net.attach(new LearningSwitch({ ports: 4 }), 'sw');
 * net.connect(a, 0, sw, 0, { latencyUs: 50, bandwidthBps: 1e9, capture: pcap });
 * a.node.send(0, frame);
 * net.run({ until: 1_000_000 });
 * ```
 */
export type {
  CaptureAt,
  DirectionOptions,
  DirectionStats,
  DropCounters,
  LinkOptions,
  PartitionChange,
} from './link.ts';
export { Link, LinkDirection } from './link.ts';
export type { NetworkOptions, PortHandle, RunOptions, RunResult } from './network.ts';
export { Network, NodeHandle } from './network.ts';
export type { SimNode } from './node.ts';
export type { ReceivedFrame } from './recorder.ts';
export { Recorder } from './recorder.ts';
export { Rng } from './rng.ts';
export type { MacEntry, SwitchOptions, SwitchStats } from './switch.ts';
export { LearningSwitch } from './switch.ts';
