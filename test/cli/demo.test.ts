/**
 * `takeover demo`: the embedded take-over demo on the simulated network. Every run must PASS
 * (complete, byte-exact streams, no RST, one take-over, no frame from a non-active node), print
 * a readable timeline, and be a function of its seed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDemoArgs, runDemo } from '../../src/cli/demo.ts';

interface DemoJson {
  takeovers: number;
  connections: number;
  bytesVerified: number;
  resets: number;
  stallMs: number;
  cause: string | null;
  pass: boolean;
  seed: number;
  completed: number;
  restored: number;
  errors: number;
  crashAtMs: number | null;
  takeoverAtMs: number | null;
  detectionMs: number | null;
  framesWhileNotActive: number;
  failures: string[];
}

async function run(argv: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const code = await runDemo(argv, (l) => lines.push(l));
  return { code, lines };
}

async function runJson(argv: string[]): Promise<{ code: number; j: DemoJson; raw: string }> {
  const { code, lines } = await run([...argv, '--json']);
  assert.equal(lines.length, 1, `--json prints one line, got:\n${lines.join('\n')}`);
  return { code, j: JSON.parse(lines[0]) as DemoJson, raw: lines[0] };
}

function assertPass(code: number, j: DemoJson, what: string): void {
  assert.equal(code, 0, `${what}: exit ${code}, failures: ${j.failures.join('; ')}`);
  assert.equal(j.pass, true, what);
  assert.equal(j.takeovers, 1, what);
  assert.equal(j.completed, j.connections, what);
  assert.equal(j.resets, 0, what);
  assert.equal(j.errors, 0, what);
  assert.equal(j.framesWhileNotActive, 0, what);
  assert.ok(j.bytesVerified > 0, what);
}

describe('takeover demo', () => {
  test('default run: one take-over at the link close, 6 connections byte-exact, no reset, a bounded stall', async () => {
    const { code, j } = await runJson([]);
    assertPass(code, j, 'default');
    assert.equal(j.connections, 6);
    assert.equal(j.seed, 1);
    assert.equal(j.restored, 6, 'the default crash lands mid-stream: every connection is live');
    // The client's own RTO (200 ms) bounds the stall: bytes it sent to the dead node wait for it.
    assert.ok(j.stallMs > 0 && j.stallMs <= 300, `stall ${j.stallMs} ms outside (0, 300]`);
    assert.equal(j.cause, 'link closed');
    // The link closes at once; the take-over waits for the lease b granted (50 ms) and its margin.
    assert.ok(
      j.detectionMs !== null && j.detectionMs >= 50 && j.detectionMs <= 60,
      `detection ${j.detectionMs}`,
    );
    assert.ok(j.crashAtMs !== null && j.takeoverAtMs !== null && j.takeoverAtMs > j.crashAtMs);
  });

  test('the text output is a timeline with a PASS verdict, in 80 columns', async () => {
    const { code, lines } = await run([]);
    assert.equal(code, 0);
    const text = lines.join('\n');
    const markers = [
      /^\s+0\.\d ms {2}a is active \(epoch 1\)/m,
      /b is synced/,
      /client opens 6 connection\(s\)/,
      /client connected: 6\/6/,
      /progress: .* verified/,
      /ms {2}a killed \(kill -9\) with 6 connection\(s\) mid-stream/,
      /ms {2}b takes over \(epoch 2\): 6 connection\(s\) restored/,
      /a's replication link closed/,
      /\d+\.\d ms after a was last heard/,
      /gratuitous ARP|unsolicited NA/,
      /traffic resumes/,
      /#\d+ echo.* complete/,
      /download complete/,
      /req\/resp complete/,
      /^PASS /m,
      /resets at client\s+0$/m,
      /longest stall\s+\d+\.\d ms/,
      /bytes verified\s+6,600,000/,
    ];
    for (const m of markers) assert.match(text, m);
    // Events come in time order.
    const times = lines.map((l) => /^\s+(\d+\.\d) ms {2}/.exec(l)).filter((m) => m !== null);
    for (let i = 1; i < times.length; i++)
      assert.ok(Number(times[i]![1]) >= Number(times[i - 1]![1]), `out of order: ${times[i]![0]}`);
    for (const l of lines) assert.ok(l.length <= 80, `wider than 80 columns: ${l}`);
  });

  test('other seeds pass, with and without loss on the client link', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      for (const loss of [0, 0.01]) {
        const { code, j } = await runJson(['--seed', String(seed), '--loss', String(loss)]);
        assertPass(code, j, `seed ${seed} loss ${loss}`);
        assert.equal(j.connections, 6);
      }
    }
  });

  test('an explicit crash instant is honoured', async () => {
    const { code, j } = await runJson(['--crash-at-ms', '20', '--seed', '7']);
    assertPass(code, j, 'crash at 20 ms');
    assert.equal(j.crashAtMs, 20);
    assert.ok(j.restored > 0);
  });

  // The bound is the test's timeout (a time check under an equal timeout could never fail).
  test('200 connections pass', { timeout: 20_000 }, async () => {
    const { code, j } = await runJson(['--connections', '200']);
    assertPass(code, j, '200 connections');
    assert.equal(j.connections, 200);
  });

  test('one seed, one run: the JSON is identical twice', async () => {
    const a = await runJson(['--seed', '3', '--loss', '0.01']);
    const b = await runJson(['--seed', '3', '--loss', '0.01']);
    assert.equal(a.raw, b.raw);
    const c = await runJson(['--seed', '4', '--loss', '0.01']);
    assert.notEqual(a.raw, c.raw, 'the seed changes the run');
  });

  test('bad flags: exit 2 and one line naming the flag and the fix', async () => {
    const cases: [string[], string][] = [
      [['--seed', 'x'], '--seed'],
      [['--seed', '-1'], '--seed'],
      [['--seed'], '--seed'],
      [['--connections', '0'], '--connections'],
      [['--connections', '201'], '--connections'],
      [['--connections', '2.5'], '--connections'],
      [['--crash-at-ms', '-5'], '--crash-at-ms'],
      [['--crash-at-ms', '0'], '--crash-at-ms'],
      [['--crash-at-ms', 'soon'], '--crash-at-ms'],
      [['--loss', '0.5'], '--loss'],
      [['--loss=abc'], '--loss'],
      [['--bogus'], '--bogus'],
      [['extra'], 'extra'],
    ];
    for (const [argv, flag] of cases) {
      const { code, lines } = await run(argv);
      assert.equal(code, 2, `${argv.join(' ')} -> ${code}`);
      assert.equal(lines.length, 1, argv.join(' '));
      assert.ok(lines[0].includes(flag), `${argv.join(' ')}: ${lines[0]}`);
      assert.match(lines[0], /needs|Flags:/, lines[0]);
    }
  });

  test('flag parsing: both spellings, defaults, help', async () => {
    assert.deepEqual(parseDemoArgs([]), {
      json: false,
      seed: 1,
      connections: 6,
      crashAtMs: undefined,
      loss: 0,
      report: undefined,
    });
    assert.deepEqual(
      parseDemoArgs([
        '--seed=9',
        '--connections',
        '12',
        '--loss=0.02',
        '--crash-at-ms',
        '15.5',
        '--report=t.html',
      ]),
      {
        json: false,
        seed: 9,
        connections: 12,
        crashAtMs: 15.5,
        loss: 0.02,
        report: 't.html',
      },
    );
    assert.match((parseDemoArgs(['--report', '']) as { error: string }).error, /--report needs a file name/);
    const { code, lines } = await run(['--help']);
    assert.equal(code, 0);
    assert.match(lines[0], /^usage: takeover demo/);
  });
});
