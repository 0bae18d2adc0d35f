import { start, stop } from 'nact';
import { describe, expect, it } from 'vitest';
import { asChannelId, DEFAULT_VOICE_SETTINGS } from '@voice/protocol';
import { createOpus, loadNativeAead } from '@voice/media';
import { fakeSession } from '../bench/fake-session.js';
import { createLogger } from '../src/log.js';
import { TokenBucket } from '../src/ratelimit.js';
import type { StoredChannel } from '../src/state/types.js';
import { ChannelActor, SHARE_AFTER_TICKS } from '../src/voice/channel-actor.js';
import { SLEEP_AFTER_MS } from '../src/voice/channel.js';
import type { ScheduledHandle } from '../src/voice/scheduler.js';
import { VoiceCounters } from '../src/voice/counters.js';
import { VoiceEndpoint } from '../src/voice/endpoint.js';
import { newSpaceUsed } from '../../test-support/heap.js';

const aead = loadNativeAead();
const turn = () => new Promise<void>((r) => setImmediate(r));

async function channelOf4(streams: number[] = [4, 4, 4, 4]) {
  const system = start();
  const counters = new VoiceCounters();
  const errors: unknown[] = [];
  const log = createLogger({ logLevel: 'silent', nodeId: 'test' });
  log.error = (o: unknown) => void errors.push(o);
  const channel = { id: asChannelId('c_actortick'), voice: DEFAULT_VOICE_SETTINGS } as StoredChannel;
  const actor = new ChannelActor(channel, {
    system,
    opus: await createOpus(),
    io: { counters, send: () => {}, speaking: () => {} },
    log,
    tickBudget: 0.1,
    timeStretch: false,
  });
  for (let i = 0; i < 4; i++) {
    const ep = new VoiceEndpoint(
      i + 1,
      fakeSession(i, streams[i]),
      actor.core,
      { foreign: new TokenBucket(1, 1), sameHost: new TokenBucket(1, 1) },
      aead ?? undefined,
    );
    ep.transport = 'udp';
    actor.add(ep);
  }
  // Member changes still travel as nact messages: let them run.
  for (let i = 0; i < 5 && actor.core.members.length < 4; i++) await turn();
  return {
    actor,
    errors,
    close: () => {
      actor.close();
      stop(system);
    },
  };
}

