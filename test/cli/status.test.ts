/**
 * `takeover status`'s text: role, peer, lag and the last take-over with what detected it and the
 * stall the node saw.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { NodeStatus } from '../../src/cli/node.ts';
import { formatStatus } from '../../src/cli/status.ts';

const base: NodeStatus = {
  nodeId: 'b',
  role: 'active',
  epoch: 2,
  mode: 'sync',
  peer: 'none',
  synced: false,
  degraded: true,
  connections: 202,
  rssMB: 180,
  replication: { lsn: 0, inFlight: 0, batches: 0, bytes: 0, lagBatches: 0 },
  mirror: { connections: 0, bytes: 0, lsn: 0 },
  lastTakeover: null,
};

describe('takeover status text', () => {
  test('no take-over yet', () => {
    const t = formatStatus(base);
    assert.match(t, /^role {8}active \(degraded: no standby holds the connections\)$/m);
    assert.match(t, /^last take-over none$/m);
    assert.match(t, /^memory {6}180 MB resident$/m);
  });

  test('the last take-over: cause, detection, restore, and the stall once connections moved', () => {
    const lt = {
      at: '2026-11-27T16:00:00.000Z',
      cause: 'link closed' as const,
      detectionMs: 0.4,
      stallMs: null,
      resumed: 0,
      connections: 202,
      epoch: 2,
      restoreMs: 31.5,
    };
    let t = formatStatus({ ...base, lastTakeover: lt });
    assert.match(
      t,
      /last take-over 2026-11-27T16:00:00\.000Z, epoch 2: 202 connection\(s\) restored in 31\.5 ms/,
    );
    assert.match(t, /detected 0\.4 ms after the active's last word \(link closed\)/);
    assert.match(t, /no peer has acknowledged output pending at the take-over yet/);
    t = formatStatus({ ...base, lastTakeover: { ...lt, stallMs: 137.2, resumed: 201 } });
    assert.match(
      t,
      /201 connection\(s\) with output pending had it acknowledged, the last 137\.2 ms after that word/,
    );
  });
});
