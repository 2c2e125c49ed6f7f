/**
 * The `takeover` command line. Sub-commands arrive with the layers that implement them.
 */
import { readFileSync } from 'node:fs';

const USAGE = `usage: takeover <command>

commands:
  version     print the version
  help        this text

Session take-over (node, status, demo, relay) is not built yet: see the README's status section.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function main(argv: string[]): number {
  const [cmd] = argv;
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
    default:
      console.error(`takeover: unknown command '${cmd}'. Run 'takeover help' for the list.`);
      return 2;
  }
}

process.exitCode = main(process.argv.slice(2));