describe('a channel tick', () => {
  it('runs when the scheduler calls it, not a loop turn later through the mailbox', async () => {
    const { actor, errors, close } = await channelOf4();
    expect(actor.core.members).toHaveLength(4);
    const before = actor.core.stats.ticks;
    const t0 = Math.ceil(performance.now());
    actor.due(t0);
    expect(actor.core.stats.ticks).toBe(before + 1);
    actor.due(t0 + 20);
    expect(actor.core.stats.ticks).toBe(before + 2);
    // A frame period with no tick (a stall) is made up by the next one and counted.
    actor.due(t0 + 60);
    expect(actor.core.stats.ticks).toBe(before + 4);
    expect(actor.ticksSkipped).toBe(1);
    // Closed: the scheduler's late call does nothing.
    close();
    actor.due(t0 + 80);
    expect(actor.core.stats.ticks).toBe(before + 4);
    expect(errors).toEqual([]);
  });

  it('allocates no event-loop machinery per tick: 20,000 ticks of a channel of 4, under 512 young bytes each', async () => {
    const { actor, close } = await channelOf4();
    const t0 = Math.ceil(performance.now());
    let k = 0;
    // Integer due times: a double argument would be boxed at the call, an allocation of the test's own.
    const run = (n: number) => {
      for (let i = 0; i < n; i++, k++) actor.due(t0 + k * 20);
    };
    run(20_000); // warm up
    let bytes = Number.POSITIVE_INFINITY;
    // The least of three rounds: a scavenge during a round makes it negative and proves nothing.
    for (let round = 0; round < 3; round++) {
      const before = newSpaceUsed();
      run(20_000);
      const used = newSpaceUsed() - before;
      if (used >= 0) bytes = Math.min(bytes, used);
    }
    expect(actor.core.stats.ticks).toBe(k);
    // Through a nact message a tick cost about 1,450 young bytes (an immediate, an async closure
    // and its promise, a context with a copied Map); called directly about 130 (the clock reads
    // and figures the core's tick boxes), measured 2026-12-01.
    expect(bytes / 20_000).toBeLessThan(512);
    close();
  });

  it('shares the clock slot once every listener has streamed for a second, and leaves it when one needs a mix', async () => {
    const { actor, close } = await channelOf4();
    const calls: boolean[] = [];
    let shared = false;
    const handle: ScheduledHandle = {
      slot: 0,
      get shared() {
        return shared;
      },
      advance: () => 0,
      remove: () => {},
      share: (on: boolean) => {
        calls.push(on);
        shared = on;
      },
      asleep: false,
      sleep: () => {},
    };
    actor.schedule = handle;
    const t0 = Math.ceil(performance.now());
    for (let k = 0; k < SHARE_AFTER_TICKS - 1; k++) actor.due(t0 + k * 20);
    expect(calls).toEqual([]);
    actor.due(t0 + (SHARE_AFTER_TICKS - 1) * 20);
    expect(calls).toEqual([true]);
    for (let k = SHARE_AFTER_TICKS; k < 2 * SHARE_AFTER_TICKS; k++) actor.due(t0 + k * 20);
    expect(calls).toEqual([true]);
    // A listener sets a volume for another: it needs a mix from the next tick (README 8.8).
    const l = actor.core.members[3]!;
    l.endpoint.session.volumes.set(actor.core.members[0]!.userId, 50);
    l.endpoint.session.selfMute = false;
    actor.core.updateMember(l);
    // Routing judges the speakers heard: give member 0 a buffered packet so it is one.
    actor.core.members[0]!.pcmTick = actor.core.stats.ticks;
    actor.due(t0 + 2 * SHARE_AFTER_TICKS * 20);
    expect(calls).toEqual([true, false]);
    close();
  });

  it('never shares while a member takes only the mix (streams 1)', async () => {
    const { actor, close } = await channelOf4([4, 4, 4, 1]);
    const calls: boolean[] = [];
    actor.schedule = {
      slot: 0,
      shared: false,
      advance: () => 0,
      remove: () => {},
      share: (on: boolean) => void calls.push(on),
      asleep: false,
      sleep: () => {},
    };
    const t0 = Math.ceil(performance.now());
    for (let k = 0; k < 3 * SHARE_AFTER_TICKS; k++) actor.due(t0 + k * 20);
    expect(calls).toEqual([]);
    close();
  });

  it('lets its clock sleep after 2 s in which nobody spoke, and takes it back at the next packet', async () => {
    const { actor, close } = await channelOf4([1, 1, 1, 1]);
    const calls: boolean[] = [];
    let asleep = false;
    actor.schedule = {
      slot: 0,
      shared: false,
      advance: () => 0,
      remove: () => {},
      share: () => {},
      get asleep() {
        return asleep;
      },
      sleep: (on: boolean) => {
        calls.push(on);
        asleep = on;
      },
    };
    const ticks = SLEEP_AFTER_MS / 20;
    const t0 = Math.ceil(performance.now());
    for (let k = 0; k < ticks - 1; k++) actor.due(t0 + k * 20);
    expect(calls).toEqual([]);
    actor.due(t0 + (ticks - 1) * 20);
    expect(calls).toEqual([true]);
    expect(actor.core.asleep).toBe(true);
    expect(actor.core.stats.sleeps).toBe(1);
    // 10 s later a packet arrives (the ingress wakes the core first): the clock takes the channel
    // back, and its next wake-up, on the same grid, plays one frame, not the 500 slept through.
    const before = actor.core.stats.ticks;
    const at = t0 + (ticks - 1) * 20 + 10_000 + 7;
    actor.core.wake(at);
    expect(calls).toEqual([true, false]);
    expect(actor.core.asleep).toBe(false);
    expect(actor.core.stats.wakes).toBe(1);
    actor.due(t0 + (ticks - 1) * 20 + 10_020);
    expect(actor.core.stats.ticks - before).toBe(1);
    expect(actor.ticksSkipped).toBe(0);
    // A wake-up for a channel awake does nothing.
    actor.core.wake(at + 30);
    expect(calls).toEqual([true, false]);
    close();
  });
});
