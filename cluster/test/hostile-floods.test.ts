import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { decodeServerMessage, encodeMessage } from '@voice/protocol';
import { startChildServer, type ChildServer } from '../../test-support/child-server.js';
import {
  errorMetrics,
  expectAlive,
  expectCanaryHears,
  expectMetricsMatch,
  Tally,
} from '../../test-support/hostile.js';

/**
 * Log-in, channel-creation and connection floods against the real server process with its default
 * limits. The server trusts X-Forwarded-For here (as behind its reverse proxy), so one test process
 * can be one host or many. Each flood is answered with documented codes that the metrics count
 * exactly, and afterwards the process is whole and another channel's bots hear each other.
 */

let srv: ChildServer;
let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
  srv = await startChildServer({ VOICE_TRUST_PROXY: 'true', VOICE_HELLO_TIMEOUT_MS: '1000' });
});
afterAll(async () => {
  await srv?.stop();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(srv.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

async function errorCodeOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('hostile floods (real process, default limits)', () => {
  it(
    'a log-in flood from one host is rate-limited; from many hosts it is served; counts add up',
    { timeout: 60_000 },
    async () => {
      const rssBefore = srv.rssBytes();
      const before = await errorMetrics(srv, 'http');
      const loginsBefore = await srv.metric('voice_logins_total');
      const limited = async () =>
        (await srv.metric('voice_rate_limited_total{limit="logins"}')) +
        (await srv.metric('voice_rate_limited_total{limit="http_requests"}'));
      const limitedBefore = await limited();
      const seen = new Tally();
      let created = 0;
      const started = performance.now();
      const one = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          post('/api/v1/login', { nickname: `flood-${i}` }, { 'x-forwarded-for': '198.51.100.7' }),
        ),
      );
      for (const res of one) {
        if (res.status === 201) created++;
        else {
          expect(res.status).toBe(429);
          seen.add(await errorCodeOf(res));
        }
      }
      // The log-in bucket (burst 10, 20/min) lets about ten through in the time the flood takes.
      expect(created).toBeGreaterThanOrEqual(10);
      expect(created).toBeLessThanOrEqual(10 + Math.ceil(((performance.now() - started) / 1000) * (20 / 60)));
      const many = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          post('/api/v1/login', { nickname: `host-${i}` }, { 'x-forwarded-for': `203.0.113.${i}` }),
        ),
      );
      for (const res of many) {
        if (res.status === 201) created++;
        else seen.add(await errorCodeOf(res));
      }
      expect(seen.counts.get('RATE_LIMITED')).toBe(300 - (created - 200));
      expect(await srv.metric('voice_logins_total')).toBe(loginsBefore + created);
      // Refused by the log-in bucket or, past its burst of 200, by the address's request bucket.
      expect((await limited()) - limitedBefore).toBe(seen.counts.get('RATE_LIMITED'));
      expectMetricsMatch(before, await errorMetrics(srv, 'http'), seen);
      await expectAlive(srv, rssBefore, 100 * 1024 * 1024);
      await expectCanaryHears(srv, opus, 'logins');
    },
  );

  it(
    'a channel-creation flood on one connection is answered in order, limited, and counted',
    { timeout: 60_000 },
    async () => {
      const rssBefore = srv.rssBytes();
      const before = await errorMetrics(srv, 'ws');
      const res = await post('/api/v1/login', { nickname: 'creator' }, { 'x-forwarded-for': '192.0.2.1' });
      const { token } = (await res.json()) as { token: string };
      const ws = new WebSocket(srv.wsUrl, {
        perMessageDeflate: false,
        headers: { 'x-forwarded-for': '192.0.2.1' },
      });
      const seen = new Tally();
      const answered = new Map<number, string>();
      ws.on('message', (d: Buffer) => {
        const m = decodeServerMessage(d);
        if (!m.ok) return;
        const v = m.value;
        if (v.t === 'error') seen.add(v.code);
        if ((v.t === 'error' || v.t === 'result') && v.re !== undefined)
          answered.set(v.re, v.t === 'error' ? v.code : 'ok');
      });
      await new Promise((r) => ws.once('open', r));
      ws.send(encodeMessage({ t: 'hello', id: 1, versions: [1], token }));
      await expect.poll(() => answered.get(1)).toBe('ok');
      const N = 500;
      const started = performance.now();
      for (let i = 0; i < N; i++)
        ws.send(encodeMessage({ t: 'channel.create', id: 100 + i, name: `flood room ${i}` }));
      await expect.poll(() => answered.size, { timeout: 20_000 }).toBe(N + 1);
      const elapsedS = (performance.now() - started) / 1000;
      const ok = [...answered.values()].filter((v) => v === 'ok').length - 1;
      // The connection's bucket (burst 60) and its 32 requests in flight bound what gets through.
      expect(ok).toBeGreaterThan(0);
      expect(ok).toBeLessThanOrEqual(60 + Math.ceil(20 * elapsedS));
      for (const v of answered.values()) expect(['ok', 'RATE_LIMITED', 'FORBIDDEN']).toContain(v);
      const list = (await (
        await fetch(`${srv.url}/api/v1/channels?q=flood%20room&limit=1`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).json()) as { total: number };
      expect(list.total).toBe(ok);
      ws.close();
      expectMetricsMatch(before, await errorMetrics(srv, 'ws'), seen);
      await expectAlive(srv, rssBefore, 100 * 1024 * 1024);
      await expectCanaryHears(srv, opus, 'creates');
    },
  );

  it(
    'a connection flood is capped per host and its silent sockets are closed at the hello deadline',
    { timeout: 60_000 },
    async () => {
      const rssBefore = srv.rssBytes();
      const before = await errorMetrics(srv, 'ws');
      const timeoutsBefore = await srv.metric('voice_hello_timeouts_total');
      await expect.poll(() => srv.metric('voice_ws_connections'), { timeout: 5000 }).toBe(0);
      const HOSTS = 30;
      const PER_HOST = 50;
      const seen = new Tally();
      const results = await Promise.all(
        Array.from(
          { length: HOSTS * PER_HOST },
          (_, i) =>
            new Promise<{ refused: boolean; close?: number }>((resolve) => {
              const ws = new WebSocket(srv.wsUrl, {
                perMessageDeflate: false,
                headers: { 'x-forwarded-for': `10.9.${i % HOSTS}.1` },
              });
              ws.on('error', () => {});
              ws.once('unexpected-response', (_req, res) => {
                let body = '';
                res.on('data', (d: Buffer) => (body += d.toString()));
                res.on('end', () => {
                  expect(res.statusCode).toBe(429);
                  seen.add((JSON.parse(body) as { error: { code: string } }).error.code);
                  resolve({ refused: true });
                });
              });
              ws.once('close', (code: number) => resolve({ refused: false, close: code }));
            }),
        ),
      );
      const accepted = results.filter((r) => !r.refused);
      expect(accepted).toHaveLength(HOSTS * 32);
      expect(accepted.every((r) => r.close === 4003)).toBe(true);
      expect(await srv.metric('voice_hello_timeouts_total')).toBe(timeoutsBefore + HOSTS * 32);
      expect(seen.counts.get('RATE_LIMITED')).toBe(HOSTS * (PER_HOST - 32));
      await expect.poll(() => srv.metric('voice_ws_connections')).toBe(0);
      expectMetricsMatch(before, await errorMetrics(srv, 'ws'), seen);
      await expectAlive(srv, rssBefore, 100 * 1024 * 1024);
      await expectCanaryHears(srv, opus, 'connections');
    },
  );
});
