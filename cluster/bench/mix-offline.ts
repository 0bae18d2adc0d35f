/**
 * The mixed path with ideal timing: the server's ChannelCore ticked on a virtual clock, packets
 * arriving exactly on time, the listener's packets opened and played through the product's
 * FramePlayout. What is left is the codec: decode, mix, re-encode. Compared by PESQ with
 * quality.ts's real-time mixed path, it tells scheduling losses from the mix path's own.
 */
import {
  asChannelId,
  createVoiceHeader,
  DEFAULT_VOICE_SETTINGS,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
} from '@voice/protocol';
import { FramePlayout, type OpusFactory } from '@voice/media';
import { ChannelCore } from '../src/voice/channel.js';
import { VoiceCounters } from '../src/voice/counters.js';
import { VoiceEndpoint } from '../src/voice/endpoint.js';
import { TokenBucket } from '../src/ratelimit.js';
import { fakeSession } from './fake-session.js';

/** What the listener plays when `speech` and `noise` are mixed by the server on ideal timing. */
export function mixOffline(
  opus: OpusFactory,
  speech: Int16Array,
  noise: Int16Array,
  frameMs: 10 | 20,
): { out: Int16Array; concealed: number; forwarded: number; encodes: number } {
  const n = frameMs * 48;
  const settings = { ...DEFAULT_VOICE_SETTINGS, frameMs, bitrate: 64_000, complexity: 9 };
  const listenerIndex = 2;
  let listenerEp: VoiceEndpoint | null = null;
  const playout = new FramePlayout({ frameSamples: n, decoder: opus.createDecoder({ frameSamples: n }) });
  let opener: VoiceCipher | null = null;
  const plain = new Uint8Array(1500);
  const h = createVoiceHeader();
  let now = 0;
  const core = new ChannelCore(asChannelId('c_mixoffline0'), settings, opus, {
    counters: new VoiceCounters(),
    send: (ep, packet, length) => {
      if (ep !== listenerEp || !opener) return;
      const r = opener.openInto(packet.subarray(0, length), plain, h);
      if (typeof r === 'number' && h.type === VoicePacketType.AUDIO)
        playout.insertTimestamp(h.timestamp, plain, r, now);
    },
    speaking: () => {},
  });
  const eps: VoiceEndpoint[] = [];
  for (let i = 0; i < 3; i++) {
    const ep = new VoiceEndpoint(i + 1, fakeSession(i), core, {
      foreign: new TokenBucket(1, 1),
      sameHost: new TokenBucket(1, 1),
    });
    ep.transport = 'udp';
    core.addMember(ep);
    eps.push(ep);
  }
  listenerEp = eps[listenerIndex]!;
  opener = new VoiceCipher(listenerEp.key, VoiceDirection.CLIENT_TO_SERVER);
  // As the client encodes (FEC off unless asked: the factory's default is on, which costs quality).
  const encS = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const encN = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const pkt = new Uint8Array(1500);
  const frames = Math.floor(speech.length / n);
  const out = new Int16Array(frames * n);
  const frame = new Int16Array(n);
  for (let f = 0; f < frames; f++) {
    now = f * frameMs;
    let len = encS.encode(speech.subarray(f * n, (f + 1) * n), pkt);
    core.inbox.push(eps[0]!.member!, f, now - 1, 0, pkt, len);
    len = encN.encode(noise.subarray(f * n, (f + 1) * n), pkt);
    core.inbox.push(eps[1]!.member!, f, now - 1, 0, pkt, len);
    core.tick(now);
    playout.next(now + frameMs / 2, frame);
    out.set(frame, f * n);
  }
  const concealed = playout.stats().concealed;
  const { forwarded, encodes } = core.stats;
  encS.destroy();
  encN.destroy();
  core.close();
  playout.close();
  return { out, concealed, forwarded, encodes };
}
