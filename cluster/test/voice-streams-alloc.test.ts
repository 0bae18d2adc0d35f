import { describe, expect, it } from 'vitest';
import {
  asChannelId,
  DEFAULT_VOICE_SETTINGS,
  VoiceCipher,
  VoiceDirection,
  VoiceFlags,
  VoicePacketType,
} from '@voice/protocol';
import { createOpus, loadNativeAead } from '@voice/media';
import { fakeSession } from '../bench/fake-session.js';
import { TokenBucket } from '../src/ratelimit.js';
import { ChannelCore } from '../src/voice/channel.js';
import { VoiceCounters } from '../src/voice/counters.js';
import { VoiceEndpoint } from '../src/voice/endpoint.js';
import { leastYoungBytes } from '../../test-support/heap.js';

const aead = loadNativeAead();

/** Four members on UDP, granted 4 streams each, and RED where `red` says. */
function addMembers(core: ChannelCore, red: (i: number) => boolean): VoiceEndpoint[] {
  return [0, 1, 2, 3].map((i) => {
    const ep = new VoiceEndpoint(
      i + 1,
      fakeSession(i, 4, red(i)),
      core,
      { foreign: new TokenBucket(1, 1), sameHost: new TokenBucket(1, 1) },
      aead!,
    );
    ep.transport = 'udp';
    core.addMember(ep);
    return ep;
  });
}

describe('the STREAM path', () => {
  it.runIf(aead !== null)(
    'allocates nothing per packet: 20,000 packets forwarded to 3 streaming listeners, sealed',
    async () => {
      const opus = await createOpus();
      const counters = new VoiceCounters();
      let sent = 0;
      let last: Uint8Array | null = null;
      let lastLen = 0;
      const core = new ChannelCore(asChannelId('c_streamalloc'), DEFAULT_VOICE_SETTINGS, opus, {
        counters,
        send: (_ep, packet, length) => {
          sent++;
          last = packet;
          lastLen = length;
        },
        speaking: () => {},
      });
      const eps = addMembers(core, () => false);
      core.tick(0); // the listeners' routing: nobody speaks yet, so every one of them streams
      const speaker = eps[0]!.member!;
      const payload = new Uint8Array(80).fill(3);
      let k = 0;
      // One packet per frame period, after the budget was made (an integer clock: a double argument
      // would be boxed at the call, an allocation of the test's own).
      const t0 = Math.ceil(performance.now()) + 20;
      const run = (n: number) => {
        for (let i = 0; i < n; i++, k++)
          core.forwardOnArrival(speaker, k, payload, 80, t0 + k * 20, k * 960, 0);
      };
      run(20_000); // warm up
      // The least of three rounds: on a loaded machine the optimised code may not be in yet (the
      // interpreter boxes numbers), but a per-packet allocation shows in every round.
      const bytes = leastYoungBytes(() => run(20_000), 3, 16 * 1024);
      expect(bytes).toBeLessThan(16 * 1024);
      expect(sent).toBe(3 * k);
      expect(counters.streamsOut).toBe(3 * k);
      // What went out is a STREAM packet a listener opens.
      const opener = new VoiceCipher(eps[3]!.key, VoiceDirection.CLIENT_TO_SERVER);
      const r = opener.open(last!.slice(0, lastLen), new Uint8Array(1000));
      expect(r.ok && r.header.type).toBe(VoicePacketType.STREAM);
      core.close();
    },
  );
});

/** A packet a listener got, opened. */
interface Opened {
  type: number;
  flags: number;
  len: number;
  ts: number;
  /** The payload after the 12-byte source. */
  body: number[];
}

/**
 * A channel of a speaker (endpoint 0) and three streaming listeners, 1 and 2 granted RED, 3 not;
 * what each listener is sent is opened and kept in `state.seen` while `state.record` is set.
 */
