import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import {
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  encodeTimeBody,
  type VoiceBinding,
} from '@voice/protocol';
import { dgramDescriptor, loadNativeUdp, parseIPv4 } from '@voice/media';
import { Registry } from 'prom-client';
import { VoiceCounters } from '../src/voice/counters.js';
import { registerVoiceMetrics } from '../src/voice/metrics.js';
import { BatchEgress } from '../src/voice/egress-batch.js';
import { DgramEgress } from '../src/voice/egress-dgram.js';
import { VoiceSocket } from '../src/voice/udp.js';
import type { VoiceEndpoint } from '../src/voice/endpoint.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';
import { newSpaceUsed } from '../../test-support/heap.js';

// scripts/provision.mjs builds the addon before the tests: its absence is a failure, not a skip.
const addon = loadNativeUdp();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const sockets: Socket[] = [];
let srv: TestServer | null = null;
afterEach(async () => {
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  await srv?.stop();
  srv = null;
});

async function bound(): Promise<Socket> {
  const s = createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

/** A raw member: sends sealed packets to the server, keeps the audio packets it receives. */
class Peer {
  readonly cipher: VoiceCipher;
  readonly audio: { seq: number; payload: Uint8Array; fromPort: number }[] = [];
  acks = 0;
  seq = 0;
  constructor(
    readonly sock: Socket,
    readonly b: VoiceBinding,
  ) {
    this.cipher = new VoiceCipher(b.key, VoiceDirection.CLIENT_TO_SERVER);
    const out = new Uint8Array(1000);
    sock.on('message', (msg, info) => {
      const r = this.cipher.open(msg, out);
      if (r.ok && r.header.type === VoicePacketType.AUDIO)
        this.audio.push({
          seq: r.header.sequence,
          payload: out.slice(0, r.payloadLength),
          fromPort: info.port,
        });
      if (r.ok && r.header.type === VoicePacketType.HELLO_ACK) this.acks++;
    });
  }
  send(type: number, payload: Uint8Array, timestamp = 0): void {
    const buf = new Uint8Array(1100);
    const n = this.cipher.seal(
      { type: type as never, flags: 0, voiceId: this.b.voiceId, sequence: this.seq++, timestamp },
      payload,
      buf,
    );
    this.sock.send(buf.subarray(0, n), this.b.udpPort, '127.0.0.1');
  }
}

/** `members` raw peers (users `<prefix>-<i>`) in a new channel, each registered with a HELLO. */
async function channelOf(s: TestServer, prefix: string, members: number): Promise<[Peer, ...Peer[]]> {
  const users = [];
  for (let i = 0; i < members; i++) users.push(await s.user(`${prefix}-${i}`));
  const { channel } = await users[0]!.ws.request('channel.create', { name: prefix });
  const peers: Peer[] = [];
  for (const u of users)
    peers.push(
      new Peer(await bound(), (await u.ws.request('channel.join', { channelId: channel.id })).voice),
    );
  await registered(peers);
  return peers as [Peer, ...Peer[]];
}

/** Calls `frame(i)` for `frames` 20 ms frames, in real time. */
async function realTime(frames: number, frame: (i: number) => void): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) {
    frame(i);
    const wait = t0 + (i + 1) * 20 - performance.now();
    if (wait > 0) await sleep(wait);
  }
}

/** Each peer says HELLO and has its answer: the server knows where to send to all of them. */
async function registered(peers: Peer[]): Promise<void> {
  for (const p of peers) p.send(VoicePacketType.HELLO, encodeTimeBody(0));
  await expect.poll(() => peers.every((p) => p.acks === 1), { timeout: 5_000 }).toBe(true);
}

/**
 * One speaker and eight listeners in a channel: the speaker sends `frames` distinct payloads in
 * real time; a lone speaker is forwarded packet for packet, so every listener must receive those
 * payloads, in order, from the server's UDP port.
 */
