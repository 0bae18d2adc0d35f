import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TIMER_ADDON_PATH, loadNativeTimer } from '../src/index.js';

// scripts/provision.mjs builds the addon before the tests (Linux): its absence is a failure.
const addon = loadNativeTimer();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `body` in a fresh node with the addon as `a`; returns its exit status, output and time. */
function child(body: string): { status: number | null; out: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(
    process.execPath,
    ['-e', `const a = require(${JSON.stringify(fileURLToPath(TIMER_ADDON_PATH))});\n${body}`],
    { encoding: 'utf8', timeout: 20_000 },
  );
  return { status: r.status, out: r.stdout + r.stderr, ms: performance.now() - t0 };
}

describe('voice_timer addon (timerfd on the event loop)', () => {
  it('is built and loads', () => {
    expect(addon).not.toBeNull();
  });

  it('fires once per arming, at the deadline to a fraction of a millisecond, never before it', async () => {
    const fired: number[] = [];
    const t = addon!.create(() => void fired.push(performance.now()));
    const lateness: number[] = [];
    for (let i = 0; i < 20; i++) {
      const delay = 2.5 + (i % 5) * 0.3;
      const at = performance.now();
      addon!.arm(t, delay);
      await sleep(15);
      expect(fired.length).toBe(i + 1);
      const d = fired[i]! - at;
      expect(d).toBeGreaterThanOrEqual(delay);
      lateness.push(d - delay);
    }
    addon!.close(t);
    // setTimeout cannot aim at 2.8 ms (whole milliseconds): its median lateness is 0.5-1 ms here.
    lateness.sort((a, b) => a - b);
    expect(lateness[10]!).toBeLessThan(0.45);
  });

  it('re-arming replaces the deadline; disarm drops a pending fire; close is final and idempotent', async () => {
    let fired = 0;
    const t = addon!.create(() => void fired++);
    addon!.arm(t, 5);
    addon!.arm(t, 40);
    await sleep(20);
    expect(fired).toBe(0);
    await sleep(40);
    expect(fired).toBe(1);
    // Fired in the kernel but not yet read by the loop: disarm still drops it.
    addon!.arm(t, 0.01);
    const end = performance.now() + 2;
    while (performance.now() < end) {
      // keep the loop from polling until the timer has expired
    }
    addon!.disarm(t);
    await sleep(10);
    expect(fired).toBe(1);
    addon!.arm(t, 1);
    addon!.close(t);
    addon!.close(t);
    await sleep(10);
    expect(fired).toBe(1);
    // A closed handle is inert, not an error.
    expect(() => addon!.arm(t, 1)).not.toThrow();
    expect(() => addon!.disarm(t)).not.toThrow();
  });

  it('refuses bad arguments with a TypeError', () => {
    const a = addon!;
    expect(() => a.create(42 as unknown as () => void)).toThrow(TypeError);
    expect(() => a.arm({} as never, 1)).toThrow(TypeError);
    const t = a.create(() => undefined);
    expect(() => a.arm(t, 'soon' as unknown as number)).toThrow(TypeError);
    a.close(t);
  });

  it('an unref timer does not keep the process alive; a ref one does', () => {
    const unref = child(`const t = a.create(() => console.log('fired')); a.arm(t, 3000); a.unref(t, true);`);
    expect(unref.status).toBe(0);
    expect(unref.out).not.toContain('fired');
    expect(unref.ms).toBeLessThan(2500);
    const ref = child(`const t = a.create(() => { console.log('fired'); a.close(t); }); a.arm(t, 300);`);
    expect(ref.status).toBe(0);
    expect(ref.out).toContain('fired');
  });

  it("a callback's exception is the process's uncaught exception, and the timer still works after", () => {
    const r = child(`
      let n = 0;
      process.on('uncaughtException', (e) => console.log('caught ' + e.message));
      const t = a.create(() => { n++; if (n === 1) throw new Error('boom'); console.log('second'); a.close(t); });
      a.arm(t, 5);
      setTimeout(() => a.arm(t, 5), 50);`);
    expect(r.out).toContain('caught boom');
    expect(r.out).toContain('second');
    expect(r.status).toBe(0);
  });
});
