import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Session } from '../src/app/sessions.js';
import type { VoiceEndpoint } from '../src/voice/endpoint.js';
import {
  MemberStats,
  STATS_INTERVAL_MS,
  STATS_MAX_SLICES,
  STATS_MEMBERS_PER_SLICE,
} from '../src/voice/stats.js';

/**
 * Per-member figures: every member once per 2 s round, in slices that grow with the number of
 * members (a home server wakes once a round, a large one spreads the work over 20 slices).
 */

/** The fields MemberStats reads of an endpoint. */
function endpoint(voiceId: number): VoiceEndpoint {
  return {
    voiceId,
    retiring: false,
    session: { conn: {}, remoteNode: null, userId: `u${voiceId}` },
    member: {
      packetsIn: 0,
      packetsOut: 0,
      jitter: { stats: () => ({ jitterMs: 0, depth: 1, concealed: 0 }) },
    },
    cipher: { replay: { received: 0, lost: 0 } },
    channel: { settings: { frameMs: 20 } },
    statsReceived: 0,
    statsLost: 0,
  } as unknown as VoiceEndpoint;
}

function run(members: number, rounds: number) {
  const eps = Array.from({ length: members }, (_, i) => endpoint(1000 + i * 7));
  const delivered = new Map<Session, number>();
  let roundsStarted = 0;
  const s = new MemberStats(
    () => eps.values(),
    () => roundsStarted++,
    (err) => {
      throw err;
    },
    (session) => delivered.set(session, (delivered.get(session) ?? 0) + 1),
    () => eps.length,
  );
  s.running(true);
  vi.advanceTimersByTime(rounds * STATS_INTERVAL_MS);
  s.close();
  return { eps, delivered, roundsStarted, wakes: s.wakes };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('MemberStats', () => {
  it('a home server (5 members) wakes once per round, and every member gets its figures once a round', () => {
    vi.useFakeTimers();
    const r = run(5, 3);
    expect(r.wakes).toBe(3);
    expect(r.roundsStarted).toBe(3);
    for (const ep of r.eps) expect(r.delivered.get(ep.session)).toBe(3);
  });

  it('a large server cuts a round into one slice per 16 members (at most 20), each member once a round', () => {
    vi.useFakeTimers();
    const members = 5 * STATS_MEMBERS_PER_SLICE - 3;
    const r = run(members, 2);
    expect(r.wakes).toBe(2 * 5);
    expect(r.roundsStarted).toBe(2);
    for (const ep of r.eps) expect(r.delivered.get(ep.session)).toBe(2);
    const huge = run(40 * STATS_MEMBERS_PER_SLICE, 1);
    expect(huge.wakes).toBe(STATS_MAX_SLICES);
    for (const ep of huge.eps) expect(huge.delivered.get(ep.session)).toBe(1);
  });

  it('starts the first round (the phase alignment) 100 ms after someone joins, not a round later', () => {
    vi.useFakeTimers();
    const eps = [endpoint(1)];
    let rounds = 0;
    const s = new MemberStats(
      () => eps.values(),
      () => rounds++,
      () => undefined,
      () => undefined,
      () => 1,
    );
    s.running(true);
    vi.advanceTimersByTime(99);
    expect(rounds).toBe(0);
    vi.advanceTimersByTime(1);
    expect(rounds).toBe(1);
    vi.advanceTimersByTime(STATS_INTERVAL_MS);
    expect(rounds).toBe(2);
    s.close();
  });

  it('stops waking when stopped', () => {
    vi.useFakeTimers();
    const eps = [endpoint(1)];
    const s = new MemberStats(
      () => eps.values(),
      () => undefined,
      () => undefined,
      () => undefined,
      () => 1,
    );
    s.running(true);
    vi.advanceTimersByTime(STATS_INTERVAL_MS);
    s.running(false);
    vi.advanceTimersByTime(10 * STATS_INTERVAL_MS);
    expect(s.wakes).toBe(1);
  });
});
