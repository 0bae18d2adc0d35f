import { createConnection, createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, sineInt16, type OpusFactory } from '@voice/media';
import { asUserId } from '@voice/protocol';
import {
  AudioEngine,
  FileBackend,
  ToneSource,
  VoiceClient,
  type AudioBackend,
  type FileOutput,
  type OpenOptions,
} from '../src/index.js';
import { DesktopController } from '../src/desktop/controller.js';
import type { DesktopEvent, DesktopEventOf } from '../src/desktop/messages.js';
import { medianToneDbfs } from '../../test-support/audio.js';
import { LossyRelay } from '../../test-support/lossy-relay.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * The connection figures the desktop UI shows (the `stats` event) against a network whose loss and
 * jitter the test makes: the extension's UDP goes through a lossy relay in front of a real server.
 */

let opus: OpusFactory;
let srv: TestServer;
const closers: (() => Promise<unknown>)[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  opus = await createOpus();
  srv = await startTestServer();
}, 30_000);

afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  await srv?.stop();
}, 30_000);

type Ext = Awaited<ReturnType<typeof extension>>;

/**
 * A TCP proxy in front of the server that, once `hold()` is called, forwards nothing more that
 * clients send (their connections stay open, their requests unanswered), and says which held
 * connections carried a request for `path` and whether the client has closed them since.
 */
