import { afterEach, describe, expect, it } from 'vitest';
import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  createVoiceHeader,
  encodeTimeBody,
} from '@voice/protocol';
import type { Session } from '../src/app/sessions.js';
import { VoiceAuth } from '../src/voice/auth.js';
import type { ChannelCore } from '../src/voice/channel.js';
import { VoiceCounters } from '../src/voice/counters.js';
import type { VoiceEndpoint } from '../src/voice/endpoint.js';

/** VoiceAuth alone: who may cost a decryption, with real keys and real AES-GCM. */

const auths: VoiceAuth[] = [];
afterEach(() => {
  for (const a of auths.splice(0)) a.clear();
});

function setup(budgets: ConstructorParameters<typeof VoiceAuth>[1] = {}) {
  const counters = new VoiceCounters();
  const auth = new VoiceAuth(counters, budgets);
  auths.push(auth);
  return { counters, auth };
}

/** A member whose WebSocket comes from `host`. */
function member(auth: VoiceAuth, host: string) {
  const session = { conn: { address: host } } as unknown as Session;
  const ep = auth.register(session, {} as ChannelCore);
  const client = new VoiceCipher(ep.key, VoiceDirection.CLIENT_TO_SERVER);
  let seq = 0;
  return {
    ep,
    /** A genuine HELLO, or one with a broken tag. */
    packet(forged = false): Uint8Array {
      const out = new Uint8Array(MAX_PACKET_BYTES);
      const n = client.seal(
        { type: VoicePacketType.HELLO, flags: 0, voiceId: ep.voiceId, sequence: seq++, timestamp: 0 },
        encodeTimeBody(1),
        out,
      );
      if (forged) out[n - 1]! ^= 1;
      return out.subarray(0, n);
    },
  };
}

const plain = new Uint8Array(MAX_PAYLOAD_BYTES);
const header = createVoiceHeader();
const open = (auth: VoiceAuth, p: Uint8Array, address: string, port: number) =>
  auth.open(p, address, port, undefined, plain, header);
/** What the ingress does with an authenticated packet: the endpoint adopts the address. */
function adopt(ep: VoiceEndpoint, address: string, port: number): void {
  ep.udpAddress = address;
  ep.udpPort = port;
}

describe('VoiceAuth budgets for packets from foreign addresses', () => {
  it('lets 300 members behind one address (their WebSocket host) register at once', () => {
    const { auth, counters } = setup();
    const ms = Array.from({ length: 300 }, () => member(auth, '203.0.113.7'));
    const opened = ms.filter((m, i) => open(auth, m.packet(), '203.0.113.7', 40_000 + i) !== null).length;
    expect(opened).toBe(300);
    expect(counters.drops.rate_limited + counters.drops.foreign_global).toBe(0);
  });

  it('spends at most the voice id budget on a flood from elsewhere; the registered address always opens', () => {
    const { auth, counters } = setup({ perVoiceId: { rate: 20, burst: 20 } });
    const m = member(auth, '198.51.100.1');
    expect(open(auth, m.packet(), '198.51.100.1', 5000)).not.toBeNull();
    adopt(m.ep, '198.51.100.1', 5000);
    let decrypted = 0;
    for (let i = 0; i < 1000; i++) {
      open(auth, m.packet(true), `10.0.${i >> 8}.${i & 255}`, 6000);
      // Interleaved genuine packets from the registered address: every one opens.
      if (i % 10 === 0) expect(open(auth, m.packet(), '198.51.100.1', 5000)).not.toBeNull();
    }
    decrypted = counters.drops.AUTH_FAILED;
    // Burst 20 plus what 20/s refills while the loop runs (well under a second).
    expect(decrypted).toBeGreaterThanOrEqual(20);
    expect(decrypted).toBeLessThanOrEqual(40);
    expect(counters.drops.foreign_voice_id).toBe(1000 - decrypted);
  });

  it('bounds one foreign address across voice ids, and the node across addresses', () => {
    const { auth, counters } = setup({
      perVoiceId: { rate: 1, burst: 1000 },
      perAddress: { rate: 1, burst: 30, maxAddresses: 100 },
      global: { rate: 1, burst: 50 },
    });
    const ms = Array.from({ length: 40 }, () => member(auth, '192.0.2.1'));
    // One address, 40 voice ids x 2 forged packets: 30 reach the cipher (its bucket), the rest not.
    for (const m of ms) for (let k = 0; k < 2; k++) open(auth, m.packet(true), '10.9.9.9', 1);
    expect(counters.drops.AUTH_FAILED).toBe(30);
    expect(counters.drops.rate_limited).toBe(50);
    // Many addresses: the node-wide budget (50, 30 of it spent) stops the rest.
    for (let i = 0; i < 100; i++) open(auth, ms[i % 40]!.packet(true), `10.1.1.${i}`, 1);
    expect(counters.drops.AUTH_FAILED).toBe(50);
    expect(counters.drops.foreign_global).toBe(80);
  });
});
