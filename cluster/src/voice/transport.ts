import { encodeMessage, type Transport } from '@voice/protocol';
import type { Logger } from '../log.js';
import type { SessionManager } from '../app/sessions.js';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import type { VoiceSocket } from './udp.js';

/**
 * Egress: sends a sealed packet to a member over the transport its latest authenticated packet
 * came by (UDP, or the WebSocket fallback), and tells the session layer when that transport changes.
 */
export class VoiceTransports {
  #closed = false;

  constructor(
    private readonly socket: VoiceSocket,
    private readonly sessions: SessionManager,
    private readonly counters: VoiceCounters,
    private readonly log: Logger,
  ) {}

  readonly #onSent = (err: Error | null): void => {
    if (err) this.counters.sendErrors++;
  };

  /** An authenticated packet arrived over `t`: mixes follow it there. */
  setTransport(ep: VoiceEndpoint, t: Exclude<Transport, 'none'>): void {
    ep.transport = t;
    this.sessions
      .setTransport(ep.session, t)
      .catch((err: unknown) => this.log.error({ err }, 'transport event failed'));
  }

  send(ep: VoiceEndpoint, packet: Uint8Array, length: number): void {
    if (this.#closed) return;
    const c = this.counters;
    if (ep.transport === 'udp') {
      // dgram reads the buffer only after an async address step (and later still if the kernel queue
      // is full), so a reused buffer could be overwritten before it leaves: copy into a pooled slice.
      const buf = Buffer.allocUnsafe(length);
      for (let i = 0; i < length; i++) buf[i] = packet[i]!;
      this.socket.send(buf, length, ep.udpPort, ep.udpAddress, this.#onSent);
    } else if (ep.transport === 'ws') {
      const conn = ep.session.conn;
      if (!conn || !conn.sendBytes(encodeMessage({ t: 'voice', p: packet.subarray(0, length) }))) {
        c.sendErrors++;
        return;
      }
    } else return;
    c.packetsOut++;
    c.bytesOut += length;
  }

  close(): void {
    this.#closed = true;
  }
}
