import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { toneDbfs } from '@voice/media';
import { ToneSource, type RecordingSnapshot } from '../src/index.js';
import { sleep, voiceFixture } from '../../test-support/voice-fixture.js';

/**
 * Signaling drops (network loss). The resume itself (same channel, voice heard again, controls work)
 * is a voice scenario in cluster/test/scenarios/voice-scenarios.ts, run on one server and on a cluster.
 */

const fx = voiceFixture();

/**
 * Each 20 ms window of `rec` (frame aligned: a recording restarts at a frame) holds the tone at
 * `hz` (-20 dBFS): above -35 dBFS. Opus's concealment of a frame or two of the tone stays within
 * 11 dB of it (measured -30 to -31 dBFS); a session ended before the next one plays leaves silent
 * or faded-in frames (measured -39 to -91 dBFS). `ref` is a witness that heard the same mix in the
 * same process and was not disturbed: a stall of this machine (the suite runs beside the test)
 * silences it too, so a silent frame it shares is not counted; it must have heard over 90 % of
 * its frames, so its silences cannot excuse everything.
 */
function expectNoGap(what: string, rec: RecordingSnapshot, ref: RecordingSnapshot, hz: number): void {
  const win = 20 * 48;
  const gaps: string[] = [];
  const shared: string[] = [];
  let concealed = 0;
  for (let at = 0; at + win <= rec.samples.length; at += win) {
    const db = toneDbfs(rec.samples, hz, 48_000, at, win);
    if (db > -35) {
      if (db < -26) concealed++;
      continue;
    }
    const t = rec.startTime + at / 48;
    const where = `${(at / 48).toFixed(0)} ms: ${db.toFixed(1)} dBFS`;
    // The witness's frames have another phase: any of its 10 ms within 20 ms either side.
    const witnessSilent = [-20, -10, 0, 10, 20, 30].some((o) => {
      const i = Math.round((t + o - ref.startTime) * 48);
      return i >= 0 && i + 480 <= ref.samples.length && toneDbfs(ref.samples, hz, 48_000, i, 480) < -35;
    });
    (witnessSilent ? shared : gaps).push(where);
  }
  let heard = 0;
  let windows = 0;
  for (let at = 0; at + win <= ref.samples.length; at += win, windows++)
    if (toneDbfs(ref.samples, hz, 48_000, at, win) > -35) heard++;
  console.log(
    `${what}: ${concealed} frames 6-15 dB under the tone, ${gaps.length} gaps, ` +
      `${shared.length} silent frames the witness shared (${heard} of ${windows} frames heard)`,
  );
  expect(heard / windows, 'frames the witness heard').toBeGreaterThan(0.9);
  expect(gaps, `${what}: frames without the tone`).toEqual([]);
}