async function holdingProxy(port: number) {
  const held: { socket: Socket; data: string }[] = [];
  let holding = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ port, host: '127.0.0.1' });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    let mine: { socket: Socket; data: string } | null = null;
    client.on('data', (d: Buffer) => {
      if (!holding) return void upstream.write(d);
      if (!mine) held.push((mine = { socket: client, data: '' }));
      mine.data += d.toString('latin1');
    });
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return {
    url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`,
    hold: () => void (holding = true),
    /** Held connections that carried a request for `path`: true for each the client has closed. */
    requests: (path: string) =>
      held.filter((h) => h.data.includes(` ${path} HTTP/1.1`)).map((h) => h.socket.destroyed),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** File audio that keeps its latest output stream: what the app gave the speaker. */
class SpeakerFileBackend extends FileBackend {
  speaker: FileOutput | null = null;
  override openOutput(options?: OpenOptions): FileOutput {
    this.speaker = super.openOutput(options);
    return this.speaker;
  }
}

/** An extension's controller on file audio (a steady tone in), talking through `relay` if given. */
async function extension(relay: LossyRelay | null, nickname: string) {
  const backend = new SpeakerFileBackend({ input: sineInt16(48_000 * 2, 1000, -20), maxOutputSeconds: 30 });
  const engine = new AudioEngine({ backend, transmit: 'always' });
  const events: DesktopEvent[] = [];
  const replies = new Map<number, DesktopEventOf<'reply'>>();
  const controller = new DesktopController({
    engine,
    send: (e) => (e.ev === 'reply' ? replies.set(e.re, e) : events.push(e)),
    voice: {
      ...(relay ? { udpTarget: { host: relay.host, port: relay.port } } : {}),
      heartbeatMs: 1000,
    },
  });
  closers.push(
    () => engine.close(),
    () => controller.close(),
  );
  let id = 0;
  const cmd = async (c: Record<string, unknown>): Promise<DesktopEventOf<'reply'>> => {
    const re = ++id;
    await controller.handle({ ...c, id: re });
    const r = replies.get(re)!;
    if (!r.ok) throw new Error(`${String(c.cmd)}: ${r.error?.code} ${r.error?.message}`);
    return r;
  };
  await cmd({ cmd: 'settings', settings: { transmit: 'always' } });
  await cmd({ cmd: 'connect', server: srv.url, nickname });
  const stats = (): DesktopEventOf<'stats'>[] =>
    events.filter((e): e is DesktopEventOf<'stats'> => e.ev === 'stats');
  return { cmd, stats, controller, events, backend };
}

describe('desktop controller against a real server', () => {
  it('show the loss of what we send, the jitter of what we hear, and the round trip, as the network makes them', async () => {
    // 20 % of our packets lost on the way up; 0-40 ms of random delay on the way down.
    const relay = await LossyRelay.start({
      target: { host: '127.0.0.1', port: srv.udpPort },
      clientToServer: { loss: 0.2 },
      serverToClient: { jitterMs: 40 },
      seed: 7,
    });
    closers.push(() => relay.close());
    const ext = await extension(relay, 'alice');
    const created = await ext.cmd({ cmd: 'channel.create', name: 'Lossy', frameMs: 10 });
    const channelId = (created.data as { channelId: string }).channelId;
    await ext.cmd({ cmd: 'join', channelId });
    // Someone speaking, so there is something to hear (and its jitter to measure).
    const bob = await VoiceClient.connect({ server: srv.url, nickname: 'bob', opus, channel: 'Lossy' });
    closers.push(() => bob.close());
    bob.startVoice(new ToneSource(440, -20));
    await sleep(6000);

    const last = ext.stats().slice(-4);
    expect(last).toHaveLength(4);
    for (const s of last) {
      expect(s.transport).toBe('udp');
      expect(s.pingMs).not.toBeNull();
      expect(s.pingMs!).toBeGreaterThan(0);
      expect(s.pingMs!).toBeLessThan(200);
    }
    // Each figure is the last heartbeat interval (1 s, 100 packets of 10 ms): over four of them,
    // 20 % with a binomial spread of 2 % (the bounds are 4 of it).
    const losses = last.map((s) => s.lossPercent!);
    const mean = losses.reduce((a, b) => a + b, 0) / losses.length;
    console.log(
      `loss ${losses.map((l) => l.toFixed(1)).join(' ')} %, relay ${JSON.stringify(relay.stats())}`,
    );
    expect(mean).toBeGreaterThan(12);
    expect(mean).toBeLessThan(28);
    // Uniform 0-40 ms of delay: an interarrival jitter well above loopback's fraction of a millisecond.
    const jitter = last.at(-1)!.jitterMs!;
    console.log(`jitter ${jitter.toFixed(1)} ms, ping ${last.at(-1)!.pingMs!.toFixed(1)} ms`);
    expect(jitter).toBeGreaterThan(4);
    expect(jitter).toBeLessThan(40);
  }, 30_000);

  it('plays the speakers it receives as separate streams (it asks for 4): each tone at level, no server mix', async () => {
    const ext = await extension(null, 'streamer');
    const created = await ext.cmd({ cmd: 'channel.create', name: 'Streams', frameMs: 20 });
    const channelId = (created.data as { channelId: string }).channelId;
    await ext.cmd({ cmd: 'join', channelId });
    const bots = await Promise.all(
      ['s-bob', 's-carol'].map((nickname) =>
        VoiceClient.connect({ server: srv.url, nickname, opus, channel: 'Streams', streams: 4 }),
      ),
    );
    closers.push(...bots.map((b) => () => b.close()));
    bots.forEach((b, i) => b.startVoice(new ToneSource([440, 660][i]!, -20)));
    await sleep(2500);
    // The speaker's output (the file backend records what the sound card was given): both tones.
    const played = ext.backend.speaker!.recording();
    for (const hz of [440, 660]) {
      const db = medianToneDbfs(played, hz, 1000);
      expect(db, `${hz} Hz through the speaker`).toBeGreaterThan(-23);
      expect(db).toBeLessThan(-17);
    }
    // They came as STREAM packets: nobody in the channel needs a mix, so none was encoded.
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const value = (name: string): number =>
      Number(new RegExp(`^${name}\\{channel="${channelId}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    expect(value('voice_channel_streamed')).toBeGreaterThan(100);
    expect(value('voice_channel_encodes')).toBe(0);
  }, 30_000);

  it('signing out, or closing the app, ends the session on the server at once: the seat and the nickname are free', async () => {
    // Without a logout the session would hold both for the grace period (20 s).
    const seat = async (nickname: string, channel: string, leave: (ext: Ext) => Promise<unknown>) => {
      const ext = await extension(null, nickname);
      const created = await ext.cmd({ cmd: 'channel.create', name: channel, userLimit: 1 });
      await ext.cmd({ cmd: 'join', channelId: (created.data as { channelId: string }).channelId });
      await leave(ext);
      const other = await VoiceClient.connect({ server: srv.url, nickname, opus, channel });
      closers.push(() => other.close());
    };
    await seat('carol', 'Seat', (ext) => ext.cmd({ cmd: 'disconnect' }));
    await seat('dora', 'Seat2', (ext) => ext.controller.close());
  }, 20_000);

  it('a logout the server does not answer is abandoned in time: close() returns and the request is aborted', async () => {
    const proxy = await holdingProxy(srv.httpPort);
    closers.push(() => proxy.close());
    const engine = new AudioEngine({ backend: new FileBackend({ maxOutputSeconds: 5 }) });
    const replies: DesktopEventOf<'reply'>[] = [];
    const controller = new DesktopController({
      engine,
      send: (e) => void (e.ev === 'reply' && replies.push(e)),
    });
    closers.push(() => engine.close());
    await controller.handle({ cmd: 'connect', id: 1, server: proxy.url, nickname: 'erin' });
    expect(replies[0]?.ok).toBe(true);
    proxy.hold();
    const t0 = performance.now();
    await controller.close();
    const took = performance.now() - t0;
    // The signaling close waits up to 1 s for the server's answer, then the logout up to LOGOUT_TIMEOUT_MS (1.5 s).
    expect(took).toBeLessThan(1000 + 1500 + 500);
    expect(proxy.requests('/api/v1/logout')).toHaveLength(1);
    // The abandoned request does not hold its connection (and a socket of the extension) open.
    await expect.poll(() => proxy.requests('/api/v1/logout'), { timeout: 500 }).toEqual([true]);
  }, 20_000);

  it('after a resume the extension shows the members again without joining again (a rekey would void the binding the audio just moved to)', async () => {
    const engine = new AudioEngine({
      backend: new FileBackend({ input: sineInt16(48_000 * 2, 1000, -20), maxOutputSeconds: 30 }),
      transmit: 'always',
    });
    const events: DesktopEvent[] = [];
    const replies = new Map<number, DesktopEventOf<'reply'>>();
    let bindingAtResume: unknown = null;
    let wasReconnecting = false;
    const controller = new DesktopController({
      engine,
      send: (e) => {
        if (e.ev === 'reply') return void replies.set(e.re, e);
        events.push(e);
        if (e.ev !== 'state') return;
        if (e.connection === 'reconnecting') wasReconnecting = true;
        // The state goes back to connected as the client says it resumed, before anything else
        // is asked of the server: the binding the resume issued.
        if (e.connection === 'connected' && wasReconnecting && bindingAtResume === null)
          bindingAtResume = srv.sessions.byUser(asUserId(e.userId!))?.voice ?? null;
      },
    });
    closers.push(
      () => engine.close(),
      () => controller.close(),
    );
    let id = 0;
    const cmd = async (c: Record<string, unknown>): Promise<DesktopEventOf<'reply'>> => {
      await controller.handle({ ...c, id: ++id });
      const r = replies.get(id)!;
      if (!r.ok) throw new Error(`${String(c.cmd)}: ${r.error?.code} ${r.error?.message}`);
      return r;
    };
    const me = asUserId(
      ((await cmd({ cmd: 'connect', server: srv.url, nickname: 'fay' })).data as { userId: string }).userId,
    );
    const created = await cmd({ cmd: 'channel.create', name: 'Resumed' });
    await cmd({ cmd: 'join', channelId: (created.data as { channelId: string }).channelId });
    const gus = await VoiceClient.connect({ server: srv.url, nickname: 'gus', opus, channel: 'Resumed' });
    closers.push(() => gus.close());
    await expect
      .poll(() => events.findLast((e): e is DesktopEventOf<'members'> => e.ev === 'members')?.members.length)
      .toBe(2);
    const membersBefore = events.length;
    // What the server does to a client that does not read (a stalled network): the client resumes.
    srv.sessions.byUser(me)!.conn!.close(4004, 'too slow: messages not read');
    await expect.poll(() => bindingAtResume).not.toBeNull();
    // The member list comes back for the UI...
    await expect
      .poll(() =>
        events
          .slice(membersBefore)
          .findLast((e): e is DesktopEventOf<'members'> => e.ev === 'members' && e.members.length > 0)
          ?.members.map((m) => m.nickname)
          .sort(),
      )
      .toEqual(['fay', 'gus']);
    await sleep(500);
    // ...and the server still has the resume's binding: nobody asked for another.
    expect(srv.sessions.byUser(me)?.voice).toBe(bindingAtResume);
  }, 20_000);

  it('settings that keep the devices do not reopen them, even sent at once; another device does', async () => {
    const inner = new FileBackend({ maxOutputSeconds: 5 });
    const opened: string[] = [];
    const backend: AudioBackend = {
      name: 'counting',
      listDevices: () => inner.listDevices(),
      openInput: (o) => (opened.push(`in ${o?.deviceId}`), inner.openInput(o)),
      openOutput: (o) => (opened.push(`out ${o?.deviceId}`), inner.openOutput(o)),
    };
    const engine = new AudioEngine({ backend });
    const controller = new DesktopController({ engine, send: () => undefined });
    closers.push(
      () => engine.close(),
      () => controller.close(),
    );
    let id = 0;
    // What the UI sends: its whole audio settings, on every change.
    const settings = (patch: Record<string, number>) =>
      controller.handle({
        cmd: 'settings',
        id: ++id,
        settings: { inputDeviceId: -1, outputDeviceId: -1, inputGainDb: 0, ...patch },
      });
    // Two at once before any device runs (the UI's first settings, and a slider moved): one open each.
    await Promise.all([settings({}), settings({ inputGainDb: 1 })]);
    expect(opened).toEqual(['in undefined', 'out undefined']);
    await Promise.all([settings({ inputGainDb: 3 }), settings({ inputGainDb: 6 })]);
    expect(opened).toHaveLength(2);
    expect(engine.gain.gainDb).toBe(6);
    // Two at once asking for the same other device: it opens once.
    await Promise.all([settings({ inputDeviceId: 0, inputGainDb: 6 }), settings({ inputDeviceId: 0 })]);
    expect(opened).toEqual(['in undefined', 'out undefined', 'in 0']);
    expect(engine.inputFormat).not.toBeNull();
    expect(engine.outputFormat).not.toBeNull();
  });
});
