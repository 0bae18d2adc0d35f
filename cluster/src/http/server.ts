import { STATUS_CODES } from 'node:http';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { ProtocolError, RateLimitedError, type ErrorCode } from '@voice/protocol';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { KeyedRateLimiter } from '../ratelimit.js';

export interface RestRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  authorization: string;
  address: string;
  /** Parsed JSON body, or undefined when there was none. */
  body: unknown;
}

export interface RestResponse {
  status: number;
  body?: unknown;
  /** Raw text instead of JSON (Prometheus exposition). */
  text?: string;
  contentType?: string;
  headers?: Record<string, string>;
}

/** The client's address: the socket's, or behind a trusted proxy the last X-Forwarded-For entry. */
export function clientAddress(socket: string, req: HttpRequest, trustProxy: boolean): string {
  if (!trustProxy) return socket;
  const fwd = req.getHeader('x-forwarded-for');
  const last = fwd.split(',').pop()?.trim();
  return last || socket;
}

export type RestHandler = (req: RestRequest) => Promise<RestResponse> | RestResponse;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  name: string;
  handler: RestHandler;
}

/**
 * A small router over uWebSockets.js: it reads everything it needs from the request synchronously
 * (uWS requests are only valid during the callback), reads the body with a size limit, answers
 * JSON, and turns every failure into `{"error":{"code","message"}}` with a stable code.
 */
export class RestRouter {
  readonly #routes: Route[] = [];

  constructor(
    private readonly deps: {
      log: Logger;
      metrics: Metrics;
      maxBodyBytes: number;
      limiter: KeyedRateLimiter;
      trustProxy: boolean;
    },
  ) {}

  add(method: string, path: string, handler: RestHandler): this {
    const keys: string[] = [];
    const pattern = new RegExp(
      '^' +
        path.replace(/:([a-zA-Z]+)/g, (_m, k: string) => {
          keys.push(k);
          return '([^/]+)';
        }) +
        '/?$',
    );
    this.#routes.push({ method, pattern, keys, name: `${method} ${path}`, handler });
    return this;
  }

  /** The uWS handler for `app.any('/*', …)`. */
  readonly handle = (res: HttpResponse, req: HttpRequest): void => {
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const authorization = req.getHeader('authorization');
    const contentLength = Number(req.getHeader('content-length') || 0);
    const address = clientAddress(
      Buffer.from(res.getRemoteAddressAsText()).toString(),
      req,
      this.deps.trustProxy,
    );
    const state = { aborted: false };
    res.onAborted(() => {
      state.aborted = true;
    });

    const send = (routeName: string, r: RestResponse): void => {
      if (state.aborted) return;
      this.deps.metrics.httpRequests.inc({ route: routeName, status: String(r.status) });
      res.cork(() => {
        res.writeStatus(`${r.status} ${STATUS_CODES[r.status] ?? ''}`);
        res.writeHeader('cache-control', 'no-store');
        if (r.headers) for (const [k, v] of Object.entries(r.headers)) res.writeHeader(k, v);
        if (r.text !== undefined) {
          res.writeHeader('content-type', r.contentType ?? 'text/plain; charset=utf-8');
          res.end(r.text);
        } else if (r.body === undefined) {
          res.end();
        } else {
          res.writeHeader('content-type', 'application/json');
          res.end(JSON.stringify(r.body));
        }
      });
    };
    const fail = (routeName: string, code: ErrorCode, message?: string, retryAfterMs?: number): void => {
      const err = new ProtocolError(code, message);
      this.deps.metrics.errors.inc({ code, transport: 'http' });
      const body = { error: { code, message: err.message, ...(retryAfterMs ? { retryAfterMs } : {}) } };
      const headers = retryAfterMs ? { 'retry-after': String(Math.ceil(retryAfterMs / 1000)) } : undefined;
      send(routeName, { status: err.httpStatus, body, ...(headers ? { headers } : {}) });
    };

    if (!this.deps.limiter.take(address)) {
      this.deps.metrics.rateLimited.inc({ limit: 'http_requests' });
      // Do not read the body of a refused request.
      fail('rate_limited', 'RATE_LIMITED');
      return;
    }

    let route: Route | undefined;
    let match: RegExpExecArray | null = null;
    let pathExists = false;
    for (const r of this.#routes) {
      const m = r.pattern.exec(path);
      if (!m) continue;
      pathExists = true;
      if (r.method === method) {
        route = r;
        match = m;
        break;
      }
    }
    if (!route || !match) {
      res.onData(() => {});
      fail(
        'unmatched',
        pathExists ? 'METHOD_NOT_ALLOWED' : 'NOT_FOUND',
        pathExists ? `method ${method} not allowed here` : `no route ${path}`,
      );
      return;
    }
    const params: Record<string, string> = {};
    route.keys.forEach((k, i) => {
      params[k] = decodeURIComponent(match[i + 1] ?? '');
    });
    const r = route;
    if (contentLength > this.deps.maxBodyBytes) {
      fail(r.name, 'FRAME_TOO_LARGE', `body larger than ${this.deps.maxBodyBytes} bytes`);
      return;
    }

    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    res.onData((ab, isLast) => {
      if (tooLarge) return;
      size += ab.byteLength;
      if (size > this.deps.maxBodyBytes) {
        tooLarge = true;
        fail(r.name, 'FRAME_TOO_LARGE', `body larger than ${this.deps.maxBodyBytes} bytes`);
        return;
      }
      // uWS reuses the chunk's memory after this callback: copy it.
      chunks.push(Buffer.from(new Uint8Array(ab).slice()));
      if (!isLast) return;
      let body: unknown = undefined;
      if (size > 0) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          fail(r.name, 'BAD_FRAME', 'the body is not valid JSON');
          return;
        }
      }
      const request: RestRequest = { method, path, params, query, authorization, address, body };
      Promise.resolve()
        .then(() => r.handler(request))
        .then(
          (out) => send(r.name, out),
          (err: unknown) => {
            if (err instanceof RateLimitedError) return fail(r.name, err.code, err.message, err.retryAfterMs);
            if (err instanceof ProtocolError) return fail(r.name, err.code, err.message);
            this.deps.log.error({ err, route: r.name }, 'REST handler failed');
            fail(r.name, 'INTERNAL');
          },
        );
    });
  };
}
