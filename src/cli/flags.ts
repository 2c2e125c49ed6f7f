/** Command-line flags: the one sentence node:util parseArgs gives for a bad one. */

/** parseArgs's sentence for a bad flag (unknown, missing its value, a stray word), without its advice on positionals. */
export function flagError(e: unknown): string {
  return (e as Error).message.replace(/\. To specify a positional.*$/s, '').replace(/\.$/, '');
}
