import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { SignalingClient } from '@voice/client';
import { RequestError } from '@voice/client';
import { asChannelId, asUserId, RateLimitedError } from '@voice/protocol';
import { FailureBackoff } from '../src/app/failure-backoff.js';
import { PasswordGuard } from '../src/app/password-guard.js';
import { loadConfig } from '../src/config.js';
import { Metrics } from '../src/metrics.js';
import { hashPassword } from '../src/state/passwords.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

describe('FailureBackoff', () => {
  type Op =
    | { k: 'fail'; key: number; dt: number }
    | { k: 'refund'; key: number }
    | { k: 'forgive'; key: number }
    | { k: 'check'; key: number; dt: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ k: fc.constant('fail' as const), key: fc.nat(3), dt: fc.nat(5_000) }),
    fc.record({ k: fc.constant('refund' as const), key: fc.nat(3) }),
    fc.record({ k: fc.constant('forgive' as const), key: fc.nat(3) }),
    fc.record({ k: fc.constant('check' as const), key: fc.nat(3), dt: fc.nat(5_000) }),
  );

  it('property: matches a reference model (free failures, doubling waits, cap, refunds, forgetting)', () => {
    const policy = { freeFailures: 3, baseMs: 100, maxMs: 1_600, maxKeys: 100 };
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const b = new FailureBackoff(policy);
        // Reference: per key, the failure count and the time of the last failure.
        const ref = new Map<number, { n: number; last: number }>();
        const waitFor = (n: number) =>
          n < policy.freeFailures
            ? 0
            : Math.min(policy.maxMs, policy.baseMs * 2 ** (n - policy.freeFailures));
        const alive = (key: number, now: number) => {
          const e = ref.get(key);
          if (e && now - e.last > 2 * policy.maxMs && now >= e.last + waitFor(e.n)) ref.delete(key);
          return ref.get(key);
        };
        let now = 0;
        for (const o of ops) {
          const key = String(o.key);
          if (o.k === 'fail') {
            now += o.dt;
            const e = alive(o.key, now) ?? { n: 0, last: now };
            e.n++;
            e.last = now;
            ref.set(o.key, e);
            expect(b.fail(key, now)).toBe(waitFor(e.n));
          } else if (o.k === 'refund') {
            b.refund(key);
            const e = ref.get(o.key);
            if (e && --e.n <= 0) ref.delete(o.key);
          } else if (o.k === 'forgive') {
            b.forgive(key);
            ref.delete(o.key);
          } else {
            now += o.dt;
            const e = alive(o.key, now);
            expect(b.retryAfter(key, now)).toBe(e ? Math.max(0, e.last + waitFor(e.n) - now) : 0);
          }
        }
      }),
      { numRuns: 500, seed: 5 },
    );
  });

  it('holds at most maxKeys, forgetting the least recently failed', () => {
    const b = new FailureBackoff({ freeFailures: 1, baseMs: 1000, maxMs: 1000, maxKeys: 3 });
    for (const k of ['a', 'b', 'c']) b.fail(k, 0);
    b.fail('a', 1); // a is now the most recent
    b.fail('d', 2);
    expect(b.size).toBe(3);
    expect(b.retryAfter('b', 3)).toBe(0); // b was forgotten
    expect(b.retryAfter('a', 3)).toBeGreaterThan(0);
    expect(b.retryAfter('c', 3)).toBeGreaterThan(0);
    expect(() => new FailureBackoff({ freeFailures: 0, baseMs: 1, maxMs: 1, maxKeys: 1 })).toThrow(TypeError);
  });
});

