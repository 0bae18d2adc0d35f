import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';

/** Impairments applied to one direction, each independently per packet. */
export interface LinkConditions {
  /** Probability a packet is dropped (0..1). */
  loss?: number;
  /** Only packets this accepts may be lost (default: any), e.g. AUDIO packets alone. */
  lossFilter?: (packet: Uint8Array) => boolean;
  /** Never lose two of the packets `loss` applies to in a row (a single loss: what RED rebuilds). */
  isolatedLoss?: boolean;
  /** Probability a packet is sent twice (0..1). */
  duplicate?: number;
  /** Probability a packet is held back and released right after the next one (0..1). */
  reorder?: number;
  /** Extra delay per packet, uniform random in 0..jitterMs ms (which also reorders a little). */
  jitterMs?: number;
}

export interface LinkCounters {
  received: number;
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  delayed: number;
}

export interface LossyRelayOptions {
  /** The server's UDP address. */
  target: { host: string; port: number };
  clientToServer?: LinkConditions;
  serverToClient?: LinkConditions;
  /** Seed of the PRNG (default 1): the same seed and packet order give the same decisions. */
  seed?: number;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** A held-back packet is released after this long if no next packet comes (default 100 ms). */
  maxHoldMs?: number;
  /** Most clients relayed at once (default 1024); packets from further clients are dropped. */
  maxClients?: number;
}

export type Direction = 'clientToServer' | 'serverToClient';

/** mulberry32: small, fast, seedable; plenty for test impairments. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkConditions(c: LinkConditions, where: string): LinkConditions {
  for (const k of ['loss', 'duplicate', 'reorder'] as const) {
    const v = c[k];
    if (v !== undefined && !(v >= 0 && v <= 1)) throw new TypeError(`${where}.${k} must be in [0, 1]`);
  }
  if (c.jitterMs !== undefined && !(c.jitterMs >= 0 && Number.isFinite(c.jitterMs))) {
    throw new TypeError(`${where}.jitterMs must be >= 0`);
  }
  return { ...c };
}

type Deliver = (packet: Buffer) => void;

/** One direction's impairments: decides per packet, then hands copies to `deliver`. */
class Link {
  conditions: LinkConditions;
  readonly counters: LinkCounters = {
    received: 0,
    forwarded: 0,
    dropped: 0,
    duplicated: 0,
    reordered: 0,
    delayed: 0,
  };
  private held: { packets: Buffer[]; deliver: Deliver } | null = null;
  private holdTimer: NodeJS.Timeout | null = null;
  /** A stall in progress: every packet waits here until it ends (bounded by the stall's length). */
  private stalled: { packets: Buffer[]; deliver: Deliver }[] | null = null;
  private stallDone: (() => void) | null = null;
  /** The last packet `loss` applied to was dropped (for `isolatedLoss`). */
  private lastLost = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    conditions: LinkConditions,
    private readonly rand: () => number,
    private readonly maxHoldMs: number,
  ) {
    this.conditions = conditions;
  }

  handle(packet: Buffer, deliver: Deliver): void {
    if (this.closed) return;
    const c = this.conditions;
    this.counters.received++;
    if (this.stalled) {
      this.counters.delayed++;
      this.stalled.push({ packets: [packet], deliver });
      return;
    }
    if ((c.loss ?? 0) > 0 && (c.lossFilter?.(packet) ?? true)) {
      const lose = !(c.isolatedLoss === true && this.lastLost) && this.rand() < c.loss!;
      this.lastLost = lose;
      if (lose) {
        this.counters.dropped++;
        return;
      }
    }
    const copies = [packet];
    if ((c.duplicate ?? 0) > 0 && this.rand() < c.duplicate!) {
      copies.push(Buffer.from(packet));
      this.counters.duplicated++;
    }
    if (this.held === null && (c.reorder ?? 0) > 0 && this.rand() < c.reorder!) {
      this.counters.reordered++;
      this.held = { packets: copies, deliver };
      this.holdTimer = setTimeout(() => this.release(), this.maxHoldMs);
      return;
    }
    for (const p of copies) this.send(p, deliver);
    this.release();
  }

  /**
   * Holds every packet for the next `ms`, then sends them all at once, in order (a sender's stall or
   * a jitter burst: the first one is `ms` late, the last on time). Resolves once they are sent.
   */
  stall(ms: number): Promise<void> {
    if (!(ms > 0 && ms <= 10_000)) throw new TypeError('ms must be in (0, 10000]');
    if (this.stalled || this.closed) return Promise.resolve();
    const queue: { packets: Buffer[]; deliver: Deliver }[] = [];
    this.stalled = queue;
    return new Promise((resolve) => {
      this.stallDone = resolve;
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.stalled = null;
        this.stallDone = null;
        if (!this.closed) for (const q of queue) for (const p of q.packets) this.send(p, q.deliver);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  private release(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const h = this.held;
    this.held = null;
    if (h) for (const p of h.packets) this.send(p, h.deliver);
  }

  private send(packet: Buffer, deliver: Deliver): void {
    const j = this.conditions.jitterMs ?? 0;
    this.counters.forwarded++;
    if (j <= 0) {
      deliver(packet);
      return;
    }
    this.counters.delayed++;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) deliver(packet);
    }, this.rand() * j);
    this.timers.add(t);
  }

  close(): void {
    this.closed = true;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.held = null;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.stalled = null;
    this.stallDone?.();
    this.stallDone = null;
  }
}

