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
/** A channel cap (the server's total, or one owner's) would be exceeded. */
export class ChannelLimitError extends ProtocolError {
  override readonly name = 'ChannelLimitError';
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}
export class NativeModuleError extends Error {
  override readonly name = 'NativeModuleError';
}

/** Error codes of a full disk: SQLite's own, and the system's for any other write. */
const STORAGE_FULL_CODES = new Set(['SQLITE_FULL', 'ENOSPC', 'EDQUOT']);

/** True when `err`, or an error in its `cause` chain, says the disk is full. */
export function isStorageFull(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && STORAGE_FULL_CODES.has(code)) return true;
  }
  return false;
}

/** The wire error for any failure: itself when it has a code, STORAGE_FULL for a full disk, else INTERNAL. */
export function wireError(err: unknown): ProtocolError {
  if (err instanceof ProtocolError) return err;
  if (isStorageFull(err)) return new ProtocolError('STORAGE_FULL');
  return new ProtocolError('INTERNAL');
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
