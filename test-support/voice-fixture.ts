import { createSocket, type Socket } from 'node:dgram';
import { afterEach, beforeAll, beforeEach } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import type { ConfigInput } from '../cluster/src/index.js';
import type { VoiceClient, VoiceClientOptions } from '../client/src/index.js';
import { channelOf, connectBot } from './bots.js';
import { startTestServer, type TestServer } from './server.js';

/**
 * The one way the voice tests stand up "a server and N voice bots in a channel": one Opus factory
 * per file, a fresh real server per test, and everything a test opened closed after it (last
 * opened, first closed), then the server. Call it once at the top of a test file: it registers the
 * vitest hooks.
 */
export interface VoiceFixture {
  readonly opus: OpusFactory;
  /** The current test's server. */
  readonly srv: TestServer;
  /** Closes `close` after the test, before the server stops. */
  defer(close: () => unknown): void;
  /** A VoiceClient bot (test-support/bots.ts connectBot) on this test's server, closed after it. */
  bot(nickname: string, extra?: Partial<VoiceClientOptions>): Promise<VoiceClient>;
  /** Bots in one channel `name` (the first creates it), all with their voice path up. */
  channel(name: string, nicknames: string[], extra?: Partial<VoiceClientOptions>): Promise<VoiceClient[]>;
  /** A UDP socket bound on 127.0.0.1 (a raw member, an attacker), closed after the test. */
  udp(): Promise<Socket>;
  /**
   * Replaces this test's server with one started with `overrides` (before any bot: what the test
   * opened so far is closed first).
   */
  restart(overrides: ConfigInput): Promise<TestServer>;
}

export function voiceFixture(): VoiceFixture {
  let opus: OpusFactory | null = null;
  let srv: TestServer | null = null;
  const closers: (() => unknown)[] = [];
  beforeAll(async () => {
    opus = await createOpus();
  });
  beforeEach(async () => {
    srv = await startTestServer();
  });
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) await c();
  };
  afterEach(async () => {
    await closeAll();
    await srv?.stop();
    srv = null;
  });
  const f: VoiceFixture = {
    get opus(): OpusFactory {
      if (!opus) throw new Error('voiceFixture: no Opus factory outside a test');
      return opus;
    },
    get srv(): TestServer {
      if (!srv) throw new Error('voiceFixture: no server outside a test');
      return srv;
    },
    defer: (close) => void closers.push(close),
    bot: async (nickname, extra = {}) => {
      const c = await connectBot(f.srv.url, nickname, f.opus, extra);
      closers.push(() => c.close());
      return c;
    },
    channel: (name, nicknames, extra = {}) =>
      channelOf((_, nickname, more) => f.bot(nickname, more), name, nicknames, extra),
    udp: async () => {
      const s = createSocket('udp4');
      closers.push(() => new Promise<void>((r) => s.close(() => r())));
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      return s;
    },
    restart: async (overrides) => {
      await closeAll();
      await srv?.stop();
      srv = null;
      srv = await startTestServer(overrides);
      return srv;
    },
  };
  return f;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
