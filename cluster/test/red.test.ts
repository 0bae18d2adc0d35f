import { describe, expect, it } from 'vitest';
import { VoiceFlags, VoicePacketType, encodeRed, encodeTimeBody } from '@voice/protocol';
import type { VoiceClient, VoiceClientOptions } from '../../client/src/index.js';
import { LossyRelay } from '../../test-support/lossy-relay.js';
import { OnceSource, localDecode as decodeAll } from '../../test-support/opus-path.js';
import { findFrame } from '../../test-support/pcm-match.js';
import { RawPeer } from '../../test-support/raw-peer.js';
import { sleep, voiceFixture } from '../../test-support/voice-fixture.js';

/**
 * Redundant audio (RED, protocol README 9.1) through a real server on loopback, real Opus: a speaker
 * whose packets carry the previous frame too, through a relay that loses ~10 % of its AUDIO packets
 * upstream, never two in a row. Every listener's recording must be sample for sample what a
 * loss-free link gives (a local decode of every packet sent): a listener that reads RED rebuilds the
 * lost frames itself (counted), one that does not gets them from the server as packets of their own,
 * on the forwarded path (AUDIO) and as STREAM packets alike; the server's member buffer rebuilds them
 * for the mix. A client that did not ask for RED never receives a RED packet.
 */

const FRAME = 960;
const BITRATE = 32_000;
const COMPLEXITY = 9;
const SECONDS = 5;
/**
 * Listeners as measuring instruments, as in fidelity.test.ts: a fixed buffer deep enough for this
 * loaded machine's stalls, no time-stretching. What is judged is the transport and the RED split,
 * not the adaptive buffer (media/test/frame-playout-red.test.ts judges that with a virtual clock).
 */
const INSTRUMENT = { minTargetFrames: 9, maxTargetFrames: 10, adaptive: false } as const;

const fx = voiceFixture();

/** A tone whose pitch changes every frame: concealment cannot guess a lost frame, only its bytes. */
function chirp(seconds: number): Int16Array {
  const out = new Int16Array(seconds * 48_000);
  let phase = 0;
  for (let f = 0; f * FRAME < out.length; f++) {
    const hz = 300 + ((f * 137) % 900);
    for (let i = 0; i < FRAME; i++) {
      phase += (2 * Math.PI * hz) / 48_000;
      out[f * FRAME + i] = Math.round(4000 * Math.sin(phase));
    }
  }
  return out;
}

/** What a loss-free link plays of `signal` (the session's codec settings). */
function localDecode(signal: Int16Array): Int16Array {
  return decodeAll(fx.opus, signal, { bitrate: BITRATE, complexity: COMPLEXITY });
}

const sameFrame = (rec: Int16Array, at: number, ref: Int16Array, f: number): boolean => {
  for (let i = 0; i < FRAME; i++) if (rec[at + i] !== ref[f * FRAME + i]) return false;
  return true;
};

/**
 * Frames of `ref` that `rec` does not hold sample for sample, in order from where its first frame
 * is. A frame found up to 10 frames later than expected counts as held (a stall of this loaded
 * machine re-buffers the listener: a slip, fidelity.test.ts's concern, not RED's); `slips` says how
 * many times that happened.
 */
function badFrames(rec: Int16Array, ref: Int16Array): { bad: number; slips: number } {
  let at = findFrame(rec, ref, 0, rec.length);
  if (at < 0) return { bad: ref.length / FRAME, slips: 0 };
  let bad = 0;
  let slips = 0;
  for (let f = 0; f < ref.length / FRAME; f++) {
    const o = at + f * FRAME;
    if (sameFrame(rec, o, ref, f)) continue;
    let moved = -1;
    for (let d = 1; d <= 10 * FRAME && moved < 0; d++) if (sameFrame(rec, o + d, ref, f)) moved = d;
    if (moved > 0) {
      at += moved;
      slips++;
    } else bad++;
  }
  return { bad, slips };
}

