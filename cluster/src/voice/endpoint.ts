import {
  VoiceCipher,
  VoiceDirection,
  createVoiceKey,
  type AeadBackend,
  type Transport,
} from '@voice/protocol';
import { SenderTimeline, TimestampUnwrapper } from '@voice/media';
import type { Session } from '../app/sessions.js';
import type { TokenBucket } from '../ratelimit.js';
import type { ChannelCore } from './channel.js';
import type { VoiceMember } from './member.js';

/**
 * A session's voice state while it is in a channel: its key and cipher (with the replay window),
 * where its packets come from and go to. Shared by the UDP ingress (which opens packets) and the
 * channel actor (which seals the mixes it sends); both run on the one event loop.
 */
export class VoiceEndpoint {
  readonly key: Uint8Array = createVoiceKey();
  readonly cipher: VoiceCipher;
  /** Transport of the latest authenticated packet: where mixes go. */
  transport: Transport = 'none';
  udpAddress = '';
  /** `udpAddress` as a u32 (parseIPv4), for the batched egress; -1 while there is none. */
  udpAddress32 = -1;
  udpPort = 0;
  /** Upstream loss snapshot for the 2 s stats window. */
  statsReceived = 0;
  statsLost = 0;
  member: VoiceMember | null = null;
  /**
   * The session's previous binding, still live until this one carries audio (a handover, protocol
   * README 8.4); null otherwise.
   */
  predecessor: VoiceEndpoint | null = null;
  /** Replaced by a newer binding of its session, and kept live only for the handover. */
  retiring = false;
  /** Void: removed from its channel, nothing sent under its key any more (ServerVoicePlane). */
  voided = false;
  /** Unwraps the uint32 audio timestamps into frame indices (the one rule client and server share). */
  readonly timestamps = new TimestampUnwrapper();
  /**
   * Continues the client's timeline when it restarts its timestamps within this binding (README
   * 8.1): without it, a talkspurt restarted behind the last one is dropped as late.
   */
  readonly timeline = new SenderTimeline();
  closed = false;

  constructor(
    readonly voiceId: number,
    readonly session: Session,
    public channel: ChannelCore,
    /**
     * Decryptions this voice id may cost from addresses other than its registered one: `sameHost`
     * for packets from the host its WebSocket comes from (its first packet, a new NAT port),
     * `foreign` for any other address.
     */
    readonly budget: { readonly foreign: TokenBucket; readonly sameHost: TokenBucket },
    aead?: AeadBackend,
  ) {
    this.cipher = new VoiceCipher(this.key, VoiceDirection.SERVER_TO_CLIENT, aead);
  }
}
