import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  VoiceFlags,
  VoicePacketType,
  type VoiceHeader,
} from '@voice/protocol';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import type { VoiceMember } from './member.js';
import type { ChannelStats } from './channel-stats.js';

const UINT32 = 0x1_0000_0000;

/**
 * Seals and sends a channel's AUDIO packets to its listeners, on the channel's media clock: mixes
 * and forwarded speakers alike, with downstream RED for a listener on a lossy link. One header and
 * one output buffer for the channel: nothing allocated per packet.
 */
export class ListenerSender {
  readonly #header: VoiceHeader = {
    type: VoicePacketType.AUDIO,
    flags: 0,
    voiceId: 0,
    sequence: 0,
    timestamp: 0,
  };
  readonly #sendBuf = new Uint8Array(MAX_PACKET_BYTES);
  /** A RED block built for a listener on a lossy downlink. */
  readonly #redOut = new Uint8Array(MAX_PAYLOAD_BYTES);

  constructor(
    private readonly frameSamples: number,
    private readonly send: (ep: VoiceEndpoint, packet: Uint8Array, length: number) => void,
    private readonly counters: VoiceCounters,
    private readonly stats: ChannelStats,
  ) {}

  /** Sends speaker `sp`'s packet for its frame `k` to listener `l`, on `sp`'s forwarding offset. */
  forward(l: VoiceMember, sp: VoiceMember, payload: Uint8Array, length: number, k: number, flags = 0): void {
    if (this.sendTo(l, payload, length, flags | (l.outStarted ? 0 : VoiceFlags.MARKER), k + sp.fwdOffset))
      this.stats.forwarded++;
    l.outStarted = true;
  }

  /**
   * Seals and sends; `mediaFrame` is the channel media clock frame the packet plays at. False: not
   * sent, the listener has that frame already.
   */
  sendTo(m: VoiceMember, payload: Uint8Array, len: number, flags: number, mediaFrame: number): boolean {
    // A listener's stream never repeats a timestamp (the client would drop the packet as a
    // duplicate): a frame for a media frame it already has is not sent (an older one it lacks is: a
    // reordered arrival forwarded as it came). A MARKER packet starts a talkspurt, which the client
    // places after the newest frame it has.
    if ((flags & VoiceFlags.MARKER) !== 0 || !m.outStarted) m.sentOut.clear();
    else if (m.sentOut.has(mediaFrame | 0)) {
      this.stats.repeatsSkipped++;
      return false;
    }
    m.sentOut.add(mediaFrame | 0);
    const ep = m.endpoint;
    const h = this.#header;
    h.type = VoicePacketType.AUDIO;
    // Downstream RED (README 9.1): a listener whose heartbeats report loss gets the frame it was sent
    // just before repeated in this packet (not at a talkspurt start, a media-clock gap, or in a
    // packet that already carries a speaker's RED block).
    // The frame is kept only while RED is on for this listener: no per-packet copy otherwise.
    if (!m.redDown || (flags & VoiceFlags.RED) !== 0) {
      m.lastSent.clear(); // off, or a speaker's block (its primary is not kept)
    } else {
      const marker = (flags & VoiceFlags.MARKER) !== 0;
      const n = m.lastSent.next(this.#redOut, 0, payload, 0, len, mediaFrame, mediaFrame - 1, marker);
      if (n > 0) {
        payload = this.#redOut;
        len = n;
        flags |= VoiceFlags.RED;
        this.counters.redDownSent++;
      }
    }
    h.flags = flags;
    h.voiceId = ep.voiceId;
    h.sequence = ep.cipher.nextSequence;
    // One media clock per channel: a skipped frame is a timestamp gap the client conceals.
    const ts = (mediaFrame * this.frameSamples) % UINT32;
    h.timestamp = ts < 0 ? ts + UINT32 : ts;
    const n = ep.cipher.seal(h, payload, this.#sendBuf, len);
    this.send(ep, this.#sendBuf, n);
    m.packetsOut++;
    m.lastOutFrame = mediaFrame | 0;
    this.stats.packetsOut++;
    return true;
  }
}
