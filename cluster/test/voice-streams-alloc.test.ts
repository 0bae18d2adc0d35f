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
      const eps = [0, 1, 2, 3].map((i) => {
        const ep = new VoiceEndpoint(
          i + 1,
          fakeSession(i, 4),
          core,
          { foreign: new TokenBucket(1, 1), sameHost: new TokenBucket(1, 1) },
          aead!,
        );
        ep.transport = 'udp';
        core.addMember(ep);
        return ep;
      });
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

describe('the RED path (README 9.1)', () => {
  it.runIf(aead !== null)(
    'allocates nothing per packet: RED forwarded as is to listeners that read it, split with the copies of lost frames for one that does not',
    async () => {
      const opus = await createOpus();
      const counters = new VoiceCounters();
      let sent = 0;
      const seen = new Map<number, { type: number; flags: number; len: number; ts: number }[]>();
      let record = false;
      const core = new ChannelCore(asChannelId('c_redalloc'), DEFAULT_VOICE_SETTINGS, opus, {
        counters,
        send: (ep, packet, length) => {
          sent++;
          if (!record) return;
          const r = new VoiceCipher(ep.key, VoiceDirection.CLIENT_TO_SERVER).open(
            packet.slice(0, length),
            new Uint8Array(1000),
          );
          if (!r.ok) return;
          const list = seen.get(ep.voiceId) ?? [];
          list.push({
            type: r.header.type,
            flags: r.header.flags,
            len: r.payloadLength,
            ts: r.header.timestamp,
          });
          seen.set(ep.voiceId, list);
        },
        speaking: () => {},
      });
      // A speaker, two streaming listeners that read RED and one that does not.
      const eps = [0, 1, 2, 3].map((i) => {
        const ep = new VoiceEndpoint(
          i + 1,
          fakeSession(i, 4, i === 1 || i === 2),
          core,
          { foreign: new TokenBucket(1, 1), sameHost: new TokenBucket(1, 1) },
          aead!,
        );
        ep.transport = 'udp';
        core.addMember(ep);
        return ep;
      });
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
      record = true;
      const sentBefore = sent;
      const k0 = k - (k % 5);
      k = k0;
      run(10);
      expect(sent - sentBefore).toBe(8 * 3 + 2);
      for (const ep of eps.slice(1, 3))
        expect(seen.get(ep.voiceId)!.map((p) => [p.type, p.flags & VoiceFlags.RED, p.len])).toEqual(
          Array.from({ length: 8 }, () => [VoicePacketType.STREAM, VoiceFlags.RED, 12 + 82]),
        );
      const plain = seen.get(eps[3]!.voiceId)!;
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
