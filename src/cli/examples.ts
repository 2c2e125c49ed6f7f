/**
 * `takeover node --example-config` and `takeover relay --example-config`: a config to start from,
 * valid as printed once `./key` exists (`openssl rand -hex 32 > key`) and, for a node, the
 * application module is where it says (test/cli/examples.test.ts parses both).
 */

/** Node a of a pair hosting the example applications (node b: role "standby", addresses swapped). */
export const NODE_EXAMPLE = {
  nodeId: 'a',
  role: 'active',
  tap: { name: 'tka' },
  vip: ['198.18.0.100/24'],
  replication: {
    listen: '198.18.1.1:7400',
    peer: '198.18.1.2:7400',
    keyFile: './key',
    mode: 'sync',
    heartbeatMs: 10,
    timeoutMs: 50,
  },
  app: { module: './examples/all.ts' },
};

/** Relay node a in front of two Redis servers (README "Relay"). */
export const RELAY_EXAMPLE = {
  nodeId: 'a',
  role: 'active',
  tap: { name: 'tka' },
  vip: ['198.18.0.100/24', '198.18.3.100/24'],
  replication: { listen: '198.18.1.1:7400', peer: '198.18.1.2:7400', keyFile: './key' },
  source: ['198.18.3.100'],
  frontends: [{ name: 'redis', bind: ['198.18.0.100:6379'], backend: 'redis', maxconn: 10000 }],
  backends: [
    {
      name: 'redis',
      balance: 'roundrobin',
      retries: 3,
      proxyProtocol: 'off',
      servers: [
        { name: 'r1', address: '198.18.3.10:6379' },
        { name: 'r2', address: '198.18.3.11:6379', backup: true },
      ],
      health: { send: 'PING\r\n', expect: '+PONG' },
    },
  ],
  health: { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 },
  timeouts: { connectMs: 5000, clientMs: 0, serverMs: 0 },
};
