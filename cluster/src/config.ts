import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from './errors.js';

const port = z.number().int().min(0).max(65_535);

/** Every setting, its default, and its bounds. Unknown keys in a file are an error (typos matter). */
export const ConfigSchema = z
  .object({
    nodeId: z.string().min(1).max(64).default(`${hostname()}-${process.pid}`),
    host: z.string().min(1).default('127.0.0.1'),
    port: port.default(7800),
    udpHost: z.string().min(1).optional(),
    udpPort: port.default(7801),
    /** Address clients are told to send UDP voice to; defaults to udpHost. */
    publicHost: z.string().min(1).optional(),
    dataDir: z.string().min(1).default('./data'),
    /**
     * Behind a reverse proxy (nginx with TLS), take the client address for rate limits from the
     * last X-Forwarded-For entry. Only set when the proxy is the sole way in.
     */
    trustProxy: z.boolean().default(false),
    /** Holder of this token may edit or delete any channel and use the admin API. */
    adminToken: z.string().min(16, 'adminToken must be at least 16 characters').optional(),
    /** Set to run as one node of a cluster; unset runs alone with the embedded store. */
    redisUrl: z.string().url().optional(),
    /**
     * Redis connection details beyond the URL, passed to ioredis: Sentinel (then `redisUrl` may be
     * left out and the primary is asked of the sentinels), ACL user and password, TLS. `prefix`
     * starts every key, so clusters can share one server.
     */
    redis: z
      .object({
        sentinels: z
          .array(z.object({ host: z.string().min(1), port: port }).strict())
          .min(1)
          .optional(),
        /** The Sentinel primary group name (`mymaster`). */
        sentinelName: z.string().min(1).optional(),
        username: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
        tls: z.boolean().default(false),
        prefix: z.string().max(64).default('voice:'),
      })
      .strict()
      .prefault({}),
    /** Cluster timings: leases decide failover time, the registry how soon a dead node is ignored. */
    cluster: z
      .object({
        /** A channel's lease lives this long without renewal (renewed every third of it). */
        leaseTtlMs: z.number().int().min(300).max(60_000).default(2_000),
        /** Registry entries expire after this; nodes announce every `announceMs`. */
        registryTtlMs: z.number().int().min(1_000).max(120_000).default(6_000),
        announceMs: z.number().int().min(200).max(60_000).default(2_000),
        /** Node-to-node requests (a join forwarded to the owner) fail after this. */
        requestTimeoutMs: z.number().int().min(100).max(60_000).default(2_000),
        /**
         * Asking the least-loaded node to take a channel fails after this (then this node takes it:
         * always safe, the lease decides), so a join never waits a full request timeout on a node
         * that died or hangs. A healthy take is one Redis round trip each way and one SET NX.
         */
        takeTimeoutMs: z.number().int().min(50).max(60_000).default(500),
        /** Public signaling URL announced to other nodes; defaults to ws://host:port/ws. */
        publicWsUrl: z.string().url().optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Lifetime of a session's shared entries (record, nickname claim, online mark, seat) without a
     * refresh. Live nodes refresh every third of it; a dead node's claims are gone after it.
     */
    sessionTtlMs: z.number().int().min(1_000).max(600_000).default(15_000),
    /**
     * The mixing clock: one per frame size, cut into `slots` phases (at most one per ms). `wake:
     * timerfd` wakes it with a timerfd on the event loop (our addon; tick lateness p50 ~0.2 ms, no
     * helper thread), falling back to `thread` where the addon is missing; `thread` wakes it from
     * a metronome thread (p50 ~0.1-0.3 ms, a message per wake-up); `timer` uses setTimeout (1 ms
     * granular). A channel whose mean tick passes `tickBudget` of a frame lowers its encoder
     * complexity until it fits, so it cannot hold up the channels due after it.
     */
    clock: z
      .object({
        slots: z.number().int().min(1).max(20).default(16),
        wake: z.enum(['timerfd', 'thread', 'timer']).default('timerfd'),
        tickBudget: z.number().gt(0).max(1).default(0.1),
        /**
         * Timing advance: tell each sending member (`voice.advance`) how to move the instant it
         * cuts frames so its packets arrive just before the channel's tick (two or more speakers).
         */
        advance: z.boolean().default(true),
        /**
         * Time-stretch the members' playouts: a buffer a late burst grew gives the frame back by
         * pitch periods within about 1.5 s even in loud speech (else only in a quiet moment, which
         * speech has between words). Off by default: on a jittery, lossy link it cost the mixed
         * path 0.5-0.7 of PESQ (BENCHMARKS.md, "Speech quality"), for delay speech gives back anyway.
         */
        timeStretch: z.boolean().default(false),
        /**
         * The fewest frames the members' jitter buffers target (1-8). 1 (default) adds only the
         * phase margin on a clean link; on a host whose scheduling stalls for tens of ms (an
         * overloaded or virtualised machine) 2-3 absorb the stalls, at a frame of delay each.
         */
        minBufferFrames: z.number().int().min(1).max(8).default(1),
        /**
         * Mix on completion: a channel that mixes runs its tick as soon as every speaker of its last
         * mix has its next frame in, instead of waiting for its phase (at most once a frame; the
         * scheduled tick of that frame is skipped): the mix holds the last arrival for no time.
         */
        mixOnReady: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    /**
     * Voice forwarding. `maxStreams`: the most speakers forwarded to one listener as separate STREAM
     * packets (protocol README 8.8), for clients that ask (hello `streams`); 1 turns it off (every
     * listener gets the mix).
     */
    voice: z
      .object({
        maxStreams: z.number().int().min(1).max(8).default(4),
      })
      .strict()
      .prefault({}),
    /** Opus implementation: auto = our libopus addon, else @discordjs/opus, else opusscript. */
    opusBackend: z.enum(['auto', 'libopus', 'native', 'opusscript']).default('auto'),
    /**
     * How voice UDP packets leave: auto = batched sendmmsg (our voice_udp addon, Linux) when it
     * loads, else node:dgram; sendmmsg = refuse to start without it; dgram = one send per packet.
     */
    udpSend: z.enum(['auto', 'sendmmsg', 'dgram']).default('auto'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** How long a session (and its channel seat) survives a lost connection. */
    graceMs: z.number().int().min(0).max(600_000).default(20_000),
    heartbeatMs: z.number().int().min(1_000).max(120_000).default(15_000),
    /** A WebSocket that has not sent `hello` this long after opening is closed (4003). */
    helloTimeoutMs: z.number().int().min(100).max(120_000).default(5_000),
    /** Tokens unused for this long stop working. */
    tokenTtlDays: z.number().int().min(1).max(3650).default(30),
    limits: z
      .object({
        maxBodyBytes: z.number().int().min(256).max(1_048_576).default(16_384),
        maxChannels: z.number().int().min(1).max(100_000).default(1_000),
        /** Signaling messages per connection: sustained rate and burst (token bucket). */
        messagesPerSecond: z.number().min(0.1).max(10_000).default(20),
        messageBurst: z.number().int().min(1).max(10_000).default(60),
        /** Voice-over-WebSocket packets per connection (fallback transport). */
        voicePacketsPerSecond: z.number().min(1).max(10_000).default(150),
        /** Log-ins per client address. */
        loginsPerMinute: z.number().min(0.1).max(10_000).default(20),
        loginBurst: z.number().int().min(1).max(10_000).default(10),
        /** REST requests per client address. */
        requestsPerSecond: z.number().min(0.1).max(100_000).default(50),
        requestBurst: z.number().int().min(1).max(100_000).default(200),
        connectionsPerAddress: z.number().int().min(1).max(100_000).default(32),
        /**
         * Bytes a WebSocket may have waiting to be sent (the client not reading). A signaling
         * message that would pass it closes the connection (4004): a client that missed events
         * must resync, and memory per connection stays bounded.
         */
        wsBackpressureBytes: z.number().int().min(65_536).max(67_108_864).default(1_048_576),
        /** Bad frames tolerated per connection before it is closed. */
        maxBadFrames: z.number().int().min(1).max(10_000).default(20),
        /** Channels one user may own at once (the admin token is not limited). */
        channelsPerUser: z.number().int().min(1).max(100_000).default(10),
        /** Channel creations per user: sustained rate and burst (token bucket). */
        channelCreatesPerMinute: z.number().min(0.1).max(10_000).default(6),
        channelCreateBurst: z.number().int().min(1).max(10_000).default(3),
        /**
         * Budgets per client address, whichever accounts it uses (many accounts from one host
         * must not fill `maxChannels`): new users (log-ins) and channel creations, each a token
         * bucket refilled per hour. Raise them for many users behind one address (NAT, a proxy
         * without trustProxy). Per node; the admin token's channels are not counted.
         */
        newUsersPerAddressPerHour: z.number().min(0.01).max(1_000_000).default(60),
        newUserBurstPerAddress: z.number().int().min(1).max(1_000_000).default(20),
        channelCreatesPerAddressPerHour: z.number().min(0.01).max(1_000_000).default(20),
        channelCreateBurstPerAddress: z.number().int().min(1).max(1_000_000).default(10),
        /** Addresses the budgets remember; the least recently seen is forgotten first. */
        addressesTracked: z.number().int().min(16).max(10_000_000).default(100_000),
      })
      .strict()
      .prefault({}),
    /**
     * Channel passwords. scrypt runs at most `concurrency` at a time with at most `queue` waiting
     * (beyond: RATE_LIMITED at once), at most one per user. After `freeFailures*` wrong passwords
     * a user, and a channel, must wait `backoffBaseMs`, doubling per further failure up to the max.
     */
    passwords: z
      .object({
        concurrency: z.number().int().min(1).max(64).default(2),
        queue: z.number().int().min(0).max(10_000).default(16),
        freeFailuresPerUser: z.number().int().min(1).max(1_000).default(3),
        freeFailuresPerChannel: z.number().int().min(1).max(10_000).default(10),
        backoffBaseMs: z.number().int().min(1).max(3_600_000).default(1_000),
        maxBackoffPerUserMs: z.number().int().min(1).max(86_400_000).default(300_000),
        maxBackoffPerChannelMs: z.number().int().min(1).max(86_400_000).default(60_000),
        /** Users and channels remembered with failures; the least recently failed is forgotten first. */
        maxTracked: z.number().int().min(16).max(1_000_000).default(10_000),
      })
      .strict()
      .prefault({}),
    /**
     * Deleting users who own no channel and can no longer log in (no token used within
     * tokenTtlDays) or never connected within `unconnectedAfterMs` of logging in: every
     * `intervalMs`, at most `batch` per run. 0 turns either off.
     */
    userPurge: z
      .object({
        intervalMs: z.union([z.literal(0), z.number().int().min(1_000).max(86_400_000)]).default(3_600_000),
        unconnectedAfterMs: z
          .union([z.literal(0), z.number().int().min(1_000).max(31_536_000_000)])
          .default(86_400_000),
        batch: z.number().int().min(1).max(100_000).default(500),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/** VOICE_* variables: a top-level key, or (`sub`) a key of one of the nested objects. */
const ENV: Record<string, { key: keyof Config; sub?: string; type: 'string' | 'number' | 'boolean' }> = {
  VOICE_NODE_ID: { key: 'nodeId', type: 'string' },
  VOICE_HOST: { key: 'host', type: 'string' },
  VOICE_PORT: { key: 'port', type: 'number' },
  VOICE_UDP_HOST: { key: 'udpHost', type: 'string' },
  VOICE_UDP_PORT: { key: 'udpPort', type: 'number' },
  VOICE_PUBLIC_HOST: { key: 'publicHost', type: 'string' },
  VOICE_DATA_DIR: { key: 'dataDir', type: 'string' },
  VOICE_ADMIN_TOKEN: { key: 'adminToken', type: 'string' },
  VOICE_REDIS_URL: { key: 'redisUrl', type: 'string' },
  VOICE_SESSION_TTL_MS: { key: 'sessionTtlMs', type: 'number' },
  VOICE_LOG_LEVEL: { key: 'logLevel', type: 'string' },
  VOICE_OPUS: { key: 'opusBackend', type: 'string' },
  VOICE_UDP_SEND: { key: 'udpSend', type: 'string' },
  VOICE_TRUST_PROXY: { key: 'trustProxy', type: 'boolean' },
  VOICE_GRACE_MS: { key: 'graceMs', type: 'number' },
  VOICE_HEARTBEAT_MS: { key: 'heartbeatMs', type: 'number' },
  VOICE_HELLO_TIMEOUT_MS: { key: 'helloTimeoutMs', type: 'number' },
  VOICE_MAX_STREAMS: { key: 'voice', sub: 'maxStreams', type: 'number' },
};

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** A JSON file; VOICE_CONFIG names one when this is not given. */
  file?: string;
  overrides?: ConfigInput;
}

/**
 * Defaults, then the file, then VOICE_* variables, then overrides. Throws ConfigError with one
 * line per problem, naming the setting and where it came from.
 */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.VOICE_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object');
      fromFile = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`config file ${file} is not a JSON object: ${(err as Error).message}`);
    }
  }
  const fromEnv: Record<string, unknown> = {};
  for (const [name, { key, sub, type }] of Object.entries(ENV)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    let value: unknown = raw;
    if (type === 'number') {
      value = Number(raw);
      if (!Number.isFinite(value)) throw new ConfigError(`${name}=${JSON.stringify(raw)} is not a number`);
    } else if (type === 'boolean') {
      if (!['true', 'false', '1', '0'].includes(raw))
        throw new ConfigError(`${name}=${JSON.stringify(raw)} is not true or false`);
      value = raw === 'true' || raw === '1';
    }
    if (sub === undefined) fromEnv[key] = value;
    else {
      // Over the file's object, not instead of it: the variable sets one key.
      const base = fromEnv[key] ?? fromFile[key];
      fromEnv[key] = { ...(typeof base === 'object' && base !== null ? base : {}), [sub]: value };
    }
  }
  const merged = { ...fromFile, ...fromEnv, ...(opts.overrides ?? {}) };
  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((i) => {
      const path = i.path.join('.') || '(root)';
      const envName = Object.entries(ENV).find(
        ([, v]) => v.key === i.path[0] && (v.sub === undefined || v.sub === i.path[1]),
      )?.[0];
      return `  ${path}: ${i.message}${envName ? ` (file key "${path}" or ${envName})` : ''}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}
