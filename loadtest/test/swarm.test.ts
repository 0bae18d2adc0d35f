import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runSwarm } from '../src/swarm.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

let srv: TestServer;
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  await srv.stop();
});

/** A short smoke run of the load generator against a real server: what it reports is what happened. */
describe('voice swarm (loadtest/src/swarm.ts)', () => {
  it('drives two channels of three, two speaking, and its figures match the server’s', async () => {
    const r = await runSwarm({ server: srv.url, channels: 2, members: 3, speakers: 2, seconds: 2 });
    expect(r.members).toBe(6);
    // Four speakers at 50 packets/s for 2 s, plus HELLOs.
    expect(r.packetsSent).toBeGreaterThan(4 * 50 * 2 * 0.9);
    expect(r.packetsSent).toBeLessThan(4 * 50 * 2 * 1.1 + 6 * 5);
    // Every member hears a mix each tick while speakers speak; loopback loses nothing.
    expect(r.deliveryRatio).toBeGreaterThan(0.9);
    expect(r.deliveryRatio).toBeLessThan(1.1);
    // The server saw the same traffic: everything the swarm sent arrived, and it received no more
    // than the server sent.
    const c = srv.voice.counters;
    expect(c.packetsIn).toBe(r.packetsSent);
    expect(r.packetsReceived).toBeLessThanOrEqual(c.packetsOut);
    expect(r.packetsReceived).toBeGreaterThan(c.packetsOut * 0.95);
    expect(c.drops.AUTH_FAILED + c.drops.REPLAY + c.drops.unknown_session).toBe(0);
  });
});
