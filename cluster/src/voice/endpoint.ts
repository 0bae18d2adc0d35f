import {
  VoiceCipher,
  VoiceDirection,
  createVoiceKey,
  type AeadBackend,
  type Transport,
} from '@voice/protocol';
import type { Session } from '../app/sessions.js';
import type { TokenBucket } from '../ratelimit.js';
import type { ChannelCore, VoiceMember } from './channel.js';

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
  udpPort = 0;
  /** Upstream loss snapshot for the 2 s stats window. */
  statsReceived = 0;
  statsLost = 0;
  member: VoiceMember | null = null;
  /** Unwrapped audio timestamp (serial arithmetic on the uint32 header field), -1 before the first. */
  tsExt = -1;
  tsRaw = 0;
  closed = false;

  constructor(
    readonly voiceId: number,
    readonly session: Session,
    public channel: ChannelCore,
    /** Decryptions this voice id may cost from addresses other than its registered one. */
    readonly foreign: TokenBucket,
    aead?: AeadBackend,
  ) {
    this.cipher = new VoiceCipher(this.key, VoiceDirection.SERVER_TO_CLIENT, aead);
  }
}