describe('PasswordGuard bounds', () => {
  it('runs at most concurrency + queue checks, refuses the rest at once, one per user, and charges no guess for a refusal', async () => {
    const config = loadConfig({ env: {}, overrides: { passwords: { concurrency: 1, queue: 2 } } }).passwords;
    const metrics = new Metrics({ defaultMetrics: false });
    const guard = new PasswordGuard(config, metrics);
    const stored = await hashPassword('right');
    const user = (i: number) => asUserId(`u_${String(i).padStart(12, 'A')}`);
    const channel = (i: number) => asChannelId(`c_${String(i).padStart(12, 'A')}`);

    const t0 = performance.now();
    const settled = Array.from({ length: 10 }, (_, i) =>
      guard.verify(user(i), channel(i), 'wrong', stored).then(
        (ok) => ({ ok, at: performance.now() - t0 }),
        (err: unknown) => ({ err, at: performance.now() - t0 }),
      ),
    );
    const results = await Promise.all(settled);
    const refused = results.filter((r) => 'err' in r);
    const checked = results.filter((r) => 'ok' in r);
    expect(checked).toHaveLength(3); // 1 running + 2 waiting
    expect(checked.every((r) => 'ok' in r && r.ok === false)).toBe(true);
    expect(refused).toHaveLength(7);
    for (const r of refused) {
      expect((r as { err: unknown }).err).toBeInstanceOf(RateLimitedError);
      // Refused at once: before the first scrypt check finished.
      expect(r.at).toBeLessThan(Math.min(...checked.map((c) => c.at)));
    }
    expect(await metrics.value('voice_rate_limited_total', { limit: 'password_queue' })).toBe(7);

    // One check per user at a time.
    const first = guard.verify(user(50), channel(50), 'right', stored);
    await expect(guard.verify(user(50), channel(51), 'right', stored)).rejects.toBeInstanceOf(
      RateLimitedError,
    );
    expect(await first).toBe(true);
    // The refused users were charged nothing: three wrong guesses each are still free.
    for (let i = 0; i < 2; i++) expect(await guard.verify(user(9), channel(9), 'wrong', stored)).toBe(false);
    expect(await guard.verify(user(9), channel(9), 'right', stored)).toBe(true);
  });
});

