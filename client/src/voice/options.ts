import { MAX_STREAMS, Nickname, type AeadBackend, type VoiceSettings } from '@voice/protocol';
import type { JitterBufferOptions, OpusEncoderSettings, OpusFactory } from '@voice/media';
import type { PlayoutHook } from './playout.js';
import type { AudioSource } from './sources.js';
import type { TransportKind, UdpAddress } from './transport.js';

export interface VoiceClientOptions {
  /** Server base URL, http(s)://host:port. Signaling goes to ws(s)://host:port/ws. */
  server: string;
  /** Logs in with this nickname (ignored when `token` is given). */
  nickname?: string;
  /** An existing session token (from POST /api/v1/login). */
  token?: string;
  adminToken?: string;
  /** `hello.client`, for the server's logs (default 'voice-client/0.1.0'). */
  clientName?: string;
  /** 'udp' (default) or 'ws' (voice inside the signaling WebSocket). */
  transport?: TransportKind;
  /** With 'udp': carry voice over the WebSocket while UDP goes unanswered (default true). */
  wsFallback?: boolean;
  /** HEARTBEAT period, ms (default 5000; tests may use 500). */
  heartbeatMs?: number;
  /** HELLO retry period until HELLO_ACK, ms (default 1000). */
  helloRetryMs?: number;
  /** Send UDP here instead of the binding's address (e.g. a lossy relay in front of the server). */
  udpTarget?: UdpAddress;
  /** Local address for the UDP socket (default 127.0.0.1 for a loopback server, else 0.0.0.0). */
  bindHost?: string;
  /** Join this channel (id or name) right after connecting. */
  channel?: string;
  /** Create `channel` when no channel has that name. */
  create?: boolean;
  password?: string;
  /** Codec settings of `channel` when this client creates it (frame size, bitrate, complexity). */
  voice?: Partial<VoiceSettings>;
  /**
   * Speakers this client asks to receive as separate streams and mixes itself (`hello.streams`,
   * 1-8; protocol README 8.8): no server mix, no wait for its tick, no second Opus generation. The
   * server grants at most this (Welcome.streams). Default 1, mixes only: the library's callers
   * (tests of the server's mix, load tests) measure the mix; the desktop app and the bot CLI ask
   * for PRODUCT_STREAMS.
   */
  streams?: number;
  /**
   * Redundant audio (RED, protocol README 9.1): each packet also carries the previous frame, so a
   * single lost packet is rebuilt exactly (Meet's and Discord's answer to a lossy link). 'auto'
   * (default): asks the server for RED (it then sends RED to this client where it has it), and
   * sends it while the upstream loss the HEARTBEAT_ACKs report is over 1 % (and 15 s after);
   * 'on': always sends it; 'off': neither asks nor sends.
   */
  redundancy?: 'auto' | 'on' | 'off';
  /** Start sending this source after the first join. */
  source?: AudioSource;
  /** Opus backend to use; share one between many clients (load tests). Default: createOpus(). */
  opus?: OpusFactory;
  /** Encoder settings; bitrate defaults to the channel's, FEC to off. */
  encoder?: OpusEncoderSettings;
  /** Jitter buffer settings (frameMs comes from the channel). */
  jitter?: Omit<JitterBufferOptions, 'frameMs'>;
  /** Frames concealed when the jitter buffer runs dry right after audio (default 2). */
  drainConcealFrames?: number;
  /**
   * Time-scale modification in the playout (default true): excess delay in speech is given back by
   * removing pitch periods. False keeps every decoded sample (a measuring listener in tests).
   */
  timeStretch?: boolean;
  /**
   * 'timer' (default): playout runs on its own frame clock. 'pull': a sound card drives it through
   * `VoiceClient.pull()` (see client/README.md).
   */
  playoutClock?: 'timer' | 'pull';
  /**
   * Apply the server's timing advances (`voice.advance`): shift the send schedule so packets reach
   * the mixer just before its tick (default true). False ignores them (the server keeps working,
   * with up to a frame more delay for this sender when others speak too).
   */
  timingAdvance?: boolean;
  /** Keep the played-out audio (default true). */
  record?: boolean;
  /**
   * Longest recording kept, seconds (default 60, about 5.8 MB; at most 86400). Past it the older
   * half is discarded. A long-running client that does not need the recording sets `record: false`.
   */
  recordMaxSeconds?: number;
  /** Most sent frames remembered in `sentLog` (default 6000: 60 s of 10 ms frames, about 250 KB). */
  sentLogMax?: number;
  /**
   * AES-256-GCM for the voice packets (default: media's native OpenSSL addon when it loads, which
   * allocates nothing per packet, else node:crypto, which allocates a cipher per packet).
   */
  aead?: AeadBackend;
  /** Signaling request timeout, ms (default 10000). */
  requestTimeoutMs?: number;
  /** Receives every played frame (the desktop app's speaker output). */
  onPlayout?: PlayoutHook;
  /**
   * When signaling drops (a lost connection, or the server shutting down: `bye` UNAVAILABLE),
   * reconnect with the token within the server's grace period and carry on in the same channel
   * (default true). A kick, a ban or a protocol error (another `bye`, a 4xxx close) stays final.
   * False: the client closes and emits `disconnected`, as before.
   */
  resume?: boolean;
}

