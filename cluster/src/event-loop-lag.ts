import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** The event loop delay monitor's period while voice is active, ms (prom-client's default). */
export const LAG_RESOLUTION_MS = 10;

/** prom-client's event loop lag family (names without the prefix), which this class replaces. */
export const EVENT_LOOP_LAG_METRICS = [
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_min_seconds',
  'nodejs_eventloop_lag_max_seconds',
  'nodejs_eventloop_lag_mean_seconds',
  'nodejs_eventloop_lag_stddev_seconds',
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p90_seconds',
  'nodejs_eventloop_lag_p99_seconds',
] as const;

/**
 * prom-client's event loop lag metrics (same names, same meaning), sampled only while voice is
 * active. Its monitor is a 10 ms timer that never stops: 100 wake-ups a second on a server nobody
 * uses, which was nearly all of an idle server's CPU. Loop delay matters while channels tick (it
 * is their lateness); with none, the loop only answers requests. So the monitor runs while some
 * channel is active; a scrape whose window saw no active time reports 0 for the histogram figures
 * (nothing was measured, and an idle loop is not late). `nodejs_eventloop_lag_seconds` is measured
 * at each scrape, as prom-client does, whether voice is active or not.
 */
export class EventLoopLag {
  readonly #histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  #on = false;

  constructor(registry: Registry, prefix: string) {
    const h = this.#histogram;
    // Set by the first gauge's collect; that gauge is registered first, so a scrape (which reads
    // the metrics in order, concurrently) sees the family set before it reads it.
    const family: Gauge[] = [];
    new Gauge({
      name: prefix + EVENT_LOOP_LAG_METRICS[0],
      help: 'Lag of event loop in seconds.',
      registers: [registry],
      collect: async function (this: Gauge) {
        const seen = h.count > 0;
        const figures = [
          h.min,
          h.max,
          h.mean,
          h.stddev,
          h.percentile(50),
          h.percentile(90),
          h.percentile(99),
        ];
        for (let i = 0; i < family.length; i++) family[i]!.set(seen ? figures[i]! / 1e9 : 0);
        h.reset();
        const start = process.hrtime.bigint();
        await new Promise((r) => setImmediate(r));
        this.set(Number(process.hrtime.bigint() - start) / 1e9);
      },
    });
    const helps = [
      'The minimum recorded event loop delay',
      'The maximum recorded event loop delay',
      'The mean of the recorded event loop delays',
      'The standard deviation of the recorded event loop delays',
      'The 50th percentile of the recorded event loop delays',
      'The 90th percentile of the recorded event loop delays',
      'The 99th percentile of the recorded event loop delays',
    ];
    for (let i = 0; i < helps.length; i++)
      family.push(
        new Gauge({
          name: prefix + EVENT_LOOP_LAG_METRICS[i + 1]!,
          help: `${helps[i]!} (sampled while voice is active).`,
          registers: [registry],
        }),
      );
  }

  /** Voice became active (a channel has members) or idle: the monitor's timer runs only while active. */
  active(on: boolean): void {
    if (on === this.#on) return;
    this.#on = on;
    if (on) this.#histogram.enable();
    else this.#histogram.disable();
  }

  close(): void {
    this.active(false);
  }
}
