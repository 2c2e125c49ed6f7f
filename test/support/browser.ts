/**
 * Headless Chromium for the dashboard's tests (Debian's `chromium`, driven by playwright-core):
 * opens a page, collects its console errors and uncaught exceptions, waits until the dashboard
 * has drawn `minUpdates` times, and returns what its plots hold (`window.takeoverDashboard`,
 * src/cli/dashboard.ts).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined. */
export function browserSkipReason(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `needs Debian's chromium (apt-get install chromium): ${CHROMIUM} is missing`;
}

export interface DashboardView {
  /** Each plot's series (x first), as numbers or null. */
  plots: Record<string, (number | null)[][]>;
  updates: number;
  /** Console errors, uncaught exceptions and the page's own fetch errors. */
  errors: string[];
  /** The page's text (role, epoch, the take-over's sentence). */
  text: string;
  /** Every URL the page requested, the page's own included. */
  requests: string[];
}

/**
 * Loads `url` in headless Chromium (inside network namespace `netns` when given: a node's admin
 * address is on its namespace's loopback) and reads the dashboard once it has drawn `minUpdates`
 * times. `screenshot`: a PNG of the whole page is written there.
 */
export async function viewDashboard(
  url: string,
  o: { netns?: string; minUpdates?: number; screenshot?: string; timeoutMs?: number } = {},
): Promise<DashboardView> {
  const timeout = o.timeoutMs ?? 20_000;
  const dir = mkdtempSync(join(tmpdir(), 'takeover-chromium-'));
  let executablePath = CHROMIUM;
  if (o.netns) {
    // The browser's own process in the namespace; playwright talks to it over a pipe.
    executablePath = join(dir, 'chromium-in-netns');
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${o.netns} ${CHROMIUM} "$@"\n`, {
      mode: 0o755,
    });
  }
  const browser = await chromium.launch({
    executablePath,
    // Root in a container has no user namespace sandbox to give; the page is our own.
    args: ['--no-sandbox', '--disable-gpu'],
    timeout,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`exception: ${e.message}`));
    await page.goto(url, { timeout });
    const min = o.minUpdates ?? 1;
    await page.waitForFunction(
      (n) =>
        ((globalThis as unknown as { takeoverDashboard?: { updates: number } }).takeoverDashboard?.updates ??
          0) >= n,
      min,
      { timeout },
    );
    const seen = await page.evaluate(() => {
      const g = globalThis as unknown as {
        takeoverDashboard: {
          plots: Record<string, { data: (number | null)[][] }>;
          updates: number;
          errors: string[];
        };
        document: { body: { innerText: string } };
      };
      const d = g.takeoverDashboard;
      const plots: Record<string, (number | null)[][]> = {};
      for (const [k, u] of Object.entries(d.plots)) plots[k] = u.data.map((s) => Array.from(s));
      return { plots, updates: d.updates, errors: d.errors, text: g.document.body.innerText };
    });
    if (o.screenshot) await page.screenshot({ path: o.screenshot, fullPage: true });
    return { ...seen, errors: [...errors, ...seen.errors], requests };
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
