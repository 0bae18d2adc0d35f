import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { startChildServer, type ChildServer } from '../../test-support/child-server.js';
import {
  errorMetrics,
  expectAlive,
  expectCanaryHears,
  expectMetricsMatch,
  hostileSeed,
  Tally,
} from '../../test-support/hostile.js';
import { ADMIN_TOKEN } from '../../test-support/server.js';

/**
 * Random and mutated REST requests against the real server process: paths, methods, headers and
 * bodies from fast-check (seeded: the seed is printed), then raw bytes on a TCP socket. Every
 * answer must be a documented status with a coded error body, never a 500; afterwards the process
 * is alive, voice still works, memory is bounded and voice_errors_total matches what was answered.
 */

let srv: ChildServer;
let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
  // Limits raised so that the fuzz reaches the handlers instead of the rate limiter (floods are
  // hostile-floods.test.ts).
  srv = await startChildServer(
    {},
    {
      limits: {
        requestsPerSecond: 100_000,
        requestBurst: 100_000,
        loginsPerMinute: 10_000,
        loginBurst: 10_000,
      },
    },
  );
});
afterAll(async () => {
  await srv?.stop();
});

const ROUTES = [
  '/healthz',
  '/readyz',
  '/metrics',
  '/api/v1/login',
  '/api/v1/logout',
  '/api/v1/me',
  '/api/v1/users/:id',
  '/api/v1/channels',
  '/api/v1/channels/:id',
  '/api/v1/channels/:id/members',
  '/api/v1/channels/:id/mutes',
  '/api/v1/channels/:id/mutes/:userId',
  '/api/v1/admin/users',
  '/api/v1/admin/channels',
];
const METHODS = ['GET', 'POST', 'PATCH', 'DELETE', 'PUT', 'HEAD', 'OPTIONS', 'FOO'];
/** Statuses the REST API documents (protocol/README.md sections 2 and 7). */
const DOCUMENTED = new Set([200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 501, 503]);
/** What a HEAD answer (no body) means: it never matches a route. */
const HEAD_CODES: Record<number, string> = {
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  429: 'RATE_LIMITED',
};

const printable = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
});

/** A path parameter: real ids, look-alikes, percent-escapes good and bad, any text escaped. */
function paramArb(ids: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(...ids),
    fc.constantFrom('%', '%zz', '%ff', '%c3%28', '%E0%A4%A', '..', '.', '%2F', '%00', 'c_AAAAAAAAAAAA', 'u_'),
    fc.string({ unit: 'binary', maxLength: 40 }).map(encodeURIComponent),
    fc.stringMatching(/^[%A-Za-z0-9._~-]{1,30}$/),
  );
}

const queryArb = fc.oneof(
  fc.constant(''),
  fc
    .array(
      fc.tuple(
        fc.constantFrom('limit', 'offset', 'q', 'online', 'owner', 'x', ''),
        fc.oneof(
          fc.constantFrom('-1', '0', '1', '200', '201', '1e9', 'NaN', 'true', 'false', '%', '%zz', ''),
          printable.map(encodeURIComponent),
        ),
      ),
      { maxLength: 4 },
    )
    .map((kv) => '?' + kv.map(([k, v]) => `${k}=${v}`).join('&')),
);

function bodyArb(): fc.Arbitrary<string | Uint8Array | undefined> {
  const nick = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }));
  return fc.oneof(
    fc.constant(undefined),
    fc.json({ maxDepth: 3 }),
    fc.record({ nickname: nick }).map((o) => JSON.stringify(o)),
    fc
      .record(
        {
          name: nick,
          userLimit: fc.oneof(fc.integer(), fc.double(), fc.string()),
          password: fc.oneof(fc.string({ maxLength: 130 }), fc.constant(null)),
          voice: fc.record(
            { bitrate: fc.integer(), frameMs: fc.integer(), complexity: fc.integer() },
            { requiredKeys: [] },
          ),
          status: fc.string({ maxLength: 140 }),
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o)),
    fc.uint8Array({ maxLength: 64 }),
    fc.constantFrom('{"nickname":', '[]', 'null', '1', '"x"', '{"__proto__":{"x":1}}', 'x'.repeat(20_000)),
  );
}

