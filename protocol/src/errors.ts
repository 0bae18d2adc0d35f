/**
 * Stable error codes carried by signaling `error` messages and REST error bodies
 * (`{ "error": { "code", "message" } }`). Codes never change meaning; new ones may be added.
 * `http` is the status a REST route answers with.
 */
export const ERROR_CODES = {
  BAD_FRAME: {
    http: 400,
    text: 'the message could not be parsed (msgpack map over WebSocket, JSON object over REST)',
  },
  FRAME_TOO_LARGE: { http: 413, text: 'the frame or body is larger than the limit' },
  UNSUPPORTED_MEDIA_TYPE: { http: 415, text: 'REST bodies must be sent as content-type application/json' },
  METHOD_NOT_ALLOWED: { http: 405, text: 'this route does not take that HTTP method' },
  NOT_IMPLEMENTED: { http: 501, text: 'no route of this server takes that HTTP method' },
  UNKNOWN_TYPE: { http: 400, text: 'unknown message type' },
  INVALID_FIELD: { http: 400, text: 'a field is missing or invalid' },
  UNSUPPORTED_VERSION: { http: 400, text: 'no protocol version in common' },
  NOT_AUTHENTICATED: { http: 401, text: 'send hello with a valid token first' },
  INVALID_TOKEN: { http: 401, text: 'the session token is unknown or expired' },
  FORBIDDEN: { http: 403, text: 'not allowed' },
  NOT_FOUND: { http: 404, text: 'no such resource' },
  NICKNAME_TAKEN: { http: 409, text: 'a connected user already has this nickname' },
  CHANNEL_NAME_TAKEN: { http: 409, text: 'a channel already has this name' },
  CHANNEL_FULL: { http: 409, text: 'the channel has reached its user limit' },
  WRONG_PASSWORD: { http: 403, text: 'wrong channel password' },
  NOT_IN_CHANNEL: { http: 409, text: 'join a channel first' },
  ALREADY_AUTHENTICATED: { http: 409, text: 'hello was already accepted on this connection' },
  RATE_LIMITED: { http: 429, text: 'too many requests, slow down' },
  SESSION_REPLACED: { http: 409, text: 'this session was resumed on another connection' },
  INTERNAL: { http: 500, text: 'internal error' },
  UNAVAILABLE: { http: 503, text: 'the server is shutting down or not ready' },
  STORAGE_FULL: { http: 503, text: 'the server cannot write: its storage is full; retry later' },
} as const satisfies Record<string, { http: number; text: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
export const ERROR_CODE_LIST = Object.keys(ERROR_CODES) as ErrorCode[];

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.hasOwn(ERROR_CODES, s);
}

/** An error that crosses the wire: a stable code and a human message. */
export class ProtocolError extends Error {
  override readonly name: string = 'ProtocolError';
  constructor(
    readonly code: ErrorCode,
    message: string = ERROR_CODES[code].text,
    readonly details?: unknown,
  ) {
    super(message);
  }
  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }
}

/**
 * RATE_LIMITED with the time after which the same request may succeed. Over WebSocket the error
 * carries `retryAfterMs`; over REST the body does too, and a `Retry-After` header (seconds).
 */
export class RateLimitedError extends ProtocolError {
  override readonly name: string = 'RateLimitedError';
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number, message?: string) {
    const ms = Math.max(1, Math.ceil(retryAfterMs));
    super('RATE_LIMITED', message ?? `${ERROR_CODES.RATE_LIMITED.text}; retry in ${ms} ms`);
    this.retryAfterMs = ms;
  }
}
