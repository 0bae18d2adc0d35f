import type { VoiceEndpoint } from './endpoint.js';

/** How the node's UDP packets leave its voice socket (the one socket and port clients know). */
export interface UdpEgress {
  /** `sendmmsg`: batched, native (egress-batch.ts); `dgram`: one node:dgram send each (egress-dgram.ts). */
  readonly name: 'sendmmsg' | 'dgram';
  /**
   * Sends, or queues for the next flush, `packet[0, length)` to the endpoint's UDP address; the
   * caller's buffer is free on return. Returns false when the packet was lost (already counted).
   */
  send(packet: Uint8Array, length: number, ep: VoiceEndpoint): boolean;
  /** Sends whatever is queued, now: the end of a clock tick. */
  flush(): void;
  /** Drops what is queued and sends nothing more; idempotent. Called before the socket closes. */
  close(): void;
}