async function lonelySpeaker(
  s: TestServer,
  frames: number,
): Promise<{ sent: Uint8Array[]; listeners: Peer[] }> {
  const [speaker, ...listeners] = await channelOf(s, 'egress', 9);
  const sent: Uint8Array[] = [];
  await realTime(frames, (i) => {
    // Opus-sized payloads of varied length, each one distinct.
    const payload = new Uint8Array(60 + ((i * 37) % 200)).map((_, k) => (i * 13 + k * 7) & 0xff);
    sent.push(payload);
    speaker.send(VoicePacketType.AUDIO, payload, i * 960);
  });
  // A sender stalled by a loaded machine may see a packet or two dropped as late by the server:
  // that is the channel's rule, not the egress's. What the egress must do: deliver every packet it
  // took. The listeners' audio adds up to the server's packets out, less the 9 HELLO acks.
  await expect
    .poll(() => Math.min(...listeners.map((l) => l.audio.length)), { timeout: 5_000 })
    .toBeGreaterThanOrEqual(frames * 0.8);
  await sleep(200); // the channel's last deferred forwards, if any
  const c = s.voice.counters;
  const received = () => listeners.reduce((n, l) => n + l.audio.length, 0);
  await expect.poll(() => c.packetsOut - 9 - received(), { timeout: 5_000 }).toBe(0);
  return { sent, listeners };
}

/**
 * Every listener got the same packets, byte for byte, in the order they were sent (a subsequence
 * of `sent`: at least 80 % of it), each once, from the one port clients know.
 */
function expectForwardedExactly(s: TestServer, sent: Uint8Array[], listeners: Peer[]): void {
  const first = listeners[0]!.audio.map((a) => a.payload);
  expect(first.length).toBeGreaterThanOrEqual(sent.length * 0.8);
  let k = 0;
  for (const p of first) {
    while (k < sent.length && !Buffer.from(sent[k]!).equals(p)) k++;
    expect(k, 'received in the order sent, byte for byte').toBeLessThan(sent.length);
    k++;
  }
  for (const l of listeners) {
    expect(l.audio.map((a) => a.payload)).toEqual(first);
    // In order (the server's sequence per listener only grows), from the one port clients know.
    for (let i = 1; i < l.audio.length; i++) expect(l.audio[i]!.seq).toBeGreaterThan(l.audio[i - 1]!.seq);
    expect(new Set(l.audio.map((a) => a.fromPort))).toEqual(new Set([s.udpPort]));
  }
}

