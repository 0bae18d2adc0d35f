import type { StoredChannel } from '../state/types.js';
import type { Session } from './sessions.js';
import type { VoiceBinding } from '@voice/protocol';

/**
 * The seam between signaling and the voice path: the session layer tells the voice plane who is in
 * which channel and with which settings; the voice plane owns the channel actors, UDP and mixing.
 */
export interface VoicePlane {
  /**
   * A session joined (or was restored into) a channel; returns where and how to send voice. A new
   * binding for the channel the session is in hands over from its current one (protocol README 8.4).
   */
  attach(session: Session, channel: StoredChannel): VoiceBinding;
  /** A session left its channel or ended: its bindings are void at once. */
  detach(session: Session): void;
  /**
   * The session's channel moved to another node: its binding here stays live for the handover
   * (protocol README 8.4), then is void.
   */
  release(session: Session): void;
  /** Handovers under way: replaced bindings still live (a draining node waits for them). */
  readonly handovers: number;
  /** Mute, deafen or volumes of a session changed. */
  update(session: Session): void;
  /** Codec settings of a channel changed. */
  channelUpdated(channel: StoredChannel): void;
  /** Voice packet that arrived over the WebSocket fallback transport. */
  receiveWs(session: Session, packet: Uint8Array): void;
  /** The worst channel's tick lateness p99 over the last seconds (ms): how loaded this node is. */
  tickLatenessP99Ms(): number;
  close(): Promise<void>;
}
