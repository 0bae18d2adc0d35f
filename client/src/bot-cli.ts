#!/usr/bin/env node
/**
 * voice-bot: a headless voice client on the command line.
 *
 *   voice-bot --server http://127.0.0.1:7800 --nick bot1 --channel Lobby [--create]
 *             [--tone 440 [--dbfs -20] | --wav in.wav [--loop]] [--record out.wav]
 *             [--seconds 10] [--transport udp|ws] [--heartbeat-ms 5000] [--stats-ms 2000]
 *             [--streams 4] [--redundancy auto|on|off]
 *
 * Prints one JSON line of stats every --stats-ms (default 2 s) and a final one with "final": true.
 * From the repository: node --conditions=source --import tsx client/src/bot-cli.ts ...
 */
import { parseArgs } from 'node:util';
import { writeWav } from '@voice/media';
import {
  PRODUCT_STREAMS,
  ToneSource,
  VoiceClient,
  WavSource,
  type AudioSource,
  type VoiceClientStats,
} from './index.js';

const USAGE = `usage: voice-bot --server http://127.0.0.1:7800 (--nick NAME | --token TOKEN) --channel NAME_OR_ID
                 [--create] [--password PW] [--tone HZ [--dbfs DB] | --wav FILE [--loop]]
                 [--record FILE.wav] [--seconds N] [--transport udp|ws] [--heartbeat-ms MS] [--stats-ms MS]
                 [--streams 1-8 (speakers received separately and mixed here; default 4; 1: the server mixes)]
                 [--redundancy auto|on|off (RED: repeat the previous frame on a lossy uplink; default auto)]`;

