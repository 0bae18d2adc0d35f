import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

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
 * prom-client's event loop lag metrics (same names), without a timer of their own. prom-client's
 * monitor is a 10 ms timer that never stops: 100 wake-ups a second on a server nobody uses (nearly
 * all of an idle server's CPU), and as many again beside the channels' clock on a busy one. Here
 * the loop's delay is sampled at each wake-up of the channels' clock (`record`: from its due time
 * to the loop running it), so it is measured exactly while it matters (channels tick: it is their
 * lateness) and costs no wake-up. Two differences, documented in ARCHITECTURE.md: the figures no
 * longer include the sampling period (prom-client's minimum is ~10 ms on an idle loop, ours ~0),
 * and a scrape whose window saw no clock wake-up (no active channel) reports 0 for the histogram
 * figures. `nodejs_eventloop_lag_seconds` is measured at each scrape, as prom-client does.
 */
export class EventLoopLag {
  /** Nanoseconds (prom-client's unit before its conversion to seconds), at least 1. */
  readonly #histogram: RecordableHistogram = createHistogram();

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
          help: `${helps[i]!} (sampled at the channels' clock wake-ups, 0 with none).`,
          registers: [registry],
        }),
      );
  }

  /** One clock wake-up's lateness, ms. On the packet path: allocates nothing. */
  record(latenessMs: number): void {
    this.#histogram.record(Math.max(1, Math.round(latenessMs * 1e6)));
  }
}
