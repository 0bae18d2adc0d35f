import { afterEach, beforeAll, beforeEach } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import type { VoiceClient, VoiceClientOptions } from '../client/src/index.js';
import { connectBot } from './bots.js';
import { startTestServer, type TestServer } from './server.js';

/**
 * The fixture of the client's voice tests: one Opus factory per file, a fresh real server per
 * test, and everything a test opened closed after it (last opened, first closed), then the server.
 * Call it once at the top of a test file: it registers the vitest hooks.
 */
export interface VoiceFixture {
  readonly opus: OpusFactory;
  /** The current test's server. */
  readonly srv: TestServer;
  /** Closes `close` after the test, before the server stops. */
  defer(close: () => unknown): void;
  /** A VoiceClient bot (test-support/bots.ts connectBot) on this test's server, closed after it. */
  bot(nickname: string, extra?: Partial<VoiceClientOptions>): Promise<VoiceClient>;
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
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
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
  };
  return f;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
