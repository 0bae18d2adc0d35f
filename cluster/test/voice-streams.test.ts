import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  STREAM_SOURCE_BYTES,
  VoiceFlags,
  VoicePacketType,
  encodeTimeBody,
  readStreamSource,
  type ChannelId,
  type UserId,
} from '@voice/protocol';
import { createOpus, sineInt16, type OpusFactory } from '@voice/media';
import { toneLevelDbfs } from '../../test-support/levels.js';
import { RawPeer } from '../../test-support/raw-peer.js';
import { RawSignaling } from '../../test-support/raw-signaling.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * Several streams (protocol README 8.8) from the raw protocol: listeners that said `streams` in their
 * hello, built from the protocol package alone, against a real server over UDP with real Opus.
 */

let srv: TestServer;
let opus: OpusFactory;
const opened: { close(): void }[] = [];
beforeEach(async () => {
  srv = await startTestServer();
  opus = await createOpus();
});
afterEach(async () => {
  for (const o of opened.splice(0)) o.close();
  await srv.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FRAME = 960;
const TONES = [440, 700, 1100];

interface Member {
  sig: RawSignaling;
  peer: RawPeer;
  userId: UserId;
}

/** Members `names` in a new channel (the first creates it), each with `streams[i]` in its hello. */
async function channel(names: string[], streams: (number | undefined)[]): Promise<[ChannelId, Member[]]> {
  const sigs: RawSignaling[] = [];
  for (const [i, n] of names.entries()) {
    const k = streams[i];
    const sig = await RawSignaling.login(srv.url, srv.wsUrl, n, k === undefined ? {} : { streams: k });
    opened.push(sig);
    sigs.push(sig);
  }
  const { channel: ch } = await sigs[0]!.request('channel.create', { name: `${names[0]}-ch` });
  const members: Member[] = [];
  for (const sig of sigs) {
    const { voice } = await sig.request('channel.join', { channelId: ch.id });
    const peer = new RawPeer(voice);
    opened.push(peer);
    await peer.bind();
    peer.send(VoicePacketType.HELLO, encodeTimeBody(0));
    members.push({ sig, peer, userId: sig.welcome.user.id });
  }
  for (const m of members)
    await expect.poll(() => m.peer.received.some((r) => r.type === VoicePacketType.HELLO_ACK)).toBe(true);
  return [ch.id, members];
}

/** What a speaker sent: its Opus bytes and flags by timestamp. */
type Sent = Map<number, { bytes: Uint8Array; flags: number }>;

/**
 * Speakers send 20 ms Opus tones (TONES[k], -20 dBFS) in real time for `frames` periods, each on a
 * timestamp clock of its own (starting far from 0 and from each other), MARKER on its first packet
 * and FEC on odd frames (a flag the server must pass on unchanged). `talks(k, i)`: whether speaker
 * k sends frame i; `at(i)` runs before frame i. Returns what each sent, by user id.
 */
async function speak(
  speakers: Member[],
  frames: number,
  talks: (k: number, i: number) => boolean = () => true,
  at?: (i: number) => void,
): Promise<Map<string, Sent>> {
  const enc = speakers.map(() => opus.createEncoder({ frameSamples: FRAME, bitrate: 32_000 }));
  const tones = speakers.map((_, k) => sineInt16(FRAME * frames, TONES[k]!, -20));
  const sent = new Map<string, Sent>(speakers.map((s) => [s.userId, new Map()]));
  const started = speakers.map(() => false);
  const out = new Uint8Array(1000);
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) {
    at?.(i);
    for (const [k, s] of speakers.entries()) {
      if (!talks(k, i)) continue;
      const n = enc[k]!.encode(tones[k]!.subarray(i * FRAME, (i + 1) * FRAME), out);
      const ts = (0xfff00000 + k * 7_777_777 + i * FRAME) >>> 0; // wraps for speaker 0: on purpose
      const flags = (started[k] ? 0 : VoiceFlags.MARKER) | (i % 2 === 1 ? VoiceFlags.FEC : 0);
      started[k] = true;
      sent.get(s.userId)!.set(ts, { bytes: out.slice(0, n), flags });
      s.peer.send(VoicePacketType.AUDIO, out.subarray(0, n), ts, flags);
    }
    const wait = t0 + (i + 1) * 20 - performance.now();
    if (wait > 0) await sleep(wait);
  }
  for (const e of enc) e.destroy();
  return sent;
}

type Received = RawPeer['received'][number];
const streamsOf = (p: RawPeer, from = 0, to = Infinity): Received[] =>
  p.received.filter((r) => r.type === VoicePacketType.STREAM && r.at >= from && r.at < to);
const audioOf = (p: RawPeer, from = 0, to = Infinity): Received[] =>
  p.received.filter((r) => r.type === VoicePacketType.AUDIO && r.at >= from && r.at < to);

async function metric(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const re = new RegExp(`^${name}${labels ? `\\{${labels}\\}` : '(\\{[^}]*\\})?'} (\\S+)$`, 'm');
  const m = re.exec(text);
  return m ? Number(m[m.length - 1]) : 0;
}

/** Decodes `packets` in order (one decoder) into one recording. */
function decode(packets: readonly Uint8Array[]): Int16Array {
  const dec = opus.createDecoder({ frameSamples: FRAME });
  const pcm = new Int16Array(packets.length * FRAME);
  packets.forEach((p, i) => dec.decode(p, pcm.subarray(i * FRAME, (i + 1) * FRAME)));
  dec.destroy();
  return pcm;
}

describe('several streams (README 8.8)', () => {
  it('forwards each speaker to a listener that asked as STREAM packets, byte for byte, and decodes, mixes and encodes nothing', async () => {
    const [channelId, [a, b, l]] = await channel(['st-a', 'st-b', 'st-l'], [4, 4, 4]);
    expect(l!.sig.welcome.streams).toBe(4);
    const sent = await speak([a!, b!], 60);
    await sleep(300);
    const streams = streamsOf(l!.peer);
    expect(audioOf(l!.peer), 'AUDIO to a listener in stream mode').toEqual([]);
    const bySource = new Map<string, number>();
    for (const r of streams) {
      const source = readStreamSource(r.payload);
      expect(source === a!.userId || source === b!.userId, `source ${source}`).toBe(true);
      bySource.set(source!, (bySource.get(source!) ?? 0) + 1);
      // The speaker's own timestamp and flags, its Opus bytes unchanged.
      const s = sent.get(source!)!.get(r.ts);
      expect(s, `a packet ${source} sent at timestamp ${r.ts}`).toBeDefined();
      expect(Buffer.from(r.payload.subarray(STREAM_SOURCE_BYTES)).equals(Buffer.from(s!.bytes))).toBe(true);
      expect(r.flags).toBe(s!.flags);
    }
    // Each packet at most once; every one sent reached the listener, or the budget dropped it.
    expect(new Set(streams.map((r) => `${readStreamSource(r.payload)}:${r.ts}`)).size).toBe(streams.length);
    const dropped = await metric('voice_stream_drops_total', 'reason="budget"');
    expect(streams.length + dropped).toBe(120);
    expect(bySource.get(a!.userId)).toBeGreaterThan(40);
    expect(bySource.get(b!.userId)).toBeGreaterThan(40);
    // The speakers get each other's packets the same way: two listeners per packet in all.
    expect(streamsOf(a!.peer).every((r) => readStreamSource(r.payload) === b!.userId)).toBe(true);
    expect(await metric('voice_stream_packets_total')).toBe(2 * streams.length);
    // Nobody needed a mix: no decode, no encode.
    expect(await metric('voice_channel_encodes', `channel="${channelId}"`)).toBe(0);
    expect(await metric('voice_channel_decodes', `channel="${channelId}"`)).toBe(0);
    // Voice activity still reaches the members, judged from the packets.
    expect(l!.sig.events.some((e) => e.t === 'speaking' && e.userId === a!.userId && e.speaking)).toBe(true);
    // The speakers' jitter buffers still run undecoded: their own figures count every packet, and
    // the listener's count the STREAM packets it was sent (the stats round is every 2 s).
    const last = (m: Member) => m.sig.events.findLast((e) => e.t === 'stats');
    await expect
      .poll(() => (last(a!)?.t === 'stats' ? last(a!)!.stats.packetsIn : 0), { timeout: 5_000 })
      .toBeGreaterThanOrEqual(55);
    await expect
      .poll(() => (last(l!)?.t === 'stats' ? last(l!)!.stats.packetsOut : 0), { timeout: 5_000 })
      .toBeGreaterThanOrEqual(streams.length);
  });

  it('a listener without streams in the same channel hears the mix at level; the streaming listener still gets streams', async () => {
    const [channelId, [a, b, l, old]] = await channel(
      ['mx-a', 'mx-b', 'mx-l', 'mx-old'],
      [4, 4, 4, undefined],
    );
    expect(old!.sig.welcome.streams).toBe(1);
    await speak([a!, b!], 100);
    await sleep(300);
    const mix = audioOf(old!.peer);
    expect(streamsOf(old!.peer)).toEqual([]);
    const pcm = decode(mix.map((r) => r.payload));
    expect(toneLevelDbfs(pcm, TONES[0]!, 1000)).toBeGreaterThan(-24);
    expect(toneLevelDbfs(pcm, TONES[1]!, 1000)).toBeGreaterThan(-24);
    expect(await metric('voice_channel_encodes', `channel="${channelId}"`)).toBeGreaterThan(50);
    // The one who mixes itself is not sent that mix.
    expect(audioOf(l!.peer)).toEqual([]);
    const sources = new Set(streamsOf(l!.peer).map((r) => readStreamSource(r.payload)));
    expect(sources).toEqual(new Set([a!.userId, b!.userId]));
  });

  it('more speakers than granted, a volume set, or deafened: the mix, or nothing; streams again when the rule holds', async () => {
    // Deep member buffers (8 frames): a stall of this process (the speakers' timers) under a loaded
    // machine must not run a speaker's buffer dry, which would rightly switch the listener over.
    await srv.stop();
    srv = await startTestServer({ clock: { minBufferFrames: 8 } });
    const [, [a, b, c, l]] = await channel(
      ['k2-a', 'k2-b', 'k2-c', 'k2-l'],
      [undefined, undefined, undefined, 2],
    );
    expect(l!.sig.welcome.streams).toBe(2);
    const phase: number[] = [];
    // 60 frames each: A, B and C speak; A and B; A and B with A's volume at 50 %; A and B, deafened.
    await speak(
      [a!, b!, c!],
      240,
      (k, i) => k < 2 || i < 60,
      (i) => {
        if (i % 60 === 0) phase.push(performance.now());
        if (i === 120) void l!.sig.request('voice.volume', { userId: a!.userId, volume: 50 });
        if (i === 180) void l!.sig.request('voice.state', { selfDeaf: true });
      },
    );
    phase.push(performance.now());
    // Judged after the first 400 ms of each phase (the request's round trip, the jitter buffers).
    const win = (p: number): [number, number] => [phase[p]! + 400, phase[p + 1]!];
    const p = l!.peer;
    // About 40 frames a window: the mix, or 2 streams of 40.
    for (const q of [0, 2]) {
      const audio = audioOf(p, ...win(q)).length;
      expect(audio, `AUDIO in phase ${q}`).toBeGreaterThan(20);
      expect(streamsOf(p, ...win(q)).length, `STREAM in phase ${q}`).toBeLessThan(audio / 2);
    }
    const streams = streamsOf(p, ...win(1));
    expect(streams.length, 'STREAM with two speakers').toBeGreaterThan(40);
    expect(audioOf(p, ...win(1)).length, 'AUDIO with two speakers').toBeLessThan(streams.length / 4);
    expect(new Set(streams.map((r) => readStreamSource(r.payload)))).toEqual(new Set([a!.userId, b!.userId]));
    expect(streamsOf(p, ...win(3)).length + audioOf(p, ...win(3)).length, 'sent while deafened').toBe(0);
  });

  it('volume 0: a listener who set the only speaker to 0 is sent nothing of it, streams granted or not', async () => {
    const [, [a, l, s, m]] = await channel(
      ['v0-a', 'v0-l', 'v0-s', 'v0-m'],
      [undefined, undefined, 2, undefined],
    );
    await l!.sig.request('voice.volume', { userId: a!.userId, volume: 0 });
    await s!.sig.request('voice.volume', { userId: a!.userId, volume: 0 });
    const t0 = performance.now();
    await speak([a!], 50);
    await sleep(300);
    // The control listener hears every frame; the two who set 0 get no packet of any voice kind.
    expect(audioOf(m!.peer, t0).length, 'AUDIO to a listener at 100').toBe(50);
    for (const x of [l!, s!]) {
      expect(audioOf(x.peer, t0).length, 'AUDIO at volume 0').toBe(0);
      expect(streamsOf(x.peer, t0).length, 'STREAM at volume 0').toBe(0);
    }
  });

  it('a speaker flooding faster than real time reaches a streaming listener at its frame rate, bursts of 5', async () => {
    const [, [a, l]] = await channel(['fl-a', 'fl-l'], [undefined, 4]);
    const enc = opus.createEncoder({ frameSamples: FRAME, bitrate: 32_000 });
    const out = new Uint8Array(1000);
    const n = enc.encode(sineInt16(FRAME, 440, -20), out);
    enc.destroy();
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) a!.peer.send(VoicePacketType.AUDIO, out.subarray(0, n), i * FRAME);
    await sleep(300);
    const got = streamsOf(l!.peer);
    const span = got.length > 0 ? got[got.length - 1]!.at - t0 : 0;
    expect(got.length).toBeGreaterThanOrEqual(5);
    // The burst, then one per 20 ms of the time they took to arrive.
    expect(got.length).toBeLessThanOrEqual(5 + Math.ceil(span / 20) + 1);
    const budget = await metric('voice_stream_drops_total', 'reason="budget"');
    const quota = await metric('voice_packets_dropped_total', 'reason="inbox_quota"');
    expect(budget).toBeGreaterThan(0);
    expect(got.length + budget + quota).toBe(100);
  });

  it(
    'sends no timing advance to speakers every listener streams (nobody waits for a tick to hear them)',
    { timeout: 30_000 },
    async () => {
      // Time-stretching decodes every member (its splices need audio): only the routing keeps the
      // streamed speakers' arrivals out of the advance's rounds then.
      await srv.stop();
      srv = await startTestServer({ clock: { timeStretch: true } });
      const [, [a, b]] = await channel(['adv-a', 'adv-b', 'adv-l'], [4, 4, 4]);
      const enc = opus.createEncoder({ frameSamples: FRAME, bitrate: 32_000 });
      const out = new Uint8Array(1000);
      const n = enc.encode(sineInt16(FRAME, 440, -20), out);
      enc.destroy();
      // Half a frame apart for 7 s (three phase rounds): mixed, one of them would be told to move.
      const t0 = performance.now();
      for (let j = 0; j < 700; j++) {
        const wait = t0 + j * 10 - performance.now();
        if (wait > 0) await sleep(wait);
        const f = j >> 1;
        (j % 2 === 0 ? a! : b!).peer.send(VoicePacketType.AUDIO, out.subarray(0, n), f * FRAME);
      }
      expect(streamsOf(a!.peer).length).toBeGreaterThan(300);
      for (const m of [a!, b!]) expect(m.sig.events.filter((e) => e.t === 'voice.advance')).toEqual([]);
      expect(await metric('voice_timing_advances_total')).toBe(0);
    },
  );

  it('grants min(hello streams, voice.maxStreams) and refuses a streams field out of range', async () => {
    const { token } = await srv.rest().login('grant-a');
    for (const bad of [0, 9, 2.5, '4', -1]) {
      const code = await RawSignaling.refusal(
        RawSignaling.connect(srv.wsUrl, token, { streams: bad as never }),
      );
      expect(code, `streams ${String(bad)}`).toBe('INVALID_FIELD');
    }
    const ask = async (streams: number | undefined, s = srv) => {
      const { token: t } = await s.rest().login(`grant-${streams ?? 'none'}-${s.httpPort}`);
      const sig = await RawSignaling.connect(s.wsUrl, t, streams === undefined ? {} : { streams });
      sig.close();
      return sig.welcome.streams;
    };
    expect(await ask(undefined)).toBe(1);
    expect(await ask(3)).toBe(3);
    expect(await ask(8)).toBe(4);
    const capped = await startTestServer({ voice: { maxStreams: 2 } });
    try {
      expect(await ask(8, capped)).toBe(2);
      expect(await ask(1, capped)).toBe(1);
    } finally {
      await capped.stop();
    }
  });
});
