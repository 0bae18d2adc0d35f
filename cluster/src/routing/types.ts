/**
 * What crosses processes in a cluster besides the state of state/types.ts: which processes are
 * alive (NodeRegistry), which one owns a channel (LeaseStore), and node-addressed request/reply
 * (RequestChannel). Each has a local implementation (one process, or several instances over one
 * in-memory backend in tests) and a Redis one; a contract suite runs on both. Modelled on LiveKit's
 * pkg/routing (node registry, room-to-node, signal relay).
 */

/** Load a node reports; the least loaded live node takes a channel that becomes active. */
export interface NodeLoad {
  channels: number;
  members: number;
  /** p99 mixer tick lateness over the last report period, ms. */
  tickLateMs: number;
  /** Process CPU use over the last report period, 0..1 per core. */
  cpu: number;
}

/** What a node announces about itself: where clients reach it, and how busy it is. */
export interface NodeInfo {
  nodeId: string;
  /** Public signaling URL (`ws://host:port/ws`). */
  wsUrl: string;
  /** Public UDP voice address clients are told to send to. */
  udpHost: string;
  udpPort: number;
  load: NodeLoad;
  /** A draining node takes no new channels. */
  draining: boolean;
  /** Announcing node's clock, ms; for display only (liveness is the entry's expiry and age). */
  updatedAt: number;
}

/**
 * A registry entry as listed: what the node announced, and how long ago by the registry's own
 * clock (the Redis server's, not the nodes': their clocks need not agree). A node announces every
 * period; an entry older than two periods belongs to a node that stopped (dead or hung) before its
 * TTL ran out.
 */
export interface LiveNode extends NodeInfo {
  ageMs: number;
}

/** Live nodes. An entry disappears when not announced again within its TTL. */
export interface NodeRegistry {
  /** Puts (or refreshes) this node's entry, valid for `ttlMs`. */
  announce(info: NodeInfo, ttlMs: number): Promise<void>;
  /** Removes the entry now (clean shutdown). */
  withdraw(nodeId: string): Promise<void>;
  get(nodeId: string): Promise<NodeInfo | null>;
  /** Every node whose entry has not expired, with its age, in no particular order. */
  live(): Promise<LiveNode[]>;
  close(): Promise<void>;
}

/** A lease grant: who holds a resource, with which fencing token. */
export interface LeaseHolder {
  nodeId: string;
  /** Strictly increasing per resource, across holders: a newer holder always has a larger token. */
  token: number;
}

/**
 * Exclusive, expiring ownership of a resource (a channel) with fencing tokens. The primitive
 * operations; `LeaseKeeper` renews a held lease and reports its loss.
 */
export interface LeaseStore {
  /** Takes the lease if nobody holds it; null when another node does (or this one already does). */
  acquire(resource: string, nodeId: string, ttlMs: number): Promise<LeaseHolder | null>;
  /** Extends the lease if `holder` still holds it (compare-and-set); false when it was lost. */
  renew(resource: string, holder: LeaseHolder, ttlMs: number): Promise<boolean>;
  /** Gives the lease up if `holder` still holds it; false otherwise. */
  release(resource: string, holder: LeaseHolder): Promise<boolean>;
  holder(resource: string): Promise<LeaseHolder | null>;
  close(): Promise<void>;
}

/** A request's reply or its failure, as it travels between nodes. */
export type WireReply = { ok: true; result: unknown } | { ok: false; code: string; message: string };

/** Handles requests addressed to this node. A thrown error with a string `code` travels back as it. */
export type RequestHandler = (op: string, args: unknown, from: string) => Promise<unknown>;

/**
 * Node-addressed request/reply: correlation ids, a timeout per request, a bounded pending map.
 * Replies and failures carry a code (see RequestError).
 */
export interface RequestChannel {
  readonly nodeId: string;
  /** Sends `op(args)` to `to` and resolves with its handler's result. Rejects with RequestError. */
  request(to: string, op: string, args: unknown, timeoutMs?: number): Promise<unknown>;
  /**
   * Whether node `nodeId` listens for requests now. Over Redis its subscription ends with its
   * connection, so a process that died is seen at once, long before its leases or registry entry
   * expire.
   */
  reachable(nodeId: string): Promise<boolean>;
  /** Sets this node's handler (one per node); returns a function that removes it. */
  handle(handler: RequestHandler): () => void;
  close(): Promise<void>;
}