/** The error a request failed with (a RequestError), or null when it succeeded. */
async function outcome(p: Promise<unknown>): Promise<RequestError | null> {
  try {
    await p;
    return null;
  } catch (e) {
    if (e instanceof RequestError) return e;
    throw e;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
}

describe('password guessing at the server', () => {
  it('backs off per user, then per channel, with RATE_LIMITED and a retry time', async () => {
    const srv = await startTestServer({
      limits: { loginBurst: 100 },
      // Waits of 3 s: longer than a scrypt check takes on a loaded machine, so they cannot run out mid-test.
      passwords: { freeFailuresPerUser: 3, freeFailuresPerChannel: 6, backoffBaseMs: 3_000 },
    });
    servers.push(srv);
    const owner = await srv.user('vault-owner');
    const { channel } = await owner.ws.request('channel.create', { name: 'Vault', password: 'right' });
    const join = (ws: SignalingClient, password: string) =>
      outcome(ws.request('channel.join', { channelId: channel.id, password }));

    // Per user: three wrong guesses, then even the right password waits.
    const guesser = await srv.user('guesser');
    for (let i = 0; i < 3; i++) expect((await join(guesser.ws, `wrong${i}`))?.code).toBe('WRONG_PASSWORD');
    const limited = await join(guesser.ws, 'right');
    expect(limited?.code).toBe('RATE_LIMITED');
    // The wait (3 s) runs from the third guess's start, so part of it has passed already.
    expect(limited?.retryAfterMs).toBeGreaterThan(1_000);
    expect(limited?.retryAfterMs).toBeLessThanOrEqual(3_000);
    await sleep(limited!.retryAfterMs! + 20);
    expect(await join(guesser.ws, 'right')).toBeNull(); // and success forgives the user

    // Per channel: fresh accounts, each within its own allowance, add up to the channel's (6).
    for (let i = 0; i < 3; i++) {
      const u = await srv.user(`spray${i}`);
      expect((await join(u.ws, 'nope'))?.code).toBe('WRONG_PASSWORD');
    }
    const fresh = await srv.user('innocent');
    const r = await join(fresh.ws, 'right');
    expect(r?.code).toBe('RATE_LIMITED'); // the guesser's 3 + 3 sprays reached the channel's limit
    expect(r?.retryAfterMs).toBeGreaterThan(0);
    // The owner needs no password and is not held up.
    expect(await outcome(owner.ws.request('channel.join', { channelId: channel.id }))).toBeNull();
    expect(
      await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'password_backoff' }),
    ).toBeGreaterThanOrEqual(2);
  });

  it('an attacker hammering one channel does not slow an unrelated client, and gets RATE_LIMITED', async () => {
    const srv = await startTestServer({
      limits: { loginBurst: 100 },
      passwords: { backoffBaseMs: 500 },
    });
    servers.push(srv);
    const owner = await srv.user('target-owner');
    const target = (await owner.ws.request('channel.create', { name: 'Target', password: 'secret-1' }))
      .channel.id;
    const mine = (await owner.ws.request('channel.create', { name: 'Mine', password: 'secret-2' })).channel
      .id;
    const legit = await srv.user('legit');

    /** The unrelated client: joins its own locked channel, one scrypt check each time. */
    const measure = async (n: number) => {
      const joins: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        await legit.ws.request('channel.join', { channelId: mine, password: 'secret-2' });
        joins.push(performance.now() - t);
      }
      return joins;
    };
    await measure(5); // warm-up
    const before = await measure(15);

    const attackers = await Promise.all(Array.from({ length: 8 }, (_, i) => srv.user(`attacker${i}`)));
    const codes = new Map<string, number>();
    let stop = false;
    // Each attacker stays just under its connection's message limit (20/s): 5 guesses every 250 ms
    // without waiting for answers, 160 guesses/s in all, about three times what scrypt checks on two cores.
    const pending: Promise<void>[] = [];
    const attack = attackers.map(async (a) => {
      for (let round = 0; !stop; round++) {
        for (let i = 0; i < 5; i++) {
          const guess = a.ws.request('channel.join', {
            channelId: target,
            password: `g${round}-${i}`,
          });
          pending.push(
            outcome(guess).then(
              (r) => void codes.set(r?.code ?? 'OK', (codes.get(r?.code ?? 'OK') ?? 0) + 1),
            ),
          );
        }
        await sleep(250);
      }
    });
    // The flood is under way and has spent the channel's free guesses (10, checked in the first
    // half second): from here on it is the sustained attack, which must cost others nothing.
    await sleep(1_000);
    const during = await measure(25);
    stop = true;
    await Promise.all(attack);
    await Promise.all(pending);
    // Normal is measured on both sides of the attack (after every attacker request was answered,
    // so no queue is left), so a change in the machine's load is not read as the attack's effect.
    const normal = [...before, ...(await measure(15))];

    const [nm, dm] = [percentile(normal, 0.5), percentile(during, 0.5)];
    const [n9, d9] = [percentile(normal, 0.9), percentile(during, 0.9)];
    console.log(
      `password join p50 ${nm.toFixed(1)} -> ${dm.toFixed(1)} ms, p90 ${n9.toFixed(1)} -> ${d9.toFixed(1)} ms under attack; attacker ${JSON.stringify(Object.fromEntries(codes))}`,
    );
    // A join costs one scrypt (35 ms on an idle core). Without the guard the same attack put
    // 0.4-1.1 s on these joins (median 5-8 times normal); with it the median stays near normal.
    // The median, not the tail: other processes on this machine put spikes in any tail.
    expect(dm).toBeLessThan(2 * nm + 20);
    expect(codes.get('OK') ?? 0).toBe(0);
    expect(codes.get('RATE_LIMITED') ?? 0).toBeGreaterThan(50);
    // Guesses that reached scrypt: the channel's 10 free, then a few as its back-off doubles.
    expect(codes.get('WRONG_PASSWORD') ?? 0).toBeLessThanOrEqual(16);
  });
});
