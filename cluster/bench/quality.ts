/**
 * Speech quality: PESQ (ITU-T P.862 wideband, the `pesq` package from PyPI, in this benchmark only)
 * of espeak-ng speech sent by one bot and recorded by another through a real server on loopback, in
 * real time, against Opus alone (encode, packet loss, the product's playout, decode, no network).
 * Paths: forwarded (one speaker), mixed (a second member sends digital silence, so the server mixes),
 * streamed (the same two members, the listener asks for streams: each comes as sent, mixed by it),
 * 10 and 20 ms frames, upstream loss 0 / 5 % (with 20 ms jitter) / 10 % through the lossy relay,
 * and on a lossy link three protections: none, Opus in-band FEC, RED (each packet also carries the
 * previous frame, protocol README 9.1; FEC off). With --down-loss the loss (and jitter) is on the
 * listener's downlink instead, and RED is the server's downstream RED (README 9.1, Downstream): the
 * speaker sends none, the listener asks for RED only in the RED rows. Per path: mean, min and max
 * over the runs, and concealed frames and dropped frames (catch-up and stale) per minute at the
 * listener.
 *
 *   node --conditions=source --import tsx cluster/bench/quality.ts [--runs 3] [--seconds 8]
 *     [--frames 20,10] [--losses 0,0.05,0.1] [--paths opus-alone,mix-ideal,forwarded,mixed,streamed]
 *     [--protection nofec,fec,red] [--down-loss] [--server-stretch on|off] [--dump DIR]
 *
 * Needs espeak-ng, sox and `pip install pesq numpy`; without them it says so and measures nothing.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FramePlayout, createOpus, decodeWav, encodeWav, type OpusFactory } from '@voice/media';
import { VoiceClient, WavSource } from '../../client/src/index.js';
import { LossyRelay, mulberry32 } from '../../test-support/lossy-relay.js';
import { mixOffline } from './mix-offline.js';
import { type RunningServer } from '../src/server.js';
import { startLoopbackServer } from './loopback-server.js';

const TEXT =
  'The quick brown fox jumps over the lazy dog. A voice chat must sound like the person talking, ' +
  'on a clean link exactly as the codec alone, and on a lossy one it should degrade gracefully. ' +
  'Seven silver swans swam silently seaward. Please call Stella and ask her to bring these things.';

export interface QualityOptions {
  readonly runs?: number;
  readonly seconds?: number;
  readonly frames?: readonly (10 | 20)[];
  readonly losses?: readonly number[];
  readonly paths?: readonly QualityPath[];
  /** On a lossy link: none, in-band FEC, RED (default all three). */
  readonly protection?: readonly Protection[];
  readonly log?: (line: string) => void;
  /** Writes each run's reference and degraded signal (48 kHz WAV) into this directory. */
  readonly dump?: string;
  /** The server's `clock.timeStretch` for the real-time paths (default: the product's). */
  readonly serverTimeStretch?: boolean;
  /** Loss on the listener's downlink rather than the speaker's uplink (keys end in `_down`). */
  readonly downLoss?: boolean;
}

/**
 * opus-alone: the codec and the product's playout, no network. mix-ideal: the server's channel
 * core ticked on a virtual clock with packets exactly on time (decode, mix, re-encode), no loss.
 * forwarded / mixed / streamed: through a real server in real time.
 */
export type QualityPath = 'opus-alone' | 'mix-ideal' | 'forwarded' | 'mixed' | 'streamed';

/** What protects a lossy link: nothing, Opus in-band FEC, or RED (the speaker's redundancy 'on'). */
export type Protection = 'nofec' | 'fec' | 'red';

