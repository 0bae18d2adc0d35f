/** The engine's settings: `config.voice` in a scenario file, checked once per worker. */
export interface EngineConfig {
  /** Server base URLs; users are spread over them (the cluster scenario gives several). */
  readonly targets: readonly string[];
  /** Prefix of nicknames and channel names, so runs do not meet on a shared server. */
  readonly runId: string;
  readonly adminToken?: string;
  /** Send voice UDP here instead of the server's address (the runner's lossy relay, for jitter runs). */
  readonly udpTarget?: { host: string; port: number };
}

/** One signaling user: log in, hello, list, then `cycles` of join/volume/mute/ping/leave, then hold. */
export interface SignalingStep {
  readonly cycles: number;
  /** Channels the users join at random (created on first use). */
  readonly channels: number;
  readonly thinkMs: number;
  /** Stay connected this long afterwards, pinging every `pingMs` (concurrent sessions). */
  readonly holdSeconds: number;
  readonly pingMs: number;
}

/** One voice user: joins its seat's channel, talks in turns, listens, measures. */
export interface VoiceStep {
  readonly transport: 'udp' | 'ws';
  readonly frameMs: 10 | 20;
  readonly seats: number;
  readonly speakers: number;
  readonly turnMs: number;
  readonly clickPeriodMs: number;
  /** After ready, wait this long before counting (the channel fills up). */
  readonly warmupSeconds: number;
  /** Counting window. */
  readonly seconds: number;
  /** Stay (and talk) this long after counting, so later arrivals count with a full channel. */
  readonly lingerSeconds: number;
  /** Emit e2e-delay samples into per-window histograms every this many seconds (0: off). */
  readonly reportEverySeconds: number;
  /**
   * Speakers each user asks to receive as separate streams (protocol README 8.8): 1 (default) hears
   * the server's mix; the desktop app asks for 4, and then the users mix the talkers themselves.
   */
  readonly streams: number;
}

const num = (v: unknown, name: string, min: number, max: number, dflt: number): number => {
  if (v === undefined) return dflt;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max)
    throw new TypeError(`${name} must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return n;
};
const int = (v: unknown, name: string, min: number, max: number, dflt: number): number => {
  const n = num(v, name, min, max, dflt);
  if (!Number.isInteger(n)) throw new TypeError(`${name} must be an integer, got ${n}`);
  return n;
};
const obj = (v: unknown, name: string): Record<string, unknown> => {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new TypeError(`${name} must be a mapping`);
  return v as Record<string, unknown>;
};

export function parseEngineConfig(target: unknown, voice: unknown, env: NodeJS.ProcessEnv): EngineConfig {
  const v = obj(voice, 'config.voice');
  const t = typeof target === 'string' ? target : '';
  const targets = t
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (targets.length === 0) throw new TypeError('config.target must name at least one server URL');
  for (const u of targets) {
    const p = new URL(u);
    if (p.protocol !== 'http:' && p.protocol !== 'https:') throw new TypeError(`target ${u} is not http(s)`);
  }
  const runId =
    env.VOICE_LT_RUN ?? (typeof v.runId === 'string' ? v.runId : Date.now().toString(36).slice(-5));
  if (!/^[A-Za-z0-9]{1,8}$/.test(runId)) throw new TypeError('runId: 1-8 letters or digits');
  const adminToken =
    env.VOICE_LT_ADMIN_TOKEN ?? (typeof v.adminToken === 'string' ? v.adminToken : undefined);
  let udpTarget: EngineConfig['udpTarget'];
  const ut = env.VOICE_LT_UDP_TARGET;
  if (ut) {
    const m = /^([^:]+):(\d{1,5})$/.exec(ut);
    if (!m) throw new TypeError('VOICE_LT_UDP_TARGET must be host:port');
    udpTarget = { host: m[1]!, port: Number(m[2]) };
  }
  return { targets, runId, ...(adminToken ? { adminToken } : {}), ...(udpTarget ? { udpTarget } : {}) };
}

export function parseSignalingStep(s: unknown): SignalingStep {
  const o = obj(s, 'signaling');
  return {
    cycles: int(o.cycles, 'signaling.cycles', 0, 10_000, 3),
    channels: int(o.channels, 'signaling.channels', 1, 10_000, 20),
    thinkMs: num(o.thinkMs, 'signaling.thinkMs', 0, 600_000, 200),
    holdSeconds: num(o.holdSeconds, 'signaling.holdSeconds', 0, 86_400, 0),
    pingMs: num(o.pingMs, 'signaling.pingMs', 100, 600_000, 1000),
  };
}

export function parseVoiceStep(s: unknown): VoiceStep {
  const o = obj(s, 'voice');
  const transport = o.transport ?? 'udp';
  if (transport !== 'udp' && transport !== 'ws') throw new TypeError("voice.transport must be 'udp' or 'ws'");
  const frameMs = int(o.frameMs, 'voice.frameMs', 10, 20, 20);
  if (frameMs !== 10 && frameMs !== 20) throw new TypeError('voice.frameMs must be 10 or 20');
  const seats = int(o.seats, 'voice.seats', 1, 1000, 10);
  return {
    transport,
    frameMs,
    seats,
    speakers: int(o.speakers, 'voice.speakers', 1, seats, Math.min(2, seats)),
    turnMs: num(o.turnMs, 'voice.turnMs', 100, 3_600_000, 4000),
    clickPeriodMs: num(o.clickPeriodMs, 'voice.clickPeriodMs', 100, 60_000, 1000),
    warmupSeconds: num(o.warmupSeconds, 'voice.warmupSeconds', 0, 3600, 2),
    seconds: num(o.seconds, 'voice.seconds', 1, 86_400, 10),
    lingerSeconds: num(o.lingerSeconds, 'voice.lingerSeconds', 0, 3600, 2),
    reportEverySeconds: num(o.reportEverySeconds, 'voice.reportEverySeconds', 0, 3600, 0),
    streams: int(o.streams, 'voice.streams', 1, 8, 1),
  };
}

/** One lean user (capacity runs): UDP registration, pre-encoded talk, packet counts, no decoding. */
export interface LeanStep {
  readonly seats: number;
  readonly speakers: number;
  readonly phases: number;
  readonly warmupSeconds: number;
  readonly seconds: number;
  readonly lingerSeconds: number;
}

export function parseLeanStep(s: unknown): LeanStep {
  const o = obj(s, 'lean');
  const seats = int(o.seats, 'lean.seats', 1, 1000, 10);
  return {
    seats,
    speakers: int(o.speakers, 'lean.speakers', 1, seats, Math.min(2, seats)),
    phases: int(o.phases, 'lean.phases', 1, 20, 10),
    warmupSeconds: num(o.warmupSeconds, 'lean.warmupSeconds', 0, 3600, 2),
    seconds: num(o.seconds, 'lean.seconds', 1, 86_400, 10),
    lingerSeconds: num(o.lingerSeconds, 'lean.lingerSeconds', 0, 3600, 2),
  };
}