const isAudio = (p: Uint8Array): boolean => p[2] === VoicePacketType.AUDIO;

/**
 * Speaker `a` (redundancy as given) through the relay, four listeners: forwarded (AUDIO) with and
 * without RED, STREAM with and without RED; and `mixed`: a second speaker `b` joins so that the
 * listener `m` hears a mix (the server's member buffer must rebuild a's frames).
 */
async function run(n: number, redundancy: 'on' | 'off', mix: boolean) {
  const relay = await LossyRelay.start({
    target: { host: '127.0.0.1', port: fx.srv.udpPort },
    clientToServer: { loss: 0.1, lossFilter: isAudio, isolatedLoss: true },
    seed: 11 + n,
  });
  fx.defer(() => relay.close());
  const channel = `Red ${n}`;
  const voice = { frameMs: 20 as const, bitrate: BITRATE, complexity: COMPLEXITY };
  const a = await fx.bot(`red-a${n}`, {
    channel,
    create: true,
    voice,
    udpTarget: relay.address,
    wsFallback: false,
    redundancy,
  });
  const listen = (name: string, extra: Partial<VoiceClientOptions>) =>
    fx.bot(name, { channel, timeStretch: false, jitter: INSTRUMENT, ...extra });
  const listeners: Record<string, VoiceClient> = mix
    ? { mixed: await listen(`red-m${n}`, {}) }
    : {
        fwdRed: await listen(`red-f${n}`, {}),
        fwdPlain: await listen(`red-p${n}`, { redundancy: 'off' }),
        streamRed: await listen(`red-s${n}`, { streams: 4 }),
        streamPlain: await listen(`red-t${n}`, { streams: 4, redundancy: 'off' }),
      };
  const b = mix ? await fx.bot(`red-b${n}`, { channel }) : null;
  const all = [a, ...(b ? [b] : []), ...Object.values(listeners)];
  await Promise.all(all.map((c) => c.waitReady(3000)));
  const sig = chirp(SECONDS);
  a.startVoice(new OnceSource(sig));
  b?.startVoice(new OnceSource(chirp(SECONDS).map((v) => v >> 2)));
  const frames = sig.length / FRAME;
  // Loss stops a second before the end: the last packet lost has a successor to carry it.
  await sleep((SECONDS - 1) * 1000);
  relay.setConditions('clientToServer', {});
  for (let t = 0; t < 100 && a.sentLog.length < frames; t++) await sleep(50);
  await sleep(800);
  const lost = relay.stats().clientToServer.dropped;
  const core = fx.srv.voice.channelStats().find((c) => c.id === a.channel!.id)!.core;
  return { a, listeners, lost, frames, sig, core: { ...core.stats } };
}

