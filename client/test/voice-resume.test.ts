import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { toneDbfs } from '@voice/media';
import { ToneSource } from '../src/index.js';
import { sleep, voiceFixture } from '../../test-support/voice-fixture.js';

/**
 * Signaling drops (network loss). The resume itself (same channel, voice heard again, controls work)
 * is a voice scenario in cluster/test/scenarios/voice-scenarios.ts, run on one server and on a cluster.
 */

const fx = voiceFixture();

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
    // Each 20 ms window of what was played, from before the drop to well after the join (frame
    // aligned: the recording restarted at a frame), holds the tone (-20 dBFS). Both rebindings
    // (the resume's, the join's) void the old binding at the server at once, so the old session
    // conceals a frame or two until the new one has audio: Opus's concealment of the tone stays
    // within 11 dB of it (measured -30 to -31 dBFS). A session ended before the new one plays
    // leaves silent or faded-in frames (measured -39 to -91 dBFS).
    const rec = listener.recording();
    const ref = witness.recording();
    const win = 20 * 48;
    expect(rec.samples.length).toBeGreaterThan(48 * 900);
    const gaps: string[] = [];
    const shared: string[] = [];
    let concealed = 0;
    for (let at = 0; at + win <= rec.samples.length; at += win) {
      const db = toneDbfs(rec.samples, 440, 48_000, at, win);
      if (db > -35) {
        if (db < -26) concealed++;
        continue;
      }
      const t = rec.startTime + at / 48;
      const where = `${(at / 48).toFixed(0)} ms: ${db.toFixed(1)} dBFS`;
      // The witness's frames have another phase: any of its 10 ms within 20 ms either side.
      const witnessSilent = [-20, -10, 0, 10, 20, 30].some((o) => {
        const i = Math.round((t + o - ref.startTime) * 48);
        return i >= 0 && i + 480 <= ref.samples.length && toneDbfs(ref.samples, 440, 48_000, i, 480) < -35;
      });
      (witnessSilent ? shared : gaps).push(where);
    }
    // The witness itself heard the tone nearly throughout: its silences cannot excuse everything.
    let heard = 0;
    let windows = 0;
    for (let at = 0; at + win <= ref.samples.length; at += win, windows++)
      if (toneDbfs(ref.samples, 440, 48_000, at, win) > -35) heard++;
    console.log(
      `resume and rejoin: ${concealed} frames 6-15 dB under the tone, ${gaps.length} gaps, ` +
        `${shared.length} silent frames the witness shared (${heard} of ${windows} frames heard)`,
    );
    expect(heard / windows).toBeGreaterThan(0.9);
    expect(gaps, 'frames without the tone').toEqual([]);
  });
});
