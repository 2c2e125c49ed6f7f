/**
 * The nemesis checker's reading of the client's capture (docs/ARCHITECTURE.md §11): what
 * the nodes sent that reached the client, decoded by tshark (the oracle; never our own parsers),
 * and the I4 check on it: no frame for the VIP from a node after another node's first frame of a
 * later epoch.
 *
 * A frame is *for the VIP* when it comes from a node and its IPv4/IPv6 source is a VIP, or it is
 * ARP whose sender address is a VIP, or a neighbour advertisement whose target is a VIP. Nodes
 * send from their own MACs (`nodeMac(nodeId)`), so the Ethernet source names the sender. Frames
 * carry no epoch: the legitimate senders, in order, come from the nodes' own logs ("active at
 * epoch N"); a frame from any node other than the current legitimate sender, which no later
 * legitimate take-over of its own explains, is a *stale sender* frame.
 */
import { readFileSync } from 'node:fs';
import { nodeMac } from '../../../src/ha/node.ts';
import { macToString } from '../../../src/wire/address.ts';
import { runCommand, WIRE_ONLY } from '../harness.ts';

/** A frame for the VIP as the client received it. */
export interface VipFrame {
  /** Frame number in the capture (1-based) and seconds since its first frame. */
  frame: number;
  t: number;
  /** Sender: a node's name, or its MAC when it is no node's. */
  sender: string;
  what: string;
}

export interface CaptureFacts {
  /** Every frame in the capture. */
  frames: number;
  vipFrames: VipFrame[];
  /** RST segments from a VIP to the client. */
  resets: VipFrame[];
  malformed: number;
  /** The first malformed frames (number, time, sender, what tshark saw of it). */
  malformedExamples: string[];
  badChecksums: number;
  /** Lines of tshark's table that did not parse (a harness fault, never expected). */
  unreadable: number;
}

const FIELDS = [
  'frame.number',
  'frame.time_relative',
  'eth.src',
  'arp.opcode',
  'arp.src.proto_ipv4',
  'ip.src',
  'ipv6.src',
  'icmpv6.type',
  'icmpv6.nd.na.target_address',
  'tcp.srcport',
  'tcp.dstport',
  'tcp.flags.reset',
  'tcp.flags.syn',
  'tcp.seq_raw',
  'tcp.len',
  '_ws.malformed',
  'ip.checksum.status',
  'tcp.checksum.status',
];

/**
 * Reads what the nodes sent that the client received: every frame not from the client itself
 * (nor from `otherMacs`: the relay's client, seen in the server's capture) and not a beacon (EtherType 0x88b5, the nodes' data-link heartbeats, which say nothing about
 * the VIP).
 */