describe('RED through a lossy relay (README 9.1)', () => {
  let attempt = 0;

  it(
    'every listener, forwarded or streamed, with or without RED, records exactly what a loss-free link gives',
    { retry: 1, timeout: 60_000 },
    async () => {
      const n = ++attempt;
      const r = await run(n, 'on', false);
      expect(r.a.stats().session!.sender!.skippedTicks, 'sender clock skipped (machine stalled)').toBe(0);
      expect(r.a.red, 'granted').toBe(true);
      expect(r.lost, 'the relay lost AUDIO packets').toBeGreaterThan(10);
      const sender = r.a.stats().session!.sender!;
      // Every packet but the first of the talkspurt carried the one before.
      expect(sender.redSent).toBe(r.frames - 1);
      const ref = localDecode(r.sig);
      const judged = Object.entries(r.listeners).map(
        ([k, c]) => [k, badFrames(c.recording().samples, ref)] as const,
      );
      const bad = Object.fromEntries(judged.map(([k, j]) => [k, j.bad]));
      expect(bad, `slips: ${JSON.stringify(Object.fromEntries(judged))}`).toEqual({
        fwdRed: 0,
        fwdPlain: 0,
        streamRed: 0,
        streamPlain: 0,
      });
      const { fwdRed, fwdPlain, streamRed, streamPlain } = r.listeners;
      // The server's member buffer played every lost frame from its copy.
      expect(r.core.redRecovered).toBe(r.lost);
      // The streaming listener that reads RED rebuilt each lost frame itself from its copy; the one
      // that does not got each copy from the server as a packet of its own. On the forwarded path
      // the same, but for a lost frame the server's tick sent from its buffer (plain) because the
      // packet carrying its copy came before the listener's forwarding run had started or ahead of
      // the channel clock: at most a couple.
      expect(streamRed!.stats().redRecovered).toBe(r.lost);
      const fwd = fwdRed!.stats().redRecovered;
      expect(fwd).toBeLessThanOrEqual(r.lost);
      expect(fwd).toBeGreaterThanOrEqual(r.lost - 2);
      expect([fwdPlain!.stats().redRecovered, streamPlain!.stats().redRecovered]).toEqual([0, 0]);
      const copies = fx.srv.voice.counters.redCopiesSent;
      expect(copies).toBeLessThanOrEqual(2 * r.lost);
      expect(copies).toBeGreaterThanOrEqual(2 * r.lost - 2);
      // Negotiation: no RED packet ever reached a client that did not ask; RED did reach the others.
      expect([fwdPlain!.red, streamPlain!.red]).toEqual([false, false]);
      expect(fwdPlain!.stats().session!.redReceived).toBe(0);
      expect(streamPlain!.stats().session!.redReceived).toBe(0);
      expect(fwdRed!.stats().session!.redReceived).toBeGreaterThan(r.frames / 2);
      expect(streamRed!.stats().session!.redReceived).toBeGreaterThan(r.frames / 2);
      for (const c of Object.values(r.listeners)) expect(c.stats().session!.playout.redMalformed).toBe(0);
    },
  );

  it(
    'without RED the same loss is heard: frames concealed, the recordings differ',
    { retry: 1, timeout: 60_000 },
    async () => {
      const n = ++attempt;
      const r = await run(n, 'off', false);
      expect(r.lost).toBeGreaterThan(10);
      expect(r.a.stats().session!.sender!.redSent).toBe(0);
      const ref = localDecode(r.sig);
      for (const c of Object.values(r.listeners)) {
        // Each lost frame concealed, and the frame after it decoded from a state that differs.
        expect(badFrames(c.recording().samples, ref).bad).toBeGreaterThanOrEqual(r.lost);
        expect(c.stats().redRecovered).toBe(0);
      }
      expect(fx.srv.voice.counters.redCopiesSent).toBe(0);
    },
  );

  it(
    "rebuilds the speaker's lost frames in the server's member buffer for the mix, counted",
    { retry: 1, timeout: 60_000 },
    async () => {
      const n = ++attempt;
      const r = await run(n, 'on', true);
      expect(r.lost).toBeGreaterThan(10);
      // Every lost frame played from its copy in a's member buffer (the one heard in the mix);
      // the /metrics counter says the same.
      expect(r.core.redRecovered).toBe(r.lost);
      expect(r.core.fecRecovered).toBe(0);
      const text = await (await fetch(`${fx.srv.url}/metrics`)).text();
      expect(Number(/^voice_red_recovered_total (\S+)$/m.exec(text)?.[1])).toBe(r.lost);
    },
  );
});

