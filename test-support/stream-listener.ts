import { expect } from 'vitest';
import {
  STREAM_SOURCE_BYTES,
  VoicePacketType,
  encodeTimeBody,
  readStreamSource,
  type ChannelId,
  type VoiceBinding,
} from '@voice/protocol';
import { createOpus } from '@voice/media';
import { RestClient } from '../client/src/index.js';
import { toneLevelDbfs } from './levels.js';
import { RawPeer } from './raw-peer.js';
import { RawSignaling } from './raw-signaling.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A listener that asks for `streams` in its hello and plays nothing: a raw signaling connection and
 * a raw UDP peer (protocol README only), for scenarios that check what the server forwards to a
 * client that mixes itself.
 */
export class StreamedListener {
  peer: RawPeer | null = null;

  constructor(
    public sig: RawSignaling,
    private readonly token: string,
    private readonly streams: number,
  ) {}

  /** Joins `channelId` and starts voice (HELLO until acknowledged). */
  async join(channelId: ChannelId): Promise<void> {
    await this.#voice((await this.sig.request('channel.join', { channelId })).voice);
  }

  /** Drops the signaling connection and resumes the session at `wsUrl` (a new binding). */
  async resume(wsUrl: string): Promise<void> {
    this.sig.close();
    this.sig = await RawSignaling.connect(wsUrl, this.token, { streams: this.streams });
    expect(this.sig.welcome.resumed, 'resumed').toBe(true);
    expect(this.sig.welcome.streams, 'grant after the resume').toBe(this.streams);
    await this.#voice(this.sig.welcome.voice!);
  }

  async #voice(binding: VoiceBinding): Promise<void> {
    this.peer?.close();
    const peer = (this.peer = new RawPeer(binding));
    await peer.bind();
    for (let i = 0; i < 25 && !peer.received.some((r) => r.type === VoicePacketType.HELLO_ACK); i++) {
      peer.send(VoicePacketType.HELLO, encodeTimeBody(i));
      await sleep(200);
    }
    expect(
      peer.received.some((r) => r.type === VoicePacketType.HELLO_ACK),
      'HELLO_ACK',
    ).toBe(true);
  }

  /**
   * Over the next `ms`: STREAM packets from exactly the sources `userIds`, no AUDIO, and each
   * source's Opus decodes to its tone (`tones[i]`) at about the level sent (-20 dBFS).
   */
  async expectStreams(userIds: readonly string[], tones: readonly number[], ms: number): Promise<void> {
    const peer = this.peer!;
    peer.received.length = 0;
    await sleep(ms);
    const got = peer.received.filter((r) => r.type === VoicePacketType.STREAM);
    expect(peer.received.filter((r) => r.type === VoicePacketType.AUDIO).length, 'AUDIO packets').toBe(0);
    expect(new Set(got.map((r) => readStreamSource(r.payload)))).toEqual(new Set(userIds));
    const opus = await createOpus();
    const frame = peer.b.frameMs * 48;
    for (const [i, id] of userIds.entries()) {
      const mine = got.filter((r) => readStreamSource(r.payload) === id);
      const dec = opus.createDecoder({ frameSamples: frame });
      const pcm = new Int16Array(mine.length * frame);
      mine.forEach((r, k) =>
        dec.decode(r.payload.subarray(STREAM_SOURCE_BYTES), pcm.subarray(k * frame, (k + 1) * frame)),
      );
      dec.destroy();
      expect(toneLevelDbfs(pcm, tones[i]!, ms - 400), `${id}'s tone`).toBeGreaterThan(-26);
    }
  }

  close(): void {
    this.peer?.close();
    this.sig.close();
  }
}

/** Logs `nickname` in at `httpUrl` and connects at `wsUrl` asking for `streams`. */
export async function streamedListener(
  httpUrl: string,
  wsUrl: string,
  nickname: string,
  streams: number,
): Promise<StreamedListener> {
  const { token } = await new RestClient(httpUrl).login(nickname);
  const sig = await RawSignaling.connect(wsUrl, token, { streams });
  return new StreamedListener(sig, token, streams);
}