interface Sample {
  pesq: number;
  concealedPerMin: number;
  dropsPerMin: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tools(): string | null {
  try {
    execFileSync('espeak-ng', ['--version'], { stdio: 'ignore' });
    execFileSync('sox', ['--version'], { stdio: 'ignore' });
    execFileSync('python3', ['-c', 'import pesq, numpy'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'quality benchmark skipped: needs espeak-ng, sox and `pip install pesq numpy`';
  }
}

/** Silence after the speech, inside the scored signal: longer than any path's delay. */
const TAIL_SAMPLES = 48 * 200;

/**
 * `seconds` of espeak-ng speech at 48 kHz, then 200 ms of digital silence. The cut falls mid-word;
 * every path delays the speech by the codec's look-ahead (6.5 ms per encode), so without the tail
 * the scored window ended before the last 6.5-13 ms of speech came out, and each path filled that
 * gap its own way: Opus alone with zeros, the real-time paths with the playout's concealment of the
 * talkspurt's end. That alone cost Opus alone 0.27 PESQ against the sample-identical forwarded path.
 */
function speech(dir: string, seconds: number): Int16Array {
  const raw = join(dir, 'speech-raw.wav');
  const wav = join(dir, 'speech-48k.wav');
  execFileSync('espeak-ng', ['-w', raw, '-s', '160', `${TEXT} ${TEXT}`]);
  execFileSync('sox', ['-D', raw, '-r', '48000', '-c', '1', '-b', '16', wav]);
  const s = decodeWav(readFileSync(wav)).samples;
  const spoken = Math.min(s.length, seconds * 48_000);
  const out = new Int16Array(spoken + TAIL_SAMPLES);
  out.set(s.subarray(0, spoken));
  return out;
}

/** PESQ-WB of `deg` against `ref` (both 48 kHz): resampled to 16 kHz by sox, scored by `pesq`. */
function pesq(dir: string, ref: Int16Array, deg: Int16Array): number {
  const files = [
    ['ref', ref],
    ['deg', deg],
  ] as const;
  for (const [name, pcm] of files) {
    writeFileSync(join(dir, `${name}48.wav`), encodeWav(pcm, 48_000));
    // -D: no dither (here and for the reference). sox dithers resampled output with random noise
    // by default: the same path scored 4.32-4.36 from one run of the benchmark to the next.
    execFileSync('sox', ['-D', join(dir, `${name}48.wav`), '-r', '16000', join(dir, `${name}16.wav`)]);
  }
  const py = `
import sys, wave, numpy as np
from pesq import pesq
def load(p):
    w = wave.open(p)
    return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)
print(pesq(16000, load(sys.argv[1]), load(sys.argv[2]), 'wb'))
`;
  const out = execFileSync('python3', ['-c', py, join(dir, 'ref16.wav'), join(dir, 'deg16.wav')]);
  return Number(out.toString().trim());
}

/**
 * Offset of `ref` in `rec` (best correlation of 2 s of speech) within [lo, hi]: a coarse search
 * every 4th lag, then every lag within 3 of the best, so every path is cut at the same sample (the
 * coarse grid alone left the real-time paths up to 2 samples off where Opus alone was exact).
 */
function align(rec: Int16Array, ref: Int16Array, lo: number, hi: number): number {
  const at = Math.min(48_000, Math.floor(ref.length / 4));
  const len = Math.min(96_000, ref.length - at);
  const corr = (off: number): number => {
    let c = 0;
    for (let k = 0; k < len; k += 2) c += (rec[at + off + k] ?? 0) * ref[at + k]!;
    return c;
  };
  const first = Math.max(lo, -at);
  let best = first;
  let bestC = Number.NEGATIVE_INFINITY;
  const consider = (off: number): void => {
    const c = corr(off);
    if (c > bestC) {
      bestC = c;
      best = off;
    }
  };
  for (let off = first; off <= hi; off += 4) consider(off);
  const coarse = best;
  for (let off = Math.max(first, coarse - 3); off <= Math.min(hi, coarse + 3); off++) consider(off);
  return best;
}

/** Opus alone: encode, drop packets as the relay would (seeded), the product's playout, decode. */
function opusAlone(
  opus: OpusFactory,
  ref: Int16Array,
  frameMs: 10 | 20,
  loss: number,
  fec: boolean,
  seed: number,
  red = false,
) {
  const n = frameMs * 48;
  const prev = new Uint8Array(1500);
  let prevLen = 0;
  const enc = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec });
  const playout = new FramePlayout({ frameSamples: n, decoder: opus.createDecoder({ frameSamples: n }) });
  const rnd = mulberry32(seed);
  const frames = Math.floor(ref.length / n);
  const out = new Int16Array(frames * n);
  const pkt = new Uint8Array(1500);
  const frame = new Int16Array(n);
  for (let f = 0; f < frames; f++) {
    const len = enc.encode(ref.subarray(f * n, (f + 1) * n), pkt);
    if (rnd() >= loss) {
      playout.insert(f, pkt, len, f * frameMs);
      // RED: the packet also carries the frame before (copied in only where that one is missing).
      if (red && prevLen > 0) playout.insertRedundant(f - 1, prev, prevLen, f * frameMs);
    }
    prev.set(pkt.subarray(0, len));
    prevLen = len;
    playout.next(f * frameMs + frameMs / 2, frame);
    out.set(frame, f * n);
  }
  const st = playout.stats();
  enc.destroy();
  playout.close();
  // Cut at the same alignment as the recordings (the codec's look-ahead delays the output).
  const off = align(out, ref, 0, 48 * 40);
  const deg = new Int16Array(ref.length);
  deg.set(out.subarray(off, off + ref.length));
  return { deg, concealed: st.concealed + st.fecRecovered, drops: playout.jitter.stats().overflowDrops };
}

/** The mixed path on ideal timing (mix-offline.ts), cut as the recordings are. */
function mixIdeal(opus: OpusFactory, ref: Int16Array, frameMs: 10 | 20) {
  const { out, concealed } = mixOffline(opus, ref, new Int16Array(ref.length + 96_000), frameMs);
  const off = align(out, ref, 0, 48 * 60);
  const deg = new Int16Array(ref.length);
  deg.set(out.subarray(off, off + ref.length));
  return { deg, concealed, drops: 0 };
}

async function throughServer(
  server: RunningServer,
  opus: OpusFactory,
  ref: Int16Array,
  o: {
    frameMs: 10 | 20;
    loss: number;
    fec: boolean;
    /** The speaker sends RED (redundancy 'on'); else none ('off', so 'auto' cannot add it mid-run). */
    red: boolean;
    /** A second member sends digital silence: the listener hears two members. */
    mixed: boolean;
    /** The listener asks for streams (mixes them itself) rather than the server's mix. */
    streams: boolean;
    /** The loss is on the listener's downlink: RED is the server's, for a listener that asks. */
    down: boolean;
    name: string;
    seed: number;
  },
) {
  const relay =
    o.loss > 0
      ? await LossyRelay.start({
          target: { host: '127.0.0.1', port: server.udpPort },
          [o.down ? 'serverToClient' : 'clientToServer']: {
            loss: o.loss,
            ...(o.loss <= 0.05 ? { jitterMs: 20 } : {}),
          },
          seed: o.seed,
        })
      : null;
  const bots: VoiceClient[] = [];
  try {
    const join = async (nickname: string, extra: object, create = false) => {
      const c = await VoiceClient.connect({
        server: server.url,
        nickname,
        opus,
        channel: o.name,
        wsFallback: false,
        ...(create ? { create: true, voice: { frameMs: o.frameMs, bitrate: 64_000, complexity: 9 } } : {}),
        ...extra,
      });
      bots.push(c);
      return c;
    };
    const speaker = await join(
      `${o.name}-s`,
      {
        encoder: { fec: o.fec },
        redundancy: o.red && !o.down ? 'on' : 'off',
        ...(relay && !o.down ? { udpTarget: relay.address } : {}),
      },
      true,
    );
    // Downstream, a listener that does not ask for RED never gets it ('auto' asks).
    const listener = await join(`${o.name}-l`, {
      ...(o.streams ? { streams: 4 } : {}),
      // Heartbeats every 500 ms (as the tests): the server hears of the loss sooner.
      ...(o.down ? { redundancy: o.red ? 'auto' : 'off', heartbeatMs: 500 } : {}),
      ...(relay && o.down ? { udpTarget: relay.address } : {}),
    });
    let hum: VoiceClient | null = null;
    if (o.mixed) hum = await join(`${o.name}-n`, {});
    await Promise.all(bots.map((b) => b.waitReady(5000)));
    await sleep(300);
    listener.clearRecording();
    if (hum) {
      // A second member sending digital silence (encoded, not gated): the server decodes, mixes and
      // re-encodes for the listener, and the speech stays all that is judged. (Quiet noise here
      // cost about 0.75 PESQ by itself: it is heard, and PESQ counts it against the path.)
      hum.startVoice(new WavSource(new Int16Array(ref.length + 96_000 + (o.down ? 48 * 6000 : 0))));
      await sleep(200);
      // Downstream the server turns RED on once a heartbeat reports the loss, then holds it 15 s: a
      // call on a lossy link has it on. The listener loses some of the silence first, until RED is
      // on (at most 5 s; the rows without RED wait the whole 5 s).
      if (o.down) {
        const t0 = performance.now();
        while (performance.now() - t0 < 5000 && !(o.red && listener.stats().session!.redReceived > 0))
          await sleep(50);
      }
    }
    speaker.startVoice(new WavSource(ref));
    await sleep(ref.length / 48 + 1200);
    const rec = listener.recording();
    const first = speaker.sentLog.at(0)!;
    const base = Math.round((first.captureTime - rec.startTime) * 48);
    const off = align(rec.samples, ref, base - 480, base + 48 * 300);
    const deg = new Int16Array(ref.length);
    deg.set(rec.samples.subarray(Math.max(0, off), Math.max(0, off) + ref.length));
    const st = listener.stats().session!.playout;
    return { deg, concealed: st.framesConcealed, drops: st.overflowDrops + st.staleDrops };
  } finally {
    for (const b of bots) await b.close();
    await relay?.close();
  }
}

function summary(samples: Sample[]): Record<string, number> {
  const p = samples.map((s) => s.pesq);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    pesq_mean: round(p.reduce((a, b) => a + b, 0) / p.length),
    pesq_min: round(Math.min(...p)),
    pesq_max: round(Math.max(...p)),
    concealed_per_min: round(samples.reduce((a, s) => a + s.concealedPerMin, 0) / samples.length),
    drops_per_min: round(samples.reduce((a, s) => a + s.dropsPerMin, 0) / samples.length),
  };
}

