import { createSocket, type Socket } from 'node:dgram';
import { VoiceCipher, VoiceDirection, type VoiceBinding } from '@voice/protocol';

/**
 * The server's voice path driven straight from protocol/README.md, with no client library: a raw
 * UDP socket, our own cipher, our own Opus encoder. Proves the wire contract, not just our client.
 */
export class RawPeer {
  readonly sock: Socket = createSocket('udp4');
  readonly cipher: VoiceCipher;
  readonly received: {
    type: number;
    payload: Uint8Array;
    seq: number;
    ts: number;
    flags: number;
    at: number;
  }[] = [];
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
          ts: r.header.timestamp,
          flags: r.header.flags,
          at: performance.now(),
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
