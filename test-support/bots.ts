import { expect } from 'vitest';
import type { OpusFactory } from '@voice/media';
import { VoiceClient, type VoiceClientOptions } from '../client/src/index.js';
import { medianToneDbfs } from './audio.js';

/**
 * VoiceClient bots for the voice tests: quick heartbeats and HELLO retries, channels of several bots,
 * and what a bot heard.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A bot on `server` (HTTP base URL): heartbeats every 500 ms, HELLO retried every 200 ms. */
export function connectBot(
  server: string,
  nickname: string,
  opus: OpusFactory,
  extra: Partial<VoiceClientOptions> = {},
): Promise<VoiceClient> {
  return VoiceClient.connect({ server, nickname, opus, heartbeatMs: 500, helloRetryMs: 200, ...extra });
}

/** Makes the i-th bot of a test (its caller keeps it for closing). */
export type BotMaker = (
  i: number,
  nickname: string,
  extra?: Partial<VoiceClientOptions>,
) => Promise<VoiceClient>;

/** Bots in one channel (bot 0 creates it), all with their voice path up. */
export async function channelOf(
  bot: BotMaker,
  name: string,
  nicknames: string[],
  extra: Partial<VoiceClientOptions> = {},
): Promise<VoiceClient[]> {
  const out: VoiceClient[] = [];
  for (const [i, nick] of nicknames.entries())
    out.push(await bot(i, nick, { channel: name, ...(i === 0 ? { create: true } : {}), ...extra }));
  await Promise.all(out.map((b) => b.waitReady(3000)));
  return out;
}

/**
 * Level of `hz` in what `c` played over the last `ms` (median of 100 ms Goertzel windows). Throws
 * when less than `ms` was played, so "not heard" cannot pass on a playout that never ran.
 */
export function heard(c: VoiceClient, hz: number, ms = 1000): number {
  return medianToneDbfs(c.recording().samples, hz, ms);
}

/** Lets a change reach the mix (and drain the jitter buffers), then records `ms` of fresh audio. */
export async function listen(clients: VoiceClient[], ms = 1000, settleMs = 300): Promise<void> {
  await sleep(settleMs);
  for (const c of clients) c.clearRecording();
  await sleep(ms + 100);
}

/**
 * Each bot hears every other bot's tone (`tones[j]` is bot j's) between `low` and `high` dBFS over the
 * last `ms` it played, and its own below `own` (mix-minus; unchecked when `own` is null).
 */
export function expectHearsOthers(
  bots: readonly VoiceClient[],
  tones: readonly number[],
  {
    low = -23,
    high = -17,
    own = -50,
    ms = 1000,
  }: { low?: number; high?: number; own?: number | null; ms?: number } = {},
): void {
  for (const [i, b] of bots.entries())
    for (const [j, hz] of tones.entries()) {
      const level = heard(b, hz, ms);
      if (i !== j) {
        expect(level, `bot ${i} hears ${hz} Hz`).toBeGreaterThan(low);
        expect(level, `bot ${i} hears ${hz} Hz`).toBeLessThan(high);
      } else if (own !== null) expect(level, `bot ${i} hears its own ${hz} Hz`).toBeLessThan(own);
    }
}
