import { describe, expect, it } from 'vitest';
import { nodeCryptoAead } from '@voice/protocol';
import { ClickSource, ToneSource } from '../src/index.js';
import { clickDelays, quantile } from '../../test-support/audio.js';
import { heard } from '../../test-support/bots.js';
import { LossyRelay } from '../../test-support/lossy-relay.js';
import { sleep, voiceFixture } from '../../test-support/voice-fixture.js';

/** End-to-end smoke against a real server: two bots in one channel, one speaks, the other listens. */

const fx = voiceFixture();
const bot = fx.bot;

describe('voice end to end (real server)', () => {
  it.each(['udp', 'ws'] as const)(
    'a 440 Hz tone from one bot reaches the other at its level (%s)',
    async (transport) => {
      const speaker = await bot('speaker', { transport, channel: 'Lobby', create: true });
      const listener = await bot('listener', { transport, channel: 'Lobby' });
      expect(listener.channel?.id).toBe(speaker.channel?.id);
      await Promise.all([speaker.waitReady(3000), listener.waitReady(3000)]);
      speaker.startVoice(new ToneSource(440, -20));
      await sleep(2000);
      const level = heard(listener, 440, 1000);
      expect(level).toBeGreaterThan(-23);
      expect(level).toBeLessThan(-17);
      const ls = listener.stats();
      expect(ls.transport).toBe(transport);
      expect(ls.audioReceived).toBeGreaterThan(50);
      expect(ls.rttMs).not.toBeNull();
      expect(ls.lost).toBe(0);
      const ss = speaker.stats();
      expect(ss.audioSent).toBeGreaterThan(50);
      expect(ss.upstreamPacketsLost).toBe(0);
      // The speaker does not hear itself (mix-minus).
      expect(heard(speaker, 440, 1000)).toBeLessThan(-60);
    },
  );

  it('seals with the native AES-GCM addon by default, and interoperates with node:crypto', async () => {
    // Bytes are the same whatever the backend (media/test/aead-native.test.ts): what this checks is
    // that the client takes the allocation-free one unless told, and closes it with its session.
    const native = await bot('native', { channel: 'Aead', create: true });
    const plain = await bot('plain', { channel: 'Aead', aead: nodeCryptoAead });
    await Promise.all([native.waitReady(3000), plain.waitReady(3000)]);
    expect(native.stats().aead).toMatch(/^openssl-evp/);
    expect(plain.stats().aead).toBe('node:crypto');
    native.startVoice(new ToneSource(440, -20));
    plain.startVoice(new ToneSource(660, -20));
    await sleep(1500);
    expect(heard(plain, 440, 1000)).toBeGreaterThan(-23);
    expect(heard(native, 660, 1000)).toBeGreaterThan(-23);
  });

  it('measures click latency and survives a lossy path', async () => {
    const speaker = await bot('clicker', { channel: 'Lossy', create: true });
    const relay = await LossyRelay.start({
      target: { host: '127.0.0.1', port: fx.srv.udpPort },
      serverToClient: { loss: 0.05, jitterMs: 10 },
      seed: 5,
    });
    fx.defer(() => relay.close());
    const listener = await bot('far-listener', { channel: 'Lossy', udpTarget: relay.address });
    await Promise.all([speaker.waitReady(3000), listener.waitReady(3000)]);
    const click = new ClickSource({ atMs: 500, periodMs: 400 });
    speaker.startVoice(click);
    await sleep(3000);
    // Every click is accounted for: heard, or lost with the one packet that carried it (5 % loss:
    // three or more of six lost has a probability under 0.3 %).
    const clicks = click.clickSamples(click.position - 48 * 300);
    expect(clicks.length).toBeGreaterThanOrEqual(5);
    await sleep(400); // the last click's whole window is recorded
    const { delays, missed } = clickDelays(
      clicks,
      speaker.sentLog,
      speaker.binding!.frameMs * 48,
      listener.recording(),
      380,
    );
    expect(missed.length, 'clicks not heard').toBeLessThanOrEqual(2);
    console.log(
      `lossy click latency: ${delays.map((d) => d.toFixed(1)).join(' ')} ms, ${missed.length} missed`,
    );
    // BENCHMARKS.md: about 77 ms mouth to ear through this relay (the loopback path's 45-65 ms plus
    // the listener's jitter buffer grown for 10 ms of jitter). Measured p50 53-118 ms on 2026-11-30
    // with the machine at a load average of 8-13 on 2 cores: 120 ms is the claim plus two frames.
    expect(Math.min(...delays)).toBeGreaterThan(speaker.binding!.frameMs);
    expect(quantile(delays, 0.5)).toBeLessThan(120);
    expect(relay.stats().serverToClient.forwarded).toBeGreaterThan(50);
  });
});

