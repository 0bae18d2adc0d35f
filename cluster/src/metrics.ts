import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { EVENT_LOOP_LAG_METRICS, EventLoopLag } from './event-loop-lag.js';

const PROCESS_PREFIX = 'voice_process_';

/**
 * Every metric the server exports, on a registry of its own (no global state, so several servers
 * can run in one test process). Names follow Prometheus conventions with a `voice_` prefix.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly errors = new Counter({
    name: 'voice_errors_total',
    help: 'Errors answered to clients, by code and transport',
    labelNames: ['code', 'transport'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'voice_rate_limited_total',
    help: 'Requests refused by a rate limit, by limit',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'voice_http_requests_total',
    help: 'REST requests by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly wsMessages = new Counter({
    name: 'voice_ws_messages_total',
    help: 'Signaling messages received, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly wsFramesSent = new Counter({
    name: 'voice_ws_frames_sent_total',
    help: 'Signaling frames written to WebSocket clients',
    registers: [this.registry],
  });
  readonly wsConnections = new Gauge({
    name: 'voice_ws_connections',
    help: 'Open WebSocket connections',
    registers: [this.registry],
  });
  readonly sessions = new Gauge({
    name: 'voice_sessions',
    help: 'Sessions on this node, connected or within their grace period',
    registers: [this.registry],
  });
  readonly sessionsExpired = new Counter({
    name: 'voice_sessions_expired_total',
    help: 'Sessions removed after their grace period ran out',
    registers: [this.registry],
  });
  readonly sessionsResumed = new Counter({
    name: 'voice_sessions_resumed_total',
    help: 'Sessions restored by a reconnect within the grace period',
    registers: [this.registry],
  });
  readonly logins = new Counter({
    name: 'voice_logins_total',
    help: 'Successful log-ins',
    registers: [this.registry],
  });
  readonly usersPurged = new Counter({
    name: 'voice_users_purged_total',
    help: 'Users deleted because they hold no valid token and own nothing',
    registers: [this.registry],
  });
  readonly backgroundErrors = new Counter({
    name: 'voice_background_errors_total',
    help: 'Failures in work no client waits for (bus publishes, timers), by task',
    labelNames: ['task'] as const,
    registers: [this.registry],
  });
  readonly requestSeconds = new Histogram({
    name: 'voice_signaling_handler_seconds',
    help: 'Time to handle a signaling request',
    labelNames: ['type'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });

  readonly boundaryErrors = new Counter({
    name: 'voice_boundary_errors_total',
    help: 'Exceptions caught where input enters (HTTP, WebSocket, timers), by boundary and the code answered',
    labelNames: ['boundary', 'code'] as const,
    registers: [this.registry],
  });
  readonly framesRefused = new Counter({
    name: 'voice_frames_refused_total',
    help: 'Server frames not sent because they would exceed the 16 KiB frame limit, by message type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly wsBackpressure = new Counter({
    name: 'voice_ws_backpressure_total',
    help: 'WebSocket clients not reading: connections closed (4004) at the limit, fallback voice frames dropped',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly helloTimeouts = new Counter({
    name: 'voice_hello_timeouts_total',
    help: 'WebSocket connections closed for not completing hello in time',
    registers: [this.registry],
  });
  readonly wsVoiceRedirects = new Counter({
    name: 'voice_ws_redirects_total',
    help: 'voice.redirect sent: WebSocket voice arrived on a node that does not own the channel',
    registers: [this.registry],
  });
  readonly relayedStatsDropped = new Counter({
    name: 'voice_relayed_stats_dropped_total',
    help: "Connection stats or timing advances for members signaled by another node not relayed: that node's batch was full",
    registers: [this.registry],
  });
  readonly placementFallbacks = new Counter({
    name: 'voice_placement_fallbacks_total',
    help: 'Nodes a channel placement passed over, by reason: suspect (it failed to answer lately), stale (its registry entry missed two refreshes), timeout, unreachable or refused (asked, it did not take the channel, so this node took it), error',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly faults = new Counter({
    name: 'voice_faults_total',
    help: 'Process-level faults: unhandled promise rejections and uncaught exceptions',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });

  /** Event loop lag, sampled at the channels' clock wake-ups (null when default metrics are off). */
  readonly eventLoop: EventLoopLag | null = null;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (!(opts.defaultMetrics ?? true)) return;
    // prom-client's defaults but its event loop lag, whose 10 ms monitor never sleeps: they are
    // collected on a registry of their own with that monitor's period at its longest (it then
    // wakes once in 24 days), and all but that family are moved to ours; EventLoopLag replaces it
    // (sampled where the loop's delay matters, at no wake-up of its own).
    const defaults = new Registry();
    collectDefaultMetrics({
      register: defaults,
      prefix: PROCESS_PREFIX,
      eventLoopMonitoringPrecision: 2 ** 31 - 1,
    });
    const replaced = new Set<string>(EVENT_LOOP_LAG_METRICS.map((n) => PROCESS_PREFIX + n));
    for (const { name } of defaults.getMetricsAsArray()) {
      const m = defaults.getSingleMetric(name);
      if (m && !replaced.has(name)) this.registry.registerMetric(m);
    }
    this.eventLoop = new EventLoopLag(this.registry, PROCESS_PREFIX);
  }

  /** The current value of a counter or gauge for a label set (tests read metrics through this). */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    const metric = this.registry.getSingleMetric(name);
    if (!metric) return 0;
    const data = await metric.get();
    let sum = 0;
    for (const v of data.values) {
      const l = v.labels as Record<string, string | number>;
      if (Object.entries(labels).every(([k, want]) => String(l[k]) === want)) sum += v.value;
    }
    return sum;
  }
}
