import { afterEach, describe, expect, it } from 'vitest';
import { startChildServer, type ChildServer } from '../../test-support/child-server.js';

let srv: ChildServer | undefined;
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
});

describe('a request cannot end the process (the real entry point, in its own process)', () => {
  it('answers malformed percent-escapes in path parameters with 400 INVALID_FIELD and keeps serving', async () => {
    srv = await startChildServer();
    const paths = [
      '/api/v1/channels/%',
      '/api/v1/users/%zz',
      '/api/v1/channels/%E0%A4%A',
      '/api/v1/users/%ff',
    ];
    for (const p of paths) {
      const res = await fetch(srv.url + p, { headers: { authorization: 'Bearer x' } });
      expect(res.status, p).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code, p).toBe('INVALID_FIELD');
    }
    expect(srv.exited()).toBeNull();
    expect((await fetch(srv.url + '/healthz')).status).toBe(200);
    expect(await srv.metric('voice_errors_total{code="INVALID_FIELD",transport="http"}')).toBe(paths.length);
    // Input errors are answers, not faults: nothing was caught as a bug.
    expect(srv.output()).not.toMatch(/URIError|exception caught at a boundary/);
  });
});
