import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { MetricSink } from './metrics.js';

/**
 * The generator watching itself, once per period in each worker thread: how busy its event loop was
 * (`generator.loop_busy`, percent of the period: the thread's CPU share) and how late it woke
 * (`generator.loop_delay_p99`, ms). A busy loop or late wake-ups mean the users' clocks slipped and
 * their figures measure the generator, not the server: the runner reports the run as saturated.
 */
export class GeneratorMonitor {
  private readonly delay = monitorEventLoopDelay({ resolution: 1 });
  private elu: EventLoopUtilization = performance.eventLoopUtilization();
  private cpu = process.cpuUsage();
  private wall = performance.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly sink: MetricSink,
    private readonly periodMs = 1000,
  ) {}

  start(): void {
    if (this.timer) return;
    this.delay.enable();
    this.timer = setInterval(() => this.sample(), this.periodMs);
    this.timer.unref();
  }

  private sample(): void {
    const elu = performance.eventLoopUtilization(this.elu);
    this.elu = performance.eventLoopUtilization();
    const cpu = process.cpuUsage(this.cpu);
    this.cpu = process.cpuUsage();
    const now = performance.now();
    const wall = now - this.wall;
    this.wall = now;
    this.sink.histogram('generator.loop_busy', elu.utilization * 100);
    this.sink.histogram('generator.loop_delay_p99', this.delay.percentile(99) / 1e6);
    // Whole process (all worker threads), percent of one core.
    this.sink.histogram('generator.process_cpu', ((cpu.user + cpu.system) / 1000 / wall) * 100);
    this.delay.reset();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.delay.disable();
  }
}