export async function benchQuality(options: QualityOptions = {}): Promise<Record<string, number>> {
  const {
    runs = 3,
    seconds = 8,
    frames = [20, 10],
    losses = [0, 0.05, 0.1],
    paths = ['opus-alone', 'mix-ideal', 'forwarded', 'mixed', 'streamed'],
    protection = ['nofec', 'fec', 'red'],
    log = () => {},
    dump,
    serverTimeStretch,
    downLoss = false,
  } = options;
  if (dump) mkdirSync(dump, { recursive: true });
  const missing = tools();
  if (missing) {
    log(missing);
    return {};
  }
  const dir = mkdtempSync(join(tmpdir(), 'voice-quality-'));
  const opus = await createOpus();
  const server = await startLoopbackServer(
    dir,
    serverTimeStretch !== undefined ? { timeStretch: serverTimeStretch } : {},
  );
  const figures: Record<string, number> = {};
  try {
    const ref = speech(dir, seconds);
    const minutes = ref.length / 48_000 / 60;
    let k = 0;
    for (const frameMs of frames) {
      for (const loss of losses) {
        for (const prot of loss === 0 ? (['nofec'] as const) : protection) {
          const fec = prot === 'fec';
          const red = prot === 'red';
          for (const path of paths) {
            // Ideal timing has no loss to model (and the same bytes every run).
            if (path === 'mix-ideal' && loss > 0) continue;
            const side = downLoss && loss > 0 && path !== 'opus-alone' ? '_down' : '';
            const key = `${path}_${frameMs}ms_loss${Math.round(loss * 100)}${loss > 0 ? `_${prot}` : ''}${side}`;
            const samples: Sample[] = [];
            for (let r = 0; r < runs; r++) {
              const seed = 1000 + r;
              const res =
                path === 'opus-alone'
                  ? opusAlone(opus, ref, frameMs, loss, fec, seed, red)
                  : path === 'mix-ideal'
                    ? mixIdeal(opus, ref, frameMs)
                    : await throughServer(server, opus, ref, {
                        frameMs,
                        loss,
                        fec,
                        red,
                        mixed: path === 'mixed' || path === 'streamed',
                        streams: path === 'streamed',
                        down: downLoss,
                        name: `q${k++}`,
                        seed,
                      });
              if (dump) {
                writeFileSync(join(dump, 'ref.wav'), encodeWav(ref, 48_000));
                writeFileSync(join(dump, `${key}_run${r}.wav`), encodeWav(res.deg, 48_000));
              }
              const pq = pesq(dir, ref, res.deg);
              // Per run (the loss pattern is seeded): a low mean is read back to the seed that made it.
              log(
                `${key} run ${r} (seed ${seed}): pesq ${pq.toFixed(2)}, concealed ${res.concealed}, drops ${res.drops}`,
              );
              samples.push({
                pesq: pq,
                concealedPerMin: res.concealed / minutes,
                dropsPerMin: res.drops / minutes,
              });
            }
            const s = summary(samples);
            log(`${key} ${JSON.stringify(s)}`);
            for (const [name, v] of Object.entries(s)) figures[`${key}_${name}`] = v;
          }
        }
      }
    }
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return figures;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      seconds: { type: 'string' },
      frames: { type: 'string' },
      paths: { type: 'string' },
      losses: { type: 'string' },
      dump: { type: 'string' },
      'server-stretch': { type: 'string' },
      protection: { type: 'string' },
      'down-loss': { type: 'boolean' },
    },
  });
  const figures = await benchQuality({
    runs: Number(values.runs ?? 3),
    seconds: Number(values.seconds ?? 8),
    ...(values.frames ? { frames: values.frames.split(',').map((f) => (f === '10' ? 10 : 20)) } : {}),
    ...(values.paths ? { paths: values.paths.split(',') as QualityPath[] } : {}),
    ...(values.losses ? { losses: values.losses.split(',').map(Number) } : {}),
    ...(values.dump ? { dump: values.dump } : {}),
    ...(values.protection ? { protection: values.protection.split(',') as Protection[] } : {}),
    ...(values['server-stretch'] ? { serverTimeStretch: values['server-stretch'] !== 'off' } : {}),
    ...(values['down-loss'] ? { downLoss: true } : {}),
    log: (l) => console.log(l),
  });
  for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(56)} ${v}`);
  process.exit(0);
}