describe('UDP egress', () => {
  it('sends with sendmmsg by default: a packet to each of 8 listeners leaves in one batch, byte for byte', async () => {
    expect(addon, 'voice_udp.node not built: run scripts/build-native.mjs').not.toBeNull();
    srv = await startTestServer();
    expect(srv.voice.udpEgress).toBe('sendmmsg');
    const frames = 50;
    const { sent, listeners } = await lonelySpeaker(srv, frames);
    expectForwardedExactly(srv, sent, listeners);
    const c = srv.voice.counters;
    expect(c.sendErrors).toBe(0);
    // Each arriving packet goes to all 8 listeners in one batch (plus the HELLO acks): far fewer
    // batches than packets. One send per packet would make them equal.
    expect(c.packetsOut).toBeGreaterThanOrEqual(frames * 0.8 * 8);
    expect(c.udpBatches).toBeGreaterThan(0);
    expect(c.packetsOut / c.udpBatches).toBeGreaterThan(4);
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`^voice_udp_send_batches_total ${c.udpBatches}$`, 'm'));
  });

  it('starts on sendmmsg when it is required (udpSend: sendmmsg), where the addon is built', async () => {
    srv = await startTestServer({ udpSend: 'sendmmsg' });
    expect(srv.voice.udpEgress).toBe('sendmmsg');
  });

  it('falls back to node:dgram when told to (udpSend: dgram), and delivers the same', async () => {
    srv = await startTestServer({ udpSend: 'dgram' });
    expect(srv.voice.udpEgress).toBe('dgram');
    const { sent, listeners } = await lonelySpeaker(srv, 25);
    expectForwardedExactly(srv, sent, listeners);
    expect(srv.voice.counters.udpBatches).toBe(0);
    expect(srv.voice.counters.sendErrors).toBe(0);
  });

  it('mixes of three speakers reach every listener through the batch, each tick in one batch', async () => {
    srv = await startTestServer();
    const peers = await channelOf(srv, 'mix', 8);
    const { createOpus, sineInt16 } = await import('@voice/media');
    const opus = await createOpus({ backend: 'opusscript' });
    const enc = [0, 1, 2].map(() => opus.createEncoder({ frameSamples: 960, bitrate: 32_000 }));
    const tones = [sineInt16(960, 440, -20), sineInt16(960, 1000, -20), sineInt16(960, 700, -20)];
    const out = new Uint8Array(1000);
    const before = { ...srv.voice.counters };
    await realTime(50, (i) => {
      for (const k of [0, 1, 2]) {
        const n = enc[k]!.encode(tones[k]!, out);
        peers[k]!.send(VoicePacketType.AUDIO, out.subarray(0, n), i * 960);
      }
    });
    for (const e of enc) e.destroy();
    // Every member gets mixes (speakers their mix-minus, listeners the shared mix), one per tick
    // once the channel's jitter buffers have started (a loaded machine starts them later).
    await expect
      .poll(() => Math.min(...peers.map((p) => p.audio.length)), { timeout: 5_000 })
      .toBeGreaterThan(30);
    const c = srv.voice.counters;
    const packets = c.packetsOut - before.packetsOut;
    const batches = c.udpBatches - before.udpBatches;
    // Three speakers: nobody hears a lone speaker, so nothing is forwarded on arrival and all 8
    // packets of a tick (3 mix-minus, 5 shared mix) leave in the flush after it: one batch per
    // tick, plus a few for acks or ticks split by a stall. One per packet would be 8 times as many.
    expect(packets).toBeGreaterThanOrEqual(8 * 30);
    expect(packets / batches).toBeGreaterThan(6);
    expect(c.sendErrors).toBe(0);
    // Each packet leaves once, in order: every member's sequence numbers only grow.
    for (const p of peers)
      for (let i = 1; i < p.audio.length; i++) expect(p.audio[i]!.seq).toBeGreaterThan(p.audio[i - 1]!.seq);
  });
});

