/**
 * The dashboard (docs/ARCHITECTURE.md §2, "Operating a node"): one HTML page, uPlot and its
 * stylesheet inlined from the `uplot` package, nothing fetched from anywhere else.
 *
 * - Live (`GET /` at the node's `admin.listen`): polls `status.json` twice a second and plots the
 *   connections and the replication lag as they go, with the role, epoch and lease on top; below,
 *   the timeline of this node's last take-over: when it took over after the active's last word,
 *   how long the restore took, and when each restored connection's peer acknowledged again.
 * - Report (`takeover demo --report out.html`): the same timeline for a simulated run, from the
 *   client's side (each connection's wait for its next bytes), and the bytes the client received
 *   per millisecond around the kill.
 *
 * The page keeps what it drew in `window.takeoverDashboard` (the Chromium test reads it).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type DemoResult, TRAFFIC_BIN_US } from './demo.ts';

/** A take-over's timeline: times in ms from the active's last word (live) or from the kill (report). */
export interface Timeline {
  /** What the zero of the time axis is. */
  origin: string;
  /** The take-over (detection), and the end of the restore (after it). */
  takeoverMs: number;
  restoreMs: number;
  /** When each connection moved again (ms from the origin), any order. */
  resumeMs: number[];
  /** A sentence above the plot. */
  summary: string;
}

/** The simulated run as the report draws it. */
export interface Report {
  title: string;
  verdict: string;
  timeline: Timeline;
  /** Bytes the client received per `binMs`, from `startMs` (virtual time). */
  throughput: { startMs: number; binMs: number; bytes: number[]; killMs?: number; takeoverMs?: number };
}

const require = createRequire(import.meta.url);
let assets: { js: string; css: string } | undefined;

/** uPlot's script and stylesheet, read once from the installed package. */
function uplotAssets(): { js: string; css: string } {
  assets ??= {
    js: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    css: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
  };
  return assets;
}

/** JSON that is safe inside a <script> element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c');
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 960px; }
h1 { font-size: 1.3em; margin: 0 0 .3em; } h2 { font-size: 1.05em; margin: 1.4em 0 .3em; }
.facts span { display: inline-block; margin-right: 1.2em; } .facts b { font-weight: 600; }
.note { color: #555; } .bad { color: #b00; }
`;

/**
 * The page's own script: `MODE` is 'live' or 'report', `DATA` the report (null when live).
 * Plain browser JavaScript, run as is (no build step).
 */
