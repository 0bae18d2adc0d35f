import { CpuMeter, processResources } from './proc-stats.js';
import { scrapeServer } from './prometheus.js';
import type { Sample } from './report.js';

export interface SamplerOptions {
  /** Servers to scrape (/metrics); figures are summed (lateness: the worst). */
  readonly targets: readonly string[];
  /** The server process when the runner started it (CPU, memory, descriptors). */
  readonly serverPid?: number;
  readonly periodMs?: number;
}

/** Once a second: server and generator CPU from /proc, the servers' own figures from /metrics. */
export class Sampler {
  readonly samples: Sample[] = [];
  private readonly server: CpuMeter | null;
  private generator: CpuMeter | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly t0 = performance.now();
  private lastOut: { v: number; at: number } | null = null;
  private busy = false;

  constructor(private readonly o: SamplerOptions) {
    this.server = o.serverPid !== undefined ? new CpuMeter(o.serverPid) : null;
  }

  /** The load generator's process, once it runs. */
  watchGenerator(pid: number): void {
    this.generator = new CpuMeter(pid);
    this.generator.sample();
  }

  start(): void {
    this.server?.sample();
    this.timer = setInterval(() => void this.sample(), this.o.periodMs ?? 1000);
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const now = performance.now();
      const serverCpuPct = this.server?.sample(now) ?? null;
      const generatorCpuPct = this.generator?.sample(now) ?? null;
      const figs = (await Promise.all(this.o.targets.map((t) => scrapeServer(t)))).filter((f) => f !== null);
      const res = this.o.serverPid !== undefined ? processResources(this.o.serverPid) : null;
      let packetsOutPerSec: number | null = null;
      if (figs.length > 0) {
        const out = figs.reduce((a, f) => a + f.packetsOut, 0);
        if (this.lastOut && now > this.lastOut.at)
          packetsOutPerSec = ((out - this.lastOut.v) * 1000) / (now - this.lastOut.at);
        this.lastOut = { v: out, at: now };
      }
      this.samples.push({
        t: Math.round((now - this.t0) / 100) / 10,
        serverCpuPct,
        generatorCpuPct,
        members: figs.length > 0 ? figs.reduce((a, f) => a + f.members, 0) : null,
        sessions: figs.length > 0 ? figs.reduce((a, f) => a + f.sessions, 0) : null,
        tickLatenessP99Ms: figs.length > 0 ? Math.max(...figs.map((f) => f.tickLatenessP99Ms)) : null,
        holdP99Ms: figs.length > 0 ? Math.max(...figs.map((f) => f.holdP99Ms)) : null,
        packetsOutPerSec,
        serverRssMb: res ? Math.round(res.rssBytes / 2 ** 20) : null,
        serverFds: res?.fds ?? null,
        minComplexity: figs.reduce<number | null>(
          (a, f) =>
            f.minComplexity === null ? a : a === null ? f.minComplexity : Math.min(a, f.minComplexity),
          null,
        ),
      });
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
