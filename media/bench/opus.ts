import {
  createOpus,
  loadDiscordOpus,
  loadVoiceOpusAddon,
  type OpusFactory,
  OpusscriptFactory,
} from '../src/index.js';
import { isMain, measure, printFigures } from './util.js';

/** A voice-like test signal: a 140 Hz harmonic series with a 4 Hz syllable envelope, plus noise. */
function voiceLike(samples: number): Int16Array {
  const out = new Int16Array(samples);
  let seed = 1;
  for (let i = 0; i < samples; i++) {
    const t = i / 48_000;
    let v = 0;
    for (let h = 1; h <= 20; h++) v += Math.sin(2 * Math.PI * 140 * h * t) / h;
    const env = 0.55 + 0.45 * Math.sin(2 * Math.PI * 4 * t);
    seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
    out[i] = Math.round(6000 * env * v + ((seed / 0x80000000) * 2 - 1) * 300);
  }
  return out;
}

function benchFactory(opus: OpusFactory, prefix: string): Record<string, number> {
  const figures: Record<string, number> = {};
  const signal = voiceLike(48_000 * 2);
  for (const frameSamples of [480, 960]) {
    const ms = frameSamples / 48;
    const frames = signal.length / frameSamples;
    const enc = opus.createEncoder({ frameSamples });
    const out = new Uint8Array(1500);
    const packets: Uint8Array[] = [];
    let bytes = 0;
    for (let f = 0; f < frames; f++) {
      const len = enc.encode(signal.subarray(f * frameSamples, (f + 1) * frameSamples), out);
      packets.push(out.slice(0, len));
      bytes += len;
    }
    let f = 0;
    const encNs = measure((n) => {
      for (let i = 0; i < n; i++, f = (f + 1) % frames) {
        enc.encode(signal.subarray(f * frameSamples, (f + 1) * frameSamples), out);
      }
    }, 600);
    const plain = opus.createEncoder({ frameSamples, fec: false, packetLossPercent: 0 });
    let p = 0;
    const plainNs = measure((n) => {
      for (let i = 0; i < n; i++, p = (p + 1) % frames) {
        plain.encode(signal.subarray(p * frameSamples, (p + 1) * frameSamples), out);
      }
    }, 600);
    plain.destroy();
    const dec = opus.createDecoder({ frameSamples });
    const pcm = new Int16Array(frameSamples);
    let g = 0;
    const decNs = measure((n) => {
      for (let i = 0; i < n; i++, g = (g + 1) % frames) dec.decode(packets[g]!, pcm);
    }, 600);
    const concealNs = measure((n) => {
      for (let i = 0; i < n; i++) {
        dec.decode(packets[i % frames]!, pcm);
        dec.conceal(pcm);
      }
    }, 300);
    figures[`${prefix}_encode_${ms}ms_us`] = encNs / 1000;
    figures[`${prefix}_encode_${ms}ms_no_fec_us`] = plainNs / 1000;
    figures[`${prefix}_decode_${ms}ms_us`] = decNs / 1000;
    figures[`${prefix}_decode_plus_conceal_${ms}ms_us`] = concealNs / 1000;
    figures[`${prefix}_bitrate_${ms}ms_kbps`] = (bytes * 8) / (signal.length / 48_000) / 1000;
    enc.destroy();
    dec.destroy();
  }
  return figures;
}

/**
 * Opus cost per frame (48 kHz mono, VOIP, 32 kbit/s, complexity 9, FEC on at 10% loss; and the encoder
 * again with FEC off), for 10 and 20 ms frames: opusscript always, native `@discordjs/opus` when
 * installed. "decode_plus_conceal" is one decode and one one-frame concealment.
 */
export async function benchOpus(): Promise<Record<string, number>> {
  const figures = benchFactory(new OpusscriptFactory(), 'opusscript');
  if ((await loadDiscordOpus()) !== null) {
    Object.assign(figures, benchFactory(await createOpus({ backend: 'native' }), 'native'));
  } else {
    figures.native_available = 0;
  }
  if (loadVoiceOpusAddon() !== null)
    Object.assign(figures, benchFactory(await createOpus({ backend: 'libopus' }), 'libopus'));
  else figures.libopus_available = 0;
  return figures;
}

if (isMain(import.meta.url)) {
  printFigures('opus (48 kHz mono, VOIP, 32 kbit/s, complexity 9, FEC)', await benchOpus());
}
