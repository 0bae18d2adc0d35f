import { describe, expect, it } from 'vitest';
import { resolveVoiceClientOptions, VoiceClient, ToneSource, type VoiceClientOptions } from '../src/index.js';

const base: VoiceClientOptions = { server: 'http://127.0.0.1:7800', nickname: 'bot1' };

describe('VoiceClient options', () => {
  it('fills defaults and derives the signaling URL', () => {
    const o = resolveVoiceClientOptions(base);
    expect(o).toMatchObject({
      wsUrl: 'ws://127.0.0.1:7800/ws',
      transport: 'udp',
      wsFallback: true,
      heartbeatMs: 5000,
      helloRetryMs: 1000,
      record: true,
      recordMaxSeconds: 60,
      sentLogMax: 6_000,
      // Mixes only unless asked (the desktop app and the bot CLI ask for 4).
      streams: 1,
    });
    expect(resolveVoiceClientOptions({ ...base, streams: 8 }).streams).toBe(8);
    expect(
      resolveVoiceClientOptions({ server: 'https://voice.example:8443/', token: 't'.repeat(43) }).wsUrl,
    ).toBe('wss://voice.example:8443/ws');
    const relayed = resolveVoiceClientOptions({
      ...base,
      udpTarget: { host: '127.0.0.1', port: 40000 },
      heartbeatMs: 500,
    });
    expect(relayed.udpTarget).toEqual({ host: '127.0.0.1', port: 40000 });
    expect(relayed.heartbeatMs).toBe(500);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['no server', { server: '' }, /server/],
    ['a server that is not a URL', { server: 'localhost:7800' }, /http/],
    ['a ws:// server', { server: 'ws://127.0.0.1:7800' }, /http/],
    ['neither nickname nor token', { nickname: undefined }, /nickname or a token/],
    ['a nickname too short', { nickname: 'a' }, /nickname/],
    ['a nickname with bad characters', { nickname: 'bot<1>' }, /nickname/],
    ['an empty token', { token: '' }, /token/],
    ['an unknown transport', { transport: 'tcp' }, /transport/],
    ['a timeStretch that is not a boolean', { timeStretch: 'yes' }, /timeStretch/],
    ['streams over 8', { streams: 9 }, /streams/],
    ['streams of 0', { streams: 0 }, /streams/],
    ['streams that are not an integer', { streams: 2.5 }, /streams/],
    ['a timingAdvance that is not a boolean', { timingAdvance: 1 }, /timingAdvance/],
    ['codec settings that are not an object', { voice: 10 }, /voice/],
    [
      'udpTarget with the ws transport',
      { transport: 'ws', udpTarget: { host: '127.0.0.1', port: 1 } },
      /udpTarget/,
    ],
    ['udpTarget without a port', { udpTarget: { host: '127.0.0.1' } }, /udpTarget.port/],
    ['udpTarget port out of range', { udpTarget: { host: '127.0.0.1', port: 70000 } }, /udpTarget.port/],
    ['udpTarget with an empty host', { udpTarget: { host: '', port: 1 } }, /udpTarget.host/],
    ['heartbeatMs too small', { heartbeatMs: 10 }, /heartbeatMs/],
    ['heartbeatMs not a number', { heartbeatMs: '500' }, /heartbeatMs/],
    ['helloRetryMs negative', { helloRetryMs: -1 }, /helloRetryMs/],
    ['create without a channel', { create: true }, /create/],
    ['an empty channel', { channel: '  ' }, /channel/],
    ['a source without a channel', { source: new ToneSource(440) }, /source/],
    ['a source that is not one', { channel: 'Lobby', source: {} }, /source/],
    ['recordMaxSeconds 0', { recordMaxSeconds: 0 }, /recordMaxSeconds/],
    ['recordMaxSeconds over a day', { recordMaxSeconds: 86_401 }, /recordMaxSeconds/],
    ['sentLogMax over 2^24', { sentLogMax: 2 ** 24 + 1 }, /sentLogMax/],
    ['drainConcealFrames fractional', { drainConcealFrames: 1.5 }, /drainConcealFrames/],
  ])('rejects %s with a TypeError', async (_what, patch, message) => {
    const opts: VoiceClientOptions = { ...base, ...patch };
    expect(() => resolveVoiceClientOptions(opts)).toThrow(TypeError);
    expect(() => resolveVoiceClientOptions(opts)).toThrow(message);
    // connect() refuses before touching the network (nothing listens on this port anyway).
    await expect(VoiceClient.connect(opts)).rejects.toThrow(TypeError);
  });

  it('rejects a non-object', () => {
    expect(() => resolveVoiceClientOptions(null as unknown as VoiceClientOptions)).toThrow(TypeError);
  });
});
