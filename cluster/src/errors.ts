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
