import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { SignalingClient } from '@voice/client';
import { RequestError } from '@voice/client';
import { FailureBackoff } from '../src/app/failure-backoff.js';
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
      passwords: { freeFailuresPerUser: 3, freeFailuresPerChannel: 6, backoffBaseMs: 400 },
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
    // The wait (400 ms) runs from the third guess's start, so part of it has passed already.
    expect(limited?.retryAfterMs).toBeGreaterThan(0);
    expect(limited?.retryAfterMs).toBeLessThanOrEqual(400);
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

    /** The unrelated client: joins its own locked channel (a scrypt check each time) and pings. */
    const measure = async (n: number) => {
      const joins: number[] = [];
      const pings: number[] = [];
      for (let i = 0; i < n; i++) {
        let t = performance.now();
        await legit.ws.request('channel.join', { channelId: mine, password: 'secret-2' });
        joins.push(performance.now() - t);
        t = performance.now();
        await legit.ws.request('ping', { ts: t });
        pings.push(performance.now() - t);
      }
      return { joins, pings };
    };
    await measure(5); // warm-up
    const base = await measure(20);

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
    await sleep(200); // the flood is under way
    const during = await measure(20);
    stop = true;
    await Promise.all(attack);
    await Promise.all(pending);

    const [bm, dm] = [percentile(base.joins, 0.5), percentile(during.joins, 0.5)];
    const [bj, dj] = [percentile(base.joins, 0.9), percentile(during.joins, 0.9)];
    const [bp, dp] = [percentile(base.pings, 0.9), percentile(during.pings, 0.9)];
    console.log(
      `password join p90 ${bj.toFixed(1)} -> ${dj.toFixed(1)} ms; ping p90 ${bp.toFixed(1)} -> ${dp.toFixed(1)} ms; attacker ${JSON.stringify(Object.fromEntries(codes))}`,
    );
    // A join costs one scrypt (~35 ms here); under attack it may wait for the few the bounds admit.
    expect(dm).toBeLessThan(1.5 * bm + 20);
    expect(dj).toBeLessThan(2 * bj + 40);
    expect(dp).toBeLessThan(bp + 15);
    expect(codes.get('OK') ?? 0).toBe(0);
    expect(codes.get('RATE_LIMITED') ?? 0).toBeGreaterThan(50);
    // Guesses that reached scrypt: the channel's 10 free, then a few as its back-off doubles.
    expect(codes.get('WRONG_PASSWORD') ?? 0).toBeLessThanOrEqual(16);
  });
});