const PAGE_SCRIPT = `
const dash = (window.takeoverDashboard = { plots: {}, updates: 0, errors: [] });
const W = Math.min(900, document.body.clientWidth || 900);
const el = (id) => document.getElementById(id);

function markers(lines) {
  return (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.font = '12px sans-serif';
    lines.forEach((m, i) => {
      const x = Math.round(u.valToPos(m.at, 'x', true));
      ctx.strokeStyle = m.color; ctx.fillStyle = m.color; ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      ctx.fillText(m.label, x + 4, u.bbox.top + 14 + 16 * i);
    });
    ctx.restore();
  };
}

/** The take-over timeline: connections resumed over time, the take-over and the restore marked. */
function drawTimeline(t, into) {
  el(into + '-facts').textContent = t.summary;
  const at = t.resumeMs.slice().sort((a, b) => a - b);
  const end = Math.max(t.takeoverMs + t.restoreMs, at.length ? at[at.length - 1] : 0) * 1.1 + 1;
  const xs = [0], ys = [0];
  at.forEach((v, i) => { xs.push(v); ys.push(i + 1); });
  xs.push(end); ys.push(at.length);
  const opts = {
    title: 'connections moving again, ms after ' + t.origin, width: W, height: 260,
    scales: { x: { time: false } },
    axes: [{ label: 'ms after ' + t.origin }, { label: 'connections' }],
    series: [{ label: 'ms' }, { label: 'resumed', stroke: '#1f77b4', fill: 'rgba(31,119,180,.12)', paths: uPlot.paths.stepped({ align: 1 }) }],
    hooks: { draw: [markers([{ at: t.takeoverMs, label: 'take-over', color: '#d62728' }].concat(
      t.restoreMs > 0 ? [{ at: t.takeoverMs + t.restoreMs, label: 'restored', color: '#2ca02c' }] : []))] },
  };
  dash.plots[into] = new uPlot(opts, [xs, ys], el(into));
}

function drawThroughput(tp) {
  const xs = tp.bytes.map((_, i) => tp.startMs + i * tp.binMs);
  const ys = tp.bytes.map((b) => b / 1000);
  const lines = [];
  if (tp.killMs != null) lines.push({ at: tp.killMs, label: 'kill -9', color: '#d62728' });
  if (tp.takeoverMs != null) lines.push({ at: tp.takeoverMs, label: 'take-over', color: '#2ca02c' });
  dash.plots.throughput = new uPlot({
    title: 'kB the client received per ' + tp.binMs + ' ms (virtual time)', width: W, height: 220,
    scales: { x: { time: false } }, axes: [{ label: 'virtual ms' }, { label: 'kB' }],
    series: [{ label: 'ms' }, { label: 'kB', stroke: '#9467bd', fill: 'rgba(148,103,189,.15)' }],
    hooks: { draw: [markers(lines)] },
  }, [xs, ys], el('throughput'));
}

function report(d) {
  el('title').textContent = d.title;
  el('facts').textContent = d.verdict;
  drawTimeline(d.timeline, 'takeover');
  drawThroughput(d.throughput);
  dash.updates++;
}

function live() {
  const N = 240;
  const series = { t: [], conns: [], lag: [], inflight: [] };
  const mk = (id, title, labels, colors) => new uPlot({
    title, width: W, height: 200, axes: [{}, { label: title }],
    series: [{}].concat(labels.map((l, i) => ({ label: l, stroke: colors[i] }))),
  }, [[], ...labels.map(() => [])], el(id));
  dash.plots.connections = mk('connections', 'connections', ['connections'], ['#1f77b4']);
  dash.plots.lag = mk('lag', 'replication lag (batches)', ['unacknowledged', 'in flight'], ['#ff7f0e', '#8c564b']);
  let lastTakeoverAt = '';
  async function poll() {
    try {
      const r = await fetch('status.json', { cache: 'no-store' });
      if (!r.ok) throw new Error('status.json: HTTP ' + r.status);
      const s = await r.json();
      el('title').textContent = 'takeover node ' + s.nodeId;
      const lease = s.lease ? s.lease.state + (s.lease.kernelFence ? ' (fence ' + s.lease.kernelFence + ')' : '') : 'none';
      el('facts').innerHTML = '';
      for (const [k, v] of [['role', s.role], ['epoch', s.epoch], ['lease', lease], ['peer', s.peer],
        ['synced', s.synced], ['degraded', s.degraded], ['mode', s.mode], ['take-overs', s.takeovers ?? 0]]) {
        const span = document.createElement('span');
        span.innerHTML = k + ' <b></b>';
        span.querySelector('b').textContent = String(v);
        el('facts').appendChild(span);
      }
      series.t.push(Date.now() / 1000);
      series.conns.push(s.connections);
      series.lag.push(s.replication.lagBatches);
      series.inflight.push(s.replication.inFlight);
      for (const k in series) if (series[k].length > N) series[k].shift();
      dash.plots.connections.setData([series.t, series.conns]);
      dash.plots.lag.setData([series.t, series.lag, series.inflight]);
      const tk = s.lastTakeover;
      if (tk && tk.at + tk.resumeMs.length !== lastTakeoverAt) {
        lastTakeoverAt = tk.at + tk.resumeMs.length;
        if (dash.plots.takeover) { dash.plots.takeover.destroy(); el('takeover').innerHTML = ''; }
        drawTimeline({
          origin: "the active's last word", takeoverMs: tk.detectionMs, restoreMs: tk.restoreMs,
          resumeMs: tk.resumeMs,
          summary: tk.at + ', epoch ' + tk.epoch + ': ' + tk.connections + ' connection(s) restored in ' +
            tk.restoreMs.toFixed(1) + ' ms, ' + tk.detectionMs + ' ms after the active\\'s last word (' + tk.cause +
            '); ' + tk.resumed + ' resumed, the last after ' + (tk.stallMs == null ? '-' : tk.stallMs + ' ms') + '.',
        }, 'takeover');
      } else if (!tk) el('takeover-facts').textContent = 'This node has not taken over since it started.';
      dash.updates++;
      el('error').textContent = '';
    } catch (e) {
      dash.errors.push(String(e));
      el('error').textContent = String(e);
    }
    setTimeout(poll, 500);
  }
  poll();
}

if (MODE === 'report') report(DATA); else live();
`;