function die(message: string): never {
  process.stderr.write(`voice-bot: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function num(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) die(`--${name} must be a number in [${min}, ${max}]`);
  return n;
}

const round = (v: number | null, digits = 1): number | null =>
  v === null ? null : Number(v.toFixed(digits));

/** The figures that matter for a voice link, rounded for a log line. */
function summary(c: VoiceClient, startedAt: number): Record<string, unknown> {
  const s: VoiceClientStats = c.stats();
  const frameMs = s.session?.frameMs ?? 20;
  // One-way estimate: half the voice RTT, plus what our jitter buffer holds, plus one frame of
  // packetisation and Opus look-ahead. The server's own buffering and mixing are not in it.
  const oneWay = s.rttMs === null ? null : s.rttMs / 2 + s.bufferMs + frameMs + 6.5;
  // Downstream packets carrying audio: the mix (AUDIO) and the speakers forwarded separately (STREAM).
  const received = s.audioReceived + s.streamReceived + s.lost;
  return {
    t: round((performance.now() - startedAt) / 1000, 2),
    channel: s.channelId,
    transport: s.transport,
    ready: s.ready,
    sent: s.audioSent,
    received: s.audioReceived + s.streamReceived,
    streams: s.streams,
    sources: s.session?.sources?.active ?? 0,
    rttMs: round(s.rttMs),
    rttP50Ms: round(s.rttP50Ms),
    estOneWayMs: round(oneWay),
    lossDown: received > 0 ? round(s.lost / received, 4) : 0,
    lost: s.lost,
    lossUp: round(s.upstreamLoss, 4),
    lostUp: s.upstreamPacketsLost,
    late: s.late,
    duplicates: s.duplicates,
    concealed: s.concealed,
    redRecovered: s.redRecovered,
    redSent: s.redSent,
    underruns: s.underruns,
    jitterMs: round(s.jitterMs),
    bufferMs: s.bufferMs,
    targetMs: s.targetMs,
    signalingRttMs: round(s.signalingRttMs),
    server: s.server,
  };
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        server: { type: 'string' },
        nick: { type: 'string' },
        token: { type: 'string' },
        channel: { type: 'string' },
        create: { type: 'boolean', default: false },
        password: { type: 'string' },
        tone: { type: 'string' },
        dbfs: { type: 'string' },
        wav: { type: 'string' },
        loop: { type: 'boolean', default: false },
        record: { type: 'string' },
        seconds: { type: 'string' },
        transport: { type: 'string', default: 'udp' },
        'heartbeat-ms': { type: 'string' },
        'stats-ms': { type: 'string' },
        streams: { type: 'string' },
        redundancy: { type: 'string', default: 'auto' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    die((err as Error).message);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (!args.server) die('--server is required');
  if (!args.nick && !args.token) die('--nick or --token is required');
  if (!args.channel) die('--channel is required');
  if (args.tone !== undefined && args.wav !== undefined) die('--tone and --wav exclude each other');
  if (args.transport !== 'udp' && args.transport !== 'ws') die('--transport must be udp or ws');
  const tone = num('tone', args.tone, 1, 23_999);
  const dbfs = num('dbfs', args.dbfs, -120, 0) ?? -20;
  const seconds = num('seconds', args.seconds, 0, 1e7);
  const heartbeatMs = num('heartbeat-ms', args['heartbeat-ms'], 50, 60_000);
  const statsMs = num('stats-ms', args['stats-ms'], 100, 3_600_000) ?? 2000;
  const streams = num('streams', args.streams, 1, 8) ?? PRODUCT_STREAMS;
  if (!Number.isInteger(streams)) die('--streams must be an integer in [1, 8]');
  const redundancy = args.redundancy;
  if (redundancy !== 'auto' && redundancy !== 'on' && redundancy !== 'off')
    die('--redundancy must be auto, on or off');

  let source: AudioSource | undefined;
  try {
    if (tone !== undefined) source = new ToneSource(tone, dbfs);
    else if (args.wav !== undefined) source = new WavSource(args.wav, { loop: args.loop });
  } catch (err) {
    die((err as Error).message);
  }

  const startedAt = performance.now();
  const client = await VoiceClient.connect({
    server: args.server,
    ...(args.token ? { token: args.token } : { nickname: args.nick! }),
    clientName: 'voice-bot/0.1.0',
    transport: args.transport,
    channel: args.channel,
    create: args.create,
    ...(args.password !== undefined ? { password: args.password } : {}),
    ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
    streams,
    redundancy,
    ...(source ? { source } : {}),
    record: args.record !== undefined,
    // A timed recording keeps the whole run (up to a day); an open-ended one keeps the default window.
    ...(args.record !== undefined && seconds !== undefined
      ? { recordMaxSeconds: Math.min(86_400, Math.max(1, Math.ceil(seconds) + 1)) }
      : {}),
  });
  client.on('transport', (t) => process.stderr.write(`voice-bot: voice now over ${t}\n`));
  client.on('left', (reason) => process.stderr.write(`voice-bot: left the channel (${reason})\n`));
  client.on('problem', (err) => process.stderr.write(`voice-bot: ${String(err)}\n`));
  client.waitReady(10_000).catch((err: unknown) => process.stderr.write(`voice-bot: ${String(err)}\n`));

  let finishing = false;
  const finish = async (code: number): Promise<void> => {
    if (finishing) return;
    finishing = true;
    clearInterval(timer);
    if (stopTimer) clearTimeout(stopTimer);
    process.stdout.write(`${JSON.stringify({ ...summary(client, startedAt), final: true })}\n`);
    const rec = client.recording();
    await client.close();
    if (args.record !== undefined) {
      await writeWav(args.record, rec.samples);
      process.stderr.write(
        `voice-bot: wrote ${(rec.samples.length / 48_000).toFixed(2)} s to ${args.record}\n`,
      );
    }
    process.exitCode = code;
  };
  const timer = setInterval(
    () => process.stdout.write(`${JSON.stringify(summary(client, startedAt))}\n`),
    statsMs,
  );
  const stopTimer = seconds !== undefined ? setTimeout(() => void finish(0), seconds * 1000) : null;
  client.on('disconnected', (code, reason) => {
    process.stderr.write(`voice-bot: signaling closed (${code} ${reason})\n`);
    void finish(1);
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void finish(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`voice-bot: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
