import { describe, expect, it } from 'vitest';
import {
  MAX_PACKET_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  encodeTimeBody,
} from '@voice/protocol';
import { ToneSource } from '../../client/src/index.js';
import { expectHearsOthers, heard, listen } from '../../test-support/bots.js';
import { steadyRun } from '../../test-support/stalls.js';
import { sleep, voiceFixture } from '../../test-support/voice-fixture.js';

/**
 * The voice scenarios end to end: VoiceClient bots against a real server, over real UDP on 127.0.0.1
 * (or the WebSocket fallback), with real Opus. Every assertion is on the audio a bot played out
 * (Goertzel levels, click onsets) or on the counters that describe it. Scenario 6 (forged, replayed and
 * truncated packets) is in voice-raw.test.ts. Scenarios 2 (per-listener volume), 3 (server mute,
 * deafen, self-mute), 4 (loss, reordering, jitter), 5 (click latency) and 7 (WebSocket and UDP
 * voice) are in scenarios/voice-scenarios.ts, which topologies.test.ts runs on one server and on a
 * 2-process cluster. What stays here is the mixer's own work, read from the server's internals.
 */

const fx = voiceFixture();
const { bot, channel: channelOf } = fx;

const TONES = [440, 700, 1100] as const;

describe('voice scenarios (bots, real server, UDP on 127.0.0.1, Opus)', () => {
  it('1. three speakers: each hears exactly the other two tones at their level, never its own', async () => {
    const trio = await channelOf('Trio', ['tone-a', 'tone-b', 'tone-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    await listen(trio, 1000, 700);
    // Mix-minus: its own tone is at least 30 dB below the source level.
    expectHearsOthers(trio, TONES);
    for (const b of trio) expect(b.stats().lost).toBe(0);
    // Three speakers: each listener's stream is its own mix-minus, encoded once for it alone. The one
    // exception, a tick in which a speaker's frame is missing, is a lone-speaker forward; so every
    // packet sent that was not forwarded is exactly one encode, and most ticks encode three mixes.
    // (A mix is not sent to a listener that had its frame forwarded as a talkspurt started.)
    const st = fx.srv.voice.channelStats()[0]!.core.stats;
    expect(st.packetsOut - st.forwarded).toBe(st.encodes - st.mixRepeatsSkipped);
    expect(st.encodes).toBeLessThanOrEqual(3 * st.ticks);
    expect(st.encodes).toBeGreaterThan(3 * 50);
  });

  it('1a. two speakers and three silent listeners: one shared encode per tick, speakers forwarded', async () => {
    const five = await channelOf('Shared', ['sh-a', 'sh-b', 'sh-c', 'sh-d', 'sh-e']);
    const [a, b, ...silent] = five;
    a!.startVoice(new ToneSource(TONES[0], -20));
    b!.startVoice(new ToneSource(TONES[1], -20));
    await sleep(700);
    const st = fx.srv.voice.channelStats()[0]!.core.stats;
    const before = { ticks: st.ticks, encodes: st.encodes, forwarded: st.forwarded, packetsIn: st.packetsIn };
    await listen(five, 1000, 0);
    const ticks = st.ticks - before.ticks;
    const encodes = st.encodes - before.encodes;
    const forwarded = st.forwarded - before.forwarded;
    // The silent listeners share one mix, encoded once per tick however many they are.
    expect(encodes).toBeLessThanOrEqual(ticks);
    expect(encodes).toBeGreaterThan(ticks / 2);
    // Each speaker hears exactly the other at unity gain: the other's packet is forwarded, not
    // re-encoded, when it arrives (packetsIn counts it at the next tick: one per speaker may
    // straddle each end of the window). So every packet not forwarded went to a silent listener,
    // three per encode (less a mix a listener had the frame of: forwarded as a talkspurt started).
    expect(forwarded).toBeLessThanOrEqual(st.packetsIn - before.packetsIn + 4);
    expect(forwarded).toBeGreaterThan(ticks);
    expect(st.packetsOut - st.forwarded).toBe(3 * st.encodes - st.mixRepeatsSkipped);
    expect(heard(a!, TONES[1]), 'a hears b').toBeGreaterThan(-23);
    expect(heard(b!, TONES[0]), 'b hears a').toBeGreaterThan(-23);
    expect(heard(a!, TONES[0]), 'a never hears itself').toBeLessThan(-50);
    for (const [i, l] of silent.entries())
      for (const hz of [TONES[0], TONES[1]]) {
        expect(heard(l, hz), `silent ${i} hears ${hz} Hz`).toBeGreaterThan(-23);
        expect(heard(l, hz), `silent ${i} hears ${hz} Hz`).toBeLessThan(-17);
      }
  });

  it('1b. a lone speaker is forwarded to every listener without a single encode', async () => {
    const trio = await channelOf('Solo', ['solo-a', 'solo-b', 'solo-c']);
    trio[0]!.startVoice(new ToneSource(TONES[0], -20));
    await listen(trio, 1000, 700);
    const st = fx.srv.voice.channelStats()[0]!.core.stats;
    expect(st.encodes).toBe(0);
    expect(st.forwarded).toBe(st.packetsOut);
    // Two listeners, each packet once to each, when it arrives (the last one or two may not be
    // counted in packetsIn yet: that happens at the next tick).
    expect(st.forwarded).toBeLessThanOrEqual(2 * (st.packetsIn + 2));
    expect(st.forwarded).toBeGreaterThan(2 * 50);
    for (const l of trio.slice(1)) {
      expect(heard(l, TONES[0])).toBeGreaterThan(-23);
      expect(heard(l, TONES[0])).toBeLessThan(-17);
    }
  });

  it('1c. bitrate and complexity change live: the next mixes are encoded with the new settings', async () => {
    // A budget of a whole frame: the CPU overuse detector (scenario 8) must not lower the complexity
    // on its own on a loaded machine, or the comparison below would compare two low settings.
    await fx.restart({ clock: { tickBudget: 1 } });
    const trio = await channelOf('Live', ['live-a', 'live-b', 'live-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    await sleep(700);
    const core = fx.srv.voice.channelStats()[0]!.core;
    const c = fx.srv.voice.counters;
    /** Mean bytes per packet the server sent over `ms` (header and tag included: 32 bytes). */
    const meanBytesOut = async (ms: number): Promise<number> => {
      const [p0, b0] = [c.packetsOut, c.bytesOut];
      await sleep(ms);
      return (c.bytesOut - b0) / (c.packetsOut - p0);
    };
    /** Median encode time of the mixes over the next `ms`. */
    const encodeP50 = async (ms: number): Promise<number> => {
      core.stats.encodeUs.reset();
      await sleep(ms);
      return core.stats.encodeUs.percentile(50);
    };
    const channelId = trio[0]!.channel!.id;
    const update = (voice: { bitrate?: number; complexity?: number }) =>
      trio[0]!.signaling.request('channel.update', { channelId, voice });

    // Bitrate: 64 kbit/s is 160 bytes of Opus per 20 ms frame, 16 kbit/s is 40 (+32 header and tag).
    const before = await meanBytesOut(600);
    expect(before).toBeGreaterThan(32 + 120);
    await update({ bitrate: 16_000 });
    await sleep(200);
    const after = await meanBytesOut(600);
    expect(after).toBeLessThan(32 + 60);
    expect(after).toBeGreaterThan(32 + 20);

    // Complexity: at 16 kbit/s (SILK) libopus encodes a tone in about 170 µs at complexity 9 and 33 µs
    // at 0, without FEC as the server encodes (measured 2026-11-30; at 64 kbit/s, CELT, the two are
    // within 20 %, so the bitrate changes first).
    expect(core.stats.complexity).toBe(9);
    const encodeHigh = await encodeP50(600);
    await update({ complexity: 0 });
    await expect.poll(() => core.stats.complexity).toBe(0);
    const encodeLow = await encodeP50(600);
    console.log(
      `live change: ${before.toFixed(0)} -> ${after.toFixed(0)} bytes per packet; ` +
        `encode p50 ${encodeHigh.toFixed(0)} -> ${encodeLow.toFixed(0)} µs`,
    );
    expect(encodeLow).toBeLessThan(encodeHigh / 2);
    // Still the same mix, at its level (a window in which the whole process stalled, server and bots
    // alike, is recorded again: see test-support/stalls.ts).
    await steadyRun(() => listen(trio, 1000, 0));
    expectHearsOthers(trio, TONES, { low: -24, high: -16, own: null });
  });

  it('1d. encoders of mixes nobody needs any more are freed, and made again when needed', async () => {
    const trio = await channelOf('Idle', ['idle-a', 'idle-b', 'idle-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    const st = () => fx.srv.voice.channelStats()[0]!.core.stats;
    // Three speakers: three mix-minus streams, one encoder each.
    await expect.poll(() => st().encoders, { timeout: 3000 }).toBe(3);
    // One speaker left: the two others are forwarded its packets, so no mix is encoded, and the
    // encoders go once unused for 100 ticks (checked every 128: at most 4.6 s at 20 ms).
    trio[1]!.stopVoice();
    trio[2]!.stopVoice();
    const encodes = st().encodes;
    await expect.poll(() => st().encoders, { timeout: 8000, interval: 200 }).toBe(0);
    expect(st().encodes - encodes).toBeLessThan(3 * 10); // only the frames still in flight
    await listen(trio.slice(1), 600, 0);
    expect(heard(trio[1]!, TONES[0], 600), 'the lone speaker is still heard').toBeGreaterThan(-23);
    // A second speaker: each of the two is forwarded the other; the silent one needs one mix again.
    trio[1]!.startVoice(new ToneSource(TONES[1], -20));
    await expect.poll(() => st().encoders, { timeout: 3000 }).toBe(1);
    await listen([trio[2]!], 600, 300);
    expect(heard(trio[2]!, TONES[0], 600)).toBeGreaterThan(-23);
    expect(heard(trio[2]!, TONES[1], 600)).toBeGreaterThan(-23);
  });

  it('1e. a member flooding its own authenticated audio fills only its inbox quota: the others still hear each other', async () => {
    const [a, b] = await channelOf('Flooded', ['flood-a', 'flood-b']);
    // The flooder is a member with a valid key on its registered address: nothing stops its packets
    // before the channel inbox, where it may hold 64 at most.
    const f = await fx.srv.user('flooder');
    const binding = (await f.ws.request('channel.join', { channelId: a!.channel!.id })).voice;
    const cipher = new VoiceCipher(binding.key, VoiceDirection.CLIENT_TO_SERVER);
    const sock = await fx.udp();
    const buf = new Uint8Array(MAX_PACKET_BYTES);
    let ts = 0;
    let sequence = 0;
    const send = (type: VoicePacketType, body: Uint8Array) => {
      const h = { type, flags: 0, voiceId: binding.voiceId, sequence: sequence++, timestamp: ts };
      const n = cipher.seal(h, body, buf);
      // A copy: dgram reads the buffer after this call returns.
      sock.send(Buffer.from(buf.subarray(0, n)), binding.udpPort, '127.0.0.1');
    };
    send(VoicePacketType.HELLO, encodeTimeBody(0));
    const opusFrame = new Uint8Array(120).fill(0x55);
    opusFrame[0] = 0x78; // a CELT 20 ms TOC: decodable or not, it must not crowd the others out
    const core = () => fx.srv.voice.channelStats()[0]!.core.stats;
    const flood = setInterval(() => {
      // 100 per tick, 50 times the rate of a real member. (600 per tick, more than the whole ring,
      // saturates this one process before the ring: frames then go missing with or without a quota.)
      for (let k = 0; k < 100; k++, ts += 960) send(VoicePacketType.AUDIO, opusFrame);
    }, 20);
    fx.defer(() => clearInterval(flood));
    // The flood starts in a silent channel and goes on while the others start talking: the flooder is
    // the lone speaker first (forwarded as it arrives), then one of three.
    await sleep(200);
    a!.startVoice(new ToneSource(TONES[0], -20));
    b!.startVoice(new ToneSource(TONES[1], -20));
    await listen([a!, b!], 1000, 700);
    clearInterval(flood);
    expect(core().inboxOverQuota, 'flood packets refused at the quota').toBeGreaterThan(1000);
    expect(heard(a!, TONES[1]), 'a hears b through the flood').toBeGreaterThan(-24);
    expect(heard(b!, TONES[0]), 'b hears a through the flood').toBeGreaterThan(-24);
    expect(a!.stats().lost).toBe(0);
    expect(b!.stats().lost).toBe(0);
    // The flooder was a lone speaker at first, forwarded as it arrived: still one frame per frame
    // period reaches a listener (not 64 a tick, which overflowed its buffer and pushed out the others).
    const ticks = core().ticks;
    for (const c of [a!, b!]) {
      expect(c.stats().audioReceived, 'one frame per period at most').toBeLessThanOrEqual(ticks + 2);
      expect(c.stats().session!.playout.overflowDrops, 'nothing pushed out of the buffer').toBe(0);
    }
    expect(core().forwardDeferred, 'flood packets held back until due').toBeGreaterThan(100);
  });

  it('a bot that creates its channel sets its codec: frame size, bitrate and complexity', async () => {
    const maker = await bot('codec-maker', {
      channel: 'Codec10',
      create: true,
      voice: { frameMs: 10, bitrate: 48_000, complexity: 7 },
    });
    expect(maker.channel!.voice).toEqual({ frameMs: 10, bitrate: 48_000, complexity: 7 });
    expect(maker.binding!.frameMs).toBe(10);
    const joiner = await bot('codec-joiner', { channel: 'Codec10', voice: { frameMs: 20 } });
    // Joining an existing channel takes its settings; `voice` applies only to a channel created.
    expect(joiner.binding!.frameMs).toBe(10);
  });

  it('8. a channel over its CPU budget lowers its encoder complexity and keeps sounding', async () => {
    // A budget of 10 µs per tick: every real tick with an encode is over it.
    await fx.restart({ clock: { tickBudget: 0.0005 } });
    const trio = await channelOf('Busy', ['busy-a', 'busy-b', 'busy-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    // One decision per 50 ticks (1 s): after two, 9 -> 7 -> 5.
    await expect
      .poll(() => fx.srv.voice.channelStats()[0]?.core.stats.complexity, { timeout: 5000, interval: 100 })
      .toBeLessThanOrEqual(5);
    const stats = fx.srv.voice.channelStats()[0]!.core.stats;
    expect(stats.cpuAdaptations).toBeGreaterThanOrEqual(2);
    expect(stats.tickUs.percentile(50)).toBeGreaterThan(10);
    const metrics = await (await fetch(`${fx.srv.url}/metrics`)).text();
    expect(metrics).toMatch(/voice_channel_complexity\{channel="[^"]+"\} [1-5]\n/);
    expect(metrics).toMatch(/voice_channel_cpu_adaptations\{channel="[^"]+"\} [2-9]/);
    // Cheaper encoding, same mix: everyone still hears the other two tones at their level.
    await listen(trio, 1000, 300);
    expectHearsOthers(trio, TONES, { own: null });
  });
});