describe('downstream RED (README 8.3, 9.1)', () => {
  it(
    "adds RED to what a listener is sent once its heartbeats report loss, and to nobody else's",
    { retry: 1, timeout: 60_000 },
    async () => {
      // The listener's downlink loses ~10 % of its AUDIO packets, never two in a row.
      const relay = await LossyRelay.start({
        target: { host: '127.0.0.1', port: fx.srv.udpPort },
        serverToClient: { loss: 0.1, lossFilter: isAudio, isolatedLoss: true },
        seed: 5,
      });
      fx.defer(() => relay.close());
      const channel = 'Red down';
      const voice = { frameMs: 20 as const, bitrate: BITRATE, complexity: COMPLEXITY };
      // The speaker sends no RED: whatever RED the listeners get, the server added.
      const a = await fx.bot('red-down-a', { channel, create: true, voice, redundancy: 'off' });
      const lossy = await fx.bot('red-down-l', {
        channel,
        udpTarget: relay.address,
        wsFallback: false,
        timeStretch: false,
        jitter: INSTRUMENT,
      });
      const clean = await fx.bot('red-down-c', { channel, timeStretch: false, jitter: INSTRUMENT });
      await Promise.all([a, lossy, clean].map((c) => c.waitReady(3000)));
      a.startVoice(new OnceSource(chirp(SECONDS)));
      // Heartbeats every 500 ms: the first that reports the loss turns RED on for this listener.
      for (let t = 0; t < 100 && lossy.stats().session!.redReceived === 0; t++) await sleep(20);
      const before = relay.stats().serverToClient.dropped;
      expect(lossy.stats().session!.redReceived, 'RED on within 2 s').toBeGreaterThan(0);
      await sleep((SECONDS - 1) * 1000 - 500);
      relay.setConditions('serverToClient', {});
      await sleep(1800);
      const lost = relay.stats().serverToClient.dropped - before;
      expect(lost, 'AUDIO lost on the downlink once RED was on').toBeGreaterThan(5);
      // Every frame lost once RED was on was played from its copy (one in flight at the switch may not).
      const rec = lossy.stats().redRecovered;
      expect(rec).toBeGreaterThanOrEqual(lost - 1);
      expect(rec).toBeLessThanOrEqual(relay.stats().serverToClient.dropped);
      expect(fx.srv.voice.counters.redDownSent).toBeGreaterThan(0);
      // The clean listener asked for RED too, and got none: its heartbeats reported no loss.
      expect(clean.red).toBe(true);
      expect(clean.stats().session!.redReceived).toBe(0);
    },
  );
});

describe('an early loss report (README 9.1, Downstream)', () => {
  it(
    'turns RED on within about a second of downlink loss with the default 5 s heartbeat, and stops once RED arrives',
    { retry: 1, timeout: 60_000 },
    async () => {
      const relay = await LossyRelay.start({
        target: { host: '127.0.0.1', port: fx.srv.udpPort },
        serverToClient: { loss: 0.1, lossFilter: isAudio, isolatedLoss: true },
        seed: 7,
      });
      fx.defer(() => relay.close());
      const channel = 'Red early';
      const voice = { frameMs: 20 as const, bitrate: BITRATE, complexity: COMPLEXITY };
      const a = await fx.bot('red-early-a', { channel, create: true, voice, redundancy: 'off' });
      // The product's heartbeat period (the test bots' default is 500 ms).
      const l = await fx.bot('red-early-l', {
        channel,
        udpTarget: relay.address,
        wsFallback: false,
        heartbeatMs: 5000,
      });
      await Promise.all([a, l].map((c) => c.waitReady(3000)));
      // The periodic heartbeat is 5 s away: whatever RED comes before it, an early report asked for.
      const t0 = performance.now();
      a.startVoice(new OnceSource(chirp(SECONDS)));
      let firstRedMs = -1;
      for (let t = 0; t < 200 && firstRedMs < 0; t++) {
        await sleep(20);
        if (l.stats().session!.redReceived > 0) firstRedMs = performance.now() - t0;
      }
      expect(firstRedMs, 'RED arrived').toBeGreaterThan(0);
      // Two losses at 10 % take about 20 packets (0.4 s), the report's round trip a few ms: well
      // before the periodic heartbeat at 5 s after the session began (over 4 s after t0).
      expect(firstRedMs).toBeLessThan(2500);
      await sleep(2500);
      const s = l.stats().session!;
      // While RED arrives nothing more is reported early: one report (two if the first was lost).
      expect(s.earlyReports).toBeGreaterThanOrEqual(1);
      expect(s.earlyReports).toBeLessThanOrEqual(2);
      expect(relay.stats().serverToClient.dropped).toBeGreaterThan(10);
    },
  );
});

