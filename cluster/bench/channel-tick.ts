/**
 * Cost of one channel actor tick (drain inbox -> jitter pop -> decode -> VAD -> mix-minus ->
 * shared encodes -> AES-GCM seal per listener), with real Opus. No sockets: `send` is a no-op, so
 * this isolates the actor's CPU per 20 ms frame. With `streams` (every member's hello `streams`) the
 * packets also go through forwardOnArrival, as the ingress sends them, and that is timed with the
 * tick: STREAM seals per listener, then a tick that decodes, mixes and encodes nothing.
 *
 *   node --conditions=source --import tsx cluster/bench/channel-tick.ts
 */
import { asChannelId, DEFAULT_VOICE_SETTINGS } from '@voice/protocol';
import { createOpus, loadNativeAead, sineInt16, type OpusFactory } from '@voice/media';
import { ChannelCore } from '../src/voice/channel.js';
import { VoiceCounters } from '../src/voice/counters.js';
import { VoiceEndpoint } from '../src/voice/endpoint.js';
import { TokenBucket } from '../src/ratelimit.js';
import { fakeSession } from './fake-session.js';

export function benchChannelTick(
  opus: OpusFactory,
  members: number,
  speakers: number,
  ticks = 1500,
  timeStretch = true,
  streams = 1,
): { p50Us: number; p99Us: number; meanUs: number; encodesPerTick: number } {
  const frame = 960;
  let sent = 0;
  const core = new ChannelCore(
    asChannelId('c_benchbenchben'),
    DEFAULT_VOICE_SETTINGS,
    opus,
    { counters: new VoiceCounters(), send: () => void sent++, speaking: () => {} },
    { timeStretch },
  );
  const eps: VoiceEndpoint[] = [];
  for (let i = 0; i < members; i++) {
    // Sealed as the server seals: persistent OpenSSL contexts when built, else node:crypto.
    const ep = new VoiceEndpoint(
      i + 1,
      fakeSession(i, streams),
      core,
      { foreign: new TokenBucket(1, 1), sameHost: new TokenBucket(1, 1) },
      loadNativeAead() ?? undefined,
    );
    ep.transport = 'udp';
    core.addMember(ep);
    eps.push(ep);
  }
  // Pre-encode 1 s of a distinct tone per speaker.
  const packets: Uint8Array[][] = [];
  for (let s = 0; s < speakers; s++) {
    const enc = opus.createEncoder({ frameSamples: frame, bitrate: 64_000 });
    const pcm = sineInt16(48_000, 300 + 100 * s, -18);
    const list: Uint8Array[] = [];
    const out = new Uint8Array(1000);
    for (let f = 0; f < 50; f++)
      list.push(out.slice(0, enc.encode(pcm.subarray(f * frame, (f + 1) * frame), out)));
    packets.push(list);
    enc.destroy();
  }
  const times = new Float64Array(ticks);
  let now = 0;
  for (let t = 0; t < ticks + 50; t++) {
    now += 20;
    const t0 = performance.now();
    for (let s = 0; s < speakers; s++) {
      const p = packets[s]![t % 50]!;
      const m = eps[s]!.member!;
      core.inbox.push(m, t, now - 1, 0, p, p.length);
      if (streams > 1) core.forwardOnArrival(m, t, p, p.length, now - 1, t * frame, 0);
    }
    core.tick(now);
    const dt = performance.now() - t0;
    if (t >= 50) times[t - 50] = dt * 1000;
  }
  const encodes = core.stats.encodes;
  core.close();
  times.sort();
  const mean = times.reduce((a, b) => a + b, 0) / ticks;
  void sent;
  return {
    p50Us: times[Math.floor(ticks * 0.5)]!,
    p99Us: times[Math.floor(ticks * 0.99)]!,
    meanUs: mean,
    encodesPerTick: encodes / (ticks + 50),
  };
}

export async function benchChannelTicks(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const backend of ['opusscript', 'native'] as const) {
    let opus: OpusFactory;
    try {
      opus = await createOpus({ backend });
    } catch {
      continue;
    }
    for (const [m, s] of [
      [10, 2],
      [10, 10],
      [50, 2],
    ] as const) {
      const r = benchChannelTick(opus, m, s);
      const k = `${backend}_tick_${m}m_${s}s`;
      out[`${k}_mean_us`] = Math.round(r.meanUs);
      out[`${k}_p99_us`] = Math.round(r.p99Us);
      out[`${k}_encodes_per_tick`] = Math.round(r.encodesPerTick * 10) / 10;
    }
    // The members' time-stretching on a clean link (nothing to stretch: its sync-buffer copies).
    const r = benchChannelTick(opus, 10, 2, 1500, false);
    out[`${backend}_tick_10m_2s_nostretch_mean_us`] = Math.round(r.meanUs);
    // Every member asks for 4 streams (the server's default, time-stretching off): the two
    // speakers' packets are sealed for each listener on arrival; nothing is decoded or encoded.
    const st = benchChannelTick(opus, 10, 2, 1500, false, 4);
    out[`${backend}_frame_10m_2s_streams_mean_us`] = Math.round(st.meanUs);
    out[`${backend}_frame_10m_2s_streams_encodes_per_tick`] = st.encodesPerTick;
    // The same mixing, the packets timed with the tick as above.
    const mx = benchChannelTick(opus, 10, 2, 1500, false, 1);
    out[`${backend}_frame_10m_2s_mix_mean_us`] = Math.round(mx.meanUs);
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchChannelTicks();
  for (const [k, v] of Object.entries(r)) console.log(k.padEnd(44), v);
}
