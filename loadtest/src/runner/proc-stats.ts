import { readFileSync, readdirSync } from 'node:fs';

/** Clock ticks per second for /proc times (USER_HZ; 100 on every Linux this runs on). */
const HZ = 100;

/** CPU seconds (user + system) a process has used, all threads; null when it is gone or not Linux. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / HZ;
  } catch {
    return null;
  }
}

/** Resident memory, bytes, and open file descriptors of a process; null when unreadable. */
export function processResources(pid: number): { rssBytes: number; fds: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    return { rssBytes: rss ? Number(rss[1]) * 1024 : 0, fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return null;
  }
}

/** Turns successive CPU-second readings into percent of one core over the interval. */
export class CpuMeter {
  private last: { cpu: number; at: number } | null = null;
  constructor(private readonly pid: number) {}

  /** Percent of one core since the previous call (null on the first call or when unreadable). */
  sample(now = performance.now()): number | null {
    const cpu = processCpuSeconds(this.pid);
    if (cpu === null) return null;
    const prev = this.last;
    this.last = { cpu, at: now };
    if (!prev || now <= prev.at) return null;
    return ((cpu - prev.cpu) / ((now - prev.at) / 1000)) * 100;
  }
}
