import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { ToneSource, VoiceClient } from '../../client/src/index.js';
import { launchCluster, type LaunchedCluster } from '../../deploy/cluster/launcher.js';
import { medianToneDbfs } from '../../test-support/audio.js';
import { freePort, freeUdpPort } from '../../test-support/server.js';

/*
 * A real cluster from the launcher `npm run cluster` uses: a redis-server and three server
 * processes. Bots whose WebSockets go to different processes share one channel.
 */

let cluster: LaunchedCluster;
let opus: OpusFactory;
const bots: VoiceClient[] = [];
beforeAll(async () => {
  opus = await createOpus();
  cluster = await launchCluster({
    nodes: 3,
    redisPort: await freePort(),
    portsFor: async () => ({ http: await freePort(), udp: await freeUdpPort() }),
    logLevel: 'warn',
  });
}, 90_000);
afterAll(async () => {
  for (const b of bots.splice(0)) await b.close();
  await cluster?.stop();
}, 30_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const TONES = [440, 700, 1100] as const;

describe('three server processes over one Redis (the launcher)', () => {
  it(
    'bots on three processes hear each other at level with mix-minus; presence and speaking reach all',
    { timeout: 60_000 },
    async () => {
      const [n1, n2, n3] = cluster.nodes;
      const connect = async (url: string, nickname: string, create = false) => {
        const c = await VoiceClient.connect({
          server: url,
          nickname,
          opus,
          heartbeatMs: 500,
          helloRetryMs: 200,
          channel: 'Trio',
          create,
        });
        bots.push(c);
        return c;
      };
      const a = await connect(n1!.url, 'pa', true);
      const seen = a.signaling.waitFor('member.joined', (m) => m.member.nickname === 'pc', 10_000);
      const b = await connect(n2!.url, 'pb');
      const c = await connect(n3!.url, 'pc');
      await seen;
      const trio = [a, b, c];
      await Promise.all(trio.map((x) => x.waitReady(5000)));
      // One owner: every binding names the same UDP port, one of the three processes'.
      const ports = new Set(trio.map((x) => x.binding!.udpPort));
      expect(ports.size).toBe(1);
      expect(cluster.nodes.map((n) => n.udpPort)).toContain([...ports][0]);

      // Each bot's speaking start reaches the two others, whichever process holds their WebSocket.
      const speaking = trio.map((listener, i) =>
        Promise.all(
          trio
            .filter((_, j) => j !== i)
            .map((speaker) =>
              listener.signaling.waitFor(
                'speaking',
                (m) => m.userId === speaker.user.id && m.speaking,
                10_000,
              ),
            ),
        ),
      );
      trio.forEach((x, i) => x.startVoice(new ToneSource(TONES[i]!, -20)));
      await Promise.all(speaking);
      await sleep(700);
      for (const x of trio) x.clearRecording();
      await sleep(1100);
      for (const [i, x] of trio.entries()) {
        for (const [j, hz] of TONES.entries()) {
          const level = medianToneDbfs(x.recording().samples, hz, 1000);
          if (i === j) expect(level, `bot ${i} hears its own ${hz} Hz`).toBeLessThan(-50);
          else {
            expect(level, `bot ${i} hears ${hz} Hz`).toBeGreaterThan(-23);
            expect(level, `bot ${i} hears ${hz} Hz`).toBeLessThan(-17);
          }
        }
      }
    },
  );
});
