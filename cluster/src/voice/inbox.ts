import { MAX_PAYLOAD_BYTES } from '@voice/protocol';

/** What the inbox needs of a packet's owner: how many of its packets wait in the ring. */
export interface InboxOwner {
  inboxQueued: number;
}

/** Outcome of `PacketInbox.push`. */
export const InboxPush = {
  /** Queued. */
  QUEUED: 0,
  /** Queued, after dropping the oldest packet in the ring (the ring was full). */
  OVERFLOW: 1,
  /** Not queued: this owner already has its quota of packets waiting. */
  OVER_QUOTA: 2,
} as const;
export type InboxPush = (typeof InboxPush)[keyof typeof InboxPush];

/**
 * The channel actor's bounded audio mailbox: a ring of preallocated slots the UDP ingress copies
 * decrypted Opus payloads into. nact mailboxes are unbounded and a nact message per packet would
 * allocate, so audio takes this path and the actor drains it at the start of each tick.
 *
 * Two bounds: each owner (member) may have at most `quota` packets waiting, so one member's burst
 * or flood cannot push out everyone else's (its newest packets are refused and counted instead);
 * and when the whole ring is full, the oldest packet is overwritten (and counted): under general
 * overload fresh audio beats stale audio. A member sends one packet per frame and the ring is
 * drained every frame, so a member over quota is sending far faster than it should.
 */
export class PacketInbox<M extends InboxOwner> {
  readonly capacity: number;
  readonly quota: number;
  readonly data: Uint8Array;
  readonly length: Uint16Array;
  readonly seq: Uint32Array;
  readonly arrival: Float64Array;
  readonly flags: Uint8Array;
  readonly owner: (M | null)[];
  /** One view per slot, made once: readers pass it with `length[i]`, so draining allocates nothing. */
  readonly views: Uint8Array[];
  #head = 0;
  #count = 0;
  /** Packets dropped because the ring was full. */
  overflows = 0;
  /** Packets refused because their owner was over its quota. */
  overQuota = 0;

  constructor(capacity: number, quota: number = capacity) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new TypeError('capacity must be a positive integer');
    if (!Number.isInteger(quota) || quota < 1 || quota > capacity)
      throw new TypeError('quota must be an integer in 1..capacity');
    this.capacity = capacity;
    this.quota = quota;
    this.data = new Uint8Array(capacity * MAX_PAYLOAD_BYTES);
    this.length = new Uint16Array(capacity);
    this.seq = new Uint32Array(capacity);
    this.arrival = new Float64Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.owner = new Array<M | null>(capacity).fill(null);
    this.views = Array.from({ length: capacity }, (_, i) =>
      this.data.subarray(i * MAX_PAYLOAD_BYTES, (i + 1) * MAX_PAYLOAD_BYTES),
    );
  }

  get count(): number {
    return this.#count;
  }

  /** Copies one payload in, unless its owner is over quota; see InboxPush. */
  push(owner: M, seq: number, arrival: number, flags: number, payload: Uint8Array, len: number): InboxPush {
    if (owner.inboxQueued >= this.quota) {
      this.overQuota++;
      return InboxPush.OVER_QUOTA;
    }
    let result: InboxPush = InboxPush.QUEUED;
    if (this.#count === this.capacity) {
      this.shift();
      this.overflows++;
      result = InboxPush.OVERFLOW;
    }
    const i = (this.#head + this.#count) % this.capacity;
    const view = this.views[i]!;
    for (let b = 0; b < len; b++) view[b] = payload[b]!;
    this.length[i] = len;
    this.seq[i] = seq;
    this.arrival[i] = arrival;
    this.flags[i] = flags;
    this.owner[i] = owner;
    owner.inboxQueued++;
    this.#count++;
    return result;
  }

  /** Index of the oldest packet, or -1 when empty; call `shift()` after reading it. */
  peekIndex(): number {
    return this.#count === 0 ? -1 : this.#head;
  }
  shift(): void {
    if (this.#count === 0) return;
    const o = this.owner[this.#head];
    if (o) o.inboxQueued--;
    this.owner[this.#head] = null;
    this.#head = (this.#head + 1) % this.capacity;
    this.#count--;
  }
  clear(): void {
    while (this.#count > 0) this.shift();
    this.#head = 0;
  }
}