async function redChannel(id: string) {
  const opus = await createOpus();
  const counters = new VoiceCounters();
  const state = { sent: 0, record: false, seen: new Map<number, Opened[]>() };
  const core = new ChannelCore(asChannelId(id), DEFAULT_VOICE_SETTINGS, opus, {
    counters,
    send: (ep, packet, length) => {
      state.sent++;
      if (!state.record) return;
      const out = new Uint8Array(1000);
      const r = new VoiceCipher(ep.key, VoiceDirection.CLIENT_TO_SERVER).open(packet.slice(0, length), out);
      if (!r.ok) return;
      const list = state.seen.get(ep.voiceId) ?? [];
      list.push({
        type: r.header.type,
        flags: r.header.flags,
        len: r.payloadLength,
        ts: r.header.timestamp,
        body: [...out.subarray(12, r.payloadLength)],
      });
      state.seen.set(ep.voiceId, list);
    },
    speaking: () => {},
  });
  const eps = addMembers(core, (i) => i === 1 || i === 2);
  return { core, counters, eps, state };
}

describe('the RED path (README 9.1)', () => {
  it.runIf(aead !== null)(
    'allocates nothing per packet: RED forwarded as is to listeners that read it, split with the copies of lost frames for one that does not',
    async () => {
      // A speaker, two streaming listeners that read RED and one that does not.
      const { core, counters, eps, state } = await redChannel('c_redalloc');
      core.tick(0);
      const speaker = eps[0]!.member!;
      // RED payloads: [0, 40][40 bytes: the frame before][40 bytes: this frame].
      const payload = new Uint8Array(82).fill(3);
      payload[0] = 0;
      payload[1] = 40;
      let k = 0;
      const t0 = Math.ceil(performance.now()) + 20;
      // Every 5th packet is lost upstream: the next one's copy rebuilds it. (The ingress notes what
      // arrived; the member-buffer split runs at the tick and is measured in client/test's playouts.)
      const run = (n: number) => {
        for (let i = 0; i < n; i++, k++) {
          if (k % 5 === 2) continue;
          speaker.noteReceived(k);
          core.forwardOnArrival(speaker, k, payload, 82, t0 + k * 20, k * 960, VoiceFlags.RED);
        }
      };
      run(20_000);
      const bytes = leastYoungBytes(() => run(20_000), 3, 16 * 1024);
      expect(bytes).toBeLessThan(16 * 1024);
      // What each listener got, over 10 packets: RED listeners the block (82 bytes after the source),
      // the other the primary alone, and before the packet after a lost one, the lost frame's copy.
      state.record = true;
      const sentBefore = state.sent;
      const k0 = k - (k % 5);
      k = k0;
      run(10);
      expect(state.sent - sentBefore).toBe(8 * 3 + 2);
      for (const ep of eps.slice(1, 3))
        expect(state.seen.get(ep.voiceId)!.map((p) => [p.type, p.flags & VoiceFlags.RED, p.len])).toEqual(
          Array.from({ length: 8 }, () => [VoicePacketType.STREAM, VoiceFlags.RED, 12 + 82]),
        );
      const plain = state.seen.get(eps[3]!.voiceId)!;
      // 8 primaries and, before each packet after a lost one (k0 + 3, k0 + 8), the lost frame's copy.
      // Every frame, in order: the copies fill the two lost ones.
      expect(plain.map((p) => [p.flags & VoiceFlags.RED, p.len, p.ts])).toEqual(
        Array.from({ length: 10 }, (_, i) => [0, 12 + 40, ((k0 + i) * 960) >>> 0]),
      );
      expect(counters.redCopiesSent).toBeGreaterThan(0);
      core.close();
    },
  );
});

