#!/usr/bin/env node
// Runs every test file under test/ (or those named on the command line) on node's built-in
// runner, with TypeScript loaded through tsx. Node 20's --test takes no globs, so we list files.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'fixtures' && name !== 'support') collect(p, out);
    } else if (name.endsWith('.test.ts')) {
      out.push(p);
    }
  }
  return out;
}

const args = process.argv.slice(2);
const files =
  args.length > 0
    ? args.flatMap((a) => (statSync(a).isDirectory() ? collect(a, []) : [a]))
    : collect('test', []);
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