describe('VoiceClient channel and session handling (real server)', () => {
  it('waitReady spans a replaced session (a rekey: in a cluster, a redirect or a move) and fails only on leave or close', async () => {
    // Every packet to the server is lost at first: no session can be ready yet.
    const relay = await LossyRelay.start({
      target: { host: '127.0.0.1', port: fx.srv.udpPort },
      clientToServer: { loss: 1 },
      seed: 9,
    });
    fx.defer(() => relay.close());
    const c = await bot('waiter', {
      channel: 'Waiting',
      create: true,
      udpTarget: relay.address,
      wsFallback: false,
      helloRetryMs: 100,
    });
    const first = c.voice!;
    const ready = c.waitReady(5000);
    // The rekey closes the session being waited on; the wait goes on for the new one.
    await c.join('Waiting');
    expect(first.isClosed).toBe(true);
    relay.setConditions('clientToServer', {});
    await ready;
    expect(c.voice!.isReady).toBe(true);
    expect(c.voice).not.toBe(first);

    // A wait that the binding's end cuts short: leaving, then closing.
    relay.setConditions('clientToServer', { loss: 1 });
    await c.join('Waiting');
    const left = expect(c.waitReady(5000)).rejects.toMatchObject({ code: 'NOT_IN_CHANNEL' });
    await c.leave();
    await left;
    await c.join('Waiting');
    const closed = expect(c.waitReady(5000)).rejects.toMatchObject({ code: 'CLOSED' });
    await c.close();
    await closed;
  });

  it('a resumed session from another process adopts the fresh binding of its welcome', async () => {
    // resume: false, so the dropped client closes and another process takes its session over.
    const first = await bot('resumer', { channel: 'Resume', create: true, resume: false });
    await first.waitReady(3000);
    const oldKey = Buffer.from(first.binding!.key).toString('hex');
    first.signaling.terminate();
    await expect.poll(() => first.isClosed).toBe(true);
    const second = await bot('ignored', { token: first.token, resume: false });
    expect(second.signaling.welcome.resumed).toBe(true);
    expect(second.channel?.name).toBe('Resume');
    expect(Buffer.from(second.binding!.key).toString('hex')).not.toBe(oldKey);
    // The welcome's fresh binding is used as it is (no leave and rejoin).
    expect(second.binding!.voiceId).toBe(second.signaling.welcome.voice!.voiceId);
    await second.waitReady(3000);
    const listener = await bot('witness', { channel: 'Resume' });
    await listener.waitReady(3000);
    second.startVoice(new ToneSource(440, -20));
    await sleep(1500);
    expect(heard(listener, 440, 500)).toBeGreaterThan(-24);

    // Again, asking for the channel it is already in: the resumed binding serves, no extra join.
    const secondKey = Buffer.from(second.binding!.key).toString('hex');
    second.signaling.terminate();
    await expect.poll(() => second.isClosed).toBe(true);
    const third = await bot('ignored', {
      token: first.token,
      channel: 'Resume',
      source: new ToneSource(700, -20),
    });
    expect(third.binding!.voiceId).toBe(third.signaling.welcome.voice!.voiceId);
    expect(Buffer.from(third.binding!.key).toString('hex')).not.toBe(secondKey);
    await third.waitReady(3000);
    listener.clearRecording();
    await sleep(1200);
    expect(heard(listener, 700, 500)).toBeGreaterThan(-24);
  });

  it('ends voice when the channel is deleted, and leave() voids the binding', async () => {
    const owner = await bot('owner', { channel: 'Doomed', create: true });
    const member = await bot('member', { channel: 'Doomed' });
    const left: string[] = [];
    member.on('left', (r) => left.push(r));
    await owner.signaling.request('channel.delete', { channelId: owner.channel!.id });
    await expect.poll(() => member.binding).toBeNull();
    expect(left).toEqual(['deleted']);
    await owner.join('Other', { create: true });
    await owner.leave();
    expect(owner.binding).toBeNull();
    expect(() => owner.startVoice(new ToneSource(440))).toThrow(/join a channel/);
    await expect(owner.join('Nope')).rejects.toMatchObject({ code: 'CHANNEL_NOT_FOUND' });
  });
});
