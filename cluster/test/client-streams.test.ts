import { describe, expect, it } from 'vitest';
import { sineInt16 } from '@voice/media';
import { ToneSource } from '../../client/src/index.js';
import { heard } from '../../test-support/bots.js';
import { OnceSource, localDecode as decodeAll } from '../../test-support/opus-path.js';
import { findFrame, level, minus, nonZero } from '../../test-support/pcm-match.js';
import { sleep, voiceFixture } from '../../test-support/voice-fixture.js';

/**
 * The shared VoiceClient against a real server that forwards speakers as STREAM packets (protocol
 * README 8.8): a client that asks for streams plays each speaker as sent and mixes them itself,
 * sample for sample what local decodes of the sent packets add up to; the server decodes, mixes
 * and encodes nothing for it. A client that asks for none (streams 1) hears the server's mix.
 */

const FRAME = 960;
const BITRATE = 64_000;
const COMPLEXITY = 9;

const fx = voiceFixture();

/** What a loss-free link plays of `signal` (the session's codec settings). */
function localDecode(signal: Int16Array): Int16Array {
  return decodeAll(fx.opus, signal, { bitrate: BITRATE, complexity: COMPLEXITY });
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${fx.srv.url}/metrics`)).text();
  const re = new RegExp(`^${name}${labels ? `\\{${labels}\\}` : '(\\{[^}]*\\})?'} (\\S+)$`, 'm');
  const m = re.exec(text);
  return m ? Number(m[m.length - 1]) : 0;
}

describe('VoiceClient with streams against a server that forwards them (README 8.8)', () => {
  let attempt = 0;

  it(
    'plays two forwarded speakers as the exact sum of local decodes of what they sent; the server decodes and encodes nothing',
    { retry: 1, timeout: 30_000 },
    async () => {
      const n = ++attempt;
      const voice = { frameMs: 20 as const, bitrate: BITRATE, complexity: COMPLEXITY };
      const a = await fx.bot(`cs-a${n}`, { channel: `Streams ${n}`, create: true, voice, streams: 4 });
      const b = await fx.bot(`cs-b${n}`, { channel: `Streams ${n}`, streams: 4 });
      // A measuring listener: time-stretching would rightly give back delay after a stall of this
      // machine, and no recording could then match sample for sample.
      const l = await fx.bot(`cs-l${n}`, { channel: `Streams ${n}`, timeStretch: false, streams: 4 });
      await Promise.all([a, b, l].map((c) => c.waitReady(3000)));
      expect(l.stats().streams, 'granted: all 4 asked for, the server maxStreams').toBe(4);
      const channelId = a.channel!.id;
      // Alice alone for a second, then Bob too: each is found by its first frame.
      const sigA = sineInt16(5 * 48_000, 440, -18);
      const sigB = sineInt16(3 * 48_000, 660, -18);
      a.startVoice(new OnceSource(sigA));
      await sleep(1000);
      b.startVoice(new OnceSource(sigB));
      const framesA = sigA.length / FRAME;
      const framesB = sigB.length / FRAME;
      for (let t = 0; t < 100 && (a.sentLog.length < framesA || b.sentLog.length < framesB); t++)
        await sleep(50);
      await sleep(500);
      // A sender whose clock skipped ticks (this process stalled) left gaps in its own timeline:
      // then nothing can match sample for sample. Say so rather than blame the playout.
      for (const c of [a, b]) expect(c.stats().session!.sender!.skippedTicks, 'sender skipped ticks').toBe(0);
      expect([a.sentLog.length, b.sentLog.length]).toEqual([framesA, framesB]);

      const rec = l.recording().samples;
      const decA = localDecode(sigA);
      const decB = localDecode(sigB);
      const oa = findFrame(rec, decA, 0, rec.length);
      expect(oa, "Alice's first frame, sample for sample").toBeGreaterThanOrEqual(0);
      const withoutA = minus(rec, decA, oa);
      const ob = findFrame(withoutA, decB, oa, rec.length);
      expect(ob, "Bob's first frame, sample for sample, under Alice").toBeGreaterThanOrEqual(0);
      expect(ob - oa, 'Bob started about a second after Alice').toBeGreaterThan(0.8 * 48_000);
      // From Alice's first sample to the end of Bob's: the exact sum, not one sample off (a
      // concealed frame, a slip or a second Opus generation would show here).
      const end = Math.min(oa + decA.length, ob + decB.length);
      expect(nonZero(minus(withoutA, decB, ob), oa, end)).toBe(0);
      expect(level(rec, 440, ob, end)).toBeGreaterThan(-19.5);
      expect(level(rec, 660, ob, end)).toBeGreaterThan(-19.5);

      const ls = l.stats();
      expect(ls.audioReceived, 'no mix: every frame came as a STREAM packet').toBe(0);
      expect(ls.streamReceived).toBe(framesA + framesB);
      const sources = ls.session!.sources!.sources;
      expect(sources.map((s) => s.source).sort()).toEqual([a.user.id, b.user.id].sort());
      for (const s of sources)
        expect({ late: s.late, restarts: s.restarts }).toEqual({ late: 0, restarts: 0 });
      // The server: STREAM packets to all three (each speaker gets the other's), nothing decoded,
      // mixed or encoded for this channel.
      const ch = `channel="${channelId}"`;
      expect(await metric('voice_channel_streamed', ch)).toBe(2 * (framesA + framesB));
      expect(await metric('voice_channel_encodes', ch)).toBe(0);
      expect(await metric('voice_channel_decodes', ch)).toBe(0);
    },
  );

  it('a client that asks for no streams hears the server mix at level beside one that plays streams (over the WebSocket)', async () => {
    const a = await fx.bot('mx-a', { channel: 'Mixed', create: true });
    const b = await fx.bot('mx-b', { channel: 'Mixed' });
    // Over the WebSocket fallback: STREAM packets come inside signaling frames as AUDIO does.
    const streamed = await fx.bot('mx-streams', { channel: 'Mixed', streams: 4, transport: 'ws' });
    const legacy = await fx.bot('mx-legacy', { channel: 'Mixed' }); // asks for none: streams 1
    await Promise.all([a, b, streamed, legacy].map((c) => c.waitReady(3000)));
    expect([streamed.stats().streams, legacy.stats().streams]).toEqual([4, 1]);
    expect(streamed.stats().transport).toBe('ws');
    a.startVoice(new ToneSource(440, -20));
    b.startVoice(new ToneSource(660, -20));
    await sleep(1500);
    for (const c of [streamed, legacy]) c.clearRecording();
    await sleep(1100);
    for (const [c, name] of [
      [streamed, 'streamed'],
      [legacy, 'legacy'],
    ] as const) {
      for (const hz of [440, 660]) {
        expect(heard(c, hz, 1000), `${name} hears ${hz} Hz`).toBeGreaterThan(-23);
        expect(heard(c, hz, 1000), `${name} hears ${hz} Hz`).toBeLessThan(-17);
      }
    }
    const [s, g] = [streamed.stats(), legacy.stats()];
    expect({ audio: s.audioReceived, streams: s.streamReceived > 100 }).toEqual({ audio: 0, streams: true });
    expect({ audio: g.audioReceived > 100, streams: g.streamReceived }).toEqual({ audio: true, streams: 0 });
    expect(g.session!.sources, 'no stream playouts without a grant').toBeNull();
    // Someone needs the mix now: the server decodes and encodes for this channel.
    expect(await metric('voice_channel_encodes', `channel="${a.channel!.id}"`)).toBeGreaterThan(50);
  });
});
