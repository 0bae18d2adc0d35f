import type { ServerMessage, UserId } from '@voice/protocol';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { RequestChannel } from '../routing/types.js';
import type { EventBus, SessionDirectory, Store } from '../state/types.js';

/** What every service is built from. Passed through constructors; nothing is global. */
export interface AppContext {
  config: Config;
  log: Logger;
  metrics: Metrics;
  store: Store;
  directory: SessionDirectory;
  bus: EventBus;
  /** Node-addressed request/reply (to a channel's owner, or to the node holding a session). */
  requests: RequestChannel;
  now: () => number;
}

/** Who is asking: a user (by token), the admin (by admin token), or both. */
export interface Principal {
  userId: UserId | null;
  admin: boolean;
}

/** A live signaling connection, independent of the WebSocket library under it. */
export interface Connection {
  readonly id: number;
  readonly address: string;
  /** False when the message was dropped because the connection is backed up or closed. */
  send(msg: ServerMessage): boolean;
  /**
   * Sends an already encoded frame (a broadcast encodes once for all receivers). A `droppable`
   * frame (voice) is dropped while the client is backed up; others close a backed-up connection.
   */
  sendBytes(frame: Uint8Array, droppable?: boolean): boolean;
  close(code: number, reason: string): void;
}