describe('downstream RED on STREAM packets (README 8.8, 9.1)', () => {
  it(
    'rebuilds every STREAM frame a lossy downlink loses, sample for sample; no RED to a listener that did not ask',
    { retry: 1, timeout: 60_000 },
    async () => {
      // Each listener's downlink (a relay of its own: "never two in a row" is per relay) loses ~10 %
      // of its STREAM packets, never two in a row, never a talkspurt's first (it has no frame before
      // it to repeat).
      const isStreamAfterStart = (p: Uint8Array): boolean =>
        p[2] === VoicePacketType.STREAM && (p[3]! & VoiceFlags.MARKER) === 0;
      const relays = await Promise.all(
        [7, 8].map((seed) =>
          LossyRelay.start({
            target: { host: '127.0.0.1', port: fx.srv.udpPort },
            serverToClient: { loss: 0.1, lossFilter: isStreamAfterStart, isolatedLoss: true },
            seed,
          }),
        ),
      );
      for (const r of relays) fx.defer(() => r.close());
      const [relay, plainRelay] = relays as [LossyRelay, LossyRelay];
      const channel = 'Red down streams';
      const voice = { frameMs: 20 as const, bitrate: BITRATE, complexity: COMPLEXITY };
      // The speakers send no RED: whatever RED the listeners get, the server added. `w` speaks first
      // so that the lossy listener's heartbeats report loss and the server turns RED on for it;
      // then `a`, the speaker measured, from its first frame.
      const w = await fx.bot('red-sdown-w', { channel, create: true, voice, redundancy: 'off' });
      const a = await fx.bot('red-sdown-a', { channel, voice, redundancy: 'off' });
      const listen = (name: string, redundancy: 'auto' | 'off', via: LossyRelay) =>
        fx.bot(name, {
          channel,
          streams: 4,
          redundancy,
          udpTarget: via.address,
          wsFallback: false,
          timeStretch: false,
          jitter: INSTRUMENT,
        });
      const lossy = await listen('red-sdown-l', 'auto', relay);
      const plain = await listen('red-sdown-p', 'off', plainRelay);
      await Promise.all([w, a, lossy, plain].map((c) => c.waitReady(3000)));
      w.startVoice(new OnceSource(chirp(3).map((v) => v >> 2)));
      for (let t = 0; t < 150 && lossy.stats().session!.redReceived === 0; t++) await sleep(20);
      expect(lossy.stats().session!.redReceived, 'RED on within 3 s').toBeGreaterThan(0);
      for (let t = 0; t < 100 && w.sentLog.length < 150; t++) await sleep(50);
      await sleep(300);
      const before = relay.stats().serverToClient.dropped;
      const redBefore = lossy.stats().redRecovered;
      const downBefore = fx.srv.voice.counters.redDownSent;
      const sig = chirp(SECONDS);
      a.startVoice(new OnceSource(sig));
      // Loss stops a second before the end: the last packet lost has a successor to carry it.
      await sleep((SECONDS - 1) * 1000);
      for (const r of relays) r.setConditions('serverToClient', {});
      for (let t = 0; t < 100 && a.sentLog.length < sig.length / FRAME; t++) await sleep(50);
      await sleep(800);
      expect(a.stats().session!.sender!.skippedTicks, 'sender clock skipped (machine stalled)').toBe(0);
      const lost = relay.stats().serverToClient.dropped - before;
      expect(lost, "a's STREAM packets lost on the lossy listener's downlink").toBeGreaterThan(5);
      // Every frame of `a` that the lossy listener lost was rebuilt from the next packet's copy.
      const ref = localDecode(sig);
      const judged = badFrames(lossy.recording().samples, ref);
      expect(judged.bad, `slips: ${judged.slips}`).toBe(0);
      const recovered = lossy.stats().redRecovered - redBefore;
      expect(recovered).toBe(lost);
      // Every packet of a's but its first (MARKER) carried its frame before, to the lossy listener only.
      expect(fx.srv.voice.counters.redDownSent - downBefore).toBe(sig.length / FRAME - 1);
      // The listener that did not ask lost frames too, and concealed them: never a RED packet.
      expect(plain.red).toBe(false);
      expect(plain.stats().session!.redReceived).toBe(0);
      expect(plain.stats().redRecovered).toBe(0);
      expect(plainRelay.stats().serverToClient.dropped).toBeGreaterThan(5);
      expect(badFrames(plain.recording().samples, ref).bad).toBeGreaterThan(0);
      expect(lossy.stats().session!.playout.redMalformed).toBe(0);
    },
  );
});

