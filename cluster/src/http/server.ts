import { STATUS_CODES } from 'node:http';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { ProtocolError, RateLimitedError, type ErrorCode } from '@voice/protocol';
import type { Boundary } from '../boundary.js';
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

/** A path parameter, percent-decoded; bad escapes (`%`, `%zz`, broken UTF-8) are the client's error. */
function decodeParam(raw: string, key: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ProtocolError('INVALID_FIELD', `path parameter ${key} is not valid percent-encoded UTF-8`);
  }
}

/** `application/json`, with or without parameters (`; charset=utf-8`), any case. */
function isJson(contentType: string): boolean {
  return /^application\/json\s*(;|$)/i.test(contentType.trim());
}

/**
 * A small router over uWebSockets.js: it reads everything it needs from the request synchronously
 * (uWS requests are only valid during the callback), reads the body with a size limit, answers
 * JSON, and turns every failure into `{"error":{"code","message"}}` with a stable code. Nothing
 * thrown in here reaches uWS (where an exception ends the process): it is answered and reported.
 */
export class RestRouter {
  readonly #routes: Route[] = [];
  /**
   * Methods some route takes, and HEAD (known but no route's: the 405 or 404 of its path, no body).
   * Any other method that uWS lets through (PUT, OPTIONS, TRACE, CONNECT) is 501 on every path;
   * uWS itself closes the connection on methods outside its nine (protocol/README.md section 2).
   */
  readonly #implemented = new Set<string>(['HEAD']);

  constructor(
    private readonly deps: {
      log: Logger;
      metrics: Metrics;
      boundary: Boundary;
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
    this.#implemented.add(method);
    return this;
  }

  /** The uWS handler for `app.any('/*', …)`. */
  readonly handle = (res: HttpResponse, req: HttpRequest): void => {
    // First, so that uWS never sees a callback return without a response or an abort handler.
    const state = { aborted: false, answered: false };
    res.onAborted(() => {
      state.aborted = true;
    });
    let routeName = 'unmatched';
    let head = false;

    const send = (r: RestResponse, allow?: string): void => {
      if (state.aborted || state.answered) return;
      // Serialised before anything is written: a body that cannot be (a bug) throws here and is
      // answered INTERNAL, instead of leaving a response half written.
      const json = r.text === undefined && r.body !== undefined ? JSON.stringify(r.body) : undefined;
      state.answered = true;
      this.deps.metrics.httpRequests.inc({ route: routeName, status: String(r.status) });
      res.cork(() => {
        res.writeStatus(`${r.status} ${STATUS_CODES[r.status] ?? ''}`);
        res.writeHeader('cache-control', 'no-store');
        if (allow) res.writeHeader('allow', allow);
        if (r.headers) for (const [k, v] of Object.entries(r.headers)) res.writeHeader(k, v);
        // A response to HEAD has headers only (RFC 9110 9.3.2).
        if (head) res.endWithoutBody();
        else if (r.text !== undefined) {
          res.writeHeader('content-type', r.contentType ?? 'text/plain; charset=utf-8');
          res.end(r.text);
        } else if (json === undefined) {
          res.end();
        } else {
          res.writeHeader('content-type', 'application/json');
          res.end(json);
        }
      });
    };
    const fail = (err: ProtocolError, allow?: string): void => {
      if (state.aborted || state.answered) return;
      this.deps.metrics.errors.inc({ code: err.code, transport: 'http' });
      // A rate-limited answer says when to come back, in the body and as Retry-After (seconds).
      const retryAfterMs = err instanceof RateLimitedError ? err.retryAfterMs : undefined;
      const body = {
        error: { code: err.code, message: err.message, ...(retryAfterMs ? { retryAfterMs } : {}) },
      };
      const headers = retryAfterMs ? { 'retry-after': String(Math.ceil(retryAfterMs / 1000)) } : undefined;
      send({ status: err.httpStatus, body, ...(headers ? { headers } : {}) }, allow);
    };
    const failWith = (code: ErrorCode, message?: string) => fail(new ProtocolError(code, message));
    // Every exception ends here: a ProtocolError is answered as is, anything else is reported.
    const caught = (err: unknown) => fail(this.deps.boundary.report('http', err));

    try {
      const method = req.getMethod().toUpperCase();
      head = method === 'HEAD';
      const path = req.getUrl();
      const query = new URLSearchParams(req.getQuery() ?? '');
      const authorization = req.getHeader('authorization');
      const contentType = req.getHeader('content-type');
      const contentLength = Number(req.getHeader('content-length') || 0);
      const address = clientAddress(
        Buffer.from(res.getRemoteAddressAsText()).toString(),
        req,
        this.deps.trustProxy,
      );

      if (!this.deps.limiter.take(address)) {
        this.deps.metrics.rateLimited.inc({ limit: 'http_requests' });
        routeName = 'rate_limited';
        // Do not read the body of a refused request.
        return fail(new RateLimitedError(this.deps.limiter.retryAfterMs(address)));
      }

      if (!this.#implemented.has(method)) {
        res.onData(() => {});
        return failWith('NOT_IMPLEMENTED', `no route of this server takes ${method}`);
      }

      let route: Route | undefined;
      let match: RegExpExecArray | null = null;
      const allowed: string[] = [];
      for (const r of this.#routes) {
        const m = r.pattern.exec(path);
        if (!m) continue;
        if (r.method === method) {
          route = r;
          match = m;
          break;
        }
        allowed.push(r.method);
      }
      if (!route || !match) {
        res.onData(() => {});
        if (allowed.length === 0) return failWith('NOT_FOUND', `no route ${path}`);
        return fail(
          new ProtocolError('METHOD_NOT_ALLOWED', `method ${method} not allowed here`),
          allowed.join(', '),
        );
      }
      const r = route;
      routeName = r.name;
      const params: Record<string, string> = {};
      r.keys.forEach((k, i) => {
        params[k] = decodeParam(match[i + 1] ?? '', k);
      });
      if (contentLength > this.deps.maxBodyBytes) {
        return failWith('FRAME_TOO_LARGE', `body larger than ${this.deps.maxBodyBytes} bytes`);
      }

      const chunks: Buffer[] = [];
      let size = 0;
      res.onData((ab, isLast) => {
        try {
          if (state.answered) return;
          size += ab.byteLength;
          if (size > this.deps.maxBodyBytes) {
            return failWith('FRAME_TOO_LARGE', `body larger than ${this.deps.maxBodyBytes} bytes`);
          }
          // uWS reuses the chunk's memory after this callback: copy it.
          chunks.push(Buffer.from(new Uint8Array(ab).slice()));
          if (!isLast) return;
          let body: unknown = undefined;
          if (size > 0) {
            if (!isJson(contentType)) {
              return failWith(
                'UNSUPPORTED_MEDIA_TYPE',
                `send the body as application/json, not ${JSON.stringify(contentType.slice(0, 64) || '(none)')}`,
              );
            }
            try {
              body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              return failWith('BAD_FRAME', 'the body is not valid JSON');
            }
          }
          const request: RestRequest = { method, path, params, query, authorization, address, body };
          Promise.resolve()
            .then(() => r.handler(request))
            .then((out) => send(out))
            .catch(caught);
        } catch (err) {
          caught(err);
        }
      });
    } catch (err) {
      caught(err);
    }
  };
}
