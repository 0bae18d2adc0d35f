import { once } from 'node:events';
import { expect } from 'vitest';
import type { UserId } from '@voice/protocol';
import {
  ClickSource,
  ToneSource,
  type VoiceClient,
  type VoiceClientOptions,
} from '../../../client/src/index.js';
import { toneDbfs } from '@voice/media';
import { clickDelays, quantile } from '../../../test-support/audio.js';
import { steadyRun } from '../../../test-support/stalls.js';
import { LossyRelay } from '../../../test-support/lossy-relay.js';
import { expectHearsOthers, heard, listen } from '../../../test-support/bots.js';
import { streamedListener } from '../../../test-support/stream-listener.js';
import type { Topology } from './topology.js';
import { ADVANCE_WITHHELD_REASONS } from '../../src/voice/advance.js';

/**
 * The single-node voice scenarios as one list, run on every topology (topologies.test.ts): VoiceClient
 * bots over real UDP (or the WebSocket) on 127.0.0.1 with real Opus, asserting on the audio the bots
 * played (Goertzel levels), the events they received, and the servers' /metrics. A scenario's i-th bot
 * signals on `topology.url(i)`: in a cluster, members of one channel sit on different processes.
 * Nicknames and channel names are unique across the list: one server serves all of it.
 */
export interface ScenarioContext {
  readonly topology: Topology;
  /** A bot signaling on the entry point of client `i`, closed after the scenario. */
  bot(i: number, nickname: string, extra?: Partial<VoiceClientOptions>): Promise<VoiceClient>;
  /** Bots 0..n-1 in one channel (bot 0 creates it), all with their voice path up. */
  channelOf(name: string, nicknames: string[], extra?: Partial<VoiceClientOptions>): Promise<VoiceClient[]>;
}

