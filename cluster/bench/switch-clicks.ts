/**
 * Clicks when a listener's stream changes encoder: forwarded speaker, shared mix, back. The server's
 * ChannelCore on a virtual clock (every packet on time), the listener's packets played through the
 * product's FramePlayout. Speaker A holds a 440 Hz tone; B speaks 660 Hz in bursts; the listener is
 * silent, so it is forwarded A, then hears the shared mix while B speaks, then A forwarded again.
 * A click is broadband: the second difference of the output (which leaves the tones 46-50 dB down)
 * in 1 ms windows, around each switch against the steady stretches.
 */
import { DEFAULT_VOICE_SETTINGS } from '@voice/protocol';
import { createOpus, sineInt16, toneDbfs, type OpusFactory } from '@voice/media';
import { offlineChannel } from './offline-channel.js';

export interface SwitchClicks {
  /** Loudest 1 ms window of the output's second difference near a stream switch, dBFS. */
  switchDb: number;
  /** Same, away from switches (the codec's own floor). */
  steadyDb: number;
  switches: number;
  /** Median level (Goertzel, 20 ms windows, from the second second on) of A's 440 Hz tone. */
  aDb: number;
  /** Median level of B's 660 Hz tone in the windows where B speaks. */
  bDb: number;
  /** Loudest level of the listener's own 880 Hz tone (`own`): a mix-minus never plays it back. */
  ownDb: number;
  /** Mix encoders primed before their first frame after a switch (ChannelStats.encoderPrimes). */
  primes: number;
  forwarded: number;
  encodes: number;
}

/**
 * `forward`: the listener goes from A forwarded to the shared mix and back as B speaks in bursts.
 * `own`: A and B both speak throughout, so the listener hears the shared mix; it speaks itself in
 * bursts (880 Hz), and then hears its own mix-minus, another encoder.
 * `turns`: A and B take turns, each second, with no pause between them: the listener goes from A
 * forwarded to B forwarded (two clients' encoders).
 */
export type SwitchScenario = 'forward' | 'own' | 'turns';

export function switchClicks(
  opus: OpusFactory,
  frameMs: 10 | 20 = 20,
  scenario: SwitchScenario = 'forward',
  seconds = 6,
): SwitchClicks {
  const n = frameMs * 48;
  const frames = Math.floor((seconds * 1000) / frameMs);
  const a = sineInt16(frames * n, 440, -20);
  const b = sineInt16(frames * n, 660, -20);
  const l = sineInt16(frames * n, 880, -20);
  const burst = Math.round(1000 / frameMs);
  // Every other second, from the second on: B in `forward`, the listener itself in `own`.
  const inBurst = (f: number): boolean => f >= burst && Math.floor(f / burst) % 2 === 1;
  const aSpeaks = (f: number): boolean => scenario !== 'turns' || !inBurst(f);
  const bSpeaks = (f: number): boolean => (scenario === 'own' ? true : inBurst(f));
  const lSpeaks = (f: number): boolean => scenario === 'own' && inBurst(f);
  const settings = { ...DEFAULT_VOICE_SETTINGS, frameMs, bitrate: 64_000, complexity: 9 };
  const ch = offlineChannel(opus, 'c_switchclick', settings, 3, 2);
  const encA = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const encB = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const encL = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const pkt = new Uint8Array(1500);
  const out = new Int16Array(frames * n);
  const frame = new Int16Array(n);
  for (let f = 0; f < frames; f++) {
    const now = (ch.now = f * frameMs);
    let len = 0;
    if (aSpeaks(f)) {
      len = encA.encode(a.subarray(f * n, (f + 1) * n), pkt);
      ch.push(0, f, pkt, len);
    }
    if (bSpeaks(f)) {
      len = encB.encode(b.subarray(f * n, (f + 1) * n), pkt);
      ch.push(1, f, pkt, len);
    }
    if (lSpeaks(f)) {
      len = encL.encode(l.subarray(f * n, (f + 1) * n), pkt);
      ch.push(2, f, pkt, len);
    }
    ch.core.tick(now);
    ch.playout.next(now + frameMs / 2, frame);
    out.set(frame, f * n);
  }
  // Where the listener's source changed: B's bursts begin and end (give VAD and hangover a margin).
  const nearSwitch = new Uint8Array(frames);
  let switches = 0;
  for (let f = 1; f < frames; f++) {
    if (inBurst(f) !== inBurst(f - 1)) {
      switches++;
      for (let g = Math.max(0, f - 2); g < Math.min(frames, f + 30); g++) nearSwitch[g] = 1;
    }
  }
  const win = 48;
  let switchPeak = 0;
  let steadyPeak = 0;
  // Skip the first second (encoders and playout settling).
  for (let at = burst * n; at + win <= out.length; at += win) {
    let e = 0;
    for (let i = at; i < at + win; i++) {
      const d = (out[i]! - 2 * out[i - 1]! + out[i - 2]!) / 32768;
      e += d * d;
    }
    const rms = Math.sqrt(e / win);
    if (nearSwitch[Math.floor(at / n)]) switchPeak = Math.max(switchPeak, rms);
    else steadyPeak = Math.max(steadyPeak, rms);
  }
  const db = (x: number): number => (x > 0 ? 20 * Math.log10(x) : -200);
  const aLevels: number[] = [];
  const bLevels: number[] = [];
  let ownDb = -200;
  for (let f = burst; f + 1 < frames; f++) {
    const at = f * n;
    if (aSpeaks(f) && aSpeaks(f - 2)) aLevels.push(toneDbfs(out, 440, 48_000, at, n));
    if (bSpeaks(f) && bSpeaks(f - 2)) bLevels.push(toneDbfs(out, 660, 48_000, at, n));
    ownDb = Math.max(ownDb, toneDbfs(out, 880, 48_000, at, n));
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1] ?? -200;
  const { forwarded, encodes, encoderPrimes: primes } = ch.core.stats;
  encA.destroy();
  encB.destroy();
  encL.destroy();
  ch.close();
  return {
    switchDb: db(switchPeak),
    steadyDb: db(steadyPeak),
    switches,
    aDb: median(aLevels),
    bDb: median(bLevels),
    ownDb,
    primes,
    forwarded,
    encodes,
  };
}

/** `npm run bench`: loudest click near a switch, and the floor elsewhere, per scenario and frame size. */
export async function benchSwitchClicks(): Promise<Record<string, number>> {
  const opus = await createOpus();
  const out: Record<string, number> = {};
  for (const scenario of ['forward', 'own', 'turns'] as const)
    for (const ms of [20, 10] as const) {
      const r = switchClicks(opus, ms, scenario);
      out[`switch_click_${scenario}_${ms}ms_db`] = Math.round(r.switchDb * 10) / 10;
      out[`switch_floor_${scenario}_${ms}ms_db`] = Math.round(r.steadyDb * 10) / 10;
    }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const opus = await createOpus();
  for (const scenario of ['forward', 'own', 'turns'] as const)
    for (const ms of [20, 10] as const) {
      const r = switchClicks(opus, ms, scenario);
      console.log(
        `${scenario} ${ms} ms: loudest click near a switch ${r.switchDb.toFixed(1)} dB, elsewhere ` +
          `${r.steadyDb.toFixed(1)} dB (second difference, 1 ms windows); ${r.primes} encoders primed`,
      );
    }
}
