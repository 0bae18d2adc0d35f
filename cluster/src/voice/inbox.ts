import { MAX_PAYLOAD_BYTES } from '@voice/protocol';

/**
 * The channel actor's bounded audio mailbox: a ring of preallocated slots the UDP ingress copies
 * decrypted Opus payloads into. nact mailboxes are unbounded and a nact message per packet would
 * allocate, so audio takes this path and the actor drains it at the start of each tick. When full,
 * the oldest packet is overwritten (and counted): under overload fresh audio beats stale audio.
 */
export class PacketInbox<M> {
  readonly capacity: number;
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
  overflows = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new TypeError('capacity must be a positive integer');
    this.capacity = capacity;
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

  /** Copies one payload in. Returns false when an older packet had to be dropped to make room. */
  push(owner: M, seq: number, arrival: number, flags: number, payload: Uint8Array, len: number): boolean {
    let dropped = false;
    if (this.#count === this.capacity) {
      this.#head = (this.#head + 1) % this.capacity;
      this.#count--;
      this.overflows++;
      dropped = true;
    }
    const i = (this.#head + this.#count) % this.capacity;
    const view = this.views[i]!;
    for (let b = 0; b < len; b++) view[b] = payload[b]!;
    this.length[i] = len;
    this.seq[i] = seq;
    this.arrival[i] = arrival;
    this.flags[i] = flags;
    this.owner[i] = owner;
    this.#count++;
    return !dropped;
  }

  /** Index of the oldest packet, or -1 when empty; call `shift()` after reading it. */
  peekIndex(): number {
    return this.#count === 0 ? -1 : this.#head;
  }
  shift(): void {
    if (this.#count === 0) return;
    this.owner[this.#head] = null;
    this.#head = (this.#head + 1) % this.capacity;
    this.#count--;
  }
  clear(): void {
    this.owner.fill(null);
    this.#head = 0;
    this.#count = 0;
  }
}
