import { readFileSync, readdirSync } from 'node:fs';

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** utime and stime (seconds) of every thread of this process, by thread id; empty where /proc is absent. */
export function threadTimes(): Map<number, { name: string; user: number; sys: number }> {
  const out = new Map<number, { name: string; user: number; sys: number }>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), { name, user: Number(f[11]) / CLOCK_TICKS, sys: Number(f[12]) / CLOCK_TICKS });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/**
 * Where a window's CPU went, in % of a core: the main thread (user, system) and the other threads
 * (the metronome, libuv's pool, V8's helpers) together, with the busiest of them named.
 */
export function threadShares(
  before: ReturnType<typeof threadTimes>,
  after: ReturnType<typeof threadTimes>,
  wallS: number,
): { mainUserPct: number; mainSysPct: number; otherPct: number; busiestOther: string } {
  const pct = (s: number) => Math.round((s / wallS) * 1000) / 10;
  let mainUser = 0;
  let mainSys = 0;
  let other = 0;
  let busiest = { name: '', s: 0 };
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { user: 0, sys: 0 };
    const du = a.user - b.user;
    const ds = a.sys - b.sys;
    if (tid === process.pid) {
      mainUser = du;
      mainSys = ds;
    } else {
      other += du + ds;
      if (du + ds > busiest.s) busiest = { name: `${a.name}:${tid}`, s: du + ds };
    }
  }
  return {
    mainUserPct: pct(mainUser),
    mainSysPct: pct(mainSys),
    otherPct: pct(other),
    busiestOther: busiest.s > 0 ? `${busiest.name} ${pct(busiest.s)} %` : '',
  };
}
