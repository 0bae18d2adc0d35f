import { ProtocolError } from '@voice/protocol';

/** Named errors of the server. Wire-facing failures are ProtocolErrors (they carry a code). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
export class StoreError extends Error {
  override readonly name = 'StoreError';
}
export class ChannelNameTakenError extends ProtocolError {
  override readonly name = 'ChannelNameTakenError';
  constructor(name: string) {
    super('CHANNEL_NAME_TAKEN', `a channel named "${name}" already exists`);
  }
}
export class NativeModuleError extends Error {
  override readonly name = 'NativeModuleError';
}

/** Why a node-addressed request failed without a reply from its handler. */
export type RequestFailure = 'TIMEOUT' | 'UNREACHABLE' | 'OVERLOADED' | 'CLOSED' | 'REMOTE';
/** A node-addressed request failed; `code` says how (REMOTE: the handler failed with `remoteCode`). */
export class RequestError extends Error {
  override readonly name = 'RequestError';
  constructor(
    readonly code: RequestFailure,
    message: string,
    readonly remoteCode?: string,
  ) {
    super(message);
  }
}
/** Redis is configured but cannot be reached right now; requests that need it answer UNAVAILABLE. */
export class ClusterUnavailableError extends ProtocolError {
  override readonly name = 'ClusterUnavailableError';
  constructor(what: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', `${what}: the cluster store is unreachable, try again shortly`);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}