describe('BatchEgress on a real socket', () => {
  const endpoint = (address: string, port: number) =>
    ({ udpAddress: address, udpAddress32: parseIPv4(address), udpPort: port }) as VoiceEndpoint;

  it('sends on its own without a flush (nothing waits for a tick), and counts failures by reason', async () => {
    const tx = await bound();
    const rx = await bound();
    const got: Buffer[] = [];
    rx.on('message', (m) => got.push(m));
    const counters = new VoiceCounters();
    const reported: unknown[] = [];
    const egress = new BatchEgress(addon!, dgramDescriptor(tx)!, counters, (e) => reported.push(e));
    const ok = endpoint('127.0.0.1', rx.address().port);
    expect(egress.send(new Uint8Array([1, 2, 3]), 3, ok)).toBe(true);
    expect(egress.send(new Uint8Array([9]), 1, endpoint('127.0.0.1', 0))).toBe(true); // EINVAL at send
    expect(egress.send(new Uint8Array([9]), 1, endpoint('255.255.255.255', 9))).toBe(true); // EACCES
    expect(egress.send(new Uint8Array(2000), 2000, ok)).toBe(false); // over MAX_PACKET_BYTES
    expect(egress.send(new Uint8Array([4, 5]), 2, ok)).toBe(true);
    await expect.poll(() => got.length).toBe(2);
    expect(got.map((m) => [...m])).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    expect(counters.udpBatches).toBe(1);
    expect(counters.sendErrorsBy).toMatchObject({ bad_address: 1, too_long: 1, not_permitted: 1 });
    // 255.255.255.255 without SO_BROADCAST: refused (EACCES), counted as not permitted.
    expect(counters.sendErrors).toBe(3);
    expect(reported).toEqual([]);
    // After close, queued packets are dropped and counted, later ones refused.
    egress.send(new Uint8Array([7]), 1, ok);
    egress.close();
    egress.close();
    expect(egress.send(new Uint8Array([8]), 1, ok)).toBe(false);
    expect(counters.sendErrorsBy.socket_closed).toBe(2);
    await sleep(50);
    expect(got.length).toBe(2);
  });

  it('allocates nothing per packet: 20,000 sends through the egress', async () => {
    const tx = await bound();
    const sink = await bound();
    const counters = new VoiceCounters();
    const egress = new BatchEgress(addon!, dgramDescriptor(tx)!, counters, () => {});
    const ep = endpoint('127.0.0.1', sink.address().port);
    const packet = new Uint8Array(132).fill(5);
    const run = (n: number) => {
      for (let i = 0; i < n; i++) egress.send(packet, 132, ep);
      egress.flush();
    };
    run(20_000); // warm up
    const before = newSpaceUsed();
    run(20_000);
    const bytes = newSpaceUsed() - before;
    expect(bytes).toBeGreaterThanOrEqual(0);
    expect(bytes).toBeLessThan(16 * 1024);
    expect(counters.udpBatches).toBeGreaterThanOrEqual(2 * Math.ceil(20_000 / 512));
    egress.close();
  });
});

describe('a socket closed under the egress', () => {
  it('costs each packet one socket_closed, whichever egress sends (sendmmsg: EBADF; dgram: not running)', async () => {
    const rx = await bound();
    const ep = {
      udpAddress: '127.0.0.1',
      udpAddress32: parseIPv4('127.0.0.1'),
      udpPort: rx.address().port,
    } as VoiceEndpoint;
    for (const kind of ['sendmmsg', 'dgram'] as const) {
      const sock = new VoiceSocket(
        () => {},
        () => {},
      );
      await sock.bind('127.0.0.1', 0);
      const counters = new VoiceCounters();
      const reported: unknown[] = [];
      const egress =
        kind === 'sendmmsg'
          ? new BatchEgress(addon!, sock.descriptor!, counters, (e) => reported.push(e))
          : new DgramEgress(sock, counters);
      // The descriptor closes now (the callback comes later): nothing in between can reuse it.
      const closed = sock.close();
      for (let i = 0; i < 3; i++) egress.send(new Uint8Array([i]), 1, ep);
      egress.flush();
      await closed;
      expect({ ...counters.sendErrorsBy }, kind).toMatchObject({ socket_closed: 3, other: 0 });
      expect(counters.sendErrors, kind).toBe(3);
      expect(reported, kind).toEqual([]);
      egress.close();
    }
  });
});

describe('send errors in /metrics', () => {
  it('are exported by reason, with the batch count', async () => {
    const counters = new VoiceCounters();
    const registry = new Registry();
    registerVoiceMetrics(registry, { counters, channelStats: () => [] });
    counters.sendFailed('would_block', 3);
    counters.sendFailed('not_permitted');
    counters.udpBatches = 7;
    const text = await registry.metrics();
    expect(text).toMatch(/^voice_send_errors_total\{reason="would_block"\} 3$/m);
    expect(text).toMatch(/^voice_send_errors_total\{reason="not_permitted"\} 1$/m);
    expect(text).not.toMatch(/reason="too_long"/);
    expect(text).toMatch(/^voice_udp_send_batches_total 7$/m);
    expect(counters.sendErrors).toBe(4);
  });
});
