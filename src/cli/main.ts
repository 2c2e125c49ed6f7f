/**
 * The `takeover` command line. Sub-commands arrive with the layers that implement them.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { flagError } from './flags.ts';

const USAGE = `usage: takeover <command>

commands:
  demo [--json] [--seed N] [--connections N] [--crash-at-ms N] [--loss P]
              an active/standby pair on a simulated network, the active killed mid-stream,
              the standby taking over every connection (no root needed)
  node --config <file> [--log-format pretty|json] | --example-config
              run one node of a pair on a TAP device (root or CAP_NET_ADMIN)
  relay --config <file> [--log-format pretty|json] | --example-config
              a node of a pair whose application is a TCP relay to unmodified servers
  config schema node|relay
              print the JSON Schema of a node's or a relay's config file (for editors)
  status (--socket <path> | --config <file>) [--json]
              role, epoch, connections, replication lag and last take-over of a running node
  switchover (--socket <path> | --config <file>) [--timeout-ms N] [--json]
              planned: the active hands every connection to its synced standby and rejoins
              as its standby (then stop and upgrade it, and switch back)
  version     print the version
  help        this text`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return 0;
    case 'version':
    case '--version':
      console.log(version());
      return 0;
    case 'node':
    case 'relay': {
      let values: { config?: string; 'example-config'?: boolean; 'log-format'?: string };
      try {
        ({ values } = parseArgs({
          args: rest,
          strict: true,
          allowPositionals: false,
          options: {
            config: { type: 'string' },
            'example-config': { type: 'boolean' },
            'log-format': { type: 'string' },
          },
        }));
      } catch (e) {
        console.error(
          `takeover ${cmd}: ${flagError(e)}; usage: takeover ${cmd} --config <file> [--log-format pretty|json] | --example-config.`,
        );
        return 2;
      }
      const { LOG_FORMATS } = await import('./log.ts');
      const logFormat = values['log-format'] ?? 'pretty';
      if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) {
        console.error(
          `takeover ${cmd}: --log-format ${logFormat} is not one: say --log-format pretty (lines for people, the default) or --log-format json (one pino record per line).`,
        );
        return 2;
      }
      if (values['example-config'] && values.config === undefined) {
        const { NODE_EXAMPLE, RELAY_EXAMPLE } = await import('./examples.ts');
        console.log(JSON.stringify(cmd === 'node' ? NODE_EXAMPLE : RELAY_EXAMPLE, null, 2));
        return 0;
      }
      if (values.config === undefined || values['example-config']) {
        console.error(
          values['example-config']
            ? `takeover ${cmd}: --config and --example-config do not go together: run with one of them.`
            : `takeover ${cmd}: give the config file: takeover ${cmd} --config <file>.`,
        );
        return 2;
      }
      const { runNode } = await import('./node.ts');
      return runNode(values.config, cmd, { logFormat: logFormat as 'pretty' | 'json' });
    }
    case 'config': {
      if (rest.length !== 2 || rest[0] !== 'schema' || (rest[1] !== 'node' && rest[1] !== 'relay')) {
        console.error('takeover config: the one sub-command is `takeover config schema node|relay`.');
        return 2;
      }
      if (rest[1] === 'node') {
        const { nodeJsonSchema } = await import('./config.ts');
        console.log(JSON.stringify(nodeJsonSchema(), null, 2));
      } else {
        const { relayJsonSchema } = await import('../relay/config.ts');
        console.log(JSON.stringify(relayJsonSchema(), null, 2));
      }
      return 0;
    }
    case 'status': {
      const { runStatus } = await import('./status.ts');
      return runStatus(rest);
    }
    case 'switchover': {
      const { runSwitchover } = await import('./status.ts');
      return runSwitchover(rest);
    }
    case 'demo': {
      const { runDemo } = await import('./demo.ts');
      return runDemo(rest, (line) => console.log(line));
    }
    default:
      console.error(`takeover: unknown command '${cmd}'. Run 'takeover help' for the list.`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exit(code);
  },
  (e: Error) => {
    console.error(`takeover: ${e.stack ?? e.message}`);
    process.exit(1);
  },
);
