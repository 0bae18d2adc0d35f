import type { RunReport } from './report.js';
import { chart } from './svg.js';

/** One step of a sweep: a whole run at one user count, reduced to the capacity figures. */
export interface SweepStep {
  users: number;
  /** Most members the server(s) reported at once. */
  members: number;
  /** Mean server CPU while at least 90 % of the users were in, percent of one core. */
  serverCpuPct: number | null;
  cpuPerMemberPct: number | null;
  /** Worst channel's tick lateness p99 at the last full sample (the server keeps the last 3000 ticks). */
  tickP99Ms: number | null;
  lossPct: number | null;
  deliveredPct: number | null;
  e2eP50Ms: number | null;
  e2eP95Ms: number | null;
  /** Lowest encoder complexity seen (the server lowers it when a channel is over its CPU budget). */
  minComplexity: number | null;
  generatorSaturated: boolean;
  checksPassed: boolean;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

export function summarizeStep(r: RunReport): SweepStep {
  const members = Math.max(0, ...r.samples.map((s) => s.members ?? 0));
  const full = r.samples.filter((s) => (s.members ?? 0) >= 0.9 * r.size.users && s.serverCpuPct !== null);
  const cpu = full.length > 0 ? full.reduce((a, s) => a + s.serverCpuPct!, 0) / full.length : null;
  const c = r.counters;
  const lost = c['voice.packets_lost'];
  const recv = c['voice.packets_received'];
  const exp = c['voice.frames_expected'];
  const got = c['voice.frames_received'];
  const e2e = r.summaries['voice.e2e_delay'];
  // Lean users (capacity runs) count packets only: loss is what did not arrive of what was due.
  const leanExp = c['voice.lean_expected'];
  const leanGot = c['voice.lean_received'];
  const leanPct = leanExp && leanGot !== undefined ? (100 * leanGot) / leanExp : null;
  return {
    users: r.size.users,
    members,
    serverCpuPct: cpu === null ? null : r2(cpu),
    cpuPerMemberPct: cpu === null || members === 0 ? null : r2(cpu / members),
    tickP99Ms: full.at(-1)?.tickLatenessP99Ms ?? null,
    lossPct:
      lost !== undefined && recv !== undefined && lost + recv > 0
        ? r2((100 * lost) / (lost + recv))
        : leanPct !== null
          ? r2(Math.max(0, 100 - leanPct))
          : null,
    deliveredPct: exp && got !== undefined ? r2((100 * got) / exp) : leanPct !== null ? r2(leanPct) : null,
    e2eP50Ms: e2e?.p50 ?? null,
    e2eP95Ms: e2e?.p95 ?? null,
    minComplexity: r.samples.reduce<number | null>(
      (a, x) => (x.minComplexity === null ? a : a === null ? x.minComplexity : Math.min(a, x.minComplexity)),
      null,
    ),
    generatorSaturated: r.generator.saturated,
    checksPassed: r.passed,
  };
}

/** The knee: the most members whose step kept tick p99 < 2 ms and loss < 0.1 %, generator unsaturated. */
export function knee(steps: readonly SweepStep[]): SweepStep | null {
  let best: SweepStep | null = null;
  for (const s of [...steps].sort((a, b) => a.users - b.users)) {
    const ok =
      s.tickP99Ms !== null &&
      s.tickP99Ms < 2 &&
      s.lossPct !== null &&
      s.lossPct < 0.1 &&
      !s.generatorSaturated;
    if (!ok) break;
    best = s;
  }
  return best;
}

/** The sweep's charts, each a standalone SVG (the page inlines them; docs/ can keep one). */
export function sweepCharts(steps: readonly SweepStep[]): { name: string; svg: string }[] {
  const pts = (f: (s: SweepStep) => number | null) =>
    steps.filter((s) => f(s) !== null).map((s) => [s.members, f(s)!] as const);
  return [
    {
      name: 'cpu-per-member',
      svg: chart({
        title: 'Server CPU per member against members',
        xLabel: 'members',
        yLabel: '% of a core per member',
        series: [{ name: 'server', points: pts((s) => s.cpuPerMemberPct) }],
      }),
    },
    {
      name: 'tick-p99',
      svg: chart({
        title: 'Tick lateness p99 against members',
        xLabel: 'members',
        yLabel: 'ms',
        series: [{ name: 'tick p99', points: pts((s) => s.tickP99Ms) }],
        rules: [{ y: 2, label: '2 ms' }],
      }),
    },
    {
      name: 'server-cpu',
      svg: chart({
        title: 'Server CPU against members',
        xLabel: 'members',
        yLabel: '% of one core',
        series: [{ name: 'server', points: pts((s) => s.serverCpuPct) }],
        rules: [{ y: 100, label: 'one core' }],
      }),
    },
  ];
}

export function sweepHtml(scenario: string, steps: readonly SweepStep[]): string {
  const k = knee(steps);
  const rows = steps
    .map(
      (s) =>
        `<tr><td>${s.users}</td><td>${s.members}</td><td>${s.serverCpuPct ?? '-'}</td><td>${s.cpuPerMemberPct ?? '-'}</td><td>${s.tickP99Ms ?? '-'}</td><td>${s.lossPct ?? '-'}</td><td>${s.deliveredPct ?? '-'}</td><td>${s.e2eP50Ms ?? '-'}</td><td>${s.e2eP95Ms ?? '-'}</td><td>${s.minComplexity ?? '-'}</td><td>${s.generatorSaturated ? 'SATURATED' : 'ok'}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sweep: ${scenario}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>
<h1>Sweep: ${scenario}</h1>
<p>Knee (tick p99 &lt; 2 ms, loss &lt; 0.1 %, generator not saturated): ${k ? `${k.members} members at ${k.serverCpuPct ?? '?'} % of a core` : 'not reached at the first step'}.</p>
${sweepCharts(steps)
  .map((c) => c.svg)
  .join('\n')}
<table><tr><th>users</th><th>members</th><th>server CPU %</th><th>CPU/member %</th><th>tick p99 ms</th><th>loss %</th><th>delivered %</th><th>e2e p50</th><th>e2e p95</th><th>lowest complexity</th><th>generator</th></tr>${rows}</table>
</body></html>
`;
}
