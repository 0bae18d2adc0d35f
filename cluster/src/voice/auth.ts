import { randomInt } from 'node:crypto';
import { MAX_PACKET_BYTES, type VoiceHeader } from '@voice/protocol';
import type { Session } from '../app/sessions.js';
import { KeyedRateLimiter } from '../ratelimit.js';
import type { ChannelCore } from './channel.js';
import type { VoiceCounters } from './counters.js';
import { VoiceEndpoint } from './endpoint.js';

/** Result of `VoiceAuth.open`: the endpoint and payload length, or null (dropped and counted). */
export interface Opened {
  ep: VoiceEndpoint;
  length: number;
  /** The packet came from the endpoint's registered address (or over its own WebSocket). */
  fromRegistered: boolean;
}

/**
 * Authentication of incoming voice packets: the voice id table (who owns which id), the source
 * address check, and the decryption that proves the sender holds the key. Every rejected packet is
 * counted by reason; nothing here throws on input.
 */
export class VoiceAuth {
  readonly #byId = new Map<number, VoiceEndpoint>();
  readonly #bySession = new Map<Session, VoiceEndpoint>();
  /** Packets from an address that is not the session's registered one cost a decryption: bound them. */
  readonly #unregistered = new KeyedRateLimiter(200, 400, 10_000);
  /** Reused result: the packet path allocates nothing per packet. */
  readonly #opened: Opened = { ep: null as unknown as VoiceEndpoint, length: 0, fromRegistered: false };

  constructor(private readonly counters: VoiceCounters) {}

  /** Issues a fresh random voice id and key for `session` in `core`'s channel. */
  register(session: Session, core: ChannelCore): VoiceEndpoint {
    let voiceId: number;
    do voiceId = randomInt(1, 0xffff_ffff);
    while (this.#byId.has(voiceId));
    const ep = new VoiceEndpoint(voiceId, session, core);
    this.#byId.set(voiceId, ep);
    this.#bySession.set(session, ep);
    return ep;
  }

  /** Forgets `session`'s endpoint (its voice id stops authenticating at once); returns it. */
  unregister(session: Session): VoiceEndpoint | undefined {
    const ep = this.#bySession.get(session);
    if (!ep) return undefined;
    ep.closed = true;
    this.#bySession.delete(session);
    this.#byId.delete(ep.voiceId);
    return ep;
  }

  bySession(session: Session): VoiceEndpoint | undefined {
    return this.#bySession.get(session);
  }

  endpoints(): IterableIterator<VoiceEndpoint> {
    return this.#byId.values();
  }

  /**
   * Finds the packet's endpoint, checks where it came from and opens it into `plain` (the header
   * into `h`). `address` null: it came over `wsSession`'s WebSocket. The returned object is reused.
   */
  open(
    msg: Uint8Array,
    address: string | null,
    port: number,
    wsSession: Session | undefined,
    plain: Uint8Array,
    h: VoiceHeader,
  ): Opened | null {
    const c = this.counters;
    if (msg.byteLength > MAX_PACKET_BYTES) {
      c.drops.oversized++;
      return null;
    }
    // Peek the voice id before paying for a decryption (openInto re-reads the header).
    if (msg.byteLength < 8) {
      c.drops.TOO_SHORT++;
      return null;
    }
    const voiceId = ((msg[4]! << 24) | (msg[5]! << 16) | (msg[6]! << 8) | msg[7]!) >>> 0;
    const ep = this.#byId.get(voiceId);
    // Over the WebSocket a session may only speak for itself.
    if (!ep || (wsSession !== undefined && ep.session !== wsSession)) {
      c.drops.unknown_session++;
      return null;
    }
    const fromRegistered = address === null || (address === ep.udpAddress && port === ep.udpPort);
    if (!fromRegistered && !this.#unregistered.take(address)) {
      c.drops.rate_limited++;
      return null;
    }
    const r = ep.cipher.openInto(msg, plain, h);
    if (typeof r !== 'number') {
      c.drops[r]++;
      return null;
    }
    const o = this.#opened;
    o.ep = ep;
    o.length = r;
    o.fromRegistered = fromRegistered;
    return o;
  }

  clear(): void {
    this.#byId.clear();
    this.#bySession.clear();
  }
}
