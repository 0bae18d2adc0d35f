import type { Channel, User } from '@voice/protocol';
import { RequestError } from './signaling.js';

/** A REST request the server did not answer within the client's `timeoutMs` (the request was aborted). */
export class RestTimeoutError extends Error {
  override readonly name = 'RestTimeoutError';
  readonly code = 'TIMEOUT';
}

/** How long a REST request may take by default, ms: as a signaling request (SignalingClient). */
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * A thin REST client: JSON in and out, errors as RequestError with the server's code. Every request
 * is aborted after `timeoutMs` (RestTimeoutError), or earlier by the caller's `signal`: an
 * unanswered request must not hold its connection open.
 */
export class RestClient {
  constructor(
    readonly baseUrl: string,
    public token?: string,
    readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {
    if (!(timeoutMs > 0)) throw new TypeError('timeoutMs must be > 0');
  }

  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    token = this.token,
    signal?: AbortSignal,
  ): Promise<T> {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      text = await res.text();
    } catch (err) {
      if (timeout.aborted && !signal?.aborted)
        throw new RestTimeoutError(`${method} ${path}: no answer within ${this.timeoutMs} ms`, {
          cause: err,
        });
      throw err;
    }
    const json: unknown = text ? JSON.parse(text) : undefined;
    if (!res.ok) {
      const e = (json as { error?: { code: string; message: string; retryAfterMs?: number } } | undefined)
        ?.error;
      throw new RequestError(
        (e?.code ?? 'INTERNAL') as never,
        e?.message ?? `HTTP ${res.status}`,
        e?.retryAfterMs,
      );
    }
    return json as T;
  }

  async login(nickname: string): Promise<{ token: string; user: User }> {
    const r = await this.call<{ token: string; user: User }>('POST', '/api/v1/login', { nickname });
    this.token = r.token;
    return r;
  }

  async createChannel(input: { name: string; userLimit?: number; password?: string }): Promise<Channel> {
    return (await this.call<{ channel: Channel }>('POST', '/api/v1/channels', input)).channel;
  }
}
