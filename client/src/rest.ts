import type { Channel, User } from '@voice/protocol';
import { RequestError } from './signaling.js';

/** A thin REST client: JSON in and out, errors as RequestError with the server's code. */
export class RestClient {
  constructor(
    readonly baseUrl: string,
    public token?: string,
  ) {}

  async call<T>(method: string, path: string, body?: unknown, token = this.token): Promise<T> {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, {
      method,
      headers,
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
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
