import { cpus, loadavg, totalmem } from 'node:os';
import { chart } from './svg.js';

/** Artillery's summary of one histogram. */
export interface Summary {
  min: number;
  max: number;
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
}

/** The parts of Artillery's JSON output the report uses. */
export interface ArtilleryOutput {
  aggregate: { counters: Record<string, number>; summaries: Record<string, Summary> };
  intermediate: {
    firstMetricAt: number;
    counters: Record<string, number>;
    summaries: Record<string, Summary>;
  }[];
}

/** One runner sample, once a second. */
export interface Sample {
  /** Seconds since the run started. */
  t: number;
  serverCpuPct: number | null;
  generatorCpuPct: number | null;
  members: number | null;
  sessions: number | null;
  tickLatenessP99Ms: number | null;
  holdP99Ms: number | null;
  /** Mixed packets the server sent per second. */
  packetsOutPerSec: number | null;
  serverRssMb: number | null;
  serverFds: number | null;
  /** Lowest encoder complexity of any channel: below the setting, the server was short of CPU. */
  minComplexity: number | null;
}

export interface GeneratorVerdict {
  workers: number;
  busyP95Pct: number | null;
  loopDelayP99Ms: number | null;
  cpuP95Pct: number | null;
  saturated: boolean;
  reason: string;
}

export interface RunReport {
  scenario: string;
  /** Frame size of the voice steps (ms), when the scenario has any. */
  frameMs: number | null;
  size: { users: number; rampSeconds: number; seconds: number };
  startedAt: string;
  command: string;
  target: string;
  ownServer: boolean;
  machine: { cpus: number; model: string; memGb: number; node: string; loadAvgAtStart: number[] };
  checks: { ok: boolean; text: string }[];
  artilleryExit: number;
  egress: string[];
  generator: GeneratorVerdict;
  counters: Record<string, number>;
  summaries: Record<string, Summary>;
  samples: Sample[];
  periods: { t: number; summaries: Record<string, Summary>; counters: Record<string, number> }[];
  /** With --cpu-prof: the server's heaviest functions by self time, per profiled thread. */
  profile: { file: string; entries: { where: string; selfPct: number }[] }[];
  passed: boolean;
}

/** Saturated when a worker's loop was busy over 85 % or woke over 20 ms late (p95 of 1 s samples). */
export function judgeGenerator(s: Record<string, Summary>, workers: number): GeneratorVerdict {
  const busy = s['generator.loop_busy']?.p95 ?? null;
  const delay = s['generator.loop_delay_p99']?.p95 ?? null;
  const cpu = s['generator.process_cpu']?.p95 ?? null;
  const reasons: string[] = [];
  if (busy !== null && busy > 85)
    reasons.push(`event loop busy ${busy.toFixed(0)} % (p95 of 1 s samples) > 85 %`);
  if (delay !== null && delay > 20) {
    // Late wake-ups with an idle loop: other processes hold the CPU, not the users' own work.
    const starved =
      busy !== null && busy <= 85 ? ` while busy only ${busy.toFixed(0)} %: the machine is short of CPU` : '';
    reasons.push(`event loop wake-up p99 ${delay.toFixed(1)} ms > 20 ms${starved}`);
  }
  if (cpu !== null && cpu > 90 * workers)
    reasons.push(`process CPU ${cpu.toFixed(0)} % > 90 % x ${workers} workers`);
  return {
    workers,
    busyP95Pct: busy,
    loopDelayP99Ms: delay,
    cpuP95Pct: cpu,
    saturated: reasons.length > 0,
    reason: reasons.length > 0 ? reasons.join('; ') : 'not saturated',
  };
}

