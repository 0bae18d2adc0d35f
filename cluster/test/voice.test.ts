import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import {
  MAX_PACKET_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  encodeTimeBody,
  type UserId,
} from '@voice/protocol';
import { createOpus, type OpusFactory } from '@voice/media';
import { ClickSource, ToneSource, VoiceClient, type VoiceClientOptions } from '../../client/src/index.js';
import { clickDelays, medianToneDbfs, quantile } from '../../test-support/audio.js';
import { LossyRelay } from '../../test-support/lossy-relay.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * The voice scenarios end to end: VoiceClient bots against a real server, over real UDP on 127.0.0.1
 * (or the WebSocket fallback), with real Opus. Every assertion is on the audio a bot played out
 * (Goertzel levels, click onsets) or on the counters that describe it. Scenario 6 (forged, replayed and
 * truncated packets) is in voice-raw.test.ts.
 */

let opus: OpusFactory;
let srv: TestServer;
const bots: VoiceClient[] = [];
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  // One Opus factory for every bot (and the server has its own).
  opus = await createOpus();
});
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  for (const b of bots.splice(0)) await b.close();
  for (const c of closers.splice(0).reverse()) await c();
  await srv.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function bot(nickname: string, extra: Partial<VoiceClientOptions> = {}): Promise<VoiceClient> {
  const c = await VoiceClient.connect({
    server: srv.url,
    nickname,
    opus,
    heartbeatMs: 500,
    helloRetryMs: 200,
    ...extra,
  });
  bots.push(c);
  return c;
}

/** Bots in one channel (the first creates it), all with their voice path up. */
async function channelOf(name: string, nicknames: string[], extra: Partial<VoiceClientOptions> = {}) {
  const out: VoiceClient[] = [];
  for (const [i, nick] of nicknames.entries())
    out.push(await bot(nick, { channel: name, ...(i === 0 ? { create: true } : {}), ...extra }));
  await Promise.all(out.map((b) => b.waitReady(3000)));
  return out;
}

/**
 * Level of `hz` in what `c` played over the last `ms` (median of 100 ms Goertzel windows). Throws
 * when less than `ms` was played, so "not heard" cannot pass on a playout that never ran.
 */
function heard(c: VoiceClient, hz: number, ms = 1000): number {
  return medianToneDbfs(c.recording().samples, hz, ms);
}

/** Lets a change reach the mix (and drain the jitter buffers), then records `ms` of fresh audio. */
async function listen(clients: VoiceClient[], ms = 1000, settleMs = 300): Promise<void> {
  await sleep(settleMs);
  for (const c of clients) c.clearRecording();
  await sleep(ms + 100);
}

const TONES = [440, 700, 1100] as const;

