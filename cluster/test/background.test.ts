import { afterEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test-support/server.js';

let srv: TestServer;
afterEach(async () => {
  await srv.stop();
});

describe('work no client waits for', () => {
  it('a bus that fails to publish a member update is logged and counted, never an unhandled rejection', async () => {
    srv = await startTestServer();
    const a = await srv.user('renamer');
    const { channel } = await a.ws.request('channel.create', { name: 'Bus' });
    await a.ws.request('channel.join', { channelId: channel.id });
    // The bus fails for member updates only (as a Redis bus can while Redis is away).
    const bus = srv.ctx.bus;
    const publish = bus.publish.bind(bus);
    bus.publish = (e) => (e.type === 'member.updated' ? Promise.reject(new Error('bus down')) : publish(e));
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      // profile.update publishes user.updated; its fan-out publishes member.updated in the background.
      const r = await a.ws.request('profile.update', { status: 'away for a bit' });
      expect(r.user.status).toBe('away for a bit');
      await new Promise((res) => setTimeout(res, 50));
    } finally {
      process.off('unhandledRejection', onUnhandled);
      bus.publish = publish;
    }
    expect(unhandled).toEqual([]);
    expect(await srv.ctx.metrics.value('voice_background_errors_total', { task: 'member update' })).toBe(1);
    expect((await a.ws.request('ping', { ts: 1 })).ts).toBe(1);
  });
});