const escapeHtml = (t: string) =>
  t.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

function page(rawTitle: string, mode: 'live' | 'report', data: Report | null): string {
  const { js, css } = uplotAssets();
  const title = escapeHtml(rawTitle);
  const live = mode === 'live';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title><link rel="icon" href="data:,">
<style>${css}${STYLE}</style></head>
<body>
<h1 id="title">${title}</h1>
<div id="facts" class="facts"></div>
<div id="error" class="bad"></div>
${live ? '<h2>Connections</h2><div id="connections"></div>\n<h2>Replication</h2><div id="lag"></div>' : ''}
<h2>Last take-over</h2><p id="takeover-facts" class="note"></p><div id="takeover"></div>
${live ? '' : '<h2>Traffic</h2><div id="throughput"></div>'}
<script>${js}</script>
<script>const MODE = ${scriptJson(mode)}; const DATA = ${scriptJson(data)};${PAGE_SCRIPT}</script>
</body></html>
`;
}

/** The live page a node serves at `GET /` of its admin address. */
export function dashboardPage(): string {
  return page('takeover node', 'live', null);
}

/** A self-contained page with a simulated run's timeline (`takeover demo --report`). */
export function reportPage(r: Report): string {
  return page(r.title, 'report', r);
}

/** The report of a simulated run: the window around the kill, the wait of each connection. */
export function demoReport(r: DemoResult): Report {
  const binMs = TRAFFIC_BIN_US / 1000;
  const kill = r.crashAtMs;
  const takeover = r.takeoverAtMs;
  // From shortly before the kill to well after the last connection moved again.
  const lastResume = Math.max(0, ...r.resumeAfterKillMs);
  const from = kill === undefined ? 0 : Math.max(0, Math.floor((kill - 50) / binMs));
  const to = kill === undefined ? r.traffic.length : Math.ceil((kill + lastResume * 2 + 100) / binMs);
  const bytes = r.traffic.slice(from, Math.min(to, r.traffic.length));
  const at = takeover !== undefined && kill !== undefined ? takeover - kill : 0;
  const verdict = `${r.pass ? 'PASS' : `FAIL (${r.failures.join('; ')})`}: ${r.connections} connection(s), ${r.bytesVerified} bytes verified byte-exact, ${r.resets} reset(s), seed ${r.seed}${r.loss > 0 ? `, loss ${r.loss}` : ''}.`;
  return {
    title: `takeover demo, seed ${r.seed}`,
    verdict,
    timeline: {
      origin: 'the kill',
      takeoverMs: at,
      // Real time, while the simulated clock stood still: not a span on the virtual axis.
      restoreMs: 0,
      resumeMs: r.resumeAfterKillMs,
      summary:
        kill === undefined || takeover === undefined
          ? 'No take-over happened in this run.'
          : `a was killed at ${kill} ms (virtual); b took over ${at.toFixed(1)} ms later (${r.cause ?? '?'}, detected ${r.detectionMs ?? '?'} ms after a's last message) and restored ${r.restored} connection(s); the ${r.resumeAfterKillMs.length} open at the take-over each received bytes again, the last ${lastResume.toFixed(1)} ms after the kill.`,
    },
    throughput: { startMs: from * binMs, binMs, bytes, killMs: kill, takeoverMs: takeover },
  };
}