describe('voice scenarios (bots, real server, UDP on 127.0.0.1, Opus)', () => {
  it('1. three speakers: each hears exactly the other two tones at their level, never its own', async () => {
    const trio = await channelOf('Trio', ['tone-a', 'tone-b', 'tone-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    await listen(trio, 1000, 700);
    for (const [i, b] of trio.entries()) {
      for (const [j, hz] of TONES.entries()) {
        const level = heard(b, hz);
        if (i === j) {
          // Mix-minus: its own tone is at least 30 dB below the source level.
          expect(level, `bot ${i} hears its own ${hz} Hz`).toBeLessThan(-50);
        } else {
          expect(level, `bot ${i} hears ${hz} Hz`).toBeGreaterThan(-23);
          expect(level, `bot ${i} hears ${hz} Hz`).toBeLessThan(-17);
        }
      }
      expect(b.stats().lost).toBe(0);
    }
    // Three speakers: each listener's stream is its own mix-minus, encoded once for it alone. The one
    // exception, a tick in which a speaker's frame is missing, is a lone-speaker forward; so every
    // packet sent that was not forwarded is exactly one encode, and most ticks encode three mixes.
    const st = srv.voice.channelStats()[0]!.core.stats;
    expect(st.packetsOut - st.forwarded).toBe(st.encodes);
    expect(st.encodes).toBeLessThanOrEqual(3 * st.ticks);
    expect(st.encodes).toBeGreaterThan(3 * 50);
  });

  it('1a. two speakers and three silent listeners: one shared encode per tick, speakers forwarded', async () => {
    const five = await channelOf('Shared', ['sh-a', 'sh-b', 'sh-c', 'sh-d', 'sh-e']);
    const [a, b, ...silent] = five;
    a!.startVoice(new ToneSource(TONES[0], -20));
    b!.startVoice(new ToneSource(TONES[1], -20));
    await sleep(700);
    const st = srv.voice.channelStats()[0]!.core.stats;
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
    // three per encode.
    expect(forwarded).toBeLessThanOrEqual(st.packetsIn - before.packetsIn + 4);
    expect(forwarded).toBeGreaterThan(ticks);
    expect(st.packetsOut - st.forwarded).toBe(3 * st.encodes);
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
    const st = srv.voice.channelStats()[0]!.core.stats;
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
    await srv.stop();
    srv = await startTestServer({ clock: { tickBudget: 1 } });
    const trio = await channelOf('Live', ['live-a', 'live-b', 'live-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    await sleep(700);
    const core = srv.voice.channelStats()[0]!.core;
    const c = srv.voice.counters;
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
    // Still the same mix, at its level.
    await listen(trio, 1000, 0);
    for (const [i, b] of trio.entries())
      for (const [j, hz] of TONES.entries()) {
        if (i === j) continue;
        expect(heard(b, hz), `bot ${i} hears ${hz} Hz at 16 kbit/s`).toBeGreaterThan(-24);
        expect(heard(b, hz)).toBeLessThan(-16);
      }
  });

  it('1d. encoders of mixes nobody needs any more are freed, and made again when needed', async () => {
    const trio = await channelOf('Idle', ['idle-a', 'idle-b', 'idle-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    const st = () => srv.voice.channelStats()[0]!.core.stats;
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
    const f = await srv.user('flooder');
    const binding = (await f.ws.request('channel.join', { channelId: a!.channel!.id })).voice;
    const cipher = new VoiceCipher(binding.key, VoiceDirection.CLIENT_TO_SERVER);
    const sock = createSocket('udp4');
    closers.push(() => new Promise<void>((r) => sock.close(() => r())));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
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
    const core = () => srv.voice.channelStats()[0]!.core.stats;
    const flood = setInterval(() => {
      // 100 per tick, 50 times the rate of a real member. (600 per tick, more than the whole ring,
      // saturates this one process before the ring: frames then go missing with or without a quota.)
      for (let k = 0; k < 100; k++, ts += 960) send(VoicePacketType.AUDIO, opusFrame);
    }, 20);
    closers.push(() => clearInterval(flood));
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

  it('2. per-listener volume: 0 silences one speaker for that listener only; 200 raises it by 6 dB', async () => {
    // -26 dBFS sources: two at +6 dB still peak far below the limiter's knee (-6 dBFS).
    const [a, b, c] = await channelOf('Volume', ['vol-a', 'vol-b', 'vol-c']);
    const trio = [a!, b!, c!];
    trio.forEach((x, i) => x.startVoice(new ToneSource(TONES[i]!, -26)));
    const B = 700;
    const C = 1100;
    await listen(trio, 1000, 700);
    const baseAB = heard(a!, B);
    const baseCB = heard(c!, B);
    expect(baseAB).toBeGreaterThan(-29);
    expect(baseAB).toBeLessThan(-23);

    await a!.setVolume(b!.user.id, 0);
    await listen(trio);
    expect(heard(a!, B), 'a hears b at volume 0').toBeLessThan(baseAB - 30);
    expect(heard(a!, C), 'a still hears c').toBeGreaterThan(-29);
    expect(heard(c!, B), 'c still hears b').toBeGreaterThan(baseCB - 3);

    await a!.setVolume(b!.user.id, 200);
    await listen(trio);
    const boostA = heard(a!, B) - baseAB;
    expect(boostA, 'a hears b 6 dB louder').toBeGreaterThan(3);
    expect(boostA, 'a hears b 6 dB louder').toBeLessThan(9);
    expect(heard(a!, C), 'c unchanged for a').toBeGreaterThan(-29);
    expect(heard(a!, C), 'c unchanged for a').toBeLessThan(-23);
    expect(Math.abs(heard(c!, B) - baseCB), 'c hears b unchanged').toBeLessThan(3);
  });

  it('3. server mute, deafen and self-mute do what they say', async () => {
    const [owner, b, c] = await channelOf('Moderated', ['owner', 'mod-b', 'mod-c']);
    const all = [owner!, b!, c!];
    all.forEach((x, i) => x.startVoice(new ToneSource(TONES[i]!, -20)));
    const [A, B, C] = TONES;
    await listen(all, 600, 500);
    expect(heard(c!, B, 600)).toBeGreaterThan(-23);
    const updated = (
      by: VoiceClient,
      who: UserId,
      field: 'serverMute' | 'selfMute' | 'selfDeaf',
      v: boolean,
    ) => by.signaling.waitFor('member.updated', (m) => m.member.userId === who && m.member[field] === v);

    // Server mute by the channel owner: nobody hears b, and everyone sees serverMute.
    const seen = updated(c!, b!.user.id, 'serverMute', true);
    const dropsBefore = srv.voice.counters.drops.muted;
    await owner!.signaling.request('voice.serverMute', { userId: b!.user.id, muted: true });
    await seen;
    await listen(all, 800);
    expect(heard(owner!, B, 800), 'owner hears server-muted b').toBeLessThan(-50);
    expect(heard(c!, B, 800), 'c hears server-muted b').toBeLessThan(-50);
    expect(heard(c!, A, 800), 'c still hears the owner').toBeGreaterThan(-23);
    // b's client keeps sending (it was not asked to stop): the server drops its audio unread.
    expect(srv.voice.counters.drops.muted).toBeGreaterThan(dropsBefore + 20);
    const unmuted = updated(c!, b!.user.id, 'serverMute', false);
    await owner!.signaling.request('voice.serverMute', { userId: b!.user.id, muted: false });
    await unmuted;

    // Deafen: c receives no audio packets at all and is not heard (its client keeps sending).
    const deaf = updated(owner!, c!.user.id, 'selfDeaf', true);
    await c!.setSelfDeaf(true);
    await deaf;
    await sleep(300);
    const receivedDeaf = c!.stats().audioReceived;
    await listen(all, 800, 0);
    expect(c!.stats().audioReceived, 'audio packets sent to a deafened member').toBe(receivedDeaf);
    expect(c!.stats().audioSent).toBeGreaterThan(0);
    expect(heard(owner!, C, 800), 'owner hears deafened c').toBeLessThan(-50);
    expect(heard(b!, C, 800), 'b hears deafened c').toBeLessThan(-50);
    expect(heard(owner!, B, 800), 'owner hears b again').toBeGreaterThan(-23);
    await c!.setSelfDeaf(false);

    // Self-mute: b stops sending, is not heard, and the others see selfMute.
    const selfMuted = updated(owner!, b!.user.id, 'selfMute', true);
    await b!.setSelfMute(true);
    expect((await selfMuted).member.selfMute).toBe(true);
    await listen(all, 800);
    expect(heard(owner!, B, 800), 'owner hears self-muted b').toBeLessThan(-50);
    expect(heard(c!, B, 800), 'c hears self-muted b').toBeLessThan(-50);
    expect(heard(c!, A, 800), 'undeafened c hears the owner').toBeGreaterThan(-23);
    expect(c!.stats().audioReceived).toBeGreaterThan(receivedDeaf);
  });

  it('4. a tone survives 10% loss, reordering, duplicates and 30 ms jitter both ways', async () => {
    const impair = { loss: 0.1, reorder: 0.1, duplicate: 0.1, jitterMs: 30 };
    const relay = await LossyRelay.start({
      target: { host: '127.0.0.1', port: srv.udpPort },
      clientToServer: impair,
      serverToClient: impair,
      seed: 4,
    });
    closers.push(() => relay.close());
    // Both bots behind the relay. No WebSocket fallback: three lost heartbeats in a row (0.1-0.2 loss
    // per round trip) would move voice off the impaired path this scenario is about.
    const [speaker, listener] = await channelOf('Lossy', ['lossy-speaker', 'lossy-listener'], {
      udpTarget: relay.address,
      wsFallback: false,
      // In-band FEC, so the server can rebuild lost packets (asserted below).
      encoder: { fec: true },
    });
    speaker!.startVoice(new ToneSource(440, -20));
    // Jitter buffers adapt over their 2 s delay window; then a second of audio is judged.
    await listen([listener!], 1000, 2500);
    const level = heard(listener!, 440);
    expect(level, 'tone level through the lossy path').toBeGreaterThan(-23);
    expect(level).toBeLessThan(-17);
    const r = relay.stats();
    for (const d of [r.clientToServer, r.serverToClient]) {
      expect(d.dropped).toBeGreaterThan(10);
      expect(d.duplicated).toBeGreaterThan(3);
      expect(d.reordered).toBeGreaterThan(3);
    }
    // The client counted loss and concealed it; duplicates were refused.
    const ls = listener!.stats();
    expect(ls.transport).toBe('udp');
    expect(ls.lost).toBeGreaterThan(0);
    expect(ls.concealed).toBeGreaterThan(0);
    expect(ls.duplicates).toBeGreaterThan(0);
    expect(speaker!.stats().upstreamPacketsLost).toBeGreaterThan(0);
    // The server counted and concealed the speaker's losses too.
    const ch = speaker!.channel!.id;
    const core = srv.voice.channelStats().find((s) => s.id === ch)!.core;
    expect(core.stats.concealed).toBeGreaterThan(0);
    expect(await srv.ctx.metrics.value('voice_channel_concealed', { channel: ch })).toBe(
      core.stats.concealed,
    );
    // The bots send in-band FEC and the server decodes with libopus: a lost packet followed by a
    // buffered one is rebuilt from that packet's FEC, not guessed.
    expect(core.stats.fecRecovered).toBeGreaterThan(0);
    expect(core.stats.fecRecovered).toBeLessThanOrEqual(core.stats.concealed);
    expect(await srv.ctx.metrics.value('voice_packets_dropped_total', { reason: 'REPLAY' })).toBeGreaterThan(
      0,
    );
    // Nothing crashed: the server still answers.
    const pong = await listener!.signaling.request('ping', { ts: 42 });
    expect(pong.ts).toBe(42);
    expect(listener!.isClosed).toBe(false);
  });

  it('5. latency: every click from one bot is counted, and heard by another within the documented 25-45 ms', async () => {
    const [speaker, listener] = await channelOf('Latency', ['clicker', 'ear']);
    const periodMs = 500;
    const click = new ClickSource({ atMs: 600, periodMs });
    speaker!.startVoice(click);
    await sleep(5000);
    speaker!.stopVoice();
    // Every click sent at least 300 ms before the end must be heard: none may be skipped. The
    // listener records on (silence) for one more period, so a late click still falls in its window.
    const clicks = click.clickSamples(click.position - 48 * 300);
    expect(clicks.length).toBeGreaterThanOrEqual(8);
    await sleep(periodMs);
    const frameSamples = speaker!.binding!.frameMs * 48;
    const { delays, missed } = clickDelays(
      clicks,
      speaker!.sentLog,
      frameSamples,
      listener!.recording(),
      periodMs - 20,
    );
    // Every click is counted; one of nine may go unheard on an overloaded machine (seen once in about
    // twenty runs at a load average of 15 on 2 cores, never on a quiet one; not traced, most likely a
    // jitter buffer catching up after a stall, which drops stale frames). Two would be a fault.
    expect(missed.length, `clicks not heard: ${missed.join(', ')}`).toBeLessThanOrEqual(1);
    const sorted = [...delays].sort((x, y) => x - y);
    const p50 = quantile(delays, 0.5);
    const hold = srv.voice.channelStats().find((s) => s.id === speaker!.channel!.id)!.core.stats.holdMs;
    const holdP50 = hold.percentile(50);
    console.log(
      `latency: end-to-end p50 ${p50.toFixed(1)} ms, all ${sorted.map((d) => d.toFixed(1)).join(' ')} ms; ` +
        `server-added p50 ${holdP50.toFixed(1)} ms, p99 ${hold.percentile(99).toFixed(1)} ms`,
    );
    // README and BENCHMARKS claim p50 25-45 ms (capture frame + server hold of at most one frame +
    // the listener's jitter buffer and playout tick). Measured p50 22.1-44.5 ms over ten runs
    // (2026-11-21 and 2026-11-30), so 50 ms is the claim plus the spread seen above it.
    expect(sorted[0]).toBeGreaterThan(0);
    expect(p50).toBeLessThan(50);
    // A click may meet a scheduling stall of a loaded machine (measured up to 104 ms on a quiet one,
    // over 300 ms with other tests beside it); three in four clicks are within the claim plus one
    // frame (a jitter buffer grown by one frame after a stall).
    expect(quantile(delays, 0.75)).toBeLessThan(70);
    // The server holds a frame until its next tick: at most one frame (20 ms), plus tick lateness.
    expect(holdP50).toBeLessThan(25);
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

  it('7. a WebSocket-fallback bot and a UDP bot hear each other', async () => {
    const udp = await bot('udp-bot', { channel: 'Mixed', create: true });
    // Members see which transport each one uses.
    const shown = udp.signaling.waitFor(
      'member.updated',
      (m) => m.member.nickname === 'ws-bot' && m.member.transport === 'ws',
    );
    const ws = await bot('ws-bot', { channel: 'Mixed', transport: 'ws' });
    await Promise.all([udp.waitReady(3000), ws.waitReady(3000)]);
    await expect.poll(() => srv.voice.endpointOf(srv.sessions.byUser(ws.user.id)!)?.transport).toBe('ws');
    udp.startVoice(new ToneSource(440, -20));
    ws.startVoice(new ToneSource(700, -20));
    await listen([udp, ws], 1000, 700);
    expect(udp.stats().transport).toBe('udp');
    expect(ws.stats().transport).toBe('ws');
    expect(ws.stats().session!.udp).toBeNull();
    expect(heard(udp, 700), 'udp bot hears the ws bot').toBeGreaterThan(-23);
    expect(heard(udp, 700)).toBeLessThan(-17);
    expect(heard(ws, 440), 'ws bot hears the udp bot').toBeGreaterThan(-23);
    expect(heard(ws, 440)).toBeLessThan(-17);
    expect(heard(udp, 440)).toBeLessThan(-50);
    expect(heard(ws, 700)).toBeLessThan(-50);
    expect((await shown).member.userId).toBe(ws.user.id);
  });

  it('8. a channel over its CPU budget lowers its encoder complexity and keeps sounding', async () => {
    // A budget of 10 µs per tick: every real tick with an encode is over it.
    await srv.stop();
    srv = await startTestServer({ clock: { tickBudget: 0.0005 } });
    const trio = await channelOf('Busy', ['busy-a', 'busy-b', 'busy-c']);
    trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
    // One decision per 50 ticks (1 s): after two, 9 -> 7 -> 5.
    await expect
      .poll(() => srv.voice.channelStats()[0]?.core.stats.complexity, { timeout: 5000, interval: 100 })
      .toBeLessThanOrEqual(5);
    const stats = srv.voice.channelStats()[0]!.core.stats;
    expect(stats.cpuAdaptations).toBeGreaterThanOrEqual(2);
    expect(stats.tickUs.percentile(50)).toBeGreaterThan(10);
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(/voice_channel_complexity\{channel="[^"]+"\} [1-5]\n/);
    expect(metrics).toMatch(/voice_channel_cpu_adaptations\{channel="[^"]+"\} [2-9]/);
    // Cheaper encoding, same mix: everyone still hears the other two tones at their level.
    await listen(trio, 1000, 300);
    for (const [i, b] of trio.entries())
      for (const [j, hz] of TONES.entries()) {
        if (i === j) continue;
        expect(heard(b, hz), `bot ${i} hears ${hz} Hz`).toBeGreaterThan(-23);
        expect(heard(b, hz)).toBeLessThan(-17);
      }
  });
});