interface ClientPath {
  address: string;
  port: number;
  /** Talks to the server for this client, so each client has its own address as the server sees it. */
  upstream: Socket;
}

function bind(socket: Socket, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

/**
 * A UDP relay for tests, between voice clients and the server's UDP port. Clients send to
 * `relay.port`; each client gets its own upstream socket (as a NAT would), so the server sees one
 * address per client and its answers come back through the relay to that client. Each direction has
 * its own impairments and its own PRNG stream (seeded from `seed`).
 */
export class LossyRelay {
  readonly host: string;
  readonly port: number;
  private readonly clients = new Map<string, ClientPath>();
  private readonly links: Record<Direction, Link>;
  private closed = false;
  /** Packets dropped because `maxClients` was reached or a socket failed. */
  overflow = 0;

  private constructor(
    private readonly socket: Socket,
    private readonly options: LossyRelayOptions,
  ) {
    this.host = socket.address().address;
    this.port = socket.address().port;
    const seed = options.seed ?? 1;
    const hold = options.maxHoldMs ?? 100;
    this.links = {
      clientToServer: new Link(
        checkConditions(options.clientToServer ?? {}, 'clientToServer'),
        mulberry32(seed),
        hold,
      ),
      serverToClient: new Link(
        checkConditions(options.serverToClient ?? {}, 'serverToClient'),
        mulberry32(seed ^ 0x5bd1e995),
        hold,
      ),
    };
    socket.on('message', (msg, rinfo) => this.fromClient(msg, rinfo));
    socket.on('error', () => this.overflow++);
  }

  static async start(options: LossyRelayOptions): Promise<LossyRelay> {
    if (!options?.target || !Number.isInteger(options.target.port))
      throw new TypeError('target {host, port} is required');
    const host = options.host ?? '127.0.0.1';
    // Large buffers, as the server has: under a loaded test run a burst must not be dropped by the
    // kernel before the relay applies its own (seeded, counted) loss.
    const socket = createSocket({ type: 'udp4', recvBufferSize: 1 << 22, sendBufferSize: 1 << 22 });
    await bind(socket, host);
    return new LossyRelay(socket, options);
  }

  /** Where clients send (`udpTarget` of a VoiceClient). */
  get address(): { host: string; port: number } {
    return { host: this.host, port: this.port };
  }

  /** Holds one direction's packets for `ms`, then sends them in a burst (Link.stall). */
  stall(direction: Direction, ms: number): Promise<void> {
    return this.links[direction].stall(ms);
  }

  /** Changes one direction's impairments from now on. */
  setConditions(direction: Direction, conditions: LinkConditions): void {
    this.links[direction].conditions = checkConditions(conditions, direction);
  }

  /** A copy of both directions' counters. */
  stats(): Record<Direction, LinkCounters> {
    return {
      clientToServer: { ...this.links.clientToServer.counters },
      serverToClient: { ...this.links.serverToClient.counters },
    };
  }

  get clientCount(): number {
    return this.clients.size;
  }

  private fromClient(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.closed) return;
    const key = `${rinfo.address}:${rinfo.port}`;
    let path = this.clients.get(key);
    if (!path) {
      if (this.clients.size >= (this.options.maxClients ?? 1024)) {
        this.overflow++;
        return;
      }
      const upstream = createSocket({ type: 'udp4', recvBufferSize: 1 << 22, sendBufferSize: 1 << 22 });
      const p: ClientPath = { address: rinfo.address, port: rinfo.port, upstream };
      path = p;
      this.clients.set(key, p);
      // Bind before sending so the first packet leaves from the client's stable upstream port.
      upstream.bind(0, this.host);
      upstream.on('message', (reply) => this.fromServer(reply, p));
      upstream.on('error', () => this.overflow++);
    }
    const up = path.upstream;
    const { host, port } = this.options.target;
    this.links.clientToServer.handle(msg, (p) => {
      if (!this.closed) up.send(p, port, host, (err) => err && this.overflow++);
    });
  }

  private fromServer(msg: Buffer, path: ClientPath): void {
    if (this.closed) return;
    this.links.serverToClient.handle(msg, (p) => {
      if (!this.closed) this.socket.send(p, path.port, path.address, (err) => err && this.overflow++);
    });
  }

  /** Idempotent: stops forwarding and closes every socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.links.clientToServer.close();
    this.links.serverToClient.close();
    const sockets = [this.socket, ...[...this.clients.values()].map((c) => c.upstream)];
    this.clients.clear();
    await Promise.all(
      sockets.map(
        (s) =>
          new Promise<void>((resolve) => {
            try {
              s.close(() => resolve());
            } catch {
              resolve();
            }
          }),
      ),
    );
  }
}

/** Starts a relay in front of `options.target`. */
export function startLossyRelay(options: LossyRelayOptions): Promise<LossyRelay> {
  return LossyRelay.start(options);
}
