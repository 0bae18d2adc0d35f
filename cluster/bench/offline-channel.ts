/**
 * The server's ChannelCore on a virtual clock, with one listener's packets opened and inserted into
 * the product's FramePlayout as they are sent: what a client plays when every packet is on time.
 * The benches that isolate the mix path from scheduling (mix-offline, switch-clicks) share it.
 */
import {
  asChannelId,
  createVoiceHeader,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  type VoiceSettings,
} from '@voice/protocol';
import { FramePlayout, type OpusFactory } from '@voice/media';
import { ChannelCore } from '../src/voice/channel.js';
import { VoiceCounters } from '../src/voice/counters.js';
import { VoiceEndpoint } from '../src/voice/endpoint.js';
import { TokenBucket } from '../src/ratelimit.js';
import { fakeSession } from './fake-session.js';

export interface OfflineChannel {
  readonly core: ChannelCore;
  /** One endpoint per member, in order; `eps[listener]` is the one whose packets are played. */
  readonly eps: VoiceEndpoint[];
  readonly playout: FramePlayout;
  /** The virtual time (ms) the next sends are stamped with. */
  now: number;
  /** Pushes member `i`'s Opus packet for frame `seq`, arrived 1 ms before `now`. */
  push(i: number, seq: number, packet: Uint8Array, length: number): void;
  close(): void;
}

export function offlineChannel(
  opus: OpusFactory,
  id: string,
  settings: VoiceSettings,
  members: number,
  listener: number,
): OfflineChannel {
  const n = settings.frameMs * 48;
  const playout = new FramePlayout({ frameSamples: n, decoder: opus.createDecoder({ frameSamples: n }) });
  const plain = new Uint8Array(1500);
  const h = createVoiceHeader();
  let listenerEp: VoiceEndpoint | null = null;
  let opener: VoiceCipher | null = null;
  const ch = { now: 0 };
  const core = new ChannelCore(asChannelId(id), settings, opus, {
    counters: new VoiceCounters(),
    send: (ep, packet, length) => {
      if (ep !== listenerEp || !opener) return;
      const r = opener.openInto(packet.subarray(0, length), plain, h);
      if (typeof r === 'number' && h.type === VoicePacketType.AUDIO)
        playout.insertTimestamp(h.timestamp, plain, r, ch.now);
    },
    speaking: () => {},
  });
  const eps: VoiceEndpoint[] = [];
  for (let i = 0; i < members; i++) {
    const ep = new VoiceEndpoint(i + 1, fakeSession(i), core, {
      foreign: new TokenBucket(1, 1),
      sameHost: new TokenBucket(1, 1),
    });
    ep.transport = 'udp';
    core.addMember(ep);
    eps.push(ep);
  }
  listenerEp = eps[listener]!;
  opener = new VoiceCipher(listenerEp.key, VoiceDirection.CLIENT_TO_SERVER);
  return Object.assign(ch, {
    core,
    eps,
    playout,
    push(i: number, seq: number, packet: Uint8Array, length: number): void {
      core.inbox.push(eps[i]!.member!, seq, ch.now - 1, 0, packet, length);
    },
    close(): void {
      core.close();
      playout.close();
    },
  });
}
