/**
 * An HA node on a Runtime: what `takeover node` and `takeover relay` wire, and the simulator's
 * relay pair too (src/sim/relay-pair.ts), so both run the same glue. Beacons and the data-link
 * evidence reach the node before the stack; its polls and its per-turn work (the replication
 * batch) ride the runtime's turns; sockets' checkpoints and restore tags go to its replicator.
 */
import type { Runtime } from '../api/runtime.ts';
import type { GatedDevice } from '../link/gate.ts';
import { isBeaconFrame } from './beacon.ts';
import { jsonBytes } from './log.ts';
import { type HaNode, nodeMac } from './node.ts';

export interface BindOptions {
  /** The standby listens on the data link (README "Standby listens"). */
  snoop?: boolean;
  /** Fed at every poll and turn (the pulse thread's watchdog: a busy main thread is alive). */
  tick?: () => void;
}

export function bindHa(
  rt: Runtime,
  ha: HaNode,
  gate: GatedDevice,
  nodeId: string,
  o: BindOptions = {},
): void {
  if (o.snoop) {
    gate.sourceMac = nodeMac(nodeId);
    gate.onMutedReceive = (f) => ha.snoop(f, rt.now());
  }
  gate.intercept = (f) => {
    const now = rt.now();
    if (isBeaconFrame(f)) {
      ha.beacon(f, now);
      rt.kick();
      return true;
    }
    ha.heard(now);
    return false;
  };
  rt.setHook({
    pollAt: () => {
      // -Infinity is due now (a beacon never sent yet): only +Infinity means no poll. (Mapping
      // both to "none" left a standby that had not beaconed yet unpolled: it never took over.)
      const t = ha.pollAt();
      return t === Number.POSITIVE_INFINITY ? undefined : t;
    },
    poll: (now) => {
      // The node polls at least every heartbeat: an idle main thread still feeds the watchdog.
      o.tick?.();
      ha.poll(now);
    },
    afterTurn: (now) => {
      o.tick?.();
      ha.afterTurn(now);
    },
  });
  rt.checkpointSink = (c, value, tag) =>
    tag ? ha.replicator?.tag(c, jsonBytes(value)) : ha.replicator?.checkpoint(c, jsonBytes(value));
}
