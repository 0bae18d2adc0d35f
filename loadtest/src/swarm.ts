/**
 * A UDP voice swarm: many members in many channels, some of them speaking pre-encoded Opus at real
 * time, all of them registered over UDP and counting what they receive. It does not decode: it is a
 * load generator, built to cost as little CPU as possible per packet so one core can drive a server.
 * The members are the load-test engine's lean users (voice/lean-plane.ts); this file keeps the API
 * and command line the capacity benchmark (cluster/bench/capacity.ts) drives.
 *
 *   node --conditions=source --import tsx loadtest/src/swarm.ts --server http://127.0.0.1:7800 \
 *     --channels 10 --members 10 --speakers 2 --seconds 20
 */
import { parseArgs } from 'node:util';
import { createOpus } from '@voice/media';
import { RestClient } from '@voice/client';
import { RawSignaling } from './raw-signaling.js';
import { LeanPlane, type LeanMember } from './voice/lean-plane.js';

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
  /**
   * hello `streams` of every member (README 8.8; default 1, mixes only): with the grant at least the
   * speakers, each member receives every other speaker's packets as STREAM packets instead of a mix.
   */
  streams?: number;
  log?: (line: string) => void;
}

export interface SwarmResult {
  members: number;
  packetsSent: number;
  /** Datagrams received, less `duplicates`. */
  packetsReceived: number;
  /** AUDIO packets a member received twice for one timestamp (the server sent a frame twice). */
  duplicates: number;
  /**
   * Received / expected packets: one mix per tick for a listener while anyone speaks, or, streaming,
   * one STREAM packet per other speaker and frame.
   */
  deliveryRatio: number;
  setupMs: number;
}

export async function runSwarm(o: SwarmOptions): Promise<SwarmResult> {
  const log = o.log ?? (() => {});
  const prefix = o.prefix ?? `sw${Date.now().toString(36)}`;
  const wsUrl = o.server.replace(/^http/, 'ws') + '/ws';
  const t0 = performance.now();
  const plane = new LeanPlane({ opus: await createOpus(), phases: o.phases ?? 10 });
  const members: LeanMember[] = [];
  const sockets: RawSignaling[] = [];
  const streams = o.streams ?? 1;
  try {
    for (let c = 0; c < o.channels; c++) {
      let channelId: string | undefined;
      for (let m = 0; m < o.members; m++) {
        const rest = new RestClient(o.server);
        const { token } = await rest.login(`${prefix}-${c}-${m}`);
        const ws = await RawSignaling.connect(wsUrl, token, {
          client: 'swarm',
          ...(streams > 1 ? { streams } : {}),
        });
        sockets.push(ws);
        if (channelId === undefined) {
          channelId = (await ws.request('channel.create', { name: `${prefix}-${c}` })).channel.id;
        }
        const { voice } = await ws.request('channel.join', { channelId: channelId as never });
        members.push(await plane.add(voice, m < o.speakers));
      }
      log(`channel ${c + 1}/${o.channels} ready`);
    }
    const setupMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 200));
    for (const b of members) b.received = b.duplicates = 0;
    plane.start();
    await new Promise((r) => setTimeout(r, o.seconds * 1000));
    plane.stop();
    log('done sending');
    await new Promise((r) => setTimeout(r, 300));
    const received = members.reduce((a, b) => a + b.received - b.duplicates, 0);
    const duplicates = members.reduce((a, b) => a + b.duplicates, 0);
    // Every member hears someone while speakers speak (a speaker hears the other speakers; a lone
    // speaker hears no one), plus heartbeat acks.
    const speakers = members.filter((b) => b.speaker).length;
    const hearing = o.speakers >= 2 ? members.length : members.length - speakers;
    // Streaming (a channel's speakers within the grant): a packet per other speaker and frame.
    const perChannel = o.speakers;
    const streamed =
      streams >= 2 && perChannel <= streams
        ? (members.length - speakers) * perChannel + speakers * (perChannel - 1)
        : hearing;
    const expected = streamed * plane.frame + members.length * Math.floor(o.seconds / 5);
    return {
      members: members.length,
      packetsSent: plane.sent,
      packetsReceived: received,
      duplicates,
      deliveryRatio: expected > 0 ? received / expected : 0,
      setupMs,
    };
  } finally {
    plane.close();
    for (const ws of sockets) ws.close();
  }
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
      streams: { type: 'string', default: '1' },
    },
  });
  const result = await runSwarm({
    server: values.server,
    channels: Number(values.channels),
    members: Number(values.members),
    speakers: Number(values.speakers),
    seconds: Number(values.seconds),
    phases: Number(values.phases),
    streams: Number(values.streams),
    ...(values.prefix ? { prefix: values.prefix } : {}),
    log: (l) => process.stderr.write(l + '\n'),
  });
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}
