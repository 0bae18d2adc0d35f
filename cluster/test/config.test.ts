import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/index.js';
import { loadUws } from '../src/uws.js';

describe('configuration', () => {
  it('has working defaults: loopback, embedded store, no Redis', () => {
    const c = loadConfig({ env: {} });
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 7800,
      udpPort: 7801,
      dataDir: './data',
      graceMs: 20_000,
    });
    expect(c.redisUrl).toBeUndefined();
    expect(c.limits.messagesPerSecond).toBe(20);
  });

  it('layers file, then environment, then overrides', () => {
    const dir = mkdtempSync(join(tmpdir(), 'voice-cfg-'));
    const file = join(dir, 'voice.json');
    writeFileSync(file, JSON.stringify({ port: 9000, udpPort: 9001, limits: { loginBurst: 3 } }));
    const c = loadConfig({ file, env: { VOICE_PORT: '9100' }, overrides: { graceMs: 5 } });
    expect(c).toMatchObject({ port: 9100, udpPort: 9001, graceMs: 5 });
    expect(c.limits).toMatchObject({ loginBurst: 3, messageBurst: 60 });
  });

  it('says which setting is wrong and where it came from', () => {
    expect(() => loadConfig({ env: { VOICE_PORT: 'abc' } })).toThrow(/VOICE_PORT="abc" is not a number/);
    expect(() => loadConfig({ env: { VOICE_PORT: '70000' } })).toThrow(/port: .*65535.*VOICE_PORT/);
    expect(() => loadConfig({ env: { VOICE_ADMIN_TOKEN: 'short' } })).toThrow(
      /adminToken must be at least 16/,
    );
    const dir = mkdtempSync(join(tmpdir(), 'voice-cfg-'));
    const typo = join(dir, 'typo.json');
    writeFileSync(typo, JSON.stringify({ prot: 1 }));
    expect(() => loadConfig({ file: typo, env: {} })).toThrow(ConfigError);
    expect(() => loadConfig({ file: typo, env: {} })).toThrow(/prot/);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ nope');
    expect(() => loadConfig({ file: broken, env: {} })).toThrow(/not a JSON object/);
    expect(() => loadConfig({ file: join(dir, 'missing.json'), env: {} })).toThrow(/cannot read config file/);
  });

  it('bounds what one user may do: channel caps and rates, password back-off, user purge', () => {
    const c = loadConfig({ env: {} });
    expect(c.limits).toMatchObject({
      channelsPerUser: 10,
      channelCreatesPerMinute: 6,
      channelCreateBurst: 3,
    });
    expect(c.passwords).toEqual({
      concurrency: 2,
      queue: 16,
      freeFailuresPerUser: 3,
      freeFailuresPerChannel: 10,
      backoffBaseMs: 1_000,
      maxBackoffPerUserMs: 300_000,
      maxBackoffPerChannelMs: 60_000,
      maxTracked: 10_000,
    });
    expect(c.userPurge).toEqual({ intervalMs: 3_600_000, batch: 500, unconnectedAfterMs: 86_400_000 });
    // The shipped example spells out these sections with the same values.
    const example = loadConfig({
      file: join(import.meta.dirname, '../../deploy/single-node/voice.json'),
      env: {},
    });
    expect(example.passwords).toEqual(c.passwords);
    expect(example.userPurge).toEqual(c.userPurge);
    expect(example.limits).toEqual(c.limits);
    const custom = loadConfig({
      env: {},
      overrides: {
        passwords: { concurrency: 1 },
        userPurge: { intervalMs: 0 },
        limits: { channelsPerUser: 2 },
      },
    });
    expect(custom.passwords).toMatchObject({ concurrency: 1, queue: 16 });
    expect(custom.userPurge.intervalMs).toBe(0);
    expect(custom.limits).toMatchObject({ channelsPerUser: 2, maxChannels: 1_000 });
    for (const [bad, path] of [
      [{ passwords: { concurrency: 0 } }, /passwords\.concurrency/],
      [{ passwords: { queue: -1 } }, /passwords\.queue/],
      [{ passwords: { freeFailures: 3 } }, /freeFailures/], // unknown key: a typo fails loudly
      [{ limits: { channelsPerUser: 0 } }, /limits\.channelsPerUser/],
      [{ userPurge: { intervalMs: 10 } }, /userPurge\.intervalMs/],
      [{ userPurge: { batch: 0 } }, /userPurge\.batch/],
      [{ userPurge: { unconnectedAfterMs: 999 } }, /userPurge\.unconnectedAfterMs/],
    ] as const)
      expect(() => loadConfig({ env: {}, overrides: bad as never }), JSON.stringify(bad)).toThrow(path);
  });

  it('loads the native uWebSockets.js binary on this Node', () => {
    const warnings: string[] = [];
    const uws = loadUws({ allowFallback: false, warn: (m) => warnings.push(m) });
    expect(String(uws.App)).toContain('[native code]');
    expect(warnings).toEqual([]);
  });
});

