import { join } from 'node:path';
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

  it('keeps serving after an unhandled promise rejection, and counts it', async () => {
    srv = await startChildServer({ VOICE_TEST_FAULT: 'rejection' }, undefined, [FAULTS]);
    await expect.poll(() => srv!.metric('voice_faults_total{event="unhandledRejection"}')).toBe(1);
    expect(srv.exited()).toBeNull();
    expect((await fetch(srv.url + '/healthz')).status).toBe(200);
    const line = srv
      .output()
      .split('\n')
      .find((l) => l.includes('"boundary":"unhandledRejection"'));
    expect(line).toMatch(/injected: nobody awaits this/);
    expect(
      await srv.metric('voice_boundary_errors_total{boundary="unhandledRejection",code="INTERNAL"}'),
    ).toBe(1);
  });

  it('exits 1 after an uncaught exception, having logged it, so that the supervisor restarts it', async () => {
    srv = await startChildServer({ VOICE_TEST_FAULT: 'exception' }, undefined, [FAULTS]);
    await expect.poll(() => srv!.exited(), { timeout: 5000 }).not.toBeNull();
    expect(srv.exited()).toEqual({ code: 1, signal: null });
    expect(srv.output()).toMatch(/uncaught exception: exiting for a restart/);
    expect(srv.output()).toMatch(/injected: thrown from a timer/);
  });
});

const FAULTS = join(import.meta.dirname, '../../test-support/inject-fault.mjs');
