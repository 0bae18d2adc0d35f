import { createSocket, type Socket } from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  encodeTimeBody,
  readAckBody,
  type VoiceBinding,
} from '@voice/protocol';
import { createOpus, sineInt16, toneDbfs, type OpusFactory } from '@voice/media';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * The server's voice path driven straight from protocol/README.md, with no client library: a raw
 * UDP socket, our own cipher, our own Opus encoder. Proves the wire contract, not just our client.
 */
class RawPeer {
  readonly sock: Socket = createSocket('udp4');
  readonly cipher: VoiceCipher;
  readonly received: { type: number; payload: Uint8Array; seq: number }[] = [];
  seq = 0;
  constructor(readonly b: VoiceBinding) {
    this.cipher = new VoiceCipher(b.key, VoiceDirection.CLIENT_TO_SERVER);
    const out = new Uint8Array(1000);
    this.sock.on('message', (msg) => {
      const r = this.cipher.open(msg, out);
      if (r.ok)
        this.received.push({
          type: r.header.type,
          payload: out.slice(0, r.payloadLength),
          seq: r.header.sequence,
        });
    });
  }
  async bind(): Promise<void> {
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', () => r()));
  }
  send(type: number, payload: Uint8Array, timestamp = 0, flags = 0): void {
    const buf = new Uint8Array(1100);
    const n = this.cipher.seal(
      { type: type as never, flags, voiceId: this.b.voiceId, sequence: this.seq++, timestamp },
      payload,
      buf,
    );
    this.sock.send(buf.subarray(0, n), this.b.udpPort, '127.0.0.1');
  }
  close(): void {
    this.sock.close();
  }
}

let srv: TestServer;
let opus: OpusFactory;
beforeEach(async () => {
  srv = await startTestServer();
  opus = await createOpus({ backend: 'opusscript' });
});
afterEach(async () => {
  await srv.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('voice path from the raw protocol', () => {
  it('acknowledges HELLO and HEARTBEAT with the echoed time and counters', async () => {
    const a = await srv.user('raw-a');
    const { channel } = await a.ws.request('channel.create', { name: 'Raw' });
    const { voice } = await a.ws.request('channel.join', { channelId: channel.id });
    const p = new RawPeer(voice);
    await p.bind();
    const transport = a.ws.waitFor('member.updated', (m) => m.member.transport === 'udp');
    p.send(VoicePacketType.HELLO, encodeTimeBody(1234.5));
    await transport;
    p.send(VoicePacketType.HEARTBEAT, encodeTimeBody(99));
    await expect.poll(() => p.received.length).toBe(2);
    expect(p.received[0]!.type).toBe(VoicePacketType.HELLO_ACK);
    expect(readAckBody(p.received[0]!.payload)).toMatchObject({
      sentAt: 1234.5,
      packetsReceived: 1,
      packetsLost: 0,
    });
    expect(readAckBody(p.received[1]!.payload)).toMatchObject({ sentAt: 99, packetsReceived: 2 });
    p.close();
  });

  it('mixes two speakers: each hears the other tone and not its own', async () => {
    const a = await srv.user('tone-a');
    const b = await srv.user('tone-b');
    const { channel } = await a.ws.request('channel.create', { name: 'Tones' });
    const va = (await a.ws.request('channel.join', { channelId: channel.id })).voice;
    const vb = (await b.ws.request('channel.join', { channelId: channel.id })).voice;
    const pa = new RawPeer(va);
    const pb = new RawPeer(vb);
    await pa.bind();
    await pb.bind();
    pa.send(VoicePacketType.HELLO, encodeTimeBody(0));
    pb.send(VoicePacketType.HELLO, encodeTimeBody(0));
    const frame = 960;
    const encA = opus.createEncoder({ frameSamples: frame, bitrate: 64_000 });
    const encB = opus.createEncoder({ frameSamples: frame, bitrate: 64_000 });
    const toneA = sineInt16(frame * 100, 440, -12);
    const toneB = sineInt16(frame * 100, 1000, -12);
    const out = new Uint8Array(1000);
    const t0 = performance.now();
    for (let i = 0; i < 75; i++) {
      let n = encA.encode(toneA.subarray(i * frame, (i + 1) * frame), out);
      pa.send(VoicePacketType.AUDIO, out.subarray(0, n), i * frame);
      n = encB.encode(toneB.subarray(i * frame, (i + 1) * frame), out);
      pb.send(VoicePacketType.AUDIO, out.subarray(0, n), i * frame);
      const wait = t0 + (i + 1) * 20 - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await sleep(200);
    const decodeAll = (p: RawPeer) => {
      const dec = opus.createDecoder({ frameSamples: frame });
      const audio = p.received.filter((r) => r.type === VoicePacketType.AUDIO);
      const pcm = new Int16Array(audio.length * frame);
      audio.forEach((r, i) => dec.decode(r.payload, pcm.subarray(i * frame, (i + 1) * frame)));
      return { pcm, packets: audio.length };
    };
    const ha = decodeAll(pa);
    const hb = decodeAll(pb);
    expect(ha.packets).toBeGreaterThan(50);
    expect(hb.packets).toBeGreaterThan(50);
    const tail = (x: Int16Array) => x.subarray(x.length - frame * 40);
    // A hears B's 1 kHz at about -12 dBFS and not its own 440 Hz.
    expect(toneDbfs(tail(ha.pcm), 1000)).toBeGreaterThan(-15);
    expect(toneDbfs(tail(ha.pcm), 440)).toBeLessThan(-40);
    expect(toneDbfs(tail(hb.pcm), 440)).toBeGreaterThan(-15);
    expect(toneDbfs(tail(hb.pcm), 1000)).toBeLessThan(-40);
    pa.close();
    pb.close();
  });
});
