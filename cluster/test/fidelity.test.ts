import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { VoiceClient, type AudioSource, type VoiceClientOptions } from '../../client/src/index.js';
import { LossyRelay, mulberry32 } from '../../test-support/lossy-relay.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * Clean link: through the server equals Opus alone. Two bots speak a 20 s test signal each at the same
 * time through a real server on loopback, in real time (20 s rather than the 60 s: it keeps
 * the suite within its budget; slips showed up within 8 s before the fix). Each speaker hears only the
 * other, so its stream is forwarded: it must be sample-identical to a local decode of the packets sent.
 * A third member hears both, so the server mixes: its audio must match a local mix of the local
 * decodes (re-encoded as the server does) within a tight error bound, at one constant alignment from
 * start to end (a slip moves it).
 * No concealment, no drop, anywhere but the concealed tail after the talkspurt ends.
 *
 * A 3 s talkspurt of the same signals comes first: the playout's target comes from measured arrival
 * statistics (NetEq-style), and this is where they are measured, on a machine as loaded as it is.
 */

/**
 * The test judges the transport (server and codec path), with the buffers as measuring instruments
 * deep enough for this machine: the suite runs about 86 files beside it on 2 cores, and at load 7-9
 * this process saw 4-75 event-loop stalls of 12-145 ms in 20 s (every bot, the server and the
 * listeners share it). A stall delays a sender's packets as a jittery link would, and an adaptive
 * buffer rightly conceals a packet later than its target: 6 of 7 runs slipped at load 7-9 with the
 * default buffers, always after a stall, at a listener or in the server's member buffers. So here
 * the server's member buffers target 8 frames (`clock.minBufferFrames`) and the listeners 9, fixed:
 * a slip now means the path lost, reordered or re-timed a frame, not that this machine stalled. The
 * default buffers' clean-link behaviour is judged where a stall cannot reach it: arrival statistics
 * and start-up in media/test/jitter-buffer*.test.ts and frame-playout*.test.ts, server hold in
 * advance.test.ts.
 */
const SERVER_FRAMES = 8;
const INSTRUMENT = { minTargetFrames: 9, maxTargetFrames: 10, adaptive: false } as const;

const WARM_FRAMES = 150;
const PAUSE_FRAMES = 40;

const SECONDS = 20;
const FRAME = 960;
const BITRATE = 64_000;
const COMPLEXITY = 9;

let opus: OpusFactory;
let srv: TestServer;
const bots: VoiceClient[] = [];