export function machineInfo(): RunReport['machine'] {
  const c = cpus();
  return {
    cpus: c.length,
    model: c[0]?.model ?? 'unknown',
    memGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAvgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** The per-period (Artillery's 10 s) summaries as a time series, t in seconds from the first. */
export function periodsOf(out: ArtilleryOutput): RunReport['periods'] {
  const first = out.intermediate[0]?.firstMetricAt ?? 0;
  return out.intermediate.map((p) => ({
    t: (p.firstMetricAt - first) / 1000,
    summaries: p.summaries,
    counters: p.counters,
  }));
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f1 = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : v.toFixed(1));

/** The charts of a run (also used for docs/): each an <svg> string, empty ones left out. */
export function charts(r: RunReport): { name: string; svg: string }[] {
  const out: { name: string; svg: string }[] = [];
  const per = (metric: string, q: 'p50' | 'p95' | 'p99') =>
    r.periods.filter((p) => p.summaries[metric]).map((p) => [p.t, p.summaries[metric]![q]] as const);
  for (const [metric, title, bound] of [
    ['voice.e2e_delay', 'End-to-end delay (click captured to played)', null],
    ['signaling.rtt', 'Signaling round trip (requests on open sessions)', 50],
    ['signaling.setup', 'Connection set-up (log-in, upgrade, hello)', null],
  ] as const) {
    if (!r.summaries[metric]) continue;
    out.push({
      name: metric,
      svg: chart({
        title: `${title}, percentiles per ${r.periods.length > 1 ? '10 s period' : 'run'}`,
        xLabel: 'time, s',
        yLabel: 'ms',
        series: (['p50', 'p95', 'p99'] as const).map((q) => ({ name: q, points: per(metric, q) })),
        ...(bound !== null ? { rules: [{ y: bound, label: `${bound} ms` }] } : {}),
      }),
    });
  }
  const s = r.samples;
  const frames = s.filter((x) => x.packetsOutPerSec !== null && x.members !== null);
  if (frames.some((x) => (x.members ?? 0) > 0)) {
    const frameMs = r.frameMs ?? 20;
    out.push({
      name: 'delivered',
      svg: chart({
        title: 'Mixed frames the server sent, per second',
        xLabel: 'time, s',
        yLabel: 'frames/s',
        series: [
          { name: 'sent', points: frames.map((x) => [x.t, x.packetsOutPerSec!]) },
          { name: 'members x 1000/frame', points: frames.map((x) => [x.t, (x.members! * 1000) / frameMs]) },
        ],
      }),
    });
  }
  const cpu = s.filter((x) => x.serverCpuPct !== null && (x.members ?? 0) > 0);
  if (cpu.length > 0) {
    out.push({
      name: 'cpu-per-member',
      svg: chart({
        title: 'Server CPU per member against members',
        xLabel: 'members',
        yLabel: '% of a core per member',
        series: [
          { name: 'server', dots: true, points: cpu.map((x) => [x.members!, x.serverCpuPct! / x.members!]) },
        ],
      }),
    });
  }
  const tick = s.filter((x) => x.tickLatenessP99Ms !== null && (x.members ?? 0) > 0);
  if (tick.length > 0) {
    out.push({
      name: 'tick-lateness',
      svg: chart({
        title: 'Server tick lateness p99 (worst channel) and CPU',
        xLabel: 'time, s',
        yLabel: 'ms / % of a core / 10',
        series: [
          { name: 'tick p99, ms', points: tick.map((x) => [x.t, x.tickLatenessP99Ms!]) },
          { name: 'server CPU / 10', points: tick.map((x) => [x.t, (x.serverCpuPct ?? 0) / 10]) },
          { name: 'generator CPU / 10', points: tick.map((x) => [x.t, (x.generatorCpuPct ?? 0) / 10]) },
        ],
        rules: [{ y: 2, label: '2 ms' }],
      }),
    });
  }
  const mem = s.filter((x) => x.serverRssMb !== null);
  if (mem.length > 0) {
    out.push({
      name: 'resources',
      svg: chart({
        title: 'Server memory and file descriptors',
        xLabel: 'time, s',
        yLabel: 'MB / fds',
        series: [
          { name: 'RSS, MB', points: mem.map((x) => [x.t, x.serverRssMb!]) },
          { name: 'open fds', points: mem.map((x) => [x.t, x.serverFds ?? 0]) },
        ],
      }),
    });
  }
  return out;
}

/** A self-contained page: figures, checks and inline SVG charts; nothing loaded from a network. */
export function renderHtml(r: RunReport): string {
  const rows = Object.entries(r.summaries)
    .filter(([k]) => !k.startsWith('vusers.'))
    .map(
      ([k, v]) =>
        `<tr><td>${esc(k)}</td><td>${v.count}</td><td>${f1(v.p50)}</td><td>${f1(v.p95)}</td><td>${f1(v.p99)}</td><td>${f1(v.max)}</td></tr>`,
    )
    .join('\n');
  const counters = Object.entries(r.counters)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v}</td></tr>`)
    .join('\n');
  const checks = r.checks
    .map((c) => `<li class="${c.ok ? 'ok' : 'fail'}">${c.ok ? 'ok' : 'FAIL'}: ${esc(c.text)}</li>`)
    .join('\n');
  const g = r.generator;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Load test: ${esc(r.scenario)}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}.ok{color:#2a7}.fail{color:#c22;font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:12px}</style>
</head><body>
<h1>Load test: ${esc(r.scenario)} — ${r.passed ? '<span class="ok">passed</span>' : '<span class="fail">FAILED</span>'}</h1>
<p>${esc(r.startedAt)}; ${r.size.users} users over ${r.size.rampSeconds} s, ${r.size.seconds} s each; target ${esc(r.target)}${r.ownServer ? ' (started by the runner)' : ''}.<br>
Machine: ${r.machine.cpus} x ${esc(r.machine.model)}, ${r.machine.memGb} GB, Node ${esc(r.machine.node)}; load average at start ${r.machine.loadAvgAtStart.join(' ')}.<br>
Command: <code>${esc(r.command)}</code></p>
<h2>Checks</h2><ul>${checks || '<li>none</li>'}
<li class="${r.egress.length === 0 ? 'ok' : 'fail'}">${r.egress.length === 0 ? 'ok: no connection left the machine' : `FAIL: ${r.egress.length} attempts to leave the machine: ${esc(r.egress.slice(0, 5).join('; '))}`}</li>
<li class="${g.saturated ? 'fail' : 'ok'}">generator (${g.workers} worker${g.workers > 1 ? 's' : ''}): ${esc(g.reason)}</li></ul>
<h2>Charts</h2><div class="charts">${charts(r)
    .map((c) => c.svg)
    .join('\n')}</div>
${r.profile
  .map(
    (p) =>
      `<h2>Server CPU profile: ${esc(p.file)}</h2><table><tr><th>self time, % of samples</th><th>function</th></tr>${p.entries
        .map((e) => `<tr><td>${e.selfPct}</td><td style="text-align:left">${esc(e.where)}</td></tr>`)
        .join('')}</table>`,
  )
  .join('\n')}
<h2>Histograms (ms unless named otherwise)</h2>
<table><tr><th>metric</th><th>count</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>${rows}</table>
<h2>Counters</h2><table>${counters}</table>
</body></html>
`;
}