describe('hostile REST (random and mutated requests, real process)', () => {
  it(
    'answers thousands of random requests with documented codes, and stays whole',
    { timeout: 90_000 },
    async () => {
      const rssBefore = srv.rssBytes();
      const before = await errorMetrics(srv, 'http');
      const seen = new Tally();

      // Real ids and tokens, so that the fuzz reaches past authentication and lookups.
      const login = async (nickname: string) =>
        (await (
          await fetch(`${srv.url}/api/v1/login`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ nickname }),
          })
        ).json()) as { token: string; user: { id: string } };
      const alice = await login('fuzz-alice');
      const bob = await login('fuzz-bob');
      const ch = (await (
        await fetch(`${srv.url}/api/v1/channels`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` },
          body: JSON.stringify({ name: 'fuzz-room' }),
        })
      ).json()) as { channel: { id: string } };
      const ids = [alice.user.id, bob.user.id, ch.channel.id];

      const request = fc.record({
        method: fc.constantFrom(...METHODS),
        path: fc.oneof(
          {
            weight: 4,
            arbitrary: fc
              .tuple(fc.constantFrom(...ROUTES), paramArb(ids), paramArb(ids))
              .map(([r, p, q]) => r.replace(':id', p).replace(':userId', q)),
          },
          {
            weight: 1,
            arbitrary: fc.array(paramArb(ids), { maxLength: 5 }).map((segs) => '/' + segs.join('/')),
          },
        ),
        query: queryArb,
        auth: fc.constantFrom('none', 'alice', 'bob', 'admin', 'garbage', 'malformed'),
        contentType: fc.option(
          fc.oneof(
            fc.constantFrom(
              'application/json',
              'text/plain',
              'application/json; charset=utf-8',
              'multipart/form-data',
            ),
            printable,
          ),
          { nil: undefined },
        ),
        forwardedFor: fc.option(printable, { nil: undefined }),
        body: bodyArb(),
      });

      const seed = hostileSeed('hostile-rest');
      let requests = 0;
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const headers: Record<string, string> = {};
          const token = { alice: alice.token, bob: bob.token, admin: ADMIN_TOKEN, garbage: 'x'.repeat(43) }[
            r.auth as 'alice'
          ];
          if (token) headers.authorization = `Bearer ${token}`;
          if (r.auth === 'malformed') headers.authorization = 'Basic Zm9vOmJhcg==';
          if (r.contentType !== undefined) headers['content-type'] = r.contentType;
          if (r.forwardedFor !== undefined) headers['x-forwarded-for'] = r.forwardedFor;
          const hasBody = r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD';
          requests++;
          let res: Response;
          try {
            res = await fetch(srv.url + r.path + r.query, {
              method: r.method,
              headers,
              ...(hasBody ? { body: r.body } : {}),
            });
          } catch (err) {
            // uWS drops the connection on a method outside its nine (no answer, no state, never
            // reaches our code): the one case where no status comes back.
            if (r.method === 'FOO') return;
            throw err;
          }
          const text = await res.text();
          expect(DOCUMENTED.has(res.status), `status ${res.status} for ${r.method} ${r.path}`).toBe(true);
          if (res.status < 400) return;
          if (r.method === 'HEAD') {
            expect(text).toBe('');
            const code = HEAD_CODES[res.status];
            expect(code, `HEAD answered ${res.status}`).toBeDefined();
            seen.add(code!);
            return;
          }
          if (r.path.startsWith('/readyz') && res.status === 503) return;
          const body = JSON.parse(text) as { error: { code: string; message: string } };
          expect(typeof body.error.code).toBe('string');
          seen.add(body.error.code);
        }),
        { seed, numRuns: 2500, endOnFailure: true },
      );
      expect(requests).toBe(2500);

      // Raw bytes: broken request lines, headers and framing that fetch would not send.
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ minLength: 1, maxLength: 300 }),
            fc
              .tuple(
                fc.constantFrom(...METHODS, 'GET\x00', ''),
                fc.string({ unit: 'binary', maxLength: 60 }),
                printable,
              )
              .map(([m, p, h]) =>
                new TextEncoder().encode(`${m} /api/v1/${p} HTTP/1.1\r\nhost: x\r\n${h}\r\n\r\n`),
              ),
            fc
              .tuple(fc.integer({ min: -5, max: 100_000 }), fc.string({ maxLength: 50 }))
              .map(([len, b]) =>
                new TextEncoder().encode(
                  `POST /api/v1/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${len}\r\n\r\n${b}`,
                ),
              ),
          ),
          async (bytes) => {
            const answer = await rawExchange(srv.url, bytes);
            // uWS itself refuses what it cannot parse; whatever our router answered carries a code
            // in its body, or (an answer to HEAD) only in its status.
            for (const response of answer.split(/(?=HTTP\/1\.1 \d{3} )/)) {
              const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(response)?.[1]);
              const code = /\{"error":\{"code":"([A-Z_]+)"/.exec(response)?.[1] ?? HEAD_CODES[status];
              if (status >= 400 && code) seen.add(code);
            }
          },
        ),
        { seed, numRuns: 300, endOnFailure: true },
      );

      console.log('answered error codes', Object.fromEntries(seen.counts));
      await expectAlive(srv, rssBefore, 150 * 1024 * 1024);
      expectMetricsMatch(before, await errorMetrics(srv, 'http'), seen);
      expect(seen.counts.get('INTERNAL') ?? 0).toBe(0);
      await expectCanaryHears(srv, opus, 'rest');
    },
  );
});

/** Writes bytes on a fresh TCP connection and collects what comes back for a short while. */
async function rawExchange(url: string, bytes: Uint8Array): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    let out = '';
    const s = connect(Number(port), '127.0.0.1', () => s.end(bytes));
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => {});
    // The server answers or closes each of these at once (none is left waiting on a quiet machine);
    // the bound is for a loaded one, where cutting at 250 ms lost answers the metrics had counted.
    const t = setTimeout(() => s.destroy(), 2000);
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}
