import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { VoicePacketType, type VoiceBinding } from '@voice/protocol';
import { LeanMember } from '../src/voice/lean-plane.js';

/** A datagram as the server sends it: the clear-text header (protocol README 9), a tag's worth of bytes. */
function datagram(type: VoicePacketType, timestamp: number): Buffer {
  const b = Buffer.alloc(16 + 3 + 16);
  b[0] = 0x56;
  b[1] = 1;
  b[2] = type;
  b.writeUInt32BE(timestamp >>> 0, 12);
  return b;
}

describe('a lean user counting what it receives', () => {
  it('counts an AUDIO frame sent twice (same timestamp) once, and acks and STREAM packets as they come', () => {
    const sock = createSocket('udp4');
    try {
      const binding = { voiceId: 1, key: new Uint8Array(32), udpPort: 9 } as unknown as VoiceBinding;
      const m = new LeanMember(binding, sock, false);
      for (let f = 0; f < 40; f++) m.take(datagram(VoicePacketType.AUDIO, f * 960));
      m.take(datagram(VoicePacketType.AUDIO, 39 * 960)); // the newest again
      m.take(datagram(VoicePacketType.AUDIO, 30 * 960)); // ten frames back: still remembered
      m.take(datagram(VoicePacketType.HEARTBEAT_ACK, 39 * 960)); // a clock time, not a frame
      m.take(datagram(VoicePacketType.STREAM, 39 * 960)); // another speaker's timeline
      m.take(datagram(VoicePacketType.STREAM, 39 * 960));
      expect(m.received).toBe(45);
      expect(m.duplicates).toBe(2);
      // Memory is the last 16 frames (fixed per member): frame 0, 40 frames back, is not recalled.
      m.take(datagram(VoicePacketType.AUDIO, 0));
      expect(m.duplicates).toBe(2);
    } finally {
      sock.close();
    }
  });
});