describe('VoiceClient resumes when signaling drops', () => {
  it('comes back after the server closed it for not reading (4004), but not after a logout (4000)', async () => {
    const c = await fx.bot('slowpoke', { channel: 'Slow', create: true });
    await c.waitReady(3000);
    const channelId = c.channel!.id;
    const events: string[] = [];
    c.on('reconnecting', () => events.push('reconnecting'));
    c.on('disconnected', () => events.push('disconnected'));
    // What the server does when this client's unread frames reach the limit (cluster edges test).
    const resumed = once(c, 'resumed') as Promise<[boolean]>;
    fx.srv.sessions.byUser(c.user.id)!.conn!.close(4004, 'too slow: messages not read');
    expect((await resumed)[0]).toBe(true);
    expect(events).toEqual(['reconnecting']);
    await c.waitReady(3000);
    expect(c.channel?.id).toBe(channelId);
    // Any other code of ours stays final.
    const gone = once(c, 'disconnected');
    fx.srv.sessions.byUser(c.user.id)!.conn!.close(4000, 'logged out');
    await gone;
    expect(c.isClosed).toBe(true);
    expect(events).toEqual(['reconnecting', 'disconnected']);
  });

  it('with resume off, a drop closes the client as before', async () => {
    const c = await fx.bot('noresume', { channel: 'Off', create: true, resume: false });
    const gone = once(c, 'disconnected');
    c.signaling.terminate();
    await gone;
    expect(c.isClosed).toBe(true);
  });

  it('a resume, then joining the same channel again, plays on without a gap', async () => {
    const speaker = await fx.bot('steady', { channel: 'Steady', create: true });
    const listener = await fx.bot('ear', { channel: 'Steady' });
    // Hears the same mix in the same process, and is not resumed: a stall of this machine (the
    // suite runs beside this test) silences it too, so a gap it shares is not the rejoin's.
    const witness = await fx.bot('witness', { channel: 'Steady' });
    await Promise.all([speaker, listener, witness].map((b) => b.waitReady(3000)));
    speaker.startVoice(new ToneSource(440, -20));
    await sleep(1500); // the jitter buffers have settled on the tone
    const channelId = listener.channel!.id;
    const voiceBefore = listener.voice!;
    listener.clearRecording();
    witness.clearRecording();
    // A client that joins its channel again as soon as it resumed (what the desktop app did).
    let rejoined: ReturnType<typeof listener.join> | null = null;
    listener.once('resumed', () => {
      rejoined = listener.join(channelId);
    });
    const resumed = once(listener, 'resumed');
    await sleep(200);
    listener.signaling.terminate();
    await resumed;
    const join = await rejoined!;
    expect(join.channel.id).toBe(channelId);
    expect(join.members.map((m) => m.userId).sort()).toEqual(
      [speaker.user.id, listener.user.id, witness.user.id].sort(),
    );
    await listener.waitReady(3000);
    expect(listener.voice).not.toBe(voiceBefore);
    await sleep(800);
    expect(voiceBefore.isClosed).toBe(true); // the handovers are over
    // From before the drop to well after the join. Both rebindings (the resume's, the join's) void
    // the old binding at the server at once: the old session conceals a frame or two meanwhile.
    expect(listener.recording().samples.length).toBeGreaterThan(48 * 900);
    expectNoGap('resume and rejoin', listener.recording(), witness.recording(), 440);
  });

  it('a resume over a signaling path of 20 ms each way plays on without a gap', async () => {
    // The server voids the old binding when it issues the resume's; the old session then plays
    // only what it holds while the welcome travels and the new binding says HELLO. Asking for the
    // channel list before opening the new session cost a round trip more: 1-2 silent frames at
    // 20 ms each way (3 at 30 ms), none since.
    const slow = await slowProxy(fx.srv.httpPort, 20);
    fx.defer(() => slow.close());
    const speaker = await fx.bot('steady', { channel: 'Far', create: true });
    // Signaling (and REST) through the slow path; voice goes straight to the server's UDP port.
    const listener = await fx.bot('far-ear', { channel: 'Far', server: slow.url });
    const witness = await fx.bot('witness', { channel: 'Far' });
    await Promise.all([speaker, listener, witness].map((b) => b.waitReady(3000)));
    speaker.startVoice(new ToneSource(440, -20));
    await sleep(1500);
    const voiceBefore = listener.voice!;
    listener.clearRecording();
    witness.clearRecording();
    const resumed = once(listener, 'resumed') as Promise<[boolean]>;
    await sleep(200);
    listener.signaling.terminate();
    expect((await resumed)[0]).toBe(true);
    await sleep(1000);
    expect(voiceBefore.isClosed).toBe(true);
    expectNoGap('resume over 20 ms signaling', listener.recording(), witness.recording(), 440);
  });
});

/** A TCP proxy to `port` on 127.0.0.1 that delays every chunk by `oneWayMs`, both ways, in order. */
async function slowProxy(port: number, oneWayMs: number): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ port, host: '127.0.0.1' });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (d: Buffer) => void setTimeout(() => to.destroyed || to.write(d), oneWayMs));
      from.on('close', () => {
        sockets.delete(from);
        setTimeout(end, oneWayMs);
      });
      from.on('error', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
