/**
 * A UDP voice swarm: many members in many channels, some of them speaking pre-encoded Opus at real
 * time, all of them registered over UDP and counting what they receive. It does not decode: it is a
 * load generator, built to cost as little CPU as possible per packet so one core can drive a server.
 *
 *   node --conditions=source --import tsx loadtest/src/swarm.ts --server http://127.0.0.1:7800 \
 *     --channels 10 --members 10 --speakers 2 --seconds 20
 */
import { createSocket, type Socket } from 'node:dgram';
import { parseArgs } from 'node:util';
import {
  MAX_PACKET_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoiceFlags,
  VoicePacketType,
  encodeTimeBody,
  type VoiceBinding,
} from '@voice/protocol';
import { createOpus, loadNativeAead, sineInt16, Ticker } from '@voice/media';
import { RestClient, SignalingClient } from '@voice/client';

export interface SwarmOptions {
  server: string;
  channels: number;
  members: number;
  speakers: number;
  seconds: number;
  /** Prefix for nicknames and channel names, so several swarms can share a server. */
  prefix?: string;
  adminToken?: string;
  /**
   * Speakers send at this many phases spread over each 20 ms frame (default 10), as real clients
   * whose clocks started at different times do; 1 sends every packet at the same instant, the worst
   * case for a server's mixing clock.
   */
  phases?: number;
  log?: (line: string) => void;
}

export interface SwarmResult {
  members: number;
  packetsSent: number;
  packetsReceived: number;
  /** Received / expected mixes, where a listener expects one packet per tick while anyone speaks. */
  deliveryRatio: number;
  setupMs: number;
}

interface Bot {
  ws: SignalingClient;
  binding: VoiceBinding;
  cipher: VoiceCipher;
  speaker: boolean;
  seq: number;
  received: number;
  sock: Socket;
}

export async function runSwarm(o: SwarmOptions): Promise<SwarmResult> {
  const log = o.log ?? (() => {});
  const prefix = o.prefix ?? `sw${Date.now().toString(36)}`;
  const wsUrl = o.server.replace(/^http/, 'ws') + '/ws';
  const t0 = performance.now();
  const bots: Bot[] = [];
  const admin = new RestClient(o.server);
  const opus = await createOpus();
  // The load generator must cost little per packet: persistent AES-GCM contexts when built.
  const aead = loadNativeAead() ?? undefined;
  // Pre-encode 1 s of tone: speaking costs a seal and a send per packet, no encode.
  const enc = opus.createEncoder({ frameSamples: 960, bitrate: 32_000 });
  const pcm = sineInt16(48_000, 440, -18);
  const frames: Uint8Array[] = [];
  const scratch = new Uint8Array(1000);
  for (let f = 0; f < 50; f++)
    frames.push(scratch.slice(0, enc.encode(pcm.subarray(f * 960, (f + 1) * 960), scratch)));
  enc.destroy();

  for (let c = 0; c < o.channels; c++) {
    let channelId: string | undefined;
    for (let m = 0; m < o.members; m++) {
      const rest = new RestClient(o.server);
      const { token } = await rest.login(`${prefix}-${c}-${m}`);
      const ws = await SignalingClient.connect({ url: wsUrl, token, client: 'swarm' });
      if (channelId === undefined) {
        channelId = (await ws.request('channel.create', { name: `${prefix}-${c}` })).channel.id;
      }
      const { voice } = await ws.request('channel.join', { channelId: channelId as never });
      const sock = createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      const bot: Bot = {
        ws,
        binding: voice,
        cipher: new VoiceCipher(voice.key, VoiceDirection.CLIENT_TO_SERVER, aead),
        speaker: m < o.speakers,
        seq: 0,
        received: 0,
        sock,
      };
      sock.on('message', () => void bot.received++);
      bots.push(bot);
    }
    log(`channel ${c + 1}/${o.channels} ready`);
  }
  void admin;
  const out = Buffer.alloc(MAX_PACKET_BYTES);
  const header = {
    type: VoicePacketType.AUDIO as VoicePacketType,
    flags: 0,
    voiceId: 0,
    sequence: 0,
    timestamp: 0,
  };
  let sent = 0;
  const send = (b: Bot, type: VoicePacketType, payload: Uint8Array, flags = 0, ts = 0) => {
    header.type = type;
    header.flags = flags;
    header.voiceId = b.binding.voiceId;
    header.sequence = b.seq++;
    header.timestamp = ts;
    const n = b.cipher.seal(header, payload, out);
    // dgram reads the buffer after an async step: each packet needs its own bytes.
    b.sock.send(Buffer.from(out.subarray(0, n)), b.binding.udpPort, '127.0.0.1');
    sent++;
  };
  for (const b of bots) send(b, VoicePacketType.HELLO, encodeTimeBody(performance.now()));
  const setupMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 200));
  for (const b of bots) b.received = 0;

  let frame = 0;
  const speakers = bots.filter((b) => b.speaker);
  const phases = Math.max(1, Math.min(20, Math.round(o.phases ?? 10)));
  // Speaker i sends at phase (7i mod phases): a channel's speakers and neighbouring channels differ.
  const byPhase = Array.from({ length: phases }, (_, ph) =>
    speakers.filter((_, i) => (i * 7) % phases === ph),
  );
  let step = 0;
  const ticker = new Ticker({
    periodMs: 20 / phases,
    // Send on time to the sub-millisecond, or the server's figures measure our timer, not itself.
    wake: 'thread',
    onTick: () => {
      const f = Math.floor(step / phases);
      const p = frames[f % 50]!;
      for (const b of byPhase[step % phases]!)
        send(b, VoicePacketType.AUDIO, p, f === 0 ? VoiceFlags.MARKER : 0, f * 960);
      step++;
      if (step % phases === 0) frame++;
    },
  }).start();
  const hb = setInterval(() => {
    for (const b of bots) send(b, VoicePacketType.HEARTBEAT, encodeTimeBody(performance.now()));
  }, 5_000);
  await new Promise((r) => setTimeout(r, o.seconds * 1000));
  ticker.close();
  clearInterval(hb);
  log('done sending');
  await new Promise((r) => setTimeout(r, 300));
  const received = bots.reduce((a, b) => a + b.received, 0);
  // Every member hears someone while speakers speak (a speaker hears the other speakers; a lone
  // speaker hears no one), plus heartbeat acks.
  const hearing = o.speakers >= 2 ? bots.length : bots.length - speakers.length;
  const expected = hearing * frame + bots.length * Math.floor(o.seconds / 5);
  for (const b of bots) {
    b.ws.close();
    b.sock.close();
  }
  return {
    members: bots.length,
    packetsSent: sent,
    packetsReceived: received,
    deliveryRatio: expected > 0 ? received / expected : 0,
    setupMs,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      server: { type: 'string', default: 'http://127.0.0.1:7800' },
      channels: { type: 'string', default: '5' },
      members: { type: 'string', default: '10' },
      speakers: { type: 'string', default: '2' },
      seconds: { type: 'string', default: '10' },
      prefix: { type: 'string' },
      phases: { type: 'string', default: '10' },
    },
  });
  const result = await runSwarm({
    server: values.server,
    channels: Number(values.channels),
    members: Number(values.members),
    speakers: Number(values.speakers),
    seconds: Number(values.seconds),
    phases: Number(values.phases),
    ...(values.prefix ? { prefix: values.prefix } : {}),
    log: (l) => process.stderr.write(l + '\n'),
  });
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}
