import { createSocket, type Socket } from 'node:dgram';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { HEADER_BYTES, MAX_PACKET_BYTES, VOICE_MAGIC, VOICE_VERSION } from '@voice/protocol';
import { VoiceClient } from '../../client/src/index.js';
import { startChildServer, type ChildServer } from '../../test-support/child-server.js';
import { expectAlive, expectCanaryHears, hostileSeed } from '../../test-support/hostile.js';

/**
 * Random UDP datagrams at the real server process's voice port: random bytes, and packets with a
 * valid-looking header (right magic and version, any type, flags, sequence, timestamp) for random
 * voice ids and for the id of a session that is really in a channel, with random payloads and
 * tags. None can authenticate: every one must be counted as received and as dropped, the session
 * they imitate must keep its service, and the process must stay whole. (The flood of forged
 * packets from many source addresses is voice-raw/wt-packet's test; this one is random input.)
 */

let srv: ChildServer;
let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
  srv = await startChildServer();
});
afterAll(async () => {
  await srv?.stop();
});

async function sumMetric(name: string): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ') || line.startsWith(name + '{'))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function datagramArb(voiceIds: number[]): fc.Arbitrary<Uint8Array> {
  const shaped = fc
    .record({
      type: fc.integer({ min: 0, max: 255 }),
      flags: fc.integer({ min: 0, max: 255 }),
      voiceId: fc.oneof(fc.constantFrom(...voiceIds), fc.integer({ min: 0, max: 0xffff_ffff })),
      seq: fc.integer({ min: 0, max: 0xffff_ffff }),
      ts: fc.integer({ min: 0, max: 0xffff_ffff }),
      rest: fc.uint8Array({ maxLength: MAX_PACKET_BYTES - HEADER_BYTES + 40 }),
    })
    .map(({ type, flags, voiceId, seq, ts, rest }) => {
      const b = Buffer.alloc(HEADER_BYTES + rest.length);
      b[0] = VOICE_MAGIC;
      b[1] = VOICE_VERSION;
      b[2] = type;
      b[3] = flags;
      b.writeUInt32BE(voiceId, 4);
      b.writeUInt32BE(seq, 8);
      b.writeUInt32BE(ts, 12);
      b.set(rest, HEADER_BYTES);
      return new Uint8Array(b);
    });
  return fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 1500 }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: HEADER_BYTES + 2 }) },
    { weight: 4, arbitrary: shaped },
  );
}

describe('hostile UDP (random datagrams, real process)', () => {
  it(
    'drops and counts every random datagram; the session they imitate keeps its service',
    { timeout: 60_000 },
    async () => {
      // A real member whose voice id the datagrams use; it stays silent, so nothing of its own is dropped.
      const member = await VoiceClient.connect({
        server: srv.url,
        nickname: 'udp-target',
        opus,
        heartbeatMs: 500,
        helloRetryMs: 200,
        channel: 'udp-target-room',
        create: true,
      });
      await member.waitReady(5000);
      const voiceId = member.binding!.voiceId;

      const rssBefore = srv.rssBytes();
      const inBefore = await sumMetric('voice_udp_packets_in_total');
      const dropsBefore = await sumMetric('voice_packets_dropped_total');
      // From another loopback address than the member's, so per-address limits cannot touch it.
      const sock: Socket = createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.2', () => r()));
      const seed = hostileSeed('hostile-udp');
      const datagrams = fc.sample(datagramArb([voiceId, (voiceId ^ 1) >>> 0, 0]), { seed, numRuns: 6000 });
      let sent = 0;
      for (let i = 0; i < datagrams.length; i += 50) {
        await Promise.all(
          datagrams
            .slice(i, i + 50)
            .map(
              (d) =>
                new Promise<void>((resolve, reject) =>
                  sock.send(d, srv.udpPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
                ),
            ),
        );
        sent += Math.min(50, datagrams.length - i);
        // Paced by the server's own count, so the kernel's receive buffer (about 200 KB) never
        // overflows however loaded the machine is: every datagram reaches the server.
        if (sent % 100 === 0) {
          await expect
            .poll(async () => (await sumMetric('voice_packets_dropped_total')) - dropsBefore, {
              timeout: 10_000,
              interval: 2,
            })
            .toBe(sent);
        }
      }
      sock.close();
      expect(sent).toBe(6000);
      await expect
        .poll(async () => (await sumMetric('voice_packets_dropped_total')) - dropsBefore, { timeout: 10_000 })
        .toBe(sent);
      // Received: every datagram, plus the member's own heartbeats meanwhile.
      expect((await sumMetric('voice_udp_packets_in_total')) - inBefore).toBeGreaterThanOrEqual(sent);
      await expectAlive(srv, rssBefore, 100 * 1024 * 1024);
      // The imitated member still has its binding, and the server still answers its keep-alives.
      const received = member.stats().packetsReceived;
      await expect
        .poll(() => member.stats().packetsReceived, { timeout: 3000 })
        .toBeGreaterThan(received + 1);
      expect(member.binding?.voiceId).toBe(voiceId);
      expect(member.stats()).toMatchObject({ transport: 'udp', rejected: 0 });
      await member.close();
      await expectCanaryHears(srv, opus, 'udp');
    },
  );
});
