import { afterAll, afterEach, beforeAll, describe, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import type { VoiceClient } from '../../../client/src/index.js';
import { channelOf, connectBot, type BotMaker } from '../../../test-support/bots.js';
import type { Topology } from './topology.js';
import type { ScenarioContext, VoiceScenario } from './voice-scenarios.js';

/**
 * Runs each scenario on every topology at once (the topologies share nothing but this process, so a
 * scenario's wall time is paid once, not once per topology). Each topology starts once for the file;
 * the scenarios share its servers, each with bots of its own, closed after it. A failure names the
 * topology it happened on.
 */
export function runScenarios(
  title: string,
  scenarios: readonly VoiceScenario[],
  starts: readonly (() => Promise<Topology>)[],
): void {
  describe(title, () => {
    let opus: OpusFactory;
    let topologies: Topology[] = [];
    const bots: VoiceClient[] = [];
    beforeAll(async () => {
      opus = await createOpus();
      const started = await Promise.allSettled(starts.map((start) => start()));
      topologies = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = started.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    }, 60_000);
    afterEach(async () => {
      await Promise.all(bots.splice(0).map((b) => b.close()));
    });
    afterAll(async () => {
      await Promise.all(topologies.map((t) => t.stop()));
    }, 30_000);

    /**
     * A retried attempt's bots take names of their own: the servers may still hold the last
     * attempt's sessions (closed a moment ago), and a nickname in use is refused.
     */
    const context = (t: Topology, attempt: number): ScenarioContext => {
      const rename = (name: string) => (attempt === 0 ? name : `${name}-r${attempt}`);
      const bot: BotMaker = async (i, nickname, extra = {}) => {
        const opts = extra.channel === undefined ? extra : { ...extra, channel: rename(extra.channel) };
        const c = await connectBot(t.url(i), rename(nickname), opus, opts);
        bots.push(c);
        return c;
      };
      return {
        topology: t,
        bot,
        channelOf: (channel, nicknames, extra = {}) => channelOf(bot, channel, nicknames, extra),
      };
    };

    for (const s of scenarios)
      it(s.name, { timeout: s.timeoutMs ?? 30_000, retry: s.retry ?? 0 }, async ({ task }) => {
        if (topologies.length !== starts.length) throw new Error('a topology did not start');
        const attempt = task.result?.retryCount ?? 0;
        const results = await Promise.allSettled(topologies.map((t) => s.run(context(t, attempt))));
        const failures = results.flatMap((r, k) => {
          const on = topologies[k]!.name;
          const known = s.failsOn?.[on];
          if (known === undefined) return r.status === 'rejected' ? [{ on, err: r.reason as unknown }] : [];
          // A known bug: failing is expected; passing means the bug is gone and the entry must go.
          if (r.status === 'rejected') console.log(`[${on}] fails as known (${known}): ${String(r.reason)}`);
          return r.status === 'fulfilled'
            ? [{ on, err: new Error(`passes now: remove failsOn['${on}'] ("${known}")`) }]
            : [];
        });
        if (failures.length === 0) return;
        // The first failure, named by its topology; the others' messages after it.
        const [first, ...more] = failures;
        const err = first!.err instanceof Error ? first!.err : new Error(String(first!.err));
        err.message =
          `[${first!.on}] ${err.message}` +
          more
            .map((f) => `\n[${f.on}] also failed: ${f.err instanceof Error ? f.err.message : String(f.err)}`)
            .join('');
        throw err;
      });
  });
}