export interface VoiceScenario {
  readonly name: string;
  readonly timeoutMs?: number;
  /** Times a failed run is repeated (vitest `retry`): only for a flake measured and named here. */
  readonly retry?: number;
  /**
   * A known bug, by the name of the topology it shows on ('single', 'cluster-2'): the scenario must
   * fail there (and the run says so when it passes, so the entry goes once the bug is fixed).
   */
  readonly failsOn?: Readonly<Record<string, string>>;
  run(s: ScenarioContext): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A process that does not mix `b`'s channel, where there is one (the client index to give `bot`). */
function awayFromOwner(t: Topology, b: VoiceClient): number {
  return (t.nodeOfUdpPort(b.binding!.udpPort) + 1) % t.nodeCount;
}

/** Every bot is bound to one process (the channel's one owner); returns its index. */
function oneOwner(t: Topology, bots: VoiceClient[]): number {
  const owners = new Set(bots.map((b) => t.nodeOfUdpPort(b.binding!.udpPort)));
  expect(owners.size, 'processes mixing the channel').toBe(1);
  return [...owners][0]!;
}

/** Resolves once every bot has seen a `speaking` event with `speaking` from each of the others. */
function speakingSeen(bots: VoiceClient[], speaking: boolean): Promise<unknown> {
  return Promise.all(
    bots.flatMap((listener) =>
      bots
        .filter((speaker) => speaker !== listener)
        .map((speaker) =>
          listener.signaling.waitFor(
            'speaking',
            (m) => m.userId === speaker.user.id && m.speaking === speaking,
            5000,
          ),
        ),
    ),
  );
}

const TONES = [440, 700, 1100] as const;

/**
 * The quietest 20 ms of `hz` in what `c` played (dBFS) and where it starts (ms into the recording).
 * A tone at -20 dBFS reads -20 to -22; Opus's concealment of a frame of it -22 to -31 (so that alone
 * is told by the playout's counts), a fresh decoder's first frames fade in over -33 to -26, a
 * silent frame reads far less.
 */
function quietest(c: VoiceClient, hz: number): { db: number; atMs: number } {
  const rec = c.recording().samples;
  const win = 960;
  let db = Infinity;
  let atMs = -1;
  for (let at = 0; at + win <= rec.length; at += win) {
    const d = toneDbfs(rec, hz, 48_000, at, win);
    if (d < db) [db, atMs] = [d, at / 48];
  }
  return { db, atMs };
}

export const voiceScenarios: readonly VoiceScenario[] = [
  {
    name: 'two bots hear each other at level, never themselves',
    async run({ channelOf, topology }) {
      const pair = await channelOf('Pair', ['pair-a', 'pair-b']);
      oneOwner(topology, pair);
      pair.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
      await listen(pair, 1000, 700);
      expectHearsOthers(pair, TONES.slice(0, 2));
      for (const b of pair) expect(b.stats().lost, 'server packets lost on loopback').toBe(0);
    },
  },
  {
    name: 'three speakers: each hears exactly the other two tones at their level (mix-minus)',
    async run({ channelOf, topology }) {
      const trio = await channelOf('Trio', ['tone-a', 'tone-b', 'tone-c']);
      oneOwner(topology, trio);
      trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
      await listen(trio, 1000, 700);
      expectHearsOthers(trio, TONES);
      for (const b of trio) expect(b.stats().lost).toBe(0);
    },
  },
  {
    name: 'speaking starts and stops reach every member',
    async run({ channelOf }) {
      const trio = await channelOf('Speaking', ['spk-a', 'spk-b', 'spk-c']);
      const started = speakingSeen(trio, true);
      trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
      await started;
      const stopped = speakingSeen(trio, false);
      for (const b of trio) b.stopVoice();
      await stopped;
    },
  },
  {
    name: 'member listings show who speaks and how, wherever the member and the lister signal',
    async run({ channelOf }) {
      const names = ['list-a', 'list-b', 'list-c'];
      const trio = await channelOf('Listed', names);
      // A listing follows the events within moments (on a cluster, once the member's signaling
      // process has written its record).
      const listing = async (b: VoiceClient) =>
        (await b.signaling.request('channel.members', { channelId: b.channel!.id })).members
          .map((m) => [m.nickname, m.transport, m.speaking])
          .sort();
      const listed = async (speaking: boolean): Promise<void> => {
        for (const [i, b] of trio.entries())
          await expect
            .poll(() => listing(b), { timeout: 1000, message: `bot ${i} lists` })
            .toEqual(names.map((n) => [n, 'udp', speaking]));
      };
      await listed(false);
      const started = speakingSeen(trio, true);
      trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
      await started;
      await listed(true);
      const stopped = speakingSeen(trio, false);
      for (const b of trio) b.stopVoice();
      await stopped;
      await listed(false);
    },
  },
  {
    name: 'per-listener volume: 0 silences one speaker for that listener only; 200 raises it by 6 dB',
    async run({ channelOf }) {
      // -26 dBFS sources: two at +6 dB still peak far below the limiter's knee (-6 dBFS).
      const [a, b, c] = await channelOf('Volume', ['vol-a', 'vol-b', 'vol-c']);
      const trio = [a!, b!, c!];
      trio.forEach((x, i) => x.startVoice(new ToneSource(TONES[i]!, -26)));
      const [, B, C] = TONES;
      await listen(trio, 1000, 700);
      const baseAB = heard(a!, B);
      const baseCB = heard(c!, B);
      expect(baseAB).toBeGreaterThan(-29);
      expect(baseAB).toBeLessThan(-23);

      await a!.setVolume(b!.user.id, 0);
      await listen(trio);
      expect(heard(a!, B), 'a hears b at volume 0').toBeLessThan(baseAB - 30);
      expect(heard(a!, C), 'a still hears c').toBeGreaterThan(-29);
      expect(heard(c!, B), 'c still hears b').toBeGreaterThan(baseCB - 3);

      await a!.setVolume(b!.user.id, 200);
      await listen(trio);
      const boostA = heard(a!, B) - baseAB;
      expect(boostA, 'a hears b 6 dB louder').toBeGreaterThan(3);
      expect(boostA, 'a hears b 6 dB louder').toBeLessThan(9);
      expect(heard(a!, C), 'c unchanged for a').toBeGreaterThan(-29);
      expect(heard(a!, C), 'c unchanged for a').toBeLessThan(-23);
      expect(Math.abs(heard(c!, B) - baseCB), 'c hears b unchanged').toBeLessThan(3);
    },
  },
  {
    name: 'server mute, deafen and self-mute do what they say',
    async run({ channelOf, topology }) {
      // The owner (client 0) and b (client 1) signal on different processes in a cluster.
      const [owner, b, c] = await channelOf('Moderated', ['owner', 'mod-b', 'mod-c']);
      const all = [owner!, b!, c!];
      all.forEach((x, i) => x.startVoice(new ToneSource(TONES[i]!, -20)));
      const [A, B, C] = TONES;
      await listen(all, 600, 500);
      expect(heard(c!, B, 600)).toBeGreaterThan(-23);
      const updated = (
        by: VoiceClient,
        who: UserId,
        field: 'serverMute' | 'selfMute' | 'selfDeaf',
        v: boolean,
      ) => by.signaling.waitFor('member.updated', (m) => m.member.userId === who && m.member[field] === v);
      const mutedDrops = () => topology.metric('voice_packets_dropped_total', { reason: 'muted' });

      // Server mute by the channel owner: nobody hears b, and everyone sees serverMute.
      const seen = updated(c!, b!.user.id, 'serverMute', true);
      const dropsBefore = await mutedDrops();
      await owner!.signaling.request('voice.serverMute', { userId: b!.user.id, muted: true });
      await seen;
      await listen(all, 800);
      expect(heard(owner!, B, 800), 'owner hears server-muted b').toBeLessThan(-50);
      expect(heard(c!, B, 800), 'c hears server-muted b').toBeLessThan(-50);
      expect(heard(c!, A, 800), 'c still hears the owner').toBeGreaterThan(-23);
      // b's client keeps sending (it was not asked to stop): the server drops its audio unread.
      expect(await mutedDrops()).toBeGreaterThan(dropsBefore + 20);
      const unmuted = updated(c!, b!.user.id, 'serverMute', false);
      await owner!.signaling.request('voice.serverMute', { userId: b!.user.id, muted: false });
      await unmuted;

      // Deafen: c receives no audio packets at all and is not heard (its client keeps sending).
      const deaf = updated(owner!, c!.user.id, 'selfDeaf', true);
      await c!.setSelfDeaf(true);
      await deaf;
      await sleep(300);
      const receivedDeaf = c!.stats().audioReceived;
      await listen(all, 800, 0);
      expect(c!.stats().audioReceived, 'audio packets sent to a deafened member').toBe(receivedDeaf);
      expect(c!.stats().audioSent).toBeGreaterThan(0);
      expect(heard(owner!, C, 800), 'owner hears deafened c').toBeLessThan(-50);
      expect(heard(b!, C, 800), 'b hears deafened c').toBeLessThan(-50);
      expect(heard(owner!, B, 800), 'owner hears b again').toBeGreaterThan(-23);
      await c!.setSelfDeaf(false);

      // Self-mute: b stops sending, is not heard, and the others see selfMute.
      const selfMuted = updated(owner!, b!.user.id, 'selfMute', true);
      await b!.setSelfMute(true);
      expect((await selfMuted).member.selfMute).toBe(true);
      await listen(all, 800);
      expect(heard(owner!, B, 800), 'owner hears self-muted b').toBeLessThan(-50);
      expect(heard(c!, B, 800), 'c hears self-muted b').toBeLessThan(-50);
      expect(heard(c!, A, 800), 'undeafened c hears the owner').toBeGreaterThan(-23);
      expect(c!.stats().audioReceived).toBeGreaterThan(receivedDeaf);
    },
  },
  {
    name: 'a server mute survives leave and re-join until the owner lifts it',
    async run({ channelOf }) {
      const [owner, loud] = await channelOf('Stage', ['stage-owner', 'loud-one']);
      owner!.startVoice(new ToneSource(440, -20));
      loud!.startVoice(new ToneSource(700, -20));
      await listen([owner!], 1000, 400);
      expect(heard(owner!, 700), 'owner hears the member before the mute').toBeGreaterThan(-23);

      const r = await owner!.signaling.request('voice.serverMute', { userId: loud!.user.id, muted: true });
      expect(r.member?.serverMute).toBe(true);
      const rejoined = owner!.signaling.waitFor(
        'member.joined',
        (m) => m.member.userId === loud!.user.id,
        5000,
      );
      await loud!.leave();
      const again = await loud!.join('Stage');
      expect(again.members.find((m) => m.userId === loud!.user.id)?.serverMute).toBe(true);
      expect((await rejoined).member.serverMute).toBe(true);
      await loud!.waitReady(3000);
      loud!.startVoice(new ToneSource(700, -20));
      await listen([owner!], 1000, 400);
      expect(heard(owner!, 700), 'owner hears the muted member after its re-join').toBeLessThan(-50);

      await owner!.signaling.request('voice.serverMute', { userId: loud!.user.id, muted: false });
      await loud!.leave();
      const unmuted = await loud!.join('Stage');
      expect(unmuted.members.find((m) => m.userId === loud!.user.id)?.serverMute).toBe(false);
      await loud!.waitReady(3000);
      loud!.startVoice(new ToneSource(700, -20));
      await listen([owner!], 1000, 400);
      expect(heard(owner!, 700), 'owner hears the member once unmuted').toBeGreaterThan(-23);
    },
  },
  {
    name: 'WebSocket voice and UDP voice hear each other (redirected to the owner in a cluster)',
    async run({ bot, topology }) {
      const udp = await bot(0, 'udp-bot', { channel: 'Mixed', create: true });
      await udp.waitReady(3000);
      const owner = topology.nodeOfUdpPort(udp.binding!.udpPort);
      // The WebSocket bot signals on a process that does not own the channel, where there is one.
      const entry = awayFromOwner(topology, udp);
      const shown = udp.signaling.waitFor(
        'member.updated',
        (m) => m.member.nickname === 'ws-bot' && m.member.transport === 'ws',
      );
      const redirectsBefore = await topology.metric('voice_ws_redirects_total');
      const ws = await bot(entry, 'ws-bot', { channel: 'Mixed', transport: 'ws' });
      const redirected: string[] = [];
      ws.on('redirected', (url) => redirected.push(url));
      await Promise.all([udp.waitReady(3000), ws.waitReady(3000)]);
      // Members see which transport each one uses (on the owner after a redirect).
      expect((await shown).member.userId).toBe(ws.user.id);
      if (entry !== owner) {
        await expect.poll(() => redirected, { timeout: 5000 }).toEqual([topology.nodeWsUrl(owner)]);
        expect(await topology.metric('voice_ws_redirects_total')).toBeGreaterThan(redirectsBefore);
      }
      udp.startVoice(new ToneSource(440, -20));
      ws.startVoice(new ToneSource(700, -20));
      await listen([udp, ws], 1000, 700);
      expect(udp.stats().transport).toBe('udp');
      expect(ws.stats().transport).toBe('ws');
      expect(ws.stats().session!.udp).toBeNull();
      expectHearsOthers([udp, ws], [440, 700]);
      // Nothing more was redirected: the WebSocket voice stays on the owner.
      expect(redirected.length).toBe(entry === owner ? 0 : 1);
    },
  },
  {
    name: 'a dropped signaling connection resumes: same channel, voice heard again, controls work',
    async run({ bot, topology }) {
      const listener = await bot(0, 'res-listener', { channel: 'Resume', create: true });
      await listener.waitReady(3000);
      // The speaker signals (and resumes) on a process that does not own the channel, where there is
      // one: its session comes back there and must reach the owner's mix again.
      const speaker = await bot(awayFromOwner(topology, listener), 'res-speaker', {
        channel: 'Resume',
        source: new ToneSource(440, -20),
      });
      await Promise.all([speaker.waitReady(3000), listener.waitReady(3000)]);
      await listen([listener], 1000, 500);
      expect(heard(listener, 440)).toBeGreaterThan(-23);
      const channelId = speaker.channel!.id;
      const oldSignaling = speaker.signaling;

      const events: string[] = [];
      speaker.on('reconnecting', () => events.push('reconnecting'));
      speaker.on('disconnected', () => events.push('disconnected'));
      const resumed = once(speaker, 'resumed') as Promise<[boolean]>;
      oldSignaling.terminate(); // the TCP connection drops without a close handshake
      const [restored] = await resumed;
      expect(restored).toBe(true);
      expect(events).toEqual(['reconnecting']);
      expect(speaker.isClosed).toBe(false);
      expect(speaker.signaling).not.toBe(oldSignaling);
      await speaker.waitReady(3000);
      expect(speaker.channel?.id).toBe(channelId);
      // Voice flows again: the listener hears the tone at its level after the resume.
      await listen([listener], 1000, 500);
      expect(heard(listener, 440)).toBeGreaterThan(-23);
      expect(heard(listener, 440)).toBeLessThan(-17);
      // And signaling works on the new connection.
      await speaker.setSelfMute(true);
      await listen([listener], 500, 500);
      expect(heard(listener, 440, 500)).toBeLessThan(-60);
    },
  },
  {
    name: 'joining the channel it is in rekeys (new binding, new session) and the others still hear it',
    async run({ bot, topology }) {
      const b = await bot(0, 'rekey-listener', { channel: 'Same', create: true });
      await b.waitReady(3000);
      // The rekeying member signals on a process that does not own the channel, where there is one.
      const a = await bot(awayFromOwner(topology, b), 'rekeyer', { channel: 'Same' });
      await a.waitReady(3000);
      a.startVoice(new ToneSource(440, -20));
      await sleep(800);
      const before = a.voice!;
      const oldKey = Buffer.from(a.binding!.key).toString('hex');
      const again = await a.join('Same');
      // A new binding (protocol README 8.4), adopted by a new session: a new cipher at sequence 0.
      expect(Buffer.from(again.voice.key).toString('hex')).not.toBe(oldKey);
      expect(again.voice.voiceId).not.toBe(before.binding.voiceId);
      expect(a.voice).not.toBe(before);
      // The old session sends until the new one is acknowledged (make-before-break), then closes.
      await expect.poll(() => before.isClosed, { timeout: 3000 }).toBe(true);
      expect(a.binding!.voiceId).toBe(again.voice.voiceId);
      expect(a.voice!.cipher.nextSequence).toBeLessThan(before.cipher.nextSequence);
      await a.waitReady(3000);
      // The source carries over and the server takes audio under the new key: the listener still hears it.
      await listen([b], 1000, 400);
      expect(heard(b, 440)).toBeGreaterThan(-23);
      expect(heard(b, 440)).toBeLessThan(-17);
      expect(a.stats().upstreamPacketsLost).toBe(0);
      const updated = a.signaling.waitFor('member.updated', (m) => m.member.selfMute);
      await a.setSelfMute(true);
      expect((await updated).member.userId).toBe(a.user.id);
      expect(a.stats().muted).toBe(true);
    },
  },
  {
    name: 'a rekey and a resume hand voice over without a gap, both ways (make-before-break)',
    timeoutMs: 60_000,
    // Measured 2026-12-02 (fresh 2-core machine, this test alone, 12 runs at each of two commits
    // without functional changes between them): b concealed 1-2 frames at 2-11 of about 95
    // switches, and where two in a row faded the tone below -26 dBFS the run failed (0-2 of 12
    // runs; once in CI). Not a timeline restart (none logged): the new binding's first frame
    // reaches b a frame late now and then. Retried until that gap is found and closed.
    retry: 1,
    async run({ bot, topology }) {
      // b speaks 700 Hz and hears a; a speaks 440 Hz, hears b, and rebinds (signaling away from the
      // owner, where there is one). What a hears is its downstream across the switch, what b hears
      // of a its upstream.
      const b = await bot(0, 'seam-b', {
        channel: 'Seamless',
        create: true,
        source: new ToneSource(700, -20),
      });
      await b.waitReady(3000);
      const a = await bot(awayFromOwner(topology, b), 'seam-a', {
        channel: 'Seamless',
        source: new ToneSource(440, -20),
      });
      await a.waitReady(3000);
      // Hears both in a mix and never rebinds: a stall of the machine (here, or in a server process
      // of the cluster) makes it conceal too, and then the switch is measured again.
      const w = await bot(0, 'seam-w', { channel: 'Seamless' });
      await w.waitReady(3000);
      await sleep(1000); // the jitter buffers have settled
      // Each kind twice: voided at once, a switch left the old session dry in about half of them.
      for (const how of ['rekey', 'resume', 'rekey', 'resume'] as const) {
        const before = a.binding!.voiceId;
        // A window in which this process stalled (bots and, on one server, the mixer) is measured
        // again with a new switch: see test-support/stalls.ts.
        const r = await steadyRun(
          async () => {
            const old = a.voice!;
            const concealed0 = {
              old: old.stats().playout.framesConcealed,
              b: b.stats().concealed,
              w: w.stats().concealed,
            };
            const bSession = b.voice!;
            a.clearRecording();
            b.clearRecording();
            await sleep(300);
            if (how === 'rekey') await a.join(a.channel!.id);
            else {
              const resumed = once(a, 'resumed') as Promise<[boolean]>;
              a.signaling.terminate();
              expect((await resumed)[0]).toBe(true);
            }
            await a.waitReady(3000);
            await sleep(700);
            expect(b.voice, 'b kept its session').toBe(bSession);
            return {
              down: quietest(a, 700),
              up: quietest(b, 440),
              // What the old session concealed while it was heard: it ran dry before the new one played.
              oldConcealed: old.stats().playout.framesConcealed - concealed0.old,
              bConcealed: b.stats().concealed - concealed0.b,
              wConcealed: w.stats().concealed - concealed0.w,
            };
          },
          { spoiled: (x) => x.wConcealed > 0 },
        );
        console.log(
          `${how}: quietest 20 ms a heard of b ${r.down.db.toFixed(1)} dBFS at ${r.down.atMs} ms, ` +
            `b of a ${r.up.db.toFixed(1)} dBFS at ${r.up.atMs} ms (switch at about 300 ms); concealed: ` +
            `a's old session ${r.oldConcealed}, b ${r.bConcealed}`,
        );
        expect(a.binding!.voiceId).not.toBe(before);
        // Downstream: the old binding carried b's voice to a's old session until the new one
        // played, so it never ran dry while heard (voided at once, it concealed 1-2 frames or went
        // silent for 20 ms in most switches). Upstream: the old binding carried a's voice until a's
        // sender moved, right after a frame, to a new encoder primed with that frame; the server
        // forwards the new binding's first frame right after the old one's last: b heard the tone
        // in every 20 ms within 6 dB of its level (measured -20.0 to -22.5 dBFS; an unprimed new
        // encoder's first frame read -23 to -35 there) and concealed nothing in most switches (one
        // or two frames in about one of eight on a loaded machine; voided at once, 1-2 in most).
        expect(r.oldConcealed, `${how}: frames a's old session concealed`).toBe(0);
        expect(r.bConcealed, `${how}: frames b concealed`).toBeLessThanOrEqual(2);
        expect(r.up.db, `${how}: b hears a throughout`).toBeGreaterThan(-26);
        expect(a.stats().upstreamPacketsLost).toBe(0);
      }
    },
  },
  {
    name: 'deleting a channel ends the voice of every member and its mixer, wherever they are',
    async run({ channelOf, topology }) {
      const [owner, member] = await channelOf('Doomed', ['doom-owner', 'doom-member']);
      const channel = { channel: owner!.channel!.id };
      // One process mixes it, for its two members.
      expect(await topology.samples('voice_channel_members', channel)).toEqual([2]);
      const left = [owner!, member!].map((c) => new Promise<string>((r) => c.once('left', r)));
      await owner!.signaling.request('channel.delete', { channelId: owner!.channel!.id });
      expect(await Promise.all(left)).toEqual(['deleted', 'deleted']);
      for (const c of [owner!, member!]) expect(c.binding).toBeNull();
      // The owning process stopped the channel's actor: no mixer figures for it anywhere.
      await expect.poll(() => topology.samples('voice_channel_members', channel)).toEqual([]);
    },
  },
  {
    name: 'leaving one channel and joining another moves who is heard',
    async run({ bot, channelOf }) {
      const [a, b] = await channelOf('Room-1', ['room-a', 'room-b']);
      const c = await bot(2, 'room-c', { channel: 'Room-2', create: true });
      await c.waitReady(3000);
      const [A, B, C] = TONES;
      a!.startVoice(new ToneSource(A, -20));
      b!.startVoice(new ToneSource(B, -20));
      c.startVoice(new ToneSource(C, -20));
      await listen([a!, b!, c], 1000, 700);
      expect(heard(a!, B), 'a hears b in room 1').toBeGreaterThan(-23);
      expect(heard(a!, C), 'a does not hear room 2').toBeLessThan(-50);
      expect(heard(c, B), 'c does not hear room 1').toBeLessThan(-50);

      const left = a!.signaling.waitFor('member.left', (m) => m.userId === b!.user.id, 5000);
      const joined = c.signaling.waitFor('member.joined', (m) => m.member.userId === b!.user.id, 5000);
      await b!.leave();
      expect((await left).reason).toBe('leave');
      await b!.join('Room-2');
      await joined;
      await b!.waitReady(3000);
      expect(b!.channel!.id).toBe(c.channel!.id);
      // The source carries over to the new channel's voice.
      await listen([a!, b!, c], 1000, 700);
      expect(heard(c, B), 'c hears b in room 2').toBeGreaterThan(-23);
      expect(heard(b!, C), 'b hears c in room 2').toBeGreaterThan(-23);
      expect(heard(b!, A), 'b no longer hears a').toBeLessThan(-50);
      expect(heard(a!, B), 'a no longer hears b').toBeLessThan(-50);
    },
  },
  {
    name: 'a tone survives 10% loss, reordering, duplicates and 30 ms jitter both ways',
    async run({ bot, topology }) {
      // A first member places the channel, so the relay can stand in front of its owner; it leaves
      // once the two bots behind the relay are in.
      const placer = await bot(0, 'lossy-placer', { channel: 'Lossy', create: true });
      const owner = topology.nodeOfUdpPort(placer.binding!.udpPort);
      const impair = { loss: 0.1, reorder: 0.1, duplicate: 0.1, jitterMs: 30 };
      const relay = await LossyRelay.start({
        target: { host: '127.0.0.1', port: topology.nodeUdpPort(owner) },
        clientToServer: impair,
        serverToClient: impair,
        seed: 4,
      });
      try {
        // No WebSocket fallback: three lost heartbeats in a row (0.1-0.2 loss per round trip) would
        // move voice off the impaired path this scenario is about.
        const behindRelay = {
          channel: 'Lossy',
          udpTarget: relay.address,
          wsFallback: false,
          // In-band FEC, so the server can rebuild lost packets (asserted below); RED off, else it
          // would rebuild them first once the heartbeats report the loss (red.test.ts tests RED).
          encoder: { fec: true },
          redundancy: 'off' as const,
        };
        const speaker = await bot(1, 'lossy-speaker', behindRelay);
        const listener = await bot(2, 'lossy-listener', behindRelay);
        await Promise.all([speaker.waitReady(3000), listener.waitReady(3000)]);
        await placer.leave();
        for (const b of [speaker, listener]) expect(b.binding!.udpPort).toBe(topology.nodeUdpPort(owner));
        speaker.startVoice(new ToneSource(440, -20));
        // Jitter buffers adapt over their 2 s delay window; then a second of audio is judged.
        await listen([listener], 1000, 2500);
        const level = heard(listener, 440);
        expect(level, 'tone level through the lossy path').toBeGreaterThan(-23);
        expect(level).toBeLessThan(-17);
        const r = relay.stats();
        for (const d of [r.clientToServer, r.serverToClient]) {
          expect(d.dropped).toBeGreaterThan(10);
          expect(d.duplicated).toBeGreaterThan(3);
          expect(d.reordered).toBeGreaterThan(3);
        }
        // The client counted loss and concealed it; duplicates were refused.
        const ls = listener.stats();
        expect(ls.transport).toBe('udp');
        expect(ls.lost).toBeGreaterThan(0);
        expect(ls.concealed).toBeGreaterThan(0);
        expect(ls.duplicates).toBeGreaterThan(0);
        expect(speaker.stats().upstreamPacketsLost).toBeGreaterThan(0);
        // The server counted and concealed the speaker's losses too. The bots send in-band FEC and
        // the server decodes with libopus: a lost packet followed by a buffered one is rebuilt from
        // that packet's FEC, not guessed.
        const channel = { channel: speaker.channel!.id };
        const concealed = await topology.metric('voice_channel_concealed', channel);
        const fecRecovered = await topology.metric('voice_channel_fec_recovered', channel);
        expect(concealed).toBeGreaterThan(0);
        expect(fecRecovered).toBeGreaterThan(0);
        expect(fecRecovered).toBeLessThanOrEqual(concealed);
        expect(await topology.metric('voice_packets_dropped_total', { reason: 'REPLAY' })).toBeGreaterThan(0);
        // Nothing crashed: the server still answers.
        const pong = await listener.signaling.request('ping', { ts: 42 });
        expect(pong.ts).toBe(42);
        expect(listener.isClosed).toBe(false);
      } finally {
        await relay.close();
      }
    },
  },
  {
    name: 'latency: every click from one bot is counted, and heard by another within the documented 45-65 ms mouth to ear',
    async run({ channelOf, topology }) {
      const [speaker, listener] = await channelOf('Latency', ['clicker', 'ear']);
      const periodMs = 500;
      const click = new ClickSource({ atMs: 600, periodMs });
      speaker!.startVoice(click);
      await sleep(5000);
      speaker!.stopVoice();
      // Every click sent at least 300 ms before the end must be heard: none may be skipped. The
      // listener records on (silence) for one more period, so a late click still falls in its window.
      const clicks = click.clickSamples(click.position - 48 * 300);
      expect(clicks.length).toBeGreaterThanOrEqual(8);
      await sleep(periodMs);
      const frameSamples = speaker!.binding!.frameMs * 48;
      const { delays, missed } = clickDelays(
        clicks,
        speaker!.sentLog,
        frameSamples,
        listener!.recording(),
        periodMs - 20,
      );
      // Every click is counted; one of nine may go unheard on an overloaded machine (seen once in
      // about twenty runs at a load average of 15 on 2 cores, never on a quiet one; not traced, most
      // likely a jitter buffer catching up after a stall, which drops stale frames). Two would be a
      // fault.
      expect(missed.length, `clicks not heard: ${missed.join(', ')}`).toBeLessThanOrEqual(1);
      const sorted = [...delays].sort((x, y) => x - y);
      const p50 = quantile(delays, 0.5);
      const channel = { channel: speaker!.channel!.id };
      // (The figures below are the channel's: its two members are there.)
      expect(await topology.samples('voice_channel_members', channel)).toEqual([2]);
      const holdP50 = await topology.metric('voice_channel_hold_p50_ms', channel);
      const holdP99 = await topology.metric('voice_channel_hold_p99_ms', channel);
      console.log(
        `latency (${topology.name}): end-to-end p50 ${p50.toFixed(1)} ms, ` +
          `all ${sorted.map((d) => d.toFixed(1)).join(' ')} ms; ` +
          `server-added p50 ${holdP50.toFixed(1)} ms, p99 ${holdP99.toFixed(1)} ms`,
      );
      // README and BENCHMARKS claim p50 45-65 ms mouth to ear (the 20 ms capture frame + server hold
      // of at most one frame + the listener's jitter buffer and playout tick). Measured p50
      // 42.1-64.5 ms over ten runs (2026-11-21 and 2026-11-30, then dated from the frame's
      // completion: 22.1-44.5), so 70 ms is the claim plus the spread seen above it.
      expect(sorted[0]).toBeGreaterThan(frameSamples / 48);
      expect(p50).toBeLessThan(70);
      // A click may meet a scheduling stall of a loaded machine (measured up to 124 ms on a quiet
      // one, over 300 ms with other tests beside it); three in four clicks are within the claim plus
      // one frame (a jitter buffer grown by one frame after a stall).
      expect(quantile(delays, 0.75)).toBeLessThan(90);
      // The server holds a frame until its next tick: at most one frame (20 ms), plus tick lateness.
      expect(holdP50).toBeLessThan(25);
    },
  },
  {
    name: 'channel codec update: the bitrate applies at once, the frame size when the channel next starts',
    async run({ channelOf, topology }) {
      const names = ['codec-a', 'codec-b', 'codec-c'];
      const trio = await channelOf('Codec', names);
      const owner = trio[0]!;
      const channelId = owner.channel!.id;
      expect(owner.binding!.frameMs).toBe(20);
      trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
      await sleep(700);
      /** Mean bytes per voice packet the servers sent over `ms` (32 of them header and tag). */
      const meanBytesOut = async (ms: number): Promise<number> => {
        const read = async () => [
          await topology.metric('voice_bytes_out_total'),
          await topology.metric('voice_packets_out_total'),
        ];
        const [b0, p0] = await read();
        await sleep(ms);
        const [b1, p1] = await read();
        return (b1! - b0!) / (p1! - p0!);
      };
      /** Mean bytes per packet bot `c` sent over `ms` (what its own encoder makes). */
      const meanBytesSent = async (c: VoiceClient, ms: number): Promise<number> => {
        const read = () => c.stats().session!.udp!;
        const s0 = read();
        await sleep(ms);
        const s1 = read();
        return (s1.bytesSent - s0.bytesSent) / (s1.packetsSent - s0.packetsSent);
      };
      // 64 kbit/s is 160 bytes of Opus per 20 ms frame, 16 kbit/s is 40 (+32 header and tag).
      expect(await meanBytesOut(600)).toBeGreaterThan(32 + 120);
      expect(await meanBytesSent(trio[1]!, 600)).toBeGreaterThan(32 + 120);

      // Every member hears of the update, wherever it signals; the owner's mixes and each client's
      // encoder follow the new bitrate.
      const updated = trio.map((b) =>
        b.signaling.waitFor('channel.updated', (m) => m.channel.voice.bitrate === 16_000, 5000),
      );
      await owner.signaling.request('channel.update', { channelId, voice: { bitrate: 16_000 } });
      await Promise.all(updated);
      await sleep(200);
      const out = await meanBytesOut(600);
      expect(out).toBeLessThan(32 + 60);
      expect(out).toBeGreaterThan(32 + 20);
      const sent = await meanBytesSent(trio[1]!, 600);
      expect(sent).toBeLessThan(32 + 60);
      expect(sent).toBeGreaterThan(32 + 20);
      await listen(trio, 1000, 0);
      expectHearsOthers(trio, TONES, { low: -24, high: -16 });

      // A new frame size waits for the channel's next start: the members keep 20 ms until all left.
      await owner.signaling.request('channel.update', { channelId, voice: { frameMs: 10, bitrate: 64_000 } });
      const rekeyed = await owner.join(channelId);
      expect(rekeyed.voice.frameMs).toBe(20);
      for (const b of trio) await b.leave();
      for (const b of trio) await b.join(channelId);
      await Promise.all(trio.map((b) => b.waitReady(3000)));
      for (const b of trio) expect(b.binding!.frameMs).toBe(10);
      oneOwner(topology, trio);
      // The sources carry over; the mixes now come every 10 ms: about 100 packets a second each.
      const received = trio.map((b) => b.stats().audioReceived);
      await listen(trio, 1000, 700);
      for (const [i, b] of trio.entries()) {
        expect(b.stats().session!.frameMs).toBe(10);
        expect(b.stats().audioReceived - received[i]!, 'audio packets in 1.8 s').toBeGreaterThan(150);
      }
      // Each hears the others at level. (Its own tone is checked at 20 ms by the three-speaker
      // scenario; here, under load, playout glitches in the neighbouring tones once read -49.9 dBFS
      // at 700 Hz: splatter, not a leak, as separated tones showed.)
      expectHearsOthers(trio, TONES, { own: null });
    },
  },
  {
    name: 'timing advance: of two speakers half a frame apart, the one off the tick is told to move, wherever it signals',
    timeoutMs: 30_000,
    // By design no order is sent while a speaker's arrivals spread over half a frame or it missed
    // a tick in the round (advance.ts): a machine loaded for the whole 12 s window shows both. One
    // CI run (2026-12-02, full suite on 2 cores) saw no order on either topology in 12 s; the same
    // commit passed alone and in two earlier CI runs. With one CPU burner beside it 2 of 2 runs pass
    // (one on its retry); with two, 0 of 2 both here and at b55cf03 (before this session): a load
    // flake, not a regression. Retried twice rather than a longer window.
    retry: 2,
    async run({ bot, topology }) {
      // One server serves the whole list: count only the advances sent from here on.
      const before = await topology.metric('voice_timing_advances_total');
      const sent = async () => (await topology.metric('voice_timing_advances_total')) - before;
      const withheld = () =>
        Promise.all(
          ADVANCE_WITHHELD_REASONS.map((reason) =>
            topology.metric('voice_timing_advances_withheld_total', { reason }),
          ),
        );
      const held = await withheld();
      const listener = await bot(0, 'adv-listener', {
        channel: 'Advance',
        create: true,
        voice: { frameMs: 20 },
      });
      await listener.waitReady(3000);
      // The speakers signal on a process that does not mix the channel, where there is one: their
      // advances go through the owner's relay to that process.
      const entry = awayFromOwner(topology, listener);
      const a = await bot(entry, 'adv-speaker-a', { channel: 'Advance' });
      const b = await bot(entry, 'adv-speaker-b', { channel: 'Advance' });
      await Promise.all([a.waitReady(3000), b.waitReady(3000)]);
      const t0 = performance.now();
      a.startVoice(new ToneSource(TONES[0], -20));
      while (performance.now() < t0 + 10) {
        // half a frame apart
      }
      b.startVoice(new ToneSource(TONES[1], -20));
      const applied = () =>
        (a.stats().session?.sender?.advances ?? 0) + (b.stats().session?.sender?.advances ?? 0);
      try {
        await expect.poll(sent, { timeout: 12_000, interval: 250 }).toBeGreaterThanOrEqual(1);
      } catch (err) {
        // Say why the server sent none (by design under load: spread, missed), for the next run.
        const why: string[] = [];
        for (const [r, n] of (await withheld()).entries())
          if (n - held[r]! > 0) why.push(`${ADVANCE_WITHHELD_REASONS[r]} ${n - held[r]!}`);
        throw new Error(`no timing advance in 12 s; members withheld: ${why.join(', ') || 'none'}`, {
          cause: err,
        });
      }
      // The advances reached the speakers (through the owner's relay when they signal elsewhere) and
      // were applied, none refused. Not "every one sent": under the full suite's load the server
      // once counted an order the speakers never applied (-1 for 3 s, not traced; see the issue
      // note), and an order to a session being replaced is lost by design. Within two phase rounds
      // (2 s each): an order lost so is sent again at the next round while the speaker is still off
      // the tick (one CI run saw none applied in 3 s on the 2-process cluster).
      await expect.poll(applied, { timeout: 6000, interval: 250 }).toBeGreaterThanOrEqual(1);
      expect(applied()).toBeLessThanOrEqual(await sent());
      for (const s of [a, b]) expect(s.stats().session?.sender?.advancesIgnored ?? 0).toBe(0);
      await listen([listener], 1000, 300);
      for (const hz of [TONES[0], TONES[1]]) {
        expect(heard(listener, hz), `listener hears ${hz} Hz`).toBeGreaterThan(-23);
        expect(heard(listener, hz), `listener hears ${hz} Hz`).toBeLessThan(-17);
      }
    },
  },
  {
    name: 'every member receives stats about its own stream, wherever it signals',
    async run({ channelOf }) {
      const trio = await channelOf('Stats', ['stats-a', 'stats-b', 'stats-c']);
      trio.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
      // Every 2 s: the second report covers a whole period of sending (50 frames a second).
      const reports = await Promise.all(
        trio.map((b) => b.signaling.waitFor('stats', (m) => m.stats.packetsIn > 50, 5000)),
      );
      for (const [i, r] of reports.entries()) {
        const b = trio[i]!;
        expect(r.stats.packetsIn, `bot ${i}: the server counted what it sent`).toBeLessThanOrEqual(
          b.stats().packetsSent,
        );
        expect(r.stats.packetsOut, `bot ${i}: mixes sent to it`).toBeGreaterThan(50);
        expect(r.stats.lossUp, `bot ${i}: no loss on loopback`).toBe(0);
      }
    },
  },
  {
    name: 'a listener that mixes itself, signaled away from the owner, gets each speaker as STREAM packets, also after a resume',
    async run({ channelOf, topology }) {
      const pair = await channelOf('Streamed', ['strm-a', 'strm-b']);
      oneOwner(topology, pair);
      pair.forEach((b, i) => b.startVoice(new ToneSource(TONES[i]!, -20)));
      const ids = pair.map((b) => b.user.id);
      const away = awayFromOwner(topology, pair[0]!);
      // Its signaling node is not the owner: the grant reaches the owner with the attach.
      const listener = await streamedListener(topology.nodeUrl(away), topology.nodeWsUrl(away), 'strm-l', 4);
      try {
        await listener.join(pair[0]!.channel!.id);
        await listener.expectStreams(ids, TONES.slice(0, 2), 1200);
        // A resume on the other process (a new binding, attached from there) keeps the grant.
        const other = (away + 1) % topology.nodeCount;
        await listener.resume(topology.nodeWsUrl(other));
        await listener.expectStreams(ids, TONES.slice(0, 2), 1200);
      } finally {
        listener.close();
      }
    },
  },
];
