import { sine } from '../../media/src/index.js';
import { measure } from '../../media/bench/util.js';
import { CaptureChain } from '../src/audio/capture.js';
import { fromMonoFloat } from '../src/audio/convert.js';
import { FrameFifo } from '../src/audio/frame-fifo.js';
import { PlaybackChain } from '../src/audio/playback.js';
import { GainStage, HighPassStage, LevelMeter, ProcessingChain } from '../src/audio/processing.js';
import type { StreamFormat } from '../src/audio/types.js';

/**
 * The desktop audio engine's cost per 10 ms device period (one core): capture (device bytes to a
 * processed 48 kHz frame: conversion, resampling, high-pass, gain, meter/VAD) and playback (48 kHz
 * frames to device bytes: resampling with drift steering, channel and format conversion).
 */
export function benchAudioEngine(): Record<string, number> {
  const out: Record<string, number> = {};
  const capture = (f: StreamFormat): number => {
    const frames = f.sampleRate / 100;
    const bytes = new Uint8Array(frames * f.channels * (f.format === 'f32' ? 4 : 2));
    fromMonoFloat(sine(frames, 1000, -20, f.sampleRate), frames, f, bytes);
    const chain = new CaptureChain({
      device: f,
      frameSamples: 480,
      processing: new ProcessingChain([
        new HighPassStage(80),
        new GainStage(6),
        new LevelMeter({ frameMs: 10 }),
      ]),
      onFrame: () => undefined,
    });
    return (
      measure((n) => {
        for (let i = 0; i < n; i++) chain.write(bytes, 0);
      }) / 1000
    );
  };
  const playback = (f: StreamFormat): number => {
    const fifo = new FrameFifo({ capacity: 9600, target: 960 });
    const chain = new PlaybackChain({ device: f, frameSamples: 480, source: fifo });
    const frame = new Int16Array(480).fill(1000);
    const bytes = new Uint8Array((f.sampleRate / 100) * f.channels * (f.format === 'f32' ? 4 : 2));
    for (let i = 0; i < 3; i++) fifo.push(frame);
    return (
      measure((n) => {
        for (let i = 0; i < n; i++) {
          fifo.push(frame);
          chain.render(bytes);
        }
      }) / 1000
    );
  };
  out['capture 48 kHz mono i16, us per 10 ms'] = capture({ sampleRate: 48_000, channels: 1, format: 'i16' });
  out['capture 44.1 kHz stereo f32 (resampled), us per 10 ms'] = capture({
    sampleRate: 44_100,
    channels: 2,
    format: 'f32',
  });
  out['capture 96 kHz stereo i16 (resampled), us per 10 ms'] = capture({
    sampleRate: 96_000,
    channels: 2,
    format: 'i16',
  });
  out['playback 48 kHz mono i16 (drift-steered), us per 10 ms'] = playback({
    sampleRate: 48_000,
    channels: 1,
    format: 'i16',
  });
  out['playback 44.1 kHz stereo f32, us per 10 ms'] = playback({
    sampleRate: 44_100,
    channels: 2,
    format: 'f32',
  });
  for (const k of Object.keys(out)) out[k] = Math.round(out[k]! * 10) / 10;
  return out;
}