export async function readCapture(
  file: string,
  o: { vips: string[]; clientMac: string; nodes: string[]; otherMacs?: string[] },
): Promise<CaptureFacts> {
  const names = new Map(o.nodes.map((n) => [macToString(nodeMac(n)), n]));
  const vips = new Set(o.vips.map((v) => v.toLowerCase()));
  // The wire is judged, not the payload (harness.ts WIRE_ONLY).
  const prefs = ['ip', 'tcp'].flatMap((p) => ['-o', `${p}.check_checksum:TRUE`]).concat(WIRE_ONLY);
  const filter = [o.clientMac, ...(o.otherMacs ?? [])]
    .map((m) => `eth.src != ${m}`)
    .concat('eth.type != 0x88b5')
    .join(' && ');
  // To a file: a run's table is megabytes, more than a child's output kept in memory.
  const out = `${file}.tsv`;
  const args = ['-n', '-r', file, ...prefs, '-Y', filter, '-T', 'fields', '-E', 'occurrence=f'].concat(
    FIELDS.flatMap((f) => ['-e', f]),
  );
  const [table, count] = await Promise.all([
    runCommand(['sh', '-c', 'exec tshark "$@" > "$0"', out, ...args], { timeoutMs: 180_000 }),
    runCommand(['capinfos', '-c', '-M', file], { timeoutMs: 60_000 }),
  ]);
  if (table.code !== 0) throw new Error(`tshark could not read ${file}: ${table.stderr.trim().slice(-500)}`);
  const facts: CaptureFacts = {
    frames: Number(/Number of packets:\s*(\d+)/.exec(count.stdout)?.[1] ?? 0),
    vipFrames: [],
    resets: [],
    malformed: 0,
    malformedExamples: [],
    badChecksums: 0,
    unreadable: 0,
  };
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    if (line === '') continue;
    const cols = line.split('\t');
    if (cols.length !== FIELDS.length || !/^\d+$/.test(cols[0])) {
      facts.unreadable++;
      continue;
    }
    const [
      num,
      t,
      src,
      arpOp,
      arpIp,
      ip4,
      ip6,
      icmp6,
      naTarget,
      sport,
      dport,
      rst,
      syn,
      seq,
      len,
      malformed,
      ipSum,
      tcpSum,
    ] = cols;
    const sender = names.get(src.toLowerCase()) ?? src.toLowerCase();
    const frame = Number(num);
    const at = Number(t);
    let what: string | undefined;
    if (arpIp && vips.has(arpIp)) what = `ARP ${arpOp === '2' ? 'reply' : 'request'} from ${arpIp}`;
    else if (naTarget && vips.has(naTarget.toLowerCase())) what = `neighbour advertisement for ${naTarget}`;
    else if ((ip4 && vips.has(ip4)) || (ip6 && vips.has(ip6.toLowerCase()))) {
      const flags = `${syn === '1' || syn === 'True' ? 'SYN ' : ''}${rst === '1' || rst === 'True' ? 'RST ' : ''}`;
      what = sport
        ? `TCP ${flags}${ip4 || ip6}:${sport} > :${dport} seq ${seq} len ${len}`
        : `IP${ip6 ? 'v6' : ''} from ${ip4 || ip6}${icmp6 ? ` ICMPv6 type ${icmp6}` : ''}`;
    }
    if (what) {
      const f = { frame, t: at, sender, what };
      facts.vipFrames.push(f);
      if (sport && (rst === '1' || rst === 'True')) facts.resets.push(f);
    }
    if (malformed) {
      facts.malformed++;
      if (facts.malformedExamples.length < 3)
        facts.malformedExamples.push(
          `frame ${frame} at ${at.toFixed(3)} s from ${sender}: ${what ?? `${ip4 || ip6 || (arpOp ? 'ARP' : 'non-IP')}${sport ? ` TCP ${sport} > ${dport} len ${len}` : ''}`} (${malformed})`,
        );
    }
    if (ipSum === '0' || tcpSum === '0') facts.badChecksums++;
  }
  return facts;
}

/** Frames from a sender that was not (or no longer) the legitimate one. */
export interface StaleReport {
  count: number;
  /** Per stale node, its first stale frame and the frame of the sender that superseded it. */
  examples: string[];
}

/**
 * The I4 check. `legit` is the order in which nodes held the right to send during the capture:
 * the active at its start, then each node that became active (by epoch). A frame from the
 * current sender is fine; one from a node that becomes the sender later moves the current sender
 * on (the take-over it made); any other is stale.
 */
export function staleSenders(frames: readonly VipFrame[], legit: readonly string[]): StaleReport {
  const out: StaleReport = { count: 0, examples: [] };
  let cur = 0;
  // The first frame of each legitimate sender, for the report.
  const firstOf = new Map<number, VipFrame>();
  for (const f of frames) {
    if (legit.length === 0) break;
    if (f.sender === legit[cur]) {
      if (!firstOf.has(cur)) firstOf.set(cur, f);
      continue;
    }
    const next = legit.indexOf(f.sender, cur + 1);
    if (next > cur) {
      cur = next;
      firstOf.set(cur, f);
      continue;
    }
    out.count++;
    if (out.examples.length < 4) {
      const by = firstOf.get(cur);
      out.examples.push(
        `frame ${f.frame} (+${f.t.toFixed(3)} s) from ${f.sender}: ${f.what}, after ${legit[cur]}'s first frame ${by ? `${by.frame} (+${by.t.toFixed(3)} s)` : '(before the capture)'}`,
      );
    }
  }
  return out;
}