beforeAll(async () => {
  opus = await createOpus();
  // The members' time-stretching on (off by default): on a clean link it must stretch nothing, so
  // the same recording judges both settings. Their buffers hold 8 frames (INSTRUMENT below).
  srv = await startTestServer({ clock: { timeStretch: true, minBufferFrames: SERVER_FRAMES } });
});
afterAll(async () => {
  for (const b of bots.splice(0)) await b.close();
  await srv.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A slow sweep between two frequencies, with seeded white noise 24 dB below it: any misalignment or
 * slip shows, and the noise gives cross-correlation one sharp peak (a tone alone has one per period).
 */
function sweep(fromHz: number, toHz: number, dbfs: number, seed = 1): Int16Array {
  const n = SECONDS * 48_000;
  const out = new Int16Array(n);
  const amp = 32767 * 10 ** (dbfs / 20);
  const rnd = mulberry32(seed);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    phase += (2 * Math.PI * (fromHz + ((toHz - fromHz) * i) / n)) / 48_000;
    out[i] = Math.round(amp * Math.sin(phase) + (rnd() - 0.5) * amp * 0.12);
  }
  return out;
}

/** The signal's first WARM_FRAMES frames, a pause of PAUSE_FRAMES, then the whole signal. */
class WarmThenSignal implements AudioSource {
  readonly name = 'warm-then-signal';
  lastCaptureTime = 0;
  #frame = 0;
  constructor(
    private readonly signal: Int16Array,
    private readonly warm = WARM_FRAMES,
    private readonly pause = PAUSE_FRAMES,
  ) {}
  read(out: Int16Array, now: number): boolean {
    const f = this.#frame++;
    const at = f < this.warm ? f : f - this.warm - this.pause;
    if (at < 0 || at * FRAME >= this.signal.length) return false;
    out.set(this.signal.subarray(at * FRAME, (at + 1) * FRAME));
    this.lastCaptureTime = now;
    return true;
  }
}

/**
 * `frames` frames from `frameAt` through a fresh encoder with the session's settings (after `warm`
 * frames encoded only, to bring the encoder to the same state), decoded by a fresh decoder.
 */
function codecPath(frames: number, frameAt: (f: number, pcm: Int16Array) => void, warm = 0): Int16Array {
  const enc = opus.createEncoder({
    frameSamples: FRAME,
    fec: false,
    bitrate: BITRATE,
    complexity: COMPLEXITY,
  });
  const dec = opus.createDecoder({ frameSamples: FRAME });
  const out = new Int16Array(frames * FRAME);
  const pcm = new Int16Array(FRAME);
  const pkt = new Uint8Array(1500);
  for (let f = 0; f < warm; f++) {
    frameAt(f, pcm);
    enc.encode(pcm, pkt);
  }
  for (let f = 0; f < frames; f++) {
    frameAt(f, pcm);
    const len = enc.encode(pcm, pkt);
    dec.decode(pkt, out.subarray(f * FRAME, (f + 1) * FRAME), len);
  }
  enc.destroy();
  dec.destroy();
  return out;
}

/**
 * What a bot's encoder made of the main signal (same settings as the session's encoder, after the
 * warm-up frames), decoded locally by a fresh decoder (a talkspurt after silence starts one).
 */
function localDecode(signal: Int16Array): Int16Array {
  return codecPath(
    signal.length / FRAME,
    (f, pcm) => pcm.set(signal.subarray(f * FRAME, (f + 1) * FRAME)),
    WARM_FRAMES,
  );
}

/**
 * What the server's mix of the two local decodes sounds like after its encoder (same settings), decoded
 * locally; b sits `shift` samples after a: b's sample k - shift is mixed with a's sample k.
 */
function localMix(decA: Int16Array, decB: Int16Array, shift: number): Int16Array {
  return codecPath(decA.length / FRAME, (f, pcm) => {
    for (let i = 0; i < FRAME; i++) {
      const k = f * FRAME + i;
      pcm[i] = Math.max(-32768, Math.min(32767, decA[k]! + (decB[k - shift] ?? 0)));
    }
  });
}

/** Index in `rec` where `ref[from..from+960)` occurs exactly, or -1. */
function findExact(rec: Int16Array, ref: Int16Array, from: number): number {
  outer: for (let i = 0; i + FRAME <= rec.length; i++) {
    for (let k = 0; k < FRAME; k++) if (rec[i + k] !== ref[from + k]) continue outer;
    return i;
  }
  return -1;
}

/** Sample offset (rec index - ref index) maximising their correlation over one window. */
function bestOffset(
  rec: Int16Array,
  ref: Int16Array,
  refAt: number,
  len: number,
  lo: number,
  hi: number,
): number {
  let best = lo;
  let bestC = Number.NEGATIVE_INFINITY;
  for (let off = lo; off <= hi; off++) {
    let c = 0;
    for (let k = 0; k < len; k++) c += (rec[refAt + off + k] ?? 0) * ref[refAt + k]!;
    if (c > bestC) {
      bestC = c;
      best = off;
    }
  }
  return best;
}

/**
 * Attempts so far (a retried test starts fresh: new bots, nicknames and channel). The lossy test is
 * retried once: its buffers are the default, adaptive ones (what it tests), so a stall of this
 * process looks like loss to them. The clean-link test is not retried (issue 10: every run). Its
 * instrument buffers (INSTRUMENT) absorb stalls up to about 160 ms; it failed one run in three at
 * load 6-8 before the forward-to-mix cut waited for the new speaker's buffer (stop 19), and passed
 * 5 of 5 after on 2 cores with 2 or 4 busy loops beside it (2026-12-02).
 */
let attempt = 0;

/** Closes the bots of a previous attempt. */
async function freshBots(): Promise<void> {
  for (const b of bots.splice(0)) await b.close();
}

describe('clean link through a real server (20 s of signal, real time)', () => {
  /** The scenario and its forwarded-path checks. */
  async function cleanLink() {
    await freshBots();
    const n = ++attempt;
    const names = [`fid-a${n}`, `fid-b${n}`, `fid-listener${n}`];
    for (const [i, nickname] of names.entries()) {
      bots.push(
        await VoiceClient.connect({
          server: srv.url,
          nickname,
          opus,
          heartbeatMs: 500,
          helloRetryMs: 200,
          channel: `Fidelity ${n}`,
          // Listeners as measuring instruments: after a stall of this machine, time-stretching
          // would rightly give back the delay it left, and no recording could then match sample
          // for sample. The transport's transparency is what is judged here (the playout's
          // stretching is tested in media/test/frame-playout-stretch.test.ts).
          timeStretch: false,
          jitter: INSTRUMENT,
          ...(i === 0
            ? { create: true, voice: { frameMs: 20, bitrate: BITRATE, complexity: COMPLEXITY } }
            : {}),
        }),
      );
    }
    await Promise.all(bots.map((b) => b.waitReady(3000)));
    const [a, b, listener] = bots as [VoiceClient, VoiceClient, VoiceClient];
    const sigA = sweep(300, 900, -18);
    const sigB = sweep(1100, 1600, -18, 2);
    a.startVoice(new WarmThenSignal(sigA));
    b.startVoice(new WarmThenSignal(sigB));
    // Figures at the end of the warm-up (its tail played out), to judge the main talkspurt alone.
    const sentAll = (n: number) => a.sentLog.length >= n && b.sentLog.length >= n;
    for (let t = 0; t < 200 && !sentAll(WARM_FRAMES); t++) await sleep(20);
    // The server has counted the warm-up; its tail plays out through both buffers (8 + 9 frames)
    // and the concealment after it within 600 ms, and the main signal's first frame, sent 800 ms
    // after the warm-up's last, plays 340 ms after that.
    const statsOf = () => srv.voice.channelStats().find((c) => c.id === a.channel!.id)!.core;
    const core0 = statsOf();
    const counted = () =>
      core0.members.every((m) => m.userId === listener.user.id || m.packetsIn >= WARM_FRAMES);
    for (let t = 0; t < 30 && !counted(); t++) await sleep(10);
    await sleep(600);
    const core = statsOf();
    const before = new Map(bots.map((bot) => [bot, { ...bot.stats().session!.playout }]));
    const serverBefore = { ...core.stats };
    const memberOf = (bot: VoiceClient) => core.members.find((m) => m.userId === bot.user.id)!;
    const jitterBefore = new Map([a, b].map((bot) => [bot, memberOf(bot).jitter.stats()]));
    const streamBefore = new Map([a, b].map((bot) => [bot, memberOf(bot).stream.stats()]));
    await sleep(SECONDS * 1000);
    // On a loaded machine the senders may finish a little late: wait for them, then for the tail.
    for (let t = 0; t < 100 && !sentAll(WARM_FRAMES + SECONDS * 50); t++) await sleep(50);
    await sleep(800);
    // A sender whose clock skipped ticks (this process stalled over 200 ms) left timestamp gaps in
    // its own stream: then no path can be sample-identical. Say so rather than blame the server.
    for (const bot of [a, b])
      expect(bot.stats().session!.sender!.skippedTicks, 'sender clock skipped (machine stalled)').toBe(0);
    const frames = (SECONDS * 48_000) / FRAME;
    for (const bot of [a, b]) expect(bot.sentLog.length, 'every frame sent').toBe(WARM_FRAMES + frames);
    const decA = localDecode(sigA);
    const decB = localDecode(sigB);

    // Forwarded: each speaker's recording holds the other's stream, sample for sample.
    for (const [bot, ref, name] of [
      [a, decB, 'a hears b'],
      [b, decA, 'b hears a'],
    ] as const) {
      const rec = bot.recording().samples;
      const at = findExact(rec, ref, 0);
      expect(at, `${name}: first frame found`).toBeGreaterThanOrEqual(0);
      let mismatched = 0;
      let firstBad = -1;
      for (let k = 0; k < ref.length; k++) {
        if (rec[at + k] !== ref[k]) {
          mismatched++;
          if (firstBad < 0) firstBad = k;
        }
      }
      // Where the stream sits against the reference at a few frames: a slip shows as a jump.
      const drift = [0, 100, 250, 500, 750, 999]
        .map((f) => `${f}:${(findExact(rec, ref, f * FRAME) - at - f * FRAME) / FRAME}`)
        .join(' ');
      expect(
        { name, mismatched, firstBadFrame: firstBad < 0 ? -1 : Math.floor(firstBad / FRAME) },
        drift,
      ).toEqual({ name, mismatched: 0, firstBadFrame: -1 });
      // The only concealment is the tail after the talkspurt ends; nothing lost, late or dropped.
      const p0 = before.get(bot)!;
      const p1 = bot.stats().session!.playout;
      const delta = (k: keyof typeof p1) => p1[k] - p0[k];
      expect({
        name,
        played: delta('framesPlayed'),
        late: delta('late'),
        concealed: delta('framesConcealed'),
        underruns: delta('underruns'),
        expanded: delta('framesExpanded'),
        overflow: delta('overflowDrops'),
        stale: delta('staleDrops'),
        errors: delta('decodeErrors'),
      }).toEqual({
        name,
        played: frames,
        late: 0,
        concealed: 2,
        underruns: 1,
        expanded: 0,
        overflow: 0,
        stale: 0,
        errors: 0,
      });
    }

    // The server forwarded every packet it received, once, and lost or dropped nothing.
    // Frames in from one speaker, frames out to the other (who hears only it): equal, over both
    // talkspurts (counted at the server's ticks, so not at a moment between them).
    expect(memberOf(a).packetsIn).toBe(memberOf(b).packetsOut);
    expect(memberOf(b).packetsIn).toBe(memberOf(a).packetsOut);
    for (const bot of [a, b]) expect(memberOf(bot).packetsIn).toBeGreaterThanOrEqual(WARM_FRAMES + frames);
    // The server's own buffers (they feed the mix) lost and dropped nothing either: checked after
    // the mix, which a slip there would show first.
    const serverDrops = () =>
      [a, b].map((bot) => {
        const j0 = jitterBefore.get(bot)!;
        const j1 = memberOf(bot).jitter.stats();
        // A server buffer that runs dry mid-talkspurt re-grows by a frame: a slip in the mix.
        const underruns = memberOf(bot).stream.stats().underruns - streamBefore.get(bot)!.underruns;
        return { lost: j1.lost - j0.lost, overflow: j1.overflowDrops - j0.overflowDrops, underruns };
      });
    // (The listener also got a's first packets forwarded, until the tick saw b speak too.)
    expect(core.stats.forwarded - serverBefore.forwarded).toBeGreaterThanOrEqual(2 * frames);
    expect(core.stats.late - serverBefore.late).toBe(0);
    expect(core.stats.fecRecovered).toBe(0);
    // The members' time-stretching (on here) gives back only what a re-buffer added: on a clean
    // link nothing, so the mix stays sample-exact against the local one.
    expect({ accelerated: core.stats.accelerated, expanded: core.stats.stretchExpanded }).toEqual({
      accelerated: 0,
      expanded: 0,
    });

    return { a, b, listener, before, serverDrops, decA, decB, frames };
  }

  it(
    'forwards sample-identical to Opus alone and mixes to within a tight bound, with no slip',
    { timeout: 60_000 },
    async () => {
      const { a, b, listener, before, serverDrops, decA, decB } = await cleanLink();
      // Mixed: the listener hears a + b, mixed by the server at its tick (a whole frame of each) and
      // encoded once more. Reference: the same mix made locally from the local decodes and put through
      // a local encoder with the server's settings, so the codec's own delay and phase are in it too.
      const rec = listener.recording().samples;
      const start = listener.recording().startTime;
      expect(Number.isNaN(start)).toBe(false);
      // Where each speaker sits: coarse over 100 ms windows (frame 0 was captured at captureTime and
      // plays within 600 ms after it), then over one second. A 100 ms window of a slow sweep is nearly
      // a tone, whose correlation peaks once per period: alone it picked a wrong period, which is the
      // "489 samples apart" that had this test skipped. One second of the seeded noise has one peak.
      const locate = (bot: VoiceClient, ref: Int16Array): number => {
        const base = Math.round((bot.sentLog.at(WARM_FRAMES)!.captureTime - start) * 48);
        const coarse = bestOffset(rec, ref, 48_000, 4800, base - 480, base + 48 * 600);
        return bestOffset(rec, ref, 48_000, 48_000, coarse - 2 * FRAME, coarse + 2 * FRAME);
      };
      const offA = locate(a, decA);
      const offB = locate(b, decB);
      // The server mixes whole frames: b sits a whole number of frames after a. (Against the local decodes
      // the two sit a few samples off a whole frame: the second encode's delay differs between their
      // bands, 300-900 Hz against 1100-1600 Hz; the reference below carries that encode.)
      const shift = Math.round((offB - offA) / FRAME) * FRAME;
      expect(Math.abs(offB - offA - shift), `a at ${offA}, b at ${offB}`).toBeLessThanOrEqual(16);
      const mixRef = localMix(decA, decB, shift);
      const at0 = 48_000;
      const off = bestOffset(rec, mixRef, at0, 48_000, offA - 2 * FRAME, offA + 2 * FRAME);
      // (The one underrun is the talkspurt's end.)
      expect(serverDrops()).toEqual([
        { lost: 0, overflow: 0, underruns: 1 },
        { lost: 0, overflow: 0, underruns: 1 },
      ]);
      const l0 = before.get(listener)!;
      const l1 = listener.stats().session!.playout;
      expect({
        late: l1.late - l0.late,
        overflow: l1.overflowDrops - l0.overflowDrops,
        stale: l1.staleDrops - l0.staleDrops,
        concealed: l1.framesConcealed - l0.framesConcealed,
        errors: l1.decodeErrors - l0.decodeErrors,
      }).toEqual({ late: 0, overflow: 0, stale: 0, concealed: 2, errors: 0 });
      // One alignment from start to end: a slip anywhere between moves it by a frame.
      const late = 48_000 * (SECONDS - 3);
      expect(
        bestOffset(rec, mixRef, late, 48_000, off - 2 * FRAME, off + 2 * FRAME),
        'mix has not slipped',
      ).toBe(off);
      // Residual per second, from 1 s to the end of the signal.
      const snrs: number[] = [];
      for (let sec = 1; sec < SECONDS - 2; sec++) {
        let sig = 0;
        let err = 0;
        for (let k = sec * 48_000; k < (sec + 1) * 48_000; k++) {
          const want = mixRef[k]!;
          const got = rec[k + off]!;
          sig += want * want;
          err += (got - want) * (got - want);
        }
        snrs.push(10 * Math.log10(sig / Math.max(1, err)));
      }
      expect(
        Math.min(...snrs),
        `per-second SNR of the mix: ${snrs.map((x) => x.toFixed(1)).join(' ')}`,
      ).toBeGreaterThan(20);
    },
  );
});

/** A tone whose pitch changes every frame: concealment cannot guess it, in-band FEC carries it. */
function chirp(seconds: number): Int16Array {
  const out = new Int16Array(seconds * 48_000);
  let phase = 0;
  for (let f = 0; f * FRAME < out.length; f++) {
    const hz = 300 + ((f * 137) % 900);
    for (let i = 0; i < FRAME && f * FRAME + i < out.length; i++) {
      phase += (2 * Math.PI * hz) / 48_000;
      out[f * FRAME + i] = Math.round(4000 * Math.sin(phase));
    }
  }
  return out;
}

describe('lossy link: in-band FEC through the lossy relay', () => {
  const LOSSY_SECONDS = 8;

  /**
   * Speaker `a` sends a chirp through a relay that drops 10 % of its packets on the way in; `b`
   * speaks too (cleanly), so `b` hears `a` forwarded (with a's losses as holes in the stream: b's
   * client rebuilds them) and `listener` hears the server's mix (the server rebuilds a's holes).
   */
  async function run(fec: boolean, channel: string) {
    const relay = await LossyRelay.start({
      target: { host: '127.0.0.1', port: srv.udpPort },
      clientToServer: { loss: 0.1 },
      seed: 7,
    });
    const join = async (nickname: string, extra: Partial<VoiceClientOptions>, create = false) => {
      const c = await VoiceClient.connect({
        server: srv.url,
        nickname,
        opus,
        heartbeatMs: 500,
        helloRetryMs: 200,
        channel,
        wsFallback: false,
        ...(create ? { create: true, voice: { frameMs: 20, bitrate: BITRATE, complexity: COMPLEXITY } } : {}),
        ...extra,
      });
      bots.push(c);
      return c;
    };
    const a = await join(
      `${channel}-a`,
      // RED off: FEC is what is judged here (with 'auto', RED would rebuild the losses first once the
      // heartbeats report them; cluster/test/red.test.ts judges RED).
      { udpTarget: relay.address, encoder: { fec, signal: 'voice' }, redundancy: 'off' },
      true,
    );
    const b = await join(`${channel}-b`, {});
    const listener = await join(`${channel}-l`, {});
    await Promise.all([a, b, listener].map((c) => c.waitReady(3000)));
    const sig = chirp(LOSSY_SECONDS);
    a.startVoice(new WarmThenSignal(sig, 0, 0));
    b.startVoice(new WarmThenSignal(sweep(1100, 1600, -24), 0, 0));
    await sleep(LOSSY_SECONDS * 1000 + 800);
    const core = srv.voice.channelStats().find((s) => s.id === a.channel!.id)!.core;
    const lostUp = relay.stats().clientToServer.dropped;
    await relay.close();

    const bs = b.stats().session!.playout;
    return { lostUp, core: { ...core.stats }, b: bs };
  }

  it(
    'rebuilds lost frames from the next packet on the listener (forwarded) and on the server (mixed), counted truthfully',
    { retry: 1, timeout: 60_000 },
    async () => {
      await freshBots();
      const n = ++attempt;
      const off = await run(false, `fec-off${n}`);
      const on = await run(true, `fec-on${n}`);
      for (const r of [off, on]) expect(r.lostUp, 'the relay dropped packets').toBeGreaterThan(20);
      // Without FEC data nothing is counted as recovered, anywhere.
      expect(off.b.fecRecovered).toBe(0);
      expect(off.core.fecRecovered).toBe(0);
      // With it: b (forwarded stream, holes where a's packets were lost) rebuilds lost frames
      // after the first (that one grows the buffer to one packet of look-ahead; double losses, packets
      // without LBRR and the relay's share of dropped heartbeats are not rebuilt: measured 40-50 %) ...
      expect(on.b.fecRecovered, JSON.stringify(on.b)).toBeGreaterThan(on.lostUp * 0.25);
      expect(on.b.framesExpanded).toBeLessThanOrEqual(2);
      // ... and so does the server for the mix the listener hears.
      expect(on.core.fecRecovered).toBeGreaterThan(on.lostUp * 0.25);
      expect(on.core.fecRecovered).toBeLessThanOrEqual(on.core.concealed);
      // (That the rebuilt frames carry the lost audio is checked frame by frame in
      // media/test/frame-playout.test.ts, with libopus.)
    },
  );
});