describe('start-up', () => {
  it('refuses a port another server already holds (no silent SO_REUSEPORT sharing)', async () => {
    const { startTestServer } = await import('../../test-support/server.js');
    const a = await startTestServer();
    await expect(startTestServer({ port: a.httpPort })).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+/);
    await a.stop();
  });

  it("udpSend 'sendmmsg' refuses to start where the voice_udp addon is missing; 'auto' sends with dgram there", async () => {
    const { startTestServer } = await import('../../test-support/server.js');
    const refused = startTestServer({ udpSend: 'sendmmsg' }, undefined, { udpAddon: null });
    await expect(refused).rejects.toThrow(ConfigError);
    await expect(refused).rejects.toThrow(/voice_udp addon is not built/);
    const fallback = await startTestServer({ udpSend: 'auto' }, undefined, { udpAddon: null });
    expect(fallback.voice.udpEgress).toBe('dgram');
    await fallback.stop();
    // Here the addon is built (npm test provisions it): 'auto' and 'sendmmsg' both take it.
    for (const udpSend of ['auto', 'sendmmsg'] as const) {
      const batched = await startTestServer({ udpSend });
      expect(batched.voice.udpEgress).toBe('sendmmsg');
      await batched.stop();
    }
  });

  it('a failed start-up (UDP port taken) closes the store it opened', async () => {
    const { createSocket } = await import('node:dgram');
    const { readdirSync, readlinkSync } = await import('node:fs');
    const { startTestServer } = await import('../../test-support/server.js');
    const held = createSocket('udp4');
    await new Promise<void>((r) => held.bind(0, '127.0.0.1', () => r()));
    const dir = mkdtempSync(join(tmpdir(), 'voice-failed-start-'));
    const openDbFiles = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(join(dir, 'voice.db'));
        } catch {
          return false; // closed while we looked
        }
      }).length;
    try {
      await expect(startTestServer({ udpPort: held.address().port }, dir)).rejects.toThrow();
      expect(openDbFiles()).toBe(0);
      // The same directory serves at once: nothing from the failed attempt holds it.
      const ok = await startTestServer({}, dir);
      expect(openDbFiles()).toBeGreaterThan(0);
      await ok.stop();
      expect(openDbFiles()).toBe(0);
    } finally {
      held.close();
    }
  });

  it('takes voice.maxStreams (1-8, default 4) from the file or VOICE_MAX_STREAMS, the variable over the file', () => {
    expect(loadConfig({ env: {} }).voice.maxStreams).toBe(4);
    expect(loadConfig({ env: { VOICE_MAX_STREAMS: '1' } }).voice.maxStreams).toBe(1);
    const dir = mkdtempSync(join(tmpdir(), 'voice-cfg-'));
    const file = join(dir, 'voice.json');
    writeFileSync(file, JSON.stringify({ voice: { maxStreams: 6 } }));
    expect(loadConfig({ file, env: {} }).voice.maxStreams).toBe(6);
    expect(loadConfig({ file, env: { VOICE_MAX_STREAMS: '2' } }).voice.maxStreams).toBe(2);
    expect(() => loadConfig({ env: { VOICE_MAX_STREAMS: '9' } })).toThrow(
      /voice\.maxStreams: .*8.*VOICE_MAX_STREAMS/,
    );
    expect(() => loadConfig({ env: { VOICE_MAX_STREAMS: '2.5' } })).toThrow(/voice\.maxStreams/);
    writeFileSync(file, JSON.stringify({ voice: { maxStream: 2 } }));
    expect(() => loadConfig({ file, env: {} })).toThrow(ConfigError);
  });

  it('reads booleans from the environment strictly', () => {
    expect(loadConfig({ env: { VOICE_TRUST_PROXY: 'true' } }).trustProxy).toBe(true);
    expect(() => loadConfig({ env: { VOICE_TRUST_PROXY: 'yes' } })).toThrow(
      /VOICE_TRUST_PROXY="yes" is not true or false/,
    );
  });
});
