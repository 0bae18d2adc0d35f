import { createSocket } from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VoiceCipher, VoiceDirection, VoicePacketType, encodeTimeBody } from '@voice/protocol';
import { startTestServer, type TestServer } from '../../test-support/server.js';

let srv: TestServer;
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  await srv.stop();
});

describe('the UDP packet handler is a boundary', () => {
  it('a fault while handling one packet costs that packet (counted), not the process', async () => {
    const a = await srv.user('fault-a');
    const { channel } = await a.ws.request('channel.create', { name: 'Fault' });
    const { voice } = await a.ws.request('channel.join', { channelId: channel.id });
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const acks: number[] = [];
    const rx = new VoiceCipher(voice.key, VoiceDirection.CLIENT_TO_SERVER);
    const out = new Uint8Array(1000);
    sock.on('message', (m) => {
      const r = rx.open(m, out);
      if (r.ok) acks.push(r.header.type);
    });
    let seq = 0;
    const send = (type: VoicePacketType, body: Uint8Array) => {
      const buf = new Uint8Array(1100);
      const n = rx.seal({ type, flags: 0, voiceId: voice.voiceId, sequence: seq++, timestamp: 0 }, body, buf);
      sock.send(buf.subarray(0, n), voice.udpPort, '127.0.0.1');
    };
    send(VoicePacketType.HELLO, encodeTimeBody(1));
    await expect.poll(() => acks.length).toBe(1);

    // Inject a bug: reading the endpoint's member throws (as a broken invariant would).
    const ep = srv.voice.endpointOf(srv.sessions.byUser(a.ws.welcome.user.id)!)!;
    const member = ep.member;
    Object.defineProperty(ep, 'member', {
      configurable: true,
      get() {
        throw new Error('injected fault');
      },
    });
    for (let i = 0; i < 3; i++) send(VoicePacketType.AUDIO, new Uint8Array([0xf8, 0xff, 0xfe]));
    const drops = () => srv.ctx.metrics.value('voice_packets_dropped_total', { reason: 'internal_error' });
    await expect.poll(drops).toBe(3);
    // Reported like every other boundary of the server.
    expect(
      await srv.ctx.metrics.value('voice_boundary_errors_total', {
        boundary: 'voice_packet',
        code: 'INTERNAL',
      }),
    ).toBe(3);
    Object.defineProperty(ep, 'member', { configurable: true, writable: true, value: member });

    // The process, the socket and the session carry on.
    send(VoicePacketType.HEARTBEAT, encodeTimeBody(2));
    await expect.poll(() => acks.length).toBe(2);
    expect(acks).toEqual([VoicePacketType.HELLO_ACK, VoicePacketType.HEARTBEAT_ACK]);
    const health = await fetch(`${srv.url}/healthz`);
    expect(health.status).toBe(200);
    sock.close();
  });
});
