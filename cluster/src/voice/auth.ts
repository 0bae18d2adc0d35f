import { randomInt } from 'node:crypto';
import { MAX_PACKET_BYTES, type AeadBackend, type VoiceHeader } from '@voice/protocol';
import type { Session } from '../app/sessions.js';
import { KeyedRateLimiter, TokenBucket } from '../ratelimit.js';
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
 * Budgets for authenticating packets from foreign addresses (any address but the endpoint's
 * registered one): tokens per second and burst, each a decryption the server may spend.
 */
export interface ForeignBudgets {
  /** Per voice id: what a roaming member needs (one good packet moves its address) and no more. */
  perVoiceId: { rate: number; burst: number };
  /** Per source address, across voice ids. */
  perAddress: { rate: number; burst: number; maxAddresses: number };
  /** The whole node. */
  global: { rate: number; burst: number };
  /** How often idle per-address buckets are swept, and at most how many per sweep. */
  sweepMs: number;
  sweepMax: number;
}

export const DEFAULT_FOREIGN_BUDGETS: ForeignBudgets = {
  perVoiceId: { rate: 20, burst: 20 },
  perAddress: { rate: 50, burst: 100, maxAddresses: 10_000 },
  global: { rate: 2_000, burst: 2_000 },
  sweepMs: 5_000,
  sweepMax: 2_000,
};

/**
 * Authentication of incoming voice packets: the voice id table (who owns which id), the source
 * address check, and the decryption that proves the sender holds the key. Every rejected packet is
 * counted by reason; nothing here throws on input.
 *
 * A packet from the endpoint's registered address (or its own WebSocket) is always opened: its
 * member keeps full service whatever arrives from elsewhere. A packet from any other address may
 * be a roaming member (NAT rebinding) or a forgery made with a sniffed voice id, and each costs a
 * decryption, so those are bounded per voice id, per address and for the node (token buckets,
 * cheapest check first) and the excess is dropped before any cryptography.
 */
export class VoiceAuth {
  readonly #byId = new Map<number, VoiceEndpoint>();
  readonly #bySession = new Map<Session, VoiceEndpoint>();
  readonly #budgets: ForeignBudgets;
  readonly #perAddress: KeyedRateLimiter;
  readonly #global: TokenBucket;
  readonly #sweeper: NodeJS.Timeout;
  /** Reused result: the packet path allocates nothing per packet. */
  readonly #opened: Opened = { ep: null as unknown as VoiceEndpoint, length: 0, fromRegistered: false };

  constructor(
    private readonly counters: VoiceCounters,
    budgets: Partial<ForeignBudgets> = {},
    onError: (err: unknown) => void = () => {},
    /** AES-256-GCM implementation for the endpoints' ciphers (node:crypto when absent). */
    private readonly aead?: AeadBackend,
  ) {
    const b = { ...DEFAULT_FOREIGN_BUDGETS, ...budgets };
    this.#budgets = b;
    this.#perAddress = new KeyedRateLimiter(b.perAddress.rate, b.perAddress.burst, b.perAddress.maxAddresses);
    this.#global = new TokenBucket(b.global.rate, b.global.burst);
    this.#sweeper = setInterval(() => {
      try {
        this.#perAddress.sweep(performance.now(), b.sweepMax);
      } catch (err) {
        onError(err);
      }
    }, b.sweepMs);
    this.#sweeper.unref();
  }

  /** Source addresses with a live foreign-packet bucket (bounded, swept). */
  get foreignAddresses(): number {
    return this.#perAddress.size;
  }

  /** Issues a fresh random voice id and key for `session` in `core`'s channel. */
  register(session: Session, core: ChannelCore): VoiceEndpoint {
    let voiceId: number;
    do voiceId = randomInt(1, 0xffff_ffff);
    while (this.#byId.has(voiceId));
    const v = this.#budgets.perVoiceId;
    const budget = { foreign: new TokenBucket(v.rate, v.burst), sameHost: new TokenBucket(v.rate, v.burst) };
    const ep = new VoiceEndpoint(voiceId, session, core, budget, this.aead);
    this.#byId.set(voiceId, ep);
    this.#bySession.set(session, ep);
    return ep;
  }

  /** Forgets `session`'s endpoint (its voice id stops authenticating at once); returns it. */
  unregister(session: Session): VoiceEndpoint | undefined {
    const ep = this.#bySession.get(session);
    if (!ep) return undefined;
    this.forget(ep);
    return ep;
  }

  /**
   * `session` gets a new endpoint while `ep` stays live by its voice id (a handover): it is no
   * longer the session's current one.
   */
  unlink(session: Session, ep: VoiceEndpoint): void {
    if (this.#bySession.get(session) === ep) this.#bySession.delete(session);
  }

  /** Forgets `ep` (its voice id stops authenticating at once). Idempotent. */
  forget(ep: VoiceEndpoint): void {
    ep.closed = true;
    if (this.#byId.get(ep.voiceId) === ep) this.#byId.delete(ep.voiceId);
    if (this.#bySession.get(ep.session) === ep) this.#bySession.delete(ep.session);
  }

  bySession(session: Session): VoiceEndpoint | undefined {
    return this.#bySession.get(session);
  }

  endpoints(): IterableIterator<VoiceEndpoint> {
    return this.#byId.values();
  }

  get endpointCount(): number {
    return this.#byId.size;
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
    // Peek the voice id to find the cipher (check() then reads the whole header).
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
    // Framing and replay first: they cost no cryptography, so they need no budget.
    const bad = ep.cipher.check(msg, h);
    if (bad !== null) {
      c.drops[bad]++;
      return null;
    }
    if (!fromRegistered) {
      const now = performance.now();
      // The host the member signed in from (NAT gives its UDP the same public address) has a
      // budget of its own per voice id and skips the per-address and node-wide ones: a flood from
      // other addresses can then neither stop a member's first packet nor its move to a new port,
      // and many members behind one address (an office NAT, the swarm) can all register at once.
      const sameHost = address === ep.session.conn?.address;
      if (!(sameHost ? ep.budget.sameHost : ep.budget.foreign).take(now)) {
        c.drops.foreign_voice_id++;
        return null;
      }
      if (!sameHost) {
        if (!this.#perAddress.take(address, now)) {
          c.drops.rate_limited++;
          return null;
        }
        if (!this.#global.take(now)) {
          c.drops.foreign_global++;
          return null;
        }
      }
    }
    const r = ep.cipher.openChecked(msg, plain, h);
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
    clearInterval(this.#sweeper);
    this.#byId.clear();
    this.#bySession.clear();
  }
}