/** Bounded so that a client left running does not grow: a minute of audio and of sent frames. */
export const DEFAULT_RECORD_SECONDS = 60;
export const DEFAULT_SENT_LOG = 6_000;
/** Speakers a VoiceClient asks for as separate streams unless told (protocol README 8.8): none. */
export const DEFAULT_STREAMS = 1;
/** What the desktop app and the bot CLI ask for: the server's default grant (voice.maxStreams). */
export const PRODUCT_STREAMS = 4;

/** Options after validation, with defaults filled in. */
export interface ResolvedVoiceClientOptions extends VoiceClientOptions {
  serverUrl: URL;
  wsUrl: string;
  transport: TransportKind;
  wsFallback: boolean;
  heartbeatMs: number;
  helloRetryMs: number;
  record: boolean;
  recordMaxSeconds: number;
  sentLogMax: number;
  clientName: string;
  streams: number;
}

function fail(msg: string): never {
  throw new TypeError(`VoiceClient: ${msg}`);
}

function checkMs(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    fail(`${name} must be a number of ms in [${min}, ${max}], got ${typeof v === 'number' ? v : typeof v}`);
  }
  return v;
}

/** Checks options and fills defaults. Throws TypeError naming the bad option. */
export function resolveVoiceClientOptions(input: VoiceClientOptions): ResolvedVoiceClientOptions {
  if (typeof input !== 'object' || input === null) fail('options must be an object');
  const o = input;
  if (typeof o.server !== 'string' || o.server === '')
    fail('server must be a URL such as http://127.0.0.1:7800');
  let serverUrl: URL;
  try {
    serverUrl = new URL(o.server);
  } catch {
    fail(`server ${JSON.stringify(o.server)} is not a URL`);
  }
  if (serverUrl.protocol !== 'http:' && serverUrl.protocol !== 'https:') {
    fail(`server must be http:// or https://, got ${serverUrl.protocol}`);
  }
  if (
    o.token !== undefined &&
    (typeof o.token !== 'string' || o.token.length === 0 || o.token.length > 128)
  ) {
    fail('token must be a string of 1-128 characters');
  }
  if (o.token === undefined) {
    if (o.nickname === undefined) fail('give a nickname or a token');
    const n = Nickname.safeParse(o.nickname);
    if (!n.success) fail(`nickname: ${n.error.issues[0]?.message ?? 'invalid'}`);
  }
  const transport = o.transport ?? 'udp';
  if (transport !== 'udp' && transport !== 'ws')
    fail(`transport must be 'udp' or 'ws', got ${String(transport)}`);
  if (o.udpTarget !== undefined) {
    if (transport !== 'udp') fail("udpTarget needs transport 'udp'");
    const t = o.udpTarget as Partial<UdpAddress> | null;
    if (typeof t !== 'object' || t === null) fail('udpTarget must be {host, port}');
    if (typeof t.host !== 'string' || t.host === '') fail('udpTarget.host must be a non-empty string');
    if (typeof t.port !== 'number' || !Number.isInteger(t.port) || t.port < 1 || t.port > 65_535) {
      fail(`udpTarget.port must be an integer in 1..65535, got ${String(t.port)}`);
    }
  }
  if (o.bindHost !== undefined && (typeof o.bindHost !== 'string' || o.bindHost === '')) {
    fail('bindHost must be a non-empty string');
  }
  if (o.channel !== undefined && (typeof o.channel !== 'string' || o.channel.trim() === '')) {
    fail('channel must be a non-empty string');
  }
  if (o.create && o.channel === undefined) fail('create needs channel');
  if (o.source !== undefined && (typeof o.source !== 'object' || typeof o.source?.read !== 'function')) {
    fail('source must be an AudioSource');
  }
  if (o.source !== undefined && o.channel === undefined)
    fail('source needs channel (or call startVoice after join)');
  const heartbeatMs = checkMs('heartbeatMs', o.heartbeatMs, 50, 60_000) ?? 5000;
  const helloRetryMs = checkMs('helloRetryMs', o.helloRetryMs, 50, 60_000) ?? 1000;
  checkMs('requestTimeoutMs', o.requestTimeoutMs, 100, 600_000);
  const recordMaxSeconds = o.recordMaxSeconds ?? DEFAULT_RECORD_SECONDS;
  if (typeof recordMaxSeconds !== 'number' || !(recordMaxSeconds >= 1 && recordMaxSeconds <= 24 * 3600)) {
    fail('recordMaxSeconds must be in [1, 86400]');
  }
  const sentLogMax = o.sentLogMax ?? DEFAULT_SENT_LOG;
  if (!Number.isInteger(sentLogMax) || sentLogMax < 16 || sentLogMax > 1 << 24)
    fail('sentLogMax must be an integer in [16, 2^24]');
  if (
    o.drainConcealFrames !== undefined &&
    (!Number.isInteger(o.drainConcealFrames) || o.drainConcealFrames < 0 || o.drainConcealFrames > 50)
  ) {
    fail('drainConcealFrames must be an integer in [0, 50]');
  }
  const streams = o.streams ?? DEFAULT_STREAMS;
  if (!Number.isInteger(streams) || streams < 1 || streams > MAX_STREAMS)
    fail(`streams must be an integer in [1, ${MAX_STREAMS}], got ${String(streams)}`);
  if (o.onPlayout !== undefined && typeof o.onPlayout !== 'function') fail('onPlayout must be a function');
  if (
    o.redundancy !== undefined &&
    o.redundancy !== 'auto' &&
    o.redundancy !== 'on' &&
    o.redundancy !== 'off'
  )
    fail("redundancy must be 'auto', 'on' or 'off'");
  if (o.resume !== undefined && typeof o.resume !== 'boolean') fail('resume must be a boolean');
  if (o.timeStretch !== undefined && typeof o.timeStretch !== 'boolean')
    fail('timeStretch must be a boolean');
  if (o.timingAdvance !== undefined && typeof o.timingAdvance !== 'boolean')
    fail('timingAdvance must be a boolean');
  if (o.voice !== undefined && (typeof o.voice !== 'object' || o.voice === null))
    fail('voice must be an object of codec settings');
  if (o.playoutClock !== undefined && o.playoutClock !== 'timer' && o.playoutClock !== 'pull')
    fail("playoutClock must be 'timer' or 'pull'");
  const wsUrl = new URL('/ws', serverUrl);
  wsUrl.protocol = serverUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    ...o,
    serverUrl,
    wsUrl: wsUrl.toString(),
    transport,
    wsFallback: o.wsFallback ?? true,
    heartbeatMs,
    helloRetryMs,
    record: o.record ?? true,
    recordMaxSeconds,
    sentLogMax,
    clientName: o.clientName ?? 'voice-client/0.1.0',
    streams,
  };
}
