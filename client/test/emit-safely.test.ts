import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { emitSafely } from '../src/emit-safely.js';
import { VoiceClient } from '../src/index.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

describe('emitSafely', () => {
  it('runs every listener in order, reports each throw, and removes once listeners', () => {
    const e = new EventEmitter();
    const calls: string[] = [];
    const errors: unknown[] = [];
    e.on('x', (v: number) => calls.push(`a${v}`));
    e.on('x', () => {
      throw new Error('boom');
    });
    e.once('x', (v: number) => calls.push(`once${v}`));
    e.on('x', (v: number) => calls.push(`b${v}`));
    expect(emitSafely(e, 'x', [1], (err) => errors.push(err))).toBe(true);
    expect(emitSafely(e, 'x', [2], (err) => errors.push(err))).toBe(true);
    expect(calls).toEqual(['a1', 'once1', 'b1', 'a2', 'b2']);
    expect(errors).toHaveLength(2);
    expect(emitSafely(e, 'none', [], () => {})).toBe(false);
    // A failing report does not stop delivery either.
    expect(() =>
      emitSafely(e, 'x', [3], () => {
        throw new Error('report failed');
      }),
    ).not.toThrow();
    expect(calls.at(-1)).toBe('b3');
  });
});

describe('a throwing listener on a real connection', () => {
  let srv: TestServer;
  afterEach(async () => {
    await srv.stop();
  });

  it('does not escape into ws: the other listeners hear the event and the connection keeps working', async () => {
    srv = await startTestServer();
    const a = await srv.user('thrower');
    const b = await srv.user('creator');
    const seen: string[] = [];
    a.ws.on('channel.created', () => {
      throw new Error('application bug');
    });
    a.ws.on('channel.created', (m: { channel: { name: string } }) => seen.push(m.channel.name));
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const later = a.ws.waitFor('channel.created', (m) => m.channel.name === 'second');
      await b.ws.request('channel.create', { name: 'first' });
      await b.ws.request('channel.create', { name: 'second' });
      await later;
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(seen).toEqual(['first', 'second']);
    expect(a.ws.listenerErrors).toBe(2);
    expect(uncaught).toEqual([]);
    expect(a.ws.closed).toBe(false);
    expect((await a.ws.request('ping', { ts: 7 })).ts).toBe(7);
  });

  it("VoiceClient: a throwing listener does not keep the next one from hearing 'left'", async () => {
    srv = await startTestServer();
    const c = await VoiceClient.connect({
      server: srv.url,
      nickname: 'left-bot',
      channel: 'Room',
      create: true,
    });
    try {
      const reasons: string[] = [];
      c.on('left', () => {
        throw new Error('application bug');
      });
      c.on('left', (reason) => reasons.push(reason));
      await c.leave();
      expect(reasons).toHaveLength(1);
      expect(c.listenerErrors).toBe(1);
    } finally {
      await c.close();
    }
  });
});