describe('downstream RED on STREAM packets (README 9.1)', () => {
  it.runIf(aead !== null)(
    "allocates nothing per packet: a lossy listener's STREAM packets repeat the speaker's frame before, only when it is the one just before",
    async () => {
      // A speaker; streaming listeners: granted RED on a lossy downlink, granted RED on a clean one,
      // and one that did not ask for RED (its heartbeats could report loss: it gets none).
      const { core, counters, eps, state } = await redChannel('c_reddownalloc');
      // What the ingress sets from a heartbeat reporting loss (ingress.ts), for listeners 1 and 3.
      eps[1]!.member!.redDownUntil = Number.POSITIVE_INFINITY;
      eps[3]!.member!.redDownUntil = Number.POSITIVE_INFINITY;
      core.tick(0);
      const speaker = eps[0]!.member!;
      // Each frame's bytes say which frame it is; every 7th never reaches the server, every 50th
      // starts a talkspurt.
      const payload = new Uint8Array(80);
      let k = 0;
      const t0 = Math.ceil(performance.now()) + 20;
      const run = (n: number) => {
        for (let i = 0; i < n; i++, k++) {
          if (k % 7 === 3) continue;
          payload.fill(k & 0xff);
          const flags = k % 50 === 0 ? VoiceFlags.MARKER : 0;
          core.forwardOnArrival(speaker, k, payload, 80, t0 + k * 20, k * 960, flags);
        }
      };
      run(20_000);
      const bytes = leastYoungBytes(() => run(20_000), 3, 16 * 1024);
      expect(bytes).toBeLessThan(16 * 1024);
      // 14 frames from a talkspurt start: frames k0 .. k0 + 13, k0 + 3 and k0 + 10 lost upstream.
      k = k - (k % 350) + 350;
      const k0 = k;
      state.record = true;
      run(14);
      const frame = (f: number) => Array.from({ length: 80 }, () => f & 0xff);
      const expected = [] as { flags: number; body: number[]; ts: number }[];
      for (let f = k0; f < k0 + 14; f++) {
        if (f % 7 === 3) continue;
        const red = f !== k0 && (f - 1) % 7 !== 3;
        expected.push({
          flags: f === k0 ? VoiceFlags.MARKER : red ? VoiceFlags.RED : 0,
          body: red ? [0, 80, ...frame(f - 1), ...frame(f)] : frame(f),
          ts: (f * 960) >>> 0,
        });
      }
      expect(expected.filter((p) => p.flags === VoiceFlags.RED).length).toBe(9);
      expect(state.seen.get(eps[1]!.voiceId)!.map(({ flags, body, ts }) => ({ flags, body, ts }))).toEqual(
        expected,
      );
      const plain = expected.map((p) => ({
        ...p,
        flags: p.flags & VoiceFlags.MARKER,
        body: p.body.slice(-80),
      }));
      for (const ep of eps.slice(2))
        expect(state.seen.get(ep.voiceId)!.map(({ flags, body, ts }) => ({ flags, body, ts }))).toEqual(
          plain,
        );
      expect(counters.redDownSent).toBeGreaterThan(8);
      // The speaker's own RED block goes as received (no second block around it); the frame after
      // it, sent plain by the speaker, then has no kept frame to repeat (as on AUDIO).
      state.seen.clear();
      const red = new Uint8Array(82);
      red[1] = 40;
      for (const f of [k0 + 14, k0 + 15]) {
        red.fill(f & 0xff, 2);
        speaker.noteReceived(f);
        core.forwardOnArrival(speaker, f, red, 82, t0 + f * 20, f * 960, VoiceFlags.RED);
      }
      payload.fill((k0 + 16) & 0xff);
      core.forwardOnArrival(speaker, k0 + 16, payload, 80, t0 + (k0 + 16) * 20, (k0 + 16) * 960, 0);
      expect(state.seen.get(eps[1]!.voiceId)!.map((p) => [p.flags, p.len])).toEqual([
        [VoiceFlags.RED, 12 + 82],
        [VoiceFlags.RED, 12 + 82],
        [0, 12 + 80],
      ]);
      core.close();
    },
  );
});
