import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  ackFor,
  createVoiceHeader,
  createVoiceKey,
  encodeAckBody,
  readTimeBody,
  type VoiceBinding,
} from '@voice/protocol';

/**
 * A stand-in for the server's voice path, for client tests that need no real server: one session,
 * answers HELLO/HEARTBEAT with ACKs (filled from its replay window) and, in echo mode, sends every
 * AUDIO payload straight back with its own sequence counter and the client's timestamp.
 */
export class FakeVoiceServer {
  readonly key = createVoiceKey();
  readonly voiceId = 0x1234_5678;
  readonly cipher = new VoiceCipher(this.key, VoiceDirection.SERVER_TO_CLIENT);
  readonly received = { hello: 0, heartbeat: 0, audio: 0, rejected: 0, markers: 0 };
  /** Timestamps of the AUDIO packets received, in arrival order. */
  readonly audioTimestamps: number[] = [];
  echo = true;
  /** Answer HELLO/HEARTBEAT (false simulates a path where UDP replies never arrive). */
  answer = true;
  private readonly out = new Uint8Array(MAX_PACKET_BYTES);
  private readonly plain = new Uint8Array(MAX_PAYLOAD_BYTES);
  private readonly header = createVoiceHeader();

  private constructor(readonly socket: Socket) {
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
  }

  static async start(): Promise<FakeVoiceServer> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new FakeVoiceServer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  binding(frameMs: 10 | 20 = 20): VoiceBinding {
    return {
      voiceId: this.voiceId,
      key: this.key,
      udpHost: '127.0.0.1',
      udpPort: this.port,
      sampleRate: 48_000,
      frameMs,
      bitrate: 64_000,
    };
  }

  private reply(type: VoicePacketType, flags: number, timestamp: number, payload: Uint8Array, to: RemoteInfo): void {
    const len = this.cipher.seal(
      { type, flags, voiceId: this.voiceId, sequence: this.cipher.nextSequence, timestamp },
      payload,
      this.out,
    );
    this.socket.send(Buffer.from(this.out.subarray(0, len)), to.port, to.address);
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const r = this.cipher.openInto(msg, this.plain, this.header);
    if (typeof r !== 'number') {
      this.received.rejected++;
      return;
    }
    const h = this.header;
    if (h.type === VoicePacketType.HELLO || h.type === VoicePacketType.HEARTBEAT) {
      if (h.type === VoicePacketType.HELLO) this.received.hello++;
      else this.received.heartbeat++;
      const sentAt = readTimeBody(this.plain, r);
      if (sentAt === null || !this.answer) return;
      const type = h.type === VoicePacketType.HELLO ? VoicePacketType.HELLO_ACK : VoicePacketType.HEARTBEAT_ACK;
      this.reply(type, 0, Date.now() % 0x1_0000_0000, encodeAckBody(ackFor(sentAt, this.cipher.replay)), rinfo);
      return;
    }
    if (h.type === VoicePacketType.AUDIO) {
      this.received.audio++;
      if (h.flags & 1) this.received.markers++;
      this.audioTimestamps.push(h.timestamp);
      if (this.echo) this.reply(VoicePacketType.AUDIO, h.flags, h.timestamp, this.plain.slice(0, r), rinfo);
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