describe('malformed RED blocks (README 9.1)', () => {
  it('are dropped and counted, never crash the server, and never reach a listener', async () => {
    const users = [await fx.srv.user('bad-red-a'), await fx.srv.user('bad-red-b')];
    const { channel } = await users[0]!.ws.request('channel.create', { name: 'Bad RED' });
    const peers: RawPeer[] = [];
    for (const u of users) {
      const p = new RawPeer((await u.ws.request('channel.join', { channelId: channel.id })).voice);
      fx.defer(() => p.close());
      await p.bind();
      p.send(VoicePacketType.HELLO, encodeTimeBody(0));
      peers.push(p);
    }
    const [a, b] = peers as [RawPeer, RawPeer];
    await expect.poll(() => b.received.length).toBe(1);
    const enc = fx.opus.createEncoder({ frameSamples: FRAME, bitrate: 32_000 });
    const pcm = new Int16Array(FRAME).map((_, i) => Math.round(3000 * Math.sin(i / 5)));
    const buf = new Uint8Array(1000);
    const frame = buf.slice(0, enc.encode(pcm, buf));
    enc.destroy();
    const good = encodeRed(frame, frame)!;
    const bad = [
      Uint8Array.of(0x03, 0xe8, ...frame), // the copy's length (1000) reaches past the end
      Uint8Array.of(0, frame.length, ...frame), // no primary byte left
      Uint8Array.of(0, 0, ...frame), // a copy of 0 bytes
      Uint8Array.of(0), // not even the length
    ];
    const drops0 = fx.srv.voice.counters.drops.bad_red;
    const t0 = performance.now();
    for (let i = 0; i < 40; i++) {
      // Good and bad interleaved, in real time: the good ones keep flowing to the listener.
      a.send(
        VoicePacketType.AUDIO,
        i % 2 === 0 ? good : bad[(i >> 1) % bad.length]!,
        i * FRAME,
        VoiceFlags.RED,
      );
      const wait = t0 + (i + 1) * 20 - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await sleep(300);
    expect(fx.srv.voice.counters.drops.bad_red - drops0).toBe(20);
    const audio = b.received.filter((p) => p.type === VoicePacketType.AUDIO);
    // The listener did not ask for RED: it got the good packets' primaries (and nothing of the bad).
    expect(audio.length).toBeGreaterThanOrEqual(15);
    expect(audio.every((p) => (p.flags & VoiceFlags.RED) === 0 && p.payload.length === frame.length)).toBe(
      true,
    );
    // Still serving: a HEARTBEAT is answered.
    const before = a.received.length;
    a.send(VoicePacketType.HEARTBEAT, encodeTimeBody(1));
    await expect.poll(() => a.received.length).toBeGreaterThan(before);
  });
});
