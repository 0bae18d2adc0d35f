import {
  asChannelId,
  createVoiceHeader,
  DEFAULT_VOICE_SETTINGS,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
} from '@voice/protocol';
import { dbfsToAmplitude, SineGenerator, type OpusEncoder, type OpusFactory } from '@voice/media';
import { fakeSession } from '../../bench/fake-session.js';
import { TokenBucket } from '../../src/ratelimit.js';
import { ChannelCore } from '../../src/voice/channel.js';
import { VoiceCounters } from '../../src/voice/counters.js';
import { VoiceEndpoint } from '../../src/voice/endpoint.js';

/** One AUDIO packet member 0 was sent. */
export interface Sent {
  /** Virtual time it was sent, ms. */
  at: number;
  /** Channel media frame it plays at (timestamp / frame). */
  frame: number;
  /** Sent inside the forwardOnArrival call of a packet (as it arrived), not at a tick. */
  onArrival: boolean;
  /** The channel's mix encodes so far, when it was sent (a mix is sent after its encode). */
  encodes: number;
}

export interface VirtualChannel {
  readonly core: ChannelCore;
  readonly frameSamples: number;
  /** AUDIO packets sent to member 0, opened with its key. */
  readonly got: Sent[];
  /** The virtual clock, ms: arrivals and ticks happen at `now`. */
  now: number;
  /**
   * Member `i`'s frame `k` (the next of its tone) arrives now, handed over as the ingress does.
   * `old`: the same packet again, on the binding `rebind` retired (make-before-break sends on both).
   */
  arrive(i: number, k: number, old?: 'old'): void;
  /** A tick due at `due` runs now, `frames` frame periods after the previous one. */
  tick(due: number, frames?: number): void;
  /** One more member (a listener unless it is made to `arrive`). */
  join(): void;
  /**
   * Member `i`'s session takes a new binding (a rekey or a resume, README 8.4): its next arrivals
   * come on it, the old one retiring (make-before-break), as the voice plane hands over.
   */
  rebind(i: number): void;
  close(): void;
}

/**
 * The server's real ChannelCore on a virtual clock (deterministic), with `members` members, fed as
 * the ingress feeds it (inbox, then forwardOnArrival) with real Opus packets of a tone per member.
 * What member 0 is sent is opened with its key and kept. No time-stretch, as the test servers run.
 */
export function virtualChannel(
  opus: OpusFactory,
  frameMs: 10 | 20,
  members: number,
  /** Streams granted to each member's session (README 8.8; 1: mixes only). */
  streams = 1,
  /** The fewest frames the members' server buffers target (ChannelCoreOptions.minBufferFrames). */
  minBufferFrames?: number,
): VirtualChannel {
  const frameSamples = frameMs * 48;
  const got: Sent[] = [];
  const h = createVoiceHeader();
  const plain = new Uint8Array(1500);
  let inArrival = false;
  let opener: VoiceCipher | null = null;
  let listenerEp: VoiceEndpoint | null = null;
  const core = new ChannelCore(
    asChannelId('c_virtual'),
    { ...DEFAULT_VOICE_SETTINGS, frameMs },
    opus,
    {
      counters: new VoiceCounters(),
      send: (ep, packet, length) => {
        if (ep !== listenerEp || !opener) return;
        const r = opener.openInto(packet.subarray(0, length), plain, h);
        if (typeof r !== 'number' || h.type !== VoicePacketType.AUDIO) return;
        got.push({
          at: ch.now,
          frame: h.timestamp / frameSamples,
          onArrival: inArrival,
          encodes: core.stats.encodes,
        });
      },
      speaking: () => {},
    },
    { timeStretch: false, ...(minBufferFrames === undefined ? {} : { minBufferFrames }) },
  );
  const eps: VoiceEndpoint[] = [];
  /** Per member: the binding `rebind` retired, and the length of its last packet (in `out`). */
  const retired: (VoiceEndpoint | undefined)[] = [];
  const lastLen: number[] = [];
  const encoders: OpusEncoder[] = [];
  const tones: SineGenerator[] = [];
  let nextVoiceId = 1000; // clear of the ids `join` gives
  const join = (): void => {
    const i = eps.length;
    const ep = new VoiceEndpoint(i + 1, fakeSession(i, streams), core, {
      foreign: new TokenBucket(1, 1),
      sameHost: new TokenBucket(1, 1),
    });
    ep.transport = 'udp';
    core.addMember(ep);
    eps.push(ep);
    encoders.push(opus.createEncoder({ frameSamples }));
    tones.push(new SineGenerator(400 + 200 * i, dbfsToAmplitude(-20)));
  };
  for (let i = 0; i < members; i++) join();
  listenerEp = eps[0]!;
  opener = new VoiceCipher(listenerEp.key, VoiceDirection.CLIENT_TO_SERVER);
  const pcm = new Int16Array(frameSamples);
  const out = new Uint8Array(1000);
  const ch: VirtualChannel = {
    core,
    frameSamples,
    got,
    now: 0,
    arrive(i: number, k: number, old?: 'old'): void {
      const n = old ? lastLen[i]! : encoders[i]!.encode(tones[i]!.fill(pcm), out);
      lastLen[i] = n;
      const m = (old ? retired[i]! : eps[i]!).member!;
      // As the ingress: a channel whose clock slept starts again before the packet is stamped.
      if (core.asleep) core.wake(ch.now);
      core.inbox.push(m, k, ch.now, 0, out, n);
      inArrival = true;
      try {
        core.forwardOnArrival(m, k, out, n, ch.now, k * frameSamples, 0);
      } finally {
        inArrival = false;
      }
    },
    tick(due: number, frames = 1): void {
      core.tick(ch.now, frames, ch.now - due);
    },
    join,
    rebind(i: number): void {
      const old = eps[i]!;
      const ep = new VoiceEndpoint(++nextVoiceId, old.session, core, {
        foreign: new TokenBucket(1, 1),
        sameHost: new TokenBucket(1, 1),
      });
      ep.transport = 'udp';
      core.addMember(ep);
      old.retiring = true;
      retired[i] = old;
      eps[i] = ep;
    },
    close(): void {
      core.close();
      for (const e of encoders) e.destroy();
    },
  };
  return ch;
}
